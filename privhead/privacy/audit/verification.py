"""Face verification: detect, locate and embed the faces of an image set, per-identity galleries,
and one kind's detection rates and pose-matched genuine / impostor distances."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from privhead.privacy.audit.images import KIND_LABELS, ORIGINALS, ImageSet
from privhead.privacy.faces.detect import FaceDetection, FaceDetector, best_detection, detect_faces
from privhead.privacy.faces.recognize import FaceRecognizer, roc_auc, verification_rates


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


def summarise_kind(
    kind: str,
    image_set: ImageSet,
    records: list[FaceRecord],
    originals: ImageSet,
    subject_gallery: Gallery,
    galleries: Sequence[Gallery],
    detectors: Sequence[FaceDetector],
    recognizers: Sequence[FaceRecognizer],
) -> dict:
    """Detection rates, face location counts and verification of one kind of images (its
    :class:`AuditResult` ``kinds`` entry): genuine pairs against the subject's originals,
    impostor pairs against the other identities' galleries."""
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
