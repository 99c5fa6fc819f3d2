"""Which views are privacy-neutral (no face visible) and which are sensitive (face visible).

Second step of the data flow, on the user side: every view gets a :class:`ViewDecision` that says
which rule decided it. Rules, first match wins: the user's explicit lists, the dataset's
``views.json``, the camera's angle to the head's facing direction; a view no rule marks neutral
is sensitive (the safe default). Extra checks (e.g. a face detector) may then only make a view
*more* protected (neutral -> sensitive), never less.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from privhead.data.cameras import Cameras, check_similarity, optical_axes_center
from privhead.errors import PrivheadError

NEUTRAL = "neutral"
SENSITIVE = "sensitive"
KINDS = (NEUTRAL, SENSITIVE)

REASON_USER = "user"
"""Decided by the user's explicit neutral / sensitive lists."""
REASON_VIEWS_JSON = "views.json"
"""Decided by the dataset's ``views.json`` (``neutral_indices`` / ``sensitive_indices``)."""
REASON_POSE = "pose"
"""Decided by the angle between (camera centre - head centre) and the head's forward direction."""
REASON_DEFAULT = "default"
"""No rule marked the view neutral, so it is sensitive."""

DEFAULT_THRESHOLD_DEG = 110.0
"""A view is neutral when its camera is more than this many degrees away from the face's
forward direction, seen from the head centre (the rule of the shared data's views.json)."""

ViewCheck = Callable[[int], "str | None"]
"""An extra check run on each neutral view: given the view index, it returns a short reason when
the view must be protected after all (e.g. "face detected, score 0.93"), else None. Give it a
``name`` attribute to name the rule (default: the function's name)."""


@dataclass(frozen=True)
class ViewDecision:
    """How one view is treated and why.

    Attributes:
        index: view index in the dataset.
        kind: "neutral" (sent as RGB) or "sensitive" (only its gradient modulus is sent).
        reason: the rule that decided: "user", "views.json", "pose", "default", or an extra
            check's name.
        detail: one human-readable phrase (e.g. "angle to forward 141.4 deg > 110.0 deg").
    """

    index: int
    kind: str
    reason: str
    detail: str = ""

    @property
    def sensitive(self) -> bool:
        return self.kind == SENSITIVE


def classify_views(
    n_views: int,
    cameras: Cameras | None = None,
    *,
    neutral: Sequence[int] | None = None,
    sensitive: Sequence[int] | None = None,
    views_meta: dict | None = None,
    names: Sequence[str] | None = None,
    forward: Sequence[float] | None = None,
    center: Sequence[float] | None = None,
    scale_mat: np.ndarray | None = None,
    threshold_deg: float | None = None,
    checks: Sequence[ViewCheck] = (),
) -> list[ViewDecision]:
    """Decide for each view whether it is neutral or sensitive.

    Rules, first match wins:

    1. User lists. A view in ``sensitive`` is sensitive. When ``neutral`` is given it is the
       complete list of neutral views: those views are neutral and every other view is sensitive
       (later rules cannot add neutral views the user did not list).
    2. ``views_meta`` (parsed ``views.json``): ``neutral_indices`` / ``sensitive_indices`` (or
       per-view ``sensitive`` flags).
    3. Pose, when a forward direction is known (``forward``, else ``views_meta["forward"]``) and
       cameras are given: neutral when the angle between (camera centre - head centre) and
       forward exceeds ``threshold_deg`` (else ``views_meta["sensitive_threshold_deg"]``, else
       110 deg), otherwise sensitive. Head centre: ``center``, else the centre of
       ``scale_mat``, else the point closest to all optical axes.
    4. Default: sensitive.

    Then each of ``checks`` may turn neutral views sensitive (see :func:`apply_checks`).

    Args:
        n_views: number of views.
        cameras: the views' cameras (world frame), needed by the pose rule.
        neutral, sensitive: the user's explicit view indices.
        views_meta: parsed ``views.json`` of the dataset.
        names: view names (file stems) to check against ``views_meta``'s per-view ``file``.
        forward: [3] world direction the face looks along.
        center: [3] world head centre.
        scale_mat: [4, 4] normalised -> world similarity (its centre is the head centre).
        threshold_deg: pose-rule threshold in degrees.
        checks: extra checks that can only make views more protected.

    Returns:
        One decision per view, in view order.
    """
    user_neutral = _check_indices(neutral, n_views, "the user's neutral list")
    user_sensitive = _check_indices(sensitive, n_views, "the user's sensitive list")
    both = sorted(set(user_neutral) & set(user_sensitive))
    if both:
        raise PrivheadError(
            f"View {both[0]} is in both the user's neutral and sensitive lists; give it once."
        )
    meta_kinds = _views_meta_kinds(views_meta, n_views, names) if views_meta is not None else {}
    forward, threshold_deg = _pose_parameters(views_meta, forward, threshold_deg)

    decisions: list[ViewDecision | None] = []
    for i in range(n_views):
        if i in user_sensitive:
            decision = ViewDecision(i, SENSITIVE, REASON_USER, "in the user's sensitive list")
        elif i in user_neutral:
            decision = ViewDecision(i, NEUTRAL, REASON_USER, "in the user's neutral list")
        elif neutral is not None:
            decision = ViewDecision(i, SENSITIVE, REASON_USER, "not in the user's neutral list")
        elif i in meta_kinds:
            kind = meta_kinds[i]
            decision = ViewDecision(i, kind, REASON_VIEWS_JSON, f"views.json lists it as {kind}")
        else:
            decision = None
        decisions.append(decision)
    if any(d is None for d in decisions):
        # The pose rule is only built (and its inputs checked) when some view needs it.
        pose = _pose_rule(n_views, cameras, forward, threshold_deg, center, scale_mat)
        for i, decision in enumerate(decisions):
            if decision is None:
                decisions[i] = (
                    pose(i)
                    if pose is not None
                    else ViewDecision(i, SENSITIVE, REASON_DEFAULT, "no rule marks it neutral")
                )
    return apply_checks(decisions, checks)


def classify_dataset(dataset, **rules) -> list[ViewDecision]:
    """:func:`classify_views` for a :class:`privhead.data.formats.HeadDataset`.

    The dataset supplies ``cameras``, ``views_meta`` (its views.json), ``names`` and
    ``scale_mat``; ``rules`` are the remaining keyword arguments of :func:`classify_views`
    (``neutral``, ``sensitive``, ``forward``, ``center``, ``threshold_deg``, ``checks``).
    """
    return classify_views(
        len(dataset.images),
        dataset.cameras,
        views_meta=dataset.views,
        names=dataset.names,
        scale_mat=dataset.scale_mat,
        **rules,
    )


def apply_checks(decisions: Sequence[ViewDecision], checks: Sequence[ViewCheck]) -> list:
    """Run extra checks on the neutral views; a check can only turn a view sensitive.

    Args:
        decisions: current decisions.
        checks: callables ``check(index) -> reason or None``.

    Returns:
        New decisions: a neutral view flagged by a check becomes sensitive with
        ``reason`` = the check's name and ``detail`` = what it returned.
    """
    out = list(decisions)
    for check in checks:
        name = getattr(check, "name", None) or getattr(check, "__name__", "check")
        for k, decision in enumerate(out):
            if decision.kind != NEUTRAL:
                continue
            flagged = check(decision.index)
            if flagged:
                out[k] = replace(decision, kind=SENSITIVE, reason=str(name), detail=str(flagged))
    return out


def describe_decisions(decisions: Sequence[ViewDecision]) -> list[str]:
    """Human-readable summary lines: per kind, how many views and which rule decided them.

    Example: ``"neutral: 10 views (views.json: 4, 5, 6, 13, 14, 15, 16, 24, 25, 26)"``.
    """
    lines = []
    for kind in KINDS:
        chosen = [d for d in decisions if d.kind == kind]
        by_reason: dict[str, list[int]] = {}
        for d in chosen:
            by_reason.setdefault(d.reason, []).append(d.index)
        parts = "; ".join(
            f"{reason}: {', '.join(map(str, indices))}" for reason, indices in by_reason.items()
        )
        lines.append(f"{kind}: {len(chosen)} views" + (f" ({parts})" if parts else ""))
    return lines


def parse_indices(text: str | None, what: str = "view list") -> list[int] | None:
    """Parse a user's index list such as ``"3,4,5"`` or ``"4-6,13"`` (ranges inclusive).

    Returns None for None; raises PrivheadError naming ``what`` on malformed text.
    """
    if text is None:
        return None
    indices: list[int] = []
    for part in str(text).replace(" ", "").split(","):
        if not part:
            continue
        match = re.fullmatch(r"(\d+)(?:-(\d+))?", part)
        if match is None:
            raise PrivheadError(
                f"The {what} {text!r} is not a comma-separated list of view indices "
                "(e.g. 3,4,5 or 4-6)."
            )
        first = int(match.group(1))
        last = first if match.group(2) is None else int(match.group(2))
        indices.extend(range(first, last + 1))
    return indices


def parse_vector(text: str | None, what: str = "vector") -> list[float] | None:
    """Parse ``"x,y,z"`` into three floats (None for None); raises PrivheadError otherwise."""
    if text is None:
        return None
    try:
        values = [float(v) for v in str(text).split(",")]
    except ValueError:
        values = []
    if len(values) != 3 or not all(math.isfinite(v) for v in values):
        raise PrivheadError(f"The {what} {text!r} must be three numbers x,y,z.")
    return values


# --------------------------------------------------------------------------------------------
# Rules
# --------------------------------------------------------------------------------------------


def _check_indices(indices, n_views: int, what: str) -> set[int]:
    if indices is None:
        return set()
    out = set()
    for value in indices:
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
            raise PrivheadError(f"{what} holds {value!r}, which is not a view index.")
        if not 0 <= int(value) < n_views:
            raise PrivheadError(
                f"View index {int(value)} in {what} is out of range (there are {n_views} views, "
                f"0 to {n_views - 1})."
            )
        out.add(int(value))
    return out


def _views_meta_kinds(views_meta: dict, n_views: int, names: Sequence[str] | None) -> dict:
    """{index: kind} from a parsed views.json; raises on one that does not fit the dataset."""
    if not isinstance(views_meta, dict):
        raise PrivheadError("views.json must hold a JSON object.")
    declared = views_meta.get("n_views")
    if declared is not None and declared != n_views:
        raise PrivheadError(
            f"views.json describes {declared} views but the dataset has {n_views}: it does not "
            "belong to these images."
        )
    per_view = views_meta.get("views")
    if per_view is not None and names is not None and isinstance(per_view, list):
        for entry in per_view:
            if not isinstance(entry, dict) or "file" not in entry or "index" not in entry:
                continue
            index = entry["index"]
            if isinstance(index, int) and 0 <= index < len(names):
                if Path(str(entry["file"])).stem != names[index]:
                    raise PrivheadError(
                        f"views.json names file {entry['file']!r} for view {index} but the "
                        f"dataset's view {index} is {names[index]!r}: views.json does not match "
                        "the images."
                    )
    kinds: dict[int, str] = {}
    has_lists = "neutral_indices" in views_meta or "sensitive_indices" in views_meta
    if has_lists:
        for key, kind in (("neutral_indices", NEUTRAL), ("sensitive_indices", SENSITIVE)):
            values = views_meta.get(key) or []
            if not isinstance(values, list):
                raise PrivheadError(f"views.json: {key} must be a list of view indices.")
            for i in _check_indices(values, n_views, f"views.json {key}"):
                if i in kinds and kinds[i] != kind:
                    raise PrivheadError(f"views.json lists view {i} as both neutral and sensitive.")
                kinds[i] = kind
    elif isinstance(per_view, list):
        for entry in per_view:
            if isinstance(entry, dict) and isinstance(entry.get("sensitive"), bool):
                (i,) = _check_indices([entry.get("index")], n_views, "views.json views")
                kinds[i] = SENSITIVE if entry["sensitive"] else NEUTRAL
    return kinds


def _pose_parameters(views_meta, forward, threshold_deg) -> tuple[np.ndarray | None, float]:
    """The pose rule's unit forward direction (None when unknown) and threshold, validated."""
    meta = views_meta if isinstance(views_meta, dict) else {}
    source = "given"
    if forward is None:
        forward, source = meta.get("forward"), "views.json"
    if threshold_deg is None:
        threshold_deg = meta.get("sensitive_threshold_deg", DEFAULT_THRESHOLD_DEG)
    try:
        threshold_deg = float(threshold_deg)
    except (TypeError, ValueError):
        threshold_deg = math.nan
    if not 0.0 <= threshold_deg <= 180.0:
        raise PrivheadError(
            f"The pose threshold must lie between 0 and 180 degrees, got {threshold_deg}."
        )
    if forward is None:
        return None, threshold_deg
    try:
        forward = np.asarray(forward, dtype=np.float64).reshape(3)
    except (TypeError, ValueError):
        raise PrivheadError(
            f"The forward direction {forward!r} ({source}) is not a 3-vector."
        ) from None
    norm = np.linalg.norm(forward)
    if not np.isfinite(norm) or norm < 1e-12:
        raise PrivheadError(f"The forward direction ({source}) must be a nonzero finite vector.")
    return forward / norm, threshold_deg


def _pose_rule(n_views, cameras, forward, threshold_deg, center, scale_mat):
    """A function index -> ViewDecision for the pose rule, or None when it cannot apply."""
    if forward is None or cameras is None:
        return None
    if len(cameras) != n_views:
        raise PrivheadError(f"{n_views} views but {len(cameras)} cameras.")
    if center is not None:
        head_center = np.asarray(center, dtype=np.float64).reshape(3)
    elif scale_mat is not None:
        head_center, _ = check_similarity(scale_mat)
    else:
        try:
            head_center = optical_axes_center(cameras)
        except PrivheadError:
            raise PrivheadError(
                "Cannot apply the pose rule: the head centre is unknown (the cameras' optical "
                "axes do not meet); give the head centre or the neutral views explicitly."
            ) from None
    offsets = cameras.centers - head_center
    lengths = np.linalg.norm(offsets, axis=1)
    cosines = offsets @ forward / np.maximum(lengths, 1e-12)
    angles = np.degrees(np.arccos(np.clip(cosines, -1.0, 1.0)))

    def decide(i: int) -> ViewDecision:
        if angles[i] > threshold_deg:
            detail = f"angle to forward {angles[i]:.1f} deg > {threshold_deg:g} deg"
            return ViewDecision(i, NEUTRAL, REASON_POSE, detail)
        detail = f"angle to forward {angles[i]:.1f} deg <= {threshold_deg:g} deg"
        return ViewDecision(i, SENSITIVE, REASON_POSE, detail)

    return decide
