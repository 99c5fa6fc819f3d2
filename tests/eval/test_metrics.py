"""Tests for geometry evaluation (privhead.eval.metrics / report) and ``privhead evaluate``."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import trimesh
from PIL import Image

from privhead.cli import main
from privhead.errors import PrivheadError
from privhead.eval.metrics import (
    BoxRegion,
    SphereRegion,
    chamfer,
    evaluate_meshes,
    icp,
    landmark_alignment,
    load_mesh,
    nose_tip_region,
    point_mesh_distance,
    read_face_region,
    sample_surface,
    transform_points,
)
from privhead.eval.report import save_error_map, vertex_distances


def rigid(angle_deg: float, axis, translation) -> np.ndarray:
    axis = np.asarray(axis, dtype=np.float64) / np.linalg.norm(axis)
    a = math.radians(angle_deg)
    cross = np.array([[0, -axis[2], axis[1]], [axis[2], 0, -axis[0]], [-axis[1], axis[0], 0]])
    T = np.eye(4)
    T[:3, :3] = np.eye(3) + math.sin(a) * cross + (1 - math.cos(a)) * cross @ cross
    T[:3, 3] = translation
    return T


def blob() -> trimesh.Trimesh:
    """An asymmetric closed surface: a bumpy ellipsoid."""
    mesh = trimesh.creation.icosphere(subdivisions=4, radius=1.0)
    v = mesh.vertices
    bump = 1 + 0.15 * np.exp(-np.sum((v - [0.6, 0.6, 0.5]) ** 2, axis=1) / 0.1)
    return trimesh.Trimesh(v * [0.5, 0.35, 0.25] * bump[:, None], mesh.faces, process=False)


def displaced(mesh: trimesh.Trimesh, offset: float) -> trimesh.Trimesh:
    return trimesh.Trimesh(
        mesh.vertices + offset * mesh.vertex_normals, mesh.faces.copy(), process=False
    )


# ---------------------------------------------------------------------------- sampling


def test_sample_surface_deterministic_uniform_on_surface():
    # two unit-normal squares of area 1 (z = 0) and 3 (z = 1): 1/4 of the samples on the first
    small = trimesh.Trimesh(
        [[0, 0, 0], [1, 0, 0], [1, 1, 0], [0, 1, 0]], [[0, 1, 2], [0, 2, 3]], process=False
    )
    big = trimesh.Trimesh(
        [[0, 0, 1], [3, 0, 1], [3, 1, 1], [0, 1, 1]], [[0, 1, 2], [0, 2, 3]], process=False
    )
    mesh = trimesh.util.concatenate([small, big])
    points, normals = sample_surface(mesh, 40_000, seed=3)
    again, _ = sample_surface(mesh, 40_000, seed=3)
    other, _ = sample_surface(mesh, 40_000, seed=4)
    np.testing.assert_array_equal(points, again)
    assert not np.array_equal(points, other)
    on_small = points[:, 2] == 0
    assert on_small.mean() == pytest.approx(0.25, abs=0.01)
    assert (np.abs(points[~on_small, 2] - 1) < 1e-12).all()
    # uniform inside each face: the big square's x is uniform on [0, 3]
    assert np.histogram(points[~on_small, 0], bins=3, range=(0, 3))[0] / (~on_small).sum() == (
        pytest.approx([1 / 3] * 3, abs=0.015)
    )
    np.testing.assert_allclose(normals, np.tile([0, 0, 1.0], (len(points), 1)), atol=1e-12)
    # samples are not vertices
    assert len(np.unique(points, axis=0)) == len(points)


def test_sample_surface_errors():
    with pytest.raises(PrivheadError, match="positive"):
        sample_surface(blob(), 0)
    with pytest.raises(PrivheadError, match="zero surface area"):
        sample_surface(trimesh.Trimesh([[0, 0, 0], [1, 0, 0], [2, 0, 0]], [[0, 1, 2]]), 10)


# ---------------------------------------------------------------------------- chamfer


def naive(pred, gt, pred_n, gt_n, thresholds, pred_mask, gt_mask):
    def one_way(queries, q_normals, targets, t_normals):
        dists, dots = [], []
        for q, qn in zip(queries, q_normals, strict=True):
            best, best_j = math.inf, -1
            for j, t in enumerate(targets):
                d = math.sqrt(sum((q[k] - t[k]) ** 2 for k in range(3)))
                if d < best:
                    best, best_j = d, j
            dists.append(best)
            dots.append(abs(float(np.dot(qn, t_normals[best_j]))))
        return np.array(dists), np.array(dots)

    d_p, n_p = one_way(pred[pred_mask], pred_n[pred_mask], gt, gt_n)
    d_g, n_g = one_way(gt[gt_mask], gt_n[gt_mask], pred, pred_n)
    out = {
        "accuracy": d_p.mean(),
        "completeness": d_g.mean(),
        "chamfer": (d_p.mean() + d_g.mean()) / 2,
        "accuracy_sq": (d_p**2).mean(),
        "completeness_sq": (d_g**2).mean(),
        "chamfer_sq": ((d_p**2).mean() + (d_g**2).mean()) / 2,
        "normal_consistency": (n_p.mean() + n_g.mean()) / 2,
        "normal_error_deg": (
            np.degrees(np.arccos(np.clip(n_p, 0, 1))).mean()
            + np.degrees(np.arccos(np.clip(n_g, 0, 1))).mean()
        )
        / 2,
    }
    out["fscores"] = []
    for t in thresholds:
        p, r = (d_p < t).mean(), (d_g < t).mean()
        out["fscores"].append((p, r, 2 * p * r / (p + r) if p + r > 0 else 0.0))
    return out


def unit_rows(rng, n):
    v = rng.normal(size=(n, 3))
    return v / np.linalg.norm(v, axis=1, keepdims=True)


def test_chamfer_matches_naive_double_loop():
    rng = np.random.default_rng(0)
    pred, gt = rng.random((60, 3)), rng.random((75, 3)) + 0.05
    pred_n, gt_n = unit_rows(rng, 60), unit_rows(rng, 75)
    pred_mask, gt_mask = rng.random(60) < 0.7, rng.random(75) < 0.6
    thresholds = (0.05, 0.1, 0.2)
    result = chamfer(pred, gt, pred_n, gt_n, thresholds, pred_mask, gt_mask)
    reference = naive(pred, gt, pred_n, gt_n, thresholds, pred_mask, gt_mask)
    for key in (
        "accuracy",
        "completeness",
        "chamfer",
        "accuracy_sq",
        "completeness_sq",
        "chamfer_sq",
        "normal_consistency",
        "normal_error_deg",
    ):
        assert getattr(result, key) == pytest.approx(reference[key], rel=1e-12), key
    for got, (p, r, f) in zip(result.fscores, reference["fscores"], strict=True):
        assert (got.precision, got.recall, got.fscore) == pytest.approx((p, r, f), rel=1e-12)
    assert (result.n_pred, result.n_gt) == (pred_mask.sum(), gt_mask.sum())
    # without masks or normals
    full = chamfer(pred, gt)
    ones = np.ones(60, bool), np.ones(75, bool)
    reference = naive(pred, gt, pred_n, gt_n, (), *ones)
    assert full.chamfer == pytest.approx(reference["chamfer"], rel=1e-12)
    assert full.normal_consistency is None and full.normal_error_deg is None


def test_normal_error_sees_ripples_that_distances_hide():
    # A flat plane against the same plane with a 1 % ripple: the distances barely move, the
    # normals turn by atan(2 pi * 0.01 * 5) ~ 17 degrees at the steepest.
    xs, ys = np.meshgrid(np.linspace(0, 1, 120), np.linspace(0, 1, 120))
    flat = np.stack([xs.ravel(), ys.ravel(), np.zeros(xs.size)], axis=1)
    up = np.tile([0.0, 0.0, 1.0], (len(flat), 1))
    z = 0.01 * np.sin(2 * np.pi * 5 * xs.ravel())
    slope = 0.01 * 2 * np.pi * 5 * np.cos(2 * np.pi * 5 * xs.ravel())
    rippled = flat + np.stack([0 * z, 0 * z, z], axis=1)
    normals = np.stack([-slope, 0 * slope, np.ones_like(slope)], axis=1)
    normals /= np.linalg.norm(normals, axis=1, keepdims=True)
    same = chamfer(flat, flat, up, up)
    assert same.normal_error_deg == pytest.approx(0.0, abs=1e-6)
    ripple = chamfer(rippled, flat, normals, up)
    assert ripple.chamfer < 0.01
    expected = np.degrees(np.arctan(np.abs(slope))).mean()
    assert ripple.normal_error_deg == pytest.approx(expected, rel=0.05)
    assert ripple.normal_error_deg > 10


def test_chamfer_subsampling_bounds_points():
    rng = np.random.default_rng(1)
    points = rng.random((5000, 3))
    result = chamfer(points, points + 1e-3, max_points=1000)
    assert result.n_pred == 1000 and result.n_gt == 1000
    assert result.chamfer == pytest.approx(math.sqrt(3) * 1e-3, rel=1e-9)


def test_region_queries_search_the_full_other_surface():
    region = SphereRegion((0, 0, 0), 1.0)
    pred = np.array([[0.95, 0, 0], [5.0, 0, 0]])
    gt = np.array([[1.05, 0, 0], [0.0, 0, 0.2]])
    result = chamfer(
        pred, gt, pred_mask=region.contains(pred), gt_mask=region.contains(gt), thresholds=()
    )
    # the pred point inside finds the GT point just outside the region
    assert result.n_pred == 1 and result.n_gt == 1
    assert result.accuracy == pytest.approx(0.1)
    assert result.completeness == pytest.approx(math.hypot(0.95, 0.2))


def test_region_contains():
    rng = np.random.default_rng(2)
    points = rng.uniform(-2, 2, size=(2000, 3))
    sphere = SphereRegion((0.5, -0.2, 0.1), 0.8)
    inside = sphere.contains(points)
    assert 0 < inside.sum() < len(points)
    np.testing.assert_array_equal(inside, np.linalg.norm(points - [0.5, -0.2, 0.1], axis=1) < 0.8)
    box = BoxRegion((-1, 0, -0.5), (0, 1, 0.5))
    in_box = box.contains(points)
    assert (points[in_box] >= [-1, 0, -0.5]).all() and (points[in_box] <= [0, 1, 0.5]).all()
    assert ((points[~in_box] < [-1, 0, -0.5]) | (points[~in_box] > [0, 1, 0.5])).any(1).all()
    assert nose_tip_region({"nose_tip": np.array([0, 0, 1.0])}, 200.0).radius == 95 / 200
    with pytest.raises(PrivheadError):
        SphereRegion((0, 0), 1.0)


def test_evaluate_with_region_counts_only_points_inside():
    mesh = trimesh.creation.icosphere(subdivisions=4, radius=1.0)
    region = SphereRegion((0, 0, 1), 0.5)
    result = evaluate_meshes(displaced(mesh, 0.02), mesh, region=region, samples=20_000)
    gt_points, _ = sample_surface(mesh, 20_000, 0)
    assert result.metrics.n_gt == region.contains(gt_points).sum() < 20_000 / 5
    assert result.metrics.chamfer == pytest.approx(0.02, rel=0.05)
    with pytest.raises(PrivheadError, match="region"):
        evaluate_meshes(mesh, mesh, region=SphereRegion((5, 5, 5), 0.1), samples=1000)


# ---------------------------------------------------------------------------- known distances


def test_concentric_spheres_chamfer():
    inner = trimesh.creation.icosphere(subdivisions=5, radius=1.0)
    outer = trimesh.creation.icosphere(subdivisions=5, radius=1.1)
    result = evaluate_meshes(inner, outer, samples=100_000, mm_per_unit=100.0, surface=False)
    assert result.metrics.chamfer == pytest.approx(0.1, rel=0.01)
    assert result.metrics.accuracy == pytest.approx(0.1, rel=0.01)
    assert result.metrics.completeness == pytest.approx(0.1, rel=0.01)
    assert result.metrics.chamfer_sq == pytest.approx(0.01, rel=0.02)
    data = result.to_dict()
    assert data["chamfer_mm"] == pytest.approx(data["chamfer"] * 100.0)
    assert data["chamfer_sq_mm2"] == pytest.approx(data["chamfer_sq"] * 100.0**2)
    assert data["fscore"][0]["threshold_mm"] == pytest.approx(0.5)
    json.dumps(data)


def test_identical_meshes_give_zero():
    mesh = blob()
    result = evaluate_meshes(mesh, mesh, samples=20_000, seed=5)
    assert result.metrics.chamfer == 0.0 and result.metrics.chamfer_sq == 0.0
    assert all(f.fscore == 1.0 for f in result.metrics.fscores)
    assert result.metrics.normal_consistency == pytest.approx(1.0)
    assert "accuracy_mm" not in result.to_dict()
    # different samples of the same surface differ by no more than the sampling noise
    a, _ = sample_surface(mesh, 100_000, seed=1)
    b, _ = sample_surface(mesh, 100_000, seed=2)
    spacing = math.sqrt(mesh.area / 100_000)
    assert 0 < chamfer(a, b).chamfer < spacing


def test_sphere_displaced_along_normals():
    mesh = trimesh.creation.icosphere(subdivisions=5, radius=0.5)
    result = evaluate_meshes(displaced(mesh, 0.01), mesh, samples=200_000, surface=False)
    assert result.metrics.chamfer == pytest.approx(0.01, rel=0.05)


def test_head_displaced_along_normals(shared_head):
    gt = load_mesh(shared_head / "gt_mesh.ply")
    face = read_face_region(shared_head / "face_region.json")
    result = evaluate_meshes(displaced(gt, 0.01), gt, mm_per_unit=face.mm_per_unit, surface=False)
    assert result.metrics.chamfer == pytest.approx(0.01, rel=0.05)
    assert result.to_dict()["chamfer_mm"] == pytest.approx(0.01 * face.mm_per_unit, rel=0.05)
    in_face = evaluate_meshes(displaced(gt, 0.01), gt, region=face.sphere)
    assert in_face.metrics.chamfer == pytest.approx(0.01, rel=0.05)
    assert in_face.surface.chamfer == pytest.approx(0.01, rel=0.05)


def _brute_force_distances(points, triangles):
    """Distance to the nearest triangle by trying every triangle with a dense barycentric net."""
    u, v = np.meshgrid(np.linspace(0, 1, 201), np.linspace(0, 1, 201))
    keep = u + v <= 1
    u, v = u[keep], v[keep]
    a, b, c = triangles[:, 0], triangles[:, 1], triangles[:, 2]
    net = a[:, None] + u[None, :, None] * (b - a)[:, None] + v[None, :, None] * (c - a)[:, None]
    net = net.reshape(-1, 3)
    return np.sqrt(((points[:, None] - net[None]) ** 2).sum(-1)).min(1)


def test_point_mesh_distance_matches_a_dense_net():
    rng = np.random.default_rng(3)
    triangles = rng.normal(size=(6, 3, 3))
    triangles[5, 2] = triangles[5, 0]  # degenerate: two equal corners
    triangles[4] *= 6.0  # one large triangle, cut into pieces before the search
    mesh = trimesh.Trimesh(triangles.reshape(-1, 3), np.arange(18).reshape(6, 3), process=False)
    points = rng.normal(size=(40, 3)) * 1.5
    exact = point_mesh_distance(points, mesh, candidates=1)
    net = _brute_force_distances(points, triangles)
    # the surface distance is never farther than the net's best and at most a net step nearer
    assert np.all(exact <= net + 1e-12)
    assert np.all(net - exact < 0.02 * np.abs(triangles).max())


def test_point_mesh_distance_is_exact_and_needs_no_dense_sampling():
    mesh = trimesh.creation.icosphere(subdivisions=2)
    rng = np.random.default_rng(0)
    points = rng.normal(size=(300, 3))
    triangles = np.asarray(mesh.triangles)
    every = np.full(len(points), np.inf)
    for t in range(len(triangles)):
        tri = np.repeat(triangles[t : t + 1], len(points), axis=0)
        nearest = trimesh.triangles.closest_point(tri, points)
        every = np.minimum(every, np.linalg.norm(points - nearest, axis=1))
    np.testing.assert_allclose(point_mesh_distance(points, mesh, candidates=2), every, atol=1e-12)


def test_surface_chamfer_has_no_sampling_floor():
    coarse = blob()
    fine = coarse.subdivide()  # the same surface, other triangles, other samples
    result = evaluate_meshes(fine, coarse, samples=20_000)
    spacing = math.sqrt(coarse.area / 20_000)
    assert result.metrics.chamfer > 0.1 * spacing  # the point-set metric's floor
    assert result.surface.chamfer < 1e-9
    outer = trimesh.creation.icosphere(subdivisions=5, radius=0.5)
    shifted = evaluate_meshes(displaced(outer, 0.01), outer, samples=20_000)
    assert shifted.surface.chamfer == pytest.approx(0.01, rel=0.02)
    assert shifted.surface.chamfer < shifted.metrics.chamfer
    data = evaluate_meshes(fine, coarse, samples=2_000, mm_per_unit=10.0).to_dict()
    assert data["surface_chamfer_mm"] == pytest.approx(10.0 * data["surface_chamfer"])
    assert (
        "surface_chamfer" not in evaluate_meshes(fine, coarse, samples=500, surface=False).to_dict()
    )


# ---------------------------------------------------------------------------- alignment


def test_icp_recovers_rigid_transform():
    target, _ = sample_surface(blob(), 4000, seed=0)
    truth = rigid(4.0, (1, 2, 3), (0.02, -0.01, 0.015))
    source = transform_points(np.linalg.inv(truth), target)
    result = icp(source, target)
    assert result.converged
    np.testing.assert_allclose(result.transform, truth, atol=1e-6)
    assert result.rms < 1e-6


def test_evaluate_icp_and_landmarks_undo_a_rigid_motion():
    gt = blob()
    truth = rigid(3.0, (0, 1, 0.2), (0.01, 0.0, -0.02))
    pred = gt.copy()
    pred.apply_transform(np.linalg.inv(truth))
    unaligned = evaluate_meshes(pred, gt, samples=20_000)
    aligned = evaluate_meshes(pred, gt, samples=20_000, align="icp")
    assert unaligned.metrics.chamfer > 0.005
    assert aligned.metrics.chamfer < 1e-5
    np.testing.assert_allclose(aligned.transform, truth, atol=1e-4)

    # a large motion: landmarks first
    truth = rigid(70.0, (1, 1, 0), (0.3, -0.2, 0.1))
    pred = gt.copy()
    pred.apply_transform(np.linalg.inv(truth))
    gt_marks = {f"v{i}": gt.vertices[i] for i in (0, 5, 40, 200)}
    pred_marks = {
        k: transform_points(np.linalg.inv(truth), v[None])[0] for k, v in gt_marks.items()
    }
    np.testing.assert_allclose(landmark_alignment(pred_marks, gt_marks), truth, atol=1e-9)
    result = evaluate_meshes(
        pred,
        gt,
        samples=20_000,
        align="landmarks",
        pred_landmarks=pred_marks,
        gt_landmarks=gt_marks,
    )
    assert result.metrics.chamfer < 1e-5
    with pytest.raises(PrivheadError, match="at least 3"):
        landmark_alignment({"a": np.zeros(3)}, {"a": np.zeros(3)})


# ---------------------------------------------------------------------------- pictures and CLI


def test_vertex_distances_and_error_map(tmp_path):
    plane = trimesh.Trimesh(
        [[-1, -1, 0], [1, -1, 0], [1, 1, 0], [-1, 1, 0]], [[0, 1, 2], [0, 2, 3]], process=False
    )
    points, normals = sample_surface(plane, 2000, seed=0)
    points = points + [0, 0, 0.01]
    spacing = math.sqrt(4 / 2000)
    probe = trimesh.Trimesh([[0.1, 0.2, 0.0], [0.3, -0.4, 0.0], [5.0, 0, 0]], [[0, 1, 2]])
    exact = vertex_distances(probe, points, normals, spacing)
    np.testing.assert_allclose(exact[:2], 0.01, rtol=1e-9)
    assert exact[2] > 3.9  # far off the sampled surface: not flattened onto its plane
    nearest = vertex_distances(probe, points)
    assert (nearest[:2] > 0.01).all()

    mesh = trimesh.creation.icosphere(subdivisions=3, radius=0.5)
    distances = np.clip(mesh.vertices[:, 2], 0, None)
    path = save_error_map(mesh, distances, tmp_path / "err.png", 0.5, mm_per_unit=200.0)
    image = np.asarray(Image.open(path).convert("RGB")).astype(int)
    red = (image[..., 0] > 150) & (image[..., 1] < 80) & (image[..., 2] < 80)
    blue = (image[..., 2] > 100) & (image[..., 0] < 80)
    assert red.sum() > 100 and blue.sum() > 100


def test_cli_evaluate_head_against_itself(tmp_path, capsys, shared_head):
    gt = str(shared_head / "gt_mesh.ply")
    out = tmp_path / "metrics.json"
    args = ["evaluate", gt, gt, "--face-region", str(shared_head / "face_region.json")]
    args += ["--samples", "50000", "--json", str(out), "--error-map", str(tmp_path / "e.png")]
    with pytest.raises(SystemExit) as exit_info:
        main(args)
    assert exit_info.value.code == 0
    data = json.loads(out.read_text())
    assert data["chamfer"] == 0.0 and data["chamfer_mm"] == 0.0
    assert data["region"]["type"] == "sphere"
    assert (tmp_path / "e.png").is_file()
    assert "chamfer" in capsys.readouterr().out


def test_cli_evaluate_reports_user_errors(tmp_path, capsys):
    path = tmp_path / "sphere.ply"
    trimesh.creation.icosphere(subdivisions=2).export(path)
    with pytest.raises(SystemExit) as exit_info:
        main(["evaluate", str(path), str(tmp_path / "missing.ply")])
    assert exit_info.value.code == 1
    assert "missing.ply does not exist" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exit_info:
        main(["evaluate", str(path), str(path), "--center", "0,0", "--radius", "1"])
    assert exit_info.value.code == 1
    assert "--center" in capsys.readouterr().err


def test_similarity_fit_and_camera_errors():
    from privhead.data.synthetic.rig import ring_cameras
    from privhead.eval.metrics import camera_errors, similarity_fit

    rng = np.random.default_rng(0)
    points = rng.normal(size=(20, 3))
    angle = 0.7
    R = np.array([[np.cos(angle), 0, np.sin(angle)], [0, 1, 0], [-np.sin(angle), 0, np.cos(angle)]])
    target = 2.5 * points @ R.T + np.array([1.0, -2.0, 0.5])
    T = similarity_fit(points, target)
    assert np.allclose(points @ T[:3, :3].T + T[:3, 3], target, atol=1e-9)

    cameras, _, _ = ring_cameras(12, 32, 32)
    S = np.eye(4)
    S[:3, :3] = 0.4 * R.T
    S[:3, 3] = [0.3, 0.1, -0.2]
    moved = []
    for c2w in cameras.c2w:  # the same rig in another similarity frame
        m = np.eye(4)
        m[:3, :3] = R.T @ c2w[:3, :3]
        m[:3, 3] = S[:3, :3] @ c2w[:3, 3] + S[:3, 3]
        moved.append(m)
    errors = camera_errors(np.stack(moved), cameras.c2w)
    assert errors["median_rotation_deg"] < 1e-5 and errors["median_position"] < 1e-9
    assert errors["scale"] == pytest.approx(2.5)
    tilted = np.stack(moved)
    tilted[0, :3, :3] = tilted[0, :3, :3] @ np.array(
        [[1, 0, 0], [0, np.cos(0.1), -np.sin(0.1)], [0, np.sin(0.1), np.cos(0.1)]]
    )
    assert camera_errors(tilted, cameras.c2w)["max_rotation_deg"] == pytest.approx(
        np.degrees(0.1), abs=1e-6
    )
