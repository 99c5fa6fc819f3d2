"""The photo path end to end: photo shoot -> prepare -> protect -> reconstruct, against the truth.

For each shoot (the built-in synthetic head rendered as JPEG photos in a textured room, no
camera files; ``privhead.data.synthetic.photos``):

1. ``prepare_dataset``: cameras by SfM, masks, normalisation, face split;
2. camera error after the similarity aligning the SfM camera centres to the true ones
   (``privhead.eval.metrics.camera_errors``), mask IoU against the true masks, face views
   missed by the split (true face-visible views that prepare left neutral);
3. ``protect_dataset`` + ``reconstruct`` of the prepared dataset, its mesh mapped into the true
   frame by that similarity, face Chamfer against the true mesh; and the same head protected
   and reconstructed from the TRUE cameras and masks (``truth/``) at the same preset.

    python benchmarks/bench_prepare.py --out runs/prepare --preset default --seeds 7 \
        --modes walkaround,turntable --docs docs/prepare.md

Writes ``OUT/prepare.json`` and a markdown table (printed, and with ``--docs`` put between the
``<!-- bench-prepare -->`` markers of that file). Only what this run measured is reported.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import time
import traceback
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).resolve().parent))

from privacy_suite import git_commit, machine  # noqa: E402

from privhead.config import resolve_config  # noqa: E402
from privhead.data.formats import load_dataset  # noqa: E402
from privhead.data.synthetic.photos import ShootConfig, write_photo_shoot  # noqa: E402
from privhead.errors import PrivheadError  # noqa: E402
from privhead.eval.metrics import camera_errors, face_chamfer, transform_points  # noqa: E402
from privhead.prepare import PrepareConfig, prepare_dataset  # noqa: E402
from privhead.prepare.masks import mask_iou  # noqa: E402
from privhead.privacy.protect import protect_dataset  # noqa: E402
from privhead.reconstruct import reconstruct  # noqa: E402


def _reconstruct(dataset: Path, out: Path, preset: str, say) -> tuple[Path, float, str]:
    """(mesh, training seconds, mode) of the bundle protected from ``dataset``."""
    mesh = out / "recon" / "mesh.ply"
    if mesh.is_file():
        summary = json.loads((out / "recon" / "summary.json").read_text())
        mode = json.loads((out / "recon" / "config.json").read_text())["mode"]
        return mesh, float(sum(summary["stage_seconds"].values())), mode
    protected = protect_dataset(dataset, out / "bundle", overwrite=True)
    # No neutral view (e.g. a turntable whose registered views all show the face): the
    # template start, as a user would run it (privhead reconstruct --template).
    mode = "two-stage" if protected.n_neutral else "template"
    if mode == "template":
        say("  no neutral view in the bundle: reconstructing from the template")
    cfg = resolve_config(preset, mode)
    result = reconstruct(protected.bundle, out / "recon", cfg, progress=False, log=say)
    return Path(result.mesh), float(sum(result.stage_seconds.values())), mode


def run_shoot(mode: str, seed: int, args, say) -> dict:
    import trimesh

    skin = f"_skin{args.skin_detail:g}" if args.skin_detail else ""
    base = args.out / f"{mode}_s{seed}{skin}"
    shoot = base / "shoot"
    cfg = ShootConfig(
        mode=mode, n_views=args.views, resolution=args.resolution, skin_detail=args.skin_detail
    )
    if not (shoot / "shoot.json").is_file():
        say(f"{mode} s{seed}: rendering the photo shoot ({args.views} x {args.resolution} px)")
        write_photo_shoot(shoot, seed=seed, cfg=cfg, overwrite=True)
    truth_dir = shoot / "truth"
    truth = load_dataset(truth_dir)
    row: dict = {
        "mode": mode,
        "seed": seed,
        "views": args.views,
        "resolution": args.resolution,
        "skin_detail": args.skin_detail,
    }
    start = time.perf_counter()
    try:
        prepared = prepare_dataset(
            shoot / "photos",
            base / "dataset",
            PrepareConfig(image_side=args.resolution),
            overwrite=True,
            log=lambda text: say(f"  {text}"),
        )
    except PrivheadError as exc:
        row.update(prepare_error=f"prepare: {exc}", prepare_seconds=time.perf_counter() - start)
        return row
    row["prepare_seconds"] = time.perf_counter() - start
    dataset = load_dataset(base / "dataset")
    index = {name: k for k, name in enumerate(truth.names)}
    chosen = [index[name] for name in dataset.names]
    errors = camera_errors(dataset.cameras.c2w, truth.cameras.c2w[chosen])
    true_sensitive = {truth.names[i] for i in truth.views["sensitive_indices"]}
    # Only the dataset's views can leave (unregistered and left-out ones are in no output):
    # a missed face view is one of them that is not sensitive.
    missed = sorted((true_sensitive & set(dataset.names)) - set(prepared.sensitive))
    row.update(
        registered=len(dataset.names) + len(prepared.left_out),
        left_out=prepared.left_out,
        sfm_attempt=prepared.sfm_attempt,
        reprojection_px=prepared.mean_reprojection_px,
        median_rotation_deg=errors["median_rotation_deg"],
        max_rotation_deg=errors["max_rotation_deg"],
        median_position=errors["median_position"],
        mask_iou=mask_iou(dataset.masks, truth.masks[chosen]),
        mask_iou_per_view=[mask_iou(a, b) for a, b in zip(dataset.masks, truth.masks[chosen])],
        sensitive=len(prepared.sensitive),
        neutral=len(prepared.neutral),
        true_sensitive=len(true_sensitive),
        missed_face_views=missed,
        mm_per_unit_estimate=prepared.mm_per_unit,
        mm_per_unit_true=truth.face_region["mm_per_unit"],
    )
    if args.preset == "none":
        return row
    say(f"{mode} s{seed}: protect + reconstruct ({args.preset}) from the prepared cameras")
    mesh, seconds, row["mode_prepared"] = _reconstruct(
        base / "dataset", base / "from_prepare", args.preset, say
    )
    aligned = trimesh.load(mesh, process=False)
    aligned.vertices = transform_points(np.array(errors["transform"]), aligned.vertices)
    aligned_path = base / "from_prepare" / "mesh_true_frame.ply"
    aligned.export(aligned_path)
    row["chamfer_prepared"] = face_chamfer(aligned_path, truth_dir)["chamfer"]
    row["seconds_prepared"] = seconds
    say(f"{mode} s{seed}: protect + reconstruct ({args.preset}) from the true cameras")
    mesh, seconds, _ = _reconstruct(truth_dir, base / "from_truth", args.preset, say)
    row["chamfer_true_cameras"] = face_chamfer(mesh, truth_dir)["chamfer"]
    row["seconds_true_cameras"] = seconds
    row["chamfer_ratio"] = row["chamfer_prepared"] / row["chamfer_true_cameras"]
    return row


def table(rows: list[dict]) -> str:
    lines = [
        "| shoot | registered | SfM attempt | reproj. px | rotation error median / max (deg) "
        "| mask IoU | sensitive (true face views) / missed | face Chamfer prepared | true cameras "
        "| ratio |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        name = f"{r['mode']} s{r['seed']}"
        if r.get("skin_detail"):
            name += f", skin detail {r['skin_detail']:g}"
        if "prepare_error" in r:
            lines.append(f"| {name} | failed: {r['prepare_error']} |" + " |" * 8)
            continue
        chamfer = (
            (f"{r['chamfer_prepared']:.4f}", f"{r['chamfer_true_cameras']:.4f}")
            if "chamfer_prepared" in r
            else ("-", "-")
        )
        ratio = f"{r['chamfer_ratio']:.2f}x" if "chamfer_ratio" in r else "-"
        if r.get("mode_prepared") == "template":  # no neutral view came out of prepare
            chamfer = (f"{chamfer[0]} (template)", chamfer[1])
        lines.append(
            f"| {name} | {r['registered']} / {r['views']} | {r['sfm_attempt']} | "
            f"{r['reprojection_px']:.2f} | {r['median_rotation_deg']:.2f} / "
            f"{r['max_rotation_deg']:.2f} | {r['mask_iou']:.3f} | {r['sensitive']} "
            f"({r['true_sensitive']}) / {len(r['missed_face_views'])} | {chamfer[0]} | "
            f"{chamfer[1]} | {ratio} |"
        )
    return "\n".join(lines)


def update_docs(path: Path, block: str) -> None:
    text = path.read_text()
    begin, end = "<!-- bench-prepare:begin -->", "<!-- bench-prepare:end -->"
    if begin not in text:
        raise SystemExit(f"{path} has no {begin} marker")
    pattern = re.compile(re.escape(begin) + ".*?" + re.escape(end), re.S)
    path.write_text(pattern.sub(lambda _: f"{begin}\n{block}\n{end}", text))


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=REPO / "runs" / "prepare")
    parser.add_argument("--preset", default="default", help="Reconstruction preset, or none.")
    parser.add_argument("--seeds", default="7")
    parser.add_argument("--modes", default="walkaround,turntable")
    parser.add_argument("--views", type=int, default=30)
    parser.add_argument("--resolution", type=int, default=512)
    parser.add_argument(
        "--skin-detail",
        type=float,
        default=0.0,
        help="Fine albedo texture of the head (ShootConfig.skin_detail, e.g. 0.35; 0 = the "
        "smooth albedo, on which a turntable has almost no features for SfM)",
    )
    parser.add_argument("--docs", type=Path, default=None)
    args = parser.parse_args(argv)
    start = time.perf_counter()
    say = lambda text: print(f"[{time.perf_counter() - start:6.0f} s] {text}", flush=True)  # noqa: E731
    args.out.mkdir(parents=True, exist_ok=True)
    rows = []
    for mode in args.modes.split(","):
        for seed in (int(s) for s in args.seeds.split(",")):
            try:
                rows.append(run_shoot(mode, seed, args, say))
            except Exception as exc:  # noqa: BLE001 - report and go on with the next shoot
                traceback.print_exc()
                # prepare's own failures are rows of run_shoot; this is any later step's crash
                error = f"crashed: {type(exc).__name__}: {exc}"[:160].replace("|", "/")
                rows.append({"mode": mode, "seed": seed, "prepare_error": error})
            (args.out / "prepare.json").write_text(json.dumps(rows, indent=1))
    minutes = (time.perf_counter() - start) / 60
    command = "python benchmarks/bench_prepare.py " + " ".join(argv or sys.argv[1:])
    block = (
        f"Measured by `{command}` at commit `{git_commit()}` on {machine()} in {minutes:.0f} min; "
        f"reconstruction preset `{args.preset}`; Chamfer in world units of the true frame.\n\n"
        + table(rows)
    )
    print(block)
    if args.docs:
        update_docs(args.docs, block)
    return 0


if __name__ == "__main__":
    sys.exit(main())
