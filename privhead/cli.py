"""The command line: thin wrappers that parse arguments, call library functions and print.

One subcommand level: ``privhead synth``, ``privhead protect``, ``privhead reconstruct``, ...
User errors (:class:`privhead.errors.PrivheadError`) print one sentence and exit with code 1.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import typer

from privhead.errors import PrivheadError

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    help="Privacy-preserving neural 3D head reconstruction (neutral RGB + protected gradients).",
    pretty_exceptions_enable=False,
)


def _fail(message: str) -> None:
    typer.secho(f"error: {message}", fg=typer.colors.RED, err=True)
    raise typer.Exit(code=1)


def _user_errors(func):
    """Turn a :class:`PrivheadError` raised by a command into one line and exit code 1."""
    import functools

    @functools.wraps(func)
    def wrapper(*args, **kwargs):
        try:
            return func(*args, **kwargs)
        except PrivheadError as exc:
            _fail(str(exc))

    return wrapper


# Commands are added below, one function each.


@app.command()
@_user_errors
def prepare(
    source: Path = typer.Argument(
        ..., metavar="INPUT", help="Folder of photos (JPEG/PNG/HEIC) or a video file."
    ),
    out: Path = typer.Argument(..., metavar="OUT_DATASET", help="Dataset folder to create."),
    frames: int = typer.Option(40, "--frames", help="Video: frames kept (sharpest per window)."),
    image_side: int = typer.Option(
        512, "--image-side", help="Longer side of the dataset's images (px)."
    ),
    head_height_mm: float = typer.Option(
        250.0,
        "--head-height-mm",
        help="Height of the masked subject (top of head to lowest visible neck), sets the scale.",
    ),
    detector: str = typer.Option(
        "auto", "--detector", help="Face detectors voting the face direction (auto, none, ...)."
    ),
    intrinsics: str = typer.Option(
        "refine",
        "--intrinsics",
        help="What SfM refines: refine (focal + distortion), focal (no distortion), "
        "fixed (keep the EXIF focal length, e.g. for a calibrated camera).",
    ),
    keep_workdir: bool = typer.Option(
        False, "--keep-workdir", help="Keep the SfM folder (images, database, model) beside OUT."
    ),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace an existing OUT."),
) -> None:
    """Photos or a video of a head -> cameras (SfM), masks, face split: a dataset for protect.

    Runs entirely on this device; the photos are read here and never leave it.
    """
    import time

    from privhead.prepare import PrepareConfig, prepare_dataset

    start = time.perf_counter()
    say = lambda text: typer.echo(f"[{time.perf_counter() - start:5.0f} s] {text}")  # noqa: E731
    cfg = PrepareConfig(
        frames=frames,
        image_side=image_side,
        subject_height_mm=head_height_mm,
        detector=detector,
        intrinsics=intrinsics,
        keep_workdir=keep_workdir,
    )
    result = prepare_dataset(source, out, cfg, overwrite=overwrite, log=say)
    for line in result.summary_lines():
        typer.echo(line)
    if result.workdir is not None:
        typer.echo(f"kept the working folder {result.workdir}")
    typer.echo(
        f"wrote {out} in {time.perf_counter() - start:.0f} s; next: privhead protect {out} BUNDLE"
    )


@app.command()
def protect(
    input_path: Path = typer.Argument(
        ...,
        metavar="INPUT",
        help="Dataset folder: IDR / VolSDF / NeuS (cameras.npz) or transforms.json.",
    ),
    out_bundle: Path = typer.Argument(..., metavar="OUT_BUNDLE", help="Bundle folder to create."),
    privacy: str = typer.Option(
        "paper",
        "--privacy",
        help="Privacy level: paper (the paper's Sobel 64 px maps, the default: the only level "
        "within the fidelity bound), standard, strong (fewer re-identifications, coarser "
        "faces). See docs/privacy.md for what each was measured to reveal and cost.",
    ),
    operator: str | None = typer.Option(
        None, "--operator", help="Override the level's edge operator: sobel, scharr, prewitt..."
    ),
    resolution: int | None = typer.Option(
        None, "--resolution", help="Override the level's working resolution (longer side, px)."
    ),
    blur: float | None = typer.Option(
        None, "--blur", help="Override the level's Gaussian blur sigma, in working pixels."
    ),
    linear_light: bool | None = typer.Option(
        None,
        "--linear-light/--srgb-average",
        help="Downsample photos in linear light, as a lower-resolution camera records (the "
        "paper and standard levels' default: finer photos then reconstruct as well as their 64 px "
        "versions), or average the sRGB values (the strong level's default; finer photos "
        "reconstruct worse).",
    ),
    suppress_features: float | None = typer.Option(
        None,
        "--suppress-features",
        help="Blank the eyes, brows and mouth (located by the face detector's landmarks; disk "
        "radius in inter-ocular distances, e.g. 0.35) and record a validity mask; 0 = off.",
    ),
    neutral: str | None = typer.Option(
        None,
        "--neutral",
        help="Complete list of neutral views, e.g. 4,5,6 or 4-6 (every other view is protected).",
    ),
    sensitive: str | None = typer.Option(
        None, "--sensitive", help="Views that must be protected, e.g. 0,1,2."
    ),
    forward: str | None = typer.Option(
        None, "--forward", help="World direction x,y,z the face looks along (pose rule)."
    ),
    threshold_deg: float | None = typer.Option(
        None,
        "--threshold-deg",
        help="Pose rule: neutral beyond this angle to --forward (default views.json's, else 110).",
    ),
    fmt: str = typer.Option(
        "auto",
        "--format",
        help="Dataset format: auto, idr, transforms, colmap (images/ + sparse/0), h3ds, facescape.",
    ),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace an existing bundle."),
    detector: str = typer.Option(
        "auto",
        "--detector",
        help="Face detectors that protect any view showing a face: auto (all installed), none, "
        "or yunet, centerface, dlib (comma-separated); they come with the 'audit' extra.",
    ),
    allow_rgb_despite_face: str | None = typer.Option(
        None,
        "--allow-rgb-despite-face",
        help="Views to keep as RGB even though a detector finds a face in them, e.g. 7.",
    ),
    submit_to: str | None = typer.Option(
        None,
        "--submit",
        metavar="URL",
        help="Then upload the bundle to a privhead server (privhead serve) and print the job.",
    ),
) -> None:
    """Write the privacy bundle: the only data that may leave the user.

    Neutral views (no face visible) are kept as RGB; sensitive views are
    replaced by their colour-gradient modulus (sigma, paper Eq. 6).
    """
    import dataclasses

    from privhead.privacy.levels import leakage_line, level_operator, usable_level_operator
    from privhead.privacy.protect import protect_dataset
    from privhead.privacy.sensitivity import describe_decisions, parse_indices, parse_vector

    try:
        chosen = {
            "name": operator,
            "resolution": resolution,
            "blur_sigma": blur,
            "linear_light": linear_light,
            "suppress_features": suppress_features,
        }
        # --suppress-features given explicitly: no fallback (fails if the detector is missing)
        base, level_note = (
            (level_operator(privacy), None)
            if suppress_features is not None
            else usable_level_operator(privacy)
        )
        operator_cfg = dataclasses.replace(
            base, **{k: v for k, v in chosen.items() if v is not None}
        )
        result = protect_dataset(
            input_path,
            out_bundle,
            operator_cfg,
            neutral=parse_indices(neutral, "--neutral list"),
            sensitive=parse_indices(sensitive, "--sensitive list"),
            forward=parse_vector(forward, "--forward direction"),
            threshold_deg=threshold_deg,
            detector=detector,
            allow_rgb_despite_face=parse_indices(
                allow_rgb_despite_face, "--allow-rgb-despite-face list"
            )
            or [],
            fmt=fmt,
            overwrite=overwrite,
            progress=True,
        )
    except PrivheadError as exc:
        _fail(str(exc))
    for line in describe_decisions(result.decisions) + result.notes + [level_note or ""]:
        if line:
            typer.echo(line)
    width, height = result.working_size
    typer.echo(
        f"wrote {out_bundle}: {result.n_neutral} neutral, {result.n_protected} protected "
        f"({result.operator.name} at {width}x{height}) in {result.seconds:.1f} s"
    )
    line = leakage_line(result.operator)
    typer.echo(("warning: " if result.operator == level_operator("paper") else "") + line)
    if submit_to:
        from privhead.service.client import submit_bundle

        try:
            job = submit_bundle(out_bundle, submit_to, say=typer.echo)
        except PrivheadError as exc:
            _fail(str(exc))
        typer.echo(
            f"status: {submit_to.rstrip('/')}/jobs/{job['id']} "
            f"(header 'Authorization: Bearer {job['token']}')"
        )


@app.command()
def evaluate(
    pred: Path = typer.Argument(..., metavar="PRED", help="Predicted mesh (.ply, .obj, ...)."),
    gt: Path = typer.Argument(..., metavar="GT", help="Ground-truth mesh in the same frame."),
    face_region: Path | None = typer.Option(
        None,
        "--face-region",
        help="face_region.json: evaluate inside its sphere (H3DS face crop); "
        "also supplies mm_per_unit and the GT landmarks.",
    ),
    center: str | None = typer.Option(
        None, "--center", help="Sphere region centre x,y,z in world units (with --radius)."
    ),
    radius: float | None = typer.Option(None, "--radius", help="Sphere region radius."),
    align: str = typer.Option(
        "none", "--align", help="none (exact cameras), icp, or landmarks (Procrustes, then ICP)."
    ),
    pred_landmarks: Path | None = typer.Option(
        None, "--pred-landmarks", help="JSON landmarks {name: (x, y, z)} on PRED."
    ),
    samples: int = typer.Option(200_000, "--samples", help="Surface samples per mesh."),
    seed: int = typer.Option(0, "--seed", help="Sampling seed (the same for both meshes)."),
    thresholds: str = typer.Option(
        "0.005,0.01,0.02", "--thresholds", help="F-score thresholds in world units."
    ),
    mm_per_unit: float | None = typer.Option(
        None, "--mm-per-unit", help="Millimetres per world unit (default: --face-region's)."
    ),
    json_out: Path | None = typer.Option(None, "--json", help="Write the metrics as JSON."),
    error_map: Path | None = typer.Option(
        None, "--error-map", help="Write a PNG of the GT coloured by distance to PRED."
    ),
    error_max: float = typer.Option(
        0.02, "--error-max", help="Distance (world units) at which the error colours saturate."
    ),
) -> None:
    """Compare a reconstructed mesh with the ground truth: chamfer, F-score, normal consistency.

    Distances are reported in world units, and in mm when mm_per_unit is known.
    """
    import json
    import time

    from privhead.eval.metrics import (
        SphereRegion,
        evaluate_meshes,
        load_mesh,
        parse_numbers,
        read_face_region,
        read_landmarks,
    )
    from privhead.eval.report import save_evaluation_error_map

    start = time.perf_counter()
    try:
        region, gt_landmarks, mm = None, None, mm_per_unit
        if face_region is not None and (center is not None or radius is not None):
            raise PrivheadError("Give either --face-region or --center/--radius, not both.")
        if (center is None) != (radius is None):
            raise PrivheadError("--center and --radius must be given together.")
        if face_region is not None:
            face = read_face_region(face_region)
            region, gt_landmarks = face.sphere, face.landmarks
            mm = face.mm_per_unit if mm is None else mm
        if center is not None:
            region = SphereRegion(parse_numbers(center, "--center", 3), radius)
        levels = parse_numbers(thresholds, "--thresholds")
        if min(levels) <= 0:
            raise PrivheadError(f"--thresholds must be positive, got '{thresholds}'.")
        if align == "landmarks" and (pred_landmarks is None or not gt_landmarks):
            raise PrivheadError(
                "--align landmarks needs --pred-landmarks and a --face-region with landmarks."
            )
        pred_mesh, gt_mesh = load_mesh(pred), load_mesh(gt)
        result = evaluate_meshes(
            pred_mesh,
            gt_mesh,
            region=region,
            align=align,
            samples=samples,
            seed=seed,
            thresholds=levels,
            mm_per_unit=mm,
            pred_landmarks=read_landmarks(pred_landmarks) if pred_landmarks else None,
            gt_landmarks=gt_landmarks,
        )
        outputs = []
        if json_out is not None:
            json_out.parent.mkdir(parents=True, exist_ok=True)
            json_out.write_text(json.dumps(result.to_dict(), indent=1) + "\n")
            outputs.append(str(json_out))
        if error_map is not None:
            save_evaluation_error_map(pred_mesh, gt_mesh, result, error_map, threshold=error_max)
            outputs.append(str(error_map))
    except PrivheadError as exc:
        _fail(str(exc))
    typer.echo(result.format_table())
    written = f"; wrote {', '.join(outputs)}" if outputs else ""
    typer.echo(f"evaluated {pred} against {gt} in {time.perf_counter() - start:.1f} s{written}")


@app.command()
def synth(
    out: Path = typer.Argument(..., metavar="OUT", help="Dataset folder to create."),
    seed: int = typer.Option(0, "--seed", help="Identity seed of the synthetic head."),
    views: int = typer.Option(30, "--views", help="Number of views, split over three rings."),
    resolution: int | None = typer.Option(
        None, "--resolution", help="Image width and height (px); default 64, 512 for --photos."
    ),
    photos: bool = typer.Option(
        False,
        "--photos",
        help="A photo shoot instead: JPEG photos in a textured room (OUT/photos), no camera "
        "files, the truth apart (OUT/truth); input for `privhead prepare`.",
    ),
    turntable: bool = typer.Option(
        False, "--turntable", help="With --photos: fixed camera, turning head, static room."
    ),
    skin_detail: float = typer.Option(
        0.0,
        "--skin-detail",
        help="With --photos: strength of a fine skin and hair texture (e.g. 0.35; 0 = the smooth "
        "albedo, on which a turntable gives SfM almost no features).",
    ),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace an earlier synth in OUT."),
) -> None:
    """Write the built-in synthetic head as a dataset (IDR + transforms.json + ground truth)."""
    import json
    import time

    from privhead.data.synthetic import write_synthetic_head
    from privhead.progress import progress_bar

    start = time.perf_counter()
    if turntable and not photos:
        _fail("--turntable needs --photos.")
    if skin_detail and not photos:
        _fail("--skin-detail needs --photos.")
    if photos:
        from privhead.data.synthetic.photos import ShootConfig, write_photo_shoot

        size = resolution or 512
        try:
            cfg = ShootConfig(
                mode="turntable" if turntable else "walkaround",
                n_views=views,
                resolution=size,
                skin_detail=skin_detail,
            )
            with progress_bar(total=views, desc="photographing", unit="photo", leave=False) as bar:
                write_photo_shoot(out, seed=seed, cfg=cfg, overwrite=overwrite, progress=bar.update)
        except PrivheadError as exc:
            _fail(str(exc))
        typer.echo(
            f"wrote {out}/photos: {views} JPEG photos ({cfg.mode}), {size}x{size} px, seed "
            f"{seed}; the true cameras, masks and mesh are in {out}/truth "
            f"({time.perf_counter() - start:.1f} s). Next: privhead prepare {out}/photos DATASET"
        )
        return
    resolution = resolution or 64
    try:
        with progress_bar(total=views, desc="rendering views", unit="view", leave=False) as bar:
            write_synthetic_head(
                out,
                seed=seed,
                n_views=views,
                resolution=resolution,
                overwrite=overwrite,
                progress=bar.update,
            )
    except PrivheadError as exc:
        _fail(str(exc))
    counts = json.loads((out / "views.json").read_text())
    typer.echo(
        f"wrote {out}: {views} views ({counts['n_sensitive']} sensitive, {counts['n_neutral']} "
        f"neutral), {resolution}x{resolution} px, seed {seed}, in "
        f"{time.perf_counter() - start:.1f} s"
    )


@app.command()
@_user_errors
def reconstruct(
    source: Path = typer.Argument(
        ..., help="Privacy bundle (or the original dataset for --full-rgb)."
    ),
    out: Path = typer.Argument(
        ..., help="Output folder: mesh.ply, renders.png, config.json, checkpoints/."
    ),
    preset: str = typer.Option("default", help="tiny | fast | default | paper."),
    mode: str = typer.Option(
        "two-stage",
        help="two-stage | gradient-only | joint (ablations) | template; see also --full-rgb.",
    ),
    template: bool = typer.Option(
        False,
        "--template",
        help="Start from the identity-free head template (no neutral view needed; paper Fig. "
        "6): one gradient stage with the steps of both stages (= --mode template).",
    ),
    full_rgb: bool = typer.Option(
        False,
        "--full-rgb",
        help="VolSDF baseline: one stage on ALL views as RGB (needs the dataset).",
    ),
    no_lipschitz: bool = typer.Option(False, help="Ablation: stage 2 without the Lipschitz term."),
    stage2_rgb: bool = typer.Option(
        False, help="Stage 2 keeps the neutral RGB loss (not in the paper)."
    ),
    mesh_resolution: int = typer.Option(None, help="Marching-cubes resolution (preset default)."),
    overrides: list[str] = typer.Option(
        [],
        "--set",
        help="Config override section.field=value, e.g. --set stage2.steps=900 (repeatable; "
        "see config.json of a run for every key).",
    ),
    device: str = typer.Option("auto", help="auto (CUDA when present) | cpu | cuda | cuda:1 ..."),
    resume: bool = typer.Option(False, help="Continue an interrupted run in OUT."),
    seed: int = typer.Option(0, help="Random seed."),
    quiet: bool = typer.Option(False, help="No progress bars."),
    formats: str = typer.Option(
        "ply",
        "--format",
        help="Extra exports of the final mesh with vertex colours from the colour network: a "
        "comma list of ply, obj, glb (mesh_colored.<format>); ply alone = mesh.ply only.",
    ),
    faces: int = typer.Option(
        0, "--faces", help="Decimate the coloured exports to about this many faces (0 = keep)."
    ),
) -> None:
    """Reconstruct a head mesh from a privacy bundle (stage 1: neutral RGB, stage 2: gradients).

    Writes mesh.ply (and mesh_stage1.ply), renders.png, renders_rgb/ and renders_mesh/ at the
    protected views' poses, config.json, summary.json and checkpoints/.
    """
    from privhead.config import get_preset, resolve_config
    from privhead.reconstruct import reconstruct as run

    flags = []
    if no_lipschitz:
        flags.append("stage2.lipschitz_weight=0")
    if stage2_rgb:
        stage1 = get_preset(preset).stage1
        flags += [
            f"stage2.rgb_weight={stage1.rgb_weight}",
            f"stage2.mask_weight={stage1.mask_weight}",
        ]
    if mesh_resolution:
        flags.append(f"mesh_resolution={mesh_resolution}")
    from privhead.mesh.export import mesh_format

    wanted = [mesh_format(f"mesh.{f.strip()}") for f in formats.split(",") if f.strip()]
    if full_rgb and template:
        raise PrivheadError("--full-rgb and --template exclude each other.")
    chosen = "full-rgb" if full_rgb else "template" if template else mode
    cfg = resolve_config(preset, chosen, [*flags, *overrides], seed)
    result = run(source, out, cfg, device=device, resume=resume, progress=not quiet)
    stages = ", ".join(f"{k} {v:.0f} s" for k, v in result.stage_seconds.items())
    typer.echo(
        f"done in {result.total_seconds:.0f} s ({stages}, mesh {result.mesh_seconds:.0f} s): "
        f"{result.mesh}, {result.renders}, {result.config}"
    )
    if wanted != ["ply"] or faces:
        for path in _coloured_exports(result.checkpoint, result.mesh, out, wanted, faces, device):
            typer.echo(f"wrote {path} (vertex colours; the face's were learned without face RGB)")


def _coloured_exports(checkpoint, mesh_path, out_dir, formats, faces, device) -> list:
    import trimesh

    from privhead.device import resolve_device
    from privhead.mesh.export import decimate, export_mesh, vertex_colors
    from privhead.train.checkpoint import load_field

    torch_device = resolve_device(device)
    field, _, scale_mat = load_field(checkpoint, torch_device)
    mesh = trimesh.load(mesh_path, process=False)
    mesh.visual.vertex_colors = vertex_colors(field, mesh, scale_mat, torch_device)
    mesh = decimate(mesh, faces)
    return [export_mesh(mesh, Path(out_dir) / f"mesh_colored.{fmt}") for fmt in formats]


@app.command()
@_user_errors
def template(
    out: Path = typer.Argument(..., help="Where to write the template (.npz) and its record."),
) -> None:
    """Regenerate the identity-free head template from privhead's own synthetic heads (the mean
    SDF of 24 identities; the package ships the same bytes, checksum in template_sdf.json)."""
    from privhead.field.template import TEMPLATE_RECORD, write_template

    record = write_template(out)
    shipped = json.loads(TEMPLATE_RECORD.read_text()).get("sha256")
    same = "identical to" if record["sha256"] == shipped else "DIFFERENT from"
    typer.echo(
        f"wrote {out} ({record['resolution']}^3, seeds {record['seeds'][0]}-"
        f"{record['seeds'][-1]}), sha256 {record['sha256'][:16]}..., {same} the shipped template"
    )


@app.command()
@_user_errors
def extract(
    checkpoint: Path = typer.Argument(
        ..., help="A checkpoint written by reconstruct (checkpoints/*.pt)."
    ),
    out: Path = typer.Argument(..., help="Output mesh (.ply, .obj or .glb)."),
    resolution: int = typer.Option(512, help="Marching-cubes samples per axis."),
    colors: bool = typer.Option(
        False, "--colors", help="Vertex colours from the colour network (face: learned w/o RGB)."
    ),
    fmt: str | None = typer.Option(None, "--format", help="ply | obj | glb (default: suffix)."),
    faces: int = typer.Option(0, "--faces", help="Decimate to about this many faces (0 = keep)."),
    keep_all: bool = typer.Option(
        False, help="Keep every connected component, not only the largest."
    ),
    device: str = typer.Option("auto", help="auto | cpu | cuda."),
) -> None:
    """Extract a mesh (dataset world units) from a checkpoint."""
    import time

    from privhead.device import resolve_device
    from privhead.mesh.export import decimate, export_mesh, mesh_format, vertex_colors
    from privhead.reconstruct import mesh_from_field
    from privhead.train.checkpoint import load_field

    start = time.perf_counter()
    mesh_format(out, fmt)
    torch_device = resolve_device(device)
    field, _, scale_mat = load_field(checkpoint, torch_device)
    mesh = mesh_from_field(field, scale_mat, resolution, not keep_all, torch_device)
    if colors:
        mesh.visual.vertex_colors = vertex_colors(field, mesh, scale_mat, torch_device)
    mesh = decimate(mesh, faces)
    out = export_mesh(mesh, out, fmt)
    typer.echo(
        f"wrote {out}: {len(mesh.vertices)} vertices, {len(mesh.faces)} faces, "
        f"{resolution}^3 in {time.perf_counter() - start:.1f} s"
    )


@app.command()
@_user_errors
def demo(
    out: Path = typer.Argument(Path("privhead-demo"), help="Output folder."),
    preset: str = typer.Option("fast", help="tiny | fast | default | paper."),
    seed: int = typer.Option(0, help="Identity of the built-in synthetic head."),
    device: str = typer.Option("auto", help="auto | cpu | cuda."),
    quiet: bool = typer.Option(False, help="No progress bars."),
) -> None:
    """Built-in synthetic head -> protect -> reconstruct -> mesh, scored against its GT."""
    from privhead.demo import run_demo

    summary = run_demo(
        out, preset=preset, seed=seed, device=device, progress=not quiet, log=typer.echo
    )
    typer.echo(summary)


@app.command()
def audit(
    originals: Path = typer.Argument(
        ...,
        metavar="ORIGINALS",
        help="The person's photos: a dataset folder (its views.json sensitive views) or a folder "
        "of images.",
    ),
    out: Path = typer.Argument(..., metavar="OUT", help="Folder for audit.json, report.md, PNGs."),
    protected: Path | None = typer.Option(
        None, "--protected", help="Protected maps: a privacy bundle or a folder of PNG maps."
    ),
    renders: Path | None = typer.Option(
        None, "--renders", help="Colour renders of the reconstruction (folder, names as views)."
    ),
    mesh_renders: Path | None = typer.Option(
        None, "--mesh-renders", help="Shaded renders of the bare reconstructed mesh (folder)."
    ),
    baseline_renders: Path | None = typer.Option(
        None, "--baseline-renders", help="Renders of the full-RGB baseline (folder)."
    ),
    impostor: list[Path] = typer.Option(
        [],
        "--impostor",
        help="Another person's photos (dataset folder or folder of images); repeatable.",
    ),
    lfw_impostors: int = typer.Option(
        100, "--lfw-impostors", help="scikit-image lfw_subset faces used as impostors (0 = none)."
    ),
    views: str = typer.Option(
        "sensitive", "--views", help="Which views of a dataset folder: sensitive or all."
    ),
    detector: str = typer.Option(
        "auto", "--detector", help="auto (all installed), or yunet, centerface, dlib (comma list)."
    ),
    models: str = typer.Option("auto", "--models", help="auto, or sface, dlib (comma list)."),
    inversion_steps: int = typer.Option(
        400, "--inversion-steps", help="Iterations of the inversion attack (0 = no attack)."
    ),
    gallery: Path | None = typer.Option(
        None,
        "--gallery",
        help="Run the attack suite: the attacker's photos, one sub-folder per identity, one of "
        "them (--subject) holding OTHER photos of the person in ORIGINALS.",
    ),
    subject: str | None = typer.Option(
        None, "--subject", help="The gallery sub-folder of the person (default: ORIGINALS' name)."
    ),
    learned_inverter: bool = typer.Option(
        False, "--learned-inverter", help="Suite: also train (minutes, cached) the U-Net attack."
    ),
    privacy: str = typer.Option(
        "paper",
        "--privacy",
        help="The level the --protected maps were made with when they are image files (a "
        "bundle records its operator).",
    ),
) -> None:
    """Privacy audit (paper Tables 2 and 4): face detection and verification on originals,
    protected maps, an inversion attack and renders; perceptual similarity across identities.

    Needs the optional "audit" extra of privhead. Runs offline.
    """
    import time

    import privhead.privacy.audit as audit_lib
    from privhead.privacy.audit import InversionConfig
    from privhead.privacy.faces import load_detectors, load_recognizers
    from privhead.privacy.levels import level_operator

    if gallery is not None:
        _audit_suite(
            originals,
            out,
            gallery,
            subject,
            protected,
            views,
            detector,
            models,
            inversion_steps,
            learned_inverter,
            privacy,
        )
        return
    start = time.perf_counter()
    try:
        if inversion_steps < 0:
            raise PrivheadError(f"--inversion-steps must be >= 0, got {inversion_steps}.")
        detectors = load_detectors(detector)
        if not detectors:
            raise PrivheadError(
                "The audit needs at least one face detector: pip install 'privhead[audit]'."
            )
        recognizers = load_recognizers(models)
        subject = str(originals)
        originals_set = audit_lib.read_image_set(originals, subject, "originals", views)
        derived = {}
        for kind, path in (
            (audit_lib.PROTECTED, protected),
            (audit_lib.RENDERS, renders),
            (audit_lib.MESH_RENDERS, mesh_renders),
            (audit_lib.BASELINE_RENDERS, baseline_renders),
        ):
            if path is not None:
                derived[kind] = audit_lib.read_image_set(path, subject, kind, views)
        impostors = [
            audit_lib.read_image_set(path, f"impostor {k}: {path}", "originals", views)
            for k, path in enumerate(impostor)
        ]
        if lfw_impostors:
            impostors.append(audit_lib.lfw_impostors(lfw_impostors))
        result = audit_lib.run_audit(
            originals_set,
            derived,
            impostors,
            detectors,
            recognizers,
            inversion=InversionConfig(steps=inversion_steps) if inversion_steps else None,
            progress=lambda line: typer.echo(f"audit: {line}", err=True),
            operator_cfg=derived[audit_lib.PROTECTED].operator or level_operator(privacy)
            if audit_lib.PROTECTED in derived
            else None,
        )
        paths = audit_lib.write_report(result, out)
    except PrivheadError as exc:
        _fail(str(exc))
    for entry in result.kinds.values():
        rates = ", ".join(
            f"{model} {100 * v['verified']:.0f}% (AUC {v['auc']:.2f})"
            for model, v in entry["verification"].items()
        )
        typer.echo(f"{entry['label']}: face found {100 * entry['detection']['any']:.0f}%; {rates}")
    typer.echo(
        f"audited {len(result.kinds)} kinds of images in {time.perf_counter() - start:.0f} s; "
        f"wrote {paths['report']}, {paths['json']}, {paths['grid']}"
    )


def _audit_suite(
    originals, out, gallery, subject, protected, views, detector, models, steps, learned, privacy
) -> None:
    """``privhead audit --gallery``: every attack of the suite, scored as identification."""
    import json
    import time

    import privhead.privacy.audit as audit_lib
    from privhead.privacy.audit.attacks import InversionConfig
    from privhead.privacy.audit.suite import (
        FaceSample,
        SuiteConfig,
        read_gallery,
        run_attack_suite,
        suite_table,
    )
    from privhead.privacy.faces import load_detectors, load_recognizers
    from privhead.privacy.levels import level_operator

    start = time.perf_counter()
    try:
        subject = subject or originals.name
        photos = audit_lib.read_image_set(originals, subject, "originals", views)
        samples = read_gallery(gallery)
        if subject not in {s.identity for s in samples}:
            raise PrivheadError(
                f"{gallery} has no sub-folder '{subject}' with other photos of the person "
                "(name it with --subject)."
            )
        operator = level_operator(privacy)
        if protected is not None:
            operator = (
                audit_lib.read_image_set(protected, subject, "protected").operator or operator
            )
        probes = [
            FaceSample(f"probe/{n}", subject, im) for n, im in zip(photos.names, photos.images)
        ]
        inverter = None
        if learned:
            from privhead.privacy.learned_inverter import load_or_train_inverter

            inverter = load_or_train_inverter(operator)
        result = run_attack_suite(
            probes,
            samples,
            operator,
            load_detectors(detector),
            load_recognizers(models),
            SuiteConfig(inversion=InversionConfig(steps=max(steps, 1))),
            inverter,
            progress=lambda line: typer.echo(f"audit: {line}", err=True),
        )
    except PrivheadError as exc:
        _fail(str(exc))
    out.mkdir(parents=True, exist_ok=True)
    table = suite_table(result)
    (out / "suite.md").write_text(
        f"Attack suite on {result.n_probes} photos of {subject} against a gallery of "
        f"{len(result.identities)} people; operator {json.dumps(operator.to_dict())}.\n\n"
        + table
        + "\n"
    )
    (out / "suite.json").write_text(json.dumps(result.rows, indent=1) + "\n")
    typer.echo(table)
    worst = result.worst_case(min_n=1)
    if worst is not None:
        typer.echo(
            f"strongest attack: {worst['label']} ({worst['model']}): rank-1 "
            f"{100 * worst['rank1']['value']:.0f}% on {worst['n']} probe(s) (chance "
            f"{100 / len(result.identities):.0f}%)"
        )
    typer.echo(
        f"audited in {time.perf_counter() - start:.0f} s; wrote {out / 'suite.md'}, "
        f"{out / 'suite.json'}"
    )


@app.command()
@_user_errors
def pack(
    bundle: Path = typer.Argument(..., metavar="BUNDLE", help="A privacy bundle folder."),
    out: Path = typer.Argument(..., metavar="OUT_ZIP", help="Archive to write (.zip)."),
) -> None:
    """Zip a privacy bundle (validated first) for upload to a privhead server."""
    from privhead.service.archive import pack_bundle

    path = pack_bundle(bundle, out)
    typer.echo(f"wrote {path} ({path.stat().st_size} bytes)")


@app.command()
@_user_errors
def serve(
    host: str = typer.Option("127.0.0.1", "--host", help="Address to listen on (loopback)."),
    port: int = typer.Option(8080, "--port", help="TCP port."),
    data: Path = typer.Option(Path("privhead-data"), "--data", help="Jobs, uploads, results."),
    workers: int = typer.Option(1, "--workers", help="Worker processes (one job each)."),
    threads: int = typer.Option(1, "--threads", help="torch threads per worker."),
    keep_bundles: bool = typer.Option(False, help="Keep uploads after their job ends."),
    retention_days: float = typer.Option(7.0, help="Delete results this many days after."),
    device: str = typer.Option("cpu", help="Device of the workers: cpu, cuda, auto."),
    cluster: str | None = typer.Option(
        None,
        "--cluster",
        help="Run the jobs on a Dask cluster: a scheduler address (tcp://host:8786; its workers "
        "must see --data at the same path) or 'local' (--workers processes on loopback). "
        "Needs the cluster extra.",
    ),
) -> None:
    """The reconstruction service: HTTP API + web page + worker processes (SQLite job queue).

    Jobs survive restarts: a job whose worker died is queued again and resumes from its last
    checkpoint. Needs the serve extra: pip install 'privhead[serve]'.
    """
    from privhead.service.server import run_server
    from privhead.service.worker import ServiceConfig

    cfg = ServiceConfig(
        data_dir=data,
        keep_bundles=keep_bundles,
        retention_days=retention_days,
        device=device,
        threads=threads,
    )
    run_server(cfg, host, port, workers, say=typer.echo, cluster=cluster)


@app.command()
@_user_errors
def submit(
    bundle: Path | None = typer.Argument(
        None, metavar="BUNDLE", help="Bundle folder or archive (omit with --job)."
    ),
    server: str = typer.Option(..., "--server", help="Server URL, e.g. http://127.0.0.1:8080."),
    preset: str = typer.Option("default", "--preset", help="tiny | fast | default | paper."),
    overrides: list[str] = typer.Option([], "--set", help="Config override section.field=value."),
    wait: bool = typer.Option(False, "--wait", help="Wait for the job and show its progress."),
    out: Path | None = typer.Option(None, "--out", help="Download the results here (--wait)."),
) -> None:
    """Upload a privacy bundle to a privhead server; with --wait, follow it and download."""
    from privhead.service.client import submit_bundle

    if bundle is None:
        raise PrivheadError("Give the bundle to submit.")
    if out is not None and not wait:
        raise PrivheadError("--out needs --wait.")
    result = submit_bundle(
        bundle, server, preset, list(overrides), wait=wait, out=out, say=typer.echo
    )
    typer.echo(f"job {result['id']}: {result['state']}")


def main(argv: list[str] | None = None) -> None:
    """Console-script entry point."""
    try:
        app(args=argv, standalone_mode=True)
    except PrivheadError as exc:
        typer.secho(f"error: {exc}", fg=typer.colors.RED, err=True)
        sys.exit(1)


if __name__ == "__main__":
    main()
