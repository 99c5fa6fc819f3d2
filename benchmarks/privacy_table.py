"""Paper Table 2 / Table 4 on the shared and the built-in synthetic heads: the privacy audit of
every head, pooled.

For each head: originals = its sensitive views (views.json); protected maps = the bundle that
``privhead protect`` writes (the library's :func:`protect_dataset`, face detectors included, then
:func:`read_bundle`; maps of views only a detector protected are left out of the pairing); the
inversion
attack on those maps; GT-mesh renders (``gt_mesh.ply`` through ``render_mesh`` from the same
cameras) as a stand-in for mesh renders, labelled as such. Renders of a reconstruction are added
when ``--renders-root ROOT/HEAD/{renders,mesh_renders,baseline_renders}`` folders exist. The
impostors of a head are all other identities (other shared heads, other synthetic seeds) and
the 100 lfw_subset faces.

Usage (needs ``pip install 'privhead[audit]'``; about 10 minutes on 2 busy cores):

    python benchmarks/privacy_table.py --out benchmarks/out/privacy --update-docs docs/privacy.md
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
import time
from pathlib import Path

import _runs
import numpy as np
import torch

from privhead.data.formats import load_dataset
from privhead.data.synthetic import write_synthetic_head
from privhead.mesh.render import render_mesh
from privhead.privacy.audit import (
    GT_MESH_RENDERS,
    KIND_LABELS,
    PROTECTED,
    ImageSet,
    InversionConfig,
    clean_for_json,
    detection_table,
    lfw_impostors,
    perceptual_table,
    read_bundle_protected,
    read_image_folder,
    run_audit,
    verification_table,
    write_report,
)
from privhead.privacy.faces import (
    load_detectors,
    load_recognizers,
    roc_auc,
    verification_rates,
)
from privhead.privacy.operators import OperatorConfig
from privhead.privacy.protect import protect_dataset

REPO = Path(__file__).resolve().parents[1]
MARK_START, MARK_END = "<!-- privacy-table:start -->", "<!-- privacy-table:end -->"


def shared_root() -> Path:
    return Path(os.environ.get("PRIVHEAD_SHARED", REPO.parent / "shared"))


def head_folders(args) -> list[tuple[str, str, Path]]:
    """(head name, identity, dataset folder) of every head to audit."""
    heads = []
    root = shared_root() / "data" / "heads"
    for identity in ("ict_s0", "ict_s1", "ict_s2"):
        for folder in ("r64_v30", "r256_v30"):
            path = root / identity / folder
            if path.is_dir():
                heads.append((f"{identity}_{folder.split('_')[0]}", identity, path))
    synth = Path(args.out) / "synthetic"
    for seed in args.synthetic_seeds:
        for resolution in [64] + ([256] if seed in args.synthetic_256_seeds else []):
            path = synth / f"s{seed}_r{resolution}"
            if not (path / "views.json").is_file():
                print(f"generating synthetic head seed {seed} at {resolution} px", flush=True)
                write_synthetic_head(
                    path,
                    seed=seed,
                    resolution=resolution,
                    supersample=4 if resolution <= 64 else 2,
                    overwrite=True,
                )
            heads.append((f"synth_s{seed}_r{resolution}", f"synth_s{seed}", path))
    return heads


def gt_mesh_renders(dataset, originals: ImageSet) -> ImageSet | None:
    """The GT mesh rendered (clay, headlight, black background) from the originals' cameras."""
    if dataset.gt_mesh is None:
        return None
    from privhead.eval.metrics import load_mesh

    mesh = load_mesh(dataset.gt_mesh)
    cams = dataset.cameras
    images = []
    for name in originals.names:
        i = dataset.names.index(name)
        rgb = render_mesh(
            mesh, cams.K[i], cams.c2w[i], cams.width, cams.height, background=(0, 0, 0)
        )
        images.append(rgb.astype(np.float32) / 255.0)
    return ImageSet(originals.identity, list(originals.names), images, f"{dataset.gt_mesh} renders")


def pooled_table(results: list[dict], models: list[str], key: str) -> str:
    """Markdown table over several heads: distances pooled before computing the rates."""
    kinds = {}
    for kind, label in KIND_LABELS.items():
        entries = [r["kinds"][kind] for r in results if kind in r["kinds"]]
        if not entries:
            continue
        verification = {}
        for model in models:
            genuine, impostor, other, n_other = [], [], 0.0, 0
            for entry in entries:
                v = entry["verification"].get(model)
                if v is None:
                    continue
                genuine += [np.inf if d is None else d for d in v["genuine_distances"]]
                impostor += [np.inf if d is None else d for d in v["impostor_distances"]]
                if v.get("false_accept_other") is not None:
                    other, n_other = other + v["false_accept_other"], n_other + 1
            threshold = next(m["threshold"] for m in results[0]["models"] if m["name"] == model)
            rates = verification_rates(genuine, impostor, threshold)
            verification[model] = {
                **rates,
                "auc": roc_auc(genuine, impostor),
                "false_accept_other": other / n_other if n_other else float("nan"),
            }
        kinds[kind] = {"label": label, "verification": verification}
    return verification_table(kinds, models, key)


def pooled_detection(results: list[dict], detectors: list[str]) -> str:
    kinds = {}
    for kind, label in KIND_LABELS.items():
        entries = [r["kinds"][kind] for r in results if kind in r["kinds"]]
        if not entries:
            continue
        n = sum(e["n_images"] for e in entries)
        detection = {
            d: sum(e["detection"][d] * e["n_images"] for e in entries) / max(n, 1)
            for d in [*detectors, "any"]
        }
        located = {k: sum(e["located"][k] for e in entries) for k in ("own", "original", "none")}
        kinds[kind] = {"label": label, "n_images": n, "detection": detection, "located": located}
    return detection_table(kinds, detectors)


def pooled_perceptual(results: list[dict]) -> str:
    pooled = {"protected": {}, "rgb": {}}
    for side in pooled:
        for metric in ("st_lpips", "ssim", "psnr"):
            values = []
            for r in results:
                p = r.get("perceptual")
                if p and metric in p[side]:
                    values += p[side][metric]["values"]
            if values:
                values = np.asarray(values, dtype=np.float64)
                values = values[np.isfinite(values)]
                pooled[side][metric] = {"mean": float(values.mean()), "std": float(values.std())}
    n_pairs = sum(r["perceptual"]["n_pairs"] for r in results if r.get("perceptual"))
    return perceptual_table(pooled) + f"\n\n({n_pairs} same-view pairs of different identities.)"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=str(REPO / "out" / "privacy"))
    parser.add_argument(
        "--synthetic-seeds", type=lambda s: [int(v) for v in s.split(",") if v], default=[0, 1, 2]
    )
    parser.add_argument(
        "--synthetic-256-seeds", type=lambda s: [int(v) for v in s.split(",") if v], default=[0]
    )
    parser.add_argument(
        "--heads", default="", help="Comma list of head names to audit (default all)."
    )
    parser.add_argument("--inversion-steps", type=int, default=400)
    parser.add_argument("--renders-root", default=None)
    parser.add_argument("--lfw", type=int, default=100, help="lfw_subset faces used as impostors.")
    parser.add_argument(
        "--update-docs", default=None, help="Markdown file whose table block to replace."
    )
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    start = time.perf_counter()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)

    heads = head_folders(args)
    detectors = load_detectors("auto")
    recognizers = load_recognizers("auto")
    operator_cfg = OperatorConfig()
    sets, protected_sets, meshes = {}, {}, {}
    for name, identity, path in heads:
        dataset = load_dataset(path)
        originals_all = ImageSet(
            identity,
            list(dataset.names),
            [im.astype(np.float32) for im in dataset.images],
            str(path),
        )
        sensitive = [dataset.names[i] for i in dataset.views["sensitive_indices"]]
        sets[name] = originals_all.subset(sensitive)
        bundle_dir = out / "bundles" / name
        protect_dataset(dataset, bundle_dir, operator_cfg, detector="auto", overwrite=True)
        protected_sets[name] = read_bundle_protected(bundle_dir, identity)
        meshes[name] = gt_mesh_renders(dataset, sets[name])
    lfw = lfw_impostors(args.lfw) if args.lfw else None

    selected = [h for h in heads if not args.heads or h[0] in args.heads.split(",")]
    cache: dict = {}
    results = {}
    for name, identity, _path in selected:
        t0 = time.perf_counter()
        impostors = [sets[other] for other, other_id, _ in heads if other_id != identity]
        if lfw is not None:
            impostors.append(lfw)
        derived = {PROTECTED: protected_sets[name]}
        if meshes[name] is not None:
            derived[GT_MESH_RENDERS] = meshes[name]
        if args.renders_root:
            for kind in ("renders", "mesh_renders", "baseline_renders"):
                folder = Path(args.renders_root) / name / kind
                if folder.is_dir():
                    derived[kind] = read_image_folder(folder, identity)
        result = run_audit(
            sets[name],
            derived,
            impostors,
            detectors,
            recognizers,
            operator_cfg,
            InversionConfig(steps=args.inversion_steps) if args.inversion_steps > 0 else None,
            gallery_cache=cache,
            progress=lambda line, n=name: print(f"[{n}] {line}", flush=True),
        )
        write_report(result, out / name)
        results[name] = clean_for_json(result.to_dict())
        print(f"[{name}] done in {time.perf_counter() - t0:.0f} s", flush=True)

    models = [r.name for r in recognizers]
    detector_names = [d.name for d in detectors]
    groups = {
        "64x64 heads": [r for n, r in results.items() if n.endswith("_r64")],
        "256x256 heads": [r for n, r in results.items() if n.endswith("_r256")],
    }
    sections = []
    for title, group in groups.items():
        if not group:
            continue
        names = [n for n, r in results.items() if r in group]
        sections += [
            f"### {title} ({', '.join(names)})",
            "",
            "Genuine pairs accepted at each model's standard threshold (%; the paper's Table 2 "
            "metric):",
            "",
            pooled_table(group, models, "verified"),
            "",
            "False accepts on impostor pairs (%; other heads, same views):",
            "",
            pooled_table(group, models, "false_accept"),
            "",
            "False accepts against the 100 lfw_subset faces (%):",
            "",
            pooled_table(group, models, "false_accept_other"),
            "",
            "ROC-AUC (genuine vs impostor distances; 0.5 = chance):",
            "",
            pooled_table(group, models, "auc"),
            "",
            "Face detection rate (%):",
            "",
            pooled_detection(group, detector_names),
            "",
            "Perceptual similarity across identities, same view (paper Table 4):",
            "",
            pooled_perceptual(group),
            "",
        ]
    elapsed = time.perf_counter() - start
    git = _runs.git_state()
    commit = f"{git['commit'] or 'unknown'}{' (dirty tree)' if git['dirty'] else ''}"
    sections.append(
        f"_Measured by `benchmarks/privacy_table.py` in {elapsed / 60:.1f} min at commit "
        f"`{commit}` on {_runs.describe_machine(_runs.machine_info('cpu'))}; detectors: "
        f"{', '.join(detector_names)}; models: {', '.join(models)}._"
    )
    table = "\n".join(sections)
    (out / "privacy_table.md").write_text(table + "\n")
    (out / "privacy_table.json").write_text(json.dumps(results, indent=1) + "\n")
    print(table)
    if args.update_docs:
        doc = Path(args.update_docs)
        text = doc.read_text()
        pattern = re.compile(re.escape(MARK_START) + ".*?" + re.escape(MARK_END), re.S)
        if not pattern.search(text):
            print(f"{doc} has no {MARK_START} ... {MARK_END} block", file=sys.stderr)
            return 1
        doc.write_text(pattern.sub(lambda _: f"{MARK_START}\n{table}\n{MARK_END}", text))
        print(f"updated {doc}")
    print(f"wrote {out / 'privacy_table.md'} in {elapsed:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
