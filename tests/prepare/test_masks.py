"""Head masks from multi-view evidence, on scenes whose true masks are known."""

import numpy as np
import pytest

from privhead.data.cameras import Cameras, look_at_c2w, similarity
from privhead.prepare.masks import (
    background_plate,
    hull_consistent_masks,
    is_static_camera,
    mask_iou,
    masks_from_points,
    static_background_masks,
)

pytest.importorskip("cv2")

SIZE = 96


def _checker(rng, shape, cell):
    tiles = rng.integers(30, 255, size=(shape[0] // cell + 1, shape[1] // cell + 1, 3))
    return np.kron(tiles, np.ones((cell, cell, 1)))[: shape[0], : shape[1]].astype(np.uint8)


def _scene(n_views=6, seed=0):
    """A skin-coloured ball of radius 0.5 at the origin in a room of random points."""
    rng = np.random.default_rng(seed)
    K = np.array([[90.0, 0, (SIZE - 1) / 2], [0, 90.0, (SIZE - 1) / 2], [0, 0, 1]])
    c2ws = []
    for k in range(n_views):
        angle = 2 * np.pi * k / n_views
        c2ws.append(look_at_c2w([2.5 * np.sin(angle), 0.3, 2.5 * np.cos(angle)]))
    cameras = Cameras(np.repeat(K[None], n_views, 0), np.stack(c2ws), SIZE, SIZE)
    room = rng.normal(size=(3000, 3))
    room = 5.0 * room / np.linalg.norm(room, axis=1, keepdims=True)
    head = rng.normal(size=(60, 3))
    head = 0.5 * head / np.linalg.norm(head, axis=1, keepdims=True)
    images, truth = [], []
    cols, rows = np.meshgrid(np.arange(SIZE), np.arange(SIZE))
    for i in range(n_views):
        (c_uv,), _ = cameras.subset([i]).project(np.zeros((1, 3)))
        c_uv = c_uv[0]
        distance = np.linalg.norm(cameras.centers[i])
        radius_px = 90.0 * np.tan(np.arcsin(0.5 / distance))
        inside = (cols - c_uv[0]) ** 2 + (rows - c_uv[1]) ** 2 < radius_px**2
        image = _checker(rng, (SIZE, SIZE), 6)
        image[inside] = (205, 150, 120)
        images.append(image)
        truth.append(inside)
    points = np.concatenate([head, room])
    visible = []  # what structure from motion would have seen: points the ball does not hide
    for centre in cameras.centers:
        rays = points - centre
        t = -(rays @ centre) / np.einsum("ij,ij->i", rays, rays)
        closest = np.linalg.norm(centre + np.clip(t, 0, 1)[:, None] * rays, axis=1)
        behind = (closest < 0.5) & (np.linalg.norm(points, axis=1) > 0.5 + 1e-6)
        facing = np.einsum("ij,ij->i", points, centre - points) > 0
        on_ball = np.linalg.norm(points, axis=1) < 0.5 + 1e-6
        visible.append(np.nonzero(~behind & (~on_ball | facing))[0])
    return np.stack(images), cameras, points, np.stack(truth), visible


def test_masks_from_points_find_the_head():
    images, cameras, points, truth, visible = _scene()
    masks = masks_from_points(images, cameras, points, np.zeros(3), 1.0, 2.0, visible)
    assert mask_iou(masks, truth) > 0.9


def test_masks_from_points_without_head_points():
    # A smooth head gives few or no points of its own; the room alone bounds it.
    images, cameras, points, truth, visible = _scene(seed=1)
    room = np.linalg.norm(points, axis=1) > 1.0
    visible = [v[room[v]] for v in visible]  # indices stay those of ``points``
    masks = masks_from_points(images, cameras, points, np.zeros(3), 1.0, 2.0, visible)
    assert mask_iou(masks, truth) > 0.85


def test_static_background_masks():
    rng = np.random.default_rng(3)
    background = _checker(rng, (SIZE, SIZE), 8)
    cols, rows = np.meshgrid(np.arange(SIZE), np.arange(SIZE))
    truth = (cols - 48) ** 2 + (rows - 44) ** 2 < 26**2
    images = []
    for _ in range(8):  # the "head" turns: its texture changes, the room does not
        frame = background.copy()
        skin = np.array([200, 140, 110]) + rng.integers(-40, 40, size=(SIZE, SIZE, 1))
        frame[truth] = np.clip(skin, 0, 255)[truth]
        images.append(frame)
    images = np.stack(images).astype(np.uint8)
    assert is_static_camera(images)
    masks, _ = static_background_masks(images)
    assert mask_iou(masks, np.repeat(truth[None], 8, 0)) > 0.9
    moving = np.stack([_checker(np.random.default_rng(k), (SIZE, SIZE), 8) for k in range(8)])
    assert not is_static_camera(moving)


def _turntable_scene(seed: int, half_widths: list[int], hair_above_row: int | None = None):
    """A fixed camera on a checker room and an elliptic head of textured skin (never the same
    twice), one view per half width; optionally a cap of uniform hair above a row.

    Returns:
        images [V, SIZE, SIZE, 3] uint8, true masks [V, SIZE, SIZE], the row index grid.
    """
    rng = np.random.default_rng(seed)
    background = _checker(rng, (SIZE, SIZE), 8)
    cols, rows = np.meshgrid(np.arange(SIZE), np.arange(SIZE))
    images, truth = [], []
    for half_width in half_widths:
        head = ((cols - 48) / half_width) ** 2 + ((rows - 50) / 34) ** 2 < 1
        frame = background.copy()
        skin = np.array([200, 140, 110]) + rng.integers(-40, 40, size=(SIZE, SIZE, 3))
        frame[head] = np.clip(skin, 0, 255)[head]
        if hair_above_row is not None:
            frame[head & (rows < hair_above_row)] = (60, 40, 30)
        images.append(frame)
        truth.append(head)
    return np.stack(images).astype(np.uint8), np.stack(truth), rows


def test_static_background_masks_with_a_turning_head_of_uniform_hair():
    # A head wider in profile than from the front (the room just outside the 3 frontal
    # silhouettes is covered by the head in the 9 other views) with a cap of uniform hair on the
    # turning axis: the same colour in every view, like the room. Both fooled the per-pixel
    # median (IoU 0.76 on this scene, the hair cap lost). The skin is textured: a view of it
    # never repeats.
    images, truth, rows = _turntable_scene(4, [18 if k < 3 else 27 for k in range(12)], 32)
    assert is_static_camera(images)
    masks, features = static_background_masks(images)
    assert mask_iou(masks, truth) > 0.9
    assert masks[:, 20:30, 40:56].mean() > 0.95  # the hair cap is head
    # SfM features: inside the masks, not where a view shows the plate's colour that most views
    # show (the hair cap has the same colour in every view, like room)
    assert not (features & ~masks).any()
    assert not features[:, 20:30, 40:56].any()
    skin = truth & (rows > 40)[None]
    assert features[skin].mean() > 0.9


def test_background_plate_is_the_colour_most_views_agree_on():
    # One pixel: the room's colour in 4 of 10 views, the head's (never twice the same) in 6.
    room = np.array([10, 200, 30])
    head = [np.array([120 + 15 * k, 90, 80]) for k in range(6)]
    values = [room + d for d in (0, 2, -3, 1)] + head
    images = np.array(values, dtype=np.uint8).reshape(10, 1, 1, 3)
    plate, agreement = background_plate(images)
    assert agreement[0, 0] == 4
    np.testing.assert_allclose(plate[0, 0], room, atol=3)
    # the median would have been a head colour
    assert np.abs(np.median(images[:, 0, 0].astype(float), axis=0) - room).max() > 40


def test_hull_consistent_masks_drop_room_the_other_views_do_not_explain():
    # The true masks of a ball seen from 8 views, plus the same block of pixels in every view
    # (a turntable's static patch of room next to the head) and, in one view, a room blob.
    _, cameras, _, truth, _ = _scene(n_views=8)
    masks = truth.copy()
    masks[:, 10:24, 62:80] = True
    masks[3, 70:90, 5:25] = True
    scale_mat = similarity(np.zeros(3), 0.9)
    cut = hull_consistent_masks(cameras, masks, scale_mat, resolution=64)
    assert (cut <= masks).all()  # a subset of its input
    assert (truth & ~cut).sum() <= 0.002 * truth.sum()  # the ball keeps its pixels
    assert not cut[:, 10:24, 62:80][~truth[:, 10:24, 62:80]].any()
    assert not cut[3, 70:90, 5:25][~truth[3, 70:90, 5:25]].any()
    assert mask_iou(cut, truth) > 0.99 > mask_iou(masks, truth)


def test_hull_consistent_masks_keep_what_a_few_masks_miss():
    # 2 of 10 views lose the top of the ball (GrabCut taking dark hair for room): the cut must
    # not take it from the other 8 (with a tolerance of 1 view in 10 it did, in every view).
    _, cameras, _, truth, _ = _scene(n_views=10)
    masks = truth.copy()
    masks[[2, 7], :40] = False
    scale_mat = similarity(np.zeros(3), 0.9)
    cut = hull_consistent_masks(cameras, masks, scale_mat, resolution=64)
    good = [k for k in range(10) if k not in (2, 7)]
    assert (truth[good] & ~cut[good]).sum() <= 0.002 * truth[good].sum()


def test_static_background_masks_leave_out_room_the_head_covers_now_and_then():
    # The head is wider in the 4 profile views than in the 8 others: the band between the two
    # silhouettes is room in 8 of 12 views. Labelled probable head in the plate because it
    # moves, the band went into every mask (the shared turntable shoots: 3-8 % of the head's
    # area as room around it; this scene: IoU 0.84 in the narrow views).
    images, truth, _ = _turntable_scene(5, [28 if k % 3 == 0 else 18 for k in range(12)])
    masks, _ = static_background_masks(images)
    narrow = [k for k in range(12) if k % 3]
    assert mask_iou(masks[narrow], truth[narrow]) > 0.95
    assert mask_iou(masks, truth) > 0.95
