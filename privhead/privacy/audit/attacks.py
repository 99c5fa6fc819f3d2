"""The inversion attack on protected gradient maps: optimise an image whose sigma reproduces the
map (:func:`invert_gradient_modulus`), and the attack image sets the audit examines like any other
kind (grey start, template start, the template alone)."""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from dataclasses import dataclass, replace

import numpy as np
import torch

from privhead.privacy.audit.images import (
    INVERSION_GREY,
    INVERSION_TEMPLATE,
    TEMPLATE_ONLY,
    ImageSet,
)
from privhead.privacy.operators import (
    OperatorConfig,
    apply_operator,
    downsample_area,
    gradient_modulus,
)


@dataclass
class InversionConfig:
    """Parameters of the inversion attack (:func:`invert_gradient_modulus`)."""

    steps: int = 400
    """Adam iterations."""

    learning_rate: float = 0.05
    """Adam step size on the image logits."""

    smoothness_weight: float = 0.15
    """Weight of the total-variation prior (mean absolute difference of neighbouring pixels).
    Below about 0.05 a grey start ends in a checkerboard (the Sobel kernels' blind spot); 0.15 was
    the best of 0.01 / 0.05 / 0.15 / 0.4 on ict_s0's face views (image error to the truth)."""

    prior_weight: float = 0.05
    """Weight of the squared distance to the prior image (keeps colour and offsets plausible)."""

    grey: bool = False
    """Recover one grey channel (copied to RGB) instead of three colour channels."""

    fit_gain: bool = False
    """Also fit a global gain per map (for maps stored without their absolute scale)."""

    start_noise: float = 0.02
    """Standard deviation of the Gaussian noise added to the start image."""

    seed: int = 0
    """Seed of that noise."""


def total_variation(images: torch.Tensor) -> torch.Tensor:
    """Mean absolute difference between horizontally and vertically adjacent pixels.

    Args:
        images: [B, C, H, W].

    Returns:
        [B] anisotropic total variation per image (mean over pixels and channels).
    """
    dx = (images[..., :, 1:] - images[..., :, :-1]).abs().mean(dim=(1, 2, 3))
    dy = (images[..., 1:, :] - images[..., :-1, :]).abs().mean(dim=(1, 2, 3))
    return dx + dy


def invert_gradient_modulus(
    maps: torch.Tensor,
    operator_cfg: OperatorConfig,
    prior: torch.Tensor | None = None,
    cfg: InversionConfig | None = None,
) -> torch.Tensor:
    """Recover images whose gradient modulus matches the protected maps.

    What could someone holding a bundle recover from a protected map |g| = ||dC/dx|| + ||dC/dy||
    (paper Eq. 6)? The modulus discards the gradients' signs and directions, the colour and any
    constant offset, so the attack must bring those from priors. It optimises an image x (RGB or
    grey, at the map's resolution) so that the *same* operator applied to it reproduces the map:

        min_x  mean |sigma(x) - s * g|  +  w_tv * TV(x)  +  w_prior * mean (x - p)^2

    starting from a prior image p (an attacker's template: the mean of other people's photos from
    the same viewpoint, which the bundle's cameras make easy to produce; or flat grey), with an
    optional learnt gain s for maps whose absolute scale was lost (8-bit PNGs). The audit then
    runs face detection and verification on the result, and on the prior alone, so what the map
    adds is seen.

    Args:
        maps: [B, 1, h, w] protected gradient maps (apply_operator's output, working resolution).
        operator_cfg: the operator that made them (the bundle records it); its derivative kernel
            and blur are applied to the candidate images with the same replicate padding.
        prior: [B, 3, h, w] prior images in [0, 1] (start point and prior term); default flat
            mid-grey.
        cfg: attack parameters.

    Returns:
        [B, 3, h, w] recovered images in [0, 1] (detached, float32, on the maps' device).
    """
    cfg = cfg or InversionConfig()
    maps = maps.detach().to(torch.float32)
    batch, _, height, width = maps.shape
    if prior is None:
        prior = torch.full((batch, 3, height, width), 0.5, device=maps.device)
    prior = prior.detach().to(device=maps.device, dtype=torch.float32)
    if prior.shape != (batch, 3, height, width):
        raise ValueError(f"prior must be [{batch}, 3, {height}, {width}], got {tuple(prior.shape)}")
    start = prior.mean(dim=1, keepdim=True) if cfg.grey else prior
    # A flat start has a zero gradient modulus, where Eq. 6's gradient vanishes: a little seeded
    # noise breaks the symmetry.
    generator = torch.Generator().manual_seed(cfg.seed)
    start = start + cfg.start_noise * torch.randn(start.shape, generator=generator).to(start)
    logits = torch.logit(start.clamp(0.02, 0.98)).clone().requires_grad_(True)
    log_gain = torch.zeros(batch, 1, 1, 1, device=maps.device, requires_grad=cfg.fit_gain)
    params = [logits] + ([log_gain] if cfg.fit_gain else [])
    optimizer = torch.optim.Adam(params, lr=cfg.learning_rate)
    with _few_threads(maps):
        _optimise(optimizer, logits, log_gain, maps, prior, operator_cfg, cfg)
    with torch.no_grad():
        return torch.sigmoid(logits).expand(batch, 3, height, width).clone()


@contextlib.contextmanager
def _few_threads(maps: torch.Tensor):
    """One CPU thread for small problems: thousands of tiny ops, where intra-op threads cost
    more than they bring (measured 40x slower with 2 threads on a busy 2-core machine)."""
    previous = torch.get_num_threads()
    small = maps.device.type == "cpu" and maps.numel() < (1 << 20)
    if small:
        torch.set_num_threads(1)
    try:
        yield
    finally:
        if small:
            torch.set_num_threads(previous)


def _optimise(optimizer, logits, log_gain, maps, prior, operator_cfg, cfg) -> None:
    batch, _, height, width = maps.shape
    for _ in range(cfg.steps):
        optimizer.zero_grad(set_to_none=True)
        images = torch.sigmoid(logits).expand(batch, 3, height, width)
        modulus = gradient_modulus(images, operator_cfg, padding="replicate")
        data = (modulus - maps * log_gain.exp()).abs().mean(dim=(1, 2, 3))
        loss = (
            data
            + cfg.smoothness_weight * total_variation(images)
            + cfg.prior_weight * (images - prior).pow(2).mean(dim=(1, 2, 3))
        ).sum()
        loss.backward()
        optimizer.step()


def inversion_sets(
    protected: ImageSet,
    impostors: Sequence[ImageSet],
    operator_cfg: OperatorConfig,
    cfg: InversionConfig,
) -> tuple[dict[str, ImageSet], dict]:
    """Run the inversion from a grey start and, where impostors show the same views, from the
    template (mean of the impostors' photos of that view at the map's size).

    Returns:
        ({kind: recovered images} for the inversion kinds and the template alone, and the
        attack's parameters, template identities and relative map error per kind).
    """
    maps = protected.maps
    out: dict[str, ImageSet] = {}
    info = {
        "config": cfg.__dict__.copy(),
        "operator": operator_cfg.to_dict(),
        "template_identities": [],
        "map_error": {},
    }
    cfg = replace(cfg, fit_gain=cfg.fit_gain or protected.maps_scaled)
    groups: dict[tuple, list[int]] = {}
    for i, m in enumerate(maps):
        groups.setdefault(m.shape, []).append(i)
    templates: list[np.ndarray | None] = []
    contributors: set[str] = set()
    for name, m in zip(protected.names, maps, strict=True):
        views = [s.images[s.names.index(name)] for s in impostors if name in s.names]
        contributors.update(s.identity for s in impostors if name in s.names)
        if views:
            resized = [
                downsample_area(
                    torch.from_numpy(np.ascontiguousarray(v, dtype=np.float32)).permute(2, 0, 1)[
                        None
                    ],
                    m.shape,
                )[0]
                for v in views
            ]
            templates.append(torch.stack(resized).mean(0).numpy())
        else:
            templates.append(None)
    info["template_identities"] = sorted(contributors)
    runs = {INVERSION_GREY: [None] * len(maps)}
    if all(t is not None for t in templates):
        runs[INVERSION_TEMPLATE] = templates
    for kind, priors in runs.items():
        recovered: list[np.ndarray] = [None] * len(maps)  # type: ignore[list-item]
        errors = []
        for _shape, indices in groups.items():
            batch = torch.from_numpy(np.stack([maps[i] for i in indices]))[:, None].float()
            prior = None
            if priors[indices[0]] is not None:
                prior = torch.from_numpy(np.stack([priors[i] for i in indices])).float()
            images = invert_gradient_modulus(batch, operator_cfg, prior, cfg)
            check = apply_operator(images, operator_cfg)
            scale = batch.flatten(1).max(1).values.clamp_min(1e-12)
            errors.extend(((check - batch).abs().flatten(1).mean(1) / scale).tolist())
            for k, i in enumerate(indices):
                recovered[i] = images[k].permute(1, 2, 0).numpy()
        out[kind] = ImageSet(
            protected.identity, list(protected.names), recovered, f"{kind}({protected.source})"
        )
        info["map_error"][kind] = float(np.mean(errors))
    if INVERSION_TEMPLATE in runs:
        out[TEMPLATE_ONLY] = ImageSet(
            protected.identity,
            list(protected.names),
            [t.transpose(1, 2, 0) for t in templates],
            "mean of the impostors' photos of the same view",
        )
    return out, info
