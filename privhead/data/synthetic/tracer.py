"""Rendering of the synthetic head: lights, sphere tracing of the SDF grid, normals, shading.

Fourth stage (shape -> albedo -> grid -> tracer -> rig -> writer).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from privhead.data.cameras import Cameras, pixel_rays, ray_sphere_intersect
from privhead.data.synthetic._threads import single_threaded
from privhead.data.synthetic.albedo import head_albedo, linear_to_srgb
from privhead.data.synthetic.grid import SdfGrid
from privhead.data.synthetic.shape import HeadParams, _vec, head_sdf


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


@single_threaded()
def render_head(
    params: HeadParams,
    cameras: Cameras,
    grid: SdfGrid,
    supersample: int = 4,
    on_view: Callable[[int, torch.Tensor, torch.Tensor], None] | None = None,
    progress: Callable[[int], None] | None = None,
    background: Callable[[int, torch.Tensor, torch.Tensor], torch.Tensor] | None = None,
    on_backdrop: Callable[[int, np.ndarray], None] | None = None,
    albedo_detail: Callable[[torch.Tensor], torch.Tensor] | None = None,
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
        background: optional ``(view index, origins [B, 3], directions [B, 3]) -> [B, 3]``
            linear radiance of the rays that miss the head. The returned images stay on
            black; each view's image in front of the background goes to ``on_backdrop``.
        on_backdrop: ``(view index, [H, W, 3] float32 sRGB)`` receiving the images with the
            background (needs ``background``).
        albedo_detail: optional ``points [P, 3] -> [P, 1]`` factor multiplying the albedo
            (fine skin and hair texture of a photo shoot).
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
            albedo = head_albedo(points, params)
            if albedo_detail is not None:
                albedo = (albedo * albedo_detail(points)).clamp(0.0, 1.0)
            radiance[hit] = shade(albedo, normals)
        image = radiance.view(H, s, W, s, 3).mean(dim=(1, 3))
        if background is not None and on_backdrop is not None:
            backdrop = torch.zeros(len(origins), 3)
            if not bool(hit.all()):
                backdrop[~hit] = background(i, origins[~hit], directions[~hit]).float()
            backdrop = image + backdrop.view(H, s, W, s, 3).mean(dim=(1, 3))
            on_backdrop(i, linear_to_srgb(backdrop).numpy())
        images[i] = linear_to_srgb(image).numpy()
        coverage[i] = hit.float().view(H, s, W, s).mean(dim=(1, 3)).numpy()
        if on_view is not None:
            on_view(i, t.view(H * s, W * s), hit.view(H * s, W * s))
        if progress is not None:
            progress(1)
    return Rendering(images, coverage > 0.5, coverage)
