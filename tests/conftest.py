"""Shared fixtures: devices to test on and the location of the shared datasets."""

import os
from pathlib import Path

import pytest
import torch


def _devices() -> list[str]:
    devices = ["cpu"]
    if torch.cuda.is_available():
        devices.append("cuda")
    return devices


@pytest.fixture(params=_devices())
def device(request) -> torch.device:
    """Every test that takes ``device`` runs on the CPU and, when present, on CUDA."""
    return torch.device(request.param)


def shared_root() -> Path:
    """The shared data folder beside the repository (env PRIVHEAD_SHARED overrides)."""
    env = os.environ.get("PRIVHEAD_SHARED")
    return Path(env) if env else Path(__file__).resolve().parents[2] / "shared"
