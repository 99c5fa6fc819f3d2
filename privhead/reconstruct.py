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
from privhead.data.bundle import PrivacyBundle, read_bundle
from privhead.data.cameras import (
    Cameras,
    denormalize_points,
    estimate_normalization,
    image_rays,
    normalize_cameras,
)
from privhead.data.formats import HeadDataset, load_dataset, write_image
from privhead.errors import PrivheadError
from privhead.field.model import HeadField
from privhead.mesh.extract import extract_mesh, keep_largest_component
from privhead.mesh.render import orbit_cameras, render_views, save_grid
from privhead.render.volume import render_image
from privhead.train.data import TrainingViews, make_training_views
from privhead.train.trainer import Trainer, resolve_device


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
        }


def is_bundle(path: Path) -> bool:
    return (Path(path) / "manifest.json").is_file()


def _scale_mat_or_estimate(scale_mat, cameras: Cameras, masks) -> np.ndarray:
    if scale_mat is not None:
        return np.asarray(scale_mat, dtype=np.float64)
    return estimate_normalization(cameras, masks=masks)


def views_from_bundle(bundle: PrivacyBundle, device: torch.device) -> TrainingViews:
    """Training views of a privacy bundle: neutral RGB (+ masks) and protected maps."""
    if len(bundle.neutral_images):
        scale_mat = _scale_mat_or_estimate(
            bundle.scale_mat, bundle.neutral_cameras, bundle.neutral_masks
        )
    else:
        scale_mat = _scale_mat_or_estimate(bundle.scale_mat, bundle.protected_cameras, None)
    return make_training_views(
        bundle.neutral_images,
        bundle.neutral_masks,
        bundle.neutral_cameras,
        bundle.protected_maps,
        bundle.protected_cameras,
        bundle.operator,
        scale_mat,
        device,
    )


def views_from_dataset(dataset: HeadDataset, device: torch.device) -> TrainingViews:
    """Training views of the full-RGB baseline: every view of the original dataset as RGB."""
    scale_mat = _scale_mat_or_estimate(dataset.scale_mat, dataset.cameras, dataset.masks)
    return make_training_views(
        dataset.images,
        dataset.masks,
        dataset.cameras,
        np.zeros((0, 1, 1), dtype=np.float32),
        None,
        None,
        scale_mat,
        device,
    )


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


def render_mesh_previews(mesh: trimesh.Trimesh, scale_mat: np.ndarray, path: Path) -> Path:
    """Shaded renders of the mesh from six directions around the head, one PNG grid."""
    center = scale_mat[:3, 3]
    scale = float(np.cbrt(abs(np.linalg.det(scale_mat[:3, :3]))))
    cams = orbit_cameras(6, 2.7 * scale, 10.0, 40.0, 256, 256, target=center)
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
            field_.query,
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
    stage_meshes: bool = False,
    log=print,
) -> ReconstructionResult:
    """Run a reconstruction and write mesh, renders, config and checkpoints into ``out_dir``.

    Args:
        source: a privacy bundle (two-stage and ablation modes) or, for ``mode="full-rgb"``, the
            original dataset.
        out_dir: output folder (created).
        cfg: resolved config.
        device: "auto", "cpu", "cuda", ...
        resume: continue an interrupted run in ``out_dir``.
        progress: progress bars.
        stage_meshes: also extract a mesh after every stage (for comparisons).
        log: where one-line messages go.
    """
    start = time.perf_counter()
    source, out_dir = Path(source), Path(out_dir)
    torch_device = resolve_device(device)
    if cfg.mode == "full-rgb":
        if is_bundle(source):
            raise PrivheadError(
                f"{source} is a privacy bundle; the full-RGB baseline needs the original dataset."
            )
        views = views_from_dataset(load_dataset(source), torch_device)
        protected_cameras = None
    else:
        if not is_bundle(source):
            raise PrivheadError(
                f"{source} is not a privacy bundle (no manifest.json): "
                "run `privhead protect` first."
            )
        bundle = read_bundle(source)
        views = views_from_bundle(bundle, torch_device)
        protected_cameras = bundle.protected_cameras
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

    def write_mesh(field_: HeadField, path: Path) -> None:
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
        mesh_seconds[path.name] = time.perf_counter() - tic

    def on_stage_end(name: str, field_: HeadField) -> None:
        if stage_meshes:
            meshes[name] = out_dir / f"mesh_{name}.ply"
            write_mesh(field_, meshes[name])

    trainer = Trainer(cfg, views, out_dir, torch_device, progress=progress)
    stage_seconds = trainer.run(resume=resume, on_stage_end=on_stage_end)

    field_ = trainer.field.eval()
    final = trainer.stages[-1].name
    mesh_path = out_dir / "mesh.ply"
    if final in meshes:
        # The final mesh was already extracted at the end of its stage.
        trimesh.load(meshes[final]).export(mesh_path)
        final_mesh_seconds = mesh_seconds[meshes[final].name]
    else:
        write_mesh(field_, mesh_path)
        final_mesh_seconds = mesh_seconds[mesh_path.name]
    renders = render_mesh_previews(
        trimesh.load(mesh_path), views.scale_mat, out_dir / "renders.png"
    )
    if protected_cameras is not None and len(protected_cameras):
        # Colour renders at the protected views' poses: what the privacy audit examines.
        rgb_dir = out_dir / "renders_rgb"
        rgb_dir.mkdir(exist_ok=True)
        images = render_field_images(field_, protected_cameras, views.scale_mat, cfg)
        for i, image in enumerate(images):
            write_image(rgb_dir / f"{i:06d}.png", image)
    result = ReconstructionResult(
        out_dir=out_dir,
        mesh=mesh_path,
        renders=renders,
        config=config_path,
        checkpoint=last,
        stage_seconds=stage_seconds,
        mesh_seconds=final_mesh_seconds,
        total_seconds=time.perf_counter() - start,
        stage_meshes=meshes,
    )
    (out_dir / "summary.json").write_text(json.dumps(result.to_dict(), indent=2))
    return result
