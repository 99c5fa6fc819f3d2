"""VolSDF density: a Laplace CDF of the negated SDF, and its exact integral along a segment."""

from __future__ import annotations

import torch
from torch import nn


def laplace_cdf(s: torch.Tensor, beta: torch.Tensor) -> torch.Tensor:
    """Psi_beta(s): CDF of the zero-mean Laplace distribution with scale beta."""
    e = torch.exp(-s.abs() / beta)
    return torch.where(s <= 0, 0.5 * e, 1.0 - 0.5 * e)


def laplace_density(sdf: torch.Tensor, beta: torch.Tensor) -> torch.Tensor:
    """VolSDF density sigma(x) = (1 / beta) Psi_beta(-f(x)) (paper Eq. 1 context)."""
    return laplace_cdf(-sdf, beta) / beta


def _psi_antiderivative(s: torch.Tensor, beta: torch.Tensor) -> torch.Tensor:
    """G(s) with dG/ds = Psi_beta(-s); continuous at 0 (both branches give -beta / 2)."""
    e = torch.exp(-s.abs() / beta)
    return torch.where(s >= 0, -0.5 * beta * e, s - 0.5 * beta * e)


def segment_optical_depth(
    sdf_start: torch.Tensor, sdf_end: torch.Tensor, length: torch.Tensor, beta: torch.Tensor
) -> torch.Tensor:
    """Integral of the VolSDF density over segments along which the SDF is linear.

    With f going linearly from ``sdf_start`` to ``sdf_end`` over ``length``, the integral of
    sigma = Psi_beta(-f) / beta is ``length / beta`` times the mean of Psi over the segment,
    which is exact whatever the sample spacing (so few samples per ray suffice).

    Args:
        sdf_start, sdf_end: [...] SDF at both ends.
        length: [...] segment lengths (>= 0).
        beta: scalar Laplace scale.

    Returns:
        [...] optical depth tau >= 0 of each segment.
    """
    diff = sdf_start - sdf_end
    small = diff.abs() < 1e-4 * beta
    safe = torch.where(small, torch.ones_like(diff), diff)
    mean_psi = (_psi_antiderivative(sdf_start, beta) - _psi_antiderivative(sdf_end, beta)) / safe
    mid_psi = laplace_cdf(-(sdf_start + sdf_end) / 2, beta)
    mean_psi = torch.where(small, mid_psi, mean_psi).clamp(0.0, 1.0)
    return length * mean_psi / beta


class LearnableBeta(nn.Module):
    """beta = beta_min + |b| with b learnable (VolSDF)."""

    def __init__(self, init: float, minimum: float) -> None:
        super().__init__()
        self.minimum = minimum
        self.raw = nn.Parameter(torch.tensor(float(init - minimum)))

    def forward(self) -> torch.Tensor:
        return self.minimum + self.raw.abs()
