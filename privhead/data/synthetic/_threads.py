"""Torch thread setting for the generator's many small tensor operations.

Used by every stage of the synthetic head (shape sampling, SDF grid, renderer, writer).
"""

from __future__ import annotations

import contextlib

import torch


@contextlib.contextmanager
def single_threaded():
    """Run torch on one thread, restoring the setting afterwards.

    The generator issues thousands of small tensor operations (one view's rays at a time), for
    which intra-op threads cost more than they bring; on a busy 2-core machine two threads made
    a 64x64 head take 70 s instead of 4 s.
    """
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(previous)
