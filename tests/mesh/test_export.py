"""Mesh exports: vertex colours from the colour network, PLY / OBJ / GLB, decimation."""

import numpy as np
import pytest
import trimesh

from privhead.config import FieldConfig
from privhead.errors import PrivheadError
from privhead.field.model import HeadField
from privhead.mesh.export import COLOR_NOTE, decimate, export_mesh, mesh_format, vertex_colors
from privhead.reconstruct import mesh_from_field

FIELD = HeadField(FieldConfig(grid_resolutions=(8, 16), init_radius=0.5)).eval()
SCALE = np.diag([2.0, 2.0, 2.0, 1.0])
SCALE[:3, 3] = [0.1, -0.2, 0.3]


@pytest.fixture(scope="module")
def coloured():
    mesh = mesh_from_field(FIELD, SCALE, 48, progress=False)
    mesh.visual.vertex_colors = vertex_colors(FIELD, mesh, SCALE)
    return mesh


def test_vertex_colours_are_the_networks(coloured):
    import torch

    colours = np.asarray(coloured.visual.vertex_colors)
    assert colours.shape == (len(coloured.vertices), 4) and colours.dtype == np.uint8
    assert (colours[:, 3] == 255).all()
    # The renderer's own query at the normalised vertices, looking along -normal.
    points = torch.tensor((coloured.vertices[:50] - SCALE[:3, 3]) / 2.0, dtype=torch.float32)
    view = -torch.tensor(np.array(coloured.vertex_normals[:50]), dtype=torch.float32)
    _, _, rgb = FIELD.query(points, view)
    expected = np.round(rgb.detach().clamp(0, 1).numpy() * 255)
    assert np.abs(colours[:50, :3] - expected).max() <= 1
    # the world-frame mesh of a 0.5-radius sphere scaled by 2: radius ~1 around the offset
    radii = np.linalg.norm(coloured.vertices - [0.1, -0.2, 0.3], axis=1)
    assert abs(radii.mean() - 1.0) < 0.05


@pytest.mark.parametrize("fmt", ["ply", "obj", "glb"])
def test_formats_round_trip(tmp_path, coloured, fmt):
    path = export_mesh(coloured, tmp_path / f"m.{fmt}")
    assert path.suffix == f".{fmt}" and path.stat().st_size > 0
    back = trimesh.load(path, force="mesh", process=False)
    assert len(back.faces) == len(coloured.faces)
    assert np.allclose(
        np.sort(back.vertices, axis=0), np.sort(coloured.vertices, axis=0), atol=1e-4
    )
    assert back.visual.kind == "vertex"
    got = np.asarray(back.visual.vertex_colors)[:, :3].astype(int)
    assert (
        np.abs(np.sort(got, axis=0) - np.sort(coloured.visual.vertex_colors[:, :3], axis=0)).max()
        <= 1
    )
    if fmt == "glb":
        assert COLOR_NOTE.split(":")[0].encode() in path.read_bytes()


def test_unknown_format_is_one_sentence(tmp_path):
    with pytest.raises(PrivheadError, match="Unknown mesh format 'stl'"):
        mesh_format(tmp_path / "m.stl")


def test_decimation_keeps_colours(coloured):
    pytest.importorskip("fast_simplification")
    small = decimate(coloured, 400)
    assert 300 <= len(small.faces) <= 500
    assert np.asarray(small.visual.vertex_colors).shape == (len(small.vertices), 4)
    assert decimate(coloured, 0) is coloured
