"""prepare on a synthetic photo shoot, end to end (slow: renders and runs SfM)."""

import numpy as np
import pytest

from privhead.data.formats import load_dataset
from privhead.data.synthetic.photos import ShootConfig, write_photo_shoot
from privhead.eval.metrics import camera_errors
from privhead.prepare import PrepareConfig, prepare_dataset
from privhead.prepare.masks import mask_iou

pytest.importorskip("pycolmap")


@pytest.mark.slow
def test_walkaround_shoot_to_dataset(tmp_path):
    shoot = write_photo_shoot(
        tmp_path / "shoot", seed=4, cfg=ShootConfig(n_views=18, resolution=256)
    )
    result = prepare_dataset(shoot / "photos", tmp_path / "ds", PrepareConfig(image_side=256))
    truth = load_dataset(shoot / "truth")
    dataset = load_dataset(tmp_path / "ds")
    assert len(dataset) >= 16 and (tmp_path / "ds" / "prepare.json").is_file()
    chosen = [truth.names.index(n) for n in dataset.names]
    errors = camera_errors(dataset.cameras.c2w, truth.cameras.c2w[chosen])
    assert errors["median_rotation_deg"] < 1.0
    assert mask_iou(dataset.masks, truth.masks[chosen]) > 0.8
    true_faces = {truth.names[i] for i in truth.views["sensitive_indices"]}
    # every face view is protected, or left out of the dataset altogether
    assert true_faces <= set(result.sensitive) | set(result.left_out)
    assert not set(result.left_out) & set(dataset.names)
    assert np.all(dataset.images[~dataset.masks] == 0)  # the room does not leave
