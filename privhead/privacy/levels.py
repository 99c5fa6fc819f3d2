"""Named privacy levels (``privhead protect --privacy paper|standard|strong``) and what each was
measured to reveal.

Each level is an operator sigma (public, Kerckhoffs: it is written into every manifest). What
a level leaks is not a promise but a measurement: ``leakage.json`` beside this module is written
by ``python benchmarks/privacy_sweep.py --write-levels`` (the attack suite on real faces, the
stage-2 fidelity on the shared heads), and :func:`leakage_line` quotes it.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

from privhead.errors import PrivheadError
from privhead.privacy.operators import OperatorConfig

LEVELS: dict[str, OperatorConfig] = {
    "paper": OperatorConfig.paper(linear_light=True),
    "standard": OperatorConfig.paper(resolution=48, luminance=True, clip=0.1, linear_light=True),
    # Measured with linear light too (session 12): 80 % [50, 100] on the other-photo gallery
    # against 40 % [0, 67] with sRGB averaging (5 probes, the intervals overlap). For the level
    # whose purpose is privacy the better-measured option is kept, at the cost of its fidelity
    # from photos above 48 px.
    "strong": OperatorConfig.paper(
        resolution=48, luminance=True, clip=0.1, suppress_features=0.35, linear_light=False
    ),
}
"""paper = the paper's Sobel modulus of the colour at 64 px, privhead's default (the only operator
measured within the fidelity bound, 1.3x the full-RGB face error, on every shared head);
standard = luminance gradients at 48 px, softly clipped (fewer re-identifications, coarser
faces); strong = standard with the eyes, brows and mouth suppressed (fewer still, coarser
still). paper and standard downsample the photos in linear light (``OperatorConfig.linear_light``),
as a lower-resolution camera records: averaging the stored sRGB values made photos above 64 px
reconstruct worse than their own 64 px versions (docs/benchmarks.md), and the attack suite
measured no loss of privacy for either. strong keeps the sRGB averaging, measured the more
private of the two for it. ``operators.PAPER_OPERATOR`` is the sRGB-averaging paper operator of
bundles made before. The numbers: docs/privacy.md and ``leakage.json``."""

DEFAULT_LEVEL = "paper"

LEAKAGE_FILE = Path(__file__).with_name("leakage.json")
"""Measured leakage and fidelity per level (written by benchmarks/privacy_sweep.py)."""


def landmarks_available() -> bool:
    """Whether the on-device landmark detector (YuNet, ``privhead[audit]``) is installed."""
    from privhead.privacy.faces.detect import installed_detectors

    return "yunet" in installed_detectors()


def usable_level_operator(name: str) -> tuple[OperatorConfig, str | None]:
    """A level's operator as this install can apply it, and a warning when it cannot fully.

    A level that suppresses the facial features needs the landmark detector; without it the
    level falls back to the same operator without suppression (its own measured leakage is
    quoted by :func:`leakage_line`), and the warning says so and how to install the detector.
    """
    operator = level_operator(name)
    if operator.suppress_features > 0 and not landmarks_available():
        fallback = dataclasses.replace(operator, suppress_features=0.0)
        return fallback, (
            f"warning: privacy level '{name}' suppresses the eyes, brows and mouth located by the "
            "on-device face detector, which is not installed (pip install 'privhead[audit]'): "
            "these maps are made WITHOUT that suppression."
        )
    return operator, None


def level_operator(name: str) -> OperatorConfig:
    """The operator of a named level."""
    if name not in LEVELS:
        raise PrivheadError(f"Unknown privacy level {name!r}; choose one of {', '.join(LEVELS)}.")
    return LEVELS[name]


def level_of(operator: OperatorConfig) -> str | None:
    """The name of the level whose operator this is, or None for a custom operator."""
    return next((name for name, op in LEVELS.items() if op == operator), None)


def measured_leakage(path: Path = LEAKAGE_FILE) -> dict:
    """{level: record} from ``leakage.json`` ({} when it is absent or unreadable)."""
    try:
        data = json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def recorded_operator(record: dict) -> OperatorConfig | None:
    """The operator a leakage record was measured with (fields added since take their earlier
    behaviour, as for bundles), or None when the record's operator is unreadable."""
    try:
        return OperatorConfig.from_dict(record.get("operator"))
    except PrivheadError:
        return None


def leakage_line(operator: OperatorConfig, path: Path = LEAKAGE_FILE) -> str:
    """One sentence on what a bundle made with ``operator`` was measured to reveal."""
    name = level_of(operator)
    record = measured_leakage(path).get(name or "")
    if name is None:
        return (
            "privacy: a custom operator, never measured by the attack suite; run "
            "benchmarks/privacy_suite.py --operator to measure what it reveals."
        )
    if not record or recorded_operator(record) != operator:
        return (
            f"privacy: level '{name}' has no measurement for this operator yet "
            "(benchmarks/privacy_sweep.py --write-levels)."
        )
    other, source = record["other_photo"], record["source_photo"]
    text = (
        f"privacy level '{name}': on {record['n_faces']} real faces the strongest attack "
        f"({other['attack']}) re-identified {100 * other['rank1']['value']:.0f}% "
        f"[95% CI {100 * other['rank1']['low']:.0f}-{100 * other['rank1']['high']:.0f}] against "
        f"other photos of {record['n_identities']} people (chance {100 * record['chance']:.0f}%), "
        f"{100 * source['rank1']['value']:.0f}% when the attacker holds the very photo "
        f"({source['attack']})"
    )
    if record.get("fidelity_ratio") is not None:
        text += (
            f"; face geometry {record['fidelity_ratio']:.2f}x the full-RGB error on the worst "
            "shared head"
        )
    text += f" (measured at commit {record.get('commit', '?')})"
    if record.get("criterion_holds", False) and other["rank1"]["value"] > record["chance"]:
        text += (
            "; chance lies inside the CI only because the real-face set is small (few people "
            "with several photos): the point estimate is above chance"
        )
    if not record.get("criterion_holds", False):
        text += (
            ". This is NOT privhead's criterion (identification at chance): for the strongest "
            "privacy reconstruct locally with --full-rgb and share nothing"
        )
    return text + "."
