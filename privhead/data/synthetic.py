"""The built-in synthetic head: an analytic SDF, a procedural albedo and a sphere-traced renderer.

Start of the data flow for tests and demos: writes a multi-view dataset in the same layout as the
shared heads (IDR / NeuS folder + transforms.json + gt_mesh.ply + views.json + face_region.json),
made entirely by privhead's own code (no third-party assets).

Frames: the *canonical* frame is in millimetres with the origin between the ear canals (x to the
subject's left, y up, z forward = face direction); the *world* frame of the written dataset is the
canonical frame shifted by ``center_mm`` and divided by ``mm_per_unit`` so that the head, neck
included, lies inside the sphere of radius 0.95 (as the shared heads).
"""

from __future__ import annotations

import contextlib
import json
import math
import shutil
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from privhead.data.cameras import Cameras, pixel_rays, ray_sphere_intersect
from privhead.data.formats import HeadDataset, write_idr, write_transforms
from privhead.errors import PrivheadError

FORWARD = (0.0, 0.0, 1.0)
"""World direction the face looks along."""
UP = (0.0, 1.0, 0.0)
"""World up direction."""
HEAD_RADIUS = 0.95
"""Radius of the origin-centred sphere holding the head (world units)."""
SENSITIVE_THRESHOLD_DEG = 110.0
"""A view is sensitive (face visible) when the angle between the camera direction and FORWARD is
at most this (the shared views.json rule)."""
FACE_SPHERE_MM = 95.0
"""Radius of the H3DS face sphere around the nose tip, in millimetres."""


@dataclass(frozen=True)
class Light:
    """A directional light: ``direction`` points from the head towards the light (world)."""

    name: str
    direction: tuple[float, float, float]
    rgb: tuple[float, float, float]


LIGHTS = (
    Light("key", (0.55, 0.55, 0.65), (1.0, 0.96, 0.9)),
    Light("fill", (-0.8, 0.05, 0.4), (0.33, 0.36, 0.4)),
    Light("back", (-0.25, 0.55, -0.8), (0.55, 0.55, 0.55)),
)
"""Fixed world lights, the same as the shared heads' meta.json (linear RGB)."""
AMBIENT = (0.2, 0.2, 0.21)
"""Ambient light, linear RGB."""


@dataclass(frozen=True)
class RigConfig:
    """The camera rig of the shared heads (FaceScape-like rings looking at the origin)."""

    elevations_deg: tuple[float, ...] = (-15.0, 10.0, 35.0)
    """Ring elevations, degrees (negative = camera below the head centre)."""
    ring_azimuth_offsets_deg: tuple[float, ...] | None = None
    """Azimuth of each ring's first camera; default: half a step on the middle ring (0/18/0 deg
    for 10 views per ring)."""
    distance: float = 2.7
    """Camera distance from the origin, world units."""
    fov_y_deg: float = 43.0
    """Vertical field of view, degrees (``fy = (H / 2) / tan(fov_y / 2)``)."""


@contextlib.contextmanager
def _single_threaded():
    """Run torch on one thread, restoring the setting afterwards.

    The generator issues thousands of small tensor operations (one view's rays at a time), for
    which intra-op threads cost more than they bring; on a busy 2-core machine two threads made
    a 64x64 head take 70 s instead of 4 s.
    """
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


# --------------------------------------------------------------------------------------------
# Identity parameters
# --------------------------------------------------------------------------------------------

SKIN_TONES_SRGB = (
    (236, 200, 178),
    (224, 178, 150),
    (198, 148, 114),
    (160, 110, 80),
    (123, 77, 55),
    (88, 57, 40),
)
"""Skin albedo palette (sRGB, light to dark); a head's tone is interpolated along it."""
HAIR_COLOURS_SRGB = {
    "black": (28, 24, 22),
    "dark_brown": (55, 38, 28),
    "brown": (98, 68, 45),
    "blonde": (170, 135, 85),
    "auburn": (120, 55, 30),
    "grey": (150, 146, 140),
}
IRIS_COLOURS_SRGB = {
    "dark_brown": (70, 44, 28),
    "brown": (110, 70, 40),
    "hazel": (120, 100, 55),
    "green": (80, 110, 70),
    "blue": (70, 105, 150),
    "grey": (110, 120, 128),
}


@dataclass(frozen=True)
class HeadParams:
    """Identity of one synthetic head and its placement in the world frame.

    Shape factors are dimensionless multipliers around 1 of the canonical head (millimetres).
    """

    seed: int = 0
    head_width: float = 1.0
    """Cranium breadth factor (canonical breadth 150 mm)."""
    head_length: float = 1.0
    """Cranium front-back length factor (canonical 198 mm)."""
    head_height: float = 1.0
    """Cranium height factor."""
    face_width: float = 1.0
    """Mid-face (cheeks, cheekbones) breadth factor."""
    face_length: float = 1.0
    """Vertical scale of the lower face (mouth, chin, jaw heights)."""
    jaw_width: float = 1.0
    """Jaw angle (gonion) breadth factor."""
    chin: float = 1.0
    """Chin size and projection factor."""
    cheekbones: float = 1.0
    """Cheekbone prominence factor."""
    brow: float = 1.0
    """Brow-ridge prominence factor."""
    eye_spacing: float = 1.0
    """Inter-pupillary distance factor (canonical 63 mm)."""
    nose_length: float = 1.0
    """Nasion-to-tip length factor."""
    nose_projection: float = 1.0
    """How far the nose tip stands out of the face."""
    nose_width: float = 1.0
    """Nose tip and alae width factor."""
    nose_hump: float = 0.0
    """Dorsal hump (0 = straight bridge, 1 = pronounced)."""
    lip_thickness: float = 1.0
    """Lip thickness factor."""
    mouth_width: float = 1.0
    """Mouth width factor."""
    ear_size: float = 1.0
    """Ear size factor (canonical height 62 mm)."""
    ear_angle_deg: float = 25.0
    """How far the ears turn out from the side of the head, degrees."""
    neck_width: float = 1.0
    """Neck radius factor."""
    skin_srgb: tuple[float, float, float] = (198.0, 148.0, 114.0)
    """Skin albedo, sRGB 0-255."""
    hair: str = "brown"
    """Hair colour name (a key of HAIR_COLOURS_SRGB)."""
    hair_srgb: tuple[float, float, float] = (98.0, 68.0, 45.0)
    """Hair (and brow) albedo, sRGB 0-255."""
    iris: str = "brown"
    """Iris colour name (a key of IRIS_COLOURS_SRGB)."""
    iris_srgb: tuple[float, float, float] = (110.0, 70.0, 40.0)
    """Iris albedo, sRGB 0-255."""
    lip_redness: float = 1.0
    """Exponent of the lips' red tint (higher = redder and darker)."""
    cheek_redness: float = 1.0
    """Strength of the red tint on the cheeks and nose tip."""
    hairline_shift_mm: float = 0.0
    """Raises (positive) or lowers the hairline."""
    noise_phases: tuple[float, ...] = (0.0,) * 10
    """Phases of the procedural skin / hair variation."""
    center_mm: tuple[float, float, float] = (0.0, 0.0, 0.0)
    """Canonical point (mm) placed at the world origin."""
    mm_per_unit: float = 200.0
    """Millimetres per world unit."""

    def to_world(self, points_mm: np.ndarray) -> np.ndarray:
        """Canonical millimetres -> world units ([..., 3])."""
        return (np.asarray(points_mm, dtype=np.float64) - self.center_mm) / self.mm_per_unit


@_single_threaded()
def sample_head_params(seed: int = 0) -> HeadParams:
    """Draw a head identity from ``numpy.random.default_rng(seed)`` and normalise its placement.

    The world placement puts the centre of the head's bounding box at the origin and scales the
    head so that its farthest point lies just inside :data:`HEAD_RADIUS`.
    """
    rng = np.random.default_rng(seed)

    def around(spread: float) -> float:
        return float(1.0 + rng.uniform(-spread, spread))

    tone = float(rng.uniform(0.0, len(SKIN_TONES_SRGB) - 1))
    low = int(min(math.floor(tone), len(SKIN_TONES_SRGB) - 2))
    skin = (1 - (tone - low)) * np.array(SKIN_TONES_SRGB[low]) + (tone - low) * np.array(
        SKIN_TONES_SRGB[low + 1]
    )
    hair = str(rng.choice(sorted(HAIR_COLOURS_SRGB)))
    iris = str(rng.choice(sorted(IRIS_COLOURS_SRGB)))
    params = HeadParams(
        seed=int(seed),
        head_width=around(0.06),
        head_length=around(0.05),
        head_height=around(0.05),
        face_width=around(0.07),
        face_length=around(0.07),
        jaw_width=around(0.12),
        chin=around(0.2),
        cheekbones=around(0.25),
        brow=around(0.3),
        eye_spacing=around(0.06),
        nose_length=around(0.12),
        nose_projection=around(0.15),
        nose_width=around(0.15),
        nose_hump=float(rng.uniform(0.0, 1.0)),
        lip_thickness=around(0.25),
        mouth_width=around(0.1),
        ear_size=around(0.12),
        ear_angle_deg=float(rng.uniform(15.0, 35.0)),
        neck_width=around(0.08),
        skin_srgb=tuple(float(v) for v in skin.round(1)),
        hair=hair,
        hair_srgb=tuple(float(v) for v in HAIR_COLOURS_SRGB[hair]),
        iris=iris,
        iris_srgb=tuple(float(v) for v in IRIS_COLOURS_SRGB[iris]),
        lip_redness=float(rng.uniform(0.6, 1.2)),
        cheek_redness=float(rng.uniform(0.5, 1.3)),
        hairline_shift_mm=float(rng.uniform(-8.0, 12.0)),
        noise_phases=tuple(float(v) for v in rng.uniform(0.0, 2 * np.pi, size=10)),
    )
    return _normalise_placement(params)


def _normalise_placement(params: HeadParams, spacing_mm: float = 5.0) -> HeadParams:
    """Set ``center_mm`` and ``mm_per_unit`` from a grid of the canonical SDF (conservatively:
    every inside node is padded by one grid cell)."""
    axes = [
        torch.arange(-150.0, 150.0 + spacing_mm, spacing_mm, dtype=torch.float64),
        torch.arange(-260.0, 170.0 + spacing_mm, spacing_mm, dtype=torch.float64),
        torch.arange(-150.0, 170.0 + spacing_mm, spacing_mm, dtype=torch.float64),
    ]
    grid = torch.stack(torch.meshgrid(*axes, indexing="ij"), dim=-1).reshape(-1, 3)
    sdf = torch.cat([_canonical_sdf(chunk, params) for chunk in grid.split(1 << 18)])
    inside = grid[sdf < 0].numpy()
    pad = spacing_mm
    lo, hi = inside.min(axis=0) - pad, inside.max(axis=0) + pad
    center = 0.5 * (lo + hi)
    radius = float(np.linalg.norm(inside - center, axis=1).max()) + pad * math.sqrt(3.0)
    return replace(
        params, center_mm=tuple(float(v) for v in center), mm_per_unit=radius / HEAD_RADIUS
    )


# --------------------------------------------------------------------------------------------
# Signed distance primitives (torch, canonical millimetres)
# --------------------------------------------------------------------------------------------


def _vec(values, like: torch.Tensor) -> torch.Tensor:
    return torch.as_tensor(values, dtype=like.dtype, device=like.device)


def _ellipsoid(p: torch.Tensor, center, radii) -> torch.Tensor:
    """Approximate SDF of an axis-aligned ellipsoid (exact on the surface, a bound elsewhere)."""
    radii_t = _vec(radii, p)
    q = (p - _vec(center, p)) / radii_t
    k0 = q.norm(dim=-1)
    k1 = (q / radii_t).norm(dim=-1)
    return torch.where(k1 > 1e-9, k0 * (k0 - 1.0) / k1.clamp_min(1e-9), -min(radii))


def _rotated_ellipsoid(p: torch.Tensor, center, radii, rotation: np.ndarray) -> torch.Tensor:
    """Ellipsoid whose axes are the columns of ``rotation`` (world from local)."""
    local = (p - _vec(center, p)) @ _vec(rotation, p)
    return _ellipsoid(local, (0.0, 0.0, 0.0), radii)


def _capsule(p: torch.Tensor, a, b, radius_a: float, radius_b: float) -> torch.Tensor:
    """Distance to the segment ``a``-``b`` minus a radius varying linearly along it."""
    a_t, b_t = _vec(a, p), _vec(b, p)
    pa, ba = p - a_t, b_t - a_t
    h = ((pa @ ba) / (ba @ ba)).clamp(0.0, 1.0)
    return (pa - h[:, None] * ba).norm(dim=-1) - (radius_a + (radius_b - radius_a) * h)


def _smooth_union(a: torch.Tensor, b: torch.Tensor, k: float) -> torch.Tensor:
    """Polynomial smooth minimum with blend width ``k`` (mm)."""
    h = (0.5 + 0.5 * (b - a) / k).clamp(0.0, 1.0)
    return b + (a - b) * h - k * h * (1.0 - h)


def _smooth_subtract(a: torch.Tensor, b: torch.Tensor, k: float) -> torch.Tensor:
    """``a`` minus ``b`` with a rounded edge of width ``k``."""
    return -_smooth_union(-a, b, k)


def _rotation_y(angle_deg: float) -> np.ndarray:
    c, s = math.cos(math.radians(angle_deg)), math.sin(math.radians(angle_deg))
    return np.array([[c, 0.0, s], [0.0, 1.0, 0.0], [-s, 0.0, c]])


def _rotation_x(angle_deg: float) -> np.ndarray:
    c, s = math.cos(math.radians(angle_deg)), math.sin(math.radians(angle_deg))
    return np.array([[1.0, 0.0, 0.0], [0.0, c, -s], [0.0, s, c]])


# --------------------------------------------------------------------------------------------
# The head
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Anatomy:
    """Primitives of one head in canonical millimetres.

    Bilateral features are given on the subject's left (x > 0) and mirrored. Landmark-like
    points follow adult anthropometry with the origin between the ear canals and the Frankfort
    plane near y = 0.
    """

    cranium: tuple  # (center, radii)
    maxilla: tuple  # (center, radii)
    cheekbone: tuple  # (center, radii)
    under_jaw: tuple  # (center, radii)
    chin: tuple  # (center, radii)
    muzzle: tuple  # (center, radii)
    mouth_corner: tuple
    upper_lip: tuple
    lower_lip: tuple
    lip_radii: tuple  # (corner, upper middle, lower middle)
    stomion_y: float
    brow_inner: tuple
    brow_outer: tuple
    brow_radius: float
    eye_center: tuple
    eye_radius: float
    socket: tuple  # (center, radii)
    upper_lid: tuple  # (center, radii)
    lower_lid: tuple  # (center, radii)
    nasion: tuple
    nose_tip: tuple
    alar: tuple
    subnasale: tuple
    nose_width: float
    nose_hump: float
    ear_center: tuple
    ear_radii: tuple
    ear_rotation: np.ndarray
    neck_top: tuple
    neck_bottom: tuple
    neck_radius: float
    neck_cut_y: float


def _anatomy(params: HeadParams) -> _Anatomy:
    hw, hl, hh = params.head_width, params.head_length, params.head_height
    fw, fl = params.face_width, params.face_length
    nl, npj, nw = params.nose_length, params.nose_projection, params.nose_width
    ex, ey, ez = 31.5 * params.eye_spacing, 13.0, 68.0
    lips = params.lip_thickness
    chin_size = params.chin
    chin_y = -90.0 * fl
    return _Anatomy(
        cranium=((0.0, 32.0 * hh, -4.0 * hl), (75.0 * hw, 94.0 * hh, 99.0 * hl)),
        maxilla=((0.0, -24.0 * fl, 30.0), (60.0 * fw, 54.0 * fl, 62.0)),
        cheekbone=((44.0 * fw, -4.0, 58.0), (14.0, 9.0, 14.0 * params.cheekbones)),
        under_jaw=((0.0, -80.0 * fl, 34.0), (46.0 * params.jaw_width, 20.0 * fl, 54.0)),
        chin=((0.0, chin_y, 82.0 + 4.0 * chin_size), (16.0 * chin_size, 12.0, 10.0)),
        muzzle=((0.0, -50.0 * fl, 80.0), (30.0 * params.mouth_width, 24.0 * fl, 20.0)),
        mouth_corner=(24.0 * params.mouth_width, -54.0 * fl, 90.0),
        upper_lip=(0.0, -49.5 * fl, 100.0),
        lower_lip=(0.0, -59.5 * fl, 98.0),
        lip_radii=(2.5, 4.5 * lips, 5.2 * lips),
        stomion_y=-54.0 * fl,
        brow_inner=(12.0, 30.0, 92.0),
        brow_outer=(46.0 * params.eye_spacing, 30.0, 76.0),
        brow_radius=5.5 * params.brow,
        eye_center=(ex, ey, ez),
        eye_radius=12.0,
        socket=((ex, ey + 2.0, 92.0), (18.0, 12.0, 12.0)),
        upper_lid=((ex, ey + 8.0, ez + 1.0), (15.0, 9.0, 11.5)),
        lower_lid=((ex, ey - 8.5, ez + 1.0), (14.0, 6.5, 11.0)),
        nasion=(0.0, 20.0, 90.0),
        nose_tip=(0.0, -22.0 * nl, 94.0 + 20.0 * npj),
        alar=(14.0 * nw, -28.0 * nl, 99.0),
        subnasale=(0.0, -33.0 * nl, 101.0 + 2.0 * npj),
        nose_width=nw,
        nose_hump=params.nose_hump,
        ear_center=(76.0 * hw, 6.0, -14.0 * hl),
        ear_radii=(5.0, 31.0 * params.ear_size, 17.0 * params.ear_size),
        ear_rotation=_rotation_y(-params.ear_angle_deg) @ _rotation_x(-12.0),
        neck_top=(0.0, -30.0, -8.0),
        neck_bottom=(0.0, chin_y - 130.0, -2.0),
        neck_radius=56.0 * params.neck_width,
        neck_cut_y=chin_y - 14.0 - 62.0,
    )


def _blend(
    sdf: torch.Tensor,
    points: torch.Tensor,
    bound: tuple,
    k: float,
    feature: Callable[[torch.Tensor], torch.Tensor],
    subtract: bool = False,
) -> torch.Tensor:
    """Smoothly add (or carve) a local feature, evaluating it only where it can change ``sdf``.

    The feature lies inside the sphere ``bound = (center, radius)``, so its distance is at least
    ``|p - center| - radius``; a smooth union with blend width ``k`` leaves ``sdf`` unchanged
    where that exceeds ``sdf + k``, a smooth subtraction where it exceeds ``k - sdf``. The result
    is the same as evaluating the feature everywhere, at a fraction of the cost.
    """
    center, radius = bound
    reach = (points - _vec(center, points)).norm(dim=-1) - radius
    idx = torch.nonzero(reach < (k - sdf if subtract else sdf + k)).squeeze(1)
    if idx.numel() == 0:
        return sdf
    distance = feature(points[idx])
    current = sdf[idx]
    if subtract:
        blended = _smooth_subtract(current, distance, k)
    elif k > 0:
        blended = _smooth_union(current, distance, k)
    else:
        blended = torch.minimum(current, distance)
    return sdf.index_put((idx,), blended)


def _sphere_around(points, pad: float) -> tuple:
    """A bounding sphere (center, radius) of ``points`` grown by ``pad``."""
    pts = np.atleast_2d(np.asarray(points, dtype=np.float64))
    center = 0.5 * (pts.min(axis=0) + pts.max(axis=0))
    return tuple(center), float(np.linalg.norm(pts - center, axis=1).max()) + pad


def _ellipsoid_bound(ellipsoid: tuple) -> tuple:
    # The ellipsoid approximation is not an exact distance: leave a margin.
    center, radii = ellipsoid
    return tuple(center), 1.15 * max(radii) + 1.0


def _ellipsoid_of(ellipsoid: tuple) -> Callable[[torch.Tensor], torch.Tensor]:
    return lambda q: _ellipsoid(q, *ellipsoid)


def _canonical_sdf(p: torch.Tensor, params: HeadParams) -> torch.Tensor:
    """Signed distance (mm, negative inside) of the head at canonical points ``p`` [P, 3] (mm)."""
    a = _anatomy(params)
    # Every feature is symmetric or modelled on the subject's left: evaluate at (|x|, y, z).
    m = torch.stack([p[:, 0].abs(), p[:, 1], p[:, 2]], dim=-1)

    sdf = _ellipsoid(m, *a.cranium)
    neck = _capsule(m, a.neck_top, a.neck_bottom, a.neck_radius, a.neck_radius + 4.0)
    sdf = _smooth_union(sdf, neck, 24.0)
    sdf = _blend(sdf, m, _ellipsoid_bound(a.maxilla), 28.0, _ellipsoid_of(a.maxilla))
    sdf = _blend(sdf, m, _ellipsoid_bound(a.cheekbone), 14.0, _ellipsoid_of(a.cheekbone))

    # Lower jaw: the mandible's underside and the chin.
    sdf = _blend(sdf, m, _ellipsoid_bound(a.under_jaw), 22.0, _ellipsoid_of(a.under_jaw))
    sdf = _blend(sdf, m, _ellipsoid_bound(a.chin), 14.0, _ellipsoid_of(a.chin))

    # Mouth: a muzzle, two lips and the slit between them.
    sdf = _blend(sdf, m, _ellipsoid_bound(a.muzzle), 12.0, _ellipsoid_of(a.muzzle))
    lips_bound = _sphere_around([a.mouth_corner, a.upper_lip, a.lower_lip], max(a.lip_radii))
    sdf = _blend(sdf, m, lips_bound, 3.0, lambda q: _lips_sdf(q, a))
    slit = ((0.0, a.stomion_y, a.upper_lip[2] + 2.0), (a.mouth_corner[0] - 1.0, 1.0, 9.0))
    sdf = _blend(sdf, m, _ellipsoid_bound(slit), 1.5, _ellipsoid_of(slit), subtract=True)

    # Brow ridge, eye sockets, lids and eyeballs.
    brow_bound = _sphere_around([a.brow_inner, a.brow_outer], a.brow_radius)
    sdf = _blend(
        sdf,
        m,
        brow_bound,
        14.0,
        lambda q: _capsule(q, a.brow_inner, a.brow_outer, a.brow_radius, 0.9 * a.brow_radius),
    )
    sdf = _blend(sdf, m, _ellipsoid_bound(a.socket), 10.0, _ellipsoid_of(a.socket), subtract=True)
    lids_bound = _sphere_around([a.upper_lid[0], a.lower_lid[0]], 1.15 * 15.0 + 1.0)
    sdf = _blend(
        sdf,
        m,
        lids_bound,
        3.0,
        lambda q: _smooth_union(_ellipsoid(q, *a.upper_lid), _ellipsoid(q, *a.lower_lid), 2.0),
    )
    sdf = _blend(
        sdf,
        m,
        (a.eye_center, a.eye_radius),
        0.0,
        lambda q: (q - _vec(a.eye_center, q)).norm(dim=-1) - a.eye_radius,
    )

    nose_bound = _sphere_around([a.nasion, a.nose_tip, a.alar, a.subnasale], 12.0)
    sdf = _blend(sdf, m, nose_bound, 5.0, lambda q: _nose_sdf(q, a))

    # Ears: turned out from the side of the head, a bowl carved in their outer face.
    concha_center = np.array(a.ear_center) + a.ear_rotation @ np.array(
        [4.0, -0.1 * a.ear_radii[1], 0.1 * a.ear_radii[2]]
    )
    concha_radii = (3.5, 0.48 * a.ear_radii[1], 0.55 * a.ear_radii[2])

    def ear(q: torch.Tensor) -> torch.Tensor:
        shell = _rotated_ellipsoid(q, a.ear_center, a.ear_radii, a.ear_rotation)
        bowl = _rotated_ellipsoid(q, concha_center, concha_radii, a.ear_rotation)
        return _smooth_subtract(shell, bowl, 2.0)

    sdf = _blend(sdf, m, _ellipsoid_bound((a.ear_center, a.ear_radii)), 4.0, ear)

    # Neck cut flat at the bottom.
    return torch.maximum(sdf, a.neck_cut_y - p[:, 1])


def _lips_sdf(m: torch.Tensor, a: _Anatomy) -> torch.Tensor:
    """Both lips (mm) at mirrored points: rounded segments from the mouth corner to the middle."""
    corner, upper, lower = a.lip_radii
    upper_lip = _capsule(m, a.mouth_corner, a.upper_lip, corner, upper)
    lower_lip = _capsule(m, a.mouth_corner, a.lower_lip, corner, lower)
    return _smooth_union(upper_lip, lower_lip, 2.0)


def _nose_sdf(m: torch.Tensor, a: _Anatomy) -> torch.Tensor:
    """The nose (mm) at mirrored points: bridge, tip, alae, base, nostrils carved."""
    nw = a.nose_width
    hump = 0.6 * np.array(a.nasion) + 0.4 * np.array(a.nose_tip)
    hump = (0.0, hump[1], hump[2] + 3.0 * a.nose_hump)
    bridge = _smooth_union(
        _capsule(m, a.nasion, hump, 5.5, 6.0 * nw),
        _capsule(m, hump, a.nose_tip, 6.0 * nw, 7.0 * nw),
        4.0,
    )
    # The body fills the wedge between the bridge and the face.
    body_center = (0.0, 0.5 * (a.nasion[1] + a.subnasale[1]), a.nasion[2] + 2.0)
    body_radii = (10.0 * nw, 0.5 * (a.nasion[1] - a.subnasale[1]) + 2.0, 11.0)
    bridge = _smooth_union(bridge, _ellipsoid(m, body_center, body_radii), 6.0)
    tip = (m - _vec(a.nose_tip, m)).norm(dim=-1) - 8.5 * nw
    ala = _ellipsoid(m, a.alar, (6.5 * nw, 5.5, 7.5))
    base = _capsule(m, a.nose_tip, a.subnasale, 6.5 * nw, 5.5)
    nose = _smooth_union(_smooth_union(bridge, tip, 4.0), _smooth_union(ala, base, 4.0), 4.0)
    nostril = _ellipsoid(
        m, (a.alar[0] - 5.0 * nw, a.alar[1] - 5.5, a.alar[2] + 3.0), (3.5 * nw, 2.5, 5.0)
    )
    return _smooth_subtract(nose, nostril, 1.0)


def head_sdf(points: torch.Tensor, params: HeadParams) -> torch.Tensor:
    """Signed distance of the synthetic head (negative inside), world units.

    Args:
        points: [P, 3] world points (face along +Z, up +Y).
        params: the head identity and placement (:func:`sample_head_params`).

    Returns:
        [P] signed distances in world units (exact on the surface, a close bound elsewhere).
    """
    canonical = points * params.mm_per_unit + _vec(params.center_mm, points)
    return _canonical_sdf(canonical, params) / params.mm_per_unit


# --------------------------------------------------------------------------------------------
# Albedo
# --------------------------------------------------------------------------------------------


def srgb_to_linear(srgb: torch.Tensor) -> torch.Tensor:
    """sRGB in [0, 1] -> linear RGB."""
    return torch.where(srgb <= 0.04045, srgb / 12.92, ((srgb + 0.055) / 1.055) ** 2.4)


def linear_to_srgb(linear: torch.Tensor) -> torch.Tensor:
    """Linear RGB -> sRGB in [0, 1] (clipped)."""
    x = linear.clamp(0.0, 1.0)
    return torch.where(x <= 0.0031308, 12.92 * x, 1.055 * x.clamp_min(1e-12) ** (1 / 2.4) - 0.055)


def _smoothstep(edge0: float, edge1: float, x: torch.Tensor) -> torch.Tensor:
    t = ((x - edge0) / (edge1 - edge0)).clamp(0.0, 1.0)
    return t * t * (3.0 - 2.0 * t)


def _colour(srgb255, like: torch.Tensor) -> torch.Tensor:
    return srgb_to_linear(_vec(srgb255, like) / 255.0)


def _wave_noise(p: torch.Tensor, phases, wavelength_mm: float) -> torch.Tensor:
    """Smooth pseudo-random variation in [-1, 1] (sum of three oblique sine products)."""
    k = 2 * math.pi / wavelength_mm
    x, y, z = p.unbind(-1)
    n = (
        torch.sin(k * (0.8 * x + 0.6 * y) + phases[0])
        * torch.sin(k * (0.7 * z - 0.3 * y) + phases[1])
        + torch.sin(k * (0.5 * x - 0.9 * z) + phases[2]) * torch.sin(k * 1.3 * y + phases[3])
        + torch.sin(k * (1.1 * z + 0.4 * x) + phases[4]) * torch.sin(k * (0.9 * x - 0.5 * y))
    )
    return n / 3.0


def _interp(x: torch.Tensor, xp, fp) -> torch.Tensor:
    """Piecewise-linear interpolation of the table (xp, fp) at ``x`` (clamped at the ends)."""
    xp_t, fp_t = _vec(xp, x), _vec(fp, x)
    idx = torch.bucketize(x.clamp(xp[0], xp[-1]), xp_t[1:-1])
    x0, x1, f0, f1 = xp_t[idx], xp_t[idx + 1], fp_t[idx], fp_t[idx + 1]
    return f0 + (f1 - f0) * ((x.clamp(xp[0], xp[-1]) - x0) / (x1 - x0))


HAIRLINE_MM = (
    (0.0, 30.0, 55.0, 75.0, 90.0, 110.0, 135.0, 180.0),
    (76.0, 74.0, 66.0, 42.0, 36.0, 18.0, -14.0, -24.0),
)
"""Hairline height (canonical y, mm) against the azimuth (degrees, 0 = forehead) around the
cranium's vertical axis."""


def head_albedo(points: torch.Tensor, params: HeadParams) -> torch.Tensor:
    """Procedural diffuse albedo (linear RGB) at world points on or near the head surface.

    Skin with gentle variation and redder cheeks and lips, hair on the top and back of the
    cranium, brows, eyes with white sclera, coloured iris and dark pupil.

    Args:
        points: [P, 3] world points.
        params: head identity.

    Returns:
        [P, 3] linear RGB albedo in [0, 1].
    """
    p = points * params.mm_per_unit + _vec(params.center_mm, points)
    a = _anatomy(params)
    m = torch.stack([p[:, 0].abs(), p[:, 1], p[:, 2]], dim=-1)
    phases = params.noise_phases
    n = len(p)

    skin = _colour(params.skin_srgb, p).expand(n, 3)
    skin = skin * (1.0 + 0.07 * _wave_noise(p, phases[:5], 45.0))[:, None]
    cheek = torch.exp(-((m - _vec((40.0, -12.0, 74.0), p)) ** 2).sum(-1) / (2 * 15.0**2))
    nose = torch.exp(-((p - _vec(a.nose_tip, p)) ** 2).sum(-1) / (2 * 10.0**2))
    redness = params.cheek_redness * (0.35 * cheek + 0.2 * nose)
    skin = skin * (1.0 + (_vec((1.0, 0.8, 0.8), p) - 1.0) * redness[:, None])
    albedo = skin

    # Lips: a redder, darker version of the skin on the lip primitives.
    lip_weight = (1.0 - _smoothstep(0.2, 1.5, _lips_sdf(m, a))) * _smoothstep(
        a.mouth_corner[2] - 6.0, a.mouth_corner[2] - 2.0, p[:, 2]
    )
    lip_tint = _vec((0.9, 0.5, 0.5), p) ** params.lip_redness
    albedo = torch.lerp(albedo, skin * lip_tint, lip_weight[:, None])

    # Hair: above a hairline that is high on the forehead and low at the nape, not on the ears.
    cranium_center = a.cranium[0]
    azimuth = torch.rad2deg(torch.atan2(m[:, 0], p[:, 2] - cranium_center[2]))
    hairline = _interp(azimuth, *HAIRLINE_MM) + params.hairline_shift_mm
    ear_center, ear_radii = a.ear_center, a.ear_radii
    near_ear = _ellipsoid(m, ear_center, (12.0, ear_radii[1] + 4.0, ear_radii[2] + 4.0))
    hair_weight = _smoothstep(-2.5, 2.5, p[:, 1] - hairline) * _smoothstep(0.0, 3.0, near_ear)
    strands = _wave_noise(p * _vec((3.0, 0.5, 3.0), p), phases[5:], 10.0)
    hair = _colour(params.hair_srgb, p) * (1.0 + 0.2 * strands)[:, None]
    albedo = torch.lerp(albedo, hair, hair_weight[:, None])

    # Brows: an arched band along the brow ridge.
    inner, outer = a.brow_inner, a.brow_outer
    along = ((m[:, 0] - inner[0]) / (outer[0] - inner[0])).clamp(0.0, 1.0)
    brow_y = inner[1] + 2.0 + 3.0 * torch.sin(math.pi * along) - 3.0 * along
    half_height = 3.5 - 1.5 * along
    brow_weight = (
        (1.0 - _smoothstep(0.0, 1.5, (p[:, 1] - brow_y).abs() - half_height))
        * _smoothstep(inner[0] - 5.0, inner[0], m[:, 0])
        * (1.0 - _smoothstep(outer[0] - 3.0, outer[0] + 2.0, m[:, 0]))
        * _smoothstep(outer[2] - 8.0, outer[2] - 2.0, p[:, 2])
    )
    brow_colour = _colour(params.hair_srgb, p) * 0.8
    albedo = torch.lerp(albedo, brow_colour.expand(n, 3), 0.85 * brow_weight[:, None])

    # Eyes: white sclera, coloured iris with a darker rim, black pupil on the eyeball sphere.
    to_eye = m - _vec(a.eye_center, p)
    eye_distance = to_eye.norm(dim=-1)
    on_eye = (eye_distance - a.eye_radius).abs() < 0.5
    gaze = F.normalize(_vec((0.06, 0.0, 1.0), p), dim=0)
    cos_gaze = (to_eye @ gaze) / eye_distance.clamp_min(1e-6)
    iris_weight = _smoothstep(0.825, 0.845, cos_gaze)[:, None]
    rim_weight = (1.0 - _smoothstep(0.845, 0.88, cos_gaze))[:, None] * iris_weight
    iris = _colour(params.iris_srgb, p) * (1.0 - 0.5 * rim_weight)
    eye_colour = torch.lerp(_colour((225, 218, 210), p).expand(n, 3), iris, iris_weight)
    pupil_weight = _smoothstep(0.962, 0.972, cos_gaze)[:, None]
    eye_colour = torch.lerp(eye_colour, _colour((12, 10, 10), p).expand(n, 3), pupil_weight)
    return torch.where(on_eye[:, None], eye_colour, albedo).clamp(0.0, 1.0)


# --------------------------------------------------------------------------------------------
# SDF grid: narrow-band sampling of the analytic SDF, for tracing and marching cubes
# --------------------------------------------------------------------------------------------


@dataclass
class SdfGrid:
    """The head SDF sampled on a cube of nodes.

    Attributes:
        values: [R, R, R] world-unit signed distances indexed [z, y, x] (grid_sample's order).
        bound: the grid spans [-bound, bound]^3 (world units).
    """

    values: torch.Tensor
    bound: float

    @property
    def spacing(self) -> float:
        return 2.0 * self.bound / (self.values.shape[0] - 1)

    def sample(self, points: torch.Tensor) -> torch.Tensor:
        """Trilinearly interpolated SDF at [P, 3] world points -> [P]."""
        coords = (points / self.bound).to(self.values.dtype).view(1, -1, 1, 1, 3)
        out = F.grid_sample(
            self.values[None, None],
            coords,
            mode="bilinear",
            padding_mode="border",
            align_corners=True,
        )
        return out.view(-1)


@_single_threaded()
def build_sdf_grid(
    params: HeadParams, resolution: int = 160, bound: float = 1.0, coarse: int = 49
) -> SdfGrid:
    """Sample :func:`head_sdf` on a ``resolution``^3 grid over [-bound, bound]^3.

    The SDF is evaluated exactly on a coarse grid and then on the fine nodes within a band
    around the surface; farther fine nodes keep the coarse grid's interpolation (there only the
    sign and a rough distance matter).
    """
    axis_c = torch.linspace(-bound, bound, coarse, dtype=torch.float32)
    zc, yc, xc = torch.meshgrid(axis_c, axis_c, axis_c, indexing="ij")
    nodes_c = torch.stack([xc, yc, zc], dim=-1).reshape(-1, 3)
    values_c = head_sdf(nodes_c, params).reshape(coarse, coarse, coarse)
    fine = F.interpolate(
        values_c[None, None], size=(resolution,) * 3, mode="trilinear", align_corners=True
    )[0, 0]
    # A fine node within one fine cell of the surface has a coarse interpolation below this.
    band = 1.2 * math.sqrt(3.0) * (2.0 * bound / (coarse - 1) + 2.0 * bound / (resolution - 1))
    idx = torch.nonzero(fine.abs() < band)
    axis = torch.linspace(-bound, bound, resolution, dtype=torch.float32)
    nodes = torch.stack([axis[idx[:, 2]], axis[idx[:, 1]], axis[idx[:, 0]]], dim=-1)
    exact = torch.cat([head_sdf(chunk, params) for chunk in nodes.split(1 << 18)])
    fine[idx[:, 0], idx[:, 1], idx[:, 2]] = exact
    return SdfGrid(fine, bound)


def extract_head_mesh(grid: SdfGrid, params: HeadParams):
    """Marching cubes of the SDF grid (world frame), without the flat cap under the neck.

    Returns:
        A ``trimesh.Trimesh`` with outward-facing triangles.
    """
    import trimesh
    from skimage.measure import marching_cubes

    values = grid.values.numpy()
    verts_zyx, faces, _, _ = marching_cubes(values, level=0.0, spacing=(grid.spacing,) * 3)
    vertices = verts_zyx[:, ::-1] - grid.bound
    faces = faces[:, ::-1]  # swapping x and z mirrors the winding back
    mesh = trimesh.Trimesh(vertices, faces, process=False)
    cut_y = (_anatomy(params).neck_cut_y - params.center_mm[1]) / params.mm_per_unit
    on_cap = np.all(mesh.vertices[mesh.faces][:, :, 1] < cut_y + 0.5 * grid.spacing, axis=1)
    cap = on_cap & (mesh.face_normals[:, 1] < -0.5)
    mesh.update_faces(~cap)
    mesh.remove_unreferenced_vertices()
    return mesh


# --------------------------------------------------------------------------------------------
# Cameras and rendering
# --------------------------------------------------------------------------------------------


def look_at_c2w(center: np.ndarray, target=(0.0, 0.0, 0.0), up=UP) -> np.ndarray:
    """OpenCV camera-to-world matrix of a camera at ``center`` looking at ``target``."""
    center = np.asarray(center, dtype=np.float64)
    forward = np.asarray(target, dtype=np.float64) - center
    forward /= np.linalg.norm(forward)
    right = np.cross(forward, up)
    right /= np.linalg.norm(right)
    down = np.cross(forward, right)
    c2w = np.eye(4)
    c2w[:3, 0], c2w[:3, 1], c2w[:3, 2], c2w[:3, 3] = right, down, forward, center
    return c2w


def ring_layout(n_views: int, rig: RigConfig = RigConfig()) -> tuple[list[int], list[float]]:
    """Views per ring (split evenly, earlier rings get the remainder) and each ring's first
    azimuth (degrees; default: half a step on every other ring, i.e. 0/18/0 for 10 per ring)."""
    n_rings = len(rig.elevations_deg)
    counts = [n_views // n_rings + (1 if r < n_views % n_rings else 0) for r in range(n_rings)]
    if rig.ring_azimuth_offsets_deg is not None:
        return counts, [float(v) for v in rig.ring_azimuth_offsets_deg]
    offsets = [0.5 * 360.0 / max(c, 1) if r % 2 == 1 else 0.0 for r, c in enumerate(counts)]
    return counts, offsets


def ring_cameras(
    n_views: int, width: int, height: int, rig: RigConfig = RigConfig()
) -> tuple[Cameras, np.ndarray, np.ndarray]:
    """Cameras on rings around the origin, looking at it (world up +Y), ring by ring.

    Returns:
        cameras: the views, ring by ring, azimuth increasing from the ring's offset;
            ``fy = (H / 2) / tan(fov_y / 2)``, principal point at the image centre.
        azimuths_deg: [N] in [-180, 180) (0 = in front of the face, positive towards +X).
        elevations_deg: [N].
    """
    counts, offsets = ring_layout(n_views, rig)
    fy = 0.5 * height / math.tan(math.radians(rig.fov_y_deg) / 2.0)
    K = np.array([[fy, 0.0, (width - 1) / 2.0], [0.0, fy, (height - 1) / 2.0], [0.0, 0.0, 1.0]])
    c2ws, azimuths, elevations = [], [], []
    for elevation, count, offset in zip(rig.elevations_deg, counts, offsets, strict=True):
        for k in range(count):
            azimuth = (offset + k * 360.0 / count + 180.0) % 360.0 - 180.0
            az, el = math.radians(azimuth), math.radians(elevation)
            center = rig.distance * np.array(
                [math.cos(el) * math.sin(az), math.sin(el), math.cos(el) * math.cos(az)]
            )
            c2ws.append(look_at_c2w(center))
            azimuths.append(azimuth)
            elevations.append(float(elevation))
    cameras = Cameras(np.repeat(K[None], n_views, axis=0), np.stack(c2ws), width, height)
    return cameras, np.array(azimuths), np.array(elevations)


def trace_sdf_grid(
    grid: SdfGrid,
    origins: torch.Tensor,
    directions: torch.Tensor,
    max_steps: int = 160,
    epsilon: float = 2e-4,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Sphere-trace rays through the SDF grid.

    Args:
        grid: the sampled SDF.
        origins, directions: [B, 3] world rays (unit directions).

    Returns:
        t: [B] distance to the first surface hit (undefined where not hit).
        hit: [B] bool.
    """
    near, far, meets = ray_sphere_intersect(origins, directions, radius=0.98 * grid.bound)
    t = near.clone()
    hit = torch.zeros(len(origins), dtype=torch.bool)
    active = torch.nonzero(meets).squeeze(1)
    for _ in range(max_steps):
        if active.numel() == 0:
            break
        t_active = t[active]
        distance = grid.sample(origins[active] + t_active[:, None] * directions[active])
        t_active = t_active + 0.9 * distance
        t[active] = t_active
        converged = distance.abs() < epsilon
        hit[active[converged]] = True
        active = active[~converged & (t_active < far[active])]
    return t, hit


def shade(albedo: torch.Tensor, normals: torch.Tensor) -> torch.Tensor:
    """Lambertian radiance (linear RGB) under :data:`LIGHTS` and :data:`AMBIENT`.

    Args:
        albedo: [P, 3] linear RGB; normals: [P, 3] unit world normals.
    """
    irradiance = _vec(AMBIENT, albedo).expand_as(albedo).clone()
    for light in LIGHTS:
        direction = F.normalize(_vec(light.direction, albedo), dim=0)
        irradiance = irradiance + (normals @ direction).clamp_min(0.0)[:, None] * _vec(
            light.rgb, albedo
        )
    return albedo * irradiance


def surface_normals(points: torch.Tensor, params: HeadParams) -> torch.Tensor:
    """Unit outward normals of the analytic head SDF at [P, 3] world points (autograd)."""
    with torch.enable_grad():
        x = points.detach().clone().requires_grad_(True)
        (gradient,) = torch.autograd.grad(head_sdf(x, params).sum(), x)
    return F.normalize(gradient, dim=-1)


@dataclass
class Rendering:
    """Rendered views.

    Attributes:
        images: [N, H, W, 3] float32 sRGB in [0, 1] on black.
        masks: [N, H, W] bool (pixel coverage > 0.5).
        coverage: [N, H, W] float32 fraction of sub-pixels that hit the head.
    """

    images: np.ndarray
    masks: np.ndarray
    coverage: np.ndarray


@_single_threaded()
def render_head(
    params: HeadParams,
    cameras: Cameras,
    grid: SdfGrid,
    supersample: int = 4,
    on_view: Callable[[int, torch.Tensor, torch.Tensor], None] | None = None,
    progress: Callable[[int], None] | None = None,
) -> Rendering:
    """Render the head from every camera by sphere tracing, supersampled ``s x s`` per pixel.

    Args:
        params: head identity.
        cameras: N cameras (world frame).
        grid: the head SDF on a grid (:func:`build_sdf_grid`), used to find the surface; normals
            and albedo come from the analytic functions at the hit points.
        supersample: sub-pixels per pixel side; radiance is averaged in linear RGB.
        on_view: optional callback ``(view index, t [H*s, W*s], hit [H*s, W*s])``.
        progress: optional callback called with the number of views just finished.
    """
    s = int(supersample)
    H, W = cameras.height, cameras.width
    rows = (torch.arange(H * s, dtype=torch.float64) + 0.5) / s - 0.5
    cols = (torch.arange(W * s, dtype=torch.float64) + 0.5) / s - 0.5
    rr, cc = torch.meshgrid(rows, cols, indexing="ij")
    rr, cc = rr.reshape(-1), cc.reshape(-1)
    images = np.zeros((len(cameras), H, W, 3), dtype=np.float32)
    coverage = np.zeros((len(cameras), H, W), dtype=np.float32)
    for i in range(len(cameras)):
        K = torch.from_numpy(cameras.K[i])
        c2w = torch.from_numpy(cameras.c2w[i])
        origins, directions = pixel_rays(K, c2w, rr, cc)
        origins, directions = origins.float(), directions.float()
        t, hit = trace_sdf_grid(grid, origins, directions)
        radiance = torch.zeros(len(origins), 3)
        points = origins[hit] + t[hit, None] * directions[hit]
        if len(points):
            normals = surface_normals(points, params)
            radiance[hit] = shade(head_albedo(points, params), normals)
        image = radiance.view(H, s, W, s, 3).mean(dim=(1, 3))
        images[i] = linear_to_srgb(image).numpy()
        coverage[i] = hit.float().view(H, s, W, s).mean(dim=(1, 3)).numpy()
        if on_view is not None:
            on_view(i, t.view(H * s, W * s), hit.view(H * s, W * s))
        if progress is not None:
            progress(1)
    return Rendering(images, coverage > 0.5, coverage)


# --------------------------------------------------------------------------------------------
# Landmarks, views and the dataset folder
# --------------------------------------------------------------------------------------------


def _trace_exact(
    params: HeadParams, origins: np.ndarray, direction, max_steps: int = 200
) -> np.ndarray:
    """First surface points of the analytic SDF along rays from ``origins`` [R, 3] (world)."""
    o = torch.as_tensor(origins, dtype=torch.float64)
    d = F.normalize(torch.as_tensor(direction, dtype=torch.float64), dim=0).expand_as(o)
    t = torch.zeros(len(o), dtype=torch.float64)
    for _ in range(max_steps):
        distance = head_sdf(o + t[:, None] * d, params)
        t = t + 0.9 * distance
        if bool((distance.abs() < 1e-7).all()):
            break
    return (o + t[:, None] * d).numpy()


def head_landmarks(params: HeadParams) -> dict[str, list[float]]:
    """H3DS landmark names (+ chin) on the head surface, world coordinates.

    Each landmark is the first surface point seen from the front (+Z) at the landmark's
    canonical height; the nose tip is the most forward point of the nose's midline.
    """
    a = _anatomy(params)
    ex, ey, _ = a.eye_center
    targets_mm = {
        "right_eye": (-ex, ey),
        "left_eye": (ex, ey),
        "nose_base": (0.0, a.subnasale[1]),
        "right_lips": (-a.mouth_corner[0], a.stomion_y),
        "left_lips": (a.mouth_corner[0], a.stomion_y),
        "chin": (0.0, a.chin[0][1] - 0.5 * a.chin[1][1]),
    }
    tip_rows = np.arange(a.nose_tip[1] - 15.0, a.nose_tip[1] + 15.0, 0.5)
    starts_mm = [(x, y, 0.0) for x, y in targets_mm.values()] + [(0.0, y, 0.0) for y in tip_rows]
    starts = params.to_world(np.array(starts_mm))
    starts[:, 2] = 1.0
    hits = _trace_exact(params, starts, (0.0, 0.0, -1.0))
    landmarks = {name: hits[i].tolist() for i, name in enumerate(targets_mm)}
    nose_column = hits[len(targets_mm) :]
    landmarks["nose_tip"] = nose_column[np.argmax(nose_column[:, 2])].tolist()
    order = ["right_eye", "left_eye", "nose_tip", "nose_base", "right_lips", "left_lips", "chin"]
    return {name: landmarks[name] for name in order}


def face_region_dict(params: HeadParams, vertices: np.ndarray) -> dict:
    """The face_region.json content: the H3DS face sphere around the nose tip, its box,
    landmarks and scale (same schema as the shared heads)."""
    landmarks = head_landmarks(params)
    center = np.array(landmarks["nose_tip"])
    radius = FACE_SPHERE_MM / params.mm_per_unit
    inside = vertices[np.linalg.norm(vertices - center, axis=1) < radius]
    return {
        "type": "sphere",
        "sphere_center": center.tolist(),
        "sphere_radius": radius,
        "definition": (
            f"H3DS 'face_sphere': sphere of radius {FACE_SPHERE_MM:g} mm centred at the nose tip "
            "(world units; crop = keep points with |p - center| < radius)"
        ),
        "box_min": inside.min(axis=0).tolist(),
        "box_max": inside.max(axis=0).tolist(),
        "box_definition": "axis-aligned bounding box of the GT vertices inside the sphere",
        "forward": list(FORWARD),
        "up": list(UP),
        "landmarks": landmarks,
        "landmarks_definition": "H3DS landmark names (+ chin), world coordinates",
        "mm_per_unit": params.mm_per_unit,
    }


def _angle_deg(a: np.ndarray, b) -> float:
    cosine = np.dot(a, b) / (np.linalg.norm(a) * np.linalg.norm(b))
    return float(np.degrees(np.arccos(np.clip(cosine, -1.0, 1.0))))


def views_dict(
    cameras: Cameras,
    azimuths_deg: np.ndarray,
    elevations_deg: np.ndarray,
    names: list[str],
    face_visible: list[float],
) -> dict:
    """The views.json content: sensitive (face visible) and neutral views, as the shared heads."""
    views = []
    for i, center in enumerate(cameras.centers):
        angle = _angle_deg(center, FORWARD)
        views.append(
            {
                "index": i,
                "file": f"{names[i]}.png",
                "azimuth_deg": float(azimuths_deg[i]),
                "elevation_deg": float(elevations_deg[i]),
                "angle_to_forward_deg": angle,
                "sensitive": angle <= SENSITIVE_THRESHOLD_DEG,
                "face_visible_fraction": float(face_visible[i]),
                "camera_center": center.tolist(),
            }
        )
    sensitive = [v["index"] for v in views if v["sensitive"]]
    neutral = [v["index"] for v in views if not v["sensitive"]]
    return {
        "forward": list(FORWARD),
        "up": list(UP),
        "sensitive_threshold_deg": SENSITIVE_THRESHOLD_DEG,
        "rule": (
            "sensitive = angle between (camera centre - head centre) and the face forward "
            "direction <= threshold, i.e. the face is visible; neutral = back-of-head views"
        ),
        "face_visible_fraction": (
            "fraction of frontal-face GT vertices (inside the face sphere, normal within 72.5 deg "
            "of forward) that are unoccluded and front-facing in the view"
        ),
        "n_views": len(views),
        "n_sensitive": len(sensitive),
        "n_neutral": len(neutral),
        "sensitive_indices": sensitive,
        "neutral_indices": neutral,
        "views": views,
    }


class _FaceVisibility:
    """Per-view fraction of frontal-face vertices that are front-facing and unoccluded,
    measured against the traced depth of the supersampled render."""

    def __init__(self, cameras: Cameras, supersample: int, vertices, normals, face_region):
        center = np.array(face_region["sphere_center"])
        frontal = (np.linalg.norm(vertices - center, axis=1) < face_region["sphere_radius"]) & (
            normals @ np.array(FORWARD) >= math.cos(math.radians(72.5))
        )
        self.points, self.normals = vertices[frontal], normals[frontal]
        self.cameras = cameras.scaled(cameras.width * supersample, cameras.height * supersample)
        self.fractions = [0.0] * len(cameras)
        self.tolerance = 0.01

    def __call__(self, index: int, t: torch.Tensor, hit: torch.Tensor) -> None:
        if len(self.points) == 0:
            return
        center = self.cameras.centers[index]
        uv, depth = self.cameras.subset([index]).project(self.points)
        cols = np.clip(np.round(uv[0, :, 0]).astype(int), 0, hit.shape[1] - 1)
        rows = np.clip(np.round(uv[0, :, 1]).astype(int), 0, hit.shape[0] - 1)
        distance = np.linalg.norm(self.points - center, axis=1)
        facing = np.einsum("ij,ij->i", self.normals, center - self.points) > 0
        traced = t.numpy()[rows, cols]
        seen = hit.numpy()[rows, cols] & (traced >= distance - self.tolerance) & (depth[0] > 0)
        self.fractions[index] = float(np.mean(facing & seen))


OUTPUT_FILES = (
    "cameras.npz",
    "cameras_sphere.npz",
    "transforms.json",
    "gt_mesh.ply",
    "views.json",
    "face_region.json",
    "meta.json",
)
"""Files :func:`write_synthetic_head` writes beside the ``image/`` and ``mask/`` folders."""


def _prepare_output(out: Path, overwrite: bool) -> None:
    if out.exists() and not out.is_dir():
        raise PrivheadError(f"{out} exists and is not a folder.")
    if out.is_dir() and any(out.iterdir()):
        if not overwrite:
            raise PrivheadError(
                f"{out} is not empty; choose another folder or overwrite it (--overwrite)."
            )
        for folder in ("image", "mask"):
            if (out / folder).is_dir():
                shutil.rmtree(out / folder)
        for name in OUTPUT_FILES:
            (out / name).unlink(missing_ok=True)
    out.mkdir(parents=True, exist_ok=True)


def write_synthetic_head(
    out: Path,
    seed: int = 0,
    n_views: int = 30,
    resolution: int = 64,
    supersample: int = 4,
    overwrite: bool = False,
    progress: Callable[[int], None] | None = None,
    mesh_resolution: int = 160,
) -> Path:
    """Generate the synthetic head of ``seed`` and write it as a dataset folder.

    Layout (as the shared heads): ``image/``, ``mask/`` (0/255), ``cameras.npz`` and
    ``cameras_sphere.npz`` (IDR / NeuS, ``scale_mat`` = identity), ``transforms.json``
    (nerfstudio), ``gt_mesh.ply`` (world frame, neck cap removed), ``views.json``,
    ``face_region.json`` and ``meta.json``.

    Args:
        out: output folder (created; must be empty unless ``overwrite``).
        seed: identity seed (:func:`sample_head_params`).
        n_views: number of cameras, split over the three rings.
        resolution: image width and height in pixels.
        supersample: sub-pixels per pixel side for antialiasing.
        overwrite: replace the outputs of an earlier run in ``out``.
        progress: optional callback called with the number of views just rendered.
        mesh_resolution: marching-cubes grid size for ``gt_mesh.ply``.

    Returns:
        ``out``.
    """
    if n_views < 1 or resolution < 8 or supersample < 1 or mesh_resolution < 32:
        raise PrivheadError(
            "write_synthetic_head needs views >= 1, resolution >= 8, supersample >= 1 and "
            f"mesh_resolution >= 32 (got {n_views}, {resolution}, {supersample}, "
            f"{mesh_resolution})."
        )
    out = Path(out)
    _prepare_output(out, overwrite)
    with _single_threaded():
        _write_head(out, seed, n_views, resolution, supersample, progress, mesh_resolution)
    return out


def _write_head(
    out: Path,
    seed: int,
    n_views: int,
    resolution: int,
    supersample: int,
    progress: Callable[[int], None] | None,
    mesh_resolution: int,
) -> None:
    params = sample_head_params(seed)
    grid = build_sdf_grid(params, resolution=mesh_resolution)
    mesh = extract_head_mesh(grid, params)
    mesh.export(out / "gt_mesh.ply")
    face_region = face_region_dict(params, np.asarray(mesh.vertices))

    rig = RigConfig()
    cameras, azimuths, elevations = ring_cameras(n_views, resolution, resolution, rig)
    visibility = _FaceVisibility(
        cameras,
        supersample,
        np.asarray(mesh.vertices),
        np.asarray(mesh.vertex_normals),
        face_region,
    )
    rendering = render_head(params, cameras, grid, supersample, visibility, progress)
    names = [f"{i:06d}" for i in range(n_views)]
    views = views_dict(cameras, azimuths, elevations, names, visibility.fractions)
    dataset = HeadDataset(
        images=rendering.images,
        cameras=cameras,
        masks=rendering.masks,
        scale_mat=np.eye(4),
        names=names,
        root=out,
        views=views,
        face_region=face_region,
        gt_mesh=out / "gt_mesh.ply",
    )
    write_idr(dataset, out)
    write_transforms(dataset, out)

    counts, offsets = ring_layout(n_views, rig)
    meta = {
        "name": f"privhead_synth_s{seed}",
        "source": {
            "kind": "privhead synthetic head (analytic SDF, procedural albedo)",
            "seed": int(seed),
            "identity_sampling": "numpy.random.default_rng(seed), privhead.data.synthetic",
            "params": asdict(params),
        },
        "mm_per_unit": params.mm_per_unit,
        "normalisation": (
            "bounding-box centre -> origin, farthest point -> "
            f"{HEAD_RADIUS} (conservative, from a 5 mm grid)"
        ),
        "forward": list(FORWARD),
        "up": list(UP),
        "camera_distance": rig.distance,
        "fov_y_deg": rig.fov_y_deg,
        "renderer": {
            "name": "privhead sphere tracer (torch)",
            "supersampling": int(supersample),
            "lights": [
                {"name": light.name, "dir": list(light.direction), "rgb": list(light.rgb)}
                for light in LIGHTS
            ],
            "ambient": list(AMBIENT),
            "shadows": False,
            "shading": "Lambertian, linear RGB, sRGB-encoded PNG",
            "background": "black",
        },
        "gt_mesh": {
            "vertices": int(len(mesh.vertices)),
            "triangles": int(len(mesh.faces)),
            "marching_cubes_resolution": int(mesh_resolution),
            "note": "marching cubes of the analytic SDF over [-1, 1]^3, flat neck cap removed",
        },
        "resolution": [resolution, resolution],
        "n_views": n_views,
        "intrinsics": cameras.K[0].tolist(),
        "rig": {
            "elevations_deg": list(rig.elevations_deg),
            "per_ring": counts,
            "ring_azimuth_offsets_deg": offsets,
        },
    }
    (out / "meta.json").write_text(json.dumps(meta, indent=1) + "\n")
