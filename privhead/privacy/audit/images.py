"""The audit's inputs: an :class:`ImageSet` (one identity's images, named by view), the kinds of
image it knows, and readers for image folders, dataset views, bundle maps and lfw impostors."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from privhead.data.formats import list_images, load_dataset, read_image
from privhead.errors import PrivheadError
from privhead.privacy.faces.detect import to_uint8_rgb
from privhead.privacy.operators import OperatorConfig, protect_image

ORIGINALS = "originals"
PROTECTED = "protected"
INVERSION_TEMPLATE = "inversion_template"
INVERSION_GREY = "inversion_grey"
TEMPLATE_ONLY = "template_only"
RENDERS = "renders"
MESH_RENDERS = "mesh_renders"
BASELINE_RENDERS = "baseline_renders"
GT_MESH_RENDERS = "gt_mesh_renders"

KIND_LABELS = {
    ORIGINALS: "Original",
    PROTECTED: "Protected",
    INVERSION_TEMPLATE: "Inversion attack (template start)",
    INVERSION_GREY: "Inversion attack (grey start)",
    TEMPLATE_ONLY: "Attack template alone (no map)",
    MESH_RENDERS: "Rendered mesh",
    GT_MESH_RENDERS: "GT-mesh render (stand-in, not a reconstruction)",
    RENDERS: "Our rendering",
    BASELINE_RENDERS: "Full-RGB baseline rendering",
}
"""Every kind of image the audit knows, in report order."""

DERIVED_KINDS = (PROTECTED, RENDERS, MESH_RENDERS, BASELINE_RENDERS, GT_MESH_RENDERS)
"""Kinds a caller may supply (the inversion kinds are made by the audit)."""


@dataclass
class ImageSet:
    """Images of one identity, each named by its view (to pair derived images with originals).

    Attributes:
        identity: who is shown (impostor sets must differ from the subject's).
        names: view names (file stems), one per image.
        images: [H, W, 3] float32 RGB in [0, 1] each (protected maps: the map / its maximum,
            grey in all three channels).
        source: where they were read from.
        maps: for protected sets, the raw maps [h, w] (values of Eq. 6), else None.
        operator: the operator that made the maps, when known (a bundle records it).
        maps_scaled: True when ``maps`` lost their absolute scale (read from PNGs).
    """

    identity: str
    names: list[str]
    images: list[np.ndarray]
    source: str = ""
    maps: list[np.ndarray] | None = None
    operator: OperatorConfig | None = None
    maps_scaled: bool = False

    def __len__(self) -> int:
        return len(self.images)

    def subset(self, names: Sequence[str]) -> ImageSet:
        """The images named in ``names``, in that order (names not in the set are skipped)."""
        index = {n: i for i, n in enumerate(self.names)}
        keep = [index[n] for n in names if n in index]
        return ImageSet(
            self.identity,
            [self.names[i] for i in keep],
            [self.images[i] for i in keep],
            self.source,
            None if self.maps is None else [self.maps[i] for i in keep],
            self.operator,
            self.maps_scaled,
        )


def _to_float_rgb(array: np.ndarray) -> np.ndarray:
    return to_uint8_rgb(array).astype(np.float32) / 255.0


def map_to_image(gradient_map: np.ndarray) -> np.ndarray:
    """A protected map as a viewable image: [h, w, 3] float32 in [0, 1], map / its maximum."""
    gradient_map = np.asarray(gradient_map, dtype=np.float32)
    peak = float(gradient_map.max()) if gradient_map.size else 0.0
    grey = gradient_map / peak if peak > 0 else np.zeros_like(gradient_map)
    return np.repeat(np.clip(grey, 0.0, 1.0)[..., None], 3, axis=2)


def read_image_folder(path, identity: str) -> ImageSet:
    """Every PNG / JPEG in a folder (natural order), named by file stem."""
    folder = Path(path)
    if not folder.is_dir():
        raise PrivheadError(f"{folder} is not a folder of images.")
    files = list_images(folder)
    if not files:
        raise PrivheadError(f"{folder} holds no .png / .jpg images.")
    images = [_to_float_rgb(read_image(f)) for f in files]
    return ImageSet(identity, [f.stem for f in files], images, str(folder))


def read_dataset_views(path, identity: str, views: str = "sensitive") -> ImageSet:
    """The photos of a dataset folder (IDR / transforms.json): its sensitive views (views.json,
    the faces an attacker wants) or all of them."""
    dataset = load_dataset(path)
    indices = list(range(len(dataset)))
    if views == "sensitive":
        meta = dataset.views or {}
        listed = meta.get("sensitive_indices")
        if isinstance(listed, list) and listed:
            indices = [int(i) for i in listed]
    elif views != "all":
        raise PrivheadError(f"views must be 'sensitive' or 'all', got {views!r}.")
    return ImageSet(
        identity,
        [dataset.names[i] for i in indices],
        [_to_float_rgb(dataset.images[i]) for i in indices],
        str(path),
    )


def read_bundle_protected(path, identity: str) -> ImageSet:
    """The protected maps of a privacy bundle (exact values and the operator that made them)."""
    from privhead.privacy.bundle import read_bundle

    bundle = read_bundle(path)
    names = [bundle.names[i] for i in bundle.protected_indices]
    maps = [np.asarray(m, dtype=np.float32) for m in bundle.protected_maps]
    return ImageSet(
        identity, names, [map_to_image(m) for m in maps], str(path), maps, bundle.operator
    )


def read_image_set(path, identity: str, kind: str, views: str = "sensitive") -> ImageSet:
    """Read one kind of images from a bundle, a dataset folder or a folder of images.

    A bundle (``manifest.json``) supplies its protected maps; a dataset folder (``image/`` +
    cameras) its ``views`` photos; any other folder all its PNG / JPEG files. Protected maps
    read from image files keep only their relative values (``maps_scaled``).
    """
    root = Path(path)
    if not root.exists():
        raise PrivheadError(f"{root} does not exist.")
    if (root / "manifest.json").is_file():
        if kind != PROTECTED:
            raise PrivheadError(f"{root} is a privacy bundle: give it as the protected maps.")
        return read_bundle_protected(root, identity)
    if (root / "image").is_dir() or (root / "transforms.json").is_file():
        image_set = read_dataset_views(root, identity, views)
    else:
        image_set = read_image_folder(root, identity)
    if kind == PROTECTED:
        maps = [im.mean(axis=2) for im in image_set.images]
        image_set.maps, image_set.maps_scaled = maps, True
        image_set.images = [map_to_image(m) for m in maps]
    return image_set


def lfw_impostors(count: int = 100) -> ImageSet:
    """The faces of scikit-image's ``lfw_subset`` (25x25 grey crops of Labeled Faces in the
    Wild) as one impostor set: none of them is the subject."""
    from skimage.data import lfw_subset

    count = int(count)
    if not 0 < count <= 100:
        raise PrivheadError(f"lfw_subset has 100 faces; asked for {count}.")
    faces = lfw_subset()[:count]
    return ImageSet(
        "lfw_subset",
        [f"lfw_{i:03d}" for i in range(count)],
        [_to_float_rgb(f) for f in faces],
        "skimage.data.lfw_subset",
    )


def protect_image_set(image_set: ImageSet, operator_cfg: OperatorConfig) -> ImageSet:
    """Apply the privacy operator to every image of a set (the protected maps of its views)."""
    maps = [protect_image(im, operator_cfg) for im in image_set.images]
    return ImageSet(
        image_set.identity,
        list(image_set.names),
        [map_to_image(m) for m in maps],
        f"sigma({image_set.source})",
        maps,
        operator_cfg,
    )
