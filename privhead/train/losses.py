"""Losses of the two stages as pure functions (paper Eq. 2, 4, 5, 8); the trainer sums a dict."""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F


def rgb_loss(rendered: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """L_rgb = mean |c_hat - c| (paper Eq. 2, L1). Shapes [R, 3]."""
    return (rendered - target).abs().mean()


def eikonal_loss(gradient: torch.Tensor) -> torch.Tensor:
    """L_eik = mean (||grad f|| - 1)^2 (paper Eq. 4). gradient: [P, 3]."""
    return ((gradient.norm(dim=-1) - 1.0) ** 2).mean()


def normal_smoothness_loss(gradient_a: torch.Tensor, gradient_b: torch.Tensor) -> torch.Tensor:
    """Mean squared distance between the unit normals of paired points: ``2 (1 - cos)`` of
    the angle between ``gradient_a`` [P, 3] and ``gradient_b`` [P, 3] (0 when P = 0)."""
    if gradient_a.shape[0] == 0:
        return gradient_a.sum() * 0.0
    a = F.normalize(gradient_a, dim=-1, eps=1e-6)
    b = F.normalize(gradient_b, dim=-1, eps=1e-6)
    return ((a - b) ** 2).sum(dim=-1).mean()


def lipschitz_loss(bounds: torch.Tensor) -> torch.Tensor:
    """L_lip = prod_i softplus(m_i) (paper Eq. 8), given the per-layer bounds [L]."""
    return bounds.prod()


def mask_loss(opacity: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Binary cross-entropy between rendered opacity [R] and mask coverage [R] in [0, 1]
    (binary masks, or their box averages at a coarser pyramid level)."""
    return F.binary_cross_entropy(opacity.clamp(1e-4, 1 - 1e-4), mask.float())


def gradient_loss(
    rendered_patches: torch.Tensor,
    target_maps: torch.Tensor,
    operator: Callable[[torch.Tensor], torch.Tensor],
    valid: torch.Tensor | None = None,
) -> torch.Tensor:
    """L_grad = mean | sigma(rendered) - |g| | (paper Eq. 5).

    Args:
        rendered_patches: [B, 3, h + 2m, w + 2m] rendered colour patches including the operator's
            margin m on every side.
        target_maps: [B, 1, h, w] protected gradient-modulus maps at the patch interiors.
        operator: the bundle's own operator with 'valid' padding, [B, 3, H, W] -> [B, 1, H - 2m,
            W - 2m] (the same maths that produced the targets).
        valid: optional [B, 1, h, w] {0, 1} weights: pixels the operator suppressed (0) do not
            count; the loss is the mean over the valid pixels (0 when there are none).

    Returns:
        scalar L1 loss.
    """
    modulus = operator(rendered_patches)
    if modulus.shape != target_maps.shape:
        raise ValueError(f"operator output {tuple(modulus.shape)} != {tuple(target_maps.shape)}")
    error = (modulus - target_maps).abs()
    if valid is None:
        return error.mean()
    return (error * valid).sum() / valid.sum().clamp_min(1.0)
