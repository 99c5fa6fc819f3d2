"""Reconstruction side, end to end: privacy bundle -> stages -> SDF -> mesh (PLY) + renders.

Also the full-RGB baseline (VolSDF on every view of the original dataset), which is the
reference the privacy method is compared with.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import trimesh

from privhead.config import ReconstructionConfig, config_to_dict
from privhead.data.cameras import (
    Cameras,
    denormalize_points,
    image_rays,
    normalize_cameras,
)
from privhead.data.formats import load_dataset, write_image
from privhead.device import resolve_device
from privhead.errors import PrivheadError
from privhead.field.model import HeadField
from privhead.mesh.extract import extract_mesh, keep_largest_component
from privhead.mesh.render import orbit_cameras, render_views, save_grid
from privhead.privacy.bundle import read_bundle, view_file_stems
from privhead.render.volume import render_image
from privhead.train.trainer import Trainer
from privhead.train.views import views_from_bundle, views_from_dataset


@dataclass
class ReconstructionResult:
    """Paths and timings of a finished run."""

    out_dir: Path
    mesh: Path
    renders: Path
    config: Path
    checkpoint: Path
    stage_seconds: dict[str, float]
    mesh_seconds: float
    total_seconds: float
    stage_meshes: dict[str, Path] = field(default_factory=dict)
    """Mesh of every stage by stage name (the last stage's is ``mesh``)."""
    view_renders: dict[str, Path] = field(default_factory=dict)
    """Folders of per-view renders (``renders_rgb``, ``renders_mesh``)."""
    template_placement: dict | None = None
    """Template mode: the fitted scale, translation and turn of the template."""

    def to_dict(self) -> dict:
        return {
            "out_dir": str(self.out_dir),
            "mesh": str(self.mesh),
            "renders": str(self.renders),
            "config": str(self.config),
            "checkpoint": str(self.checkpoint),
            "stage_seconds": self.stage_seconds,
            "mesh_seconds": self.mesh_seconds,
            "total_seconds": self.total_seconds,
            "stage_meshes": {k: str(v) for k, v in self.stage_meshes.items()},
            "view_renders": {k: str(v) for k, v in self.view_renders.items()},
            "template_placement": self.template_placement,
        }


def is_bundle(path: Path) -> bool:
    return (Path(path) / "manifest.json").is_file()


def mesh_from_field(
    field_: HeadField,
    scale_mat: np.ndarray,
    resolution: int,
    keep_largest: bool = True,
    device: torch.device | str = "cpu",
    progress: bool = True,
) -> trimesh.Trimesh:
    """Marching cubes of the field's zero level set, in the dataset's world units.

    The SDF is intersected with the unit sphere (the region the field was trained in), so
    nothing outside the normalised region becomes surface.
    """
    field_.geometry.active_levels.fill_(field_.geometry.num_levels)

    def sdf_fn(points: torch.Tensor) -> torch.Tensor:
        return torch.maximum(field_.sdf(points), points.norm(dim=-1) - 1.0)

    mesh = extract_mesh(sdf_fn, resolution=resolution, bound=1.0, device=device, progress=progress)
    if keep_largest:
        mesh = keep_largest_component(mesh)
    mesh.vertices = denormalize_points(np.asarray(mesh.vertices), scale_mat)
    return mesh


def render_mesh_previews(
    mesh: trimesh.Trimesh, scale_mat: np.ndarray, path: Path, c2w: np.ndarray | None = None
) -> Path:
    """Shaded renders of the mesh from six directions around the head, one PNG grid.

    ``c2w`` ([N, 4, 4] OpenCV camera-to-world of the views, when given) sets the previews' up:
    the mean up of the cameras that took the photos, so that a head in a structure-from-motion
    frame (whose +Y is arbitrary) is shown upright; without them world +Y is up."""
    center = scale_mat[:3, 3]
    scale = float(np.cbrt(abs(np.linalg.det(scale_mat[:3, :3]))))
    up = (0.0, 1.0, 0.0)
    if c2w is not None and len(c2w):
        mean_up = -np.asarray(c2w, dtype=np.float64)[:, :3, 1].mean(axis=0)  # image rows run down
        if np.linalg.norm(mean_up) > 1e-6:
            up = mean_up / np.linalg.norm(mean_up)
    cams = orbit_cameras(6, 2.7 * scale, 10.0, 40.0, 256, 256, target=center, up=up)
    return save_grid(render_views(mesh, cams), path, ncols=6)


@torch.no_grad()
def render_field_images(
    field_: HeadField, cameras: Cameras, scale_mat: np.ndarray, cfg: ReconstructionConfig
) -> np.ndarray:
    """Volume-render the trained field's colour from the given (world-frame) cameras.

    Returns:
        [N, H, W, 3] float images in [0, 1].
    """
    device = next(field_.parameters()).device
    cams = normalize_cameras(cameras, scale_mat)
    images = []
    for i in range(len(cams)):
        o, d = image_rays(
            torch.as_tensor(cams.K[i]), torch.as_tensor(cams.c2w[i]), cams.height, cams.width
        )
        out = render_image(
            o.float().to(device),
            d.float().to(device),
            field_.query_deferred,
            field_.sdf,
            field_.beta(),
            cfg.render,
        )
        images.append(out["rgb"].reshape(cams.height, cams.width, 3).clamp(0, 1).cpu().numpy())
    return np.stack(images)


def reconstruct(
    source: Path,
    out_dir: Path,
    cfg: ReconstructionConfig,
    device: str = "auto",
    resume: bool = False,
    progress: bool = True,
    log=print,
    on_step=None,
) -> ReconstructionResult:
    """Run a reconstruction and write meshes, renders, config and checkpoints into ``out_dir``.

    Writes ``mesh.ply`` (the last stage), ``mesh_<stage>.ply`` for every earlier stage (e.g.
    ``mesh_stage1.ply``), ``renders.png`` (mesh previews), and at the poses of the views the
    reconstruction side must not see (protected views; every view for the full-RGB baseline)
    colour renders ``renders_rgb/<view>.png`` and clay renders ``renders_mesh/<view>.png``,
    named by the bundle's view file stems so an audit pairs them with the right photos;
    ``summary.json`` lists every file.

    Args:
        source: a privacy bundle (two-stage and ablation modes) or, for ``mode="full-rgb"``, the
            original dataset.
        out_dir: output folder (created).
        cfg: resolved config.
        device: "auto", "cpu", "cuda", ...
        resume: continue an interrupted run in ``out_dir``.
        progress: progress bars.
        log: where one-line messages go.
        on_step: optional ``(stage, step, steps, losses)`` callback (see ``Trainer.run``).
    """
    start = time.perf_counter()
    source, out_dir = Path(source), Path(out_dir)
    torch_device = resolve_device(device)
    if cfg.mode == "full-rgb":
        if is_bundle(source):
            raise PrivheadError(
                f"{source} is a privacy bundle; the full-RGB baseline needs the original dataset."
            )
        dataset = load_dataset(source)
        views = views_from_dataset(dataset, torch_device)
        render_cameras, render_stems = dataset.cameras, view_file_stems(list(dataset.names))
    else:
        if not is_bundle(source):
            raise PrivheadError(
                f"{source} is not a privacy bundle (no manifest.json): "
                "run `privhead protect` first."
            )
        bundle = read_bundle(source)
        views = views_from_bundle(bundle, torch_device)
        stems = view_file_stems(list(bundle.names))
        render_cameras = bundle.protected_cameras
        render_stems = [stems[i] for i in bundle.protected_indices]
    out_dir.mkdir(parents=True, exist_ok=True)
    config_path = out_dir / "config.json"
    last = out_dir / "checkpoints" / "last.pt"
    if not resume and last.exists():
        raise PrivheadError(
            f"{out_dir} already holds a run; pass --resume to continue it or choose another folder."
        )
    config_path.write_text(json.dumps(config_to_dict(cfg), indent=2))
    log(
        f"{cfg.mode} ({cfg.preset} preset) on {torch_device}: {views.num_rgb} RGB views, "
        f"{views.num_protected} protected views"
    )

    meshes: dict[str, Path] = {}
    mesh_seconds: dict[str, float] = {}

    def write_mesh(name: str, field_: HeadField, path: Path) -> None:
        tic = time.perf_counter()
        mesh = mesh_from_field(
            field_,
            views.scale_mat,
            cfg.mesh_resolution,
            cfg.keep_largest_component,
            torch_device,
            progress,
        )
        mesh.export(path)
        meshes[name] = path
        mesh_seconds[name] = time.perf_counter() - tic

    trainer = Trainer(cfg, views, out_dir, torch_device, progress=progress)
    final = trainer.stages[-1].name

    def on_stage_end(name: str, field_: HeadField) -> None:
        if name != final:
            write_mesh(name, field_, out_dir / f"mesh_{name}.ply")

    stage_seconds = trainer.run(resume=resume, on_stage_end=on_stage_end, on_step=on_step)
    if trainer.template_placement is not None:
        fit = trainer.template_placement
        log(
            "template placement fitted: scale "
            + " x ".join(f"{v:.3f}" for v in fit["scale"])
            + f" (canonical x, y, z), turn {fit['turn_deg']:.1f} deg"
        )
    for stage in trainer.stages[:-1]:
        # A resumed run may have finished this stage before the interruption.
        path = out_dir / f"mesh_{stage.name}.ply"
        if stage.name not in meshes and path.is_file():
            meshes[stage.name] = path

    field_ = trainer.field.eval()
    mesh_path = out_dir / "mesh.ply"
    write_mesh(final, field_, mesh_path)
    final_mesh = trimesh.load(mesh_path)
    all_c2w = torch.cat([views.rgb_c2w, views.protected_c2w]).cpu().numpy()
    renders = render_mesh_previews(final_mesh, views.scale_mat, out_dir / "renders.png", all_c2w)
    view_renders = {}
    if render_cameras is not None and len(render_cameras):
        view_renders = write_view_renders(
            field_, final_mesh, render_cameras, render_stems, views.scale_mat, cfg, out_dir
        )
    result = ReconstructionResult(
        out_dir=out_dir,
        mesh=mesh_path,
        renders=renders,
        config=config_path,
        checkpoint=last,
        stage_seconds=stage_seconds,
        mesh_seconds=mesh_seconds[final],
        total_seconds=time.perf_counter() - start,
        stage_meshes=meshes,
        view_renders=view_renders,
        template_placement=trainer.template_placement,
    )
    (out_dir / "summary.json").write_text(json.dumps(result.to_dict(), indent=2))
    return result


def write_view_renders(
    field_: HeadField,
    mesh: trimesh.Trimesh,
    cameras: Cameras,
    stems: list[str],
    scale_mat: np.ndarray,
    cfg: ReconstructionConfig,
    out_dir: Path,
) -> dict[str, Path]:
    """Colour (volume) and clay (mesh) renders at the given poses, one PNG per view stem.

    The cameras are rescaled so the longer image side is ``cfg.render_size`` px.

    Returns:
        {"renders_rgb": folder, "renders_mesh": folder}.
    """
    factor = cfg.render_size / max(cameras.width, cameras.height)
    width = max(1, round(cameras.width * factor))
    height = max(1, round(cameras.height * factor))
    cams = cameras.scaled(width, height)
    folders = {"renders_rgb": out_dir / "renders_rgb", "renders_mesh": out_dir / "renders_mesh"}
    for folder in folders.values():
        folder.mkdir(exist_ok=True)
    colour = render_field_images(field_, cams, scale_mat, cfg)
    clay = render_views(mesh, cams, background=(0, 0, 0))
    for stem, rgb, grey in zip(stems, colour, clay):
        write_image(folders["renders_rgb"] / f"{stem}.png", rgb)
        write_image(folders["renders_mesh"] / f"{stem}.png", grey.astype(np.float32) / 255.0)
    return folders
