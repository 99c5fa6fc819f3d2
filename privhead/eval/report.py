"""Evaluation pictures: the GT surface coloured by its distance to the prediction, as one PNG.

Sits after :mod:`privhead.eval.metrics`; renders with :mod:`privhead.mesh.render`.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import trimesh
from PIL import Image, ImageDraw, ImageFont

from privhead.data.cameras import Cameras
from privhead.errors import PrivheadError
from privhead.eval.metrics import (
    EvaluationResult,
    Region,
    WholeRegion,
    nearest_neighbors,
    sample_surface,
    transform_points,
)
from privhead.mesh.render import make_grid, orbit_cameras, render_views

OUTSIDE_COLOUR = (0.62, 0.62, 0.62)
"""Albedo of GT vertices outside the evaluated region."""

# Sequential colour map anchors (position in [0, 1], linear RGB): dark blue -> teal -> yellow
# -> red, so small errors read as cool and the clip value as alarm red.
_COLORMAP_ANCHORS = np.array(
    [
        [0.00, 0.16, 0.19, 0.55],
        [0.35, 0.10, 0.58, 0.60],
        [0.70, 0.98, 0.85, 0.22],
        [1.00, 0.82, 0.08, 0.08],
    ]
)


def colormap(values: np.ndarray) -> np.ndarray:
    """Map values in [0, 1] (clipped) to [N, 3] float RGB in [0, 1]."""
    values = np.clip(np.asarray(values, dtype=np.float64), 0.0, 1.0)
    return np.stack(
        [np.interp(values, _COLORMAP_ANCHORS[:, 0], _COLORMAP_ANCHORS[:, c]) for c in (1, 2, 3)],
        axis=-1,
    )


def vertex_distances(
    mesh: trimesh.Trimesh,
    points: np.ndarray,
    normals: np.ndarray | None = None,
    spacing: float | None = None,
    workers: int = 1,
) -> np.ndarray:
    """Distance from each vertex of ``mesh`` to a surface given by samples.

    Without normals: the distance to the nearest sample, which overestimates by up to the sample
    spacing. With ``normals`` and the mean sample ``spacing``: the distance to the nearest
    sample's tangent plane wherever the vertex lies within ``2 * spacing`` of that sample along
    the plane (so a hole in the sampled surface still shows as a large distance).

    Args:
        mesh: surface whose vertices [V, 3] are measured.
        points: [N, 3] samples of the other surface.
        normals: optional [N, 3] unit normals of the samples.
        spacing: mean distance between samples (e.g. ``sqrt(area / N)``), with ``normals``.
        workers: cKDTree query threads.

    Returns:
        [V] distances, world units.
    """
    vertices = np.asarray(mesh.vertices, dtype=np.float64)
    distances, indices = nearest_neighbors(vertices, points, workers)
    if normals is None:
        return distances
    if spacing is None:
        raise PrivheadError("Point-to-plane vertex distances need the sample spacing.")
    plane = np.abs(np.einsum("ij,ij->i", vertices - points[indices], normals[indices]))
    tangential = np.sqrt(np.maximum(distances**2 - plane**2, 0.0))
    return np.where(tangential <= 2.0 * spacing, plane, distances)


def save_error_map(
    mesh: trimesh.Trimesh,
    distances: np.ndarray,
    path: str | Path,
    threshold: float,
    *,
    mm_per_unit: float | None = None,
    inside: np.ndarray | None = None,
    azimuths=(-90.0, -45.0, 0.0, 45.0, 90.0, 180.0),
    elevation_deg: float = 10.0,
    size: int = 320,
    title: str | None = None,
) -> Path:
    """Render ``mesh`` coloured by per-vertex ``distances`` from several views, with a colour bar.

    Args:
        mesh: the surface to colour (the GT, in world units).
        distances: [V] per-vertex distances, world units.
        path: output PNG.
        threshold: distance (world units) at and above which the colour saturates.
        mm_per_unit: when given, the colour bar is labelled in mm as well.
        inside: optional [V] bool; vertices outside are drawn grey (not evaluated).
        azimuths: view azimuths in degrees (0 = frontal view of a head facing +Z).
        elevation_deg: view elevation.
        size: side of each square view, pixels.
        title: caption above the views.

    Returns:
        The written path.
    """
    distances = np.asarray(distances, dtype=np.float64)
    colours = colormap(distances / threshold)
    if inside is not None:
        colours[~np.asarray(inside, dtype=bool)] = OUTSIDE_COLOUR
    vertices = np.asarray(mesh.vertices)
    centre = (vertices.min(axis=0) + vertices.max(axis=0)) / 2
    extent = np.linalg.norm(vertices - centre, axis=1).max()
    fov = 30.0
    distance = 1.05 * extent / math.sin(math.radians(fov) / 2)
    views = [
        orbit_cameras(1, distance, elevation_deg, fov, size, size, centre, start_azimuth_deg=a)
        for a in azimuths
    ]
    cameras = Cameras(
        np.concatenate([v.K for v in views]), np.concatenate([v.c2w for v in views]), size, size
    )
    images = render_views(mesh, cameras, vertex_colors=colours)
    labels = [f"azimuth {a:g}" for a in azimuths]
    grid = make_grid(images, ncols=min(3, len(images)), labels=labels)
    bar = _colour_bar(grid.shape[1], threshold, mm_per_unit)
    header = _caption(grid.shape[1], title or "distance from GT surface to prediction")
    sheet = np.concatenate([header, grid, bar], axis=0)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(sheet).save(path)
    return path


def save_evaluation_error_map(
    pred_mesh: trimesh.Trimesh,
    gt_mesh: trimesh.Trimesh,
    result: EvaluationResult,
    path: str | Path,
    threshold: float = 0.02,
    region: Region | None = None,
) -> Path:
    """Error map of an :func:`~privhead.eval.metrics.evaluate_meshes` result.

    The prediction is re-sampled as in the evaluation (same sample count and seed) and moved by
    the result's alignment; each GT vertex is coloured by its distance to those samples, refined
    to their tangent planes (see :func:`vertex_distances`).
    """
    region = result.region if region is None else region
    points, normals = sample_surface(pred_mesh, result.samples, result.seed)
    points = transform_points(result.transform, points)
    normals = normals @ result.transform[:3, :3].T
    spacing = math.sqrt(pred_mesh.area / result.samples)
    distances = vertex_distances(gt_mesh, points, normals, spacing)
    inside = None if isinstance(region, WholeRegion) else region.contains(gt_mesh.vertices)
    mm = result.mm_per_unit
    clip = f"{threshold:g} units" + (f" = {threshold * mm:.3g} mm" if mm else "")
    title = (
        f"GT coloured by distance to the prediction (clipped at {clip}); "
        f"chamfer {result.metrics.chamfer:.4g} units"
        + (f" = {result.metrics.chamfer * mm:.3g} mm" if mm else "")
    )
    return save_error_map(
        gt_mesh, distances, path, threshold, mm_per_unit=mm, inside=inside, title=title
    )


def _caption(width: int, text: str) -> np.ndarray:
    image = Image.new("RGB", (width, 22), (255, 255, 255))
    ImageDraw.Draw(image).text((6, 5), text, fill=(0, 0, 0), font=ImageFont.load_default())
    return np.asarray(image)


def _colour_bar(width: int, threshold: float, mm_per_unit: float | None) -> np.ndarray:
    """A horizontal colour bar with ticks at 0, threshold / 2 and threshold."""
    height, margin, bar_h = 46, 30, 14
    image = Image.new("RGB", (width, height), (255, 255, 255))
    bar_w = width - 2 * margin
    ramp = (colormap(np.linspace(0.0, 1.0, bar_w)) * 255).round().astype(np.uint8)
    image.paste(Image.fromarray(np.repeat(ramp[None], bar_h, axis=0)), (margin, 6))
    draw = ImageDraw.Draw(image)
    font = ImageFont.load_default()
    for fraction in (0.0, 0.5, 1.0):
        value = fraction * threshold
        text = f"{value:.3g}" + (f" ({value * mm_per_unit:.3g} mm)" if mm_per_unit else "")
        if fraction == 1.0:
            text = ">= " + text
        x = margin + fraction * (bar_w - 1)
        draw.line([(x, 6 + bar_h), (x, 10 + bar_h)], fill=(0, 0, 0))
        text_w = draw.textlength(text, font=font)
        left = min(max(x - text_w / 2, 2), width - text_w - 2)
        draw.text((left, 12 + bar_h), text, fill=(0, 0, 0), font=font)
    return np.asarray(image)
