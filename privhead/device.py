"""Where tensors live: ``--device auto`` -> CUDA when present, else CPU."""

from __future__ import annotations

import torch

from privhead.errors import PrivheadError


def resolve_device(name: str) -> torch.device:
    """``auto`` -> CUDA when present, else CPU."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError as exc:
        raise PrivheadError(f"Unknown device {name!r}.") from exc
    if device.type == "cuda" and not torch.cuda.is_available():
        raise PrivheadError("CUDA was requested but is not available on this machine.")
    return device
