"""The reconstruction pipeline through the CLI: errors, extract, and (slow) the whole demo."""

import json
import subprocess
import sys

import pytest
from typer.testing import CliRunner

from privhead.cli import app

runner = CliRunner()


@pytest.mark.parametrize(
    "command", [[], ["synth"], ["protect"], ["reconstruct"], ["extract"], ["evaluate"], ["demo"]]
)
def test_every_command_has_help(command):
    result = runner.invoke(app, [*command, "--help"])
    assert result.exit_code == 0, result.output
    assert "Usage" in result.output


def test_console_script_runs():
    out = subprocess.run(
        [sys.executable, "-m", "privhead", "--help"], capture_output=True, text=True, timeout=60
    )
    assert out.returncode == 0 and "reconstruct" in out.stdout


def test_reconstruct_rejects_a_dataset_and_a_missing_bundle(tmp_path):
    (tmp_path / "data").mkdir()
    result = runner.invoke(app, ["reconstruct", str(tmp_path / "data"), str(tmp_path / "out")])
    assert result.exit_code != 0
    assert "not a privacy bundle" in result.output
    result = runner.invoke(
        app, ["reconstruct", str(tmp_path / "data"), str(tmp_path / "o"), "--preset", "huge"]
    )
    assert result.exit_code != 0 and "Unknown preset" in result.output


def test_extract_rejects_a_non_checkpoint(tmp_path):
    bogus = tmp_path / "x.pt"
    bogus.write_text("not a checkpoint")
    result = runner.invoke(app, ["extract", str(bogus), str(tmp_path / "m.ply")])
    assert result.exit_code != 0
    assert not (tmp_path / "m.ply").exists()


@pytest.mark.slow
def test_demo_end_to_end_stage2_beats_stage1(tmp_path):
    """Synthetic head -> protect -> stage 1 -> stage 2 -> mesh -> Chamfer (tiny preset)."""
    result = runner.invoke(app, ["demo", str(tmp_path), "--preset", "tiny", "--quiet"])
    assert result.exit_code == 0, result.output
    summary = json.loads((tmp_path / "demo.json").read_text())
    scores = summary["face_chamfer"]
    assert scores["stage2"]["chamfer"] < scores["stage1"]["chamfer"]
    # Far below a best-fit sphere (about 0.038 units on a head) and within a few mm.
    assert scores["stage2"]["chamfer"] < 0.025
    assert (tmp_path / "reconstruction" / "mesh.ply").stat().st_size > 10_000
    assert (tmp_path / "reconstruction" / "renders.png").exists()
    # The bundle holds no RGB of a sensitive view: only neutral/ images are RGB.
    manifest = json.loads((tmp_path / "bundle" / "manifest.json").read_text())
    assert sum(v["kind"] == "neutral" for v in manifest["views"]) == 10

    # extract from the stage-2 checkpoint at another resolution
    ckpt = tmp_path / "reconstruction" / "checkpoints" / "stage2.pt"
    out = runner.invoke(app, ["extract", str(ckpt), str(tmp_path / "m.ply"), "--resolution", "64"])
    assert out.exit_code == 0, out.output
    assert (tmp_path / "m.ply").exists()
