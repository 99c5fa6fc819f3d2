"""privhead: privacy-preserving neural 3D head reconstruction.

Data flow: photos -> classify -> (neutral RGB | sigma -> protected gradient maps) -> bundle ->
stage 1 -> stage 2 -> SDF -> mesh -> evaluate.
"""

__version__ = "0.1.0"
