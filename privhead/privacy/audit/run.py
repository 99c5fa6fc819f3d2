"""The audit itself: :func:`run_audit` pairs one person's derived images with their originals
and impostors, then runs the attacks, verification and perceptual comparison (AuditResult)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from privhead.errors import PrivheadError
from privhead.privacy.audit.attacks import InversionConfig, inversion_sets
from privhead.privacy.audit.images import (
    DERIVED_KINDS,
    KIND_LABELS,
    ORIGINALS,
    PROTECTED,
    ImageSet,
)
from privhead.privacy.audit.perceptual import perceptual_similarity
from privhead.privacy.audit.verification import (
    FaceRecord,
    analyse_images,
    build_gallery,
    summarise_kind,
)
from privhead.privacy.faces.detect import FaceDetector
from privhead.privacy.faces.recognize import UNAVAILABLE_MODELS, FaceRecognizer
from privhead.privacy.operators import OperatorConfig


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

    Can face detection and face recognition find the person in what leaves the user (protected
    maps) and in what the reconstruction produces (renders)? Paper Tables 2 and 4. For each kind
    of image (:data:`KIND_LABELS`) it reports

    - detection: how often each detector finds a face on its own;
    - verification against the person's originals and against the impostors, for each model: the
      share of genuine pairs accepted at the model's standard threshold (the paper's
      "recognition accuracy"), false accepts, balanced accuracy, ROC-AUC and the distance
      distributions. Derived images are pixel-aligned with their original (same camera), so a
      face a detector misses is located with the original's detection, scaled to the image's
      size: the attacker is given the face position for free;
    - an inversion attack on the protected maps (:mod:`privhead.privacy.audit.attacks`), audited
      like any other kind, together with its prior alone;
    - perceptual similarity across identities of protected maps vs RGB (ST-LPIPS, SSIM, PSNR).

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
        attacked, inversion_info = inversion_sets(protected, impostors, operator_cfg, inversion)
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
        kinds[kind] = summarise_kind(
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
