"""The prepare pipeline: captures -> cameras -> masks -> normalisation and face split -> dataset."""

from __future__ import annotations

import json
import math
import shutil
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from privhead.errors import PrivheadError

MIN_VIEWS = 8
MIN_MASK_FRACTION = 0.005
"""A view whose head mask covers less of the image than this has no usable mask."""
"""Fewest photos / frames prepare accepts (a head needs views all around it)."""
DEFAULT_SUBJECT_HEIGHT_MM = 250.0
"""Default height of what the masks keep (top of the head to the lowest visible neck point):
an adult head (~230 mm vertex to chin) plus a little neck. Sets ``mm_per_unit`` as an estimate."""
SENSITIVE_ANGLE_DEG = 110.0
"""A view is sensitive when its direction from the head centre is within this angle of the face
direction (the rule of the project's shared data), or a face detector fires in it."""
SENSITIVE_MARGIN_DEG = 10.0
"""Added to the angle for prepare's own split: the voted face direction is an estimate (up to
8 deg off in the views' angles on the three synthetic walk-arounds measured), and a view near
the threshold must err towards sensitive. With it no face view of those shoots was left
neutral, and 9-10 of their 10 back views stayed neutral."""


@dataclass
class PrepareConfig:
    """Settings of :func:`prepare_dataset`."""

    frames: int = 40
    """Video only: frames kept (the sharpest of each of this many equal windows)."""
    sfm_side: int = 1024
    """Longer side, in pixels, of the images structure from motion sees: larger photos are
    reduced to it, smaller ones enlarged (SIFT finds too few features on a small head: an
    18-view 256 px shoot registered 2 views at its own size)."""
    image_side: int = 512
    """Longer side, in pixels, of the dataset's images."""
    head_fraction: float = 0.3
    """3D points closer to the head centre than this fraction of the median camera distance
    are the head (sure foreground of the masks)."""
    room_fraction: float = 0.6
    """3D points farther from the head centre than this fraction of the median camera
    distance are the room (sure background of the masks)."""
    subject_height_mm: float = DEFAULT_SUBJECT_HEIGHT_MM
    """Height of the masked subject, for ``mm_per_unit`` (an estimate; SfM has no scale)."""
    detector: str = "auto"
    """Face detectors voting the face direction (``auto``, ``none`` or a comma list)."""
    sensitive_angle_deg: float = SENSITIVE_ANGLE_DEG
    """Views within this angle of the face direction are sensitive (the rule)."""
    sensitive_margin_deg: float = SENSITIVE_MARGIN_DEG
    """Safety margin added to ``sensitive_angle_deg``, for the error of the voted face
    direction (the split protects views up to the sum)."""
    hull_masks: bool = True
    """After structure from motion, cut every mask to the projection of the masks' visual hull
    (:func:`privhead.prepare.masks.hull_consistent_masks`): room that a few views' masks take
    in is dropped (not room beside a turntable's head, which its turning sweeps)."""
    intrinsics: str = "refine"
    """What bundle adjustment refines of the camera: ``refine`` (focal length and radial
    distortion), ``focal`` (focal length; no distortion) or ``fixed`` (neither: the EXIF focal
    length is kept; without one this is ``focal``)."""
    threads: int = 2
    keep_workdir: bool = False
    """Keep the working folder (SfM images, database, model) beside the output."""


INTRINSICS = ("refine", "focal", "fixed")
"""The choices of :attr:`PrepareConfig.intrinsics`."""


def sfm_intrinsics(setting: str, focal_px: float | None) -> dict[str, bool]:
    """What bundle adjustment refines (``refine_focal``, ``refine_distortion`` of
    :class:`~privhead.prepare.sfm.SfmConfig`) for a :attr:`PrepareConfig.intrinsics` setting;
    ``fixed`` without a focal length prior refines the focal length (there is nothing to keep).
    """
    if setting not in INTRINSICS:
        raise PrivheadError(
            f"Unknown intrinsics setting {setting!r}; choose one of {', '.join(INTRINSICS)}."
        )
    return {
        "refine_focal": setting != "fixed" or focal_px is None,
        "refine_distortion": setting == "refine",
    }


@dataclass
class PrepareResult:
    """What :func:`prepare_dataset` wrote and found (also saved as ``prepare.json``)."""

    out: Path
    n_inputs: int
    registered: list[str]
    """The dataset's views (registered, and not left out)."""
    failed: list[str]
    sfm_attempt: str
    sfm_attempts: list[dict]
    mean_reprojection_px: float
    static_camera: bool
    sensitive: dict[str, str]
    neutral: list[str]
    face_direction: list[float] | None
    mm_per_unit: float
    mask_fraction: float
    skipped: list[tuple[str, str]] = field(default_factory=list)
    left_out: dict[str, str] = field(default_factory=dict)
    """Views that registered but were left out of the dataset, and why (a false registration,
    no head mask): their photos are in no output."""
    notes: list[str] = field(default_factory=list)
    workdir: Path | None = None
    seconds: dict[str, float] = field(default_factory=dict)

    def to_dict(self) -> dict:
        data = asdict(self)
        data["out"] = str(self.out)
        data["workdir"] = None if self.workdir is None else str(self.workdir)
        return data

    def summary_lines(self) -> list[str]:
        why = {}
        for reason in self.sensitive.values():
            why[reason] = why.get(reason, 0) + 1
        reasons = ", ".join(f"{n} by {r}" for r, n in sorted(why.items()))
        lines = [
            f"registered {len(self.registered) + len(self.left_out)} of {self.n_inputs} views "
            f"(SfM attempt '{self.sfm_attempt}', mean reprojection error "
            f"{self.mean_reprojection_px:.2f} px)"
            + (f"; not registered: {', '.join(self.failed)}" if self.failed else ""),
            *[f"left out {name}: {reason}" for name, reason in self.left_out.items()],
            f"masks: {'static background' if self.static_camera else 'sparse 3D points'} + "
            f"GrabCut, the head covers {100 * self.mask_fraction:.0f} % of the pixels on average",
            f"{len(self.sensitive)} sensitive views ({reasons or 'none'}), {len(self.neutral)} "
            "neutral views",
            f"scale: {self.mm_per_unit:.1f} mm per unit (estimated from a subject height)",
        ]
        return lines + self.notes


def _say(log, text: str) -> None:
    if log is not None:
        log(text)


def _resize_rgb(image: np.ndarray, width: int, height: int) -> np.ndarray:
    from PIL import Image

    if image.shape[:2] == (height, width):
        return image
    return np.asarray(Image.fromarray(image).resize((width, height), Image.Resampling.BOX))


def _resize_mask(mask: np.ndarray, width: int, height: int) -> np.ndarray:
    from PIL import Image

    if mask.shape == (height, width):
        return mask
    grey = Image.fromarray(mask.astype(np.uint8) * 255).resize(
        (width, height), Image.Resampling.BOX
    )
    return np.asarray(grey) >= 128


def _work_images(captures, work: Path, side: int) -> tuple[Path, int, int]:
    from PIL import Image

    folder = work / "images"
    folder.mkdir(parents=True)
    height, width = captures.images.shape[1:3]
    factor = side / max(height, width)
    size = (max(1, round(width * factor)), max(1, round(height * factor)))
    resample = Image.Resampling.LANCZOS if factor < 1 else Image.Resampling.BICUBIC
    for name, image in zip(captures.names, captures.images, strict=True):
        pil = Image.fromarray(image)
        if pil.size != size:
            pil = pil.resize(size, resample)
        pil.save(folder / f"{name}.png")
    return folder, size[0], size[1]


def _write_colmap_masks(masks: np.ndarray, names: list[str], work: Path, size) -> Path:
    """COLMAP's mask convention: ``MASKS/<image name>.png``, black = no features there."""
    from PIL import Image

    folder = work / "masks"
    folder.mkdir()
    for name, mask in zip(names, masks, strict=True):
        grey = Image.fromarray(mask.astype(np.uint8) * 255).resize(size, Image.Resampling.NEAREST)
        grey.save(folder / f"{name}.png.png")
    return folder


DISTANCE_OUTLIER = 3.0
"""A registered camera farther from the head centre than this many times the median camera
distance (or nearer than its inverse) is a false registration (seen on small shoots: cameras
registered 31 and 71 units away where the others were 3.5-5.3)."""


def consistent_registrations(cameras) -> tuple[np.ndarray, dict[int, str]]:
    """Which registered cameras agree with the others on where the head is.

    The head centre is the point nearest the optical axes of the cameras kept so far; a camera
    is dropped when its distance to it is off the median by more than :data:`DISTANCE_OUTLIER`
    or when the centre is behind it or outside its image (it does not look at the head).
    Repeated until nothing changes, since a false registration also pulls the centre.

    Returns:
        (bool [N] kept, index -> why for the dropped ones)
    """
    from privhead.data.cameras import optical_axes_center

    n = len(cameras)
    keep = np.ones(n, dtype=bool)
    why: dict[int, str] = {}
    for _ in range(n):
        if keep.sum() < 3:
            break
        center = optical_axes_center(cameras.subset(np.nonzero(keep)[0]))
        distance = np.linalg.norm(cameras.centers - center, axis=1)
        typical = float(np.median(distance[keep]))
        uv, depth = cameras.project(center[None])
        uv, depth = uv[:, 0], depth[:, 0]
        inside = (
            (depth > 0)
            & (uv[:, 0] >= 0)
            & (uv[:, 0] <= cameras.width - 1)
            & (uv[:, 1] >= 0)
            & (uv[:, 1] <= cameras.height - 1)
        )
        ratio = distance / max(typical, 1e-12)
        bad = keep & ((ratio > DISTANCE_OUTLIER) | (ratio < 1.0 / DISTANCE_OUTLIER) | ~inside)
        if not bad.any():
            break
        for i in np.nonzero(bad)[0]:
            if not inside[i]:
                why[int(i)] = "registered looking away from the head"
            else:
                why[int(i)] = f"registered {ratio[i]:.1f}x the median distance from the head"
        keep &= ~bad
    return keep, why


def face_direction(cameras, center: np.ndarray, face_views: dict[int, float]) -> np.ndarray | None:
    """Unit world direction the face looks along, voted from the views where a face detector
    fires: the score-weighted mean of their directions (head centre -> camera) minus the mean
    direction of the views where none fires (the firing views alone, when every view fires);
    None without any detection.

    Subtracting the other views cancels the pull of an uneven camera layout: a mean of the
    firing views alone leans towards where cameras are dense (three rings at different
    elevations: 9.5-12.2 deg rms error, up to 25, in the views' angles to the face on three
    synthetic walk-arounds, seeds 7, 8 and 11, which let 1-2 of their 20 face views through as
    neutral; 0.8-5.1 deg rms, up to 8, with the contrast).
    """
    if not face_views:
        return None
    directions = cameras.centers - center
    directions /= np.linalg.norm(directions, axis=1, keepdims=True)
    weights = np.zeros(len(directions))
    for index, score in face_views.items():
        weights[index] = max(float(score), 1e-3)
    vote = (weights[:, None] * directions).sum(axis=0) / weights.sum()
    others = [i for i in range(len(directions)) if i not in face_views]
    if others:
        vote = vote - directions[others].mean(axis=0)
    norm = np.linalg.norm(vote)
    return vote / norm if norm > 1e-9 else None


def split_views(
    cameras,
    center: np.ndarray,
    face_views: dict[int, float],
    angle_deg: float = SENSITIVE_ANGLE_DEG,
) -> tuple[dict[int, str], list[int], np.ndarray | None]:
    """Sensitive views (index -> why) and neutral views.

    A view is sensitive when a face detector fires in it OR its direction from the head centre
    is within ``angle_deg`` of the voted face direction (either alone misses views: a detector
    misses profiles, the angle misses a face turned towards an odd camera). Without any face
    detection every view is sensitive: nothing leaves as RGB unless shown to be neutral.
    """
    forward = face_direction(cameras, center, face_views)
    sensitive: dict[int, str] = {}
    for index in face_views:
        sensitive[index] = "face detector"
    if forward is None:
        for index in range(len(cameras)):
            sensitive.setdefault(index, "no face direction (no detector fired)")
        return sensitive, [], None
    directions = cameras.centers - center
    directions /= np.linalg.norm(directions, axis=1, keepdims=True)
    angles = np.degrees(np.arccos(np.clip(directions @ forward, -1.0, 1.0)))
    for index, angle in enumerate(angles):
        if angle <= angle_deg:
            sensitive.setdefault(index, "pose")
    neutral = [i for i in range(len(cameras)) if i not in sensitive]
    return sensitive, neutral, forward


def canonical_transform(cameras, center: np.ndarray, up: np.ndarray, forward) -> np.ndarray:
    """[4, 4] rigid map from the structure-from-motion frame (arbitrary axes and origin) to the
    head frame: the head centre at the origin, ``up`` along +Y and the face direction, levelled
    (made perpendicular to ``up``), along +Z (where the face is unknown, +Z points to the
    cameras' mean position). The frame of the project's synthetic and shared heads, and what
    mesh viewers expect."""
    y = np.asarray(up, dtype=np.float64) / max(np.linalg.norm(up), 1e-12)
    z = None if forward is None else np.asarray(forward, dtype=np.float64)
    if z is None:
        z = (cameras.centers - center).mean(axis=0)
    z = z - (z @ y) * y
    if np.linalg.norm(z) < 1e-9:  # no horizontal direction to face: any perpendicular one
        z = np.cross(y, [1.0, 0.0, 0.0] if abs(y[0]) < 0.9 else [0.0, 0.0, 1.0])
    z /= np.linalg.norm(z)
    x = np.cross(y, z)
    T = np.eye(4)
    T[:3, :3] = np.stack([x, y, z])
    T[:3, 3] = -T[:3, :3] @ np.asarray(center, dtype=np.float64)
    return T


def _up_direction(cameras, forward: np.ndarray | None) -> np.ndarray:
    up = -cameras.c2w[:, :3, 1].mean(axis=0)  # OpenCV camera y points down
    if forward is not None:
        up = up - (up @ forward) * forward
    return up / max(np.linalg.norm(up), 1e-12)


def _hull_height(cameras, masks: np.ndarray, scale_mat: np.ndarray, up: np.ndarray) -> float:
    """Extent along ``up`` (world units) of the masks' visual hull on a 64^3 grid
    (:func:`privhead.prepare.masks.visual_hull`)."""
    from privhead.prepare.masks import visual_hull

    points, _ = visual_hull(cameras, masks, scale_mat, resolution=64)
    if len(points) == 0:
        raise PrivheadError("The masks' visual hull is empty: the masks and cameras disagree.")
    heights = points @ up
    return float(heights.max() - heights.min())


def prepare_dataset(
    source,
    out,
    cfg: PrepareConfig | None = None,
    *,
    overwrite: bool = False,
    log: Callable[[str], None] | None = None,
) -> PrepareResult:
    """Photos (folder) or video (file) -> a dataset folder that ``privhead protect`` reads.

    Everything is written to a temporary folder beside ``out`` and renamed at the end: a failure
    leaves nothing half-written.

    Raises:
        PrivheadError: one sentence (too few photos, unreadable input, no overlap, ...).
    """
    from privhead.data.cameras import (
        Cameras,
        check_similarity,
        estimate_normalization,
        optical_axes_center,
        scaled_intrinsics,
        similarity,
    )
    from privhead.data.colmap import model_cameras, read_model, undistort_image, write_model
    from privhead.data.formats import HeadDataset, write_idr, write_transforms
    from privhead.prepare.inputs import read_captures
    from privhead.prepare.masks import (
        is_static_camera,
        masks_from_points,
        static_background_masks,
    )
    from privhead.prepare.sfm import SfmConfig, run_sfm

    cfg = cfg or PrepareConfig()
    sfm_intrinsics(cfg.intrinsics, None)  # an unknown setting fails before anything is read
    out = Path(out)
    if out.exists() and (not out.is_dir() or any(out.iterdir())) and not overwrite:
        raise PrivheadError(f"{out} already exists; pass --overwrite to replace it.")
    times: dict[str, float] = {}
    clock = time.perf_counter()

    def lap(name: str) -> None:
        nonlocal clock
        now = time.perf_counter()
        times[name] = round(now - clock, 1)
        clock = now

    _say(log, f"reading {source}")
    captures = read_captures(source, cfg.frames, max_side=max(cfg.sfm_side, cfg.image_side))
    if len(captures.names) < MIN_VIEWS:
        raise PrivheadError(
            f"{source} gives {len(captures.names)} usable view(s); prepare needs at least "
            f"{MIN_VIEWS} photos taken all around the head."
        )
    lap("read")
    _say(log, f"{len(captures.names)} {captures.source} read")
    out.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=f".{out.name}.prepare-", dir=out.parent))
    try:
        images_dir, sfm_w, sfm_h = _work_images(captures, work, cfg.sfm_side)
        static = is_static_camera(captures.images)
        static_masks = None
        mask_dir = None
        if static:
            _say(log, "static camera (turntable): masking the static background before SfM")
            static_masks, feature_masks = static_background_masks(captures.images)
            mask_dir = _write_colmap_masks(feature_masks, captures.names, work, (sfm_w, sfm_h))
        lap("masks_before_sfm")
        focal = None
        known = [f for f in captures.focal_35mm if f]
        if known:
            focal = float(np.median(known)) / math.hypot(36.0, 24.0) * math.hypot(sfm_w, sfm_h)
            _say(log, f"EXIF focal length prior: {focal:.0f} px")
        sfm = run_sfm(
            SfmConfig(
                image_dir=str(images_dir),
                work_dir=str(work / "sfm"),
                mask_dir=None if mask_dir is None else str(mask_dir),
                focal_px=focal,
                **sfm_intrinsics(cfg.intrinsics, focal),
                min_registered=MIN_VIEWS,
                threads=cfg.threads,
            ),
            log=lambda text: _say(log, text),
        )
        lap("sfm")
        model = read_model(sfm.model_dir)
        registered_files = sorted(im.name for im in model.images.values())
        index_of = {f"{name}.png": k for k, name in enumerate(captures.names)}
        order = sorted(registered_files, key=lambda n: index_of[n])
        names, K, c2w, dist, (width, height) = model_cameras(model, order)
        photo_h, photo_w = captures.images.shape[1:3]
        if width > photo_w:  # SfM saw enlarged copies: back to the photos' own size
            K = scaled_intrinsics(K, photo_w / width, photo_h / height)
            width, height = photo_w, photo_h
        cameras = Cameras(K, c2w, width, height)
        consistent, dropped = consistent_registrations(cameras)
        dropped_views: dict[str, str] = {}
        if dropped:
            for j, why in sorted(dropped.items()):
                dropped_views[Path(names[j]).stem] = why
                _say(log, f"  view {Path(names[j]).stem} left out: {why}")
            chosen = np.nonzero(consistent)[0]
            names = [names[j] for j in chosen]
            K, c2w, dist = K[chosen], c2w[chosen], dist[chosen]
            cameras = cameras.subset(chosen)
        if len(names) < MIN_VIEWS:
            raise PrivheadError(
                f"Only {len(names)} views registered consistently (prepare needs {MIN_VIEWS}): "
                "the photos do not overlap enough."
            )
        keep = [index_of[n] for n in names]
        registered_index = {index_of[n] for n in registered_files}
        failed = [name for k, name in enumerate(captures.names) if k not in registered_index]
        images = []
        for k, Kk, dk in zip(keep, K, dist, strict=True):
            image = _resize_rgb(captures.images[k], width, height)
            images.append(undistort_image(image, Kk, dk))
        images = np.stack(images)

        center = optical_axes_center(cameras)
        if static_masks is not None:
            masks = np.stack(
                [
                    _resize_mask(
                        undistort_image(static_masks[k].astype(np.uint8), K[j], dist[j]) > 0,
                        width,
                        height,
                    )
                    for j, k in enumerate(keep)
                ]
            )
        else:
            _say(log, "masks from the head's and the room's 3D points (GrabCut)")
            by_name = {im.name: im for im in model.images.values()}
            point_ids = list(model.points)
            position = {pid: j for j, pid in enumerate(point_ids)}
            points = model.point_array()
            visible = []
            for name in names:
                ids = by_name[name].point3d_ids
                visible.append(np.array([position[p] for p in ids if p in position], dtype=int))
            reach = float(np.median(np.linalg.norm(cameras.centers - center, axis=1)))
            masks = masks_from_points(
                images,
                cameras,
                points,
                center,
                cfg.head_fraction * reach,
                cfg.room_fraction * reach,
                visible,
            )
        coverage = masks.reshape(len(masks), -1).mean(axis=1)
        if not (coverage >= MIN_MASK_FRACTION).any():
            raise PrivheadError("No view has a head mask: the head could not be separated.")
        if (coverage < MIN_MASK_FRACTION).any():
            # An empty mask would teach stage 1 that the head is not there (and blank a
            # protected map): such a view is left out rather than kept wrong.
            for j in np.nonzero(coverage < MIN_MASK_FRACTION)[0]:
                why = f"no head mask found ({100 * coverage[j]:.2f} % of the pixels)"
                dropped_views[Path(names[j]).stem] = why
                _say(log, f"  view {Path(names[j]).stem} left out: {why}")
            chosen = np.nonzero(coverage >= MIN_MASK_FRACTION)[0]
            names = [names[j] for j in chosen]
            images, masks, K, dist = images[chosen], masks[chosen], K[chosen], dist[chosen]
            cameras = cameras.subset(chosen)
            if len(names) < MIN_VIEWS:
                raise PrivheadError(
                    f"Only {len(names)} views have a head mask (prepare needs {MIN_VIEWS}): the "
                    "head could not be separated from the background."
                )
            center = optical_axes_center(cameras)
        scale_mat = estimate_normalization(cameras, masks, center=center)
        if cfg.hull_masks:
            from privhead.prepare.masks import hull_consistent_masks

            _say(log, "masks cut to their visual hull (multi-view consistency)")
            masks = hull_consistent_masks(cameras, masks, scale_mat)
            scale_mat = estimate_normalization(cameras, masks, center=center)
        lap("masks")

        detections: dict[int, float] = {}
        if cfg.detector != "none":
            from privhead.privacy.faces.detect import detect_faces, load_detectors

            detectors = load_detectors(cfg.detector)
            _say(log, f"face detectors ({', '.join(d.name for d in detectors) or 'none'})")
            for j, image in enumerate(images):
                found = detect_faces(image, detectors)
                if found:
                    detections[j] = max(d.score for d in found)
        sensitive, neutral, forward = split_views(
            cameras, center, detections, cfg.sensitive_angle_deg + cfg.sensitive_margin_deg
        )
        notes = []
        if forward is None:
            notes.append(
                "note: no face detector fired, so every view is sensitive (only neutral views "
                "can leave as RGB)."
            )
        up = _up_direction(cameras, forward)
        if cfg.keep_workdir:
            np.save(work / "masks.npy", masks)
        mm_per_unit = cfg.subject_height_mm / _hull_height(cameras, masks, scale_mat, up)
        # The dataset in the head frame (centre at the origin, up +Y, face +Z), not in the SfM
        # model's arbitrary one: meshes then open upright in any viewer.
        # Up is the cameras' mean up (photos are taken upright); the voted face direction, which
        # leans towards where most face views were taken from, is only levelled against it.
        camera_up = _up_direction(cameras, None)
        world_from_sfm = canonical_transform(cameras, center, camera_up, forward)
        turn = world_from_sfm[:3, :3]
        cameras = Cameras(cameras.K, world_from_sfm @ cameras.c2w, cameras.width, cameras.height)
        scale_mat = similarity(np.zeros(3), check_similarity(scale_mat)[1])
        center, up = np.zeros(3), turn @ up
        forward = None if forward is None else turn @ forward
        lap("split")

        # The dataset at the output size, composited on black (the room never leaves).
        factor = min(1.0, cfg.image_side / max(width, height))
        out_w, out_h = max(1, round(width * factor)), max(1, round(height * factor))
        out_cameras = cameras.scaled(out_w, out_h)
        out_masks = np.stack([_resize_mask(m, out_w, out_h) for m in masks])
        out_images = (
            np.stack([_resize_rgb(im, out_w, out_h) for im in images]).astype(np.float32) / 255.0
        )
        out_images *= out_masks[..., None]
        stems = [Path(n).stem for n in names]
        views = _views_json(out_cameras, center, forward, up, sensitive, neutral, stems, cfg)
        dataset = HeadDataset(
            images=out_images,
            cameras=out_cameras,
            masks=out_masks,
            scale_mat=scale_mat,
            names=stems,
            views=views,
        )
        staging = work / "dataset"
        staging.mkdir()
        write_idr(dataset, staging)
        write_transforms(dataset, staging)
        model_copy = staging / "sparse" / "0"
        if dropped_views:  # the saved model holds the dataset's cameras only
            write_model(model.without_images({f"{name}.png" for name in dropped_views}), model_copy)
        else:
            shutil.copytree(sfm.model_dir, model_copy)
        lap("write")
        result = PrepareResult(
            out=out,
            n_inputs=len(captures.names),
            registered=stems,
            failed=failed,
            sfm_attempt=sfm.attempt,
            sfm_attempts=sfm.attempts,
            mean_reprojection_px=model.mean_reprojection_error(),
            static_camera=static,
            sensitive={stems[i]: why for i, why in sorted(sensitive.items())},
            neutral=[stems[i] for i in neutral],
            face_direction=None if forward is None else forward.tolist(),
            mm_per_unit=mm_per_unit,
            mask_fraction=float(out_masks.mean()),
            skipped=captures.skipped,
            left_out=dropped_views,
            notes=notes,
            seconds=times,
        )
        info = result.to_dict()
        info["scale"] = {
            "mm_per_unit": mm_per_unit,
            "estimated": True,
            "method": (
                f"subject height {cfg.subject_height_mm:g} mm / extent of the masks' visual hull "
                "along the up direction"
            ),
        }
        info["frame"] = {
            "world_from_sfm": world_from_sfm.tolist(),
            "note": "the dataset's cameras are the SfM model's (sparse/0) mapped by this rigid "
            "transform: head centre at the origin, up +Y, face +Z",
        }
        info["config"] = asdict(cfg)
        (staging / "prepare.json").write_text(json.dumps(info, indent=1) + "\n")
        if out.exists():
            shutil.rmtree(out)
        staging.rename(out)
        if cfg.keep_workdir:
            result.workdir = out.parent / f"{out.name}.workdir"
        return result
    finally:
        if cfg.keep_workdir and work.exists():
            kept = out.parent / f"{out.name}.workdir"  # kept on failure too, to look into it
            shutil.rmtree(kept, ignore_errors=True)
            work.rename(kept)
        elif work.exists():
            shutil.rmtree(work, ignore_errors=True)


def _views_json(cameras, center, forward, up, sensitive, neutral, stems, cfg) -> dict:
    directions = cameras.centers - center
    directions /= np.linalg.norm(directions, axis=1, keepdims=True)
    views = []
    for i, stem in enumerate(stems):
        angle = None
        if forward is not None:
            angle = float(np.degrees(np.arccos(np.clip(directions[i] @ forward, -1.0, 1.0))))
        views.append(
            {
                "index": i,
                "file": f"{stem}.png",
                "sensitive": i in sensitive,
                "reason": sensitive.get(i, "pose"),
                "angle_to_forward_deg": angle,
                "camera_center": cameras.centers[i].tolist(),
            }
        )
    return {
        "forward": None if forward is None else forward.tolist(),
        "up": up.tolist(),
        "sensitive_threshold_deg": cfg.sensitive_angle_deg + cfg.sensitive_margin_deg,
        "sensitive_margin_deg": cfg.sensitive_margin_deg,
        "rule": (
            "sensitive = a face detector fires in the view OR the angle between (camera centre - "
            "head centre) and the voted face direction <= threshold (the rule's angle plus a "
            "margin for the error of the voted direction); neutral = the others"
        ),
        "n_views": len(stems),
        "n_sensitive": len(sensitive),
        "n_neutral": len(neutral),
        "sensitive_indices": sorted(sensitive),
        "neutral_indices": list(neutral),
        "views": views,
    }
