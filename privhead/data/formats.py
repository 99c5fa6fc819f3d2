"""Multi-view dataset formats: read and write IDR / VolSDF / NeuS folders and transforms.json.

First step of the data flow: every reader returns a :class:`HeadDataset` whose cameras follow the
one convention of :mod:`privhead.data.cameras` (OpenCV axes, pixel centres at integer coordinates).
"""

from __future__ import annotations

import json
import math
import re
import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from privhead.data.cameras import (
    Cameras,
    compose_projection,
    decompose_projection,
    opengl_to_opencv_c2w,
)
from privhead.errors import PrivheadError

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")
"""File suffixes (lower case) accepted as images in ``image/`` and ``mask/`` folders."""

IDR_CAMERA_FILES = ("cameras.npz", "cameras_sphere.npz")
"""Camera files of IDR / VolSDF (``cameras.npz``) and NeuS (``cameras_sphere.npz``), in the order
:func:`load_dataset` looks for them."""

_DISTORTION_KEYS = ("k1", "k2", "k3", "k4", "p1", "p2")


@dataclass
class HeadDataset:
    """Calibrated multi-view photos of one head.

    Attributes:
        images: [N, H, W, 3] float32 in [0, 1], as stored (sRGB).
        cameras: the N cameras in the dataset's world frame (privhead convention).
        masks: [N, H, W] bool foreground masks, or None.
        scale_mat: [4, 4] IDR ``scale_mat`` (normalised frame -> world), or None if the format
            has none.
        names: image file stems in load order.
        root: folder the dataset was read from, if any.
        views: parsed ``views.json`` (sensitive / neutral views) when present.
        face_region: parsed ``face_region.json`` when present.
        gt_mesh: path of ``gt_mesh.ply`` when present.
    """

    images: np.ndarray
    cameras: Cameras
    masks: np.ndarray | None
    scale_mat: np.ndarray | None
    names: list[str]
    root: Path | None = None
    views: dict | None = None
    face_region: dict | None = None
    gt_mesh: Path | None = None

    def __len__(self) -> int:
        return len(self.images)

    def subset(self, indices) -> HeadDataset:
        """The views at ``indices``, in that order.

        ``views`` is re-indexed to the subset (``index``, ``sensitive_indices``,
        ``neutral_indices`` and the counts refer to positions in the subset).
        """
        idx = np.asarray(indices, dtype=np.int64).reshape(-1)
        if len(idx) and (idx.min() < -len(self) or idx.max() >= len(self)):
            raise PrivheadError(f"View index out of range for a dataset of {len(self)} views.")
        idx = idx % max(len(self), 1)
        return HeadDataset(
            images=self.images[idx],
            cameras=self.cameras.subset(idx),
            masks=None if self.masks is None else self.masks[idx],
            scale_mat=None if self.scale_mat is None else self.scale_mat.copy(),
            names=[self.names[i] for i in idx],
            root=self.root,
            views=_subset_views(self.views, idx, len(self)),
            face_region=self.face_region,
            gt_mesh=self.gt_mesh,
        )


def _subset_views(views: dict | None, idx: np.ndarray, n_total: int) -> dict | None:
    """``views.json`` content re-indexed to the views ``idx`` of a dataset of ``n_total``."""
    if views is None:
        return None
    per_view = views.get("views")
    out = dict(views)
    if isinstance(per_view, list) and len(per_view) == n_total:
        selected = [dict(per_view[int(old)], index=new) for new, old in enumerate(idx)]
        sensitive = [v["index"] for v in selected if v.get("sensitive")]
        out["views"] = selected
    elif isinstance(views.get("sensitive_indices"), list):
        old_sensitive = {int(i) for i in views["sensitive_indices"]}
        sensitive = [new for new, old in enumerate(idx) if int(old) in old_sensitive]
        out.pop("views", None)
    else:
        return views
    out.update(
        n_views=len(idx),
        n_sensitive=len(sensitive),
        n_neutral=len(idx) - len(sensitive),
        sensitive_indices=sensitive,
        neutral_indices=sorted(set(range(len(idx))) - set(sensitive)),
    )
    return out


# --------------------------------------------------------------------------------------------
# Images and masks
# --------------------------------------------------------------------------------------------


def read_image_alpha(path) -> tuple[np.ndarray, np.ndarray | None]:
    """Read an image file as RGB plus its alpha channel, if it has one.

    Args:
        path: PNG / JPEG (any format Pillow reads).

    Returns:
        rgb: [H, W, 3] float32 in [0, 1], as stored (grey is repeated over the channels).
        alpha: [H, W] float32 in [0, 1], or None when the file has no alpha channel.
    """
    path = Path(path)
    try:
        with Image.open(path) as im:
            im.load()
            mode = im.mode
            if mode == "P":
                im = im.convert("RGBA" if "transparency" in im.info else "RGB")
                mode = im.mode
            if mode in ("I;16", "I;16B", "I;16L", "I"):
                grey = np.asarray(im, dtype=np.float64) / 65535.0
                array = np.repeat(grey[..., None], 3, axis=2)
                return np.clip(array, 0.0, 1.0).astype(np.float32), None
            if mode == "F":
                grey = np.asarray(im, dtype=np.float32)
                return np.repeat(np.clip(grey, 0, 1)[..., None], 3, axis=2), None
            if mode not in ("L", "LA", "RGB", "RGBA"):
                im = im.convert("RGBA" if "A" in mode else "RGB")
                mode = im.mode
            array = np.asarray(im, dtype=np.float32) / 255.0
    except (UnidentifiedImageError, OSError, ValueError) as exc:
        raise PrivheadError(f"{path} is not a readable image ({exc}).") from exc
    if array.ndim == 2:
        array = array[..., None]
    alpha = None
    if mode in ("LA", "RGBA"):
        alpha = array[..., -1].copy()
        array = array[..., :-1]
    if array.shape[-1] == 1:
        array = np.repeat(array, 3, axis=2)
    return np.ascontiguousarray(array, dtype=np.float32), alpha


def read_image(path) -> np.ndarray:
    """Read an image file as [H, W, 3] float32 RGB in [0, 1] (alpha dropped, grey -> RGB)."""
    return read_image_alpha(path)[0]


def write_image(path, image: np.ndarray) -> None:
    """Write an [H, W, 3] (or [H, W]) image with values in [0, 1] as an 8-bit PNG."""
    array = np.asarray(image, dtype=np.float64)
    if array.ndim == 3 and array.shape[-1] == 1:
        array = array[..., 0]
    if not (array.ndim == 2 or (array.ndim == 3 and array.shape[-1] in (3, 4))):
        raise PrivheadError(f"Cannot write {path}: expected an [H, W, 3] image, got {array.shape}.")
    data = np.round(np.clip(np.nan_to_num(array), 0.0, 1.0) * 255.0).astype(np.uint8)
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(data).save(Path(path), format="PNG")


def read_mask(path) -> np.ndarray:
    """Read a mask image as [H, W] bool: mean over the colour channels > 0.5 (i.e. > 127)."""
    rgb = read_image(path)
    return rgb.mean(axis=2) > 0.5


def write_mask(path, mask: np.ndarray) -> None:
    """Write an [H, W] bool mask as a 0 / 255 greyscale PNG."""
    data = np.where(np.asarray(mask, dtype=bool), 255, 0).astype(np.uint8)
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(data, mode="L").save(Path(path), format="PNG")


def _natural_key(name: str) -> list:
    """Sort key treating digit runs as numbers, so ``2.png`` comes before ``10.png``."""
    return [
        (0, int(part), "") if part.isdigit() else (1, 0, part) for part in re.split(r"(\d+)", name)
    ]


def list_images(folder: Path) -> list[Path]:
    """Image files of a folder in natural order (error: folder missing / empty, other files)."""
    if not folder.is_dir():
        raise PrivheadError(f"{folder} is missing (expected a folder of images).")
    files = []
    for path in folder.iterdir():
        if path.name.startswith(".") or path.is_dir():
            continue
        if path.suffix.lower() not in IMAGE_SUFFIXES:
            raise PrivheadError(
                f"{path} is not an image file (expected {', '.join(IMAGE_SUFFIXES)})."
            )
        files.append(path)
    if not files:
        raise PrivheadError(f"{folder} contains no images.")
    return sorted(files, key=lambda p: _natural_key(p.name))


def _stack_images(paths: list[Path], with_alpha: bool = False):
    images, alphas = [], []
    for path in paths:
        rgb, alpha = read_image_alpha(path)
        if images and rgb.shape != images[0].shape:
            raise PrivheadError(
                f"{path} is {rgb.shape[1]}x{rgb.shape[0]} pixels but {paths[0].name} is "
                f"{images[0].shape[1]}x{images[0].shape[0]}: all images must have the same size."
            )
        images.append(rgb)
        alphas.append(alpha)
    stacked = np.stack(images).astype(np.float32)
    if with_alpha:
        return stacked, alphas
    return stacked


def _read_masks(paths: list[Path], height: int, width: int) -> np.ndarray:
    masks = []
    for path in paths:
        mask = read_mask(path)
        if mask.shape != (height, width):
            raise PrivheadError(
                f"{path} is {mask.shape[1]}x{mask.shape[0]} pixels but the images are "
                f"{width}x{height}."
            )
        masks.append(mask)
    return np.stack(masks)


def _read_json(path: Path) -> dict:
    try:
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise PrivheadError(f"{path} is not a valid JSON file ({exc}).") from exc
    if not isinstance(data, dict):
        raise PrivheadError(f"{path} must hold a JSON object at the top level.")
    return data


def _write_json(path: Path, data: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", encoding="utf-8") as f:
        json.dump(data, f, indent=1)
        f.write("\n")


def _attach_extras(dataset: HeadDataset, root: Path) -> HeadDataset:
    """Pick up ``views.json``, ``face_region.json`` and ``gt_mesh.ply`` beside the data."""
    if (root / "views.json").is_file():
        dataset.views = _read_json(root / "views.json")
    if (root / "face_region.json").is_file():
        dataset.face_region = _read_json(root / "face_region.json")
    if (root / "gt_mesh.ply").is_file():
        dataset.gt_mesh = root / "gt_mesh.ply"
    return dataset


def _write_extras(dataset: HeadDataset, root: Path) -> None:
    if dataset.views is not None:
        _write_json(root / "views.json", dataset.views)
    if dataset.face_region is not None:
        _write_json(root / "face_region.json", dataset.face_region)
    if dataset.gt_mesh is not None and Path(dataset.gt_mesh).is_file():
        target = root / "gt_mesh.ply"
        if not (target.exists() and target.samefile(dataset.gt_mesh)):
            shutil.copyfile(dataset.gt_mesh, target)


def _output_names(dataset: HeadDataset) -> list[str]:
    """File stems to write: the dataset's names when they are unique and already in natural
    order (so reading back keeps the view order), else ``000000``, ``000001``, ..."""
    names = list(dataset.names)
    valid = (
        len(names) == len(dataset)
        and len(set(names)) == len(names)
        and all(n and "/" not in n and "\\" not in n and not n.startswith(".") for n in names)
        and sorted(names, key=lambda n: _natural_key(n + ".png")) == names
    )
    return names if valid else [f"{i:06d}" for i in range(len(dataset))]


def _write_views(dataset: HeadDataset, root: Path, names: list[str]) -> None:
    images = np.asarray(dataset.images)
    if images.ndim != 4 or images.shape[-1] != 3:
        raise PrivheadError(f"Dataset images must be [N, H, W, 3], got {images.shape}.")
    if len(dataset.cameras) != len(images):
        raise PrivheadError(f"{len(images)} images but {len(dataset.cameras)} cameras.")
    for name, image in zip(names, images, strict=True):
        write_image(root / "image" / f"{name}.png", image)
    if dataset.masks is not None:
        if len(dataset.masks) != len(images):
            raise PrivheadError(f"{len(images)} images but {len(dataset.masks)} masks.")
        for name, mask in zip(names, dataset.masks, strict=True):
            write_mask(root / "mask" / f"{name}.png", mask)


# --------------------------------------------------------------------------------------------
# IDR / VolSDF / NeuS
# --------------------------------------------------------------------------------------------


def read_idr(root, cameras_file: str | None = None) -> HeadDataset:
    """Read an IDR / VolSDF / NeuS ("DTU") folder.

    Layout: ``image/*.png|jpg``, optional ``mask/``, and ``cameras.npz`` (or NeuS
    ``cameras_sphere.npz``) with ``world_mat_i = [K @ [R | t]; 0 0 0 1]`` and ``scale_mat_i``.
    Images are taken in natural file-name order and matched to ``world_mat_0, 1, ...``.

    Args:
        root: dataset folder.
        cameras_file: camera file name inside ``root``; default: ``cameras.npz``, else
            ``cameras_sphere.npz``.

    Returns:
        The dataset with cameras in the world frame (``world_mat`` decomposed as is); the
        common ``scale_mat`` (normalised -> world) is kept in ``scale_mat``.
    """
    root = Path(root)
    if not root.is_dir():
        raise PrivheadError(f"{root} is not a folder.")
    if cameras_file is None:
        candidates = [root / name for name in IDR_CAMERA_FILES]
        camera_path = next((p for p in candidates if p.is_file()), None)
        if camera_path is None:
            raise PrivheadError(f"{root} has no {' or '.join(IDR_CAMERA_FILES)}.")
    else:
        camera_path = root / cameras_file
        if not camera_path.is_file():
            raise PrivheadError(f"{camera_path} is missing.")
    try:
        with np.load(camera_path, allow_pickle=False) as npz:
            arrays = {key: np.asarray(npz[key], dtype=np.float64) for key in npz.files}
    except (OSError, ValueError) as exc:
        raise PrivheadError(f"{camera_path} is not a readable .npz file ({exc}).") from exc

    indices = sorted(
        int(m.group(1)) for key in arrays if (m := re.fullmatch(r"world_mat_(\d+)", key))
    )
    if not indices:
        raise PrivheadError(f"{camera_path} holds no world_mat_0, world_mat_1, ... arrays.")
    if indices != list(range(len(indices))):
        raise PrivheadError(
            f"{camera_path} must number its world_mat_i from 0 without gaps "
            f"(found {len(indices)} up to world_mat_{indices[-1]})."
        )
    n_cameras = len(indices)

    image_paths = list_images(root / "image")
    if len(image_paths) != n_cameras:
        raise PrivheadError(
            f"{root / 'image'} holds {len(image_paths)} images but {camera_path.name} has "
            f"{n_cameras} cameras."
        )
    images = _stack_images(image_paths)
    _, height, width, _ = images.shape

    Ks, c2ws = [], []
    for i in range(n_cameras):
        world_mat = arrays[f"world_mat_{i}"]
        if world_mat.shape not in ((3, 4), (4, 4)) or not np.all(np.isfinite(world_mat)):
            raise PrivheadError(f"{camera_path}: world_mat_{i} must be a finite 3x4 or 4x4 matrix.")
        if abs(np.linalg.det(world_mat[:3, :3])) < 1e-12:
            raise PrivheadError(f"{camera_path}: world_mat_{i} is singular.")
        K, c2w = decompose_projection(world_mat)
        Ks.append(K)
        c2ws.append(c2w)
    cameras = Cameras(np.stack(Ks), np.stack(c2ws), width, height)

    scale_keys = [f"scale_mat_{i}" for i in range(n_cameras)]
    present = [key in arrays for key in scale_keys]
    scale_mat = None
    if any(present):
        if not all(present):
            missing = scale_keys[present.index(False)]
            raise PrivheadError(f"{camera_path} has some scale_mat_i but not {missing}.")
        scale_mat = arrays[scale_keys[0]]
        if scale_mat.shape != (4, 4):
            raise PrivheadError(f"{camera_path}: scale_mat_0 must be 4x4, got {scale_mat.shape}.")
        tolerance = 1e-6 * max(1.0, float(np.abs(scale_mat).max()))
        for key in scale_keys[1:]:
            if arrays[key].shape != (4, 4) or not np.allclose(
                arrays[key], scale_mat, rtol=0, atol=tolerance
            ):
                raise PrivheadError(
                    f"{camera_path}: {key} differs from scale_mat_0 (all views must share one "
                    "normalisation)."
                )

    masks = None
    if (root / "mask").exists():
        mask_paths = list_images(root / "mask")
        if len(mask_paths) != len(image_paths):
            raise PrivheadError(
                f"{root / 'mask'} holds {len(mask_paths)} masks but {root / 'image'} holds "
                f"{len(image_paths)} images."
            )
        masks = _read_masks(mask_paths, height, width)

    dataset = HeadDataset(
        images=images,
        cameras=cameras,
        masks=masks,
        scale_mat=scale_mat,
        names=[p.stem for p in image_paths],
        root=root,
    )
    return _attach_extras(dataset, root)


def write_idr(dataset: HeadDataset, root) -> None:
    """Write an IDR / VolSDF / NeuS folder.

    Writes ``image/NAME.png``, ``mask/NAME.png`` (when the dataset has masks), ``cameras.npz``
    and the same arrays as ``cameras_sphere.npz`` (the NeuS name): ``world_mat_i``,
    ``world_mat_inv_i``, ``scale_mat_i`` (identity when the dataset has none),
    ``scale_mat_inv_i``, ``camera_mat_i`` and ``camera_mat_inv_i``; plus ``views.json``,
    ``face_region.json`` and ``gt_mesh.ply`` when the dataset has them.
    """
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    names = _output_names(dataset)
    _write_views(dataset, root, names)
    scale_mat = np.eye(4) if dataset.scale_mat is None else np.asarray(dataset.scale_mat, float)
    arrays = {}
    for i in range(len(dataset)):
        world_mat = compose_projection(dataset.cameras.K[i], dataset.cameras.c2w[i])
        camera_mat = np.eye(4)
        camera_mat[:3, :3] = dataset.cameras.K[i]
        arrays[f"world_mat_{i}"] = world_mat
        arrays[f"world_mat_inv_{i}"] = np.linalg.inv(world_mat)
        arrays[f"scale_mat_{i}"] = scale_mat
        arrays[f"scale_mat_inv_{i}"] = np.linalg.inv(scale_mat)
        arrays[f"camera_mat_{i}"] = camera_mat
        arrays[f"camera_mat_inv_{i}"] = np.linalg.inv(camera_mat)
    for name in IDR_CAMERA_FILES:
        with open(root / name, "wb") as f:
            np.savez(f, **arrays)
    _write_extras(dataset, root)


# --------------------------------------------------------------------------------------------
# nerfstudio / instant-ngp transforms.json
# --------------------------------------------------------------------------------------------


def _resolve_frame_file(root: Path, value, transforms_path: Path, what: str) -> Path:
    if not isinstance(value, str) or not value:
        raise PrivheadError(f"{transforms_path}: a frame has no valid {what}.")
    path = root / value
    if path.suffix.lower() not in IMAGE_SUFFIXES and not path.is_file():
        # instant-ngp / Blender files often omit the extension.
        for suffix in (".png", ".jpg", ".jpeg"):
            if path.with_name(path.name + suffix).is_file():
                return path.with_name(path.name + suffix)
    if not path.is_file():
        raise PrivheadError(f"{transforms_path}: {what} {value!r} does not exist.")
    if path.suffix.lower() not in IMAGE_SUFFIXES:
        raise PrivheadError(f"{path} is not an image file (expected {', '.join(IMAGE_SUFFIXES)}).")
    return path


def _frame_intrinsics(
    meta: dict, frame: dict, width: int, height: int, transforms_path: Path
) -> np.ndarray:
    """The OpenCV K of one frame (per-frame values override the global ones)."""

    def get(key):
        value = frame.get(key, meta.get(key))
        return None if value is None else float(value)

    for key in _DISTORTION_KEYS:
        value = get(key)
        if value is not None and value != 0.0:
            raise PrivheadError(
                f"{transforms_path}: lens distortion ({key} = {value}) is not supported; "
                "undistort the images first."
            )
    fl_x, fl_y = get("fl_x"), get("fl_y")
    angle_x, angle_y = get("camera_angle_x"), get("camera_angle_y")
    if fl_x is None and angle_x is not None:
        fl_x = 0.5 * width / math.tan(0.5 * angle_x)
    if fl_y is None and angle_y is not None:
        fl_y = 0.5 * height / math.tan(0.5 * angle_y)
    if fl_x is None and fl_y is None:
        raise PrivheadError(
            f"{transforms_path} gives no focal length (fl_x / fl_y or camera_angle_x)."
        )
    fl_x = fl_y if fl_x is None else fl_x
    fl_y = fl_x if fl_y is None else fl_y
    # nerfstudio puts pixel centres at +0.5 (cx = w / 2); privhead at integer coordinates.
    cx, cy = get("cx"), get("cy")
    cx = (width - 1) / 2.0 if cx is None else cx - 0.5
    cy = (height - 1) / 2.0 if cy is None else cy - 0.5
    return np.array([[fl_x, 0.0, cx], [0.0, fl_y, cy], [0.0, 0.0, 1.0]])


def read_transforms(root, transforms_file: str = "transforms.json") -> HeadDataset:
    """Read a nerfstudio / instant-ngp ``transforms.json`` dataset.

    Camera-to-world matrices are converted from OpenGL to OpenCV axes and the principal point
    from nerfstudio's pixel-centre-at-+0.5 convention (``cx_internal = cx - 0.5``). Intrinsics
    come from ``fl_x / fl_y / cx / cy`` (global or per frame) or ``camera_angle_x`` (+ optional
    ``camera_angle_y``; principal point at the image centre). Masks come from each frame's
    ``mask_path`` (or ``mask_file``), else from the images' alpha channels, else are None.

    Args:
        root: dataset folder; frame paths are relative to it.
        transforms_file: name of the JSON file inside ``root``.
    """
    root = Path(root)
    if not root.is_dir():
        raise PrivheadError(f"{root} is not a folder.")
    transforms_path = root / transforms_file
    if not transforms_path.is_file():
        raise PrivheadError(f"{transforms_path} is missing.")
    meta = _read_json(transforms_path)
    frames = meta.get("frames")
    if not isinstance(frames, list) or not frames:
        raise PrivheadError(f"{transforms_path} has no frames.")

    image_paths, mask_paths, c2ws_gl = [], [], []
    for i, frame in enumerate(frames):
        if not isinstance(frame, dict):
            raise PrivheadError(f"{transforms_path}: frame {i} is not a JSON object.")
        image_paths.append(
            _resolve_frame_file(root, frame.get("file_path"), transforms_path, "file_path")
        )
        mask_value = frame.get("mask_path", frame.get("mask_file"))
        mask_paths.append(
            None
            if mask_value is None
            else _resolve_frame_file(root, mask_value, transforms_path, "mask_path")
        )
        matrix = np.asarray(frame.get("transform_matrix", []), dtype=np.float64)
        if matrix.shape == (3, 4):
            matrix = np.concatenate([matrix, [[0.0, 0.0, 0.0, 1.0]]])
        if matrix.shape != (4, 4) or not np.all(np.isfinite(matrix)):
            raise PrivheadError(
                f"{transforms_path}: frame {i} needs a finite 4x4 transform_matrix."
            )
        c2ws_gl.append(matrix)

    images, alphas = _stack_images(image_paths, with_alpha=True)
    _, height, width, _ = images.shape
    for key, size in (("w", width), ("h", height)):
        declared = meta.get(key)
        if declared is not None and int(declared) != size:
            raise PrivheadError(
                f"{transforms_path} declares {key} = {declared} but the images are "
                f"{width}x{height} pixels."
            )
    Ks = np.stack([_frame_intrinsics(meta, f, width, height, transforms_path) for f in frames])
    cameras = Cameras(Ks, opengl_to_opencv_c2w(np.stack(c2ws_gl)), width, height)

    n_masks = sum(p is not None for p in mask_paths)
    if n_masks:
        if n_masks != len(frames):
            raise PrivheadError(
                f"{transforms_path}: {n_masks} frames have a mask_path but there are "
                f"{len(frames)} images."
            )
        masks = _read_masks(mask_paths, height, width)
    elif all(alpha is not None for alpha in alphas):
        masks = np.stack(alphas) > 0.5
    else:
        masks = None

    dataset = HeadDataset(
        images=images,
        cameras=cameras,
        masks=masks,
        scale_mat=None,
        names=[p.stem for p in image_paths],
        root=root,
    )
    return _attach_extras(dataset, root)


def write_transforms(dataset: HeadDataset, root) -> None:
    """Write a nerfstudio / instant-ngp ``transforms.json`` with ``image/`` and ``mask/``.

    Intrinsics are written globally (``fl_x, fl_y, cx, cy, w, h, camera_angle_x/y``) when every
    camera shares them, else per frame; ``cx, cy`` use nerfstudio's +0.5 pixel-centre
    convention; ``transform_matrix`` is the OpenGL camera-to-world matrix. ``views.json``,
    ``face_region.json`` and ``gt_mesh.ply`` are written when the dataset has them.
    """
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    cameras = dataset.cameras
    skew = np.abs(cameras.K[:, 0, 1])
    if np.any(skew > 1e-9 * cameras.K[:, 0, 0]):
        raise PrivheadError("transforms.json cannot store cameras with a skewed pixel grid.")
    names = _output_names(dataset)
    _write_views(dataset, root, names)

    def intrinsics(K: np.ndarray) -> dict:
        return {
            "fl_x": float(K[0, 0]),
            "fl_y": float(K[1, 1]),
            "cx": float(K[0, 2]) + 0.5,
            "cy": float(K[1, 2]) + 0.5,
        }

    shared = bool(np.allclose(cameras.K, cameras.K[:1], rtol=0, atol=1e-12))
    meta: dict = {}
    if shared:
        meta.update(intrinsics(cameras.K[0]))
        meta["camera_angle_x"] = 2.0 * math.atan(0.5 * cameras.width / cameras.K[0, 0, 0])
        meta["camera_angle_y"] = 2.0 * math.atan(0.5 * cameras.height / cameras.K[0, 1, 1])
    meta.update(w=int(cameras.width), h=int(cameras.height))
    meta["notes"] = (
        "OpenGL camera-to-world matrices (x right, y up, z backwards), pixel centres at +0.5 "
        "(cx = w/2 for a centred principal point); written by privhead."
    )
    c2ws_gl = opengl_to_opencv_c2w(cameras.c2w)
    frames = []
    for i, name in enumerate(names):
        frame: dict = {"file_path": f"image/{name}.png"}
        if dataset.masks is not None:
            frame["mask_path"] = f"mask/{name}.png"
        if not shared:
            frame.update(intrinsics(cameras.K[i]))
        frame["transform_matrix"] = c2ws_gl[i].tolist()
        frames.append(frame)
    meta["frames"] = frames
    _write_json(root / "transforms.json", meta)
    _write_extras(dataset, root)


# --------------------------------------------------------------------------------------------
# Format detection
# --------------------------------------------------------------------------------------------


def load_dataset(root, fmt: str = "auto") -> HeadDataset:
    """Read a dataset folder in any supported format.

    Args:
        root: dataset folder (or the path of a ``transforms.json`` file).
        fmt: ``"idr"``, ``"transforms"``, ``"colmap"`` (``images/`` + ``sparse/0``, see
            :mod:`privhead.data.colmap`), ``"h3ds"``, ``"facescape"`` (see
            :mod:`privhead.data.peers`) or ``"auto"`` (``cameras.npz``, then
            ``cameras_sphere.npz``, then ``transforms.json``, then a COLMAP model, then the
            FaceScape ``params.json``).
    """
    root = Path(root)
    if root.is_file() and root.suffix.lower() == ".json" and fmt in ("auto", "transforms"):
        return read_transforms(root.parent, root.name)
    if not root.is_dir():
        raise PrivheadError(f"{root} is not a dataset folder.")
    if fmt == "idr":
        return read_idr(root)
    if fmt == "transforms":
        return read_transforms(root)
    if fmt == "colmap":
        from privhead.data.colmap import read_colmap_dataset

        return read_colmap_dataset(root)
    if fmt in ("h3ds", "facescape"):
        from privhead.data import peers

        return peers.read_h3ds(root) if fmt == "h3ds" else peers.read_facescape(root)
    if fmt != "auto":
        raise PrivheadError(
            f"Unknown dataset format {fmt!r} (use auto, idr, transforms, colmap, h3ds or "
            "facescape)."
        )
    for name in IDR_CAMERA_FILES:
        if (root / name).is_file():
            return read_idr(root, name)
    if (root / "transforms.json").is_file():
        return read_transforms(root)
    from privhead.data.colmap import find_model_folder

    try:
        find_model_folder(root)
    except PrivheadError:
        pass
    else:
        from privhead.data.colmap import read_colmap_dataset

        return read_colmap_dataset(root)
    if (root / "params.json").is_file():
        from privhead.data.peers import read_facescape

        return read_facescape(root)
    raise PrivheadError(
        f"{root} has no cameras.npz, cameras_sphere.npz, transforms.json, COLMAP model or "
        "params.json: not a dataset folder."
    )
