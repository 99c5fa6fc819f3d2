"""The user-side pipeline: a dataset -> view decisions (rules + face detectors) -> sigma -> bundle.

:func:`protect_dataset` is the ONE protect pipeline. The CLI, the demo, the benchmarks and any
server call it, so the face detectors and the user's overrides are never on in one path and
off in another.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from privhead.errors import PrivheadError
from privhead.privacy.bundle import write_bundle
from privhead.privacy.operators import OperatorConfig
from privhead.privacy.sensitivity import (
    REASON_POSE,
    ViewDecision,
    classify_dataset,
)


@dataclass
class ProtectResult:
    """What :func:`protect_dataset` wrote and decided.

    Attributes:
        bundle: the bundle folder.
        decisions: one decision per view, in view order.
        operator: the operator sigma the protected maps were made with.
        working_size: (width, height) of the protected maps.
        detectors: names of the face detectors that ran (empty when none did).
        notes: lines for the user: detector overrides, rules that decided nothing, missing
            detectors.
        seconds: wall time.
    """

    bundle: Path
    decisions: list[ViewDecision]
    operator: OperatorConfig
    working_size: tuple[int, int]
    detectors: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def n_neutral(self) -> int:
        return sum(not d.sensitive for d in self.decisions)

    @property
    def n_protected(self) -> int:
        return len(self.decisions) - self.n_neutral


def protect_dataset(
    dataset,
    out_bundle,
    operator: OperatorConfig | None = None,
    *,
    neutral: Sequence[int] | None = None,
    sensitive: Sequence[int] | None = None,
    forward: Sequence[float] | None = None,
    threshold_deg: float | None = None,
    detector: str = "auto",
    allow_rgb_despite_face: Sequence[int] = (),
    fmt: str = "auto",
    overwrite: bool = False,
    progress: bool = False,
) -> ProtectResult:
    """Classify every view, protect the sensitive ones and write the privacy bundle atomically.

    Args:
        dataset: a dataset folder (IDR / NeuS / transforms.json) or a loaded
            :class:`privhead.data.formats.HeadDataset`.
        out_bundle: bundle folder to create.
        operator: the privacy operator sigma (default :class:`OperatorConfig`).
        neutral: the user's complete list of neutral views (every other view is protected).
        sensitive: views the user wants protected whatever the other rules say.
        forward: world direction the face looks along (pose rule).
        threshold_deg: pose rule: neutral beyond this angle to ``forward``.
        detector: face detectors that protect any view showing a face: ``auto`` (all
            installed), ``none``, or a comma list (``yunet,centerface,dlib``).
        allow_rgb_despite_face: views the user explicitly keeps as RGB although a detector
            finds a face there (the only way a detected face leaves as RGB).
        fmt: dataset format when ``dataset`` is a path: auto, idr, transforms.
        overwrite: replace an existing bundle (never a folder that is not a bundle).
        progress: progress bar while protecting.

    Returns:
        a :class:`ProtectResult`.

    Raises:
        PrivheadError: bad input (one sentence); nothing is written then.
    """
    from privhead._optional import INSTALL_HINT
    from privhead.data.formats import load_dataset
    from privhead.privacy.faces.detect import FaceCheck, load_detectors

    start = time.perf_counter()
    notes = []
    if operator is None:  # the default level, as this install can apply it
        from privhead.privacy.levels import DEFAULT_LEVEL, usable_level_operator

        operator, level_note = usable_level_operator(DEFAULT_LEVEL)
        if level_note:
            notes.append(level_note)
    out_bundle = Path(out_bundle)
    if out_bundle.exists() and not overwrite:
        raise PrivheadError(f"{out_bundle} already exists; pass --overwrite to replace it.")
    detectors = load_detectors(detector)
    allowed = list(allow_rgb_despite_face or [])
    if isinstance(dataset, str | Path):
        dataset = load_dataset(dataset, fmt)
    face_check = None
    if detectors:
        face_check = FaceCheck(dataset.images, detectors, allowed)
    elif allowed:
        raise PrivheadError("--allow-rgb-despite-face needs a face detector (--detector).")
    decisions = classify_dataset(
        dataset,
        neutral=None if neutral is None else list(neutral),
        sensitive=None if sensitive is None else list(sensitive),
        forward=None if forward is None else list(forward),
        threshold_deg=threshold_deg,
        checks=[face_check] if face_check else [],
    )
    if face_check is not None:
        decisions = face_check.mark_overrides(decisions)
    known_forward = forward if forward is not None else (dataset.views or {}).get("forward")
    write_bundle(
        dataset,
        decisions,
        operator,
        out_bundle,
        overwrite=overwrite,
        progress=progress,
        head_forward=known_forward,
    )

    if face_check is None:
        notes.append(f"note: no face detector ran ({INSTALL_HINT} adds them); rules alone decided.")
    else:
        for index, found in sorted(face_check.overridden.items()):
            notes.append(
                f"warning: view {index} is kept as RGB although a face was found ({found})."
            )
        for index in sorted(face_check.allowed - set(face_check.overridden)):
            why = (
                f"the {decisions[index].reason} rule protects it anyway (the flag only lifts the "
                "face detector)"
                if decisions[index].sensitive
                else "no face was found there"
            )
            notes.append(f"note: --allow-rgb-despite-face {index}: {why}.")
    if (forward is not None or threshold_deg is not None) and not any(
        d.reason == REASON_POSE for d in decisions
    ):
        notes.append("note: --forward / --threshold-deg decided no view (an earlier rule did).")
    return ProtectResult(
        bundle=out_bundle,
        decisions=decisions,
        operator=operator,
        working_size=operator.working_size(dataset.cameras.width, dataset.cameras.height),
        detectors=[d.name for d in detectors],
        notes=notes,
        seconds=time.perf_counter() - start,
    )
