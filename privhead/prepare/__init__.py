"""``privhead prepare``: photos or a video -> a calibrated, masked dataset, on the user's device.

The flow (each step its own module):

  1. :mod:`~privhead.prepare.inputs`: photos (EXIF orientation) or a video's sharpest frames;
  2. :mod:`~privhead.prepare.masks` (static camera only): masks from the static background, so
     that structure from motion registers the head and not the room;
  3. :mod:`~privhead.prepare.sfm`: cameras by structure from motion (pycolmap, in a child
     process), with a ladder of fallback settings;
  4. :mod:`~privhead.prepare.masks` (moving camera): masks from the head's and the room's 3D
     points;
  5. :mod:`~privhead.prepare.layout`: normalisation (``scale_mat``), the face direction voted by
     the face detectors, the sensitive / neutral split, the scale estimate, and the dataset
     written in the IDR layout (``image/``, ``mask/``, ``cameras.npz``, ``transforms.json``,
     ``views.json``, ``prepare.json``) that ``privhead protect`` reads.

The photos never leave the device: the dataset is written locally; only ``protect``'s bundle is
meant to travel.
"""

from privhead.prepare.layout import PrepareConfig, PrepareResult, prepare_dataset

__all__ = ["PrepareConfig", "PrepareResult", "prepare_dataset"]
