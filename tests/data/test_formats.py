"""Dataset formats: round trips through IDR and transforms.json, masks, errors, shared heads."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from privhead.data.cameras import Cameras, image_rays, opengl_to_opencv_c2w
from privhead.data.formats import (
    HeadDataset,
    load_dataset,
    read_idr,
    read_image,
    read_image_alpha,
    read_transforms,
    write_idr,
    write_image,
    write_transforms,
)
from privhead.errors import PrivheadError

WIDTH, HEIGHT = 16, 12


def look_at_c2w(center: np.ndarray) -> np.ndarray:
    """OpenCV camera-to-world of a camera at ``center`` looking at the origin, world up +Y."""
    forward = -center / np.linalg.norm(center)
    right = np.cross(forward, [0.0, 1.0, 0.0])
    right /= np.linalg.norm(right)
    down = np.cross(forward, right)
    c2w = np.eye(4)
    c2w[:3, 0], c2w[:3, 1], c2w[:3, 2], c2w[:3, 3] = right, down, forward, center
    return c2w


def make_dataset(n: int = 4, seed: int = 0) -> HeadDataset:
    rng = np.random.default_rng(seed)
    c2ws = []
    for _ in range(n):
        direction = rng.normal(size=3)
        direction[1] = 0.3 * direction[1]
        c2ws.append(look_at_c2w(2.5 * direction / np.linalg.norm(direction)))
    K = np.array([[20.0, 0.0, 7.3], [0.0, 21.0, 5.6], [0.0, 0.0, 1.0]])
    cameras = Cameras(np.repeat(K[None], n, axis=0), np.stack(c2ws), WIDTH, HEIGHT)
    # Images quantised to 8 bits so that a PNG round trip is exact.
    images = rng.integers(0, 256, size=(n, HEIGHT, WIDTH, 3)).astype(np.float32) / 255.0
    masks = rng.random((n, HEIGHT, WIDTH)) > 0.4
    scale_mat = np.diag([1.5, 1.5, 1.5, 1.0])
    scale_mat[:3, 3] = [0.1, -0.2, 0.3]
    names = [f"{i:03d}" for i in range(n)]
    return HeadDataset(images, cameras, masks, scale_mat, names)


def assert_same_views(a: HeadDataset, b: HeadDataset) -> None:
    np.testing.assert_array_equal(a.images, b.images)
    np.testing.assert_allclose(a.cameras.K, b.cameras.K, atol=1e-9)
    np.testing.assert_allclose(a.cameras.c2w, b.cameras.c2w, atol=1e-9)
    assert (a.cameras.width, a.cameras.height) == (b.cameras.width, b.cameras.height)
    np.testing.assert_array_equal(a.masks, b.masks)
    assert a.names == b.names


def test_idr_round_trip(tmp_path):
    dataset = make_dataset()
    write_idr(dataset, tmp_path)
    loaded = read_idr(tmp_path)
    assert_same_views(dataset, loaded)
    np.testing.assert_allclose(loaded.scale_mat, dataset.scale_mat, atol=1e-12)
    assert loaded.images.dtype == np.float32 and loaded.masks.dtype == bool
    # cameras_sphere.npz (NeuS) holds the same cameras.
    assert_same_views(dataset, read_idr(tmp_path, "cameras_sphere.npz"))


def test_transforms_round_trip(tmp_path):
    dataset = make_dataset(n=3, seed=1)
    write_transforms(dataset, tmp_path)
    loaded = read_transforms(tmp_path)
    assert_same_views(dataset, loaded)
    assert loaded.scale_mat is None
    meta = json.loads((tmp_path / "transforms.json").read_text())
    # nerfstudio convention: pixel centres at +0.5.
    assert meta["cx"] == pytest.approx(7.8) and meta["cy"] == pytest.approx(6.1)
    np.testing.assert_allclose(
        opengl_to_opencv_c2w(np.array(meta["frames"][0]["transform_matrix"])),
        dataset.cameras.c2w[0],
        atol=1e-12,
    )


def test_transforms_camera_angle_and_alpha_masks(tmp_path):
    dataset = make_dataset(n=2, seed=2)
    for i, name in enumerate(dataset.names):
        rgba = np.concatenate([dataset.images[i], dataset.masks[i, ..., None]], axis=2)
        (tmp_path / "rgb").mkdir(exist_ok=True)
        Image.fromarray(np.round(rgba * 255).astype(np.uint8), "RGBA").save(
            tmp_path / "rgb" / f"{name}.png"
        )
    angle = 0.8
    frames = [
        {"file_path": f"rgb/{name}", "transform_matrix": opengl_to_opencv_c2w(c2w).tolist()}
        for name, c2w in zip(dataset.names, dataset.cameras.c2w, strict=True)
    ]
    (tmp_path / "transforms.json").write_text(
        json.dumps({"camera_angle_x": angle, "frames": frames})
    )
    loaded = load_dataset(tmp_path)
    np.testing.assert_array_equal(loaded.masks, dataset.masks)
    np.testing.assert_array_equal(loaded.images, dataset.images)
    focal = 0.5 * WIDTH / np.tan(0.5 * angle)
    expected_K = [[focal, 0, (WIDTH - 1) / 2], [0, focal, (HEIGHT - 1) / 2], [0, 0, 1]]
    np.testing.assert_allclose(loaded.cameras.K[1], expected_K, atol=1e-12)
    np.testing.assert_allclose(loaded.cameras.c2w, dataset.cameras.c2w, atol=1e-12)


def test_read_image_variants(tmp_path):
    grey = np.arange(12, dtype=np.uint8).reshape(3, 4) * 20
    Image.fromarray(grey, "L").save(tmp_path / "grey.png")
    rgb = read_image(tmp_path / "grey.png")
    assert rgb.shape == (3, 4, 3) and rgb.dtype == np.float32
    np.testing.assert_allclose(rgb[..., 2], grey / 255.0, atol=1e-7)

    rgba = np.zeros((3, 4, 4), dtype=np.uint8)
    rgba[..., 0], rgba[..., 3] = 200, 255
    rgba[0, 0, 3] = 0
    Image.fromarray(rgba, "RGBA").save(tmp_path / "rgba.png")
    image, alpha = read_image_alpha(tmp_path / "rgba.png")
    assert image.shape == (3, 4, 3) and alpha.shape == (3, 4)
    assert alpha[0, 0] == 0.0 and alpha[1, 1] == 1.0
    assert image[0, 0, 0] == pytest.approx(200 / 255)

    picture = np.random.default_rng(0).random((5, 6, 3)).astype(np.float32)
    write_image(tmp_path / "out.png", picture)
    np.testing.assert_allclose(read_image(tmp_path / "out.png"), picture, atol=0.5 / 255 + 1e-6)

    (tmp_path / "fake.png").write_text("not an image")
    with pytest.raises(PrivheadError, match="fake.png"):
        read_image(tmp_path / "fake.png")


def test_natural_order_and_subset(tmp_path):
    dataset = make_dataset(n=3)
    write_idr(dataset, tmp_path)
    # Unpadded names: 2 must come before 10.
    for old, new in (("000", "10"), ("001", "2"), ("002", "33")):
        for folder in ("image", "mask"):
            (tmp_path / folder / f"{old}.png").rename(tmp_path / folder / f"{new}.png")
    loaded = read_idr(tmp_path)
    assert loaded.names == ["2", "10", "33"]
    np.testing.assert_array_equal(loaded.images[0], dataset.images[1])

    views = {
        "n_views": 3,
        "sensitive_indices": [0, 2],
        "neutral_indices": [1],
        "views": [{"index": i, "sensitive": i != 1} for i in range(3)],
    }
    loaded.views = views
    part = loaded.subset([2, 1])
    assert len(part) == 2 and part.names == ["33", "10"]
    np.testing.assert_array_equal(part.cameras.c2w[1], loaded.cameras.c2w[1])
    assert part.views["sensitive_indices"] == [0] and part.views["neutral_indices"] == [1]
    assert [v["index"] for v in part.views["views"]] == [0, 1]
    loaded.views = {"sensitive_indices": [1, 2]}
    assert loaded.subset([2, 0]).views["sensitive_indices"] == [0]


def _remove(path: Path) -> None:
    path.unlink()


@pytest.mark.parametrize(
    "damage, message",
    [
        (
            lambda root: _remove(root / "cameras.npz") or _remove(root / "cameras_sphere.npz"),
            "cameras.npz",
        ),
        (lambda root: [_remove(p) for p in (root / "image").iterdir()], "no images"),
        (lambda root: (root / "image").rename(root / "photos"), "image"),
        (lambda root: _remove(root / "image" / "001.png"), "3 images but cameras.npz has 4"),
        (lambda root: _remove(root / "mask" / "001.png"), "3 masks"),
        (lambda root: (root / "image" / "notes.txt").write_text("x"), "notes.txt"),
        (lambda root: (root / "image" / "001.png").write_bytes(b"garbage"), "001.png"),
        (
            lambda root: Image.new("RGB", (WIDTH + 1, HEIGHT)).save(root / "image" / "002.png"),
            "same size",
        ),
    ],
)
def test_idr_errors(tmp_path, damage, message):
    write_idr(make_dataset(), tmp_path)
    damage(tmp_path)
    with pytest.raises(PrivheadError, match=message):
        load_dataset(tmp_path)


def test_idr_unequal_scale_mats(tmp_path):
    write_idr(make_dataset(), tmp_path)
    arrays = dict(np.load(tmp_path / "cameras.npz"))
    arrays["scale_mat_2"] = np.eye(4) * 2
    np.savez(tmp_path / "cameras.npz", **arrays)
    with pytest.raises(PrivheadError, match="scale_mat_2"):
        read_idr(tmp_path)


def test_transforms_errors(tmp_path):
    with pytest.raises(PrivheadError, match="transforms.json"):
        read_transforms(tmp_path)
    with pytest.raises(PrivheadError, match="not a dataset folder"):
        load_dataset(tmp_path)
    write_transforms(make_dataset(n=2), tmp_path)
    meta = json.loads((tmp_path / "transforms.json").read_text())
    del meta["frames"][1]["mask_path"]
    (tmp_path / "transforms.json").write_text(json.dumps(meta))
    with pytest.raises(PrivheadError, match="mask_path"):
        read_transforms(tmp_path)
    meta["frames"][1]["file_path"] = "image/missing.png"
    (tmp_path / "transforms.json").write_text(json.dumps(meta))
    with pytest.raises(PrivheadError, match="missing.png"):
        read_transforms(tmp_path)


def test_shared_head_formats_agree(shared_head):
    idr = load_dataset(shared_head, "idr")
    ngp = load_dataset(shared_head, "transforms")
    assert len(idr) == len(ngp) == 30
    assert idr.views["n_sensitive"] == 20 and idr.gt_mesh is not None
    np.testing.assert_array_equal(idr.images, ngp.images)
    np.testing.assert_array_equal(idr.masks, ngp.masks)
    for i in range(len(idr)):
        rays = [
            image_rays(
                torch.from_numpy(d.cameras.K[i]),
                torch.from_numpy(d.cameras.c2w[i]),
                d.cameras.height,
                d.cameras.width,
            )
            for d in (idr, ngp)
        ]
        assert (rays[0][0] - rays[1][0]).abs().max() < 1e-5
        assert (rays[0][1] - rays[1][1]).abs().max() < 1e-5
