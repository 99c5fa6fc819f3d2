"""``privhead protect``: a bundle from a small generated dataset, and one-line errors (exit != 0,
no partial bundle) for every kind of bad input."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from privhead.cli import app
from privhead.data.cameras import Cameras
from privhead.data.formats import HeadDataset, write_idr
from privhead.privacy.bundle import read_bundle


def look_at(center) -> np.ndarray:
    """[4, 4] OpenCV c2w of a camera at ``center`` looking at the origin (world up = +Y)."""
    center = np.asarray(center, float)
    z = -center / np.linalg.norm(center)
    x = np.cross(z, [0.0, -1.0, 0.0])
    x /= np.linalg.norm(x)
    c2w = np.eye(4)
    c2w[:3, :3] = np.stack([x, np.cross(z, x), z], axis=1)
    c2w[:3, 3] = center
    return c2w


N_VIEWS = 6
AZIMUTHS = np.arange(N_VIEWS) * 60.0  # angle to +Z: 0, 60, 120, 180, 120, 60
POSE_NEUTRAL = [2, 3, 4]


def write_dataset(root: Path, views_json: bool = True) -> Path:
    """A 6-view 16x16 IDR folder with masks (and a views.json saying views 3, 4 are neutral)."""
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, size=(N_VIEWS, 16, 16, 3)).astype(np.float32) / 255.0
    centers = [3 * np.array([np.sin(np.radians(a)), 0.0, np.cos(np.radians(a))]) for a in AZIMUTHS]
    K = np.array([[24.0, 0.0, 7.5], [0.0, 24.0, 7.5], [0.0, 0.0, 1.0]])
    views = None
    if views_json:
        views = {
            "forward": [0, 0, 1],
            "n_views": N_VIEWS,
            "neutral_indices": [3, 4],
            "sensitive_indices": [0, 1, 2, 5],
        }
    dataset = HeadDataset(
        images=images,
        cameras=Cameras(
            np.tile(K, (N_VIEWS, 1, 1)), np.stack([look_at(c) for c in centers]), 16, 16
        ),
        masks=rng.random((N_VIEWS, 16, 16)) > 0.3,
        scale_mat=np.eye(4),
        names=[f"{i:06d}" for i in range(N_VIEWS)],
        views=views,
    )
    write_idr(dataset, root)
    return root


def run(*args: str):
    return CliRunner().invoke(app, ["protect", *map(str, args)])


def assert_clean_failure(result, out: Path, message: str) -> None:
    assert result.exit_code != 0
    assert not isinstance(result.exception, (AssertionError, TypeError, ValueError, KeyError))
    text = result.output.strip()
    assert len(text.splitlines()) == 1, text
    assert text.startswith("error: ") and message in text, text
    assert "Traceback" not in text
    assert not out.exists()
    assert not [p for p in out.parent.iterdir() if p.name.startswith(f".{out.name}.")]


def test_protect_uses_views_json(tmp_path):
    data = write_dataset(tmp_path / "data")
    out = tmp_path / "bundle"
    result = run(data, out, "--resolution", "8")
    assert result.exit_code == 0, result.output
    assert "neutral: 2 views (views.json: 3, 4)" in result.output
    assert "sensitive: 4 views (views.json: 0, 1, 2, 5)" in result.output
    assert f"wrote {out}" in result.output
    bundle = read_bundle(out)
    assert bundle.neutral_indices == [3, 4] and bundle.protected_indices == [0, 1, 2, 5]
    assert bundle.protected_maps.shape == (4, 8, 8)
    assert (bundle.operator.name, bundle.operator.resolution) == ("sobel", 8)


def test_protect_rules_and_options(tmp_path):
    data = write_dataset(tmp_path / "data", views_json=False)
    out = tmp_path / "bundle"
    # nothing says a view is neutral: everything is protected
    result = run(data, out)
    assert result.exit_code == 0, result.output
    assert "neutral: 0 views" in result.output and "(default: 0, 1, 2, 3, 4, 5)" in result.output
    # the pose rule with a given forward direction, another operator, blur, replacing the bundle
    args = ["--forward", "0,0,1", "--operator", "scharr", "--blur", "0.5", "--overwrite"]
    result = run(data, out, *args)
    assert result.exit_code == 0, result.output
    assert "neutral: 3 views (pose: 2, 3, 4)" in result.output
    bundle = read_bundle(out)
    assert bundle.neutral_indices == POSE_NEUTRAL
    assert (bundle.operator.name, bundle.operator.blur_sigma) == ("scharr", 0.5)
    # the face looking along -Z: the other half of the ring is neutral
    result = run(data, out, "--forward", "0,0,-1", "--threshold-deg", "100", "--overwrite")
    assert "neutral: 3 views (pose: 0, 1, 5)" in result.output
    # explicit user lists win over the pose rule
    result = run(
        data, out, "--neutral", "3-4", "--sensitive", "1", "--forward", "0,0,1", "--overwrite"
    )
    assert result.exit_code == 0, result.output
    assert read_bundle(out).neutral_indices == [3, 4]


def break_missing_cameras(data: Path) -> None:
    (data / "cameras.npz").unlink()
    (data / "cameras_sphere.npz").unlink()


def break_image_count(data: Path) -> None:
    (data / "image" / "000005.png").unlink()


def break_non_image(data: Path) -> None:
    (data / "image" / "notes.txt").write_text("not an image")


def break_corrupt_image(data: Path) -> None:
    (data / "image" / "000002.png").write_bytes(b"\x89PNG garbage")


def break_empty_folder(data: Path) -> None:
    shutil.rmtree(data)
    data.mkdir()


BROKEN_DATA = {
    "missing cameras": (break_missing_cameras, "cameras.npz"),
    "image count": (break_image_count, "5 images"),
    "non-image file": (break_non_image, "notes.txt"),
    "corrupt image": (break_corrupt_image, "000002.png"),
    "empty folder": (break_empty_folder, "not a dataset folder"),
}


@pytest.mark.parametrize("case", list(BROKEN_DATA))
def test_bad_dataset_fails_cleanly(tmp_path, case):
    data = write_dataset(tmp_path / "data")
    breaker, message = BROKEN_DATA[case]
    breaker(data)
    out = tmp_path / "bundle"
    assert_clean_failure(run(data, out), out, message)


BAD_OPTIONS = {
    "unknown operator": (["--operator", "canny"], "sobel, scharr, prewitt, central"),
    "view out of range": (["--neutral", "3,9"], "out of range"),
    "malformed list": (["--sensitive", "one,two"], "--sensitive list"),
    "malformed forward": (["--forward", "0,1"], "three numbers"),
    "bad threshold": (["--forward", "0,0,1", "--threshold-deg", "270"], "180"),
    "bad resolution": (["--resolution", "0"], "resolution"),
    "negative blur": (["--blur", "-1"], "blur_sigma"),
    "unknown format": (["--format", "polycam"], "polycam"),
    "missing input": (["--format", "auto"], "not a dataset folder"),
}


@pytest.mark.parametrize("case", list(BAD_OPTIONS))
def test_bad_options_fail_cleanly(tmp_path, case):
    data = write_dataset(tmp_path / "data")
    options, message = BAD_OPTIONS[case]
    if case == "missing input":
        data = tmp_path / "nowhere"
    out = tmp_path / "bundle"
    assert_clean_failure(run(data, out, *options), out, message)


def test_existing_output_is_kept(tmp_path):
    data = write_dataset(tmp_path / "data")
    out = tmp_path / "bundle"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    result = run(data, out)
    assert result.exit_code != 0 and "already exists" in result.output
    result = run(data, out, "--overwrite")
    assert result.exit_code != 0 and "not a privhead bundle" in result.output
    assert (out / "keep.txt").read_text() == "mine"


def test_shared_head(tmp_path, shared_head):
    head = shared_head
    out = tmp_path / "b_ict"
    # The views.json split alone (face detectors, when installed, may protect more views).
    result = run(head, out, "--detector", "none", "--privacy", "paper")
    assert result.exit_code == 0, result.output
    bundle = read_bundle(out)
    assert len(bundle.neutral_indices) == 10 and len(bundle.protected_indices) == 20
    assert bundle.protected_maps.shape == (20, 64, 64)
    assert bundle.neutral_indices == [4, 5, 6, 13, 14, 15, 16, 24, 25, 26]
