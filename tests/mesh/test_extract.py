"""Tests for block-sparse marching cubes (privhead.mesh.extract) on analytic SDFs."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from privhead.errors import PrivheadError
from privhead.mesh.extract import extract_mesh, keep_largest_component

DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])


def sphere_sdf(center=(0.0, 0.0, 0.0), radius=0.5):
    def sdf(points: torch.Tensor) -> torch.Tensor:
        c = torch.tensor(center, dtype=points.dtype, device=points.device)
        return (points - c).norm(dim=-1) - radius

    return sdf


@pytest.mark.parametrize("device", DEVICES)
def test_sphere_area_volume_watertight_outward(device):
    r = 0.5
    mesh = extract_mesh(
        sphere_sdf(radius=r), resolution=96, block=16, device=device, progress=False
    )
    assert mesh.is_watertight
    assert mesh.area == pytest.approx(4 * math.pi * r**2, rel=0.01)
    assert mesh.volume == pytest.approx(4 / 3 * math.pi * r**3, rel=0.01)
    # normals point towards positive SDF, i.e. away from the centre
    outward = np.einsum("ij,ij->i", mesh.face_normals, mesh.triangles_center)
    assert (outward > 0).all()
    assert np.abs(np.linalg.norm(mesh.vertices, axis=1) - r).max() < 2 * 2 / 95


def test_block_sparse_equals_dense():
    # Off-centre so block seams and culled cells cut the surface at arbitrary places; radius 0.5
    # at resolution 65 also puts samples exactly on the surface (collapsing vertices).
    sdf = sphere_sdf(center=(0.11, -0.07, 0.05), radius=0.45)
    for resolution in (49, 65):
        dense = extract_mesh(sdf, resolution, block=resolution, safety=math.inf, progress=False)
        sparse = extract_mesh(sdf, resolution, block=8, coarse=2, progress=False)
        assert sparse.is_watertight and dense.is_watertight
        assert len(sparse.vertices) == len(dense.vertices)
        assert len(sparse.faces) == len(dense.faces)
        assert sparse.area == pytest.approx(dense.area, rel=1e-6)
        assert sparse.volume == pytest.approx(dense.volume, rel=1e-6)


def test_exact_zero_samples_stay_watertight():
    # r = 0.5 on a 65^3 grid over [-1, 1]: samples such as (0.5, 0, 0) lie exactly on the level set.
    mesh = extract_mesh(sphere_sdf(radius=0.5), 65, block=16, progress=False)
    assert mesh.is_watertight
    assert mesh.volume > 0


def test_torus_genus_one_across_seams():
    def torus(points):
        ring = torch.sqrt(points[:, 0] ** 2 + points[:, 2] ** 2) - 0.6
        return torch.stack([ring, points[:, 1]], dim=-1).norm(dim=-1) - 0.2

    mesh = extract_mesh(torus, 64, block=12, progress=False)
    assert mesh.is_watertight
    assert mesh.euler_number == 0
    assert mesh.area == pytest.approx(4 * math.pi**2 * 0.6 * 0.2, rel=0.02)


def test_level_and_bound():
    mesh = extract_mesh(sphere_sdf(radius=0.5), 64, bound=2.0, level=0.5, progress=False)
    radii = np.linalg.norm(mesh.vertices, axis=1)
    assert radii.mean() == pytest.approx(1.0, rel=0.01)


def test_chunk_bounds_sdf_calls():
    sizes = []
    base = sphere_sdf()

    def sdf(points):
        sizes.append(len(points))
        return base(points)

    extract_mesh(sdf, 33, chunk=1000, progress=False)
    assert max(sizes) <= 1000


def test_keep_largest_component():
    def two_spheres(points):
        big = (points - torch.tensor([-0.4, 0.0, 0.0])).norm(dim=-1) - 0.35
        small = (points - torch.tensor([0.5, 0.0, 0.0])).norm(dim=-1) - 0.2
        return torch.minimum(big, small)

    mesh = extract_mesh(two_spheres, 64, progress=False)
    assert len(mesh.split(only_watertight=False)) == 2
    largest = keep_largest_component(mesh)
    assert largest.is_watertight
    assert (largest.vertices[:, 0] < 0).all()
    assert largest.area == pytest.approx(4 * math.pi * 0.35**2, rel=0.02)
    assert len(largest.faces) < len(mesh.faces)


def test_no_surface_raises():
    with pytest.raises(PrivheadError, match="no surface"):
        extract_mesh(lambda p: p.norm(dim=-1) + 1.0, 32, progress=False)
    # a surface entirely outside the cube is no surface either
    with pytest.raises(PrivheadError, match="no surface"):
        extract_mesh(sphere_sdf(radius=3.0), 32, progress=False)


def test_non_finite_sdf_raises():
    with pytest.raises(PrivheadError, match="NaN"):
        extract_mesh(lambda p: torch.full_like(p[:, 0], float("nan")), 16, progress=False)
