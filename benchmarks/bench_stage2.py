"""Stage-2 variants from one shared stage 1: the fair comparison of stage-2-only changes.

A two-stage run's stage 1 does not depend on any ``stage2.*`` setting, so stage-2 variants
(priors, weights, learning rates) can start from the same stage-1 field: the difference between
two rows is the variant, not stage-1 noise, and each row costs only its stage 2. The stage-1
field, its RNG state and the bundle come from a finished run of ``benchmarks/_runs.py`` (a
``bench_reconstruct.py`` cache entry: ``RUN/bundle`` and ``RUN/run/checkpoints/stage1.pt``).
Each variant is trained with the library's Trainer from that checkpoint, meshed at the preset's
resolution and scored with the official face metric (face Chamfer and face normal error).

    python benchmarks/bench_stage2.py --run runs/seeds/ict_s0_r64_v30_two-stage_fast_seed0-* \
        --dataset ../shared/data/heads/ict_s0/r64_v30 --out runs/stage2 \
        --variant "baseline:" --variant "normal 0.01:stage2.normal_smooth_weight=0.01"

Results: ``OUT/results.json`` (one record per variant, cached by its resolved config and the
git commit) and a markdown table on stdout.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
import time
from pathlib import Path

import _runs
import numpy as np
import torch

from privhead.config import apply_overrides, config_from_dict, config_to_dict
from privhead.eval.metrics import face_chamfer
from privhead.privacy.bundle import read_bundle
from privhead.reconstruct import mesh_from_field
from privhead.train.checkpoint import read_checkpoint
from privhead.train.trainer import Trainer
from privhead.train.views import views_from_bundle


def parse_variant(text: str) -> tuple[str, list[str]]:
    """``"name:key=value;key=value"`` -> (name, overrides); keys ``stage2.*`` or ``render.*``
    (settings that may change after stage 1)."""
    name, _, rest = text.partition(":")
    overrides = [item.strip() for item in rest.split(";") if item.strip()]
    for item in overrides:
        if not item.startswith(("stage2.", "render.")):
            raise SystemExit(f"variant {name!r}: {item!r} is not a stage2.* or render.* override")
    return name.strip(), overrides


def run_variant(run: Path, dataset: Path, overrides: list[str], out: Path) -> dict:
    """Stage 2 with ``overrides`` from RUN's stage-1 checkpoint; mesh and face metric."""
    checkpoint = read_checkpoint(run / "run" / "checkpoints" / "stage1.pt")
    base = config_from_dict(checkpoint["config"])
    cfg = apply_overrides(base, overrides)
    bundle = read_bundle(run / "bundle")
    device = torch.device("cpu")
    views = views_from_bundle(bundle, device)
    trainer = Trainer(cfg, views, out, device, progress=False)
    trainer.field.load_state_dict(checkpoint["field"])
    trainer.stage_index = 1
    trainer.step = 0
    trainer.stage_seconds = dict(checkpoint["stage_seconds"])
    torch.set_rng_state(checkpoint["rng"])
    seconds = trainer.run()
    mesh = mesh_from_field(trainer.field.eval(), views.scale_mat, cfg.mesh_resolution, True, device)
    mesh.export(out / "mesh.ply")
    metric = face_chamfer(out / "mesh.ply", dataset)
    return {"stage2_seconds": seconds.get("stage2"), "face": metric}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--run", type=Path, required=True, help="a finished two-stage run")
    parser.add_argument("--dataset", type=Path, required=True, help="its dataset (ground truth)")
    parser.add_argument("--out", type=Path, default=Path("runs/stage2"), help="result cache")
    parser.add_argument(
        "--variant",
        action="append",
        required=True,
        help='"name:stage2.key=value;render.key=value" (repeatable; "name:" = unchanged)',
    )
    parser.add_argument(
        "--figure", type=Path, help="PNG: clay renders of the face of GT and every variant"
    )
    parser.add_argument("--threads", type=int, default=2, help="torch threads")
    parser.add_argument("--force", action="store_true", help="rerun cached variants")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    args.out.mkdir(parents=True, exist_ok=True)
    git = _runs.git_state()
    base = read_checkpoint(args.run / "run" / "checkpoints" / "stage1.pt")["config"]
    rows = []
    for text in args.variant:
        name, overrides = parse_variant(text)
        cfg = config_to_dict(apply_overrides(config_from_dict(base), overrides))
        material = {"config": cfg, "run": str(args.run.resolve()), "git": git}
        key = hashlib.sha256(json.dumps(material, sort_keys=True).encode()).hexdigest()[:16]
        folder = args.out / key
        record_path = folder / "record.json"
        if record_path.is_file() and not args.force and not git.get("dirty"):
            record = json.loads(record_path.read_text())
        else:
            folder.mkdir(parents=True, exist_ok=True)
            tic = time.perf_counter()
            result = run_variant(args.run, args.dataset, overrides, folder)
            record = {
                "name": name,
                "overrides": overrides,
                "commit": git,
                "wall_seconds": time.perf_counter() - tic,
                **result,
            }
            record_path.write_text(json.dumps(record, indent=2))
        record["name"] = name
        record["mesh"] = str(folder / "mesh.ply")
        rows.append(record)
        print(f"{name}: {_row(record)}", flush=True)
    (args.out / "results.json").write_text(json.dumps(rows, indent=2))
    if args.figure:
        stage1 = args.run / "run" / "mesh_stage1.ply"
        print(f"figure: {face_figure(args.dataset, rows, args.figure, stage1)}")
    print(
        "\n| variant | overrides | face CD (units) | face CD (mm) | face normal error (deg) "
        "| stage 2 s |\n|---|---|---|---|---|---|"
    )
    for record in rows:
        print(f"| {record['name']} | {'; '.join(record['overrides']) or '—'} | {_row(record)} |")
    return 0


def face_figure(dataset: Path, rows: list[dict], path: Path, stage1: Path | None = None) -> Path:
    """Clay renders, frontal and three-quarter, of the ground truth and each variant's mesh:
    the ripple and bumps the normal error measures, seen."""
    import trimesh

    from privhead.mesh.render import orbit_cameras, render_views, save_grid

    region = json.loads((dataset / "face_region.json").read_text())
    center = np.asarray(region["sphere_center"])
    forward = np.asarray(region.get("forward", [0.0, 0.0, 1.0]))
    up = region.get("up", [0.0, 1.0, 0.0])
    # Azimuth 0 of orbit_cameras is +Z: start at the face's own direction (about +Y).
    start = float(np.degrees(np.arctan2(forward[0], forward[2])))
    radius = region["sphere_radius"]
    target = center - 0.5 * radius * forward / np.linalg.norm(forward)  # inside the head
    cams = orbit_cameras(8, 3.5 * radius, 5.0, 40.0, 320, 320, target, up, start).subset([0, 1])
    meshes = [("ground truth", dataset / "gt_mesh.ply")]
    if stage1 is not None and stage1.is_file():
        meshes.append(("stage 1 (shared start)", stage1))
    meshes += [
        (
            f"{r['name']}: {r['face']['chamfer_mm']:.2f} mm, "
            f"{r['face']['normal_error_deg']:.1f} deg",
            Path(r["mesh"]),
        )
        for r in rows
    ]
    images, labels = [], []
    for label, mesh_path in meshes:
        mesh = trimesh.load(mesh_path)
        for i, image in enumerate(render_views(mesh, cams)):
            images.append(image)
            labels.append(label if i == 0 else "")
    return save_grid(images, path, ncols=4, labels=labels)


def _row(record: dict) -> str:
    face = record["face"]
    mm = face.get("chamfer_mm")
    return (
        f"{face['chamfer']:.5f} | {'—' if mm is None else f'{mm:.2f}'} "
        f"| {face['normal_error_deg']:.1f} | {record['stage2_seconds']:.0f}"
    )


if __name__ == "__main__":
    sys.exit(main())
