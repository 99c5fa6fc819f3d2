"""The privacy bundle: the only thing that ever leaves the user.

Third step of the data flow: neutral views as lossless RGB, sensitive views only as protected
gradient maps (sigma, paper Eq. 6) at the working resolution, every camera in the privhead
convention, and a ``manifest.json`` describing it all. Sensitive RGB and masks are never written.

Layout::

    manifest.json              format "privhead-bundle", version 2, operator, cameras, views
    neutral/NAME.png           neutral RGB, original resolution (8-bit PNG, or .npy float32
                               when the pixels are not exactly 8-bit)
    neutral_mask/NAME.png      neutral masks (0 / 255), when the dataset has masks
    protected/NAME.png         gradient maps as 16-bit grey PNG: value = png / 65535 * scale,
                               with ``scale`` (the map's maximum) given per view in the manifest
    protected_valid/NAME.png   validity mask of a map (0 / 255; 0 = suppressed feature region,
                               ignored by stage 2), only where the operator suppressed pixels
"""

from __future__ import annotations

import io
import json
import math
import os
import re
import shutil
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

import privhead
from privhead.data.cameras import Cameras, check_similarity
from privhead.errors import PrivheadError
from privhead.privacy.operators import OperatorConfig, operator_margin, protect_image_valid
from privhead.privacy.sensitivity import KINDS, NEUTRAL, SENSITIVE, ViewDecision
from privhead.progress import progress_bar

BUNDLE_FORMAT = "privhead-bundle"
BUNDLE_VERSION = 4
"""Written by this privhead. Version 2 added operator fields (luminance, clip, levels, noise);
version 3 the operator's ``suppress_features`` and per-map validity masks
(``protected_valid/``); version 4 ``head_forward`` (the face's direction when known, for the
template start) and a new default operator. Missing fields take version 1's operator, so
older bundles read unchanged."""
READABLE_VERSIONS = (1, 2, 3, 4)
MANIFEST_NAME = "manifest.json"
CAMERA_CONVENTION = (
    "K: 3x3 OpenCV intrinsics for the stored image's resolution, pixel centres at integer "
    "coordinates (a centred principal point is (W - 1) / 2); c2w: 4x4 camera-to-world, OpenCV "
    "axes (x right, y down, z forward), in the dataset's world frame; scale_mat maps the "
    "normalised frame (head inside the unit sphere) to that world frame."
)
PROTECTED_PADDING = "replicate"
"""Border handling of the stored protected maps (same size as the working image)."""

NEUTRAL_DIR, MASK_DIR, PROTECTED_DIR = "neutral", "neutral_mask", "protected"
VALID_DIR = "protected_valid"
_FILE_PATTERN = re.compile(
    rf"({NEUTRAL_DIR}|{MASK_DIR}|{PROTECTED_DIR}|{VALID_DIR})/[A-Za-z0-9][A-Za-z0-9._-]*\.(png|npy)"
)
_SAFE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")
_PNG16_MAX = 65535


@dataclass
class PrivacyBundle:
    """A privacy bundle read back (what the reconstruction side receives).

    Attributes:
        neutral_images: [Nn, H, W, 3] float32 RGB in [0, 1].
        neutral_masks: [Nn, H, W] bool, or None when the bundle has no masks.
        neutral_cameras: the Nn neutral cameras at H x W (world frame).
        protected_maps: [Np, h, w] float32 gradient moduli (sigma of each sensitive view).
        protected_valid: [Np, h, w] bool, False where the operator suppressed a feature region
            (stage 2 ignores those pixels), or None when no map has suppressed pixels.
        protected_cameras: the Np sensitive views' cameras at the working size h x w.
        operator: the operator that made the protected maps (apply it to renders in stage 2).
        scale_mat: [4, 4] normalised -> world similarity, or None.
        names: every view's name, in the original view order.
        kinds: every view's kind ("neutral" / "sensitive"), in the original view order.
        reasons: the rule that decided each view's kind.
        neutral_indices: original view index of each neutral image.
        protected_indices: original view index of each protected map.
        root: the bundle folder it was read from.
    """

    neutral_images: np.ndarray
    neutral_masks: np.ndarray | None
    neutral_cameras: Cameras
    protected_maps: np.ndarray
    protected_cameras: Cameras
    operator: OperatorConfig
    scale_mat: np.ndarray | None
    names: list[str]
    kinds: list[str]
    reasons: list[str] = field(default_factory=list)
    neutral_indices: list[int] = field(default_factory=list)
    protected_indices: list[int] = field(default_factory=list)
    root: Path | None = None
    protected_valid: np.ndarray | None = None
    head_forward: np.ndarray | None = None
    """[3] unit direction the face looks along (world frame) when the dataset knew it, else
    None: orientation only (not identifying); it aims the identity-free template."""


# --------------------------------------------------------------------------------------------
# Writing
# --------------------------------------------------------------------------------------------


def _unit_or_none(vector) -> list[float] | None:
    if vector is None:
        return None
    v = np.asarray(vector, dtype=np.float64).reshape(-1)
    if v.shape != (3,) or not np.isfinite(v).all() or np.linalg.norm(v) < 1e-9:
        return None
    return (v / np.linalg.norm(v)).tolist()


def write_bundle(
    dataset,
    decisions: list[ViewDecision],
    operator_cfg: OperatorConfig,
    out_dir,
    scale_mat: np.ndarray | None = None,
    overwrite: bool = False,
    progress: bool = False,
    head_forward=None,
) -> Path:
    """Protect the sensitive views and write the bundle atomically.

    ``head_forward``: the direction the face looks along (world frame), if known; recorded in
    the manifest (``head_forward``) so that a template start can be aimed without a face view.

    Everything is written into a temporary sibling folder, flushed to disk, then renamed to
    ``out_dir``; on any failure the temporary folder is removed and ``out_dir`` is untouched.

    Args:
        dataset: a :class:`privhead.data.formats.HeadDataset` (images [N, H, W, 3] in [0, 1],
            cameras, masks [N, H, W] or None, scale_mat, names).
        decisions: one :class:`ViewDecision` per view, in view order.
        operator_cfg: the privacy operator sigma applied to the sensitive views.
        out_dir: bundle folder to create.
        scale_mat: [4, 4] normalised -> world similarity to record; default the dataset's.
        overwrite: replace an existing bundle at ``out_dir`` (never a folder that is not a
            privhead bundle).
        progress: show a progress bar.

    Returns:
        The bundle folder.
    """
    out_dir = Path(out_dir)
    images, masks, cameras, names = _check_dataset(dataset, decisions)
    if scale_mat is None:
        scale_mat = getattr(dataset, "scale_mat", None)
    if scale_mat is not None:
        scale_mat = np.asarray(scale_mat, dtype=np.float64)
        check_similarity(scale_mat)
    _check_target(out_dir, overwrite)

    height, width = images.shape[1:3]
    work_w, work_h = operator_cfg.working_size(width, height)
    protected_cameras = cameras.scaled(work_w, work_h)
    file_names = view_file_stems(names)

    tmp = out_dir.parent / f".{out_dir.name}.{uuid.uuid4().hex[:12]}.tmp"
    try:
        out_dir.parent.mkdir(parents=True, exist_ok=True)
        tmp.mkdir()
    except OSError as exc:
        raise PrivheadError(f"Cannot create the bundle folder {out_dir} ({exc}).") from exc
    try:
        view_entries = []
        for decision in progress_bar(decisions, desc="protect", unit="view", disable=not progress):
            i = decision.index
            entry = {
                "index": i,
                "name": names[i],
                "kind": decision.kind,
                "reason": decision.reason,
                "detail": decision.detail,
            }
            if decision.kind == NEUTRAL:
                entry.update(_write_neutral(tmp, file_names[i], images[i], masks, i))
                entry.update(_camera_entry(cameras, i))
            else:
                protected, valid = protect_image_valid(images[i], operator_cfg)
                entry.update(_write_protected(tmp, file_names[i], protected))
                entry["valid"] = None
                if valid is not None:
                    path = f"{VALID_DIR}/{file_names[i]}.png"
                    _write_file(tmp / path, _png_bytes(np.where(valid, 255, 0).astype(np.uint8)))
                    entry["valid"] = path
                    entry["valid_fraction"] = float(valid.mean())
                entry.update(_camera_entry(protected_cameras, i))
            view_entries.append(entry)
        manifest = {
            "format": BUNDLE_FORMAT,
            "version": BUNDLE_VERSION,
            "created_by": f"privhead {privhead.__version__}",
            "camera_convention": CAMERA_CONVENTION,
            "operator": operator_cfg.to_dict(),
            "operator_margin": operator_margin(operator_cfg),
            "operator_padding": PROTECTED_PADDING,
            "working_resolution": {"width": work_w, "height": work_h},
            "scale_mat": None if scale_mat is None else scale_mat.tolist(),
            "n_views": len(decisions),
            "n_neutral": sum(d.kind == NEUTRAL for d in decisions),
            "n_protected": sum(d.kind == SENSITIVE for d in decisions),
            "has_masks": masks is not None,
            "head_forward": _unit_or_none(head_forward),
            "views": view_entries,
        }
        text = json.dumps(manifest, indent=1) + "\n"
        _write_file(tmp / MANIFEST_NAME, text.encode("utf-8"))
        for sub in (NEUTRAL_DIR, MASK_DIR, PROTECTED_DIR, VALID_DIR):
            if (tmp / sub).is_dir():
                _fsync_dir(tmp / sub)
        _fsync_dir(tmp)
        _move_into_place(tmp, out_dir)
    except OSError as exc:
        shutil.rmtree(tmp, ignore_errors=True)
        raise PrivheadError(f"Cannot write the bundle {out_dir} ({exc}).") from exc
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out_dir


def _check_dataset(dataset, decisions):
    images = np.asarray(dataset.images)
    if images.ndim != 4 or images.shape[-1] != 3 or len(images) == 0:
        raise PrivheadError(f"Dataset images must be [N, H, W, 3] with N > 0, got {images.shape}.")
    if not np.all(np.isfinite(images)):
        raise PrivheadError("Dataset images hold NaN or infinite values.")
    n_views, height, width = images.shape[:3]
    cameras: Cameras = dataset.cameras
    if len(cameras) != n_views:
        raise PrivheadError(f"The dataset has {n_views} images but {len(cameras)} cameras.")
    if (cameras.width, cameras.height) != (width, height):
        raise PrivheadError(
            f"The cameras are for {cameras.width}x{cameras.height} images but the images are "
            f"{width}x{height}."
        )
    masks = dataset.masks
    if masks is not None:
        masks = np.asarray(masks, dtype=bool)
        if masks.shape != (n_views, height, width):
            raise PrivheadError(
                f"Dataset masks have shape {masks.shape}, expected {(n_views, height, width)}."
            )
    names = [str(n) for n in dataset.names]
    if len(names) != n_views:
        raise PrivheadError(f"The dataset has {n_views} images but {len(names)} names.")
    if [d.index for d in decisions] != list(range(n_views)):
        raise PrivheadError(
            f"Expected one view decision per view in order 0..{n_views - 1}, got "
            f"{len(decisions)} decisions."
        )
    for d in decisions:
        if d.kind not in KINDS:
            raise PrivheadError(f"View {d.index} has unknown kind {d.kind!r} (neutral/sensitive).")
    return images, masks, cameras, names


def _check_target(out_dir: Path, overwrite: bool) -> None:
    if not (out_dir.exists() or out_dir.is_symlink()):
        return
    if not overwrite:
        raise PrivheadError(f"{out_dir} already exists; choose another path or overwrite it.")
    if out_dir.is_symlink() or not out_dir.is_dir():
        raise PrivheadError(f"{out_dir} exists and is not a bundle folder; refusing to replace it.")
    if any(out_dir.iterdir()) and not _looks_like_bundle(out_dir):
        raise PrivheadError(
            f"{out_dir} exists and is not a privhead bundle; refusing to replace it."
        )


def _looks_like_bundle(path: Path) -> bool:
    try:
        with open(path / MANIFEST_NAME, encoding="utf-8") as f:
            return json.load(f).get("format") == BUNDLE_FORMAT
    except (OSError, ValueError, AttributeError):
        return False


def view_file_stems(names: list[str]) -> list[str]:
    """File stems of views: the view names when safe and unique, else 000000, 000001, ...

    Every file derived from a view (bundle maps, reconstruction renders) is named by this
    stem, so files of the same view pair up by name.
    """
    safe = all(_SAFE_NAME.fullmatch(n) for n in names) and len(set(names)) == len(names)
    return list(names) if safe else [f"{i:06d}" for i in range(len(names))]


def _write_neutral(root: Path, stem: str, image: np.ndarray, masks, index: int) -> dict:
    height, width = image.shape[:2]
    quantised = np.round(np.clip(image, 0.0, 1.0) * 255.0)
    entry: dict = {"width": int(width), "height": int(height)}
    if np.max(np.abs(quantised / 255.0 - image)) <= 1e-6:
        path = f"{NEUTRAL_DIR}/{stem}.png"
        _write_file(root / path, _png_bytes(quantised.astype(np.uint8)))
        entry.update(image=path, encoding="png8")
    else:
        path = f"{NEUTRAL_DIR}/{stem}.npy"
        _write_file(root / path, _npy_bytes(image.astype(np.float32)))
        entry.update(image=path, encoding="npy")
    entry["mask"] = None
    if masks is not None:
        path = f"{MASK_DIR}/{stem}.png"
        _write_file(root / path, _png_bytes(np.where(masks[index], 255, 0).astype(np.uint8)))
        entry["mask"] = path
    return entry


def _write_protected(root: Path, stem: str, protected: np.ndarray) -> dict:
    height, width = protected.shape
    scale = float(protected.max())
    quantised = np.zeros(protected.shape, dtype=np.uint16)
    if scale > 0:
        quantised = np.round(np.clip(protected / scale, 0.0, 1.0) * _PNG16_MAX).astype(np.uint16)
    path = f"{PROTECTED_DIR}/{stem}.png"
    _write_file(root / path, _png_bytes(quantised))
    return {
        "width": int(width),
        "height": int(height),
        "image": path,
        "encoding": "png16",
        "scale": scale,
        "mask": None,
    }


def _camera_entry(cameras: Cameras, index: int) -> dict:
    return {"K": cameras.K[index].tolist(), "c2w": cameras.c2w[index].tolist()}


def _png_bytes(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format="PNG")
    return buffer.getvalue()


def _npy_bytes(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, array, allow_pickle=False)
    return buffer.getvalue()


def _write_file(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())


def _fsync_dir(path: Path) -> None:
    """Flush a folder's entries (best effort: not every platform can open a folder)."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _move_into_place(tmp: Path, out_dir: Path) -> None:
    """Rename ``tmp`` to ``out_dir``, replacing an existing bundle there only at the last step."""
    old = None
    if out_dir.exists():
        old = out_dir.parent / f".{out_dir.name}.{uuid.uuid4().hex[:12]}.old"
        os.rename(out_dir, old)
    try:
        os.rename(tmp, out_dir)
    except OSError as exc:
        if old is not None:
            os.rename(old, out_dir)
        raise PrivheadError(f"Cannot create {out_dir} ({exc}).") from exc
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)
    _fsync_dir(out_dir.parent)


# --------------------------------------------------------------------------------------------
# Reading
# --------------------------------------------------------------------------------------------


def read_bundle(path) -> PrivacyBundle:
    """Read and validate a privacy bundle folder.

    Checks the manifest (JSON, format name, version, operator, scale_mat, every view entry),
    that every referenced file is present, decodes, and has the stated size, and that camera
    matrices have the right shapes; anything wrong raises one PrivheadError sentence.

    Args:
        path: the bundle folder.

    Returns:
        The bundle's arrays and cameras (see :class:`PrivacyBundle`).
    """
    root = Path(path)
    if not root.is_dir():
        raise PrivheadError(f"{root} is not a privacy bundle folder.")
    manifest_path = root / MANIFEST_NAME
    if not manifest_path.is_file():
        raise PrivheadError(f"{root} has no {MANIFEST_NAME}: not a privacy bundle.")
    try:
        manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise PrivheadError(f"{manifest_path} is not valid JSON ({exc}).") from exc
    where = str(manifest_path)
    if not isinstance(manifest, dict):
        raise PrivheadError(f"{where} must hold a JSON object.")
    if manifest.get("format") != BUNDLE_FORMAT:
        raise PrivheadError(
            f"{where} has format {manifest.get('format')!r}, expected {BUNDLE_FORMAT!r}."
        )
    version = manifest.get("version")
    if version not in READABLE_VERSIONS or isinstance(version, bool):
        raise PrivheadError(
            f"{where} has bundle version {version!r}; this privhead reads versions "
            f"{', '.join(map(str, READABLE_VERSIONS))}."
        )
    try:
        operator = OperatorConfig.from_dict(manifest.get("operator"))
    except PrivheadError as exc:
        raise PrivheadError(f"{where}: {exc}") from None

    scale_mat = manifest.get("scale_mat")
    if scale_mat is not None:
        scale_mat = _matrix(scale_mat, (4, 4), where, "scale_mat")
        try:
            check_similarity(scale_mat)
        except PrivheadError as exc:
            raise PrivheadError(f"{where}: {exc}") from None

    working = manifest.get("working_resolution")
    if not isinstance(working, dict):
        raise PrivheadError(f"{where}: working_resolution must be an object with width, height.")
    work_w = _positive_int(working.get("width"), where, "working_resolution width")
    work_h = _positive_int(working.get("height"), where, "working_resolution height")

    views = manifest.get("views")
    if not isinstance(views, list) or not views:
        raise PrivheadError(f"{where}: views must be a non-empty list.")
    n_views = manifest.get("n_views", len(views))
    if n_views != len(views):
        raise PrivheadError(f"{where} declares n_views = {n_views} but lists {len(views)} views.")

    names, kinds, reasons = [], [], []
    neutral_images, neutral_masks, neutral_K, neutral_c2w, neutral_indices = [], [], [], [], []
    protected_maps, protected_K, protected_c2w, protected_indices = [], [], [], []
    protected_valid = []
    neutral_size = None
    for position, entry in enumerate(views):
        view = f"{where}: view {position}"
        if not isinstance(entry, dict):
            raise PrivheadError(f"{view} is not a JSON object.")
        if entry.get("index") != position or isinstance(entry.get("index"), bool):
            raise PrivheadError(f"{view} has index {entry.get('index')!r}, expected {position}.")
        kind = entry.get("kind")
        if kind not in KINDS:
            raise PrivheadError(f"{view} has kind {kind!r}, expected neutral or sensitive.")
        name = entry.get("name")
        if not isinstance(name, str):
            raise PrivheadError(f"{view} has no name.")
        width = _positive_int(entry.get("width"), view, "width")
        height = _positive_int(entry.get("height"), view, "height")
        K = _matrix(entry.get("K"), (3, 3), view, "K")
        if not np.allclose(K[2], [0.0, 0.0, 1.0]) or K[0, 0] <= 0 or K[1, 1] <= 0:
            raise PrivheadError(f"{view}: K must have positive focal lengths and last row 0 0 1.")
        c2w = _matrix(entry.get("c2w"), (4, 4), view, "c2w")
        _check_pose(c2w, view)
        names.append(name)
        kinds.append(kind)
        reasons.append(str(entry.get("reason", "")))
        if kind == NEUTRAL:
            if neutral_size is None:
                neutral_size = (width, height)
            elif (width, height) != neutral_size:
                raise PrivheadError(
                    f"{view} is {width}x{height} but earlier neutral views are "
                    f"{neutral_size[0]}x{neutral_size[1]}."
                )
            image = _read_neutral_image(root, entry, view, width, height)
            mask_path = entry.get("mask")
            if mask_path is None:
                if neutral_masks:
                    raise PrivheadError(f"{view} has no mask but earlier neutral views do.")
            else:
                if neutral_images and not neutral_masks:
                    raise PrivheadError(f"{view} has a mask but earlier neutral views do not.")
                neutral_masks.append(_read_mask(root, mask_path, view, width, height))
            neutral_images.append(image)
            neutral_K.append(K)
            neutral_c2w.append(c2w)
            neutral_indices.append(position)
        else:
            if (width, height) != (work_w, work_h):
                raise PrivheadError(
                    f"{view} is {width}x{height} but the working resolution is {work_w}x{work_h}."
                )
            if entry.get("mask") is not None:
                raise PrivheadError(f"{view} is sensitive but lists a mask.")
            protected_maps.append(_read_protected(root, entry, view, width, height))
            valid_path = entry.get("valid")
            protected_valid.append(
                np.ones((height, width), dtype=bool)
                if valid_path is None
                else _read_mask(root, valid_path, view, width, height, VALID_DIR)
            )
            protected_K.append(K)
            protected_c2w.append(c2w)
            protected_indices.append(position)

    n_w, n_h = neutral_size or (0, 0)
    forward = _unit_or_none(manifest.get("head_forward"))
    head_forward = None if forward is None else np.asarray(forward)
    return PrivacyBundle(
        neutral_images=(
            np.stack(neutral_images) if neutral_images else np.zeros((0, 0, 0, 3), np.float32)
        ),
        neutral_masks=np.stack(neutral_masks) if neutral_masks else None,
        neutral_cameras=Cameras(
            np.reshape(neutral_K, (-1, 3, 3)), np.reshape(neutral_c2w, (-1, 4, 4)), n_w, n_h
        ),
        protected_maps=(
            np.stack(protected_maps)
            if protected_maps
            else np.zeros((0, work_h, work_w), np.float32)
        ),
        protected_cameras=Cameras(
            np.reshape(protected_K, (-1, 3, 3)),
            np.reshape(protected_c2w, (-1, 4, 4)),
            work_w,
            work_h,
        ),
        operator=operator,
        scale_mat=scale_mat,
        names=names,
        kinds=kinds,
        protected_valid=(
            np.stack(protected_valid)
            if protected_valid and not all(v.all() for v in protected_valid)
            else None
        ),
        reasons=reasons,
        neutral_indices=neutral_indices,
        protected_indices=protected_indices,
        root=root,
        head_forward=head_forward,
    )


def _positive_int(value, where: str, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise PrivheadError(f"{where}: {what} must be a positive integer, got {value!r}.")
    return value


def _matrix(value, shape: tuple[int, int], where: str, what: str) -> np.ndarray:
    try:
        matrix = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError):
        matrix = np.zeros(0)
    if matrix.shape != shape or not np.all(np.isfinite(matrix)):
        raise PrivheadError(
            f"{where}: {what} must be a finite {shape[0]}x{shape[1]} matrix, got {value!r}."
        )
    return matrix


def _check_pose(c2w: np.ndarray, where: str) -> None:
    rotation = c2w[:3, :3]
    if not np.allclose(c2w[3], [0.0, 0.0, 0.0, 1.0], atol=1e-9) or not np.allclose(
        rotation.T @ rotation, np.eye(3), atol=1e-6
    ):
        raise PrivheadError(f"{where}: c2w is not a rigid camera-to-world matrix.")


def _bundle_file(root: Path, relative, folder: str, where: str, what: str) -> Path:
    """The path of a file the manifest names, confined to the bundle's sub-folder ``folder``."""
    match = _FILE_PATTERN.fullmatch(relative) if isinstance(relative, str) else None
    if match is None or match.group(1) != folder:
        raise PrivheadError(
            f"{where}: {what} path {relative!r} is not a file name inside {folder}/."
        )
    path = root / relative
    if not path.is_file():
        raise PrivheadError(f"{where}: {what} file {relative} is missing.")
    return path


def _decode_png(path: Path, where: str) -> Image.Image:
    try:
        with Image.open(path) as im:
            im.load()
            if im.format != "PNG":
                raise PrivheadError(f"{where}: {path.name} is not a PNG file.")
            return im.copy()
    except (UnidentifiedImageError, OSError, ValueError) as exc:
        raise PrivheadError(f"{where}: {path} is not a readable PNG ({exc}).") from exc


def _check_size(array: np.ndarray, width: int, height: int, path: Path, where: str) -> None:
    if array.shape[:2] != (height, width):
        raise PrivheadError(
            f"{where}: {path.name} is {array.shape[1]}x{array.shape[0]} pixels, the manifest "
            f"says {width}x{height}."
        )


def _read_neutral_image(root: Path, entry: dict, where: str, width: int, height: int):
    path = _bundle_file(root, entry.get("image"), NEUTRAL_DIR, where, "image")
    encoding = entry.get("encoding")
    if encoding == "png8" and path.suffix == ".png":
        im = _decode_png(path, where)
        if im.mode != "RGB":
            raise PrivheadError(f"{where}: {path.name} must be an 8-bit RGB PNG, not {im.mode}.")
        image = np.asarray(im, dtype=np.float32) / 255.0
    elif encoding == "npy" and path.suffix == ".npy":
        image = _load_npy(path, where).astype(np.float32)
        if image.ndim != 3 or image.shape[-1] != 3:
            raise PrivheadError(f"{where}: {path.name} must hold an [H, W, 3] array.")
        if not np.all(np.isfinite(image)):
            raise PrivheadError(f"{where}: {path.name} holds NaN or infinite values.")
    else:
        raise PrivheadError(f"{where}: unknown image encoding {encoding!r} for {path.name}.")
    _check_size(image, width, height, path, where)
    return image


def _read_mask(
    root: Path, relative, where: str, width: int, height: int, folder: str = MASK_DIR
) -> np.ndarray:
    path = _bundle_file(root, relative, folder, where, "mask")
    im = _decode_png(path, where)
    if im.mode != "L":
        raise PrivheadError(f"{where}: {path.name} must be an 8-bit grey PNG, not {im.mode}.")
    mask = np.asarray(im) > 127
    _check_size(mask, width, height, path, where)
    return mask


def _read_protected(root: Path, entry: dict, where: str, width: int, height: int):
    path = _bundle_file(root, entry.get("image"), PROTECTED_DIR, where, "image")
    encoding = entry.get("encoding")
    if encoding == "png16" and path.suffix == ".png":
        scale = entry.get("scale")
        if isinstance(scale, bool) or not isinstance(scale, (int, float)):
            raise PrivheadError(f"{where}: scale must be a number, got {scale!r}.")
        if not math.isfinite(scale) or scale < 0:
            raise PrivheadError(f"{where}: scale must be finite and >= 0, got {scale}.")
        im = _decode_png(path, where)
        if im.mode not in ("I;16", "I;16B", "I;16L", "I"):
            raise PrivheadError(f"{where}: {path.name} must be a 16-bit grey PNG, not {im.mode}.")
        values = np.asarray(im, dtype=np.float64)
        protected = (values / _PNG16_MAX * scale).astype(np.float32)
    elif encoding == "npy" and path.suffix == ".npy":
        protected = _load_npy(path, where).astype(np.float32)
        if protected.ndim != 2:
            raise PrivheadError(f"{where}: {path.name} must hold an [h, w] array.")
        if not np.all(np.isfinite(protected)) or protected.min(initial=0.0) < 0:
            raise PrivheadError(f"{where}: {path.name} must hold finite values >= 0.")
    else:
        raise PrivheadError(f"{where}: unknown protected encoding {encoding!r} for {path.name}.")
    _check_size(protected, width, height, path, where)
    return protected


def _load_npy(path: Path, where: str) -> np.ndarray:
    try:
        array = np.load(path, allow_pickle=False)
    except (OSError, ValueError) as exc:
        raise PrivheadError(f"{where}: {path} is not a readable .npy file ({exc}).") from exc
    if not np.issubdtype(array.dtype, np.floating):
        raise PrivheadError(f"{where}: {path.name} must hold floating-point values.")
    return array
