"""H3DS and FaceScape readers, on tiny fixtures built to the published layouts."""

import json

import numpy as np
import pytest
import trimesh
from PIL import Image

from privhead.data.cameras import Cameras, compose_projection
from privhead.data.formats import load_dataset
from privhead.data.peers import read_facescape, read_h3ds
from privhead.data.synthetic.rig import ring_cameras
from privhead.errors import PrivheadError


def _save(path, rng, size):
    Image.fromarray(rng.integers(0, 255, size=(size[1], size[0], 3), dtype=np.uint8)).save(path)


def _h3ds_scene(root, n=4):
    rng = np.random.default_rng(0)
    cameras, _, _ = ring_cameras(n, 32, 24)
    scale = np.diag([200.0, 200.0, 200.0, 1.0])  # unit sphere -> mm
    (root / "image").mkdir(parents=True)
    (root / "mask").mkdir()
    (root / "regions").mkdir()
    arrays = {}
    for i in range(n):
        c2w = cameras.c2w[i].copy()
        c2w[:3, 3] *= 200.0  # the world is in millimetres
        arrays[f"world_mat_{i}"] = compose_projection(cameras.K[i], c2w)
        arrays[f"scale_mat_{i}"] = scale
        _save(root / "image" / f"img_{i:04d}.jpg", rng, (32, 24))
        Image.fromarray(np.full((24, 32), 255, np.uint8)).save(root / "mask" / f"mask_{i:04d}.png")
    np.savez(root / "cameras.npz", **arrays)
    mesh = trimesh.creation.icosphere(subdivisions=2, radius=100.0)
    mesh.export(root / "full_head.obj")
    nose = int(np.argmax(mesh.vertices[:, 2]))
    (root / "landmarks.txt").write_text(f"nose_tip {nose}\nright_eye 3\nleft_eye 4\n")
    (root / "regions" / "face_sphere.txt").write_text("\n".join(str(k) for k in range(10)))
    return cameras, mesh, nose


def test_h3ds_scene(tmp_path):
    cameras, mesh, nose = _h3ds_scene(tmp_path / "scene")
    dataset = load_dataset(tmp_path / "scene", "h3ds")
    assert len(dataset) == 4 and dataset.masks.all()
    assert np.allclose(dataset.cameras.centers, cameras.centers * 200.0, atol=1e-6)
    assert np.allclose(dataset.scale_mat, np.diag([200.0, 200.0, 200.0, 1.0]))
    region = dataset.face_region
    assert region["sphere_radius"] == 95.0 and region["mm_per_unit"] == 1.0
    assert np.allclose(region["sphere_center"], mesh.vertices[nose])
    assert dataset.gt_mesh.name == "full_head.obj"
    (tmp_path / "scene" / "landmarks.txt").write_text("nose_tip 99999\n")
    with pytest.raises(PrivheadError, match="out of range"):
        read_h3ds(tmp_path / "scene")
    (tmp_path / "scene" / "landmarks.txt").write_text("nose_tip\n")
    with pytest.raises(PrivheadError, match="line 1"):
        read_h3ds(tmp_path / "scene")


def _facescape(root):
    rng = np.random.default_rng(1)
    cameras, _, _ = ring_cameras(4, 40, 30)
    params = {}
    sizes = [(40, 30), (40, 30), (80, 60), (40, 30)]
    for i, (width, height) in enumerate(sizes):
        cam = Cameras(cameras.K[i : i + 1], cameras.c2w[i : i + 1], 40, 30).scaled(width, height)
        w2c = np.linalg.inv(cam.c2w[0])
        params[f"{i}_K"] = cam.K[0].tolist()
        params[f"{i}_Rt"] = w2c[:3].tolist()
        params[f"{i}_distortion"] = [0.0, 0.0, 0.0, 0.0, 0.0]
        params[f"{i}_width"], params[f"{i}_height"] = width, height
        params[f"{i}_valid"] = i != 3
        _save(root / f"{i}.jpg", rng, (width, height))
    (root / "params.json").write_text(json.dumps(params))
    return cameras


def test_facescape_folder(tmp_path):
    root = tmp_path / "fs"
    root.mkdir()
    cameras = _facescape(root)
    dataset = load_dataset(root)  # auto: params.json
    assert dataset.names == ["0", "1", "2"]  # camera 3 is not valid
    assert dataset.images.shape == (3, 30, 40, 3)  # the 80x60 photo resampled to the common size
    assert np.allclose(dataset.cameras.K, cameras.K[:3], atol=1e-9)
    assert np.allclose(dataset.cameras.c2w, cameras.c2w[:3], atol=1e-9)
    params = json.loads((root / "params.json").read_text())
    params["1_K"] = [[1, 0], [0, 1]]
    (root / "params.json").write_text(json.dumps(params))
    with pytest.raises(PrivheadError, match="camera 1 needs a 3x3 K"):
        read_facescape(root)
    (root / "params.json").write_text("{not json")
    with pytest.raises(PrivheadError, match="not valid JSON"):
        read_facescape(root)
