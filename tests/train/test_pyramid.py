"""The RGB image pyramid: levels are exact box averages and their cameras see the same rays."""

import dataclasses

import numpy as np
import torch
from test_trainer import _tiny_config

from privhead.data.cameras import Cameras, look_at_c2w, pixel_rays
from privhead.train.trainer import Trainer
from privhead.train.views import make_training_views, rgb_pyramid


def _views(size):
    rng = np.random.default_rng(1)
    K = np.array([[1.2 * size, 0, (size - 1) / 2], [0, 1.2 * size, (size - 1) / 2], [0, 0, 1]])
    c2w = np.stack([look_at_c2w((0.0, 0.3, 2.5)), look_at_c2w((2.5, 0.0, 0.4))])
    cams = Cameras(np.stack([K, K]), c2w, size, size)
    images = rng.uniform(0, 1, (2, size, size, 3)).astype(np.float32)
    masks = rng.uniform(0, 1, (2, size, size)) > 0.5
    empty = np.zeros((0, 1, 1), np.float32)
    return make_training_views(
        images, masks, cams, empty, None, None, np.eye(4), torch.device("cpu")
    )


def test_levels_halve_down_to_the_base_and_small_views_are_untouched():
    views = _views(64)
    levels = rgb_pyramid(views, base=16)
    assert [lv.images.shape[1] for lv in levels] == [16, 32, 64]
    assert levels[-1].images is views.rgb_images  # the finest level is the images themselves
    assert len(rgb_pyramid(views, base=64)) == 1
    assert len(rgb_pyramid(views, base=0)) == 1
    assert len(rgb_pyramid(_views(48), base=64)) == 1


def _decode(v):  # sRGB (IEC 61966-2-1) -> linear
    return np.where(v <= 0.04045, v / 12.92, ((v + 0.055) / 1.055) ** 2.4)


def _encode(v):
    return np.where(v <= 0.0031308, 12.92 * v, 1.055 * np.power(v, 1 / 2.4) - 0.055)


def test_coarse_pixels_are_box_averages_of_the_fine_ones_in_linear_light():
    views = _views(32)
    coarse = rgb_pyramid(views, base=16)[0]
    fine = views.rgb_images.double().numpy()
    expected = _encode(_decode(fine).reshape(2, 16, 2, 16, 2, 3).mean(axis=(2, 4)))
    assert np.allclose(coarse.images.numpy(), expected, atol=2e-6)
    # a pixel half white, half black is what a camera records: 0.5 of the light, not of sRGB
    assert not np.allclose(expected, fine.reshape(2, 16, 2, 16, 2, 3).mean(axis=(2, 4)), atol=0.01)
    mask = views.rgb_masks.reshape(2, 16, 2, 16, 2).mean(dim=(2, 4))
    assert torch.allclose(coarse.masks, mask, atol=1e-6)
    assert set(np.unique(coarse.masks.numpy()).round(2)) - {0.0, 0.25, 0.5, 0.75, 1.0} == set()


def test_a_coarse_pixel_centre_is_the_centre_of_its_fine_pixels():
    views = _views(32)
    coarse = rgb_pyramid(views, base=8)[0]  # 8 px: factor 4
    rows = torch.tensor([0.0, 3.0, 7.0, 5.0])
    cols = torch.tensor([0.0, 6.0, 7.0, 2.0])
    view = torch.tensor([0, 1, 0, 1])
    _, d_coarse = pixel_rays(coarse.K[view], views.rgb_c2w[view], rows, cols)
    # Coarse pixel i covers fine pixels 4i .. 4i + 3, whose centre is at 4i + 1.5.
    _, d_fine = pixel_rays(views.rgb_K[view], views.rgb_c2w[view], 4 * rows + 1.5, 4 * cols + 1.5)
    assert torch.allclose(d_coarse, d_fine, atol=1e-6)


def test_trainer_walks_the_pyramid_from_coarse_to_fine(tmp_path):
    views = _views(32)
    cfg = _tiny_config(steps=8)
    cfg = dataclasses.replace(
        cfg,
        mode="full-rgb",
        stage1=dataclasses.replace(cfg.stage1, pyramid_base=8, pyramid_fraction=0.75),
    )
    trainer = Trainer(cfg, views, tmp_path, torch.device("cpu"), progress=False)
    stage = trainer.stages[0]  # 16 steps (both stages' steps), 3 levels (8, 16, 32 px)
    sizes = []
    for step in range(stage.steps):
        trainer.step = step
        sizes.append(trainer._pyramid_level(stage).images.shape[1])
    assert sizes == sorted(sizes) and sizes[0] == 8 and sizes[-1] == 32
    assert sizes.count(32) > sizes.count(8)  # the last quarter is at full size


def test_levels_finer_than_the_footprint_limit_are_left_out():
    views = _views(64)  # camera 2.5 from the origin, focal 1.2 * 64: 0.0326 units per pixel
    footprint = 2.5 / (1.2 * 64)
    sizes = lambda levels: [lv.images.shape[1] for lv in levels]  # noqa: E731
    assert sizes(rgb_pyramid(views, base=16, min_footprint=0.9 * footprint)) == [16, 32, 64]
    assert sizes(rgb_pyramid(views, base=16, min_footprint=1.5 * footprint)) == [16, 32]
    assert sizes(rgb_pyramid(views, base=16, min_footprint=3.0 * footprint)) == [16]
    assert sizes(rgb_pyramid(views, base=16, min_footprint=100.0)) == [16]  # the coarsest stays
