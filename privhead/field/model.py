"""The full neural field: geometry (GridSDF), VolSDF beta and the colour network."""

from __future__ import annotations

import torch
from torch import nn

from privhead.config import FieldConfig
from privhead.field.color import ColorNetwork
from privhead.field.density import LearnableBeta
from privhead.field.sdf import GridSDF

FEATURE_SCALE = 10.0
"""Geometry features (SDF grid offsets, ~0.01-0.1 units) are scaled to order one for the MLP."""


class HeadField(nn.Module):
    """SDF + density scale + colour, queried by the renderer."""

    def __init__(self, cfg: FieldConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.geometry = GridSDF(cfg)
        self.beta = LearnableBeta(cfg.beta_init, cfg.beta_min)
        self.color = ColorNetwork(cfg, feature_dim=len(cfg.grid_resolutions))

    def sdf(self, points: torch.Tensor) -> torch.Tensor:
        """[P] signed distance at [P, 3] normalised points."""
        return self.geometry.sdf(points)

    def query(
        self, points: torch.Tensor, view_dirs: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """SDF, its gradient and colour at points seen along view_dirs.

        Returns:
            sdf: [P]; gradient: [P, 3]; rgb: [P, 3].
        """
        sdf, gradient, shade = self.query_deferred(points, view_dirs)
        return sdf, gradient, shade(None)

    def query_deferred(self, points: torch.Tensor, view_dirs: torch.Tensor):
        """SDF and gradient now, colour later and only where asked (the renderer shades only
        the samples that are visible; the colour network is most of a step's cost).

        Returns:
            sdf: [P]; gradient: [P, 3]; shade: ``shade(index)`` -> [M, 3] colour at the points
            ``index`` ([M] long tensor), or at every point for ``None``.
        """
        sdf, gradient, features = self.geometry(points, with_gradient=True)

        def shade(index: torch.Tensor | None) -> torch.Tensor:
            p, g, v, z = points, gradient, view_dirs, features
            if index is not None:
                p, g, v, z = p[index], g[index], v[index], z[index]
            normals = g / g.norm(dim=-1, keepdim=True).clamp_min(1e-6)
            return self.color(p, normals, v, z * FEATURE_SCALE)

        return sdf, gradient, shade
