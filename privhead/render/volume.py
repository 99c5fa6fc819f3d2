"""Ray sampling and VolSDF volume rendering (paper Eq. 1).

The renderer takes tensors and callables, never datasets or trainers:
  1. a gradient-free pass evaluates the (cheap) SDF at uniform samples inside the unit sphere;
  2. importance samples are drawn from the resulting weights, so the expensive pass (colour
     network + back-propagation) runs only where the surface is, plus the ray's near and far ends;
  3. the density between consecutive samples is integrated exactly for a linear SDF
     (:func:`segment_optical_depth`), which keeps few samples accurate.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch

from privhead.config import RenderConfig
from privhead.data.cameras import ray_sphere_intersect
from privhead.field.density import segment_optical_depth

SdfFn = Callable[[torch.Tensor], torch.Tensor]
QueryFn = Callable[[torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor, object]]
"""(points [P, 3], view_dirs [P, 3]) -> (sdf [P], grad f [P, 3], rgb): rgb is either the [P, 3]
colours or a deferred ``shade(index) -> [M, 3]`` (``HeadField.query_deferred``), which the
renderer calls only for the samples that can be seen."""


def compositing_weights(optical_depth: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Weights and transmittance from per-segment optical depths.

    w_j = T_j (1 - exp(-tau_j)) with T_j = exp(-sum_{k<j} tau_k).

    Args:
        optical_depth: [R, S] tau of each segment, front to back.

    Returns:
        weights: [R, S]; transmittance: [R, S] (before each segment).
    """
    cum = torch.cumsum(optical_depth, dim=-1)
    transmittance = torch.exp(-(cum - optical_depth))
    alpha = 1.0 - torch.exp(-optical_depth)
    return transmittance * alpha, transmittance


def segment_weights(t: torch.Tensor, sdf: torch.Tensor, beta: torch.Tensor) -> torch.Tensor:
    """[R, K - 1] compositing weights of the segments between consecutive samples.

    Args:
        t: [R, K] sorted sample distances; sdf: [R, K] SDF at the samples; beta: Laplace scale.
    """
    lengths = (t[:, 1:] - t[:, :-1]).clamp_min(0.0)
    tau = segment_optical_depth(sdf[:, :-1], sdf[:, 1:], lengths, beta)
    return compositing_weights(tau)[0]


def composite(
    t: torch.Tensor,
    sdf: torch.Tensor,
    colors: torch.Tensor,
    beta: torch.Tensor,
    background: float = 0.0,
    weights: torch.Tensor | None = None,
) -> dict[str, torch.Tensor]:
    """Volume-render samples along rays.

    Args:
        t: [R, K] sorted sample distances along each ray.
        sdf: [R, K] SDF at the samples.
        colors: [R, K, 3] colour at the samples (a segment takes the mean of its two ends).
        beta: scalar Laplace scale of the VolSDF density.
        background: background colour seen through the remaining transmittance.
        weights: :func:`segment_weights` of (t, sdf, beta) when the caller already has them.

    Returns:
        dict with ``rgb`` [R, 3], ``opacity`` [R], ``depth`` [R] (expected distance of the
        segments' midpoints, normalised by opacity), ``weights`` [R, K - 1].
    """
    if weights is None:
        weights = segment_weights(t, sdf, beta)
    seg_colors = 0.5 * (colors[:, :-1] + colors[:, 1:])
    opacity = weights.sum(dim=-1)
    rgb = (weights[..., None] * seg_colors).sum(dim=1) + (1.0 - opacity[:, None]) * background
    mids = 0.5 * (t[:, 1:] + t[:, :-1])
    depth = (weights * mids).sum(dim=-1) / opacity.clamp_min(1e-6)
    return {"rgb": rgb, "opacity": opacity, "depth": depth, "weights": weights}


def sample_pdf(bins: torch.Tensor, weights: torch.Tensor, n: int, jitter: bool) -> torch.Tensor:
    """Inverse-transform sampling of piecewise-constant densities.

    Args:
        bins: [R, B + 1] sorted bin edges.
        weights: [R, B] non-negative bin weights (need not be normalised).
        n: samples per ray.
        jitter: stratified random positions (training) or bin-centred ones (evaluation).

    Returns:
        [R, n] sorted samples inside the bins.
    """
    pdf = weights / weights.sum(dim=-1, keepdim=True).clamp_min(1e-12)
    cdf = torch.cat([torch.zeros_like(pdf[:, :1]), torch.cumsum(pdf, dim=-1)], dim=-1)
    cdf[:, -1] = 1.0
    u = (torch.arange(n, device=bins.device, dtype=bins.dtype) + 0.5) / n
    u = u.expand(bins.shape[0], n)
    if jitter:
        u = u + (torch.rand_like(u) - 0.5) / n
    u = u.contiguous()
    idx = torch.searchsorted(cdf, u, right=True).clamp(1, cdf.shape[-1] - 1)
    cdf_lo, cdf_hi = cdf.gather(1, idx - 1), cdf.gather(1, idx)
    bin_lo, bin_hi = bins.gather(1, idx - 1), bins.gather(1, idx)
    frac = ((u - cdf_lo) / (cdf_hi - cdf_lo).clamp_min(1e-12)).clamp(0, 1)
    return bin_lo + frac * (bin_hi - bin_lo)


@dataclass
class RaySamples:
    """Sample distances of a batch of rays (all inside the unit sphere)."""

    t: torch.Tensor
    """[R, K] sorted distances."""
    hit: torch.Tensor
    """[R] whether the ray meets the unit sphere at all."""


@torch.no_grad()
def sample_along_rays(
    origins: torch.Tensor,
    directions: torch.Tensor,
    sdf_fn: SdfFn,
    beta: torch.Tensor,
    cfg: RenderConfig,
    jitter: bool,
) -> RaySamples:
    """Place ``cfg.fine_samples`` + 2 samples per ray where the surface is.

    A uniform gradient-free pass over the ray's chord of the unit sphere gives VolSDF weights;
    importance samples follow them (with a small uniform floor so rays that miss still get samples
    spread along the chord); the chord's two ends are always included.

    Args:
        origins, directions: [R, 3] rays (unit directions) in the normalised frame.
        sdf_fn: [P, 3] -> [P] signed distance.
        beta: current Laplace scale.
        cfg: render config.
        jitter: randomise sample positions (training).

    Returns:
        RaySamples with t [R, fine_samples + 2].
    """
    near, far, hit = ray_sphere_intersect(origins, directions, 1.0)
    far = torch.where(hit, far, near + 1e-3)
    n = cfg.coarse_samples
    steps = torch.linspace(0.0, 1.0, n, device=origins.device, dtype=origins.dtype)
    t = near[:, None] + (far - near)[:, None] * steps[None, :]
    if jitter:
        spacing = (far - near)[:, None] / (n - 1)
        t = t + (torch.rand_like(t) - 0.5) * spacing
        t = torch.maximum(torch.minimum(t, far[:, None]), near[:, None])
        t, _ = torch.sort(t, dim=-1)
    points = origins[:, None, :] + directions[:, None, :] * t[..., None]
    sdf = sdf_fn(points.reshape(-1, 3)).reshape(t.shape)
    # Coarse beta is at least half a coarse step so thin shells are not missed.
    coarse_beta = torch.maximum(beta, 0.5 * (far - near).max() / n)
    weights = segment_weights(t, sdf, coarse_beta)
    weights = weights + 1e-3 * weights.sum(dim=-1, keepdim=True) + 1e-5
    fine = sample_pdf(t, weights, cfg.fine_samples, jitter)
    t_all = torch.cat([near[:, None], fine, far[:, None]], dim=-1)
    t_all, _ = torch.sort(t_all, dim=-1)
    return RaySamples(t=t_all, hit=hit)


def sample_shares(weights: torch.Tensor) -> torch.Tensor:
    """[R, K] share of each sample in its pixel, from the [R, K - 1] segment weights: half the
    weights of the segments it ends (:func:`composite` gives a segment the mean colour of its
    two ends)."""
    pad = torch.zeros_like(weights[:, :1])
    return 0.5 * (torch.cat([pad, weights], dim=1) + torch.cat([weights, pad], dim=1))


def _shade_visible(shade, weights: torch.Tensor, threshold: float) -> torch.Tensor:
    """[R * K, 3] colours: the colour network at samples whose share is at least ``threshold``,
    zero (black) at the others."""
    if threshold <= 0:
        return shade(None)
    with torch.no_grad():
        visible = (sample_shares(weights) >= threshold).reshape(-1)
    index = visible.nonzero()[:, 0]
    colours = shade(index)
    return torch.zeros(visible.shape[0], 3, dtype=colours.dtype, device=colours.device).index_copy(
        0, index, colours
    )


def render_rays(
    origins: torch.Tensor,
    directions: torch.Tensor,
    query_fn: QueryFn,
    sdf_fn: SdfFn,
    beta: torch.Tensor,
    cfg: RenderConfig,
    jitter: bool = False,
) -> dict[str, torch.Tensor]:
    """Render colour and opacity of rays, differentiable w.r.t. the field.

    Args:
        origins, directions: [R, 3] rays in the normalised frame (unit directions).
        query_fn: (points [P, 3], view_dirs [P, 3]) -> (sdf [P], grad f [P, 3], rgb [P, 3]).
        sdf_fn: gradient-free SDF used to place samples.
        beta: Laplace scale (scalar tensor, may require grad).
        cfg: render config.
        jitter: randomise sample positions (training).

    Returns:
        :func:`composite`'s dict plus ``sdf_gradient`` [R * K, 3] (for the eikonal loss),
        ``points`` [R * K, 3] and ``t`` [R, K].
    """
    samples = sample_along_rays(origins, directions, sdf_fn, beta.detach(), cfg, jitter)
    t = samples.t
    r, k = t.shape
    points = (origins[:, None, :] + directions[:, None, :] * t[..., None]).reshape(-1, 3)
    view_dirs = directions[:, None, :].expand(r, k, 3).reshape(-1, 3)
    sdf, gradient, rgb = query_fn(points, view_dirs)
    weights = segment_weights(t, sdf.reshape(r, k), beta)
    if callable(rgb):
        rgb = _shade_visible(rgb, weights, cfg.shade_threshold)
    out = composite(t, sdf.reshape(r, k), rgb.reshape(r, k, 3), beta, cfg.background, weights)
    out.update(sdf_gradient=gradient, points=points, t=t)
    return out


@torch.no_grad()
def render_image(
    origins: torch.Tensor,
    directions: torch.Tensor,
    query_fn: QueryFn,
    sdf_fn: SdfFn,
    beta: torch.Tensor,
    cfg: RenderConfig,
) -> dict[str, torch.Tensor]:
    """Render many rays in chunks without gradients (whole images, previews).

    Returns:
        dict with ``rgb`` [R, 3], ``opacity`` [R], ``depth`` [R].
    """
    outs: dict[str, list[torch.Tensor]] = {"rgb": [], "opacity": [], "depth": []}
    for start in range(0, origins.shape[0], cfg.chunk_rays):
        sl = slice(start, start + cfg.chunk_rays)
        out = render_rays(origins[sl], directions[sl], query_fn, sdf_fn, beta, cfg)
        for key in outs:
            outs[key].append(out[key])
    return {key: torch.cat(val) for key, val in outs.items()}
