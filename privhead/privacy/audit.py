"""The privacy audit: can face detection and face recognition find the person in what leaves the
user (protected maps) and in what the reconstruction produces (renders)? Paper Tables 2 and 4.

End of the data flow: it reads the originals of one person, whatever was derived from them
(protected maps, renders of the reconstruction, renders of the bare mesh, renders of a full-RGB
baseline), and photos of other people (impostors). For each kind of image it reports

- detection: how often each detector finds a face on its own;
- verification against the person's originals and against the impostors, for each available
  model: the share of genuine pairs accepted at the model's standard threshold (the paper's
  "recognition accuracy"), false accepts, balanced accuracy, ROC-AUC and the distance
  distributions. Derived images are pixel-aligned with their original (same camera), so a face
  a detector misses is located with the original's detection, scaled to the image's size: the
  attacker is given the face position for free;
- an inversion attack on the protected maps (:mod:`privhead.privacy.inversion`), audited like
  any other kind, together with its prior alone;
- perceptual similarity across identities of protected maps vs RGB (ST-LPIPS, SSIM, PSNR).

Heavy models come from the ``audit`` extra (lazy imports, PrivheadError with the install command).
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageDraw

from privhead.errors import PrivheadError
from privhead.privacy.detect import (
    FaceDetection,
    FaceDetector,
    best_detection,
    detect_faces,
    to_uint8_rgb,
)
from privhead.privacy.inversion import InversionConfig, invert_gradient_modulus
from privhead.privacy.operators import OperatorConfig, apply_operator, downsample_area
from privhead.privacy.recognition import (
    UNAVAILABLE_MODELS,
    FaceRecognizer,
    roc_auc,
    verification_rates,
)

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")

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


# --------------------------------------------------------------------------------------------
# Inputs
# --------------------------------------------------------------------------------------------


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
    from privhead.data.formats import _list_images, read_image

    folder = Path(path)
    if not folder.is_dir():
        raise PrivheadError(f"{folder} is not a folder of images.")
    files = _list_images(folder)
    if not files:
        raise PrivheadError(f"{folder} holds no .png / .jpg images.")
    images = [_to_float_rgb(read_image(f)) for f in files]
    return ImageSet(identity, [f.stem for f in files], images, str(folder))


def read_dataset_views(path, identity: str, views: str = "sensitive") -> ImageSet:
    """The photos of a dataset folder (IDR / transforms.json): its sensitive views (views.json,
    the faces an attacker wants) or all of them."""
    from privhead.data.formats import load_dataset

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
    from privhead.data.bundle import read_bundle

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
    maps = [_operator(im, operator_cfg) for im in image_set.images]
    return ImageSet(
        image_set.identity,
        list(image_set.names),
        [map_to_image(m) for m in maps],
        f"sigma({image_set.source})",
        maps,
        operator_cfg,
    )


def _operator(image: np.ndarray, cfg: OperatorConfig) -> np.ndarray:
    tensor = torch.from_numpy(np.ascontiguousarray(image, dtype=np.float32)).permute(2, 0, 1)
    return apply_operator(tensor[None], cfg)[0, 0].numpy()


def _working_rgb(image: np.ndarray, cfg: OperatorConfig) -> torch.Tensor:
    """[3, h, w] the image area-downsampled to the operator's working size."""
    tensor = torch.from_numpy(np.ascontiguousarray(image, dtype=np.float32)).permute(2, 0, 1)
    width, height = cfg.working_size(tensor.shape[-1], tensor.shape[-2])
    return downsample_area(tensor[None], (height, width))[0]


# --------------------------------------------------------------------------------------------
# Faces: detection, location, embeddings
# --------------------------------------------------------------------------------------------


@dataclass
class FaceRecord:
    """What the audit found in one image.

    Attributes:
        detected: {detector name: found at least one face}.
        located_by: "own" (a detector found it here), "original" (the pixel-aligned original's
            detection, scaled) or "" (no face position: no embedding).
        face: the detection used for recognition (this image's pixels), or None.
        embeddings: {model name: [D] embedding or None}.
    """

    detected: dict[str, bool]
    located_by: str
    face: FaceDetection | None
    embeddings: dict[str, np.ndarray | None]


def analyse_images(
    image_set: ImageSet,
    detectors: Sequence[FaceDetector],
    recognizers: Sequence[FaceRecognizer],
    fallback: dict[str, tuple[FaceDetection, tuple[int, int]]] | None = None,
) -> list[FaceRecord]:
    """Detect, locate and embed every face of a set.

    Args:
        image_set: the images.
        detectors: detectors to run on each image.
        recognizers: models that embed the located face.
        fallback: {view name: (detection, (height, width) of the image it was found in)}: where
            the face is in the pixel-aligned original, used when no detector fires here.

    Returns:
        One :class:`FaceRecord` per image.
    """
    records = []
    for name, image in zip(image_set.names, image_set.images, strict=True):
        detections = detect_faces(image, detectors)
        detected = {d.name: any(x.detector == d.name for x in detections) for d in detectors}
        face, located_by = best_detection(detections), "own"
        if face is None and fallback and name in fallback:
            original_face, (height, width) = fallback[name]
            face = original_face.scaled(image.shape[1] / width, image.shape[0] / height)
            located_by = "original"
        if face is None:
            located_by = ""
        embeddings = {
            r.name: (r.embed(image, face) if face is not None else None) for r in recognizers
        }
        records.append(FaceRecord(detected, located_by, face, embeddings))
    return records


@dataclass
class Gallery:
    """One identity's embedded faces: per model, the view names and the [N, D] embeddings of
    the images that could be embedded (N may be 0)."""

    identity: str
    names: dict[str, list[str]]
    embeddings: dict[str, np.ndarray]
    n_images: int
    n_detected: int

    def names_any(self) -> set[str]:
        """View names embedded by at least one model."""
        return {name for names in self.names.values() for name in names}

    def select(self, model: str, keep: Callable[[str], bool]) -> np.ndarray:
        """[K, D] embeddings of ``model`` whose view name passes ``keep``."""
        rows = [k for k, name in enumerate(self.names[model]) if keep(name)]
        return self.embeddings[model][rows]


def build_gallery(
    image_set: ImageSet,
    detectors: Sequence[FaceDetector],
    recognizers: Sequence[FaceRecognizer],
    records: list[FaceRecord] | None = None,
) -> Gallery:
    """Embed an identity's images (faces no detector finds are left out)."""
    records = records if records is not None else analyse_images(image_set, detectors, recognizers)
    names, embeddings = {}, {}
    for recognizer in recognizers:
        kept = [
            (name, r.embeddings[recognizer.name])
            for name, r in zip(image_set.names, records, strict=True)
            if r.embeddings[recognizer.name] is not None
        ]
        names[recognizer.name] = [name for name, _ in kept]
        embeddings[recognizer.name] = (
            np.stack([v for _, v in kept]) if kept else np.zeros((0, 1), dtype=np.float64)
        )
    n_detected = sum(r.located_by == "own" for r in records)
    return Gallery(image_set.identity, names, embeddings, len(records), n_detected)


def _distances(recognizer: FaceRecognizer, probe: np.ndarray | None, gallery: np.ndarray):
    """Distances of one probe to each gallery row; +inf for every row when there is no probe
    embedding (a face that could not be located counts as not verified)."""
    if gallery.shape[0] == 0:
        return np.zeros(0)
    if probe is None:
        return np.full(gallery.shape[0], np.inf)
    return recognizer.distances(probe, gallery)[0]


def summarise_distances(values: np.ndarray) -> dict:
    """Count, failures (inf) and quantiles of the finite distances."""
    finite = values[np.isfinite(values)]
    quantiles = (
        dict(
            zip(
                ("min", "q25", "median", "q75", "max"),
                np.quantile(finite, [0, 0.25, 0.5, 0.75, 1]).tolist(),
                strict=True,
            )
        )
        if finite.size
        else {}
    )
    return {"n": int(values.size), "n_failed": int(values.size - finite.size), **quantiles}


def _json_distances(values: np.ndarray) -> list:
    return [round(float(v), 5) if np.isfinite(v) else None for v in values]


# --------------------------------------------------------------------------------------------
# The audit
# --------------------------------------------------------------------------------------------


@dataclass
class AuditResult:
    """Everything the audit measured (:meth:`to_dict` for JSON) and the images it looked at."""

    subject: str
    detectors: list[str]
    models: list[dict]
    kinds: dict[str, dict]
    perceptual: dict | None
    inversion: dict | None
    notes: list[str] = field(default_factory=list)
    image_sets: dict[str, ImageSet] = field(default_factory=dict, repr=False)
    records: dict[str, list[FaceRecord]] = field(default_factory=dict, repr=False)

    def to_dict(self) -> dict:
        return {
            "subject": self.subject,
            "detectors": self.detectors,
            "models": self.models,
            "unavailable_models": UNAVAILABLE_MODELS,
            "kinds": self.kinds,
            "perceptual": self.perceptual,
            "inversion": self.inversion,
            "notes": self.notes,
        }


def run_audit(
    originals: ImageSet,
    derived: dict[str, ImageSet],
    impostors: Sequence[ImageSet],
    detectors: Sequence[FaceDetector],
    recognizers: Sequence[FaceRecognizer],
    operator_cfg: OperatorConfig | None = None,
    inversion: InversionConfig | None = None,
    perceptual: bool = True,
    gallery_cache: dict | None = None,
    progress: Callable[[str], None] | None = None,
) -> AuditResult:
    """Audit one person's originals and what was derived from them.

    Args:
        originals: the person's photos (faces visible), named by view.
        derived: {kind: images} for kinds in :data:`DERIVED_KINDS`; missing kinds are skipped.
            Images are paired with the originals by view name.
        impostors: other people's photos (each set one identity, never the subject's).
        detectors: face detectors (detection rates, face location).
        recognizers: verification models.
        operator_cfg: the privacy operator (default: the protected set's, else the default).
        inversion: run the inversion attack on the protected maps with these parameters; None
            to skip it.
        perceptual: compute ST-LPIPS / SSIM / PSNR across identities (paper Table 4).
        gallery_cache: optional dict reused across calls: impostor galleries by identity.
        progress: optional callback receiving one line per step.

    Returns:
        The :class:`AuditResult`.
    """
    say = progress or (lambda line: None)
    for image_set in impostors:
        if image_set.identity == originals.identity:
            raise PrivheadError(
                f"Impostor set {image_set.source} has the subject's identity "
                f"{originals.identity!r}."
            )
    unknown = sorted(set(derived) - set(DERIVED_KINDS))
    if unknown:
        raise PrivheadError(
            f"Unknown image kind {unknown[0]!r}; known: {', '.join(DERIVED_KINDS)}."
        )
    if not len(originals):
        raise PrivheadError(f"No original images in {originals.source}.")
    notes: list[str] = []
    # Only images derived from the audited originals are paired with them (a bundle also holds
    # the maps of views that a detector protected but that show no usable face).
    kept = {}
    for kind, image_set in derived.items():
        if image_set is None:
            continue
        kept[kind] = image_set.subset(originals.names)
        dropped = len(image_set) - len(kept[kind])
        if dropped:
            notes.append(f"{dropped} {kind} image(s) match no original's view name: left out.")
    derived = kept
    protected = derived.get(PROTECTED)
    if operator_cfg is None:
        operator_cfg = (protected.operator if protected is not None else None) or OperatorConfig()

    image_sets: dict[str, ImageSet] = {ORIGINALS: originals}
    image_sets.update({k: v for k, v in derived.items() if v is not None and len(v)})
    inversion_info = None
    if inversion is not None and protected is not None and protected.maps is not None:
        say("inversion attack on the protected maps")
        attacked, inversion_info = _inversion_sets(protected, impostors, operator_cfg, inversion)
        image_sets.update(attacked)
        if protected.maps_scaled:
            notes.append(
                "The protected maps were read from image files without their absolute scale: the "
                "inversion fitted a gain per map."
            )

    say(f"faces in {len(originals)} originals")
    original_records = analyse_images(originals, detectors, recognizers)
    fallback = {
        name: (record.face, originals.images[i].shape[:2])
        for i, (name, record) in enumerate(zip(originals.names, original_records, strict=True))
        if record.located_by == "own"
    }
    subject_gallery = build_gallery(originals, detectors, recognizers, original_records)

    cache = gallery_cache if gallery_cache is not None else {}
    galleries = []
    for image_set in impostors:
        key = (image_set.identity, image_set.source, len(image_set))
        if key not in cache:
            say(f"impostor gallery {image_set.identity} ({len(image_set)} images)")
            cache[key] = build_gallery(image_set, detectors, recognizers)
        galleries.append(cache[key])

    records: dict[str, list[FaceRecord]] = {ORIGINALS: original_records}
    kinds: dict[str, dict] = {}
    for kind in KIND_LABELS:
        if kind not in image_sets:
            continue
        image_set = image_sets[kind]
        if kind != ORIGINALS:
            say(f"faces in {len(image_set)} {kind}")
            records[kind] = analyse_images(image_set, detectors, recognizers, fallback)
        kinds[kind] = _kind_summary(
            kind,
            image_set,
            records[kind],
            originals,
            subject_gallery,
            galleries,
            detectors,
            recognizers,
        )

    perceptual_result = None
    if perceptual:
        say("perceptual similarity across identities")
        perceptual_result = perceptual_similarity(originals, impostors, operator_cfg, notes)

    models = [
        {"name": r.name, "metric": r.metric, "threshold": r.threshold, "source": r.source}
        for r in recognizers
    ]
    return AuditResult(
        subject=originals.identity,
        detectors=[d.name for d in detectors],
        models=models,
        kinds=kinds,
        perceptual=perceptual_result,
        inversion=inversion_info,
        notes=notes,
        image_sets=image_sets,
        records=records,
    )


def _kind_summary(
    kind: str,
    image_set: ImageSet,
    records: list[FaceRecord],
    originals: ImageSet,
    subject_gallery: Gallery,
    galleries: Sequence[Gallery],
    detectors: Sequence[FaceDetector],
    recognizers: Sequence[FaceRecognizer],
) -> dict:
    n = len(records)
    detection = {
        d.name: float(np.mean([r.detected[d.name] for r in records])) if n else float("nan")
        for d in detectors
    }
    detection["any"] = (
        float(np.mean([any(r.detected.values()) for r in records])) if n and detectors else 0.0
    )
    located = {
        "own": sum(r.located_by == "own" for r in records),
        "original": sum(r.located_by == "original" for r in records),
        "none": sum(r.located_by == "" for r in records),
    }
    # Pairs are pose-matched: a probe of view i is compared with the subject's originals of the
    # views V (every audited view, minus i itself when the probe is an original) and with the
    # same-rig impostors' photos of the same views V, so pose and lighting are alike on both
    # sides. Impostor sets sharing no view name (e.g. lfw faces) give a separate false-accept
    # rate, or the impostor pairs when there is no same-rig impostor.
    subject_views = set(originals.names)
    same_rig = [g for g in galleries if subject_views & set(g.names_any())]
    other = [g for g in galleries if all(g is not s for s in same_rig)]
    verification = {}
    for recognizer in recognizers:
        model = recognizer.name
        genuine, impostor, other_impostor = [], [], []
        for name, record in zip(image_set.names, records, strict=True):
            probe = record.embeddings[model]
            skip = name if kind == ORIGINALS else None

            def keep(view: str, skip=skip) -> bool:
                return view in subject_views and view != skip

            genuine.append(_distances(recognizer, probe, subject_gallery.select(model, keep)))
            for gallery in same_rig:
                impostor.append(_distances(recognizer, probe, gallery.select(model, keep)))
            for gallery in other:
                other_impostor.append(
                    _distances(recognizer, probe, gallery.select(model, lambda v: True))
                )
        genuine = np.concatenate(genuine) if genuine else np.zeros(0)
        impostor = np.concatenate(impostor) if impostor else np.zeros(0)
        other_impostor = np.concatenate(other_impostor) if other_impostor else np.zeros(0)
        impostor_kind = "same-rig identities, pose-matched"
        if not same_rig:
            impostor, other_impostor = other_impostor, np.zeros(0)
            impostor_kind = "other photos"
        rates = verification_rates(genuine, impostor, recognizer.threshold)
        other_rates = verification_rates([], other_impostor, recognizer.threshold)
        verification[model] = {
            **rates,
            "auc": roc_auc(genuine, impostor),
            "impostors": impostor_kind,
            "false_accept_other": other_rates["false_accept"],
            "n_embedded": sum(r.embeddings[model] is not None for r in records),
            "genuine": summarise_distances(genuine),
            "impostor": summarise_distances(impostor),
            "genuine_distances": _json_distances(genuine),
            "impostor_distances": _json_distances(impostor),
        }
    return {
        "label": KIND_LABELS[kind],
        "source": image_set.source,
        "n_images": n,
        "detection": detection,
        "located": located,
        "verification": verification,
    }


def _inversion_sets(
    protected: ImageSet,
    impostors: Sequence[ImageSet],
    operator_cfg: OperatorConfig,
    cfg: InversionConfig,
) -> tuple[dict[str, ImageSet], dict]:
    """Run the inversion from a grey start and, where impostors show the same views, from the
    template (mean of the impostors' photos of that view at the map's size)."""
    from dataclasses import replace

    maps = protected.maps
    out: dict[str, ImageSet] = {}
    info = {
        "config": cfg.__dict__.copy(),
        "operator": operator_cfg.to_dict(),
        "template_identities": [],
        "map_error": {},
    }
    cfg = replace(cfg, fit_gain=cfg.fit_gain or protected.maps_scaled)
    groups: dict[tuple, list[int]] = {}
    for i, m in enumerate(maps):
        groups.setdefault(m.shape, []).append(i)
    templates: list[np.ndarray | None] = []
    contributors: set[str] = set()
    for name, m in zip(protected.names, maps, strict=True):
        views = [s.images[s.names.index(name)] for s in impostors if name in s.names]
        contributors.update(s.identity for s in impostors if name in s.names)
        if views:
            resized = [
                downsample_area(
                    torch.from_numpy(np.ascontiguousarray(v, dtype=np.float32)).permute(2, 0, 1)[
                        None
                    ],
                    m.shape,
                )[0]
                for v in views
            ]
            templates.append(torch.stack(resized).mean(0).numpy())
        else:
            templates.append(None)
    info["template_identities"] = sorted(contributors)
    runs = {INVERSION_GREY: [None] * len(maps)}
    if all(t is not None for t in templates):
        runs[INVERSION_TEMPLATE] = templates
    for kind, priors in runs.items():
        recovered: list[np.ndarray] = [None] * len(maps)  # type: ignore[list-item]
        errors = []
        for _shape, indices in groups.items():
            batch = torch.from_numpy(np.stack([maps[i] for i in indices]))[:, None].float()
            prior = None
            if priors[indices[0]] is not None:
                prior = torch.from_numpy(np.stack([priors[i] for i in indices])).float()
            images = invert_gradient_modulus(batch, operator_cfg, prior, cfg)
            check = apply_operator(images, operator_cfg)
            scale = batch.flatten(1).max(1).values.clamp_min(1e-12)
            errors.extend(((check - batch).abs().flatten(1).mean(1) / scale).tolist())
            for k, i in enumerate(indices):
                recovered[i] = images[k].permute(1, 2, 0).numpy()
        out[kind] = ImageSet(
            protected.identity, list(protected.names), recovered, f"{kind}({protected.source})"
        )
        info["map_error"][kind] = float(np.mean(errors))
    if INVERSION_TEMPLATE in runs:
        out[TEMPLATE_ONLY] = ImageSet(
            protected.identity,
            list(protected.names),
            [t.transpose(1, 2, 0) for t in templates],
            "mean of the impostors' photos of the same view",
        )
    return out, info


# --------------------------------------------------------------------------------------------
# Perceptual similarity (paper Table 4)
# --------------------------------------------------------------------------------------------


def perceptual_similarity(
    originals: ImageSet,
    impostors: Sequence[ImageSet],
    operator_cfg: OperatorConfig,
    notes: list[str] | None = None,
) -> dict | None:
    """ST-LPIPS, SSIM and PSNR between the subject and each impostor, view by view, for the
    protected maps and for the RGB photos at the same working resolution.

    Maps are shown to the metrics as grey images divided by one common scale (the 99th
    percentile of all maps compared), so their relative contrast is kept.

    Returns:
        {"protected": stats, "rgb": stats, "n_pairs": N, "pairs": [...]}, or None when no
        impostor shares a view name with the subject.
    """
    from privhead.privacy.perceptual import STLPIPS, psnr, ssim

    pairs = []
    for impostor in impostors:
        for name in originals.names:
            if name in impostor.names:
                pairs.append((name, impostor))
    if not pairs:
        return None
    try:
        metric = STLPIPS.from_package()
    except PrivheadError as exc:
        metric = None
        if notes is not None:
            notes.append(f"ST-LPIPS skipped: {exc}")
    rgb_a, rgb_b, maps_a, maps_b, labels = [], [], [], [], []
    for name, impostor in pairs:
        a = originals.images[originals.names.index(name)]
        b = impostor.images[impostor.names.index(name)]
        work_a, work_b = _working_rgb(a, operator_cfg), _working_rgb(b, operator_cfg)
        if work_a.shape != work_b.shape:
            continue
        rgb_a.append(work_a)
        rgb_b.append(work_b)
        maps_a.append(apply_operator(work_a[None], operator_cfg)[0])
        maps_b.append(apply_operator(work_b[None], operator_cfg)[0])
        labels.append({"view": name, "impostor": impostor.identity})
    if not labels:
        return None
    all_maps = torch.cat([torch.stack(maps_a), torch.stack(maps_b)])
    scale = float(torch.quantile(all_maps.flatten(), 0.99).clamp_min(1e-12))
    grey_a = (torch.stack(maps_a) / scale).clamp(0, 1).repeat(1, 3, 1, 1)
    grey_b = (torch.stack(maps_b) / scale).clamp(0, 1).repeat(1, 3, 1, 1)
    rgb_a_t, rgb_b_t = torch.stack(rgb_a), torch.stack(rgb_b)
    result: dict = {"n_pairs": len(labels), "map_scale": scale, "metric_notes": []}
    for key, (x, y) in {"protected": (grey_a, grey_b), "rgb": (rgb_a_t, rgb_b_t)}.items():
        stats = {}
        if metric is not None and min(x.shape[-2:]) >= 32:
            stats["st_lpips"] = _mean_std(metric(x, y).numpy())
        x_np, y_np = x.permute(0, 2, 3, 1).numpy(), y.permute(0, 2, 3, 1).numpy()
        stats["ssim"] = _mean_std([ssim(p, q) for p, q in zip(x_np, y_np, strict=True)])
        stats["psnr"] = _mean_std([psnr(p, q) for p, q in zip(x_np, y_np, strict=True)])
        result[key] = stats
    result["pairs"] = labels
    return result


def _mean_std(values) -> dict:
    """Mean, standard deviation and count of the finite values, and the values themselves."""
    values = np.asarray(values, dtype=np.float64)
    finite = values[np.isfinite(values)]
    return {
        "mean": float(finite.mean()) if finite.size else float("nan"),
        "std": float(finite.std()) if finite.size else float("nan"),
        "n": int(finite.size),
        "values": [float(v) for v in values],
    }


# --------------------------------------------------------------------------------------------
# Report
# --------------------------------------------------------------------------------------------


def _percent(value) -> str:
    return "n/a" if value is None or not math.isfinite(value) else f"{100 * value:.1f}"


def _number(value, digits: int = 3) -> str:
    return "n/a" if value is None or not math.isfinite(value) else f"{value:.{digits}f}"


def verification_table(kinds: dict[str, dict], models: Sequence[str], key: str = "verified") -> str:
    """Markdown table: one row per model (+ the paper's unavailable ones), one column per kind."""
    present = [k for k in KIND_LABELS if k in kinds]
    header = "| Model | " + " | ".join(kinds[k]["label"] for k in present) + " |"
    lines = [header, "|---|" + "---|" * len(present)]
    for model in models:
        cells = []
        for k in present:
            entry = kinds[k]["verification"].get(model)
            value = None if entry is None else entry.get(key)
            cells.append(_number(value) if key == "auc" else _percent(value))
        lines.append(f"| {model} | " + " | ".join(cells) + " |")
    for model in UNAVAILABLE_MODELS:
        lines.append(f"| {model} | " + " | ".join("unavailable" for _ in present) + " |")
    return "\n".join(lines)


def detection_table(kinds: dict[str, dict], detectors: Sequence[str]) -> str:
    """Markdown table: detection rate (%) per kind (rows) and detector (columns)."""
    columns = [*detectors, "any"]
    lines = [
        "| Images | n | " + " | ".join(columns) + " | located by own detection / original's box |",
        "|---|---|" + "---|" * (len(columns) + 1),
    ]
    for kind in KIND_LABELS:
        if kind not in kinds:
            continue
        entry = kinds[kind]
        rates = " | ".join(_percent(entry["detection"].get(c)) for c in columns)
        located = entry["located"]
        lines.append(
            f"| {entry['label']} | {entry['n_images']} | {rates} | "
            f"{located['own']} / {located['original']} |"
        )
    return "\n".join(lines)


def distance_table(kinds: dict[str, dict], models: Sequence[str]) -> str:
    """Markdown table of genuine and impostor distance quartiles per kind and model."""
    lines = [
        "| Images | Model | genuine n (failed) | genuine q25 / median / q75 "
        "| impostor n (failed) | impostor q25 / median / q75 |",
        "|---|---|---|---|---|---|",
    ]
    for kind in KIND_LABELS:
        if kind not in kinds:
            continue
        for model in models:
            entry = kinds[kind]["verification"].get(model)
            if entry is None:
                continue
            parts = []
            for side in ("genuine", "impostor"):
                s = entry[side]
                parts.append(f"{s['n']} ({s['n_failed']})")
                parts.append(
                    " / ".join(_number(s.get(q)) for q in ("q25", "median", "q75"))
                    if "median" in s
                    else "n/a"
                )
            lines.append(f"| {kinds[kind]['label']} | {model} | " + " | ".join(parts) + " |")
    return "\n".join(lines)


def perceptual_table(perceptual: dict | None) -> str:
    """Markdown table of ST-LPIPS / SSIM / PSNR across identities (paper Table 4)."""
    if not perceptual:
        return "No impostor shares a view with the subject: no perceptual comparison."
    lines = [
        "| Across identities, same view | ST-LPIPS (lower = more alike) | SSIM | PSNR (dB) |",
        "|---|---|---|---|",
    ]
    for key, label in (("protected", "Protected maps"), ("rgb", "RGB photos")):
        stats = perceptual[key]
        cells = []
        for metric in ("st_lpips", "ssim", "psnr"):
            s = stats.get(metric)
            cells.append(f"{_number(s['mean'])} ± {_number(s['std'])}" if s else "n/a")
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def save_kind_grid(result: AuditResult, path, max_views: int = 8, tile: int = 128) -> Path:
    """A PNG grid: one row per kind, one column per view (first ``max_views`` views); the face
    box used for recognition is drawn green (own detection) or orange (original's box)."""
    names = result.image_sets[ORIGINALS].names[:max_views]
    rows = [k for k in KIND_LABELS if k in result.image_sets]
    label_w = 200
    canvas = Image.new("RGB", (label_w + tile * len(names), tile * len(rows)), (255, 255, 255))
    draw = ImageDraw.Draw(canvas)
    for r, kind in enumerate(rows):
        draw.text((4, r * tile + tile // 2 - 6), KIND_LABELS[kind][:32], fill=(0, 0, 0))
        image_set = result.image_sets[kind]
        records = result.records.get(kind, [])
        for c, name in enumerate(names):
            if name not in image_set.names:
                continue
            i = image_set.names.index(name)
            image = image_set.images[i]
            height, width = image.shape[:2]
            factor = tile / max(height, width)
            size = (max(1, round(width * factor)), max(1, round(height * factor)))
            tile_image = Image.fromarray(to_uint8_rgb(image)).resize(size, Image.NEAREST)
            tile_draw = ImageDraw.Draw(tile_image)
            if i < len(records) and records[i].face is not None:
                x0, y0, x1, y1 = (v * factor for v in records[i].face.box)
                colour = (0, 220, 0) if records[i].located_by == "own" else (255, 150, 0)
                tile_draw.rectangle([x0, y0, x1, y1], outline=colour)
            canvas.paste(tile_image, (label_w + c * tile, r * tile))
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    canvas.save(path)
    return path


def report_markdown(result: AuditResult, grid_name: str | None = None) -> str:
    """The audit as a markdown page (tables and the image grid)."""
    models = [m["name"] for m in result.models]
    lines = [
        f"# Privacy audit: {result.subject}",
        "",
        f"Detectors: {', '.join(result.detectors) or 'none'}. Models: "
        + ", ".join(
            f"{m['name']} ({m['metric']} distance <= {m['threshold']:.3f})" for m in result.models
        )
        + ".",
        "",
        "## Face verification: genuine pairs accepted at the model's threshold (%)",
        "",
        "The paper's Table 2 metric: a derived image against the person's originals.",
        "",
        verification_table(result.kinds, models, "verified"),
        "",
        "## False accepts on impostor pairs (%)",
        "",
        "Impostor pairs are pose-matched (other identities photographed from the same views); "
        "the second table is against photos from elsewhere (e.g. lfw faces), when given.",
        "",
        verification_table(result.kinds, models, "false_accept"),
        "",
        verification_table(result.kinds, models, "false_accept_other"),
        "",
        "## Balanced accuracy (%) and ROC-AUC",
        "",
        verification_table(result.kinds, models, "accuracy"),
        "",
        verification_table(result.kinds, models, "auc"),
        "",
        "## Face detection rate (%)",
        "",
        detection_table(result.kinds, result.detectors),
        "",
        "## Distance distributions",
        "",
        distance_table(result.kinds, models),
        "",
        "## Perceptual similarity across identities (paper Table 4)",
        "",
        perceptual_table(result.perceptual),
        "",
    ]
    if grid_name:
        lines += ["## Images", "", f"![kinds]({grid_name})", ""]
    if result.notes:
        lines += ["## Notes", ""] + [f"- {n}" for n in result.notes] + [""]
    return "\n".join(lines)


def write_report(result: AuditResult, out_dir) -> dict[str, Path]:
    """Write ``audit.json``, ``report.md`` and ``kinds.png`` into ``out_dir``."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    grid = save_kind_grid(result, out / "kinds.png")
    json_path = out / "audit.json"
    json_path.write_text(json.dumps(clean_for_json(result.to_dict()), indent=1) + "\n")
    md_path = out / "report.md"
    md_path.write_text(report_markdown(result, grid.name))
    return {"json": json_path, "report": md_path, "grid": grid}


def clean_for_json(value):
    """Plain JSON values: numpy scalars and arrays converted, NaN and infinities as null."""
    if isinstance(value, dict):
        return {str(k): clean_for_json(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [clean_for_json(v) for v in value]
    if isinstance(value, np.ndarray):
        return clean_for_json(value.tolist())
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value
