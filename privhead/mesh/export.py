"""Meshes people can use: vertex colours from the colour network, decimation, PLY / OBJ / GLB.

Vertex colours are the colour network's radiance at each vertex, seen along the vertex normal
(from outside). Where the neutral RGB views saw the head (back, hair, ears) they are its real
colours; on the face the network never saw face RGB (only protected gradient maps), so the face
gets whatever colour it learned without it: that is the privacy-preserving result, and every
export says so (:data:`COLOR_NOTE`, written into the GLB's metadata and ``summary.json``).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import trimesh

from privhead.errors import PrivheadError

MESH_FORMATS = ("ply", "obj", "glb")
"""Formats :func:`export_mesh` writes (trimesh's exporters)."""

COLOR_NOTE = (
    "vertex colours: the colour network's radiance along each vertex normal; neutral regions "
    "(seen in the neutral RGB views) keep their real colours, the face region's colours were "
    "learned without any face RGB (privacy-preserving, not the person's true skin)"
)


@torch.no_grad()
def vertex_colors(
    field_, mesh: trimesh.Trimesh, scale_mat: np.ndarray, device="cpu", batch: int = 65536
) -> np.ndarray:
    """[V, 4] uint8 RGBA colours of a world-frame mesh from a trained field.

    Args:
        field_: a :class:`privhead.field.model.HeadField`.
        mesh: the mesh in the dataset's world frame (as ``mesh_from_field`` returns it).
        scale_mat: [4, 4] normalised -> world similarity of the field.
    """
    from privhead.data.cameras import check_similarity
    from privhead.field.model import FEATURE_SCALE

    center, scale = check_similarity(np.asarray(scale_mat, dtype=np.float64))
    points = (np.asarray(mesh.vertices, dtype=np.float64) - center) / scale
    normals = np.array(mesh.vertex_normals, dtype=np.float64)
    colours = []
    for start in range(0, len(points), batch):
        p = torch.as_tensor(points[start : start + batch], dtype=torch.float32, device=device)
        n = torch.as_tensor(normals[start : start + batch], dtype=torch.float32, device=device)
        with torch.enable_grad():
            _, gradient, features = field_.geometry(p, with_gradient=True)
        unit = gradient / gradient.norm(dim=-1, keepdim=True).clamp_min(1e-6)
        rgb = field_.color(p, unit.detach(), -n, features.detach() * FEATURE_SCALE)
        colours.append(rgb.clamp(0, 1).cpu().numpy())
    rgb = np.concatenate(colours) if colours else np.zeros((0, 3))
    alpha = np.ones((len(rgb), 1))
    return np.round(np.concatenate([rgb, alpha], axis=1) * 255).astype(np.uint8)


def decimate(mesh: trimesh.Trimesh, target_faces: int) -> trimesh.Trimesh:
    """Quadric decimation to about ``target_faces`` faces (needs ``fast-simplification``);
    vertex colours follow their nearest kept vertex."""
    if target_faces <= 0 or len(mesh.faces) <= target_faces:
        return mesh
    try:
        import fast_simplification  # noqa: F401
    except ImportError:
        raise PrivheadError(
            "Decimation needs the optional package fast-simplification; install it with: "
            "pip install fast-simplification"
        ) from None
    colours = None
    if mesh.visual.kind == "vertex":
        colours = np.asarray(mesh.visual.vertex_colors)
    reduced = mesh.simplify_quadric_decimation(face_count=int(target_faces))
    if colours is not None and len(reduced.vertices):
        from scipy.spatial import cKDTree

        _, nearest = cKDTree(np.asarray(mesh.vertices)).query(np.asarray(reduced.vertices))
        reduced.visual.vertex_colors = colours[nearest]
    return reduced


def mesh_format(path, fmt: str | None = None) -> str:
    """The format of ``path`` (its suffix) or ``fmt``; one sentence when unknown."""
    name = (fmt or Path(path).suffix.lstrip(".")).lower()
    if name not in MESH_FORMATS:
        raise PrivheadError(
            f"Unknown mesh format {name!r} for {path}; choose one of {', '.join(MESH_FORMATS)}."
        )
    return name


def export_mesh(mesh: trimesh.Trimesh, path, fmt: str | None = None) -> Path:
    """Write ``mesh`` as PLY, OBJ (+ vertex colours as ``v x y z r g b``) or GLB (binary glTF)."""
    path = Path(path)
    name = mesh_format(path, fmt)
    if path.suffix.lower() != f".{name}":
        path = path.with_suffix(f".{name}")
    path.parent.mkdir(parents=True, exist_ok=True)
    if name == "glb":
        scene = trimesh.Scene(mesh)
        scene.metadata["privhead"] = COLOR_NOTE if mesh.visual.kind == "vertex" else "geometry"
        path.write_bytes(scene.export(file_type="glb"))
    elif name == "obj":
        text = mesh.export(file_type="obj", include_color=True, include_normals=False)
        path.write_text(text if isinstance(text, str) else text.decode())
    else:
        mesh.export(path, file_type="ply")
    return path
