"""Training is bit-identical for a seed, device and thread count, and resuming changes nothing."""

import shutil

import pytest
import torch

from privhead.config import resolve_config
from privhead.data.synthetic import write_synthetic_head
from privhead.privacy.protect import protect_dataset
from privhead.reconstruct import reconstruct
from privhead.train.checkpoint import read_checkpoint

STEPS = ["stage1.steps=16", "stage2.steps=16", "mesh_resolution=32", "render_size=32"]


class _Stop(Exception):
    pass


def _field(root, bundle, name, threads, stop_at=None):
    cfg = resolve_config("tiny", "two-stage", [*STEPS, "checkpoint_every=8"], 0)
    out = root / name
    shutil.rmtree(out, ignore_errors=True)
    previous = torch.get_num_threads()
    torch.set_num_threads(threads)

    def on_step(stage, step, steps, losses):
        if stop_at == (stage, step):
            raise _Stop

    try:
        try:
            reconstruct(bundle, out, cfg, progress=False, log=lambda s: None, on_step=on_step)
        except _Stop:  # as if the process died here: resume from the last checkpoint
            reconstruct(bundle, out, cfg, progress=False, log=lambda s: None, resume=True)
    finally:
        torch.set_num_threads(previous)
    return read_checkpoint(out / "checkpoints" / "last.pt")["field"]


@pytest.mark.parametrize("threads", [pytest.param(1, marks=pytest.mark.slow), 2])
def test_two_runs_and_a_resumed_run_are_identical(tmp_path, threads):
    head = write_synthetic_head(tmp_path / "head", seed=2, n_views=8, resolution=32, supersample=1)
    bundle = protect_dataset(head, tmp_path / "bundle", detector="none").bundle
    a = _field(tmp_path, bundle, "a", threads)
    b = _field(tmp_path, bundle, "b", threads)
    c = _field(tmp_path, bundle, "c", threads, stop_at=("stage2", 10))
    for key in a:
        assert torch.equal(a[key], b[key]), key
        assert torch.equal(a[key], c[key]), key
