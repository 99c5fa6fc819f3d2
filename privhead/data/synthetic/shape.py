"""Shape of the synthetic head: identity, SDF primitives, anatomy, ``head_sdf``, landmarks.

First stage of the synthetic-head flow (shape -> albedo -> grid -> tracer -> rig -> writer).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, replace

import numpy as np
import torch
import torch.nn.functional as F

from privhead.data.synthetic._threads import single_threaded

FORWARD = (0.0, 0.0, 1.0)
"""World direction the face looks along."""
UP = (0.0, 1.0, 0.0)
"""World up direction."""
HEAD_RADIUS = 0.95
"""Radius of the origin-centred sphere holding the head (world units)."""


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


@single_threaded()
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
# Landmarks
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
