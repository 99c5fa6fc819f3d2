"""Reproduce the paper's experiments on the shared heads and write the results page.

Table 1 (stage 1, stage 2, full-RGB baseline), the Fig. 7 loss ablation, the Fig. 4 Lipschitz
ablation, Fig. 5 (fewer neutral views) and the protected-map resolution (64 vs 128 px). Every
configuration runs in its own process (``bench_reconstruct.run_single``: protect -> reconstruct ->
face-region Chamfer per stage) and leaves ``OUT/<run>/record.json``; rerunning the same command
skips the runs that have a record, so an interrupted reproduction resumes where it stopped
(``--force`` reruns them). The page (``--docs``) gets the tables, the run times, a generated
comparison with the paper per table, and ``figures/table1.png`` beside it (like the paper's Fig. 2).

    python benchmarks/reproduce_paper.py --preset fast --out runs/paper --docs docs/results.md
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import json
import os
import platform
import re
import shlex
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

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
"""Dataset folder of every head used by Table 1 and the ablations (30 views at 64 x 64)."""

RESOLUTION_FOLDER = "r256_v30"
"""Dataset folder of the resolution experiment (the same 30 cameras at 256 x 256)."""

FIGURE_TILE = 192
"""Side of one tile of the Table 1 figure, in pixels."""

ANALYSIS_START = "<!-- analysis:{name} -->"
ANALYSIS_END = "<!-- /analysis:{name} -->"
ANALYSIS_PLACEHOLDER = "_Analysis: to be written._"


# --------------------------------------------------------------------------------------------
# Runs
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class RunSpec:
    """One reconstruction run: what ``bench_reconstruct.run_single`` is called with."""

    head: str
    """Dataset folder."""
    mode: str
    """two-stage | full-rgb | gradient-only | joint."""
    preset: str
    overrides: tuple[str, ...] = ()
    """Config overrides ``section.field=value``."""
    neutral_count: int | None = None
    """Keep only the first this many neutral views of views.json (None: all)."""
    operator_resolution: int | None = None
    """Working resolution of the protected maps (None: the operator's default, 64)."""

    @property
    def key(self) -> str:
        """Folder name of the run under ``--out``: readable and unique per configuration."""
        head = Path(self.head)
        parts = [head.parent.name, head.name, self.mode]
        parts += [re.sub(r"[^A-Za-z0-9.]+", "-", item) for item in self.overrides]
        if self.neutral_count is not None:
            parts.append(f"neutral{self.neutral_count}")
        if self.operator_resolution is not None:
            parts.append(f"op{self.operator_resolution}")
        parts.append(self.preset)
        return "_".join(parts)

    def to_dict(self) -> dict:
        return {**dataclasses.asdict(self), "overrides": list(self.overrides)}

    @classmethod
    def from_dict(cls, data: dict) -> RunSpec:
        return cls(**{**data, "overrides": tuple(data.get("overrides", ()))})


Plan = dict[str, dict[tuple[str, str], RunSpec]]
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


def plan_runs(args) -> Plan:
    """Every experiment's runs. A configuration shared by several experiments (the two-stage run
    on ict_s0 is Table 1, Fig. 7, Fig. 4 and Fig. 5's "all" at once) has one key, so it runs once.
    """
    from privhead.privacy.operators import OperatorConfig

    def spec(head: Path, mode: str = "two-stage", **kwargs) -> RunSpec:
        return RunSpec(str(head), mode, args.preset, **kwargs)

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
        default_resolution = OperatorConfig().resolution
        for name in args.ablation_heads:
            if not (args.data / name / RESOLUTION_FOLDER).is_dir():
                print(f"resolution: {name} has no {RESOLUTION_FOLDER} folder; skipped")
                continue
            head = head_folder(args.data, name, RESOLUTION_FOLDER)
            for resolution in args.operator_resolutions:
                operator = None if resolution == default_resolution else resolution
                plan["resolution"][(name, str(resolution))] = spec(
                    head, operator_resolution=operator
                )
    return plan


def unique_runs(plan: Plan) -> list[RunSpec]:
    runs: dict[str, RunSpec] = {}
    for entries in plan.values():
        for run in entries.values():
            runs.setdefault(run.key, run)
    return list(runs.values())


def load_record(run_dir: Path, run: RunSpec) -> dict | None:
    """The cached record of ``run``, or None when there is none (or it is of another run)."""
    path = run_dir / "record.json"
    if not path.is_file():
        return None
    try:
        record = json.loads(path.read_text())
    except ValueError:
        return None
    return record if record.get("spec") == run.to_dict() else None


def execute(run: RunSpec, out: Path, device: str, force: bool) -> tuple[dict | None, bool]:
    """Run one configuration in a subprocess unless its record is cached.

    Returns:
        (record or None when the run failed, whether it came from the cache).
    """
    run_dir = out / run.key
    record = None if force else load_record(run_dir, run)
    if record is not None:
        return record, True
    if run_dir.exists():  # an interrupted or outdated run: start it again from scratch
        shutil.rmtree(run_dir)
    run_dir.mkdir(parents=True)
    (run_dir / "spec.json").write_text(json.dumps(run.to_dict(), indent=2))
    command = [sys.executable, str(Path(__file__).resolve()), "--single", str(run_dir)]
    command += ["--device", device]
    with open(run_dir / "log.txt", "w") as log:
        completed = subprocess.run(command, stdout=log, stderr=subprocess.STDOUT)
    if completed.returncode != 0:
        tail = (run_dir / "log.txt").read_text().strip().splitlines()[-5:]
        print(f"  FAILED (exit {completed.returncode}); {run_dir / 'log.txt'} ends with:")
        for line in tail:
            print(f"    {line}")
        return None, False
    return json.loads((run_dir / "record.json").read_text()), False


def machine_info(device: str) -> dict:
    """CPU, torch and accelerator of this process (recorded with every run)."""
    import torch

    cpu_model = platform.processor() or None
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.is_file():
        models = re.findall(r"^model name\s*:\s*(.+)$", cpuinfo.read_text(), flags=re.MULTILINE)
        cpu_model = models[0].strip() if models else cpu_model
    available = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None
    return {
        "cpu_count": os.cpu_count(),
        "cpus_available": available,
        "cpu_model": cpu_model,
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
        "omp_num_threads": os.environ.get("OMP_NUM_THREADS"),
        "device": device,
        "gpu": torch.cuda.get_device_name(0) if device.startswith("cuda") else None,
    }


def run_one(run_dir: Path, device: str) -> None:
    """The ``--single`` entry: run ``run_dir/spec.json`` here and write ``record.json``."""
    start = time.perf_counter()
    from bench_reconstruct import run_single

    from privhead.device import resolve_device

    run = RunSpec.from_dict(json.loads((run_dir / "spec.json").read_text()))
    device = str(resolve_device(device))
    head = Path(run.head)
    record = run_single(
        head,
        run.mode,
        run.preset,
        run_dir,
        device,
        list(run.overrides),
        neutral_count=run.neutral_count,
        operator_resolution=run.operator_resolution,
    )
    mm_per_unit = json.loads((head / "face_region.json").read_text()).get("mm_per_unit")
    manifest_path = run_dir / "bundle" / "manifest.json"
    if manifest_path.is_file():
        manifest = json.loads(manifest_path.read_text())
        views = {
            "n_neutral": manifest["n_neutral"],
            "n_protected": manifest["n_protected"],
            "protected_resolution": manifest["working_resolution"],
        }
    else:  # full-RGB baseline: every view as RGB
        views = {"n_neutral": neutral_view_count(head), "n_protected": 0}
        views["n_rgb"] = len(json.loads((head / "views.json").read_text())["views"])
    record.update(
        key=run.key,
        spec=run.to_dict(),
        mm_per_unit=mm_per_unit,
        face_chamfer_mm=(
            {stage: cd * mm_per_unit for stage, cd in record["face_chamfer"].items()}
            if mm_per_unit
            else None
        ),
        stage_meshes={stage: f"run/mesh_{stage}.ply" for stage in record["face_chamfer"]},
        views=views,
        machine=machine_info(device),
        finished_at=datetime.datetime.now().isoformat(timespec="seconds"),
        process_seconds=time.perf_counter() - start,
    )
    # Written under another name first: a killed run never leaves a record that looks complete.
    partial = run_dir / "record.json.partial"
    partial.write_text(json.dumps(record, indent=2))
    partial.replace(run_dir / "record.json")


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
    if record is None or stage not in record.get("face_chamfer", {}):
        return None
    mm = (record.get("face_chamfer_mm") or {}).get(stage)
    return Chamfer(record["face_chamfer"][stage], mm)


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


def ablation_lipschitz_section(entries, records, lipschitz_weight: float) -> tuple[str, str]:
    heads = list(dict.fromkeys(name for name, _ in entries))
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
    table = "\n".join(lines) + (
        f"\n\nWith L_lip: stage 2 weight lambda_3 = {lipschitz_weight:g} (this preset); without: "
        "lambda_3 = 0 (`stage2.lipschitz_weight=0`), everything else equal."
    )
    if not changes:
        return table, "No head has both results yet."
    n = len(changes)
    rises = sum(c > 0 for c in changes.values())
    mean = float(np.mean(list(changes.values())))
    paper = " and ".join(f"{c * 100:+.0f} %" for c in paper_changes)
    text = (
        f"- Without the Lipschitz term the stage 2 distance rises on {count_phrase(rises, n)} "
        f"heads (mean change {mean * 100:+.1f} %; paper {paper}): the paper's pattern "
        f"{'holds' if rises == n else 'holds only partly' if rises else 'does not hold'}.\n"
        f"- Each configuration is one run with seed 0; the spread over seeds is not measured "
        f"here, so a change of a few per cent may be within it."
    )
    return table, text


def neutral_views_section(entries, records) -> tuple[str, str]:
    heads = list(dict.fromkeys(name for name, _ in entries))
    lines = ["| head | neutral views | stage 1 | stage 2 | run s |", "|---|---|---|---|---|"]
    text = []
    for name in heads:
        variants = [variant for head, variant in entries if head == name]
        rows = []
        for variant in variants:
            record = records.get(entries[(name, variant)].key)
            count = record["views"]["n_neutral"] if record else variant
            s1, s2 = chamfer(record, "stage1"), chamfer(record, "stage2")
            rows.append((count, s1, s2))
            lines.append(
                f"| {name} | {count} | {format_chamfer(s1)} | {format_chamfer(s2)} "
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
        "first ones listed in views.json. Paper: 15 and 10 neutral views, no numbers given."
    )
    return table, "\n".join(text)


def resolution_section(entries, records) -> tuple[str, str]:
    heads = list(dict.fromkeys(name for name, _ in entries))
    lines = [
        "| head | protected maps | stage 1 | stage 2 | run s |",
        "|---|---|---|---|---|",
    ]
    text = []
    for name in heads:
        variants = [variant for head, variant in entries if head == name]
        values = []
        for variant in variants:
            record = records.get(entries[(name, variant)].key)
            s1, s2 = chamfer(record, "stage1"), chamfer(record, "stage2")
            values.append((variant, s1, s2))
            size = f"{variant} x {variant} px"
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
    table = "\n".join(lines) + (
        "\n\nThe neutral views stay RGB at the full 256 px; only the sensitive views' protected "
        "maps change resolution."
    )
    return table, "\n".join(text)


def runs_table(runs: list[RunSpec], records: dict, cached: set[str]) -> str:
    lines = [
        "| run | device | protect s | stage s | final mesh s | process s | from cache |",
        "|---|---|---|---|---|---|---|",
    ]
    for run in runs:
        record = records.get(run.key)
        if record is None:
            lines.append(f"| {run.key} | — | — | — | — | failed or missing | |")
            continue
        stages = ", ".join(f"{k} {v:.0f}" for k, v in record["stage_seconds"].items())
        lines.append(
            f"| {run.key} | {record['device']} | {record['protect_seconds']:.0f} | {stages} "
            f"| {record['mesh_seconds']:.0f} | {record['process_seconds']:.0f} "
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
        head = Path(entries[(name, "two-stage")].head)
        dataset = load_dataset(head)
        views = figure_views(dataset.views or {})
        meshes = {}
        for label, mode, stage in columns:
            key = entries[(name, mode)].key
            record = records.get(key)
            path = None if record is None else runs_dir / key / record["stage_meshes"][stage]
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


def kept_analysis(docs: Path) -> dict[str, str]:
    """The hand-written analysis blocks of an existing page, kept when it is regenerated."""
    if not docs.is_file():
        return {}
    text = docs.read_text()
    blocks = {}
    for name in EXPERIMENTS:
        start, end = ANALYSIS_START.format(name=name), ANALYSIS_END.format(name=name)
        match = re.search(re.escape(start) + r"\n(.*?)\n?" + re.escape(end), text, flags=re.S)
        if match:
            blocks[name] = match.group(1)
    return blocks


def describe_machines(records: dict) -> list[str]:
    seen = []
    for record in records.values():
        m = record.get("machine")
        if not m:
            continue
        line = (
            f"{m['cpu_count']} CPUs ({m['cpus_available']} available to the runs"
            f"{', ' + m['cpu_model'] if m.get('cpu_model') else ''}), torch {m['torch']} with "
            f"{m['torch_threads']} threads (OMP_NUM_THREADS={m['omp_num_threads'] or 'unset'}), "
            f"device {m['device']}{' (' + m['gpu'] + ')' if m.get('gpu') else ''}"
        )
        if line not in seen:
            seen.append(line)
    return seen


def write_page(args, plan: Plan, runs, records, cached, figure: Path | None) -> str:
    """Write ``args.docs`` and return the generated comparisons (for the terminal)."""
    from privhead.config import get_preset

    cfg = get_preset(args.preset)
    command = "python " + shlex.join([sys.argv[0], *sys.argv[1:]])
    if os.environ.get("OMP_NUM_THREADS"):
        command = f"OMP_NUM_THREADS={os.environ['OMP_NUM_THREADS']} {command}"
    machines = describe_machines(records) or ["(no finished run)"]
    kept = kept_analysis(args.docs)
    lines = [
        "# Reproducing the paper's experiments",
        "",
        "Generated by `benchmarks/reproduce_paper.py` (rerun it to update this page; the tables "
        "and the pattern lines are rewritten, the analysis blocks are kept):",
        "",
        f"    {command}",
        "",
        f"- date: {datetime.date.today().isoformat()}",
        f"- preset: `{args.preset}` (stage 1 {cfg.stage1.steps} steps, stage 2 "
        f"{cfg.stage2.steps} steps, marching cubes {cfg.mesh_resolution}^3), seed {cfg.seed}, "
        "one run per configuration",
        f"- machine: {machines[0]}",
        *[f"- also: {line}" for line in machines[1:]],
        f"- data: `{args.data}` (synthetic ICT-FaceKit heads, 30 views: 20 sensitive, 10 neutral)",
        "- metric: face-region Chamfer distance (mean of accuracy and completeness) against "
        "`gt_mesh.ply`, query points restricted to the dataset's `face_region.json` sphere "
        "(95 mm around the nose tip, as H3DS); world units, and mm via its `mm_per_unit`. "
        "Paper numbers are in their own units (FaceScape x1e-3, H3DS mm): compare ratios.",
        f"- runs: {len(runs)} ({sum(r.key in cached for r in runs)} from the cache in `{args.out}`"
        f", {sum(r.key not in records for r in runs)} failed or missing)",
        "",
    ]
    sections = {
        "table1": lambda e: table1_section(e, records),
        "ablation_losses": lambda e: ablation_losses_section(e, records),
        "ablation_lipschitz": lambda e: ablation_lipschitz_section(
            e, records, cfg.stage2.lipschitz_weight
        ),
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
            ANALYSIS_START.format(name=name),
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


def main() -> int:
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
    parser.add_argument("--out", type=Path, default=Path("runs/paper"), help="run cache")
    parser.add_argument("--docs", type=Path, default=Path("docs/results.md"))
    parser.add_argument("--force", action="store_true", help="rerun cached configurations")
    parser.add_argument("--dry-run", action="store_true", help="list the runs and stop")
    parser.add_argument("--single", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args.single is not None:
        run_one(args.single, args.device)
        return 0

    unknown = [name for name in args.only if name not in EXPERIMENTS]
    if unknown:
        parser.error(f"unknown experiment {unknown[0]!r}; choose from {', '.join(EXPERIMENTS)}")
    from privhead.config import PRESETS

    if args.preset not in PRESETS:
        parser.error(f"unknown preset {args.preset!r}; choose from {', '.join(PRESETS)}")
    args.data = args.data.resolve()
    plan = plan_runs(args)
    runs = unique_runs(plan)
    records, cached = {}, set()
    print(f"{len(runs)} runs ({args.preset} preset) in {args.out}", flush=True)
    for number, run in enumerate(runs, 1):
        prefix = f"[{number}/{len(runs)}] {run.key}"
        if args.dry_run:
            done = load_record(args.out / run.key, run) is not None
            print(f"{prefix}{' (cached)' if done else ''}")
            continue
        print(f"{prefix} ...", flush=True)
        record, from_cache = execute(run, args.out, args.device, args.force)
        if record is None:
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
    failed = [run.key for run in runs if run.key not in records]
    print(f"wrote {args.docs}" + (f" and {figure}" if figure else ""))
    if failed:
        print(f"{len(failed)} runs failed (see their log.txt): {', '.join(failed)}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
