"""The attack suite: every way we know to re-identify a person from their protected maps, scored
as an attacker scores it (rank-1 in a gallery, TAR at 1 % FAR calibrated on the originals, AUC,
bootstrap CIs over identities).

Kerckhoffs's principle: the attacker has the tool, the operator and its parameters (they are in
every manifest), the bundle, and *other* photos of the candidates (the gallery). Each attack is
a function ``(probes, context) -> images`` (a candidate face image per probe, then identified by
face recognition against the gallery photos) or ``-> distances`` (map-space matching). The face
in an attack's output is located by the detectors or, when none fires, where it is in the
original photo: an oracle alignment that can only help the attacker.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
from PIL import Image

from privhead.privacy.audit.attacks import InversionConfig, invert_gradient_modulus
from privhead.privacy.audit.identify import (
    Estimate,
    fuse_views,
    identification_metrics,
    identity_distances,
    split_pairs,
    threshold_at_far,
)
from privhead.privacy.audit.images import ImageSet, map_to_image
from privhead.privacy.audit.verification import analyse_images
from privhead.privacy.operators import OperatorConfig, downsample_area, protect_image

ORIGINALS_ROW = "originals"
CHANCE_ROW = "chance"


@dataclass
class FaceSample:
    """One photo of a person.

    Attributes:
        name: unique name (file stem / view name).
        identity: who it shows.
        image: [H, W, 3] float32 RGB in [0, 1].
        pose: "frontal" or "profile" (reported apart).
        bundle: the capture it belongs to (views of one bundle are fused); default its identity.
        template_key: photos with the same key share a viewpoint (a rig view name), so the
            attack template of a probe is the mean of other identities' photos with its key;
            None = any photo of another identity.
        colour_hint: [3] mean RGB the attacker knows for this person (from the bundle's neutral
            views: skin and hair tone), or None.
    """

    name: str
    identity: str
    image: np.ndarray
    pose: str = "frontal"
    bundle: str = ""
    template_key: str | None = None
    colour_hint: np.ndarray | None = None

    def __post_init__(self) -> None:
        self.bundle = self.bundle or self.identity


@dataclass
class SuiteConfig:
    """Which attacks run and how they are scored."""

    attacks: tuple[str, ...] | None = None
    """Attack names (see :data:`ATTACKS`); None = all that can run; () = none (only the
    originals and the ``extra_images`` rows)."""
    inversion: InversionConfig = field(default_factory=InversionConfig)
    """Optimisation-inversion parameters (grey, template and colour starts)."""
    far: float = 0.01
    """False-accept rate at which the threshold is calibrated on the originals."""
    n_boot: int = 1000
    """Bootstrap resamples (over identities) for the confidence intervals."""
    seed: int = 0
    """Bootstrap seed."""
    exclude_source_photo: bool = True
    """True: a probe's own source photo is not in the gallery (the attacker has OTHER photos:
    the criterion). False: it is (the attacker holds the very photo: an upper bound no
    deterministic operator can resist)."""


@dataclass
class AttackContext:
    """What the attacker has, besides the maps."""

    operator: OperatorConfig
    probes: list[FaceSample]
    gallery: list[FaceSample]
    cfg: SuiteConfig
    learned_inverter: object | None = None
    gallery_maps: list[np.ndarray] = field(default_factory=list)
    """sigma of every gallery photo (what the map-to-map attacks compare with)."""


def _to_tensor(image: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(image, dtype=np.float32)).permute(2, 0, 1)


def _resize(image: np.ndarray, height: int, width: int) -> np.ndarray:
    """Bilinear resize of a float [h, w, 3] image (attack outputs back to the photo's size)."""
    data = np.clip(np.asarray(image, dtype=np.float32), 0, 1)
    if data.shape[:2] == (height, width):
        return data
    if height <= data.shape[0] and width <= data.shape[1]:
        return downsample_area(_to_tensor(data)[None], (height, width))[0].permute(1, 2, 0).numpy()
    pil = Image.fromarray(np.round(data * 255).astype(np.uint8))
    return np.asarray(pil.resize((width, height), Image.BICUBIC), dtype=np.float32) / 255.0


def templates_for(probes: Sequence[FaceSample], pool: Sequence[FaceSample], size) -> list:
    """Per probe: the mean of the pool photos of OTHER identities (with its template key), at
    ``size`` = (h, w); never the subject's own face. None when the pool has no such photo."""
    out = []
    for probe in probes:
        chosen = [
            s.image
            for s in pool
            if s.identity != probe.identity
            and (probe.template_key is None or s.template_key == probe.template_key)
        ]
        if not chosen:
            out.append(None)
            continue
        resized = [downsample_area(_to_tensor(im)[None], size)[0] for im in chosen]
        out.append(torch.stack(resized).mean(0).permute(1, 2, 0).numpy())
    return out


def _recolour(template: np.ndarray, hint: np.ndarray) -> np.ndarray:
    """The template with its central-region mean colour moved to ``hint`` (per channel gain)."""
    h, w = template.shape[:2]
    centre = template[h // 4 : 3 * h // 4, w // 4 : 3 * w // 4].reshape(-1, 3).mean(0)
    gain = np.asarray(hint, dtype=np.float32) / np.maximum(centre, 1e-3)
    return np.clip(template * gain[None, None], 0.0, 1.0)


def _invert(maps: list[np.ndarray], ctx: AttackContext, priors) -> list[np.ndarray]:
    """Optimisation inversion of every map, batched by map size (one Adam run per batch)."""
    out: list[np.ndarray | None] = [None] * len(maps)
    groups: dict[tuple, list[int]] = {}
    for i, m in enumerate(maps):
        groups.setdefault((m.shape, priors[i] is None), []).append(i)
    for (_shape, no_prior), indices in groups.items():
        batch = torch.from_numpy(np.stack([maps[i] for i in indices]))[:, None].float()
        prior = None if no_prior else torch.stack([_to_tensor(priors[i]) for i in indices])
        images = invert_gradient_modulus(batch, ctx.operator, prior, ctx.cfg.inversion)
        for k, i in enumerate(indices):
            out[i] = images[k].permute(1, 2, 0).numpy()
    return out


# ---------------------------------------------------------------------------- the attacks
# Image attacks return one candidate image per probe; distance attacks a [P, G] matrix.


def attack_raw_maps(maps, ctx: AttackContext):
    """Naive: face recognition run on the protected map itself (shown as a grey image)."""
    return [map_to_image(m) for m in maps]


def attack_inversion_grey(maps, ctx: AttackContext):
    """Optimisation inversion (same public operator, TV prior) from a flat grey start."""
    return _invert(maps, ctx, [None] * len(maps))


def _template_pool(ctx: AttackContext) -> list[FaceSample]:
    """Photos the attacker may average into a template: the gallery and the probes' originals of
    every OTHER identity (:func:`templates_for` never takes the subject's own)."""
    seen, pool = set(), []
    for sample in [*ctx.gallery, *ctx.probes]:
        if sample.name not in seen:
            seen.add(sample.name)
            pool.append(sample)
    return pool


def attack_inversion_template(maps, ctx: AttackContext):
    """Optimisation inversion from the mean face of OTHER identities (same viewpoint)."""
    size = maps[0].shape
    templates = templates_for(ctx.probes, _template_pool(ctx), size)
    return _invert(maps, ctx, templates)


def attack_inversion_colour(maps, ctx: AttackContext):
    """Template inversion whose start takes the person's colour from the bundle's neutral RGB."""
    size = maps[0].shape
    templates = templates_for(ctx.probes, _template_pool(ctx), size)
    priors = [
        None if t is None else (t if p.colour_hint is None else _recolour(t, p.colour_hint))
        for t, p in zip(templates, ctx.probes, strict=True)
    ]
    return _invert(maps, ctx, priors)


def attack_learned(maps, ctx: AttackContext):
    """A U-Net trained offline on (image, sigma(image)) pairs, applied to the maps."""
    return ctx.learned_inverter.invert(list(maps))


def attack_map_to_map_pixels(maps, ctx: AttackContext) -> np.ndarray:
    """The attacker applies sigma to the gallery photos and compares maps (1 - correlation)."""
    gallery = ctx.gallery_maps

    def unit(m, shape):
        m = np.asarray(m, dtype=np.float64)
        if m.shape != shape:
            m = np.asarray(Image.fromarray(m.astype(np.float32)).resize(shape[::-1]))
        m = m - m.mean()
        return m.reshape(-1) / max(np.linalg.norm(m), 1e-12)

    shape = maps[0].shape
    a = np.stack([unit(m, shape) for m in maps])
    b = np.stack([unit(m, shape) for m in gallery])
    return 1.0 - a @ b.T


IMAGE_ATTACKS: dict[str, Callable] = {
    "raw_maps": attack_raw_maps,
    "inversion_grey": attack_inversion_grey,
    "inversion_template": attack_inversion_template,
    "inversion_colour": attack_inversion_colour,
    "learned_inverter": attack_learned,
}
DISTANCE_ATTACKS: dict[str, Callable] = {"map_to_map_pixels": attack_map_to_map_pixels}
MAP_FR_ATTACK = "map_to_map_fr"
"""Face recognition on sigma(probe) against sigma(gallery photos) (maps shown as images)."""
ATTACKS = (*IMAGE_ATTACKS, MAP_FR_ATTACK, *DISTANCE_ATTACKS)
ATTACK_LABELS = {
    ORIGINALS_ROW: "Originals (ceiling)",
    CHANCE_ROW: "Chance",
    "raw_maps": "FR on the raw maps",
    "inversion_grey": "Inversion, grey start",
    "inversion_template": "Inversion, template start",
    "inversion_colour": "Inversion, template + neutral-view colour",
    "learned_inverter": "Learned inverter (U-Net)",
    MAP_FR_ATTACK: "Map-to-map, FR embeddings",
    "map_to_map_pixels": "Map-to-map, image correlation",
}


# ---------------------------------------------------------------------------- scoring


@dataclass
class SuiteResult:
    """Rows of the identification table.

    Attributes:
        rows: one dict per (row, model, pose subset, fused or not): metrics as
            :class:`Estimate` dicts plus counts.
        identities: gallery identities (N; chance rank-1 = 1 / N).
        n_probes: probes scored.
        thresholds: {model: distance threshold at cfg.far on the originals}.
    """

    rows: list[dict]
    identities: list[str]
    n_probes: int
    thresholds: dict[str, float]

    def worst_case(
        self, rows: Sequence[str] | None = None, pose: str = "all", min_n: int = 5
    ) -> dict | None:
        """The attack row with the highest rank-1 (all models, fused or not), among rows scored
        on at least ``min_n`` probes (or bundles): a fused row of one or two bundles is shown in
        the tables but is too small to decide anything."""
        skip = {ORIGINALS_ROW, CHANCE_ROW}
        pool = [
            r
            for r in self.rows
            if r["row"] not in skip
            and r["pose"] == pose
            and r["n"] >= min_n
            and (rows is None or r["row"] in rows)
        ]
        return max(pool, key=lambda r: r["rank1"]["value"], default=None)


def _embed(images, probes, detectors, recognizers, fallback=None):
    """Embeddings {model: list of [D] or None} of images named like the probes."""
    image_set = ImageSet("suite", [p.name for p in probes], list(images))
    records = analyse_images(image_set, detectors, recognizers, fallback)
    return {r.name: [rec.embeddings[r.name] for rec in records] for r in recognizers}, records


def _pair_distances(recognizer, probe_embeddings, gallery_embeddings) -> np.ndarray:
    rows = []
    valid_gallery = [g for g in gallery_embeddings if g is not None]
    dim = valid_gallery[0].shape[0] if valid_gallery else 1
    gal = np.stack([g if g is not None else np.full(dim, np.nan) for g in gallery_embeddings])
    for e in probe_embeddings:
        if e is None:
            rows.append(np.full(len(gallery_embeddings), np.inf))
            continue
        d = recognizer.distances(e[None], gal)[0]
        rows.append(np.where(np.isnan(d), np.inf, d))
    return np.asarray(rows)


def run_attack_suite(
    probes: Sequence[FaceSample],
    gallery: Sequence[FaceSample],
    operator: OperatorConfig,
    detectors,
    recognizers,
    cfg: SuiteConfig | None = None,
    learned_inverter=None,
    extra_images: dict[str, list[np.ndarray]] | None = None,
    progress: Callable[[str], None] | None = None,
) -> SuiteResult:
    """Run every attack on the probes' protected maps and score identification.

    Args:
        probes: the people's photos whose protected maps the attacker holds (one per view).
        gallery: the attacker's photos of the candidates (every probe identity must have one;
            other identities are distractors). With ``cfg.exclude_source_photo`` a gallery photo
            with a probe's own name is ignored for that probe.
        operator: the public operator sigma that made the maps.
        detectors, recognizers: the face models (``privhead[audit]``).
        cfg: suite parameters.
        learned_inverter: an object with ``invert(maps) -> images`` (see
            :mod:`privhead.privacy.audit.learned`); without one that attack is skipped.
        extra_images: {row name: one image per probe} scored like an attack's output (renders
            of the reconstruction, clay renders of the true geometry, ...).
        progress: callback for one-line progress messages.

    Returns:
        a :class:`SuiteResult`.
    """
    cfg = cfg or SuiteConfig()
    say = progress or (lambda line: None)
    probes, gallery = list(probes), list(gallery)
    identities = sorted({g.identity for g in gallery})
    missing = sorted({p.identity for p in probes} - set(identities))
    if missing:
        raise ValueError(f"probe identities without gallery photos: {missing}")
    truth = [identities.index(p.identity) for p in probes]
    gallery_ids = [g.identity for g in gallery]
    maps = [protect_image(p.image, operator) for p in probes]
    gallery_maps = [protect_image(g.image, operator) for g in gallery]
    ctx = AttackContext(operator, probes, gallery, cfg, learned_inverter, gallery_maps)

    mask = np.zeros((len(probes), len(gallery)), dtype=bool)
    if cfg.exclude_source_photo:
        for i, p in enumerate(probes):
            for j, g in enumerate(gallery):
                mask[i, j] = g.name == p.name

    def to_identity(pair: np.ndarray) -> np.ndarray:
        pair = np.where(mask, np.inf, pair)
        return identity_distances(pair, gallery_ids, identities)

    say(f"embedding {len(gallery)} gallery photos and {len(probes)} originals")
    gallery_embeddings, gallery_records = _embed(
        [g.image for g in gallery], gallery, detectors, recognizers
    )
    originals, original_records = _embed([p.image for p in probes], probes, detectors, recognizers)
    fallback = {
        p.name: (rec.face, p.image.shape[:2])
        for p, rec in zip(probes, original_records, strict=True)
        if rec.face is not None
    }
    thresholds, matrices = {}, {}
    for r in recognizers:
        d = to_identity(_pair_distances(r, originals[r.name], gallery_embeddings[r.name]))
        thresholds[r.name] = threshold_at_far(split_pairs(d, truth)[1], cfg.far)
        matrices[(ORIGINALS_ROW, r.name)] = d

    wanted = ATTACKS if cfg.attacks is None else cfg.attacks
    for name in wanted:
        if name == "learned_inverter" and learned_inverter is None:
            say("learned inverter: none given, skipped")
            continue
        say(f"attack: {name}")
        if name in IMAGE_ATTACKS:
            outputs = IMAGE_ATTACKS[name](maps, ctx)
            outputs = [_resize(o, *p.image.shape[:2]) for o, p in zip(outputs, probes, strict=True)]
            embedded, _ = _embed(outputs, probes, detectors, recognizers, fallback)
            for r in recognizers:
                pair = _pair_distances(r, embedded[r.name], gallery_embeddings[r.name])
                matrices[(name, r.name)] = to_identity(pair)
        elif name == MAP_FR_ATTACK:
            probe_maps = [
                _resize(map_to_image(m), *p.image.shape[:2]) for m, p in zip(maps, probes)
            ]
            gallery_map_images = [
                _resize(map_to_image(m), *g.image.shape[:2])
                for m, g in zip(gallery_maps, gallery, strict=True)
            ]
            gallery_fallback = {
                g.name: (rec.face, g.image.shape[:2])
                for g, rec in zip(gallery, gallery_records, strict=True)
                if rec.face is not None
            }
            embedded, _ = _embed(probe_maps, probes, detectors, recognizers, fallback)
            gallery_map_embeddings, _ = _embed(
                gallery_map_images, gallery, detectors, recognizers, gallery_fallback
            )
            for r in recognizers:
                pair = _pair_distances(r, embedded[r.name], gallery_map_embeddings[r.name])
                matrices[(name, r.name)] = to_identity(pair)
        elif name in DISTANCE_ATTACKS:
            matrices[(name, "pixels")] = to_identity(DISTANCE_ATTACKS[name](maps, ctx))
        else:
            raise ValueError(f"unknown attack {name!r}; known: {', '.join(ATTACKS)}")
    for name, outputs in (extra_images or {}).items():
        say(f"images: {name}")
        outputs = [_resize(o, *p.image.shape[:2]) for o, p in zip(outputs, probes, strict=True)]
        embedded, _ = _embed(outputs, probes, detectors, recognizers, fallback)
        for r in recognizers:
            pair = _pair_distances(r, embedded[r.name], gallery_embeddings[r.name])
            matrices[(name, r.name)] = to_identity(pair)

    rows = []
    groups = [p.identity for p in probes]
    bundles = [p.bundle for p in probes]
    poses = {"all": np.ones(len(probes), bool)}
    for pose in ("frontal", "profile"):
        keep = np.array([p.pose == pose for p in probes])
        if keep.any() and not keep.all():
            poses[pose] = keep
    fuse = len(set(bundles)) < len(bundles)
    for (row, model), d in matrices.items():
        threshold = thresholds.get(model)
        if threshold is None:  # a plain image distance: calibrate on the same attack's impostors
            threshold = threshold_at_far(split_pairs(d, truth)[1], cfg.far)
        for pose, keep in poses.items():
            idx = np.flatnonzero(keep)
            metrics = identification_metrics(
                d[idx],
                np.asarray(truth)[idx],
                [groups[i] for i in idx],
                threshold,
                cfg.n_boot,
                cfg.seed,
            )
            rows.append(_row(row, model, pose, False, len(idx), d[idx], metrics))
        if fuse:
            fused, fused_truth, names = fuse_views(d, truth, bundles)
            owner = {p.bundle: p.identity for p in probes}
            metrics = identification_metrics(
                fused, fused_truth, [owner[n] for n in names], threshold, cfg.n_boot, cfg.seed
            )
            rows.append(_row(row, model, "all", True, len(names), fused, metrics))
    n = len(identities)
    chance = {
        "rank1": Estimate(1.0 / n, 1.0 / n, 1.0 / n),
        "tar": Estimate(cfg.far, cfg.far, cfg.far),
        "auc": Estimate(0.5, 0.5, 0.5),
    }
    rows.insert(0, _row(CHANCE_ROW, "-", "all", False, len(probes), None, chance))
    return SuiteResult(rows, identities, len(probes), thresholds)


def _row(row, model, pose, fused, count, distances, metrics) -> dict:
    embedded = None if distances is None else float(np.isfinite(distances).any(axis=1).mean())
    return {
        "row": row,
        "label": ATTACK_LABELS.get(row, row),
        "model": model,
        "pose": pose,
        "fused": fused,
        "n": count,
        "embedded": embedded,
        **{k: v.to_dict() for k, v in metrics.items()},
    }


def suite_table(result: SuiteResult, pose: str = "all") -> str:
    """Markdown table of one pose subset: rank-1, TAR at the calibrated FAR, AUC with CIs."""
    lines = [
        f"| images | model | n | rank-1 (chance {100 / len(result.identities):.0f}%) "
        "| TAR @ 1% FAR | ROC-AUC | face embedded |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in result.rows:
        if r["pose"] != pose:
            continue
        label = r["label"] + (" (multi-view fusion)" if r["fused"] else "")
        cells = [Estimate(**r[k]) for k in ("rank1", "tar", "auc")]
        embedded = "-" if r["embedded"] is None else f"{100 * r['embedded']:.0f}%"
        lines.append(
            f"| {label} | {r['model']} | {r['n']} | {cells[0].format()} | {cells[1].format()} "
            f"| {cells[2].format(percent=False)} | {embedded} |"
        )
    return "\n".join(lines)


def read_gallery(path) -> list[FaceSample]:
    """An attacker's gallery: a folder with one sub-folder of photos per identity.

    Raises:
        PrivheadError: not a folder, or no sub-folder holds an image.
    """
    from pathlib import Path

    from privhead.data.formats import list_images, read_image
    from privhead.errors import PrivheadError

    root = Path(path)
    if not root.is_dir():
        raise PrivheadError(f"{root} is not a gallery folder (one sub-folder per identity).")
    samples = []
    for folder in sorted(p for p in root.iterdir() if p.is_dir()):
        for file in list_images(folder):
            image = np.asarray(read_image(file), dtype=np.float32)[..., :3]
            samples.append(FaceSample(f"{folder.name}/{file.stem}", folder.name, image))
    if not samples:
        raise PrivheadError(f"{root} holds no identity sub-folder with .png / .jpg photos.")
    return samples
