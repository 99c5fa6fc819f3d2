"""The privacy-fidelity curve: for each candidate operator, what it leaks and what it costs.

- y (leakage): worst-case rank-1 identification over the attack suite on the real faces
  (other-photo gallery: the criterion; source-photo gallery: the upper bound), from
  ``privacy_suite.run_real`` with every attack, the learned inverter retrained for each operator.
- x (fidelity): stage-2 face Chamfer distance on the shared heads (r64_v30), as a multiple of
  the full-RGB baseline at the same preset; stage 1 is trained once per head (it sees only
  the neutral RGB, the same for every operator) and each operator's stage 2 resumes from it.
- time: stage-2 seconds beside it.

    python benchmarks/privacy_sweep.py --out runs/sweep --preset fast --docs docs/privacy.md

Writes ``OUT/sweep.json``, ``OUT/curve.png`` (copied to docs/figures/privacy_curve.png with
``--docs``) and a markdown table. Only what this run measured is printed.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import shutil
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from privacy_suite import (  # noqa: E402
    REPO,
    SHARED_HEADS,
    SuiteConfig,
    git_commit,
    machine,
    run_real,
)

from privhead.config import resolve_config  # noqa: E402
from privhead.eval.metrics import face_chamfer  # noqa: E402
from privhead.privacy.audit.identify import Estimate  # noqa: E402
from privhead.privacy.audit.suite import ATTACKS, suite_table  # noqa: E402
from privhead.privacy.operators import PAPER_OPERATOR, OperatorConfig  # noqa: E402
from privhead.privacy.protect import protect_dataset  # noqa: E402
from privhead.reconstruct import reconstruct  # noqa: E402

CANDIDATES: dict[str, dict] = {
    "paper (sobel 64)": PAPER_OPERATOR.to_dict(),
    "paper + features suppressed": {"suppress_features": 0.35},
    # Downsampling in linear light changes the maps of photos larger than 64 px only (real
    # faces; the shared heads' fidelity runs are 64 px and unchanged).
    "paper + linear light": {"linear_light": True},
    "32 px": {"resolution": 32},
    "clip 0.05": {"clip": 0.05},
    "32 px, luminance, clip 0.1": {"resolution": 32, "luminance": True, "clip": 0.1},
    "32 px, lum., clip 0.1, 4 levels": {
        "resolution": 32,
        "luminance": True,
        "clip": 0.1,
        "levels": 4,
    },
    "32 px, lum., clip 0.1, features suppressed": {
        "resolution": 32,
        "luminance": True,
        "clip": 0.1,
        "suppress_features": 0.35,
    },
    "48 px, lum., clip 0.1": {"resolution": 48, "luminance": True, "clip": 0.1},
    # The 48 px candidates with linear light (standard uses it; strong was measured with it and
    # kept the sRGB averaging, docs/privacy.md).
    "48 px, lum., clip 0.1, linear light": {
        "resolution": 48,
        "luminance": True,
        "clip": 0.1,
        "linear_light": True,
    },
    "48 px, lum., clip 0.1, features suppressed, linear light": {
        "resolution": 48,
        "luminance": True,
        "clip": 0.1,
        "suppress_features": 0.35,
        "linear_light": True,
    },
    "48 px, lum., clip 0.1, features suppressed": {
        "resolution": 48,
        "luminance": True,
        "clip": 0.1,
        "suppress_features": 0.35,
    },
    "32 px, lum., clip 0.1, blur 1": {
        "resolution": 32,
        "luminance": True,
        "clip": 0.1,
        "blur_sigma": 1.0,
    },
    "32 px, lum., clip 0.1, noise 0.01": {
        "resolution": 32,
        "luminance": True,
        "clip": 0.1,
        "noise": 0.01,
    },
}
"""The operators tried (name -> fields replaced in the paper operator)."""


def _finished(run_dir: Path) -> dict:
    return json.loads((run_dir / "summary.json").read_text())


def fidelity(operator: OperatorConfig, name: str, heads, preset: str, out: Path, say) -> dict:
    """Stage-2 face Chamfer and seconds per head, stage 1 shared across operators."""
    cfg = resolve_config(preset)
    per_head = {}
    for head in heads:
        label = head.parent.name
        base = out / "fidelity" / label
        stage1_run = base / "stage1"
        slug = "".join(c if c.isalnum() else "_" for c in name)
        run_dir = base / slug
        record = run_dir / "record.json"
        if record.is_file():
            per_head[label] = json.loads(record.read_text())
            continue
        if not (stage1_run / "checkpoints" / "stage1.pt").is_file():
            # The paper operator's two-stage run; every other operator's stage 2 resumes from
            # its stage-1 checkpoint (stage 1 sees the neutral RGB only).
            say(f"{label}: two-stage run with the paper operator ({preset}); its stage 1 is shared")
            shutil.rmtree(stage1_run, ignore_errors=True)
            paper_bundle = protect_dataset(
                head, base / "paper_bundle", PAPER_OPERATOR, overwrite=True
            ).bundle
            reconstruct(paper_bundle, stage1_run, cfg, progress=False, log=say)
        if operator == PAPER_OPERATOR:
            result = _finished(stage1_run)
        else:
            bundle = protect_dataset(head, run_dir / "bundle", operator, overwrite=True).bundle
            recon = run_dir / "run"
            shutil.rmtree(recon, ignore_errors=True)
            (recon / "checkpoints").mkdir(parents=True)
            shutil.copy(stage1_run / "checkpoints" / "stage1.pt", recon / "checkpoints" / "last.pt")
            say(f"{label}: stage 2 with {name}")
            result = reconstruct(bundle, recon, cfg, resume=True, progress=False, log=say).to_dict()
        full_rgb = base / "full_rgb"
        if not (full_rgb / "mesh.ply").is_file():
            say(f"{label}: full-RGB baseline ({preset})")
            shutil.rmtree(full_rgb, ignore_errors=True)
            reconstruct(head, full_rgb, resolve_config(preset, "full-rgb"), progress=False, log=say)
        stage2 = face_chamfer(result["mesh"], head)["chamfer"]
        baseline = face_chamfer(full_rgb / "mesh.ply", head)["chamfer"]
        per_head[label] = {
            "stage2_chamfer": stage2,
            "full_rgb_chamfer": baseline,
            "ratio": stage2 / baseline,
            "stage2_seconds": result["stage_seconds"].get("stage2"),
        }
        run_dir.mkdir(parents=True, exist_ok=True)
        record.write_text(json.dumps(per_head[label], indent=1))
    return per_head


def plot(rows: list[dict], path: Path, bound: float = 1.3) -> Path:
    """Scatter of leakage (y, with CI bars) against fidelity cost (x), drawn with Pillow."""
    from PIL import Image, ImageDraw

    width, height, left, bottom, pad = 900, 600, 80, 60, 30
    image = Image.new("RGB", (width, height), "white")
    draw = ImageDraw.Draw(image)
    xs = [r["fidelity_ratio"] for r in rows] + [1.0, bound]
    x_lo, x_hi = min(xs) - 0.05, max(xs) + 0.1
    y_hi = max(100 * r["other_photo"]["rank1"]["high"] for r in rows) + 5

    def to_px(x: float, y: float) -> tuple[float, float]:
        u = left + (x - x_lo) / (x_hi - x_lo) * (width - left - pad)
        v = height - bottom - y / y_hi * (height - bottom - pad)
        return u, v

    draw.line([to_px(x_lo, 0), to_px(x_hi, 0)], fill="black")
    draw.line([to_px(x_lo, 0), to_px(x_lo, y_hi)], fill="black")
    for k in range(0, int(y_hi) + 1, 10):
        u, v = to_px(x_lo, k)
        draw.text((u - 30, v - 6), f"{k}%", fill="black")
    for k in np.arange(np.ceil(x_lo * 10) / 10, x_hi, 0.1):
        u, v = to_px(k, 0)
        draw.text((u - 10, v + 6), f"{k:.1f}x", fill="black")
    chance = 100 * rows[0]["chance"]
    draw.line([to_px(x_lo, chance), to_px(x_hi, chance)], fill=(150, 150, 150))
    draw.text(to_px(x_lo + 0.01, chance + 1), f"chance {chance:.0f}%", fill=(100, 100, 100))
    draw.line([to_px(bound, 0), to_px(bound, y_hi)], fill=(220, 0, 0))
    draw.text(to_px(bound + 0.005, y_hi - 3), f"fidelity bound {bound}x", fill=(220, 0, 0))
    for r in rows:
        image_attacks = (r.get("source_photo_image_attacks") or {}).get("rank1")
        if image_attacks:  # the 20-probe source-photo gallery without map-to-map matching
            u, v = to_px(r["fidelity_ratio"], 100 * image_attacks["value"])
            draw.rectangle([u - 4, v - 4, u + 4, v + 4], outline=(230, 120, 0), width=2)
        y = r["other_photo"]["rank1"]
        u, v = to_px(r["fidelity_ratio"], 100 * y["value"])
        _, v_lo = to_px(0, 100 * y["low"])
        _, v_hi = to_px(0, 100 * y["high"])
        draw.line([(u, v_lo), (u, v_hi)], fill=(0, 90, 200))
        draw.ellipse([u - 4, v - 4, u + 4, v + 4], fill=(0, 90, 200))
        draw.text((u + 6, v - 12), r["name"], fill="black")
    draw.text(
        (left, 8),
        "privacy-fidelity: worst-case rank-1 on real faces vs stage-2 / full-RGB face "
        "Chamfer (worst head)",
        fill="black",
    )
    draw.text(
        (left, height - 22),
        "blue dot + bar: other-photo gallery (criterion, 5 probes, 95% CI); orange square: "
        "source-photo gallery, image attacks only (20 probes)",
        fill="black",
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    image.save(path)
    return path


def image_cell(row: dict) -> str:
    entry = row.get("source_photo_image_attacks")
    if not entry:
        return "-"
    return f"{Estimate(**entry['rank1']).format()} ({entry['attack']}, {entry['model']})"


def write_levels(rows: list[dict], info: dict) -> Path:
    """privhead/privacy/leakage.json: what each named level was measured to reveal."""
    from privacy_suite import real_face_samples

    from privhead.privacy.levels import LEAKAGE_FILE, LEVELS, measured_leakage, recorded_operator

    faces = real_face_samples()
    earlier = measured_leakage()
    data = {}
    for level, operator in LEVELS.items():
        row = next((r for r in rows if r["operator"] == operator.to_dict()), None)
        if row is None:
            # Kept from an earlier sweep only while it describes the level's operator.
            record = earlier.get(level)
            if record and recorded_operator(record) == operator:
                data[level] = record
            continue
        other = row["other_photo"]
        data[level] = {
            "operator": row["operator"],
            "n_faces": len(faces),
            "n_identities": len({f.identity for f in faces}),
            "chance": row["chance"],
            "other_photo": other,
            "source_photo": row["source_photo"],
            "source_photo_image_attacks": row.get("source_photo_image_attacks"),
            "criterion_holds": other["rank1"]["low"] <= row["chance"],
            "fidelity_ratio": row.get("fidelity_ratio"),
            "fidelity_preset": info["preset"],
            "commit": info["commit"],
        }
    LEAKAGE_FILE.write_text(json.dumps(data, indent=1) + "\n")
    return LEAKAGE_FILE


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=REPO / "runs" / "sweep")
    parser.add_argument("--preset", default="fast")
    parser.add_argument("--heads", default="ict_s0,ict_s1,ict_s2")
    parser.add_argument("--only", default="", help="Candidate names to run, separated by ';'.")
    parser.add_argument("--inversion-steps", type=int, default=300)
    parser.add_argument("--inverter-steps", type=int, default=None)
    parser.add_argument("--boot", type=int, default=1000)
    parser.add_argument("--no-fidelity", action="store_true")
    parser.add_argument(
        "--no-privacy", action="store_true", help="Fidelity runs only (fill the run cache)."
    )
    parser.add_argument("--docs", type=Path, default=None)
    parser.add_argument(
        "--write-levels",
        action="store_true",
        help="Write privhead/privacy/leakage.json for the levels measured here.",
    )
    args = parser.parse_args(argv)

    from privhead.privacy.audit.attacks import InversionConfig
    from privhead.privacy.faces.detect import load_detectors
    from privhead.privacy.faces.recognize import load_recognizers
    from privhead.privacy.learned_inverter import InverterTrainConfig, load_or_train_inverter

    start = time.perf_counter()
    say = lambda line: print(f"[{time.perf_counter() - start:6.0f} s] {line}", flush=True)  # noqa: E731
    detectors, recognizers = load_detectors("auto"), load_recognizers("auto")
    heads = [SHARED_HEADS / h / "r64_v30" for h in args.heads.split(",") if h]
    # Candidates in the order --only names them (all of them, in table order, without it).
    names = [n for n in args.only.split(";") if n] if args.only else list(CANDIDATES)
    unknown = [n for n in names if n not in CANDIDATES]
    if unknown:
        parser.error(f"unknown candidates {unknown}; choose from {list(CANDIDATES)}")
    suite_cfg = SuiteConfig(inversion=InversionConfig(steps=args.inversion_steps), n_boot=args.boot)
    train_cfg = InverterTrainConfig(
        **({"steps": args.inverter_steps} if args.inverter_steps else {})
    )
    rows = []
    for name in names:
        operator = dataclasses.replace(PAPER_OPERATOR, **CANDIDATES[name])
        cache = args.out / "privacy" / ("".join(c if c.isalnum() else "_" for c in name) + ".json")
        if args.no_privacy:
            privacy = {}
        elif cache.is_file():
            privacy = json.loads(cache.read_text())
        else:
            say(f"{name}: attack suite on real faces")
            inverter = load_or_train_inverter(operator, train_cfg, progress=False)
            real = run_real(operator, detectors, recognizers, inverter, suite_cfg, say)
            privacy = {}
            for protocol in ("other_photo", "source_photo"):
                worst = real[protocol].worst_case()
                privacy[protocol] = {
                    "rank1": worst["rank1"],
                    "attack": worst["label"] + (" (fused)" if worst["fused"] else ""),
                    "model": worst["model"],
                }
            # The source-photo gallery without map-to-map matching (which the very photo always
            # wins): what the maps give the image attacks, on 20 probes instead of 5.
            image_attacks = [a for a in ATTACKS if not a.startswith("map_to_map")]
            worst = real["source_photo"].worst_case(image_attacks)
            privacy["source_photo_image_attacks"] = {
                "rank1": worst["rank1"],
                "attack": worst["label"] + (" (fused)" if worst["fused"] else ""),
                "model": worst["model"],
            }
            tables = [
                f"## {name}\n\n### other-photo gallery\n\n{suite_table(real['other_photo'])}",
                f"### source-photo gallery\n\n{suite_table(real['source_photo'])}",
            ]
            cache.parent.mkdir(parents=True, exist_ok=True)
            cache.with_suffix(".md").write_text("\n\n".join(tables) + "\n")
            privacy["chance"] = 1.0 / len(real["other_photo"].identities)
            cache.parent.mkdir(parents=True, exist_ok=True)
            cache.write_text(json.dumps(privacy, indent=1))
        row = {"name": name, "operator": operator.to_dict(), **privacy}
        if not args.no_fidelity:
            per_head = fidelity(operator, name, heads, args.preset, args.out, say)
            row["fidelity"] = per_head
            # The bound holds per head: the worst head is the operator's fidelity cost.
            row["fidelity_ratio"] = float(max(v["ratio"] for v in per_head.values()))
            row["fidelity_mean"] = float(np.mean([v["ratio"] for v in per_head.values()]))
            row["stage2_seconds"] = float(np.mean([v["stage2_seconds"] for v in per_head.values()]))
        rows.append(row)
        if args.no_privacy:
            say(f"{name}: {json.dumps(row.get('fidelity'))}")
            continue
        say(f"{name}: {json.dumps({k: v for k, v in row.items() if k != 'operator'}, default=str)}")
    if args.no_privacy:
        return 0
    info = {
        "commit": git_commit(),
        "machine": machine(),
        "seconds": time.perf_counter() - start,
        "preset": args.preset,
        "heads": [h.parent.name for h in heads],
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "sweep.json").write_text(json.dumps({"info": info, "rows": rows}, indent=1))
    lines = [
        f"Measured by `python benchmarks/privacy_sweep.py {' '.join(argv or sys.argv[1:])}` at "
        f"commit `{info['commit']}` on {info['machine']} in {info['seconds'] / 60:.0f} min; "
        f"fidelity at the `{args.preset}` preset on {', '.join(info['heads'])} (r64_v30). "
        "Leakage: the strongest attack's rank-1 on the real faces (95 % bootstrap CI). "
        f"Fidelity: stage-2 / full-RGB face Chamfer on {', '.join(info['heads'])} and the worst "
        "of them (the bound is <= 1.3x on every head).",
        "",
        "| operator | other-photo rank-1 (strongest attack) | source-photo rank-1 | "
        "source-photo, image attacks only | stage-2 / full-RGB face CD per head (worst) "
        "| stage-2 s |",
        "|---|---|---|---|---|---|",
    ]
    for r in rows:
        o, s_ = r["other_photo"], r["source_photo"]
        fid = "-"
        if "fidelity_ratio" in r:
            heads = " / ".join(f"{v['ratio']:.2f}" for v in r["fidelity"].values())
            fid = f"{heads} (**{r['fidelity_ratio']:.2f}x**)"
        sec = f"{r['stage2_seconds']:.0f}" if "stage2_seconds" in r else "-"
        lines.append(
            f"| {r['name']} `{json.dumps(CANDIDATES[r['name']])}` "
            f"| {Estimate(**o['rank1']).format()} "
            f"({o['attack']}, {o['model']}) | {Estimate(**s_['rank1']).format()} ({s_['attack']}) "
            f"| {image_cell(r)} | {fid} | {sec} |"
        )
    lines.append(f"\nChance: {100 * rows[0]['chance']:.0f}% (1 in {round(1 / rows[0]['chance'])}).")
    text = "\n".join(lines)
    (args.out / "sweep.md").write_text(text + "\n")
    print(text)
    if all("fidelity_ratio" in r for r in rows):
        figure = plot(rows, args.out / "curve.png")
        if args.docs is not None:
            shutil.copy(figure, REPO / "docs" / "figures" / "privacy_curve.png")
    if args.write_levels:
        write_levels(rows, info)
    if args.docs is not None:
        doc = args.docs.read_text()
        begin, end = "<!-- privacy-sweep:begin -->", "<!-- privacy-sweep:end -->"
        block = f"{begin}\n{text}\n{end}"
        if begin in doc and end in doc:
            doc = doc[: doc.index(begin)] + block + doc[doc.index(end) + len(end) :]
        else:
            doc = doc.rstrip() + "\n\n## Privacy-fidelity curve (measured)\n\n" + block + "\n"
        args.docs.write_text(doc)
    return 0


if __name__ == "__main__":
    sys.exit(main())
