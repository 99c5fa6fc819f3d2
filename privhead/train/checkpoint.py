"""Checkpoints: one layout on every device, written atomically, read without pickle.

A checkpoint holds tensors and plain values only (config dict, step counters, optimiser state,
RNG state, scale_mat), so it is always loaded with ``torch.load(..., weights_only=True)``: a
file that is anything else is refused with one sentence, never unpickled.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch

from privhead.errors import PrivheadError
from privhead.field.model import HeadField

CHECKPOINT_VERSION = 1


def atomic_save(obj, path: Path) -> None:
    """``torch.save`` into a temporary sibling, then rename (a crash never leaves half a file)."""
    path = Path(path)
    tmp = path.with_suffix(path.suffix + ".tmp")
    torch.save(obj, tmp)
    os.replace(tmp, path)


def read_checkpoint(path) -> dict:
    """The state dict of a privhead checkpoint, loaded on the CPU with ``weights_only=True``.

    Raises:
        PrivheadError: the file is missing, not a torch file, holds pickled objects other than
            tensors and plain values, or is not a privhead checkpoint of a known version.
    """
    path = Path(path)
    if not path.is_file():
        raise PrivheadError(f"Checkpoint {path} does not exist.")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - any unreadable file is a user error here
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise PrivheadError(
            f"{path} is not a privhead checkpoint (it cannot be read as tensors and plain "
            f"values: {reason[:160]})."
        ) from exc
    if not isinstance(state, dict) or state.get("version") != CHECKPOINT_VERSION:
        raise PrivheadError(f"{path} is not a privhead checkpoint of a known version.")
    return state


def load_field(path, device: torch.device | str = "cpu"):
    """Load a trained field from a checkpoint.

    Returns:
        (field in eval mode with all grid levels active, ReconstructionConfig, scale_mat [4, 4]).
    """
    from privhead.config import config_from_dict

    state = read_checkpoint(path)
    cfg = config_from_dict(state["config"])
    field = HeadField(cfg.field)
    field.load_state_dict(state["field"])
    field.geometry.active_levels.fill_(field.geometry.num_levels)
    field.eval()
    return field.to(device), cfg, np.asarray(state["scale_mat"], dtype=np.float64)
