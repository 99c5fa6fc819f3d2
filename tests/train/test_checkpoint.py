"""Checkpoints load without pickle: anything but tensors and plain values is refused."""

import pickle

import pytest
import torch
from typer.testing import CliRunner

from privhead.cli import app
from privhead.errors import PrivheadError
from privhead.train.checkpoint import CHECKPOINT_VERSION, atomic_save, read_checkpoint


class _Sneaky:
    """Unpickling this would run a command (what a malicious 'checkpoint' does)."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


def test_a_pickled_object_is_refused_and_never_executed(tmp_path):
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.pt"
    with path.open("wb") as f:
        pickle.dump({"version": CHECKPOINT_VERSION, "x": _Sneaky(marker)}, f)
    with pytest.raises(PrivheadError, match="is not a privhead checkpoint"):
        read_checkpoint(path)
    assert not marker.exists()


def test_extract_of_a_pickled_non_checkpoint_is_one_sentence_and_exit_1(tmp_path):
    path = tmp_path / "model.pt"
    torch.save({"weights": torch.zeros(3), "owner": _Sneaky(tmp_path / "pwned")}, path)
    result = CliRunner().invoke(app, ["extract", str(path), str(tmp_path / "m.ply")])
    assert result.exit_code == 1
    assert "is not a privhead checkpoint" in result.output
    assert "Traceback" not in result.output and len(result.output.strip().splitlines()) == 1
    assert not (tmp_path / "m.ply").exists() and not (tmp_path / "pwned").exists()


def test_a_plain_state_round_trips_and_versions_are_checked(tmp_path):
    state = {"version": CHECKPOINT_VERSION, "step": 3, "field": {"w": torch.ones(2)}}
    atomic_save(state, tmp_path / "ok.pt")
    loaded = read_checkpoint(tmp_path / "ok.pt")
    assert loaded["step"] == 3 and torch.equal(loaded["field"]["w"], torch.ones(2))
    assert not (tmp_path / "ok.pt.tmp").exists()
    atomic_save({"version": 99}, tmp_path / "old.pt")
    with pytest.raises(PrivheadError, match="known version"):
        read_checkpoint(tmp_path / "old.pt")
    with pytest.raises(PrivheadError, match="does not exist"):
        read_checkpoint(tmp_path / "missing.pt")
