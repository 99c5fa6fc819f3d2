"""The geometry: a signed distance field made of a sphere plus multi-resolution dense grids.

f(x) = |x| - r0 + sum_l trilinear(G_l, x). Every term has a closed-form gradient, so the normal
and the eikonal term cost one extra weighted sum per grid, not a second backward pass.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from privhead.config import FieldConfig
from privhead.field.grid import (
    add_laplacian_energy_gradient,
    grid_laplacian_energy,
    trilinear_with_gradient,
)


class GridSDF(nn.Module):
    """Signed distance field on the normalised cube ``[-bound, bound]^3``.

    Args:
        cfg: field config (grid resolutions, bound, initial sphere radius).
    """

    def __init__(self, cfg: FieldConfig) -> None:
        super().__init__()
        self.bound = cfg.bound
        self.init_radius = cfg.init_radius
        self.grids = nn.ParameterList(
            [nn.Parameter(torch.zeros(r, r, r)) for r in cfg.grid_resolutions]
        )
        self.register_buffer("active_levels", torch.tensor(len(cfg.grid_resolutions)))
        self._sphere_cache: dict = {}

    @property
    def num_levels(self) -> int:
        return len(self.grids)

    def forward(
        self, points: torch.Tensor, with_gradient: bool = True
    ) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor]:
        """Signed distance, its spatial gradient and per-level geometry features.

        Args:
            points: [P, 3] points in the normalised frame.
            with_gradient: also return grad f.

        Returns:
            sdf: [P] signed distances (negative inside).
            gradient: [P, 3] grad f (not normalised), or None.
            features: [P, L] the value each grid level adds (zero for inactive levels): the
                geometry feature z fed to the colour network.
        """
        norm = points.norm(dim=-1).clamp_min(1e-9)
        sdf = norm - self.init_radius
        gradient = points / norm[:, None] if with_gradient else None
        features = []
        active = int(self.active_levels)
        for level, grid in enumerate(self.grids):
            if level >= active:
                features.append(torch.zeros_like(sdf))
                continue
            value, grad = trilinear_with_gradient(grid, points, self.bound, with_gradient)
            sdf = sdf + value
            features.append(value)
            if with_gradient:
                gradient = gradient + grad
        return sdf, gradient, torch.stack(features, dim=-1)

    def sdf(self, points: torch.Tensor) -> torch.Tensor:
        """[P] signed distances only (for mesh extraction and sampling)."""
        return self.forward(points, with_gradient=False)[0]

    @torch.no_grad()
    def dense_sdf(self, resolution: int) -> torch.Tensor:
        """[R, R, R] the whole SDF (sphere and active levels) sampled at the nodes of one
        vertex-centred ``resolution``^3 grid over ``[-bound, bound]^3`` (no gradient).

        Each level is its trilinear interpolant evaluated at the new nodes
        (``F.interpolate(..., align_corners=True)``), so the dense grid's trilinear interpolant
        differs from the field only by the interpolation error of a ``resolution`` grid.
        """
        device = self.grids[0].device
        key = (resolution, str(device))
        if key not in self._sphere_cache:
            axis = torch.linspace(-self.bound, self.bound, resolution, device=device)
            x, y, z = torch.meshgrid(axis, axis, axis, indexing="ij")
            self._sphere_cache = {key: (x * x + y * y + z * z).sqrt() - self.init_radius}
        dense = self._sphere_cache[key]
        size = (resolution, resolution, resolution)
        for grid in list(self.grids)[: int(self.active_levels)]:
            if grid.shape[0] == resolution:
                dense = dense + grid
            else:
                up = F.interpolate(
                    grid[None, None], size=size, mode="trilinear", align_corners=True
                )
                dense = dense + up[0, 0]
        return dense

    def coarse_sdf_fn(self, resolution: int):
        """A gradient-free ``[P, 3] -> [P]`` SDF for placing samples: one trilinear gather in
        :meth:`dense_sdf` (built now, so it describes the field at this moment) instead of one
        per level. ``resolution`` 0 returns the exact :meth:`sdf`."""
        if resolution <= 0:
            return self.sdf
        dense = self.dense_sdf(resolution)

        def sdf_fn(points: torch.Tensor) -> torch.Tensor:
            return trilinear_with_gradient(dense, points, self.bound, with_gradient=False)[0]

        return sdf_fn

    SMOOTHNESS_CROP = 40
    """Laplacians per axis of the random window each level's smoothness is estimated on."""

    def smoothness(self) -> torch.Tensor:
        """Discrete-Laplacian energy (world units) of the active grids, summed over levels."""
        active = list(self.grids)[: int(self.active_levels)]
        terms = [grid_laplacian_energy(g, self.bound, crop=self.SMOOTHNESS_CROP) for g in active]
        return torch.stack(terms).sum()

    def add_smoothness_gradient(self, weight: float) -> torch.Tensor:
        """``weight`` times the gradient of :meth:`smoothness`, added in closed form to the
        grids' ``.grad`` (after the backward pass of the other losses, before the optimiser
        step); the same random windows and the same result as back-propagating
        ``weight * smoothness()``, without a dense gradient per level. Returns the energy."""
        active = list(self.grids)[: int(self.active_levels)]
        terms = [
            add_laplacian_energy_gradient(g, self.bound, weight, crop=self.SMOOTHNESS_CROP)
            for g in active
        ]
        return torch.stack(terms).sum()
