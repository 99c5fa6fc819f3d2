"""The synthetic photo shoot: JPEG photos in a room, the truth kept apart."""

import json

import numpy as np
import pytest
from PIL import Image

from privhead.data.formats import load_dataset
from privhead.data.synthetic.photos import ShootConfig, room_radiance, write_photo_shoot
from privhead.errors import PrivheadError


@pytest.fixture(scope="module")
def shoots(tmp_path_factory):
    root = tmp_path_factory.mktemp("shoots")
    small = dict(n_views=4, resolution=40, supersample=1)
    walk = write_photo_shoot(root / "walk", seed=3, cfg=ShootConfig(**small))
    turn = write_photo_shoot(root / "turn", seed=3, cfg=ShootConfig(mode="turntable", **small))
    return walk, turn


def _photos(shoot):
    return np.stack(
        [np.asarray(Image.open(p)) for p in sorted((shoot / "photos").iterdir())]
    ).astype(float)


def test_layout_and_truth(shoots):
    walk, _ = shoots
    files = sorted(p.name for p in (walk / "photos").iterdir())
    assert files == [f"IMG_{k:04d}.jpg" for k in range(1, 5)]  # photos only, no camera files
    with Image.open(walk / "photos" / files[0]) as im:
        assert im.format == "JPEG" and im.size == (40, 40)
        assert im.getexif().get_ifd(0x8769).get(0xA405) > 0  # 35 mm focal for the EXIF prior
    truth = load_dataset(walk / "truth")
    assert (
        len(truth) == 4 and truth.masks is not None and (walk / "truth" / "gt_mesh.ply").is_file()
    )
    info = json.loads((walk / "shoot.json").read_text())
    assert info["config"]["mode"] == "walkaround" and info["photos"] == files
    photos = _photos(walk)
    background = ~truth.masks
    assert photos[background].mean() > 40  # the room is there, the truth images are on black
    assert truth.images[background].max() == 0


def test_turntable_background_is_static(shoots):
    walk, turn = shoots
    truth = load_dataset(turn / "truth")
    room = ~truth.masks.any(axis=0)  # pixels no view's head covers
    turn_photos, walk_photos = _photos(turn), _photos(walk)
    assert np.abs(turn_photos[1:] - turn_photos[:1])[:, room].mean() < 6  # JPEG noise only
    assert np.abs(walk_photos[1:] - walk_photos[:1])[:, room].mean() > 20
    # A turntable's virtual cameras orbit the head at one elevation.
    heights = truth.cameras.centers[:, 1]
    assert np.ptp(heights) < 1e-9


def test_room_radiance_hits_the_walls():
    import torch

    origins = torch.zeros(5, 3)
    directions = torch.nn.functional.normalize(torch.randn(5, 3), dim=1)
    radiance = room_radiance(origins, directions)
    assert radiance.shape == (5, 3) and bool((radiance > 0).all()) and bool((radiance < 1).all())


def test_bad_shoot_config():
    with pytest.raises(PrivheadError, match="Unknown shoot mode"):
        ShootConfig(mode="drone")
    with pytest.raises(PrivheadError, match="skin_detail"):
        ShootConfig(skin_detail=-0.1)
