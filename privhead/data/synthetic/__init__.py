"""The built-in synthetic head: an analytic SDF, a procedural albedo and a sphere-traced renderer.

Start of the data flow for tests and demos: writes a multi-view dataset in the same layout as the
shared heads (IDR / NeuS folder + transforms.json + gt_mesh.ply + views.json + face_region.json),
made entirely by privhead's own code (no third-party assets).

Modules, in the order of the flow (each imports only from those before it):
  * ``shape``: identity parameters, SDF primitives, anatomy, :func:`head_sdf`, landmarks;
  * ``albedo``: sRGB conversions and the procedural :func:`head_albedo`;
  * ``grid``: the SDF sampled on a grid (:class:`SdfGrid`) and the GT mesh from it;
  * ``tracer``: lights, sphere tracing, normals, shading, :func:`render_head`;
  * ``rig``: the ring camera rig (:class:`RigConfig`, :func:`ring_cameras`);
  * ``writer``: face region, views.json, face visibility, :func:`write_synthetic_head`.

Frames: the *canonical* frame is in millimetres with the origin between the ear canals (x to the
subject's left, y up, z forward = face direction); the *world* frame of the written dataset is the
canonical frame shifted by ``center_mm`` and divided by ``mm_per_unit`` so that the head, neck
included, lies inside the sphere of radius 0.95 (as the shared heads).
"""

from privhead.data.synthetic.albedo import (
    HAIRLINE_MM,
    head_albedo,
    linear_to_srgb,
    srgb_to_linear,
)
from privhead.data.synthetic.grid import SdfGrid, build_sdf_grid, extract_head_mesh
from privhead.data.synthetic.rig import RigConfig, ring_cameras, ring_layout
from privhead.data.synthetic.shape import (
    FORWARD,
    HAIR_COLOURS_SRGB,
    HEAD_RADIUS,
    IRIS_COLOURS_SRGB,
    SKIN_TONES_SRGB,
    UP,
    HeadParams,
    head_landmarks,
    head_sdf,
    sample_head_params,
)
from privhead.data.synthetic.tracer import (
    AMBIENT,
    LIGHTS,
    Light,
    Rendering,
    render_head,
    shade,
    surface_normals,
    trace_sdf_grid,
)
from privhead.data.synthetic.writer import (
    FACE_SPHERE_MM,
    OUTPUT_FILES,
    SENSITIVE_THRESHOLD_DEG,
    face_region_dict,
    views_dict,
    write_synthetic_head,
)

__all__ = [
    "AMBIENT",
    "FACE_SPHERE_MM",
    "FORWARD",
    "HAIRLINE_MM",
    "HAIR_COLOURS_SRGB",
    "HEAD_RADIUS",
    "IRIS_COLOURS_SRGB",
    "LIGHTS",
    "OUTPUT_FILES",
    "SENSITIVE_THRESHOLD_DEG",
    "SKIN_TONES_SRGB",
    "UP",
    "HeadParams",
    "Light",
    "Rendering",
    "RigConfig",
    "SdfGrid",
    "build_sdf_grid",
    "extract_head_mesh",
    "face_region_dict",
    "head_albedo",
    "head_landmarks",
    "head_sdf",
    "linear_to_srgb",
    "render_head",
    "ring_cameras",
    "ring_layout",
    "sample_head_params",
    "shade",
    "srgb_to_linear",
    "surface_normals",
    "trace_sdf_grid",
    "views_dict",
    "write_synthetic_head",
]
