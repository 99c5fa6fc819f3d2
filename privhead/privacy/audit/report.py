"""The audit report: markdown tables, the image grid, ``report.md`` and ``audit.json``."""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from PIL import Image, ImageDraw

from privhead.privacy.audit.images import KIND_LABELS, ORIGINALS
from privhead.privacy.faces.detect import to_uint8_rgb
from privhead.privacy.faces.recognize import UNAVAILABLE_MODELS

if TYPE_CHECKING:
    from privhead.privacy.audit.run import AuditResult


def _percent(value) -> str:
    return "n/a" if value is None or not math.isfinite(value) else f"{100 * value:.1f}"


def _number(value, digits: int = 3) -> str:
    return "n/a" if value is None or not math.isfinite(value) else f"{value:.{digits}f}"


def verification_table(kinds: dict[str, dict], models: Sequence[str], key: str = "verified") -> str:
    """Markdown table: one row per model (+ the paper's unavailable ones), one column per kind."""
    present = [k for k in KIND_LABELS if k in kinds]
    header = "| Model | " + " | ".join(kinds[k]["label"] for k in present) + " |"
    lines = [header, "|---|" + "---|" * len(present)]
    for model in models:
        cells = []
        for k in present:
            entry = kinds[k]["verification"].get(model)
            value = None if entry is None else entry.get(key)
            cells.append(_number(value) if key == "auc" else _percent(value))
        lines.append(f"| {model} | " + " | ".join(cells) + " |")
    for model in UNAVAILABLE_MODELS:
        lines.append(f"| {model} | " + " | ".join("unavailable" for _ in present) + " |")
    return "\n".join(lines)


def detection_table(kinds: dict[str, dict], detectors: Sequence[str]) -> str:
    """Markdown table: detection rate (%) per kind (rows) and detector (columns)."""
    columns = [*detectors, "any"]
    lines = [
        "| Images | n | " + " | ".join(columns) + " | located by own detection / original's box |",
        "|---|---|" + "---|" * (len(columns) + 1),
    ]
    for kind in KIND_LABELS:
        if kind not in kinds:
            continue
        entry = kinds[kind]
        rates = " | ".join(_percent(entry["detection"].get(c)) for c in columns)
        located = entry["located"]
        lines.append(
            f"| {entry['label']} | {entry['n_images']} | {rates} | "
            f"{located['own']} / {located['original']} |"
        )
    return "\n".join(lines)


def distance_table(kinds: dict[str, dict], models: Sequence[str]) -> str:
    """Markdown table of genuine and impostor distance quartiles per kind and model."""
    lines = [
        "| Images | Model | genuine n (failed) | genuine q25 / median / q75 "
        "| impostor n (failed) | impostor q25 / median / q75 |",
        "|---|---|---|---|---|---|",
    ]
    for kind in KIND_LABELS:
        if kind not in kinds:
            continue
        for model in models:
            entry = kinds[kind]["verification"].get(model)
            if entry is None:
                continue
            parts = []
            for side in ("genuine", "impostor"):
                s = entry[side]
                parts.append(f"{s['n']} ({s['n_failed']})")
                parts.append(
                    " / ".join(_number(s.get(q)) for q in ("q25", "median", "q75"))
                    if "median" in s
                    else "n/a"
                )
            lines.append(f"| {kinds[kind]['label']} | {model} | " + " | ".join(parts) + " |")
    return "\n".join(lines)


def perceptual_table(perceptual: dict | None) -> str:
    """Markdown table of ST-LPIPS / SSIM / PSNR across identities (paper Table 4)."""
    if not perceptual:
        return "No impostor shares a view with the subject: no perceptual comparison."
    lines = [
        "| Across identities, same view | ST-LPIPS (lower = more alike) | SSIM | PSNR (dB) |",
        "|---|---|---|---|",
    ]
    for key, label in (("protected", "Protected maps"), ("rgb", "RGB photos")):
        stats = perceptual[key]
        cells = []
        for metric in ("st_lpips", "ssim", "psnr"):
            s = stats.get(metric)
            cells.append(f"{_number(s['mean'])} ± {_number(s['std'])}" if s else "n/a")
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def save_kind_grid(result: AuditResult, path, max_views: int = 8, tile: int = 128) -> Path:
    """A PNG grid: one row per kind, one column per view (first ``max_views`` views); the face
    box used for recognition is drawn green (own detection) or orange (original's box)."""
    names = result.image_sets[ORIGINALS].names[:max_views]
    rows = [k for k in KIND_LABELS if k in result.image_sets]
    label_w = 200
    canvas = Image.new("RGB", (label_w + tile * len(names), tile * len(rows)), (255, 255, 255))
    draw = ImageDraw.Draw(canvas)
    for r, kind in enumerate(rows):
        draw.text((4, r * tile + tile // 2 - 6), KIND_LABELS[kind][:32], fill=(0, 0, 0))
        image_set = result.image_sets[kind]
        records = result.records.get(kind, [])
        for c, name in enumerate(names):
            if name not in image_set.names:
                continue
            i = image_set.names.index(name)
            image = image_set.images[i]
            height, width = image.shape[:2]
            factor = tile / max(height, width)
            size = (max(1, round(width * factor)), max(1, round(height * factor)))
            tile_image = Image.fromarray(to_uint8_rgb(image)).resize(size, Image.NEAREST)
            tile_draw = ImageDraw.Draw(tile_image)
            if i < len(records) and records[i].face is not None:
                x0, y0, x1, y1 = (v * factor for v in records[i].face.box)
                colour = (0, 220, 0) if records[i].located_by == "own" else (255, 150, 0)
                tile_draw.rectangle([x0, y0, x1, y1], outline=colour)
            canvas.paste(tile_image, (label_w + c * tile, r * tile))
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    canvas.save(path)
    return path


def report_markdown(result: AuditResult, grid_name: str | None = None) -> str:
    """The audit as a markdown page (tables and the image grid)."""
    models = [m["name"] for m in result.models]
    lines = [
        f"# Privacy audit: {result.subject}",
        "",
        f"Detectors: {', '.join(result.detectors) or 'none'}. Models: "
        + ", ".join(
            f"{m['name']} ({m['metric']} distance <= {m['threshold']:.3f})" for m in result.models
        )
        + ".",
        "",
        "## Face verification: genuine pairs accepted at the model's threshold (%)",
        "",
        "The paper's Table 2 metric: a derived image against the person's originals.",
        "",
        verification_table(result.kinds, models, "verified"),
        "",
        "## False accepts on impostor pairs (%)",
        "",
        "Impostor pairs are pose-matched (other identities photographed from the same views); "
        "the second table is against photos from elsewhere (e.g. lfw faces), when given.",
        "",
        verification_table(result.kinds, models, "false_accept"),
        "",
        verification_table(result.kinds, models, "false_accept_other"),
        "",
        "## Balanced accuracy (%) and ROC-AUC",
        "",
        verification_table(result.kinds, models, "accuracy"),
        "",
        verification_table(result.kinds, models, "auc"),
        "",
        "## Face detection rate (%)",
        "",
        detection_table(result.kinds, result.detectors),
        "",
        "## Distance distributions",
        "",
        distance_table(result.kinds, models),
        "",
        "## Perceptual similarity across identities (paper Table 4)",
        "",
        perceptual_table(result.perceptual),
        "",
    ]
    if grid_name:
        lines += ["## Images", "", f"![kinds]({grid_name})", ""]
    if result.notes:
        lines += ["## Notes", ""] + [f"- {n}" for n in result.notes] + [""]
    return "\n".join(lines)


def write_report(result: AuditResult, out_dir) -> dict[str, Path]:
    """Write ``audit.json``, ``report.md`` and ``kinds.png`` into ``out_dir``."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    grid = save_kind_grid(result, out / "kinds.png")
    json_path = out / "audit.json"
    json_path.write_text(json.dumps(clean_for_json(result.to_dict()), indent=1) + "\n")
    md_path = out / "report.md"
    md_path.write_text(report_markdown(result, grid.name))
    return {"json": json_path, "report": md_path, "grid": grid}


def clean_for_json(value):
    """Plain JSON values: numpy scalars and arrays converted, NaN and infinities as null."""
    if isinstance(value, dict):
        return {str(k): clean_for_json(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [clean_for_json(v) for v in value]
    if isinstance(value, np.ndarray):
        return clean_for_json(value.tolist())
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value
