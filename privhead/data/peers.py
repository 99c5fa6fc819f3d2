"""Readers of the multi-view head datasets of the paper and its peers: H3DS and FaceScape.

Neither dataset can be redistributed, so these readers were written from the published layouts
and are tested on tiny fixtures built to them (``tests/data/test_peers.py``):

* **H3DS** (the ``h3ds`` toolkit's scene folder): ``image/img_0000.jpg``, ``mask/mask_0000.png``,
  ``cameras.npz`` in the IDR convention (``world_mat_i``, ``scale_mat_i`` normalising millimetres
  to the unit sphere), ``full_head.obj`` (millimetres), ``landmarks.txt`` (``name vertex_index``
  lines, e.g. ``nose_tip 1234``) and ``regions/face_sphere.txt`` (vertex indices). The face region
  is H3DS's own: the sphere of 95 mm around the nose tip.
* **FaceScape** multi-view release: one folder per subject and expression with ``params.json``
  and the photos ``0.jpg, 1.jpg, ...``; ``params.json`` holds, per camera ``i``, ``i_K`` (3x3),
  ``i_Rt`` (3x4 world-to-camera, millimetres), ``i_distortion`` (OpenCV ``k1 k2 p1 p2 [k3]``),
  ``i_width``, ``i_height`` and ``i_valid``. Cameras come in several resolutions: every image is
  undistorted, then resampled to the most common size (``K`` scaled with it).
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import numpy as np

from privhead.errors import PrivheadError

H3DS_FACE_SPHERE_MM = 95.0
"""Radius of H3DS's evaluation sphere around the nose tip."""


def read_h3ds_landmarks(path) -> dict[str, int]:
    """``landmarks.txt`` of an H3DS scene: landmark name -> vertex index of ``full_head.obj``."""
    path = Path(path)
    landmarks = {}
    for number, line in enumerate(path.read_text().splitlines(), 1):
        if not line.strip():
            continue
        parts = line.split()
        if len(parts) != 2:
            raise PrivheadError(f"{path}: line {number} is not 'name vertex_index'.")
        try:
            landmarks[parts[0]] = int(parts[1])
        except ValueError:
            raise PrivheadError(f"{path}: line {number} has no integer vertex index.") from None
    return landmarks


def read_h3ds(root):
    """An H3DS scene folder as a HeadDataset (world = millimetres), with its face region."""
    import trimesh

    from privhead.data.formats import read_idr

    root = Path(root)
    dataset = read_idr(root, "cameras.npz")
    mesh_path = root / "full_head.obj"
    if not mesh_path.is_file():
        return dataset
    mesh = trimesh.load(mesh_path, process=False, force="mesh")
    vertices = np.asarray(mesh.vertices)
    region = None
    landmark_path = root / "landmarks.txt"
    if landmark_path.is_file():
        landmarks = read_h3ds_landmarks(landmark_path)
        bad = {k: v for k, v in landmarks.items() if not 0 <= v < len(vertices)}
        if bad:
            raise PrivheadError(f"{landmark_path}: vertex indices out of range: {bad}.")
        if "nose_tip" not in landmarks:
            raise PrivheadError(f"{landmark_path} has no nose_tip landmark.")
        center = vertices[landmarks["nose_tip"]]
        region = {
            "type": "sphere",
            "sphere_center": center.tolist(),
            "sphere_radius": H3DS_FACE_SPHERE_MM,
            "definition": "H3DS face_sphere: 95 mm around the nose tip (world = mm)",
            "landmarks": {k: vertices[v].tolist() for k, v in landmarks.items()},
            "mm_per_unit": 1.0,
        }
        sphere_file = root / "regions" / "face_sphere.txt"
        if sphere_file.is_file():
            indices = np.array([int(v) for v in sphere_file.read_text().split()], dtype=int)
            if len(indices) and (indices.min() < 0 or indices.max() >= len(vertices)):
                raise PrivheadError(f"{sphere_file}: vertex indices out of range.")
            region["region_vertices"] = int(len(indices))
    dataset.gt_mesh = mesh_path
    dataset.face_region = region or dataset.face_region
    return dataset


def _facescape_entry(params: dict, index: int, key: str, path: Path):
    name = f"{index}_{key}"
    if name not in params:
        raise PrivheadError(f"{path}: camera {index} has no '{name}'.")
    return params[name]


def read_facescape(root, max_side: int | None = None):
    """A FaceScape multi-view folder (``params.json`` + ``<i>.jpg``) as a HeadDataset.

    Cameras marked ``i_valid`` = false, or whose photo is missing, are skipped. Images are
    undistorted with their coefficients, then resampled to the most common (width, height),
    or to ``max_side`` pixels on the longer side.
    """
    from privhead.data.cameras import Cameras
    from privhead.data.colmap import undistort_image
    from privhead.data.formats import IMAGE_SUFFIXES, HeadDataset, read_image

    root = Path(root)
    path = root / "params.json"
    try:
        params = json.loads(path.read_text())
    except FileNotFoundError:
        raise PrivheadError(f"{root} has no params.json (FaceScape multi-view layout).") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise PrivheadError(f"{path} is not valid JSON ({exc}).") from None
    if not isinstance(params, dict):
        raise PrivheadError(f"{path} must hold a JSON object.")
    indices = sorted({int(k.split("_")[0]) for k in params if k.split("_")[0].isdigit()})
    photos = {
        p.stem: p
        for p in root.iterdir()
        if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES and p.stem.isdigit()
    }
    views = []
    for i in indices:
        if not _facescape_entry(params, i, "valid", path) or str(i) not in photos:
            continue
        K = np.asarray(_facescape_entry(params, i, "K", path), dtype=np.float64)
        Rt = np.asarray(_facescape_entry(params, i, "Rt", path), dtype=np.float64)
        dist = np.asarray(params.get(f"{i}_distortion", [0, 0, 0, 0]), dtype=np.float64)
        if K.shape != (3, 3) or Rt.shape != (3, 4) or dist.ndim != 1 or len(dist) not in (4, 5):
            raise PrivheadError(
                f"{path}: camera {i} needs a 3x3 K, a 3x4 Rt and 4 or 5 distortion coefficients."
            )
        size = (
            int(_facescape_entry(params, i, "width", path)),
            int(_facescape_entry(params, i, "height", path)),
        )
        views.append((i, K, Rt, dist, size))
    if len(views) < 2:
        raise PrivheadError(f"{root}: fewer than 2 valid cameras with photos.")
    target = Counter(v[4] for v in views).most_common(1)[0][0]
    if max_side:
        factor = max_side / max(target)
        target = (max(1, round(target[0] * factor)), max(1, round(target[1] * factor)))
    from PIL import Image

    images, Ks, c2ws, names = [], [], [], []
    for i, K, Rt, dist, (width, height) in views:
        image = read_image(photos[str(i)])
        if image.shape[:2] != (height, width):
            raise PrivheadError(
                f"{photos[str(i)]} is {image.shape[1]}x{image.shape[0]}; params.json says "
                f"{width}x{height}."
            )
        image = undistort_image(image, K, dist)
        if (width, height) != target:
            pil = Image.fromarray(np.clip(np.round(image * 255), 0, 255).astype(np.uint8))
            image = np.asarray(pil.resize(target, Image.Resampling.BOX)).astype(np.float32) / 255
        w2c = np.eye(4)
        w2c[:3] = Rt
        camera = Cameras(K[None], np.linalg.inv(w2c)[None], width, height).scaled(*target)
        images.append(image.astype(np.float32))
        Ks.append(camera.K[0])
        c2ws.append(camera.c2w[0])
        names.append(str(i))
    from privhead.data.cameras import estimate_normalization

    cameras = Cameras(np.stack(Ks), np.stack(c2ws), target[0], target[1])
    return HeadDataset(
        images=np.stack(images),
        cameras=cameras,
        masks=None,
        scale_mat=estimate_normalization(cameras),
        names=names,
        root=root,
    )
