"""prepare on a synthetic photo shoot, end to end (slow: renders and runs SfM)."""

import numpy as np
import pytest

from privhead.data.formats import load_dataset
from privhead.data.synthetic.photos import ShootConfig, write_photo_shoot
from privhead.eval.metrics import camera_errors
from privhead.prepare import PrepareConfig, prepare_dataset
from privhead.prepare.masks import mask_iou

pytest.importorskip("pycolmap")


def _prepare_and_check(tmp_path, cfg: ShootConfig, min_views: int, min_iou: float):
    """Prepare the shoot's photos and check the dataset against the shoot's truth: at least
    ``min_views`` views, median rotation error < 1 deg, mask IoU > ``min_iou``, every face view
    protected or left out (and left-out views in no output), the room blacked out."""
    shoot = write_photo_shoot(tmp_path / "shoot", seed=4, cfg=cfg)
    side = cfg.resolution
    result = prepare_dataset(shoot / "photos", tmp_path / "ds", PrepareConfig(image_side=side))
    truth = load_dataset(shoot / "truth")
    dataset = load_dataset(tmp_path / "ds")
    assert len(dataset) >= min_views and (tmp_path / "ds" / "prepare.json").is_file()
    chosen = [truth.names.index(n) for n in dataset.names]
    errors = camera_errors(dataset.cameras.c2w, truth.cameras.c2w[chosen])
    assert errors["median_rotation_deg"] < 1.0
    # The dataset is in the head frame (centre at the origin, up +Y, face +Z), as the truth is:
    # the similarity between them is nearly no rotation (up from the cameras, face voted).
    rotation = np.asarray(errors["transform"])[:3, :3]
    rotation = rotation / np.cbrt(np.linalg.det(rotation))
    assert np.degrees(np.arccos(np.clip((np.trace(rotation) - 1) / 2, -1, 1))) < 15.0
    assert mask_iou(dataset.masks, truth.masks[chosen]) > min_iou
    true_faces = {truth.names[i] for i in truth.views["sensitive_indices"]}
    # every face view is protected, or left out of the dataset altogether
    assert true_faces <= set(result.sensitive) | set(result.left_out)
    assert not set(result.left_out) & set(dataset.names)
    assert np.all(dataset.images[~dataset.masks] == 0)  # the room does not leave
    return result


@pytest.mark.slow
def test_walkaround_shoot_to_dataset(tmp_path):
    result = _prepare_and_check(tmp_path, ShootConfig(n_views=18, resolution=256), 16, 0.8)
    assert not result.static_camera


@pytest.mark.slow
def test_turntable_shoot_to_dataset(tmp_path):
    # A fixed camera and a turning head with skin texture: the masks come before SfM (the
    # room is the same in every view) and SfM takes no features where a view shows the room.
    # Only the head carries features here, and its texture needs the pixels: at 256 px (18 or
    # 30 views) SfM registered 2-4 views. About 3 minutes.
    cfg = ShootConfig(mode="turntable", n_views=30, resolution=512, skin_detail=0.35)
    result = _prepare_and_check(tmp_path, cfg, 28, 0.85)
    assert result.static_camera
