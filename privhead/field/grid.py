"""Dense voxel grids sampled by trilinear interpolation, with the analytic spatial gradient.

The gradient is computed in closed form rather than by double back-propagation, so an eikonal
loss on it needs only one backward pass (the reason grid fields are fast on a CPU).
"""

from __future__ import annotations

import torch

from privhead.field import native

# The eight cell corners as (dx, dy, dz) offsets, in the order used below.
_CORNERS = [(i, j, k) for i in (0, 1) for j in (0, 1) for k in (0, 1)]


def trilinear_with_gradient(
    grid: torch.Tensor, points: torch.Tensor, bound: float, with_gradient: bool = True
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Sample a scalar grid at points and return the value and its spatial gradient.

    The grid holds samples at ``R`` evenly spaced positions per axis over ``[-bound, bound]``
    (vertex-centred: index 0 at ``-bound``, index ``R - 1`` at ``+bound``); axis order is x, y, z.
    Points outside the cube are clamped to its boundary cells (the value is extrapolated linearly).

    Args:
        grid: [R, R, R] grid values (x, y, z index order).
        points: [P, 3] query points.
        bound: half the side length of the cube covered by the grid.
        with_gradient: also return d value / d point.

    Returns:
        values: [P] interpolated values.
        gradient: [P, 3] spatial gradient of the interpolant, or None.

    float32 CPU calls whose points need no gradient run the fused C kernel
    (:mod:`privhead.field.native`); everything else, and that kernel's reference, is
    :func:`trilinear_with_gradient_torch`.
    """
    if native.applies(grid, points):
        return native.trilinear(grid, points, bound, with_gradient)
    return trilinear_with_gradient_torch(grid, points, bound, with_gradient)


def trilinear_with_gradient_torch(
    grid: torch.Tensor, points: torch.Tensor, bound: float, with_gradient: bool = True
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """:func:`trilinear_with_gradient` in torch operations (any device, dtype, and
    differentiable with respect to the points too)."""
    res = grid.shape[0]
    scale = (res - 1) / (2.0 * bound)
    coords = (points + bound) * scale
    base = coords.detach().floor().clamp(0, res - 2)
    frac = coords - base
    base = base.long()
    flat = grid.reshape(-1)
    stride_x, stride_y = res * res, res
    origin = base[:, 0] * stride_x + base[:, 1] * stride_y + base[:, 2]
    offsets = torch.tensor(
        [dx * stride_x + dy * stride_y + dz for dx, dy, dz in _CORNERS],
        device=points.device,
    )
    corner_values = flat[origin[:, None] + offsets[None, :]]  # [P, 8]

    fx, fy, fz = frac[:, 0:1], frac[:, 1:2], frac[:, 2:3]
    # Successive linear interpolation along x, then y, then z; each derivative is the difference
    # of the two neighbours at the previous level, interpolated along the remaining axes.
    v0, v1 = corner_values[:, :4], corner_values[:, 4:]  # x = 0 / 1, columns (y, z) = 00 01 10 11
    vx = v0 + fx * (v1 - v0)  # [P, 4]
    vxy = vx[:, :2] + fy * (vx[:, 2:] - vx[:, :2])  # [P, 2] (z = 0 / 1)
    values = (vxy[:, 0:1] + fz * (vxy[:, 1:2] - vxy[:, 0:1]))[:, 0]
    if not with_gradient:
        return values, None
    dx4 = v1 - v0
    dx2 = dx4[:, :2] + fy * (dx4[:, 2:] - dx4[:, :2])
    grad_x = dx2[:, 0:1] + fz * (dx2[:, 1:2] - dx2[:, 0:1])
    dy2 = vx[:, 2:] - vx[:, :2]
    grad_y = dy2[:, 0:1] + fz * (dy2[:, 1:2] - dy2[:, 0:1])
    grad_z = vxy[:, 1:2] - vxy[:, 0:1]
    gradient = torch.cat([grad_x, grad_y, grad_z], dim=-1) * scale
    return values, gradient


def _crop_window(res: int, crop: int | None) -> tuple[slice, slice, slice] | None:
    """A random window of ``crop + 2`` nodes per axis (``crop``^3 Laplacians), or None for the
    whole grid when ``crop`` is None or the grid is not larger than the window."""
    if crop is None or crop + 2 >= res:
        return None
    i, j, k = torch.randint(0, res - crop - 1, (3,)).tolist()
    return slice(i, i + crop + 2), slice(j, j + crop + 2), slice(k, k + crop + 2)


def _laplacian(g: torch.Tensor) -> torch.Tensor:
    """The 7-point discrete Laplacian (in index units) at the interior nodes of ``g``."""
    return (
        g[2:, 1:-1, 1:-1]
        + g[:-2, 1:-1, 1:-1]
        + g[1:-1, 2:, 1:-1]
        + g[1:-1, :-2, 1:-1]
        + g[1:-1, 1:-1, 2:]
        + g[1:-1, 1:-1, :-2]
        - 6 * g[1:-1, 1:-1, 1:-1]
    )


@torch.no_grad()
def add_laplacian_energy_gradient(
    grid: torch.Tensor, bound: float, weight: float, crop: int | None = None
) -> torch.Tensor:
    """:func:`grid_laplacian_energy` with its gradient, times ``weight``, added in closed form
    to ``grid.grad`` (created if None) over the window it reads only.

    Through autograd the crop's gradient is a dense grid of zeros around the window, another
    full-size gradient to allocate and sum per level and step: on a CPU that costs more than
    the prior itself. The energy is 1/N sum L(g)^2 / h^4 with L the 7-point Laplacian; its
    gradient is 2/(N h^4) L^T L(g), and L is symmetric: each Laplacian value is spread back
    to its node (-6 times) and to its six neighbours.

    Returns:
        the energy (no gradient), drawing the same random window as
        :func:`grid_laplacian_energy` with the same ``crop``.
    """
    res = grid.shape[0]
    spacing = 2.0 * bound / (res - 1)
    window = _crop_window(res, crop) or (slice(None),) * 3
    g = grid.detach()[window]
    lap = _laplacian(g)
    scale = 1.0 / spacing**4
    energy = (lap * lap).mean() * scale
    coef = lap * (2.0 * weight * scale / lap.numel())
    back = torch.zeros_like(g)
    back[1:-1, 1:-1, 1:-1] -= 6.0 * coef
    back[2:, 1:-1, 1:-1] += coef
    back[:-2, 1:-1, 1:-1] += coef
    back[1:-1, 2:, 1:-1] += coef
    back[1:-1, :-2, 1:-1] += coef
    back[1:-1, 1:-1, 2:] += coef
    back[1:-1, 1:-1, :-2] += coef
    if grid.grad is None:
        grid.grad = torch.zeros_like(grid)
    grid.grad[window] += back
    return energy


def grid_laplacian_energy(
    grid: torch.Tensor, bound: float, crop: int | None = None
) -> torch.Tensor:
    """Mean squared discrete Laplacian of a [R, R, R] grid, in world units (1 / length).

    Used as a smoothness prior on the SDF grids (penalises curvature, not slope). Expressed in
    world units so that fine levels, whose cells are small, are held to the same curvature scale
    as coarse ones.

    Args:
        grid: [R, R, R] values over [-bound, bound]^3.
        bound: half side of the cube.
        crop: if given and smaller than R, the energy of a random crop^3 window (an unbiased
            estimate of the mean at a fraction of the cost).
    """
    res = grid.shape[0]
    spacing = 2.0 * bound / (res - 1)
    window = _crop_window(res, crop)
    lap = _laplacian(grid if window is None else grid[window]) / spacing**2
    return (lap * lap).mean()
