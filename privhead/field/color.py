"""The colour network c(x, n, v, z) built from Lipschitz-bounded layers (paper Eq. 7-8).

Kept apart from the geometry so stage 2 can regularise colour alone.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from privhead.config import FieldConfig


def inverse_softplus(y: float) -> float:
    """x with softplus(x) = y."""
    return y + math.log(-math.expm1(-y))


class LipschitzLinear(nn.Module):
    """Linear layer whose weight rows are rescaled to an absolute sum of at most softplus(m).

    With W_hat = W * min(1, softplus(m) / sum_j |W_ij|) (paper Eq. 7), the layer is
    softplus(m)-Lipschitz in the infinity norm: |W_hat x - W_hat y|_inf <= softplus(m) |x - y|_inf.

    Args:
        in_features, out_features: sizes.
        bound_init: initial bound softplus(m).
    """

    def __init__(self, in_features: int, out_features: int, bound_init: float) -> None:
        super().__init__()
        self.linear = nn.Linear(in_features, out_features)
        self.m = nn.Parameter(torch.tensor(inverse_softplus(bound_init)))

    def bound(self) -> torch.Tensor:
        """softplus(m): this layer's Lipschitz bound."""
        return F.softplus(self.m)

    def normalized_weight(self) -> torch.Tensor:
        w = self.linear.weight
        row_sum = w.abs().sum(dim=1, keepdim=True).clamp_min(1e-12)
        return w * torch.clamp(self.bound() / row_sum, max=1.0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(x, self.normalized_weight(), self.linear.bias)


def fourier_encode(points: torch.Tensor, octaves: int) -> torch.Tensor:
    """[P, 3] -> [P, 3 + 6 * octaves]: x, sin(2^k pi x), cos(2^k pi x) for k < octaves."""
    if octaves == 0:
        return points
    freqs = (2.0 ** torch.arange(octaves, device=points.device, dtype=points.dtype)) * math.pi
    angles = points[:, None, :] * freqs[None, :, None]  # [P, K, 3]
    return torch.cat([points, angles.sin().flatten(1), angles.cos().flatten(1)], dim=-1)


class ColorNetwork(nn.Module):
    """Radiance c(x, n, v, z) in [0, 1]^3 from Lipschitz layers (ReLU activations, 1-Lipschitz).

    Args:
        cfg: field config (Fourier octaves, width, depth, initial bound).
        feature_dim: size of the geometry feature z.
    """

    def __init__(self, cfg: FieldConfig, feature_dim: int) -> None:
        super().__init__()
        self.octaves = cfg.color_frequencies
        in_dim = 3 + 6 * cfg.color_frequencies + 3 + 3 + feature_dim
        dims = [in_dim] + [cfg.color_width] * cfg.color_layers + [3]
        self.layers = nn.ModuleList(
            [LipschitzLinear(a, b, cfg.color_lipschitz_init) for a, b in zip(dims[:-1], dims[1:])]
        )

    def forward(
        self,
        points: torch.Tensor,
        normals: torch.Tensor,
        view_dirs: torch.Tensor,
        features: torch.Tensor,
    ) -> torch.Tensor:
        """Colour at points.

        Args:
            points: [P, 3] normalised positions; normals: [P, 3] unit normals;
            view_dirs: [P, 3] unit ray directions; features: [P, F] geometry features.

        Returns:
            [P, 3] linear colour in [0, 1].
        """
        h = torch.cat([fourier_encode(points, self.octaves), normals, view_dirs, features], -1)
        for layer in self.layers[:-1]:
            h = F.relu(layer(h))
        return torch.sigmoid(self.layers[-1](h))

    def lipschitz_bound(self) -> torch.Tensor:
        """L_lip = prod_i softplus(m_i) (paper Eq. 8)."""
        return torch.stack([layer.bound() for layer in self.layers]).prod()
