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
        sdf, gradient, features = self.geometry(points, with_gradient=True)
        normals = gradient / gradient.norm(dim=-1, keepdim=True).clamp_min(1e-6)
        rgb = self.color(points, normals, view_dirs, features * FEATURE_SCALE)
        return sdf, gradient, rgb
