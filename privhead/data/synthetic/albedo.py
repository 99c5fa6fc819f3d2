"""Colour of the synthetic head: sRGB <-> linear conversions, noise helpers and ``head_albedo``.

Second stage (shape -> albedo -> grid -> tracer -> rig -> writer); reads the anatomy of shape.py.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from privhead.data.synthetic.shape import HeadParams, _anatomy, _ellipsoid, _lips_sdf, _vec
from privhead.privacy.operators import linear_to_srgb, srgb_to_linear  # noqa: F401 (re-exported)


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
