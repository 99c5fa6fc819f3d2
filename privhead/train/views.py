"""What the trainer sees: RGB views and protected views as tensors, in the normalised frame.

Built from a privacy bundle (:func:`views_from_bundle`) or, for the full-RGB baseline, from the
original dataset (:func:`views_from_dataset`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from privhead.data.cameras import (
    Cameras,
    estimate_normalization,
    normalize_cameras,
    scaled_intrinsics,
)
from privhead.data.formats import HeadDataset
from privhead.errors import PrivheadError
from privhead.privacy.bundle import PrivacyBundle
from privhead.privacy.operators import OperatorConfig


@dataclass
class TrainingViews:
    """Training inputs on one device, cameras already normalised to the unit sphere.

    Attributes:
        rgb_images: [Nr, H, W, 3] RGB views in [0, 1] (neutral views, or all views for the
            full-RGB baseline); Nr may be 0.
        rgb_masks: [Nr, H, W] float {0, 1} foreground masks, or None.
        rgb_K: [Nr, 3, 3] intrinsics of the RGB views.
        rgb_c2w: [Nr, 4, 4] camera-to-world of the RGB views (normalised frame).
        protected_maps: [Np, h, w] protected gradient-modulus maps; Np may be 0.
        protected_K: [Np, 3, 3] intrinsics at the maps' resolution.
        protected_c2w: [Np, 4, 4] camera-to-world (normalised frame).
        operator: the operator that made the maps (None without protected views).
        scale_mat: [4, 4] normalised -> dataset world frame.
        protected_valid: [Np, h, w] float {0, 1}: 0 where the operator suppressed the map
            (feature regions; the loss ignores them), or None when every pixel is valid.
    """

    rgb_images: torch.Tensor
    rgb_masks: torch.Tensor | None
    rgb_K: torch.Tensor
    rgb_c2w: torch.Tensor
    protected_maps: torch.Tensor
    protected_K: torch.Tensor
    protected_c2w: torch.Tensor
    operator: OperatorConfig | None
    scale_mat: np.ndarray
    protected_valid: torch.Tensor | None = None
    head_forward: torch.Tensor | None = None
    """[3] direction the face looks along in the normalised frame (CPU), when the bundle
    records it; else None."""

    @property
    def num_rgb(self) -> int:
        return int(self.rgb_images.shape[0])

    @property
    def num_protected(self) -> int:
        return int(self.protected_maps.shape[0])


def make_training_views(
    rgb_images: np.ndarray,
    rgb_masks: np.ndarray | None,
    rgb_cameras: Cameras | None,
    protected_maps: np.ndarray,
    protected_cameras: Cameras | None,
    operator: OperatorConfig | None,
    scale_mat: np.ndarray,
    device: torch.device,
    protected_valid: np.ndarray | None = None,
) -> TrainingViews:
    """Normalise cameras and move everything to ``device``.

    Args:
        rgb_images: [Nr, H, W, 3] float in [0, 1] (Nr may be 0).
        rgb_masks: [Nr, H, W] bool or None.
        rgb_cameras: cameras of the RGB views in the dataset's world frame (None if Nr = 0).
        protected_maps: [Np, h, w] float maps (Np may be 0).
        protected_cameras: cameras of the maps at their resolution, world frame.
        operator: operator of the maps.
        scale_mat: [4, 4] normalisation (normalised -> world).
        device: torch device.
        protected_valid: optional [Np, h, w] bool validity of the maps' pixels.
    """
    f32 = dict(dtype=torch.float32, device=device)
    if len(rgb_images):
        cams = normalize_cameras(rgb_cameras, scale_mat)
        rK, rc2w = cams.K, cams.c2w
    else:
        rK, rc2w = np.zeros((0, 3, 3)), np.zeros((0, 4, 4))
    if len(protected_maps):
        if operator is None or protected_cameras is None:
            raise PrivheadError("Protected maps need their operator and cameras.")
        pcams = normalize_cameras(protected_cameras, scale_mat)
        pK, pc2w = pcams.K, pcams.c2w
    else:
        pK, pc2w = np.zeros((0, 3, 3)), np.zeros((0, 4, 4))
    return TrainingViews(
        rgb_images=torch.as_tensor(np.asarray(rgb_images, dtype=np.float32)).to(device),
        rgb_masks=None
        if rgb_masks is None or not len(rgb_images)
        else torch.as_tensor(np.asarray(rgb_masks, dtype=np.float32)).to(device),
        rgb_K=torch.as_tensor(rK).to(**f32),
        rgb_c2w=torch.as_tensor(rc2w).to(**f32),
        protected_maps=torch.as_tensor(np.asarray(protected_maps, dtype=np.float32)).to(device),
        protected_K=torch.as_tensor(pK).to(**f32),
        protected_c2w=torch.as_tensor(pc2w).to(**f32),
        operator=operator,
        scale_mat=np.asarray(scale_mat, dtype=np.float64),
        protected_valid=None
        if protected_valid is None or not len(protected_maps)
        else torch.as_tensor(np.asarray(protected_valid, dtype=np.float32)).to(device),
    )


def _scale_mat_or_estimate(scale_mat, cameras: Cameras, masks) -> np.ndarray:
    if scale_mat is not None:
        return np.asarray(scale_mat, dtype=np.float64)
    return estimate_normalization(cameras, masks=masks)


def views_from_bundle(bundle: PrivacyBundle, device: torch.device) -> TrainingViews:
    """Training views of a privacy bundle: neutral RGB (+ masks) and protected maps."""
    if len(bundle.neutral_images):
        scale_mat = _scale_mat_or_estimate(
            bundle.scale_mat, bundle.neutral_cameras, bundle.neutral_masks
        )
    else:
        scale_mat = _scale_mat_or_estimate(bundle.scale_mat, bundle.protected_cameras, None)
    views = make_training_views(
        bundle.neutral_images,
        bundle.neutral_masks,
        bundle.neutral_cameras,
        bundle.protected_maps,
        bundle.protected_cameras,
        bundle.operator,
        scale_mat,
        device,
        protected_valid=bundle.protected_valid,
    )
    if bundle.head_forward is not None:  # world direction -> normalised frame
        direction = np.linalg.solve(np.asarray(scale_mat)[:3, :3], bundle.head_forward)
        views.head_forward = torch.from_numpy(direction / np.linalg.norm(direction)).float()
    return views


def views_from_dataset(dataset: HeadDataset, device: torch.device) -> TrainingViews:
    """Training views of the full-RGB baseline: every view of the original dataset as RGB."""
    scale_mat = _scale_mat_or_estimate(dataset.scale_mat, dataset.cameras, dataset.masks)
    return make_training_views(
        dataset.images,
        dataset.masks,
        dataset.cameras,
        np.zeros((0, 1, 1), dtype=np.float32),
        None,
        None,
        scale_mat,
        device,
    )


@dataclass
class PyramidLevel:
    """One level of the RGB views' image pyramid (area-downsampled images and their cameras).

    Attributes:
        images: [Nr, h, w, 3]; masks: [Nr, h, w] coverage in [0, 1] (the box average of the
            binary masks) or None; K: [Nr, 3, 3] intrinsics at this level's size.
    """

    images: torch.Tensor
    masks: torch.Tensor | None
    K: torch.Tensor


def pixel_footprint(K: torch.Tensor, c2w: torch.Tensor) -> float:
    """Median over views of the side of one pixel at the normalised frame's centre (units):
    the camera's distance to the origin over its focal length."""
    distance = c2w[:, :3, 3].norm(dim=-1)
    focal = (K[:, 0, 0] * K[:, 1, 1]).abs().sqrt().clamp_min(1e-12)
    return float((distance / focal).median())


def rgb_pyramid(views: TrainingViews, base: int, min_footprint: float = 0.0) -> list[PyramidLevel]:
    """Coarse-to-fine image pyramid of the RGB views, finest last.

    Levels halve the images while their longer side stays at least ``base`` pixels, so views at
    ``base`` px or less have one level (the images) and a 256 px view with ``base = 64`` has
    64, 128 and 256 px levels. The coarse levels are exact box averages of the linear light
    (what a lower-resolution camera would have recorded: on 256 px views of the shared heads
    they equal the heads' own 64 px images to 3e-3, where averaging the sRGB values is off by
    up to 0.13 at the silhouette).
    Levels whose :func:`pixel_footprint` is below ``min_footprint`` are left out (the coarsest
    level always stays), so the finest level is the images only when their pixels are coarse
    enough.

    Args:
        views: training views with ``num_rgb > 0``.
        base: smallest longer side of a level in pixels (0: the images only).
        min_footprint: smallest pixel footprint of a level, in normalised units (0: no limit).
    """
    from privhead.privacy.operators import downsample_area

    height, width = views.rgb_images.shape[1:3]
    sizes = [(height, width)]
    while base > 0 and max(sizes[-1]) // 2 >= base:
        h, w = sizes[-1]
        sizes.append((max(h // 2, 1), max(w // 2, 1)))
    if min_footprint > 0:
        footprint = pixel_footprint(views.rgb_K, views.rgb_c2w)
        while len(sizes) > 1 and footprint * width / sizes[0][1] < min_footprint:
            sizes.pop(0)
    levels = []
    for h, w in reversed(sizes):
        if (h, w) == (height, width):
            levels.append(PyramidLevel(views.rgb_images, views.rgb_masks, views.rgb_K))
            continue
        images = downsample_area(views.rgb_images.permute(0, 3, 1, 2), (h, w), linear_light=True)
        masks = None
        if views.rgb_masks is not None:
            masks = downsample_area(views.rgb_masks[:, None], (h, w))[:, 0].clamp(0, 1)
        K = scaled_intrinsics(views.rgb_K, w / width, h / height)
        levels.append(PyramidLevel(images.permute(0, 2, 3, 1).contiguous(), masks, K))
    return levels
