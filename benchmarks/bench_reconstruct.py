"""Speed and quality benchmark of the reconstruction engine on a multi-view head dataset.

For each head and mode it runs the real pipeline (protect -> reconstruct, or the full-RGB
baseline on the dataset), each run in its own process so that its peak memory is its own, and
reports wall time per stage, mesh time, peak RSS, field throughput and the face-region Chamfer
distance of every stage's mesh against the dataset's ``gt_mesh.ply``.

    python benchmarks/bench_reconstruct.py --preset fast \
        --heads ../shared/data/heads/ict_s0/r64_v30 --modes two-stage,full-rgb --out runs/bench

Results: ``OUT/results.json`` and a markdown table on stdout (copied into docs/benchmarks.md).
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

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
        if device != "cpu":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - start)
    return samples / min(times[1:])


def run_single(
    head: Path,
    mode: str,
    preset: str,
    out: Path,
    device: str,
    extra: list[str],
    neutral_count: int | None = None,
    operator_resolution: int | None = None,
) -> dict:
    """One run in this process; returns timings, peak memory and face Chamfer per stage.

    ``neutral_count`` keeps every sensitive view but only the first ``neutral_count`` neutral
    views of views.json (paper Fig. 5); ``operator_resolution`` is the protected maps' working
    resolution (default the operator's, 64). Both only affect the privacy-bundle modes.
    """
    import dataclasses

    from privhead.config import get_preset
    from privhead.data.formats import load_dataset
    from privhead.demo import face_chamfer
    from privhead.privacy.bundle import write_bundle
    from privhead.privacy.operators import OperatorConfig
    from privhead.privacy.sensitivity import classify_dataset
    from privhead.reconstruct import reconstruct

    cfg = dataclasses.replace(get_preset(preset), mode=mode)
    for item in extra:  # section.field=value overrides, e.g. stage2.lipschitz_weight=0
        key, value = item.split("=", 1)
        section, name = key.split(".")
        sub = getattr(cfg, section)
        typed = type(getattr(sub, name))(json.loads(value))
        cfg = dataclasses.replace(cfg, **{section: dataclasses.replace(sub, **{name: typed})})
    start = time.perf_counter()
    source = head
    protect_seconds = 0.0
    if mode != "full-rgb":
        dataset = load_dataset(head)
        if neutral_count is not None:
            views = dataset.views or {}
            if "neutral_indices" not in views or "sensitive_indices" not in views:
                raise SystemExit(f"{head}: views.json lists no neutral / sensitive indices.")
            kept_neutral = views["neutral_indices"][:neutral_count]
            dataset = dataset.subset(sorted(views["sensitive_indices"] + kept_neutral))
        operator = (
            OperatorConfig()
            if operator_resolution is None
            else OperatorConfig(resolution=operator_resolution)
        )
        source = write_bundle(
            dataset, classify_dataset(dataset), operator, out / "bundle", overwrite=True
        )
        protect_seconds = time.perf_counter() - start
    result = reconstruct(
        source,
        out / "run",
        cfg,
        device=device,
        progress=False,
        stage_meshes=True,
        log=lambda *_: None,
    )
    scores = {
        name: face_chamfer(path, head)["chamfer"] for name, path in result.stage_meshes.items()
    }
    return {
        "head": str(head),
        "mode": mode,
        "preset": preset,
        "overrides": extra,
        "device": device,
        "protect_seconds": protect_seconds,
        "stage_seconds": result.stage_seconds,
        "mesh_seconds": result.mesh_seconds,
        "total_seconds": time.perf_counter() - start,
        "peak_rss_gib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20,
        "face_chamfer": scores,
        "mesh_resolution": cfg.mesh_resolution,
    }


def pipeline_seconds(record: dict) -> float:
    """protect + every stage + the final mesh (intermediate stage meshes excluded)."""
    return (
        record["protect_seconds"] + sum(record["stage_seconds"].values()) + record["mesh_seconds"]
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--heads", nargs="+", type=Path, required=True)
    parser.add_argument("--modes", default="two-stage,full-rgb")
    parser.add_argument("--preset", default="fast")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--out", type=Path, default=Path("runs/bench"))
    parser.add_argument("--set", nargs="*", default=[], help="config overrides section.field=value")
    parser.add_argument("--single", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args.single:
        record = run_single(args.heads[0], args.modes, args.preset, args.out, args.device, args.set)
        (args.out / "record.json").write_text(json.dumps(record, indent=2))
        return

    records = []
    for head in args.heads:
        for mode in args.modes.split(","):
            run_dir = args.out / f"{head.parent.name}_{head.name}_{mode}_{args.preset}"
            if run_dir.exists():
                import shutil

                shutil.rmtree(run_dir)
            run_dir.mkdir(parents=True)
            cmd = [
                sys.executable,
                __file__,
                "--single",
                "--heads",
                str(head),
                "--modes",
                mode,
                "--preset",
                args.preset,
                "--device",
                args.device,
                "--out",
                str(run_dir),
            ]
            if args.set:
                cmd += ["--set", *args.set]
            subprocess.run(cmd, check=True)
            record = json.loads((run_dir / "record.json").read_text())
            records.append(record)
            print(json.dumps(record), flush=True)
    throughput = field_throughput(args.device)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "results.json").write_text(
        json.dumps({"records": records, "field_samples_per_s": throughput}, indent=2)
    )
    print(
        f"\nfield throughput (forward + backward, eikonal, {args.device}): "
        f"{throughput:,.0f} samples/s"
    )
    print(
        "\n| head | mode | stage | face CD (units) | stage s | final mesh s | pipeline s "
        "| peak RSS GiB |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for r in records:
        for stage, cd in r["face_chamfer"].items():
            print(
                f"| {Path(r['head']).parent.name}/{Path(r['head']).name} | {r['mode']} | {stage} | "
                f"{cd:.5f} | {r['stage_seconds'].get(stage, 0):.0f} | {r['mesh_seconds']:.0f} | "
                f"{pipeline_seconds(r):.0f} | {r['peak_rss_gib']:.2f} |"
            )


if __name__ == "__main__":
    main()
