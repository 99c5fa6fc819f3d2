"""The identity-free head template: shipped bytes match their record, it is the mean of
synthetic identities, it is aimed by the cameras, and a template run starts from it."""

import hashlib
import json

import numpy as np
import pytest
import torch
import trimesh
from typer.testing import CliRunner

from privhead.cli import app
from privhead.config import FieldConfig
from privhead.errors import PrivheadError
from privhead.field.sdf import GridSDF
from privhead.field.template import (
    TEMPLATE_FILE,
    TEMPLATE_RECORD,
    TEMPLATE_SEEDS,
    TemplatePlacement,
    build_template,
    bundle_pose,
    init_from_template,
    load_template,
    template_bytes,
)


def test_the_shipped_template_matches_its_record():
    record = json.loads(TEMPLATE_RECORD.read_text())
    assert hashlib.sha256(TEMPLATE_FILE.read_bytes()).hexdigest() == record["sha256"]
    template = load_template()
    assert template.seeds == tuple(record["seeds"]) == TEMPLATE_SEEDS and len(template.seeds) >= 20
    assert tuple(template.sdf.shape) == (record["resolution"],) * 3


def test_the_template_is_the_mean_of_its_identities_and_deterministic():
    a, b = build_template((1000,), 12), build_template((1001,), 12)
    both = build_template((1000, 1001), 12)
    assert torch.allclose(both.sdf, (a.sdf + b.sdf) / 2, atol=1e-6)
    assert not torch.allclose(a.sdf, b.sdf, atol=1e-3)  # the identities differ
    assert template_bytes(both) == template_bytes(build_template((1000, 1001), 12))


def _template_mesh(template):
    from skimage.measure import marching_cubes

    verts, faces, _, _ = marching_cubes(template.sdf.numpy(), 0.0)
    return trimesh.Trimesh(verts / (template.sdf.shape[0] - 1) * 2 - 1, faces)


def test_the_template_is_closer_to_an_unseen_head_than_the_sphere():
    from privhead.data.synthetic.shape import head_sdf, sample_head_params

    mesh = _template_mesh(load_template())
    assert mesh.is_watertight and np.all(np.abs(mesh.bounds) < 0.95)
    points = torch.from_numpy(mesh.sample(3000, seed=0)).float()
    unseen = sample_head_params(7)  # not a template seed
    template_gap = head_sdf(points, unseen).abs().mean()
    sphere = torch.nn.functional.normalize(points, dim=-1) * FieldConfig().init_radius
    sphere_gap = head_sdf(sphere, unseen).abs().mean()
    assert template_gap < 0.5 * sphere_gap, (template_gap, sphere_gap)


def _ring(rotation=np.eye(3), n=12, distance=2.7):
    """Cameras around the head looking at the origin, up = rotation's +Y; views 0-5 face +Z."""
    c2w = []
    for k in range(n):
        azimuth = np.deg2rad(-75 + 360 * k / n)
        center = distance * np.array([np.sin(azimuth), 0.15, np.cos(azimuth)])
        forward = -center / np.linalg.norm(center)
        right = np.cross(forward, [0.0, 1.0, 0.0])
        right /= np.linalg.norm(right)
        down = np.cross(forward, right)
        pose = np.eye(4)
        pose[:3, :3] = rotation @ np.stack([right, down, forward], axis=1)
        pose[:3, 3] = rotation @ center
        c2w.append(pose)
    return torch.tensor(np.array(c2w), dtype=torch.float32)


def _angle_deg(a, b):
    cos = (np.trace(np.asarray(a).T @ np.asarray(b)) - 1) / 2
    return float(np.degrees(np.arccos(np.clip(cos, -1, 1))))


def test_pose_from_the_cameras_and_the_face_views():
    c2w = _ring()
    assert _angle_deg(bundle_pose(c2w, c2w[:6]), np.eye(3)) < 8
    q = trimesh.transformations.rotation_matrix(0.7, [0.3, 1.0, -0.2])[:3, :3]
    turned = _ring(q)
    assert _angle_deg(bundle_pose(turned, turned[:6]), q) < 8
    with pytest.raises(PrivheadError, match="cannot be aimed"):
        bundle_pose(c2w, c2w)  # every view protected, no recorded face direction
    forward = torch.tensor(q[:, 2], dtype=torch.float32)
    assert _angle_deg(bundle_pose(turned, turned, forward), q) < 3


def test_init_writes_the_placed_template_into_the_field():
    geometry = GridSDF(FieldConfig(grid_resolutions=(16, 32, 64)))
    template = load_template()
    q = torch.tensor(
        trimesh.transformations.rotation_matrix(0.5, [0, 1, 0])[:3, :3], dtype=torch.float32
    )
    level = init_from_template(geometry, template, q)
    assert level == 2 and all(float(g.detach().abs().max()) == 0 for g in list(geometry.grids)[:2])
    points = (torch.rand(2000, 3) * 2 - 1) * 0.8
    with torch.no_grad():
        got = geometry.sdf(points)
    want = template(points @ q)  # bundle -> canonical
    assert float((got - want).abs().max()) < 0.02  # two trilinear grids, same resolution


def test_a_placement_bakes_into_the_grids_and_its_gradient_is_the_fields():
    template = load_template()
    q = torch.tensor(
        trimesh.transformations.rotation_matrix(0.4, [0, 1, 0])[:3, :3], dtype=torch.float32
    )
    placement = TemplatePlacement(template, q, num_features=3)
    with torch.no_grad():
        placement.log_scale.copy_(torch.log(torch.tensor([1.2, 0.9, 1.05])))
        placement.translation.copy_(torch.tensor([0.05, -0.03, 0.02]))
        placement.turn.copy_(torch.tensor([0.0, 0.1, 0.0]))
    points = (torch.rand(2000, 3) * 2 - 1) * 0.7
    sdf, gradient, features = placement(points)
    linear = placement.linear().detach()
    canonical = (points - placement.translation.detach()) @ torch.linalg.inv(linear).T
    scale = float(np.prod([1.2, 0.9, 1.05]) ** (1 / 3))
    torch.testing.assert_close(sdf.detach(), scale * template(canonical), atol=1e-5, rtol=1e-5)
    assert features.shape == (2000, 3) and float(features.abs().max()) == 0
    eps = 1e-3
    numeric = torch.stack(
        [
            (placement.sdf(points + eps * e) - placement.sdf(points - eps * e)) / (2 * eps)
            for e in torch.eye(3)
        ],
        dim=-1,
    ).detach()
    assert float((gradient.detach() - numeric).abs().median()) < 1e-3
    geometry = GridSDF(FieldConfig(grid_resolutions=(16, 32, 64)))
    assert placement.bake(geometry) == 2
    with torch.no_grad():
        assert float((geometry.sdf(points) - sdf).abs().max()) < 0.03


def test_a_placement_recovers_a_known_scale_and_shift_by_gradient_descent():
    template = load_template()
    eye = torch.eye(3)
    truth = TemplatePlacement(template, eye, num_features=1)
    with torch.no_grad():
        truth.log_scale.copy_(torch.log(torch.tensor([1.15, 0.92, 1.08])))
        truth.translation.copy_(torch.tensor([0.04, -0.05, 0.03]))
    fit = TemplatePlacement(template, eye, num_features=1)
    optimizer = torch.optim.Adam(fit.parameters(), lr=0.01)
    torch.manual_seed(0)
    for _ in range(300):
        points = (torch.rand(4096, 3) * 2 - 1) * 0.8
        with torch.no_grad():
            target = truth.sdf(points)
        loss = (fit.sdf(points) - target).abs().mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    torch.testing.assert_close(fit.log_scale.exp(), truth.log_scale.exp(), atol=0.02, rtol=0)
    torch.testing.assert_close(fit.translation, truth.translation, atol=0.01, rtol=0)
    assert float(fit.turn.detach().norm()) < 0.03


def test_reconstruct_template_runs_without_any_neutral_view(tmp_path):
    from privhead.data.synthetic import write_synthetic_head
    from privhead.privacy.bundle import read_bundle
    from privhead.privacy.protect import protect_dataset

    head = write_synthetic_head(tmp_path / "head", seed=3, n_views=6, resolution=24, supersample=1)
    bundle = protect_dataset(head, tmp_path / "bundle", detector="none", neutral=[]).bundle
    assert read_bundle(bundle).head_forward is not None  # views.json's forward, recorded
    steps = ["--set", "stage1.steps=2", "--set", "stage2.steps=2", "--set", "mesh_resolution=32"]
    steps += ["--set", "template_fit_steps=2"]
    out = tmp_path / "run"
    result = CliRunner().invoke(
        app, ["reconstruct", str(bundle), str(out), "--template", "--preset", "tiny", *steps]
    )
    assert result.exit_code == 0, result.output
    assert json.loads((out / "config.json").read_text())["mode"] == "template"
    assert (out / "mesh.ply").is_file()
    summary = json.loads((out / "summary.json").read_text())
    assert set(summary["stage_seconds"]) == {"template-fit", "template"}
    assert len(summary["template_placement"]["scale"]) == 3
    assert "template placement fitted" in result.output


@pytest.mark.slow  # ~70 s: 24 synthetic identities at 64^3
def test_privhead_template_regenerates_the_shipped_bytes(tmp_path):
    result = CliRunner().invoke(app, ["template", str(tmp_path / "t.npz")])
    assert result.exit_code == 0, result.output
    assert "identical to the shipped template" in result.output
    assert (tmp_path / "t.npz").read_bytes() == TEMPLATE_FILE.read_bytes()
