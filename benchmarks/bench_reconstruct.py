"""Speed and quality benchmark of the reconstruction engine on multi-view head datasets.

For each head and mode it runs the real pipeline through the shared runner
(``benchmarks/_runs.py``: ``protect_dataset`` with the face detectors -> ``reconstruct``, or
the full-RGB baseline on the dataset; each run in its own process so that its peak memory is
its own) and reports wall time per stage, mesh time, peak RSS, field throughput and the official
face-region Chamfer distance (``privhead.eval.metrics.face_chamfer``) of every stage's mesh.
Runs are cached in ``--out`` under a key of the resolved config, the dataset and the git commit:
rerunning the same command on the same clean commit reuses them (``--force`` reruns).

    python benchmarks/bench_reconstruct.py --preset fast \
        --heads ../shared/data/heads/ict_s0/r64_v30 --modes two-stage,full-rgb --out runs/bench

Results: ``OUT/results.json`` (the records, the field throughput, machine and commit) and a
markdown table on stdout.
"""

from __future__ import annotations

import argparse
import itertools
import json
import statistics
import sys
import time
from pathlib import Path

import _runs
import torch


def field_throughput(device: str = "cpu", samples: int = 65536, repeats: int = 5) -> float:
    """Samples per second of the field, forward + backward, with the eikonal term."""
    from privhead.config import get_preset
    from privhead.field.model import HeadField
    from privhead.train.losses import eikonal_loss

    field = HeadField(get_preset("default").field).to(device)
    points = (torch.rand(samples, 3, device=device) * 2 - 1) * 0.9
    dirs = torch.nn.functional.normalize(torch.randn(samples, 3, device=device), dim=-1)
    times = []
    for _ in range(repeats + 1):
        start = time.perf_counter()
        sdf, grad, rgb = field.query(points, dirs)
        loss = rgb.mean() + sdf.abs().mean() + eikonal_loss(grad)
        loss.backward()
        if torch.device(device).type == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - start)
    return samples / min(times[1:])


def head_label(record: dict) -> str:
    path = Path(record["spec"]["dataset"])
    return f"{path.parent.name}/{path.name}"


def _seed(record: dict) -> str:
    seed = record["spec"].get("seed")
    return "preset" if seed is None else str(seed)


def results_table(records: list[dict]) -> str:
    lines = [
        "| head | mode | seed | stage | face CD (units) | face CD (mm) | surface CD (units) "
        "| normal error deg | stage s | final mesh s | pipeline s | peak RSS GiB |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in records:
        for stage in r["face_chamfer"]:
            mm = _runs.chamfer_mm(r, stage)
            entry = r["face_chamfer"][stage]
            surface = entry.get("surface_chamfer")  # records before the surface metric lack it
            normal = entry.get("normal_error_deg")
            lines.append(
                f"| {head_label(r)} | {r['spec']['mode']} | {_seed(r)} | {stage} "
                f"| {_runs.chamfer_units(r, stage):.5f} | {'—' if mm is None else f'{mm:.2f}'} "
                f"| {'—' if surface is None else f'{surface:.5f}'} "
                f"| {'—' if normal is None else f'{normal:.1f}'} "
                f"| {r['stage_seconds'].get(stage, 0):.0f} | {r['mesh_seconds']:.0f} "
                f"| {_runs.pipeline_seconds(r):.0f} | {r['peak_rss_gib']:.2f} |"
            )
    return "\n".join(lines)


def spread_table(records: list[dict]) -> str:
    """Mean, sample standard deviation and range of the face Chamfer distance over seeds, per
    head, mode and stage (single runs of stage 2 move by up to ~20 % under tiny perturbations,
    so engine changes are compared on these)."""
    groups: dict[tuple, list[float]] = {}
    for r in records:
        for stage in r["face_chamfer"]:
            key = (head_label(r), r["spec"]["mode"], stage)
            groups.setdefault(key, []).append(_runs.chamfer_units(r, stage))
    lines = [
        "| head | mode | stage | seeds | mean face CD | std | min | max |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for (head, mode, stage), values in groups.items():
        std = statistics.stdev(values) if len(values) > 1 else float("nan")
        lines.append(
            f"| {head} | {mode} | {stage} | {len(values)} | {statistics.fmean(values):.5f} "
            f"| {std:.5f} "
            f"| {min(values):.5f} | {max(values):.5f} |"
        )
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__.splitlines()[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--heads", nargs="+", type=Path, required=True, help="dataset folders")
    parser.add_argument("--modes", default="two-stage,full-rgb", help="comma list")
    parser.add_argument("--preset", default="fast", help="tiny | fast | default | paper")
    parser.add_argument("--device", default="auto", help="auto (CUDA when present) | cpu | cuda")
    parser.add_argument("--out", type=Path, default=Path("runs/bench"), help="run cache")
    parser.add_argument(
        "--set",
        dest="overrides",
        action="extend",
        nargs="+",
        default=[],
        metavar="KEY=VALUE",
        help="config overrides section.field=value (privhead.config.apply_overrides)",
    )
    parser.add_argument(
        "--operator",
        action="extend",
        nargs="+",
        default=[],
        metavar="KEY=VALUE",
        help="OperatorConfig fields of the bundle (e.g. linear_light=true resolution=48)",
    )
    parser.add_argument("--seed", type=int, default=None, help="run seed (default the preset's)")
    parser.add_argument(
        "--seeds",
        default=None,
        help="comma list of seeds: a run each, and a table of mean and spread (overrides --seed)",
    )
    parser.add_argument("--detector", default="auto", help="face detectors of protect_dataset")
    parser.add_argument("--force", action="store_true", help="rerun cached runs")
    parser.add_argument(
        "--all-protected",
        action="store_true",
        help="protect every view (no neutral RGB; the template's setting, paper Fig. 6)",
    )
    parser.add_argument("--no-throughput", action="store_true", help="skip the field throughput")
    args = parser.parse_args(argv)

    seeds = [args.seed] if args.seeds is None else [int(x) for x in args.seeds.split(",")]
    operator = {}
    for item in args.operator:
        key, _, value = item.partition("=")
        operator[key] = json.loads(value.lower() if value.lower() in ("true", "false") else value)
    records = []
    for head, mode, seed in itertools.product(args.heads, args.modes.split(","), seeds):
        spec = _runs.RunSpec(
            str(head),
            mode,
            args.preset,
            tuple(args.overrides),
            operator=operator,
            seed=seed,
            detector=args.detector,
            device=args.device,
            all_protected=args.all_protected,
        )
        try:
            record, cached = _runs.execute(spec, args.out, force=args.force)
        except _runs.RunFailed as exc:
            print(exc, file=sys.stderr)
            return 1
        records.append(record)
        print(
            f"{spec.label}: {'from the cache' if cached else 'ran'} "
            f"({record['process_seconds']:.0f} s)",
            flush=True,
        )
    from privhead.device import resolve_device

    device = str(resolve_device(args.device))
    throughput = None if args.no_throughput else field_throughput(device)
    machine, git = _runs.machine_info(device), _runs.git_state()
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "results.json").write_text(
        json.dumps(
            {
                "records": records,
                "field_samples_per_s": throughput,
                "machine": machine,
                "commit": git["commit"],
                "dirty": git["dirty"],
            },
            indent=2,
        )
    )
    print()
    commits = sorted({f"{r['commit']}{' (dirty)' if r['dirty'] else ''}" for r in records})
    print(f"commit: {', '.join(commits)}")
    for line in sorted({_runs.describe_machine(r["machine"]) for r in records}):
        print(f"machine: {line}")
    for line in dict.fromkeys(f"{head_label(r)}: {_runs.describe_views(r)}" for r in records):
        print(line)
    if throughput is not None:
        print(
            f"field throughput (forward + backward, eikonal, {device}, "
            f"{machine['torch_threads']} torch threads): {throughput:,.0f} samples/s"
        )
    print()
    print(results_table(records))
    if len(seeds) > 1:
        print()
        print(spread_table(records))
    return 0


if __name__ == "__main__":
    sys.exit(main())
