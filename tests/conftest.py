"""Shared fixtures: devices to test on and the location of the shared datasets."""

import os
from pathlib import Path

import pytest
import torch


@pytest.fixture(scope="session", autouse=True)
def one_torch_thread():
    """The fast suite's tensors are tiny: one intra-op thread is as fast as two on a quiet
    machine and several times faster on a busy one (two threads then wait on each other at
    every op). Tests about threading set their own count (tests/train/test_determinism.py)."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


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
    """The shared data folder beside the repository (env PRIVHEAD_SHARED overrides).

    The one definition of that path for the whole tree: it is computed from this file's own
    location (tests/conftest.py -> ../../shared), so test files at any depth agree on it.
    """
    env = os.environ.get("PRIVHEAD_SHARED")
    return Path(env) if env else Path(__file__).resolve().parents[2] / "shared"


@pytest.fixture
def shared_head_path() -> Path:
    """The reference shared head (heads/ict_s0/r64_v30), whether or not it is there."""
    return shared_root() / "data" / "heads" / "ict_s0" / "r64_v30"


@pytest.fixture
def shared_head(shared_head_path) -> Path:
    """The reference shared head; the test is skipped when the shared data is absent."""
    if not shared_head_path.is_dir():
        pytest.skip(f"shared data not found at {shared_head_path}")
    return shared_head_path


@pytest.fixture
def shared_heads(shared_head) -> Path:
    """The folder of all shared heads (data/heads); skipped like ``shared_head``."""
    return shared_head.parents[1]
