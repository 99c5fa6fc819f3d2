"""COLMAP models: text and binary round trips, the pixel convention, malformed files."""

import struct

import numpy as np
import pytest

from privhead.data.cameras import Cameras
from privhead.data.colmap import (
    ColmapCamera,
    ColmapImage,
    ColmapModel,
    ColmapPoint,
    matrix_to_quaternion,
    model_cameras,
    quaternion_to_matrix,
    read_colmap_dataset,
    read_model,
    write_model,
)
from privhead.data.formats import write_image
from privhead.data.synthetic.rig import ring_cameras
from privhead.errors import PrivheadError


def _model(n_views=6, n_points=25, seed=0) -> tuple[ColmapModel, Cameras]:
    cameras, _, _ = ring_cameras(n_views, 40, 30)
    rng = np.random.default_rng(seed)
    cams = {1: ColmapCamera.from_K(1, cameras.K[0], 40, 30)}
    images, points = {}, {}
    for i in range(n_views):
        image = ColmapImage.from_c2w(i + 1, cameras.c2w[i], 1, f"view_{i:02d}.png")
        image.xys = rng.uniform(0, 30, size=(4, 2))
        image.point3d_ids = np.array([-1, 1, 2, 3], dtype=np.int64)
        images[i + 1] = image
    for k in range(1, n_points + 1):
        points[k] = ColmapPoint(
            k,
            rng.normal(size=3),
            rng.integers(0, 256, size=3).astype(np.uint8),
            float(rng.uniform(0, 2)),
            np.array([1, 2, 3], dtype=np.int64),
            np.array([1, 0, 2], dtype=np.int64),
        )
    return ColmapModel(cams, images, points), cameras


def test_quaternion_round_trip():
    rng = np.random.default_rng(1)
    for _ in range(20):
        q = rng.normal(size=4)
        q /= np.linalg.norm(q)
        q = q if q[0] >= 0 else -q
        R = quaternion_to_matrix(q)
        assert np.allclose(R @ R.T, np.eye(3), atol=1e-12)
        assert np.allclose(matrix_to_quaternion(R), q, atol=1e-9)


@pytest.mark.parametrize("binary", [False, True])
def test_model_round_trip(tmp_path, binary):
    model, cameras = _model()
    write_model(model, tmp_path / "m", binary=binary)
    suffix = ".bin" if binary else ".txt"
    assert (tmp_path / "m" / f"cameras{suffix}").is_file()
    back = read_model(tmp_path / "m")
    names, K, c2w, distortion, size = model_cameras(back)
    assert size == (40, 30)
    assert np.allclose(K, cameras.K, atol=1e-9)
    assert np.allclose(c2w, cameras.c2w, atol=1e-9)
    assert not distortion.any()
    assert len(back.points) == len(model.points)
    for k, point in model.points.items():
        assert np.allclose(back.points[k].xyz, point.xyz)
        assert np.array_equal(back.points[k].image_ids, point.image_ids)
    for k, image in model.images.items():
        assert np.allclose(back.images[k].xys, image.xys)
        assert np.array_equal(back.images[k].point3d_ids, image.point3d_ids)
    assert back.mean_reprojection_error() == pytest.approx(model.mean_reprojection_error())


def test_text_and_binary_agree(tmp_path):
    model, _ = _model()
    write_model(model, tmp_path / "t")
    write_model(model, tmp_path / "b", binary=True)
    text, binary = (
        model_cameras(read_model(tmp_path / "t")),
        model_cameras(read_model(tmp_path / "b")),
    )
    assert text[0] == binary[0]
    assert np.array_equal(text[1], binary[1]) and np.array_equal(text[2], binary[2])


def test_colmap_pixel_convention():
    # COLMAP's principal point of a centred W x H image is (W / 2, H / 2); privhead's (W-1)/2.
    camera = ColmapCamera(1, "SIMPLE_PINHOLE", 640, 480, [500.0, 320.0, 240.0])
    K = camera.K()
    assert K[0, 2] == pytest.approx(319.5) and K[1, 2] == pytest.approx(239.5)
    opencv = ColmapCamera(2, "OPENCV", 640, 480, [500, 510, 320, 240, 0.1, -0.02, 0.001, 0.002])
    assert opencv.K()[1, 1] == 510
    assert np.allclose(opencv.distortion(), [0.1, -0.02, 0.001, 0.002])
    assert np.allclose(
        ColmapCamera(3, "SIMPLE_RADIAL", 64, 64, [50, 32, 32, 0.05]).distortion(), [0.05, 0, 0, 0]
    )


def test_points_are_optional(tmp_path):
    model, cameras = _model()
    folder = write_model(ColmapModel(model.cameras, model.images), tmp_path / "sparse" / "0")
    (folder / "points3D.txt").unlink()
    back = read_model(tmp_path)  # finds sparse/0
    assert back.points == {}
    assert np.allclose(model_cameras(back)[2], cameras.c2w)


def test_malformed_models_raise_one_sentence(tmp_path):
    model, _ = _model()
    folder = write_model(model, tmp_path / "b", binary=True)
    data = (folder / "images.bin").read_bytes()
    (folder / "images.bin").write_bytes(data[: len(data) // 2])
    with pytest.raises(PrivheadError, match="truncated|more than the file holds"):
        read_model(folder)
    (folder / "images.bin").write_bytes(struct.pack("<Q", 10**12))
    with pytest.raises(PrivheadError, match="announces"):
        read_model(folder)

    text = write_model(model, tmp_path / "t")
    (text / "cameras.txt").write_text("1 PINHOLE 40 30 1 2\n")
    with pytest.raises(PrivheadError, match="has 2 parameters"):
        read_model(text)
    (text / "cameras.txt").write_text("1 FOV 40 30 1 2 3 4 5\n")
    with pytest.raises(PrivheadError, match="model FOV"):
        read_model(text)
    (text / "cameras.txt").write_text("7 PINHOLE 40 30 1 1 20 15\n")
    with pytest.raises(PrivheadError, match="unknown camera"):
        read_model(text)
    with pytest.raises(PrivheadError, match="No COLMAP model"):
        read_model(tmp_path / "nothing")


def test_read_colmap_dataset_undistorts(tmp_path):
    model, cameras = _model(n_views=6)
    rng = np.random.default_rng(0)
    (tmp_path / "images").mkdir()
    (tmp_path / "masks").mkdir()
    for image in model.images.values():
        write_image(tmp_path / "images" / image.name, rng.uniform(size=(30, 40, 3)))
        mask = np.zeros((30, 40), dtype=np.uint8)
        mask[8:22, 10:30] = 255
        from PIL import Image

        Image.fromarray(mask).save(tmp_path / "masks" / f"{image.name}.png")
    write_model(model, tmp_path / "sparse" / "0")
    dataset = read_colmap_dataset(tmp_path)
    assert dataset.names == [f"view_{i:02d}" for i in range(6)]
    assert dataset.masks is not None and dataset.masks[:, 8:22, 10:30].all()
    assert np.allclose(dataset.cameras.c2w, cameras.c2w)
    # With distortion the image changes but keeps its size.
    distorted = ColmapCamera(1, "OPENCV", 40, 30, [40, 40, 20, 15, 0.2, 0.0, 0.0, 0.0])
    write_model(ColmapModel({1: distorted}, model.images), tmp_path / "sparse" / "0")
    undistorted = read_colmap_dataset(tmp_path)
    assert undistorted.images.shape == dataset.images.shape
    assert not np.allclose(undistorted.images, dataset.images)
    (tmp_path / "images" / "view_03.png").unlink()
    with pytest.raises(PrivheadError, match="view_03.png"):
        read_colmap_dataset(tmp_path)


def test_a_model_without_some_images(tmp_path):
    model, _ = _model(n_views=4, n_points=3)
    model.points[2].image_ids = np.array([1, 2, 4], dtype=np.int64)  # seen by views 0, 1, 3
    model.points[2].point2d_idxs = np.array([2, 1, 3], dtype=np.int64)
    model.points[3].image_ids = np.array([2, 3], dtype=np.int64)  # seen by views 1 and 2
    model.points[3].point2d_idxs = np.array([3, 3], dtype=np.int64)
    less = model.without_images({"view_02.png"})
    assert sorted(im.name for im in less.images.values()) == [
        "view_00.png",
        "view_01.png",
        "view_03.png",
    ]
    # Point 1 keeps views 0, 1 (two left); point 2 keeps all three; point 3 had one view left.
    assert sorted(less.points) == [1, 2]
    assert less.points[1].image_ids.tolist() == [1, 2]
    assert less.points[1].point2d_idxs.tolist() == [1, 0]
    assert less.points[2].image_ids.tolist() == [1, 2, 4]
    assert less.images[2].point3d_ids.tolist() == [-1, 1, 2, -1]  # its link to point 3 is cut
    assert 3 in model.points and len(model.images) == 4  # the original is untouched
    back = read_model(write_model(less, tmp_path / "m"))
    assert sorted(back.points) == [1, 2] and len(back.images) == 3
