"""Mesh extraction: an SDF callable -> triangle mesh by block-sparse, chunked marching cubes.

Runs after training (SDF -> mesh) and before evaluation. It takes an ``sdf_fn``, never a model,
and never holds the full ``resolution^3`` volume in memory.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
import scipy.sparse
import scipy.sparse.csgraph
import skimage.measure
import torch
import trimesh

from privhead.errors import PrivheadError
from privhead.progress import progress_bar

_QUANTUM = 2.0**16
"""Vertex merge resolution: grid coordinates are rounded to multiples of 1 / _QUANTUM cells."""

SdfFn = Callable[[torch.Tensor], torch.Tensor]


def extract_mesh(
    sdf_fn: SdfFn,
    resolution: int = 512,
    bound: float = 1.0,
    level: float = 0.0,
    block: int = 64,
    device: str | torch.device = "cpu",
    progress: bool = True,
    *,
    safety: float = 1.75,
    coarse: int = 4,
    chunk: int = 262144,
) -> trimesh.Trimesh:
    """Extract the ``level`` iso-surface of an SDF on a regular grid over ``[-bound, bound]^3``.

    The grid has ``resolution`` samples per axis, sample ``i`` at ``-bound + i * h`` with
    ``h = 2 * bound / (resolution - 1)``. Memory stays bounded:

    1. The SDF is evaluated at the centres of coarse cells of ``coarse`` grid cells per axis. A
       coarse cell is *active* when ``|sdf - level| <= safety * half_diagonal`` (it may hold the
       surface if the SDF is roughly 1-Lipschitz), or when a face-neighbour has the opposite
       sign (a cheap guard against SDFs that are far from Lipschitz).
    2. The grid is cut into blocks of ``block`` cells per axis; neighbouring blocks share one
       sample plane. Blocks without an active coarse cell are skipped. In the others, only the
       samples of active coarse cells are evaluated; the rest are filled with their coarse cell's
       value, whose sign is right by step 1, so they create no surface.
    3. Marching cubes (scikit-image, Lewiner) runs per block; vertices are shifted to global grid
       coordinates and merged when equal to 2^-16 cells (a seam vertex is computed by both
       blocks), so the mesh is watertight for a closed surface.

    Args:
        sdf_fn: maps [P, 3] float32 world points (on ``device``) to [P] signed distances,
            negative inside. Called under ``torch.no_grad`` with ``P <= chunk``.
        resolution: samples per axis (>= 3).
        bound: half the side of the cube, in the SDF's world units.
        level: iso-value to extract.
        block: marching-cubes block size in grid cells per axis (memory ~ ``(block + 1)^3``).
        device: where grid points are created and ``sdf_fn`` is called.
        progress: show a tqdm bar over the blocks.
        safety: multiple of the coarse cell's half-diagonal within which the surface may lie
            (1 is exact for a true SDF; larger tolerates SDFs that grow faster than distance).
        coarse: coarse culling cell size in grid cells per axis.
        chunk: most points passed to ``sdf_fn`` in one call.

    Returns:
        The mesh in the SDF's world coordinates, faces wound so that normals point towards
        positive SDF (outwards for negative-inside SDFs).

    Raises:
        PrivheadError: bad arguments, non-finite SDF values, or no ``level`` crossing inside the
            cube (an empty mesh is never returned).
    """
    if resolution < 3:
        raise PrivheadError(f"Mesh resolution must be at least 3, got {resolution}.")
    if block < 1 or coarse < 1:
        raise PrivheadError(f"Block ({block}) and coarse ({coarse}) sizes must be positive.")
    if not bound > 0:
        raise PrivheadError(f"The extraction bound must be positive, got {bound}.")
    if not safety > 0:
        raise PrivheadError(f"The culling safety factor must be positive, got {safety}.")
    device = torch.device(device)
    spacing = 2.0 * bound / (resolution - 1)
    n_cells = resolution - 1

    def world(indices: np.ndarray) -> torch.Tensor:
        """[P, 3] integer sample indices -> [P, 3] float32 world points on ``device``."""
        idx = torch.from_numpy(np.ascontiguousarray(indices, dtype=np.float32)).to(device)
        return idx * spacing - bound

    def evaluate(indices: np.ndarray) -> np.ndarray:
        out = np.empty(len(indices), dtype=np.float32)
        with torch.no_grad():
            for start in range(0, len(indices), chunk):
                values = sdf_fn(world(indices[start : start + chunk]))
                out[start : start + chunk] = values.reshape(-1).float().cpu().numpy()
        if not np.isfinite(out).all():
            raise PrivheadError("The SDF returned NaN or infinite values: cannot extract a mesh.")
        return out - np.float32(level)

    # 1. Coarse cells: cell c spans samples [c * coarse, min((c + 1) * coarse, n_cells)].
    n_coarse = math.ceil(n_cells / coarse)
    lo = np.arange(n_coarse) * coarse
    hi = np.minimum(lo + coarse, n_cells)
    centre_1d = (lo + hi) / 2.0
    cx, cy, cz = np.meshgrid(centre_1d, centre_1d, centre_1d, indexing="ij")
    coarse_values = evaluate(np.stack([cx, cy, cz], axis=-1).reshape(-1, 3)).reshape(
        (n_coarse,) * 3
    )
    half_diagonal = math.sqrt(3.0) / 2.0 * coarse * spacing
    active = np.abs(coarse_values) <= safety * half_diagonal
    positive = coarse_values > 0
    for axis in range(3):
        differs = np.diff(positive, axis=axis)
        pad_lo = [(0, 0)] * 3
        pad_hi = [(0, 0)] * 3
        pad_lo[axis] = (1, 0)
        pad_hi[axis] = (0, 1)
        active |= np.pad(differs, pad_lo) | np.pad(differs, pad_hi)
    if not active.any():
        raise _no_surface(level, bound, resolution)

    # 2. Blocks with at least one active coarse cell.
    n_blocks = math.ceil(n_cells / block)
    candidates = []
    for bx in range(n_blocks):
        for by in range(n_blocks):
            for bz in range(n_blocks):
                start = np.array([bx, by, bz]) * block
                stop = np.minimum(start + block, n_cells)
                c0, c1 = start // coarse, (stop - 1) // coarse + 1
                if active[c0[0] : c1[0], c0[1] : c1[1], c0[2] : c1[2]].any():
                    candidates.append((start, stop))

    vertex_parts, face_parts = [], []
    n_vertices = 0
    for start, stop in progress_bar(candidates, desc="marching cubes", disable=not progress):
        volume = _block_volume(start, stop, active, coarse_values, coarse, evaluate)
        if volume.min() >= 0 or volume.max() <= 0:
            continue
        verts, faces, _, _ = skimage.measure.marching_cubes(
            volume, level=0.0, gradient_direction="descent"
        )
        vertex_parts.append(verts.astype(np.float64) + start)
        face_parts.append(faces.astype(np.int64) + n_vertices)
        n_vertices += len(verts)
    if not vertex_parts:
        raise _no_surface(level, bound, resolution)

    # 3. Merge duplicates: a seam vertex is computed by both blocks, and a sample lying exactly on
    # the level set yields several vertices that differ only by float32 rounding (t = 0 on one
    # edge, t = 1 - eps on another). Quantising global grid coordinates to 2^-16 cells merges
    # both; faces that collapse are dropped.
    all_vertices = np.concatenate(vertex_parts)
    quantised = np.round(all_vertices * _QUANTUM).astype(np.int64)
    _, first, inverse = np.unique(quantised, axis=0, return_index=True, return_inverse=True)
    grid_vertices = all_vertices[first]
    faces = inverse.reshape(-1)[np.concatenate(face_parts)]
    faces = faces[
        (faces[:, 0] != faces[:, 1]) & (faces[:, 1] != faces[:, 2]) & (faces[:, 0] != faces[:, 2])
    ]
    vertices = grid_vertices * spacing - bound
    mesh = trimesh.Trimesh(vertices=vertices, faces=faces, process=False)
    mesh.remove_unreferenced_vertices()
    return mesh


def _block_volume(
    start: np.ndarray,
    stop: np.ndarray,
    active: np.ndarray,
    coarse_values: np.ndarray,
    coarse: int,
    evaluate: Callable[[np.ndarray], np.ndarray],
) -> np.ndarray:
    """The ``(stop - start + 1)`` sample volume of one block, evaluated only in active cells."""
    n_coarse = active.shape[0]
    axes = [np.arange(start[a], stop[a] + 1) for a in range(3)]
    # A sample on a coarse-cell face belongs to the cells on both sides.
    upper = [np.minimum(ax // coarse, n_coarse - 1) for ax in axes]
    lower = [np.clip((ax - 1) // coarse, 0, n_coarse - 1) for ax in axes]
    needed = np.zeros([len(ax) for ax in axes], dtype=bool)
    for ix in (upper[0], lower[0]):
        for iy in (upper[1], lower[1]):
            for iz in (upper[2], lower[2]):
                needed |= active[np.ix_(ix, iy, iz)]
    volume = coarse_values[np.ix_(upper[0], upper[1], upper[2])].copy()
    local = np.nonzero(needed)
    indices = np.stack([local[a] + start[a] for a in range(3)], axis=1)
    volume[local] = evaluate(indices)
    return volume


def _no_surface(level: float, bound: float, resolution: int) -> PrivheadError:
    return PrivheadError(
        f"The SDF never crosses level {level} inside the cube [-{bound}, {bound}]^3 at "
        f"resolution {resolution}: there is no surface to extract."
    )


def keep_largest_component(mesh: trimesh.Trimesh) -> trimesh.Trimesh:
    """The connected component (sharing vertices) with the largest surface area.

    Args:
        mesh: any triangle mesh; vertices should be merged so components are not split.

    Returns:
        A new mesh holding only that component's faces and the vertices they use.
    """
    faces = np.asarray(mesh.faces, dtype=np.int64)
    if len(faces) == 0:
        raise PrivheadError("The mesh has no faces: there is no component to keep.")
    n = len(mesh.vertices)
    edges = np.concatenate([faces[:, [0, 1]], faces[:, [1, 2]]])
    graph = scipy.sparse.coo_matrix(
        (np.ones(len(edges), dtype=np.int8), (edges[:, 0], edges[:, 1])), shape=(n, n)
    )
    _, labels = scipy.sparse.csgraph.connected_components(graph, directed=False)
    face_labels = labels[faces[:, 0]]
    area = np.bincount(face_labels, weights=mesh.area_faces, minlength=labels.max() + 1)
    keep = face_labels == int(np.argmax(area))
    largest = trimesh.Trimesh(vertices=mesh.vertices.copy(), faces=faces[keep], process=False)
    largest.remove_unreferenced_vertices()
    return largest
