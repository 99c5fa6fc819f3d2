"""Reproduce the paper's experiments on the shared heads and write the results page.

Table 1 (stage 1, stage 2, full-RGB baseline), the Fig. 7 loss ablation, the Fig. 4 Lipschitz
ablation, Fig. 5 (fewer neutral views) and the protected-map resolution (64 vs 128 px). Every
configuration is a :class:`_runs.RunSpec` executed by the shared runner (``benchmarks/_runs.py``:
``protect_dataset`` with the face detectors -> ``reconstruct`` -> the official face Chamfer of
every stage mesh, each run in its own process). Records are cached in ``--out`` under a key of the
resolved config, operator, dataset and git commit, so rerunning the same command on the same clean
commit skips the finished runs and an interrupted reproduction resumes where it stopped
(``--force`` reruns them; a dirty tree or a new commit reruns everything). The page (``--docs``)
gets the tables, the run times, a comparison with the paper computed from the records, the
machine and commit they were measured on, and ``figures/table1.png`` beside it (like the paper's
Fig. 2).

    python benchmarks/reproduce_paper.py --preset fast --out runs/paper --docs docs/results.md
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import re
import shlex
import sys
from dataclasses import dataclass
from pathlib import Path

import _runs
import numpy as np

EXPERIMENTS = {
    "table1": "Table 1: stage 1, stage 2 and the full-RGB baseline",
    "ablation_losses": "Fig. 7 ablation: which losses, in how many stages",
    "ablation_lipschitz": "Fig. 4 ablation: stage 2 with and without the Lipschitz term",
    "neutral_views": "Fig. 5: fewer neutral views in stage 1",
    "resolution": "Protected-map resolution: 64 vs 128 px",
}
"""Experiment name (``--only``) -> section title."""

PAPER_TABLE1 = {
    "FaceScape (x1e-3)": {"stage1": 2.355, "stage2": 0.782, "full-rgb": 0.495},
    "H3DS (mm)": {"stage1": 4.707, "stage2": 3.048, "full-rgb": 2.635},
}
"""Paper Table 1: mean Chamfer distance over 10 identities."""

PAPER_FIG7 = {"gradient-only": 27.65, "joint": 15.67, "two-stage": 0.84}
"""Paper Fig. 7: Chamfer distance of the loss ablation."""

PAPER_FIG4 = ((0.70, 0.78), (0.77, 0.83))
"""Paper Fig. 4: Chamfer distance (with, without) the Lipschitz term, two examples."""

TABLE1_FOLDER = "r64_v30"
"""Dataset folder of every head used by Table 1 and the ablations."""

RESOLUTION_FOLDER = "r256_v30"
"""Dataset folder of the resolution experiment (the same cameras at a higher resolution)."""

FIGURE_TILE = 192
"""Side of one tile of the Table 1 figure, in pixels."""

ANALYSIS_START = "<!-- analysis:{name} commit={commit} -->"
ANALYSIS_START_RE = r"<!-- analysis:{name}(?: commit=(?P<commit>\S+))? -->"
ANALYSIS_END = "<!-- /analysis:{name} -->"
ANALYSIS_PLACEHOLDER = "_Analysis: to be written (about the numbers measured at this commit)._"
"""A hand-written analysis block is kept when the page is regenerated only while it is stamped
with the commit of the records it discusses; with new records it is replaced by this."""


# --------------------------------------------------------------------------------------------
# Runs
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Run:
    """A planned run: its spec and its cache key (the key of the records it is looked up by)."""

    spec: _runs.RunSpec
    key: str


Plan = dict[str, dict[tuple[str, str], Run]]
"""Experiment -> {(head name, variant): run}."""


def default_data_root() -> Path:
    shared = Path("/work/shared/data/heads")
    if shared.is_dir():
        return shared
    return Path(__file__).resolve().parents[2] / "shared" / "data" / "heads"


def head_folder(data_root: Path, name: str, folder: str) -> Path:
    """``DATA/NAME/FOLDER``; exits with one sentence when it is not a dataset."""
    path = data_root / name / folder
    if not (path / "views.json").is_file() or not (path / "gt_mesh.ply").is_file():
        sys.exit(f"{path} is not a head dataset (no views.json / gt_mesh.ply); check --data.")
    return path.resolve()


def neutral_view_count(head: Path) -> int:
    return len(json.loads((head / "views.json").read_text())["neutral_indices"])


def plan_runs(args, git: dict) -> Plan:
    """Every experiment's runs. Configurations that resolve to the same key (the two-stage run
    on ict_s0 is Table 1, Fig. 7, Fig. 4 and Fig. 5's "all" at once; the default operator
    resolution is the 64 px variant) run once."""

    def spec(head: Path, mode: str = "two-stage", overrides=(), **kwargs) -> Run:
        overrides = (*args.overrides, *overrides)  # an experiment's own override wins
        run = _runs.RunSpec(str(head), mode, args.preset, overrides, device=args.device, **kwargs)
        return Run(run, _runs.run_key(_runs.key_material(run, git)))

    plan: Plan = {}
    if "table1" in args.only:
        plan["table1"] = {}
        for name in args.heads:
            head = head_folder(args.data, name, TABLE1_FOLDER)
            plan["table1"][(name, "two-stage")] = spec(head)
            plan["table1"][(name, "full-rgb")] = spec(head, "full-rgb")
    if "ablation_losses" in args.only:
        plan["ablation_losses"] = {}
        for name in args.ablation_heads:
            head = head_folder(args.data, name, TABLE1_FOLDER)
            for mode in ("gradient-only", "joint", "two-stage"):
                plan["ablation_losses"][(name, mode)] = spec(head, mode)
    if "ablation_lipschitz" in args.only:
        plan["ablation_lipschitz"] = {}
        for name in args.ablation_heads:
            head = head_folder(args.data, name, TABLE1_FOLDER)
            plan["ablation_lipschitz"][(name, "with")] = spec(head)
            plan["ablation_lipschitz"][(name, "without")] = spec(
                head, overrides=("stage2.lipschitz_weight=0",)
            )
    if "neutral_views" in args.only:
        plan["neutral_views"] = {}
        for name in args.ablation_heads:
            head = head_folder(args.data, name, TABLE1_FOLDER)
            total = neutral_view_count(head)
            plan["neutral_views"][(name, "all")] = spec(head)
            for count in args.neutral_counts:
                if count < total:
                    plan["neutral_views"][(name, str(count))] = spec(head, neutral_count=count)
    if "resolution" in args.only:
        plan["resolution"] = {}
        for name in args.ablation_heads:
            if not (args.data / name / RESOLUTION_FOLDER).is_dir():
                print(f"resolution: {name} has no {RESOLUTION_FOLDER} folder; skipped")
                continue
            head = head_folder(args.data, name, RESOLUTION_FOLDER)
            for resolution in args.operator_resolutions:
                plan["resolution"][(name, str(resolution))] = spec(
                    head, operator={"resolution": resolution}
                )
    return plan


def unique_runs(plan: Plan) -> list[Run]:
    runs: dict[str, Run] = {}
    for entries in plan.values():
        for run in entries.values():
            runs.setdefault(run.key, run)
    return list(runs.values())


# --------------------------------------------------------------------------------------------
# Numbers
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Chamfer:
    """Face-region Chamfer distance of one stage's mesh."""

    units: float
    """World units of the dataset."""
    mm: float | None


def chamfer(record: dict | None, stage: str) -> Chamfer | None:
    """The stage's face Chamfer (``privhead.eval.metrics.face_chamfer``) stored in the record."""
    units = _runs.chamfer_units(record, stage)
    return None if units is None else Chamfer(units, _runs.chamfer_mm(record, stage))


def mean_chamfer(values: list[Chamfer]) -> Chamfer | None:
    if not values:
        return None
    mms = [v.mm for v in values]
    mm = None if any(m is None for m in mms) else float(np.mean(mms))
    return Chamfer(float(np.mean([v.units for v in values])), mm)


def format_chamfer(value: Chamfer | None) -> str:
    if value is None:
        return "—"
    text = f"{value.units:.4f}"
    return text + (f" ({value.mm:.2f} mm)" if value.mm is not None else "")


def format_ratio(numerator: Chamfer | None, denominator: Chamfer | None) -> str:
    ratio = safe_ratio(numerator, denominator)
    return "—" if ratio is None else f"{ratio:.2f}x"


def safe_ratio(numerator: Chamfer | None, denominator: Chamfer | None) -> float | None:
    if numerator is None or denominator is None or denominator.units <= 0:
        return None
    return numerator.units / denominator.units


def format_seconds(record: dict | None) -> str:
    return "—" if record is None else f"{record['process_seconds']:.0f}"


def format_change(before: Chamfer | None, after: Chamfer | None) -> str:
    ratio = safe_ratio(after, before)
    return "—" if ratio is None else f"{(ratio - 1) * 100:+.0f} %"


def compare_to_paper(value: float, paper: dict[str, float]) -> str:
    """Where ``value`` lies relative to the paper's values (one per dataset)."""
    low, high = min(paper.values()), max(paper.values())
    listed = ", ".join(f"{v:.2f} on {name.split()[0]}" for name, v in paper.items())
    if low <= value <= high:
        return f"within the paper's range ({listed})"
    return f"{'below' if value < low else 'above'} the paper's values ({listed})"


def count_phrase(count: int, total: int) -> str:
    return "all" if count == total and total > 1 else f"{count} of {total}"


# --------------------------------------------------------------------------------------------
# Report sections: (markdown table, generated comparison with the paper)
# --------------------------------------------------------------------------------------------


def table1_section(entries, records) -> tuple[str, str]:
    heads = list(dict.fromkeys(name for name, _ in entries))
    lines = [
        "| head | stage 1 | stage 2 | full-RGB | stage 2 / stage 1 | stage 2 / full-RGB "
        "| two-stage run s | full-RGB run s |",
        "|---|---|---|---|---|---|---|---|",
    ]
    complete = []
    for name in heads:
        two_stage = records.get(entries[(name, "two-stage")].key)
        full = records.get(entries[(name, "full-rgb")].key)
        s1, s2 = chamfer(two_stage, "stage1"), chamfer(two_stage, "stage2")
        rgb = chamfer(full, "full-rgb")
        if s1 and s2 and rgb:
            complete.append((name, s1, s2, rgb))
        lines.append(
            f"| {name} | {format_chamfer(s1)} | {format_chamfer(s2)} | {format_chamfer(rgb)} "
            f"| {format_ratio(s2, s1)} | {format_ratio(s2, rgb)} | {format_seconds(two_stage)} "
            f"| {format_seconds(full)} |"
        )
    means = [mean_chamfer([row[i] for row in complete]) for i in (1, 2, 3)]
    if complete:
        s1, s2, rgb = means
        lines.append(
            f"| **mean of {len(complete)}** | {format_chamfer(s1)} | {format_chamfer(s2)} "
            f"| {format_chamfer(rgb)} | {format_ratio(s2, s1)} | {format_ratio(s2, rgb)} | | |"
        )
    for dataset, paper in PAPER_TABLE1.items():
        lines.append(
            f"| paper, {dataset} | {paper['stage1']} | {paper['stage2']} | {paper['full-rgb']} "
            f"| {paper['stage2'] / paper['stage1']:.2f}x "
            f"| {paper['stage2'] / paper['full-rgb']:.2f}x | | |"
        )
    table = "\n".join(lines)
    table += (
        "\n\nThe ratios of the mean row are ratios of the mean distances, as in the paper. "
        "Run times are whole processes (protect, training, a mesh after every stage, renders, "
        "evaluation)."
    )
    if not complete:
        return table, "No head has all three results yet."
    n = len(complete)
    improves = sum(s2.units < s1.units for _, s1, s2, _ in complete)
    baseline_better = sum(rgb.units < s2.units for _, _, s2, rgb in complete)
    ordered = sum(s1.units > s2.units > rgb.units for _, s1, s2, rgb in complete)
    s1, s2, rgb = means
    paper_s2_s1 = {k: v["stage2"] / v["stage1"] for k, v in PAPER_TABLE1.items()}
    paper_s2_rgb = {k: v["stage2"] / v["full-rgb"] for k, v in PAPER_TABLE1.items()}
    ratio_s1, ratio_rgb = s2.units / s1.units, s2.units / rgb.units
    text = [
        f"- Stage 2 improves on stage 1 on {count_phrase(improves, n)} heads; mean ratio "
        f"stage 2 / stage 1 = {ratio_s1:.2f}, {compare_to_paper(ratio_s1, paper_s2_s1)}.",
        f"- The full-RGB baseline is better than stage 2 on {count_phrase(baseline_better, n)} "
        f"heads; mean ratio stage 2 / full-RGB = {ratio_rgb:.2f}, "
        f"{compare_to_paper(ratio_rgb, paper_s2_rgb)}.",
        f"- The paper's ordering (stage 1 > stage 2 > full-RGB) holds on "
        f"{count_phrase(ordered, n)} heads and "
        f"{'holds' if s1.units > s2.units > rgb.units else 'does not hold'} for the mean.",
    ]
    if improves and s1.units > s2.units:
        gap_closed = (s1.units - s2.units) / (s1.units - rgb.units) if s1.units > rgb.units else 1
        paper_closed = {
            k: (v["stage1"] - v["stage2"]) / (v["stage1"] - v["full-rgb"])
            for k, v in PAPER_TABLE1.items()
        }
        text.append(
            f"- Stage 2 closes {gap_closed * 100:.0f} % of the gap between stage 1 and the "
            f"full-RGB baseline (paper: "
            + ", ".join(f"{v * 100:.0f} % on {k.split()[0]}" for k, v in paper_closed.items())
            + ")."
        )
    return table, "\n".join(text)


ABLATION_LABELS = {
    "gradient-only": "gradient loss only, one stage",
    "joint": "RGB + gradient, one stage",
    "two-stage": "two stages (stage 2)",
}


def ablation_losses_section(entries, records) -> tuple[str, str]:
    heads = list(dict.fromkeys(name for name, _ in entries))
    stage_of = {"gradient-only": "gradient-only", "joint": "joint", "two-stage": "stage2"}
    lines = [
        "| head | " + " | ".join(ABLATION_LABELS.values()) + " | run s (same order) |",
        "|---|---|---|---|---|",
    ]
    results = {}
    for name in heads:
        row = {mode: records.get(entries[(name, mode)].key) for mode in ABLATION_LABELS}
        values = {mode: chamfer(row[mode], stage_of[mode]) for mode in ABLATION_LABELS}
        results[name] = values
        cells = " | ".join(format_chamfer(values[mode]) for mode in ABLATION_LABELS)
        seconds = " / ".join(format_seconds(row[mode]) for mode in ABLATION_LABELS)
        lines.append(f"| {name} | {cells} | {seconds} |")
    lines.append(
        "| paper | " + " | ".join(str(PAPER_FIG7[mode]) for mode in ABLATION_LABELS) + " | |"
    )
    table = "\n".join(lines) + (
        "\n\nThe one-stage runs train for as many steps as both stages together."
    )
    complete = {k: v for k, v in results.items() if all(v.values())}
    if not complete:
        return table, "No head has all three results yet."
    n = len(complete)
    ordered = sum(
        v["gradient-only"].units > v["joint"].units > v["two-stage"].units
        for v in complete.values()
    )
    two_stage_best = sum(
        v["two-stage"].units < min(v["gradient-only"].units, v["joint"].units)
        for v in complete.values()
    )
    paper = {
        mode: PAPER_FIG7[mode] / PAPER_FIG7["two-stage"] for mode in ("gradient-only", "joint")
    }
    text = [
        f"- Two stages give the lowest distance on {count_phrase(two_stage_best, n)} heads; the "
        f"paper's full ordering (gradient only > RGB + gradient > two stages) holds on "
        f"{count_phrase(ordered, n)} heads.",
    ]
    for name, v in complete.items():
        ours = {mode: v[mode].units / v["two-stage"].units for mode in paper}
        text.append(
            f"- {name}: gradient only is {ours['gradient-only']:.1f}x and RGB + gradient "
            f"{ours['joint']:.1f}x the two-stage distance (paper: {paper['gradient-only']:.1f}x "
            f"and {paper['joint']:.1f}x)."
        )
    return table, "\n".join(text)


def ablation_lipschitz_section(entries, records) -> tuple[str, str]:
    heads = list(dict.fromkeys(name for name, _ in entries))
    weights = sorted(
        {
            records[run.key]["config"]["stage2"]["lipschitz_weight"]
            for (_, variant), run in entries.items()
            if variant == "with" and run.key in records
        }
    )
    lines = [
        "| head | stage 1 (with / without) | stage 2 with L_lip | stage 2 without L_lip "
        "| change | run s (with / without) |",
        "|---|---|---|---|---|---|",
    ]
    changes = {}
    for name in heads:
        with_lip = records.get(entries[(name, "with")].key)
        without = records.get(entries[(name, "without")].key)
        s1 = [v for v in (chamfer(with_lip, "stage1"), chamfer(without, "stage1")) if v]
        if len(s1) == 2 and s1[0].units == s1[1].units:  # stage 1 is the same configuration
            s1 = s1[:1]
        stage1 = " / ".join(format_chamfer(v) for v in s1) or "—"
        a, b = chamfer(with_lip, "stage2"), chamfer(without, "stage2")
        if a and b:
            changes[name] = b.units / a.units - 1
        lines.append(
            f"| {name} | {stage1} | {format_chamfer(a)} | {format_chamfer(b)} "
            f"| {format_change(a, b)} | {format_seconds(with_lip)} / {format_seconds(without)} |"
        )
    paper_changes = [without / with_ - 1 for with_, without in PAPER_FIG4]
    for (with_, without), change in zip(PAPER_FIG4, paper_changes, strict=True):
        lines.append(f"| paper | | {with_:.2f} | {without:.2f} | {change * 100:+.0f} % | |")
    weight = ", ".join(f"{w:g}" for w in weights) or "—"
    table = "\n".join(lines) + (
        f"\n\nWith L_lip: stage 2 weight lambda_3 = {weight} (the runs' config); without: "
        "lambda_3 = 0 (`stage2.lipschitz_weight=0`), everything else equal."
    )
    if not changes:
        return table, "No head has both results yet."
    used = [
        records[run.key]
        for (head, _), run in entries.items()
        if head in changes and run.key in records
    ]
    seeds = ", ".join(str(s) for s in sorted({r["config"]["seed"] for r in used}))
    n = len(changes)
    rises = sum(c > 0 for c in changes.values())
    mean = float(np.mean(list(changes.values())))
    paper = " and ".join(f"{c * 100:+.0f} %" for c in paper_changes)
    text = (
        f"- Without the Lipschitz term the stage 2 distance rises on {count_phrase(rises, n)} "
        f"heads (mean change {mean * 100:+.1f} %; paper {paper}): the paper's pattern "
        f"{'holds' if rises == n else 'holds only partly' if rises else 'does not hold'}.\n"
        f"- Each configuration is one run (seed {seeds}); the spread over seeds is not measured "
        f"here, so a change of a few per cent may be within it."
    )
    return table, text


def neutral_views_section(entries, records) -> tuple[str, str]:
    heads = list(dict.fromkeys(name for name, _ in entries))
    lines = [
        "| head | RGB (neutral) views | protected maps | stage 1 | stage 2 | run s |",
        "|---|---|---|---|---|---|",
    ]
    text = []
    for name in heads:
        variants = [variant for head, variant in entries if head == name]
        rows = []
        for variant in variants:
            record = records.get(entries[(name, variant)].key)
            count = record["views"]["n_rgb"] if record else variant
            protected = record["views"]["n_protected"] if record else "—"
            s1, s2 = chamfer(record, "stage1"), chamfer(record, "stage2")
            rows.append((count, s1, s2))
            lines.append(
                f"| {name} | {count} | {protected} | {format_chamfer(s1)} | {format_chamfer(s2)} "
                f"| {format_seconds(record)} |"
            )
        complete = [row for row in rows if row[1] and row[2]]
        if len(complete) < 2 or complete[0] is not rows[0]:
            text.append(f"- {name}: not enough results yet.")
            continue
        (all_count, s1_all, s2_all), (few_count, s1_few, s2_few) = complete[0], complete[-1]
        change1 = s1_few.units / s1_all.units - 1
        change2 = s2_few.units / s2_all.units - 1
        holds = change1 > 0 and abs(change2) < change1
        text.append(
            f"- {name}: from {all_count} to {few_count} neutral views stage 1 changes by "
            f"{change1 * 100:+.0f} % and stage 2 by {change2 * 100:+.0f} %. The paper's pattern "
            f"(fewer neutral views hurt stage 1, barely stage 2) "
            f"{'holds' if holds else 'does not hold'} here."
        )
    table = "\n".join(lines) + (
        "\n\nEvery sensitive view is kept (as a protected map); the neutral views kept are the "
        "first ones listed in views.json (counts: the views each run actually sent, after the "
        "face detectors). Paper: 15 and 10 neutral views, no numbers given."
    )
    return table, "\n".join(text)


def resolution_section(entries, records) -> tuple[str, str]:
    heads = list(dict.fromkeys(name for name, _ in entries))
    lines = [
        "| head | protected maps | stage 1 | stage 2 | run s |",
        "|---|---|---|---|---|",
    ]
    text, rgb_sizes = [], set()
    for name in heads:
        variants = [variant for head, variant in entries if head == name]
        values = []
        for variant in variants:
            record = records.get(entries[(name, variant)].key)
            s1, s2 = chamfer(record, "stage1"), chamfer(record, "stage2")
            size = f"{variant} px (planned)"
            if record and record["views"].get("protected_resolution"):
                w, h = record["views"]["protected_resolution"]
                size, variant = f"{w} x {h} px", str(max(w, h))
                rgb_sizes.add((record["views"]["n_rgb"], *record["views"]["image_size"]))
            values.append((variant, s1, s2))
            lines.append(
                f"| {name} ({RESOLUTION_FOLDER}) | {size} | {format_chamfer(s1)} "
                f"| {format_chamfer(s2)} | {format_seconds(record)} |"
            )
        complete = [v for v in values if v[2]]
        if len(complete) < 2:
            text.append(f"- {name}: not enough results yet.")
            continue
        (low, _, low_s2), (high, _, high_s2) = complete[0], complete[-1]
        change = high_s2.units / low_s2.units - 1
        text.append(
            f"- {name}: stage 2 with {high} px maps is {abs(change) * 100:.0f} % "
            f"{'lower' if change < 0 else 'higher'} than with {low} px maps. The paper works at "
            f"64 px only, so there is no number to compare with; finer maps also carry more of "
            f"the face to the server (see docs/privacy.md)."
        )
    table = "\n".join(lines)
    if rgb_sizes:
        sent = ", ".join(f"{n} RGB views at {w} x {h} px" for n, w, h in sorted(rgb_sizes))
        table += (
            f"\n\nEvery run sent {sent} (the neutral views, at the dataset's resolution); only "
            "the protected maps change resolution."
        )
    return table, "\n".join(text)


def runs_table(runs: list[Run], records: dict, cached: set[str]) -> str:
    lines = [
        "| run | key | device | views sent | protect s | stage s | final mesh s | process s "
        "| peak RSS GiB | from cache |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for run in runs:
        record = records.get(run.key)
        if record is None:
            lines.append(
                f"| {run.spec.label} | {run.key} | — | — | — | — | — | failed or missing |"
            )
            continue
        stages = ", ".join(f"{k} {v:.0f}" for k, v in record["stage_seconds"].items())
        views = record["views"]
        sent = f"{views['n_rgb']} RGB + {views['n_protected']} protected"
        lines.append(
            f"| {run.spec.label} | {record['key']} | {record['machine']['device']} | {sent} "
            f"| {record['protect_seconds']:.0f} | {stages} | {record['mesh_seconds']:.0f} "
            f"| {record['process_seconds']:.0f} | {record['peak_rss_gib']:.2f} "
            f"| {'yes' if run.key in cached else 'no'} |"
        )
    return "\n".join(lines)


# --------------------------------------------------------------------------------------------
# Figure (paper Fig. 2): photo, stage 1, stage 2, full-RGB, GT mesh, per head
# --------------------------------------------------------------------------------------------


def figure_views(views: dict) -> list[int]:
    """A frontal and a three-quarter sensitive view: the smallest angle to the face's forward
    direction, and the one closest to 55 degrees."""
    per_view = [v for v in views.get("views", []) if v.get("sensitive")]
    if not per_view or "angle_to_forward_deg" not in per_view[0]:
        sensitive = views["sensitive_indices"]
        return [sensitive[0], sensitive[len(sensitive) // 4]]
    frontal = min(per_view, key=lambda v: v["angle_to_forward_deg"])
    three_quarter = min(per_view, key=lambda v: abs(v["angle_to_forward_deg"] - 55.0))
    return [frontal["index"], three_quarter["index"]]


def _font(size: int):
    from PIL import ImageFont

    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow < 10.1 has only the fixed bitmap font
        return ImageFont.load_default()


def _label_tile(image: np.ndarray, text: str) -> np.ndarray:
    from PIL import Image, ImageDraw

    tile = Image.fromarray(image)
    draw = ImageDraw.Draw(tile)
    draw.text((6, tile.height - 20), text, fill=(40, 40, 40), font=_font(13))
    return np.asarray(tile)


def make_table1_figure(
    entries, records, runs_dir: Path, out_path: Path, tile: int = FIGURE_TILE
) -> Path | None:
    """One row per head: for a frontal and a 3/4 dataset camera, the dataset photo and the
    renders of the stage 1, stage 2, full-RGB and GT meshes from that same camera."""
    from PIL import Image, ImageDraw

    from privhead.data.formats import load_dataset
    from privhead.eval.metrics import load_mesh
    from privhead.mesh.render import make_grid, render_mesh

    heads = list(dict.fromkeys(name for name, _ in entries))
    columns = [("stage 1", "two-stage", "stage1"), ("stage 2", "two-stage", "stage2")]
    columns += [("full-RGB", "full-rgb", "full-rgb")]
    tiles, row_names, view_ids = [], [], []
    for name in heads:
        head = Path(entries[(name, "two-stage")].spec.dataset)
        dataset = load_dataset(head)
        views = figure_views(dataset.views or {})
        meshes = {}
        for label, mode, stage in columns:
            run = entries[(name, mode)]
            record = records.get(run.key)
            path = None
            if record is not None:
                folder = _runs.run_dir(run.spec, runs_dir, record["key"])
                path = folder / record["stage_meshes"][stage]
            meshes[label] = (load_mesh(path) if path and path.is_file() else None, record, stage)
        meshes["GT mesh"] = (load_mesh(head / "gt_mesh.ply"), None, None)
        cameras = dataset.cameras.scaled(tile, tile)
        for index in views:
            photo = Image.fromarray(np.round(dataset.images[index] * 255).astype(np.uint8))
            tiles.append(np.asarray(photo.resize((tile, tile), Image.NEAREST)))
            for mesh, record, stage in meshes.values():
                if mesh is None:
                    tiles.append(_label_tile(np.full((tile, tile, 3), 230, np.uint8), "missing"))
                    continue
                image = render_mesh(mesh, cameras.K[index], cameras.c2w[index], tile, tile)
                value = chamfer(record, stage) if record else None
                if value is not None:
                    image = _label_tile(image, f"CD {format_chamfer(value)}")
                tiles.append(image)
        row_names.append(name)
        view_ids.append(views)
    if not tiles:
        return None
    per_view = 1 + len(columns) + 1
    labels = ["photo"] + [label for label, _, _ in columns] + ["GT mesh"]
    grid = Image.fromarray(make_grid(tiles, ncols=per_view * 2))
    left, top = 80, 44
    canvas = Image.new("RGB", (grid.width + left, grid.height + top), (255, 255, 255))
    canvas.paste(grid, (left, top))
    draw = ImageDraw.Draw(canvas)
    font = _font(15)
    first = view_ids[0]
    for group, title in enumerate(
        [f"frontal view (camera {first[0]})", f"three-quarter view (camera {first[1]})"]
    ):
        x = left + group * per_view * tile
        draw.text((x + 6, 4), title, fill=(0, 0, 0), font=font)
        for k, label in enumerate(labels):
            draw.text((x + k * tile + 6, 24), label, fill=(0, 0, 0), font=font)
    for row, name in enumerate(row_names):
        draw.text((6, top + row * tile + tile // 2 - 8), name, fill=(0, 0, 0), font=font)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    canvas.save(out_path)
    return out_path


# --------------------------------------------------------------------------------------------
# The page
# --------------------------------------------------------------------------------------------


def kept_analysis(docs: Path, commit: str | None) -> tuple[dict[str, str], list[str]]:
    """The hand-written analysis blocks of an existing page that discuss the numbers shown now.

    A block is kept only when its start marker is stamped with ``commit``, the commit every
    record on the page was measured at; blocks written about other numbers (another commit,
    unstamped, or records of several commits) are dropped so that no stale number survives.

    Returns:
        ({experiment: block text}, one line per dropped block).
    """
    if not docs.is_file():
        return {}, []
    text = docs.read_text()
    blocks, dropped = {}, []
    for name in EXPERIMENTS:
        start = ANALYSIS_START_RE.format(name=re.escape(name))
        end = re.escape(ANALYSIS_END.format(name=name))
        match = re.search(start + r"\n(.*?)\n?" + end, text, flags=re.S)
        if not match or match.group(2).strip() == ANALYSIS_PLACEHOLDER:
            continue
        if commit is not None and match.group("commit") == commit:
            blocks[name] = match.group(2)
        else:
            stamp = match.group("commit") or "no commit"
            dropped.append(
                f"analysis of {name} dropped: written for {stamp}, the records are of "
                f"{commit or 'several commits or a dirty tree'}"
            )
    return blocks, dropped


def records_commit(records: dict) -> str | None:
    """The commit of every record, when they share one and none was made from a dirty tree."""
    commits = {(r["commit"], r["dirty"]) for r in records.values()}
    if len(commits) != 1:
        return None
    commit, dirty = commits.pop()
    return None if dirty else commit


def describe_commits(records: dict) -> str:
    counts: dict[str, int] = {}
    for r in records.values():
        label = f"`{r['commit'] or 'unknown'}`" + (" (dirty tree)" if r["dirty"] else "")
        counts[label] = counts.get(label, 0) + 1
    return ", ".join(f"{label} ({n} runs)" for label, n in counts.items()) or "—"


def describe_configs(records: dict) -> list[str]:
    """Steps, mesh resolution and seed of the two-stage runs' configs (as measured)."""
    seen = {}
    for r in records.values():
        c = r["config"]
        if c["mode"] != "two-stage":
            continue
        line = (
            f"`{c['preset']}` (stage 1 {c['stage1']['steps']} steps, stage 2 "
            f"{c['stage2']['steps']} steps, marching cubes {c['mesh_resolution']}^3), "
            f"seed {c['seed']}"
        )
        seen[line] = seen.get(line, 0) + 1
    return [f"{line} ({n} two-stage runs)" for line, n in seen.items()]


def describe_data(records: dict) -> list[str]:
    """Per dataset folder: the views it had and what the runs sent (from the records)."""
    seen: dict[str, list[str]] = {}
    for r in records.values():
        v = r["views"]
        folder = Path(r["spec"]["dataset"])
        line = f"{v['n_views']} views at {v['image_size'][0]}x{v['image_size'][1]} px" + (
            f" (views.json: {v['n_sensitive_listed']} sensitive, {v['n_neutral_listed']} neutral)"
            if v.get("n_sensitive_listed") is not None
            else ""
        )
        name = f"{folder.parent.name}/{folder.name}"
        seen.setdefault(line, [])
        if name not in seen[line]:
            seen[line].append(name)
    return [f"{line}: {', '.join(f'`{n}`' for n in names)}" for line, names in seen.items()]


def describe_region(records: dict) -> str:
    radii = sorted({round(r, 1) for r in map(_runs.face_radius_mm, records.values()) if r})
    if not radii:
        return "the dataset's `face_region.json` sphere"
    return (
        "the dataset's `face_region.json` sphere ("
        + " / ".join(f"{r:g}" for r in radii)
        + " mm around the nose tip)"
    )


def write_page(args, plan: Plan, runs, records, cached, figure: Path | None) -> str:
    """Write ``args.docs`` and return the generated comparisons (for the terminal)."""
    command = "python " + shlex.join([sys.argv[0], *sys.argv[1:]])
    if os.environ.get("OMP_NUM_THREADS"):
        command = f"OMP_NUM_THREADS={os.environ['OMP_NUM_THREADS']} {command}"
    machines = list(
        dict.fromkeys(_runs.describe_machine(r["machine"]) for r in records.values())
    ) or ["(no finished run)"]
    commit = records_commit(records)
    kept, dropped = kept_analysis(args.docs, commit)
    for line in dropped:
        print(line)
    configs = describe_configs(records) or ["(no finished two-stage run)"]
    lines = [
        "# Reproducing the paper's experiments",
        "",
        "Generated by `benchmarks/reproduce_paper.py` from its run records (rerun it to update "
        "this page; the tables and the pattern lines are rewritten, an analysis block is kept "
        "only while it is stamped with the commit of the records):",
        "",
        f"    {command}",
        "",
        f"- date: {datetime.date.today().isoformat()}",
        f"- commit: {describe_commits(records)}",
        f"- config: {configs[0]}",
        *[f"- also: {line}" for line in configs[1:]],
        "- one run per configuration",
        f"- machine: {machines[0]}",
        *[f"- also: {line}" for line in machines[1:]],
        f"- data: `{args.data}`: " + "; ".join(describe_data(records) or ["(no finished run)"]),
        "- metric: face-region Chamfer distance (`privhead.eval.metrics.face_chamfer`: mean of "
        f"accuracy and completeness) against `gt_mesh.ply`, query points restricted to "
        f"{describe_region(records)}; world units, and mm via its `mm_per_unit`. "
        "Paper numbers are in their own units (FaceScape x1e-3, H3DS mm): compare ratios.",
        f"- runs: {len(runs)} ({sum(r.key in cached for r in runs)} from the cache in `{args.out}`"
        f", {sum(r.key not in records for r in runs)} failed or missing)",
        "",
    ]
    sections = {
        "table1": lambda e: table1_section(e, records),
        "ablation_losses": lambda e: ablation_losses_section(e, records),
        "ablation_lipschitz": lambda e: ablation_lipschitz_section(e, records),
        "neutral_views": lambda e: neutral_views_section(e, records),
        "resolution": lambda e: resolution_section(e, records),
    }
    summary = []
    for name, entries in plan.items():
        if not entries:
            continue
        table, pattern = sections[name](entries)
        lines += [f"## {EXPERIMENTS[name]}", "", table, ""]
        if name == "table1" and figure is not None:
            relative = os.path.relpath(figure, args.docs.resolve().parent)
            lines += [
                f"![Table 1 meshes]({relative})",
                "",
                "Per head: a dataset photo and the meshes rendered from that camera (stage 1, "
                "stage 2, full-RGB baseline, ground truth), frontal and three-quarter.",
                "",
            ]
        lines += ["### Does it show the paper's pattern?", "", pattern, ""]
        lines += [
            ANALYSIS_START.format(name=name, commit=commit or "none"),
            kept.get(name, ANALYSIS_PLACEHOLDER),
            ANALYSIS_END.format(name=name),
            "",
        ]
        summary += [f"{EXPERIMENTS[name]}:", pattern]
    lines += ["## Every run", "", runs_table(runs, records, cached), ""]
    args.docs.parent.mkdir(parents=True, exist_ok=True)
    args.docs.write_text("\n".join(lines))
    return "\n".join(summary)


# --------------------------------------------------------------------------------------------
# Command line
# --------------------------------------------------------------------------------------------


def comma_list(text: str) -> list[str]:
    return [item.strip() for item in text.split(",") if item.strip()]


def comma_ints(text: str) -> list[int]:
    try:
        return [int(item) for item in comma_list(text)]
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a comma-separated list of integers"
        ) from None


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__.splitlines()[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--data", type=Path, default=default_data_root(), help="heads folder")
    parser.add_argument("--preset", default="fast", help="tiny | fast | default | paper")
    parser.add_argument("--heads", type=comma_list, default=["ict_s0", "ict_s1", "ict_s2"])
    parser.add_argument(
        "--ablation-heads", type=comma_list, default=["ict_s0"], help="heads of Fig. 7 / 4 / 5"
    )
    parser.add_argument(
        "--only", type=comma_list, default=list(EXPERIMENTS), help=", ".join(EXPERIMENTS)
    )
    parser.add_argument("--neutral-counts", type=comma_ints, default=[6, 3])
    parser.add_argument("--operator-resolutions", type=comma_ints, default=[64, 128])
    parser.add_argument("--device", default="auto", help="auto (CUDA when present) | cpu | cuda")
    parser.add_argument(
        "--set",
        dest="overrides",
        action="extend",
        nargs="+",
        default=[],
        metavar="KEY=VALUE",
        help="config overrides applied to every run (privhead.config.apply_overrides), e.g. "
        "stage1.steps=10 for a smoke test",
    )
    parser.add_argument("--out", type=Path, default=Path("runs/paper"), help="run cache")
    parser.add_argument("--docs", type=Path, default=Path("docs/results.md"))
    parser.add_argument("--force", action="store_true", help="rerun cached configurations")
    parser.add_argument("--dry-run", action="store_true", help="list the runs and stop")
    args = parser.parse_args(argv)

    unknown = [name for name in args.only if name not in EXPERIMENTS]
    if unknown:
        parser.error(f"unknown experiment {unknown[0]!r}; choose from {', '.join(EXPERIMENTS)}")
    from privhead.config import PRESETS

    if args.preset not in PRESETS:
        parser.error(f"unknown preset {args.preset!r}; choose from {', '.join(PRESETS)}")
    args.data = args.data.resolve()
    git = _runs.git_state()
    plan = plan_runs(args, git)
    runs = unique_runs(plan)
    records, cached = {}, set()
    print(
        f"{len(runs)} runs ({args.preset} preset) in {args.out}; commit {git['commit']}"
        + (
            f", dirty tree ({len(git['changes'])} changes): nothing is served from the cache"
            if git["dirty"]
            else ""
        ),
        flush=True,
    )
    for number, run in enumerate(runs, 1):
        prefix = f"[{number}/{len(runs)}] {run.spec.label} ({run.key})"
        if args.dry_run:
            done = _runs.cached_record(run.spec, args.out) is not None
            print(f"{prefix}{' (cached)' if done else ''}")
            continue
        print(f"{prefix} ...", flush=True)
        try:
            record, from_cache = _runs.execute(run.spec, args.out, force=args.force)
        except _runs.RunFailed as exc:
            print(f"  FAILED: {exc}")
            continue
        records[run.key] = record
        if from_cache:
            cached.add(run.key)
        scores = ", ".join(
            f"{stage} {format_chamfer(chamfer(record, stage))}" for stage in record["face_chamfer"]
        )
        source = "cached" if from_cache else f"{record['process_seconds']:.0f} s"
        print(f"    {source}: {scores}", flush=True)
    if args.dry_run:
        return 0

    figure = None
    if plan.get("table1"):
        figure = make_table1_figure(
            plan["table1"], records, args.out, args.docs.parent / "figures" / "table1.png"
        )
    summary = write_page(args, plan, runs, records, cached, figure)
    print(f"\n{summary}\n")
    failed = [run.spec.label for run in runs if run.key not in records]
    print(f"wrote {args.docs}" + (f" and {figure}" if figure else ""))
    if failed:
        print(f"{len(failed)} runs failed (see their log.txt): {', '.join(failed)}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
