"""The synthetic head: analytic SDF, mesh, renders, dataset files and the synth command."""

from __future__ import annotations

import json
import math
from dataclasses import replace

import numpy as np
import pytest
import torch
import trimesh
from scipy.ndimage import binary_dilation, binary_erosion
from typer.testing import CliRunner

from privhead.cli import app
from privhead.data.formats import load_dataset
from privhead.data.synthetic import (
    HEAD_RADIUS,
    build_sdf_grid,
    extract_head_mesh,
    head_albedo,
    head_landmarks,
    head_sdf,
    ring_cameras,
    sample_head_params,
    srgb_to_linear,
    surface_normals,
    views_dict,
    write_synthetic_head,
)
from privhead.errors import PrivheadError


@pytest.fixture(scope="module")
def head():
    params = sample_head_params(0)
    mesh = extract_head_mesh(build_sdf_grid(params, resolution=96), params)
    return params, mesh


@pytest.fixture(scope="module")
def dataset_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("synth") / "head"
    write_synthetic_head(out, seed=1, n_views=3, resolution=64, supersample=2, mesh_resolution=96)
    return out


def test_sdf_zero_on_mesh_negative_inside_positive_outside(head):
    params, mesh = head
    vertices = torch.from_numpy(np.asarray(mesh.vertices, dtype=np.float32))
    sdf = head_sdf(vertices, params)
    spacing = 2.0 / 95
    assert sdf.abs().quantile(0.99) < 0.1 * spacing
    assert sdf.abs().max() < 0.5 * spacing
    assert head_sdf(torch.zeros(1, 3), params).item() < -0.2
    far = torch.tensor([[2.0, 0.0, 0.0], [0.0, 0.0, -3.0], [0.0, 2.5, 0.0]])
    # Far away the SDF is close to the distance to the head (which lies inside radius 0.95).
    far_sdf = head_sdf(far, params)
    assert torch.all(far_sdf > far.norm(dim=1) - HEAD_RADIUS - 0.05)
    assert torch.all(far_sdf < far.norm(dim=1))


def test_mesh_fits_unit_sphere_and_faces_outward(head):
    params, mesh = head
    radius = np.linalg.norm(mesh.vertices, axis=1).max()
    assert 0.85 < radius <= HEAD_RADIUS
    # The neck cap is removed: the lowest ring of vertices is an open boundary.
    lowest = mesh.vertices[:, 1].min()
    assert not np.any(
        (mesh.face_normals[:, 1] < -0.99) & (mesh.triangles_center[:, 1] < lowest + 1e-3)
    )
    subset = slice(None, None, 7)
    centers = torch.from_numpy(mesh.triangles_center[subset].astype(np.float32))
    gradients = surface_normals(centers, params).numpy()
    agreement = np.einsum("ij,ij->i", gradients, mesh.face_normals[subset])
    assert np.mean(agreement > 0.5) > 0.99
    # Face along +Z: the most forward point is on the midline (the nose), the crown is up.
    front = mesh.vertices[mesh.vertices[:, 2].argmax()]
    assert abs(front[0]) < 0.02 and front[2] > 0.5
    assert mesh.vertices[:, 1].max() > 0.6


def test_seeds_change_identity_but_are_reproducible(head):
    params, mesh = head
    assert sample_head_params(0) == params
    other = sample_head_params(1)
    vertices = torch.from_numpy(np.asarray(mesh.vertices[::5], dtype=np.float32))
    moved = head_sdf(vertices, other).abs() * other.mm_per_unit
    assert moved.median() > 1.0  # mm
    points = vertices[:2000]
    assert not torch.allclose(head_albedo(points, params), head_albedo(points, other))


def test_albedo_has_skin_hair_and_eyes(head):
    params, mesh = head
    landmarks = head_landmarks(params)
    top = mesh.vertices[mesh.vertices[:, 1].argmax()]
    points = torch.tensor(np.array([landmarks["left_eye"], landmarks["chin"], top])).float()
    pupil, chin, crown = head_albedo(points, params)
    assert pupil.max() < 0.02
    skin = srgb_to_linear(torch.tensor(params.skin_srgb) / 255)
    hair = srgb_to_linear(torch.tensor(params.hair_srgb) / 255)
    assert torch.allclose(chin, skin, rtol=0.3) and not torch.allclose(chin, hair, rtol=0.3)
    assert torch.allclose(crown, hair, rtol=0.3)


def test_views_for_30_cameras_match_the_shared_rig(shared_head_path):
    cameras, azimuths, elevations = ring_cameras(30, 64, 64)
    views = views_dict(cameras, azimuths, elevations, [f"{i:06d}" for i in range(30)], [0.0] * 30)
    assert (views["n_views"], views["n_sensitive"], views["n_neutral"]) == (30, 20, 10)
    assert views["neutral_indices"] == [4, 5, 6, 13, 14, 15, 16, 24, 25, 26]
    assert azimuths[10] == pytest.approx(18.0) and azimuths[5] == pytest.approx(-180.0)
    assert np.allclose(np.linalg.norm(cameras.centers, axis=1), 2.7)
    fy = cameras.K[0, 1, 1]
    assert 2 * math.degrees(math.atan(32 / fy)) == pytest.approx(43.0)
    # Every camera looks at the origin.
    uv, depth = cameras.project(np.zeros((1, 3)))
    assert np.allclose(uv, 31.5) and np.all(depth > 0)
    if (shared_head_path / "cameras.npz").is_file():
        shared = load_dataset(shared_head_path, "idr")
        np.testing.assert_allclose(cameras.K, shared.cameras.K, atol=1e-9)
        np.testing.assert_allclose(cameras.c2w, shared.cameras.c2w, atol=1e-9)
        shared_views = json.loads((shared_head_path / "views.json").read_text())
        assert views["sensitive_indices"] == shared_views["sensitive_indices"]
        assert set(shared_views) <= set(views)


def test_dataset_reloads_through_both_formats(dataset_dir):
    for name in (
        "cameras.npz",
        "cameras_sphere.npz",
        "transforms.json",
        "gt_mesh.ply",
        "views.json",
        "face_region.json",
        "meta.json",
    ):
        assert (dataset_dir / name).is_file(), name
    idr = load_dataset(dataset_dir, "idr")
    ngp = load_dataset(dataset_dir, "transforms")
    assert len(idr) == len(ngp) == 3
    assert idr.images.shape == (3, 64, 64, 3) and idr.masks.shape == (3, 64, 64)
    np.testing.assert_array_equal(idr.images, ngp.images)
    np.testing.assert_array_equal(idr.masks, ngp.masks)
    np.testing.assert_allclose(idr.cameras.K, ngp.cameras.K, atol=1e-9)
    np.testing.assert_allclose(idr.cameras.c2w, ngp.cameras.c2w, atol=1e-9)
    np.testing.assert_allclose(idr.scale_mat, np.eye(4))
    assert idr.views["n_sensitive"] == 2 and idr.views["neutral_indices"] == [1]
    assert idr.gt_mesh == dataset_dir / "gt_mesh.ply"
    # Black background (beyond the antialiased border), a head of plausible size.
    background = ~np.stack([binary_dilation(mask) for mask in idr.masks])
    assert idr.images[background].max() == 0.0
    assert 0.1 < idr.masks.mean() < 0.6
    face = idr.face_region
    assert face["sphere_radius"] * face["mm_per_unit"] == pytest.approx(95.0)
    nose = np.array(face["landmarks"]["nose_tip"])
    params = sample_head_params(1)
    assert abs(head_sdf(torch.from_numpy(nose[None]), params).item()) < 1e-4
    assert nose[2] > face["landmarks"]["chin"][2] and nose[2] > face["landmarks"]["left_eye"][2]
    meta = json.loads((dataset_dir / "meta.json").read_text())
    assert meta["mm_per_unit"] == pytest.approx(params.mm_per_unit)


def test_masks_agree_with_projected_mesh(dataset_dir):
    data = load_dataset(dataset_dir)
    mesh = trimesh.load(dataset_dir / "gt_mesh.ply")
    uv, depth = data.cameras.project(np.asarray(mesh.vertices))
    assert np.all(depth > 0)
    height, width = data.masks.shape[1:]
    for i, mask in enumerate(data.masks):
        cols = np.round(uv[i, :, 0]).astype(int)
        rows = np.round(uv[i, :, 1]).astype(int)
        assert cols.min() >= 0 and rows.min() >= 0 and cols.max() < width and rows.max() < height
        assert mask[rows, cols].mean() > 0.88
        assert binary_dilation(mask)[rows, cols].mean() > 0.995
        # Conversely the mask holds no pixel that no vertex projects to (but its border).
        covered = np.zeros_like(mask)
        covered[rows, cols] = True
        assert covered[binary_erosion(mask)].mean() > 0.99


def test_refuses_non_empty_folder_and_bad_arguments(tmp_path):
    (tmp_path / "notes.txt").write_text("keep me")
    with pytest.raises(PrivheadError, match="not empty"):
        write_synthetic_head(tmp_path, n_views=3, resolution=16)
    with pytest.raises(PrivheadError, match="views"):
        write_synthetic_head(tmp_path / "new", n_views=0)


def test_synth_command(tmp_path):
    out = tmp_path / "head"
    runner = CliRunner()
    args = ["synth", str(out), "--views", "3", "--resolution", "16", "--seed", "2"]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    assert "3 views (2 sensitive, 1 neutral)" in result.output
    assert len(load_dataset(out)) == 3
    again = runner.invoke(app, args)
    assert again.exit_code == 1 and "not empty" in again.output
    assert runner.invoke(app, [*args, "--overwrite"]).exit_code == 0


def test_params_replace_keeps_sdf_consistent(head):
    params, _ = head
    wider = replace(params, head_width=params.head_width * 1.1)
    side = torch.from_numpy(params.to_world([[76.0, 60.0, -10.0]])).float()
    assert head_sdf(side, wider).item() < head_sdf(side, params).item()
