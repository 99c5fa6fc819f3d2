"""Dataset folder of the synthetic head: face region, views.json, face visibility and the writer.

Last stage (shape -> albedo -> grid -> tracer -> rig -> writer): runs the others, writes the files.
"""

from __future__ import annotations

import json
import math
import shutil
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch

from privhead.data.cameras import Cameras
from privhead.data.formats import HeadDataset, write_idr, write_transforms
from privhead.data.synthetic._threads import single_threaded
from privhead.data.synthetic.grid import build_sdf_grid, extract_head_mesh
from privhead.data.synthetic.rig import RigConfig, ring_cameras, ring_layout
from privhead.data.synthetic.shape import (
    FORWARD,
    HEAD_RADIUS,
    UP,
    HeadParams,
    head_landmarks,
    sample_head_params,
)
from privhead.data.synthetic.tracer import AMBIENT, LIGHTS, render_head
from privhead.errors import PrivheadError

SENSITIVE_THRESHOLD_DEG = 110.0
"""A view is sensitive (face visible) when the angle between the camera direction and FORWARD is
at most this (the shared views.json rule)."""
FACE_SPHERE_MM = 95.0
"""Radius of the H3DS face sphere around the nose tip, in millimetres."""


def face_region_dict(params: HeadParams, vertices: np.ndarray) -> dict:
    """The face_region.json content: the H3DS face sphere around the nose tip, its box,
    landmarks and scale (same schema as the shared heads)."""
    landmarks = head_landmarks(params)
    center = np.array(landmarks["nose_tip"])
    radius = FACE_SPHERE_MM / params.mm_per_unit
    inside = vertices[np.linalg.norm(vertices - center, axis=1) < radius]
    return {
        "type": "sphere",
        "sphere_center": center.tolist(),
        "sphere_radius": radius,
        "definition": (
            f"H3DS 'face_sphere': sphere of radius {FACE_SPHERE_MM:g} mm centred at the nose tip "
            "(world units; crop = keep points with |p - center| < radius)"
        ),
        "box_min": inside.min(axis=0).tolist(),
        "box_max": inside.max(axis=0).tolist(),
        "box_definition": "axis-aligned bounding box of the GT vertices inside the sphere",
        "forward": list(FORWARD),
        "up": list(UP),
        "landmarks": landmarks,
        "landmarks_definition": "H3DS landmark names (+ chin), world coordinates",
        "mm_per_unit": params.mm_per_unit,
    }


def _angle_deg(a: np.ndarray, b) -> float:
    cosine = np.dot(a, b) / (np.linalg.norm(a) * np.linalg.norm(b))
    return float(np.degrees(np.arccos(np.clip(cosine, -1.0, 1.0))))


def views_dict(
    cameras: Cameras,
    azimuths_deg: np.ndarray,
    elevations_deg: np.ndarray,
    names: list[str],
    face_visible: list[float],
) -> dict:
    """The views.json content: sensitive (face visible) and neutral views, as the shared heads."""
    views = []
    for i, center in enumerate(cameras.centers):
        angle = _angle_deg(center, FORWARD)
        views.append(
            {
                "index": i,
                "file": f"{names[i]}.png",
                "azimuth_deg": float(azimuths_deg[i]),
                "elevation_deg": float(elevations_deg[i]),
                "angle_to_forward_deg": angle,
                "sensitive": angle <= SENSITIVE_THRESHOLD_DEG,
                "face_visible_fraction": float(face_visible[i]),
                "camera_center": center.tolist(),
            }
        )
    sensitive = [v["index"] for v in views if v["sensitive"]]
    neutral = [v["index"] for v in views if not v["sensitive"]]
    return {
        "forward": list(FORWARD),
        "up": list(UP),
        "sensitive_threshold_deg": SENSITIVE_THRESHOLD_DEG,
        "rule": (
            "sensitive = angle between (camera centre - head centre) and the face forward "
            "direction <= threshold, i.e. the face is visible; neutral = back-of-head views"
        ),
        "face_visible_fraction": (
            "fraction of frontal-face GT vertices (inside the face sphere, normal within 72.5 deg "
            "of forward) that are unoccluded and front-facing in the view"
        ),
        "n_views": len(views),
        "n_sensitive": len(sensitive),
        "n_neutral": len(neutral),
        "sensitive_indices": sensitive,
        "neutral_indices": neutral,
        "views": views,
    }


class _FaceVisibility:
    """Per-view fraction of frontal-face vertices that are front-facing and unoccluded,
    measured against the traced depth of the supersampled render."""

    def __init__(self, cameras: Cameras, supersample: int, vertices, normals, face_region):
        center = np.array(face_region["sphere_center"])
        frontal = (np.linalg.norm(vertices - center, axis=1) < face_region["sphere_radius"]) & (
            normals @ np.array(FORWARD) >= math.cos(math.radians(72.5))
        )
        self.points, self.normals = vertices[frontal], normals[frontal]
        self.cameras = cameras.scaled(cameras.width * supersample, cameras.height * supersample)
        self.fractions = [0.0] * len(cameras)
        self.tolerance = 0.01

    def __call__(self, index: int, t: torch.Tensor, hit: torch.Tensor) -> None:
        if len(self.points) == 0:
            return
        center = self.cameras.centers[index]
        uv, depth = self.cameras.subset([index]).project(self.points)
        cols = np.clip(np.round(uv[0, :, 0]).astype(int), 0, hit.shape[1] - 1)
        rows = np.clip(np.round(uv[0, :, 1]).astype(int), 0, hit.shape[0] - 1)
        distance = np.linalg.norm(self.points - center, axis=1)
        facing = np.einsum("ij,ij->i", self.normals, center - self.points) > 0
        traced = t.numpy()[rows, cols]
        seen = hit.numpy()[rows, cols] & (traced >= distance - self.tolerance) & (depth[0] > 0)
        self.fractions[index] = float(np.mean(facing & seen))


OUTPUT_FILES = (
    "cameras.npz",
    "cameras_sphere.npz",
    "transforms.json",
    "gt_mesh.ply",
    "views.json",
    "face_region.json",
    "meta.json",
)
"""Files :func:`write_synthetic_head` writes beside the ``image/`` and ``mask/`` folders."""


def _prepare_output(out: Path, overwrite: bool) -> None:
    if out.exists() and not out.is_dir():
        raise PrivheadError(f"{out} exists and is not a folder.")
    if out.is_dir() and any(out.iterdir()):
        if not overwrite:
            raise PrivheadError(
                f"{out} is not empty; choose another folder or overwrite it (--overwrite)."
            )
        for folder in ("image", "mask"):
            if (out / folder).is_dir():
                shutil.rmtree(out / folder)
        for name in OUTPUT_FILES:
            (out / name).unlink(missing_ok=True)
    out.mkdir(parents=True, exist_ok=True)


def write_synthetic_head(
    out: Path,
    seed: int = 0,
    n_views: int = 30,
    resolution: int = 64,
    supersample: int = 4,
    overwrite: bool = False,
    progress: Callable[[int], None] | None = None,
    mesh_resolution: int = 160,
    cameras: tuple[Cameras, np.ndarray, np.ndarray] | None = None,
    names: list[str] | None = None,
    background: Callable | None = None,
    on_backdrop: Callable[[int, np.ndarray], None] | None = None,
    albedo_detail: Callable | None = None,
) -> Path:
    """Generate the synthetic head of ``seed`` and write it as a dataset folder.

    Layout (as the shared heads): ``image/``, ``mask/`` (0/255), ``cameras.npz`` and
    ``cameras_sphere.npz`` (IDR / NeuS, ``scale_mat`` = identity), ``transforms.json``
    (nerfstudio), ``gt_mesh.ply`` (world frame, neck cap removed), ``views.json``,
    ``face_region.json`` and ``meta.json``.

    Args:
        out: output folder (created; must be empty unless ``overwrite``).
        seed: identity seed (:func:`sample_head_params`).
        n_views: number of cameras, split over the three rings.
        resolution: image width and height in pixels.
        supersample: sub-pixels per pixel side for antialiasing.
        overwrite: replace the outputs of an earlier run in ``out``.
        progress: optional callback called with the number of views just rendered.
        mesh_resolution: marching-cubes grid size for ``gt_mesh.ply``.
        cameras: optional (cameras, azimuths_deg, elevations_deg) replacing the ring rig
            (square images of ``resolution`` pixels).
        names: optional image file stems (default ``000000``, ``000001``, ...).
        background, on_backdrop: a background behind the head and the callback receiving each
            view rendered in front of it (:func:`privhead.data.synthetic.tracer.render_head`);
            the dataset's own images stay on black.
        albedo_detail: optional albedo texture factor (see ``render_head``).

    Returns:
        ``out``.
    """
    if n_views < 1 or resolution < 8 or supersample < 1 or mesh_resolution < 32:
        raise PrivheadError(
            "write_synthetic_head needs views >= 1, resolution >= 8, supersample >= 1 and "
            f"mesh_resolution >= 32 (got {n_views}, {resolution}, {supersample}, "
            f"{mesh_resolution})."
        )
    out = Path(out)
    _prepare_output(out, overwrite)
    with single_threaded():
        _write_head(
            out,
            seed,
            n_views,
            resolution,
            supersample,
            progress,
            mesh_resolution,
            cameras,
            names,
            background,
            on_backdrop,
            albedo_detail,
        )
    return out


def _write_head(
    out: Path,
    seed: int,
    n_views: int,
    resolution: int,
    supersample: int,
    progress: Callable[[int], None] | None,
    mesh_resolution: int,
    rig_cameras: tuple[Cameras, np.ndarray, np.ndarray] | None = None,
    names: list[str] | None = None,
    background: Callable | None = None,
    on_backdrop: Callable[[int, np.ndarray], None] | None = None,
    albedo_detail: Callable | None = None,
) -> None:
    params = sample_head_params(seed)
    grid = build_sdf_grid(params, resolution=mesh_resolution)
    mesh = extract_head_mesh(grid, params)
    mesh.export(out / "gt_mesh.ply")
    face_region = face_region_dict(params, np.asarray(mesh.vertices))

    rig = RigConfig()
    custom_rig = rig_cameras is not None
    if rig_cameras is None:
        rig_cameras = ring_cameras(n_views, resolution, resolution, rig)
    cameras, azimuths, elevations = rig_cameras
    if len(cameras) != n_views or (cameras.width, cameras.height) != (resolution, resolution):
        raise PrivheadError("The given cameras do not match n_views and resolution.")
    visibility = _FaceVisibility(
        cameras,
        supersample,
        np.asarray(mesh.vertices),
        np.asarray(mesh.vertex_normals),
        face_region,
    )
    rendering = render_head(
        params,
        cameras,
        grid,
        supersample,
        visibility,
        progress,
        background,
        on_backdrop,
        albedo_detail,
    )
    names = names or [f"{i:06d}" for i in range(n_views)]
    views = views_dict(cameras, azimuths, elevations, names, visibility.fractions)
    dataset = HeadDataset(
        images=rendering.images,
        cameras=cameras,
        masks=rendering.masks,
        scale_mat=np.eye(4),
        names=names,
        root=out,
        views=views,
        face_region=face_region,
        gt_mesh=out / "gt_mesh.ply",
    )
    write_idr(dataset, out)
    write_transforms(dataset, out)

    counts, offsets = ring_layout(n_views, rig)
    meta = {
        "name": f"privhead_synth_s{seed}",
        "source": {
            "kind": "privhead synthetic head (analytic SDF, procedural albedo)",
            "seed": int(seed),
            "identity_sampling": "numpy.random.default_rng(seed), privhead.data.synthetic",
            "params": asdict(params),
        },
        "mm_per_unit": params.mm_per_unit,
        "normalisation": (
            "bounding-box centre -> origin, farthest point -> "
            f"{HEAD_RADIUS} (conservative, from a 5 mm grid)"
        ),
        "forward": list(FORWARD),
        "up": list(UP),
        "camera_distance": rig.distance,
        "fov_y_deg": rig.fov_y_deg,
        "renderer": {
            "name": "privhead sphere tracer (torch)",
            "supersampling": int(supersample),
            "lights": [
                {"name": light.name, "dir": list(light.direction), "rgb": list(light.rgb)}
                for light in LIGHTS
            ],
            "ambient": list(AMBIENT),
            "shadows": False,
            "shading": "Lambertian, linear RGB, sRGB-encoded PNG",
            "background": "black",
        },
        "gt_mesh": {
            "vertices": int(len(mesh.vertices)),
            "triangles": int(len(mesh.faces)),
            "marching_cubes_resolution": int(mesh_resolution),
            "note": "marching cubes of the analytic SDF over [-1, 1]^3, flat neck cap removed",
        },
        "resolution": [resolution, resolution],
        "n_views": n_views,
        "intrinsics": cameras.K[0].tolist(),
        "rig": "cameras given by the caller (see shoot.json)"
        if custom_rig
        else {
            "elevations_deg": list(rig.elevations_deg),
            "per_ring": counts,
            "ring_azimuth_offsets_deg": offsets,
        },
    }
    (out / "meta.json").write_text(json.dumps(meta, indent=1) + "\n")
