"""Shaded software renders of triangle meshes (clay or per-vertex colours) and PNG contact sheets.

Used after extraction and by evaluation reports: people look at meshes rather than read them.
A vectorised numpy z-buffer rasteriser, so no OpenGL is needed.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import trimesh
from PIL import Image, ImageDraw, ImageFont

from privhead.data.cameras import Cameras, look_at_c2w
from privhead.errors import PrivheadError

CLAY = (0.78, 0.74, 0.69)
"""Default surface albedo (linear RGB in [0, 1])."""

_MAX_CANDIDATES = 1 << 20
"""Most (triangle, pixel) candidate pairs tested at once: bounds the rasteriser's memory."""


def render_mesh(
    mesh: trimesh.Trimesh,
    K: np.ndarray,
    c2w: np.ndarray,
    width: int,
    height: int,
    vertex_colors: np.ndarray | None = None,
    background=(255, 255, 255),
    *,
    ambient: float = 0.25,
    smooth: bool = True,
    near: float = 1e-3,
) -> np.ndarray:
    """Render a mesh with a headlight (a light at the camera centre).

    Shading is two-sided Lambertian: ``albedo * (ambient + (1 - ambient) * |n . v|)`` where ``v``
    is the unit viewing ray and ``n`` the normal (interpolated vertex normals when ``smooth``,
    else face normals). Barycentric coordinates are perspective-correct; a pixel is covered when
    its centre (integer image coordinates) lies inside the projected triangle.

    Args:
        mesh: triangle mesh in world coordinates.
        K: [3, 3] OpenCV intrinsics (pixel centres at integer coordinates).
        c2w: [4, 4] camera-to-world, OpenCV axes (x right, y down, z forward).
        width, height: image size in pixels.
        vertex_colors: optional [V, 3] (or [V, 4], alpha ignored) albedo per vertex, uint8 or
            float in [0, 1]; default a uniform clay colour.
        background: RGB uint8 colour of uncovered pixels.
        ambient: fraction of the albedo shown regardless of the light.
        smooth: interpolate vertex normals (else flat shading).
        near: triangles with a vertex closer than this depth (world units) are dropped.

    Returns:
        [height, width, 3] uint8 image.
    """
    K = np.asarray(K, dtype=np.float64)
    w2c = np.linalg.inv(np.asarray(c2w, dtype=np.float64))
    vertices = np.asarray(mesh.vertices, dtype=np.float64)
    faces = np.asarray(mesh.faces, dtype=np.int64)
    albedo = _albedo(vertex_colors, len(vertices))

    cam = vertices @ w2c[:3, :3].T + w2c[:3, 3]
    depth = cam[:, 2]
    with np.errstate(divide="ignore", invalid="ignore"):
        pix = cam @ K.T
        uv = pix[:, :2] / pix[:, 2:3]

    pixel, face, bary, inv_depth = _rasterise(uv, depth, faces, width, height, near)

    image = np.empty((height * width, 3), dtype=np.float64)
    image[:] = np.asarray(background, dtype=np.float64) / 255.0
    if len(pixel):
        corners = faces[face]
        # Screen-space barycentrics -> perspective-correct ones (weights / depth, renormalised).
        weights = bary / depth[corners]
        weights /= inv_depth[:, None]
        if smooth:
            normals = np.einsum("pk,pkj->pj", weights, mesh.vertex_normals[corners])
        else:
            normals = np.asarray(mesh.face_normals)[face]
        normals = normals @ w2c[:3, :3].T
        normals /= np.maximum(np.linalg.norm(normals, axis=1, keepdims=True), 1e-12)
        rows, cols = np.divmod(pixel, width)
        rays = np.stack([cols, rows, np.ones_like(cols)], axis=1).astype(np.float64)
        rays = rays @ np.linalg.inv(K).T
        rays /= np.linalg.norm(rays, axis=1, keepdims=True)
        light = ambient + (1.0 - ambient) * np.abs(np.einsum("pj,pj->p", normals, rays))
        colour = np.einsum("pk,pkj->pj", weights, albedo[corners])
        image[pixel] = colour * light[:, None]
    return np.clip(np.round(image * 255.0), 0, 255).astype(np.uint8).reshape(height, width, 3)


def _albedo(vertex_colors: np.ndarray | None, n_vertices: int) -> np.ndarray:
    """[V, 3] float albedo in [0, 1]."""
    if vertex_colors is None:
        return np.broadcast_to(np.asarray(CLAY), (n_vertices, 3))
    colours = np.asarray(vertex_colors)
    if colours.ndim != 2 or colours.shape[0] != n_vertices or colours.shape[1] not in (3, 4):
        raise PrivheadError(
            f"vertex_colors must have shape [{n_vertices}, 3], got {list(colours.shape)}."
        )
    colours = colours[:, :3]
    if colours.dtype == np.uint8:
        return colours.astype(np.float64) / 255.0
    return np.clip(colours.astype(np.float64), 0.0, 1.0)


def _rasterise(
    uv: np.ndarray, depth: np.ndarray, faces: np.ndarray, width: int, height: int, near: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Z-buffer: the nearest triangle at every covered pixel centre.

    Triangles are grouped by the power-of-two size of their pixel bounding box, so that each
    group tests a fixed ``[T, h, w]`` block of candidate pixels in one vectorised step.

    Returns:
        pixel: [P] flat pixel indices (row * width + col) of covered pixels.
        face: [P] index of the visible face.
        bary: [P, 3] screen-space barycentric coordinates of the pixel centre.
        inv_depth: [P] interpolated 1 / depth (linear in screen space).
    """
    z = depth[faces]
    keep = (z > near).all(axis=1)
    tri_uv = uv[faces]
    keep &= np.isfinite(tri_uv).all(axis=(1, 2))
    lo = np.ceil(tri_uv.min(axis=1))
    hi = np.floor(tri_uv.max(axis=1))
    lo = np.maximum(lo, 0)
    hi = np.minimum(hi, [width - 1, height - 1])
    keep &= (hi >= lo).all(axis=1)
    p0, p1, p2 = tri_uv[:, 0], tri_uv[:, 1], tri_uv[:, 2]
    area = _cross(p1 - p0, p2 - p0)
    keep &= np.abs(area) > 1e-12
    index = np.nonzero(keep)[0]
    lo, hi = lo[index].astype(np.int64), hi[index].astype(np.int64)
    extent = hi - lo + 1
    size_class = np.ceil(np.log2(extent)).astype(np.int64)

    pixels, face_ids, barys, inv_depths = [], [], [], []
    for sx, sy in {tuple(c) for c in size_class.tolist()}:
        members = np.nonzero((size_class[:, 0] == sx) & (size_class[:, 1] == sy))[0]
        box_w, box_h = 1 << sx, 1 << sy
        step = max(1, _MAX_CANDIDATES // (box_w * box_h))
        for start in range(0, len(members), step):
            sel = members[start : start + step]
            tri = index[sel]
            cols = lo[sel, 0, None, None] + np.arange(box_w)[None, None, :]
            rows = lo[sel, 1, None, None] + np.arange(box_h)[None, :, None]
            cols, rows = np.broadcast_arrays(cols, rows)
            valid = (cols <= hi[sel, 0, None, None]) & (rows <= hi[sel, 1, None, None])
            t_idx, r_idx, c_idx = np.nonzero(valid)
            tri_sel = tri[t_idx]
            px = cols[t_idx, r_idx, c_idx].astype(np.float64)
            py = rows[t_idx, r_idx, c_idx].astype(np.float64)
            q0, q1, q2 = p0[tri_sel], p1[tri_sel], p2[tri_sel]
            a = area[tri_sel]
            b0 = ((q1[:, 0] - px) * (q2[:, 1] - py) - (q1[:, 1] - py) * (q2[:, 0] - px)) / a
            b1 = ((q2[:, 0] - px) * (q0[:, 1] - py) - (q2[:, 1] - py) * (q0[:, 0] - px)) / a
            b2 = 1.0 - b0 - b1
            inside = (b0 >= 0) & (b1 >= 0) & (b2 >= 0)
            if not inside.any():
                continue
            bary = np.stack([b0[inside], b1[inside], b2[inside]], axis=1)
            tri_in = tri_sel[inside]
            pixels.append(
                rows[t_idx, r_idx, c_idx][inside] * width + cols[t_idx, r_idx, c_idx][inside]
            )
            face_ids.append(tri_in)
            barys.append(bary)
            inv_depths.append(np.einsum("pk,pk->p", bary, 1.0 / z[tri_in]))
    if not pixels:
        empty = np.zeros(0, dtype=np.int64)
        return empty, empty, np.zeros((0, 3)), np.zeros(0)
    pixel = np.concatenate(pixels)
    face = np.concatenate(face_ids)
    bary = np.concatenate(barys)
    inv_depth = np.concatenate(inv_depths)
    # Nearest fragment per pixel: sort by pixel, then by decreasing 1 / depth.
    order = np.lexsort((-inv_depth, pixel))
    first = np.ones(len(order), dtype=bool)
    first[1:] = pixel[order[1:]] != pixel[order[:-1]]
    win = order[first]
    return pixel[win], face[win], bary[win], inv_depth[win]


def _cross(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return a[..., 0] * b[..., 1] - a[..., 1] * b[..., 0]


def orbit_cameras(
    n: int,
    radius: float,
    elevation_deg: float,
    fov_deg: float,
    width: int,
    height: int,
    target=(0.0, 0.0, 0.0),
    up=(0.0, 1.0, 0.0),
    start_azimuth_deg: float = 0.0,
) -> Cameras:
    """``n`` cameras on a circle around ``target``, all looking at it.

    Azimuth 0 puts the camera on the +Z side of the target (for ``up = +Y``), looking along -Z:
    the frontal view of a head facing +Z. Azimuth grows by a right-handed rotation about ``up``
    (90 deg = camera on +X). Elevation lifts the camera towards ``up``.

    Args:
        n: number of cameras, at azimuths ``start + 360 * i / n`` degrees.
        radius: distance from the target (world units).
        elevation_deg: angle above the plane perpendicular to ``up``.
        fov_deg: vertical field of view (square pixels).
        width, height: image size in pixels.
        target: [3] world point looked at.
        up: [3] world up direction.
        start_azimuth_deg: azimuth of the first camera.

    Returns:
        Cameras with OpenCV intrinsics (centred principal point ``((W - 1) / 2, (H - 1) / 2)``).
    """
    if n < 1 or not radius > 0 or not 0 < fov_deg < 180:
        raise PrivheadError(
            f"Orbit needs n >= 1, radius > 0 and 0 < fov < 180 deg; got {n}, {radius}, {fov_deg}."
        )
    up_axis = np.asarray(up, dtype=np.float64)
    up_axis /= np.linalg.norm(up_axis)
    front = np.array([0.0, 0.0, 1.0]) - up_axis[2] * up_axis
    if np.linalg.norm(front) < 1e-9:
        front = np.array([1.0, 0.0, 0.0]) - up_axis[0] * up_axis
    front /= np.linalg.norm(front)
    side = np.cross(up_axis, front)
    target = np.asarray(target, dtype=np.float64)
    focal = (height / 2.0) / math.tan(math.radians(fov_deg) / 2.0)
    K = np.array([[focal, 0.0, (width - 1) / 2.0], [0.0, focal, (height - 1) / 2.0], [0, 0, 1]])
    elevation = math.radians(elevation_deg)
    c2w = []
    for i in range(n):
        azimuth = math.radians(start_azimuth_deg + 360.0 * i / n)
        direction = (
            math.cos(elevation) * (math.cos(azimuth) * front + math.sin(azimuth) * side)
            + math.sin(elevation) * up_axis
        )
        c2w.append(look_at_c2w(target + radius * direction, target, up_axis))
    return Cameras(np.repeat(K[None], n, axis=0), np.stack(c2w), width, height)


def render_views(
    mesh: trimesh.Trimesh,
    cameras: Cameras,
    vertex_colors: np.ndarray | None = None,
    background=(255, 255, 255),
) -> list[np.ndarray]:
    """Render ``mesh`` from every camera: a list of [H, W, 3] uint8 images."""
    return [
        render_mesh(
            mesh,
            cameras.K[i],
            cameras.c2w[i],
            cameras.width,
            cameras.height,
            vertex_colors=vertex_colors,
            background=background,
        )
        for i in range(len(cameras))
    ]


def make_grid(
    images: list[np.ndarray],
    ncols: int,
    labels: list[str] | None = None,
    background=(255, 255, 255),
) -> np.ndarray:
    """Tile images row-major into one [H, W, 3] uint8 array, each label in its tile's corner."""
    if not images:
        raise PrivheadError("No images to put in the grid.")
    if labels is not None and len(labels) != len(images):
        raise PrivheadError(f"{len(labels)} labels for {len(images)} images.")
    ncols = max(1, min(int(ncols), len(images)))
    nrows = math.ceil(len(images) / ncols)
    tile_h = max(im.shape[0] for im in images)
    tile_w = max(im.shape[1] for im in images)
    grid = Image.new("RGB", (ncols * tile_w, nrows * tile_h), tuple(background))
    draw = ImageDraw.Draw(grid)
    font = ImageFont.load_default()
    for i, im in enumerate(images):
        top, left = (i // ncols) * tile_h, (i % ncols) * tile_w
        grid.paste(Image.fromarray(np.asarray(im, dtype=np.uint8)[..., :3]), (left, top))
        if labels is not None and labels[i]:
            draw.text((left + 4, top + 3), str(labels[i]), fill=(0, 0, 0), font=font)
    return np.asarray(grid)


def save_grid(
    images: list[np.ndarray],
    path: str | Path,
    ncols: int,
    labels: list[str] | None = None,
) -> Path:
    """Write the images tiled as one PNG (see :func:`make_grid`); returns the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(make_grid(images, ncols, labels)).save(path)
    return path
