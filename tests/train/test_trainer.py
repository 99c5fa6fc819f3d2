"""The trainer: stages per mode, config round trip, checkpoints and resume with nothing lost."""

import dataclasses
import json

import numpy as np
import pytest
import torch

from privhead.config import (
    RenderConfig,
    config_from_dict,
    config_to_dict,
    get_preset,
)
from privhead.data.cameras import Cameras
from privhead.errors import PrivheadError
from privhead.privacy.operators import OperatorConfig, apply_operator
from privhead.train.checkpoint import load_field
from privhead.train.trainer import Trainer, plan_stages
from privhead.train.views import make_training_views


def _tiny_views():
    """Two RGB views and two protected views of a sphere-ish blob (random but fixed images)."""
    rng = np.random.default_rng(0)
    K = np.array([[20.0, 0, 7.5], [0, 20.0, 7.5], [0, 0, 1]])
    c2ws = []
    for angle in np.linspace(0, 2 * np.pi, 4, endpoint=False):
        eye = np.array([2.5 * np.sin(angle), 0.0, 2.5 * np.cos(angle)])
        z = -eye / np.linalg.norm(eye)
        x = np.cross(np.array([0.0, -1.0, 0.0]), z)
        x /= np.linalg.norm(x)
        y = np.cross(z, x)
        c2w = np.eye(4)
        c2w[:3, :3] = np.stack([x, y, z], axis=1)
        c2w[:3, 3] = eye
        c2ws.append(c2w)
    cams = Cameras(np.stack([K] * 4), np.stack(c2ws), 16, 16)
    images = rng.uniform(0, 1, (4, 16, 16, 3)).astype(np.float32)
    masks = rng.uniform(0, 1, (4, 16, 16)) > 0.5
    op = OperatorConfig.paper(resolution=16)
    maps = apply_operator(torch.as_tensor(images[2:]).permute(0, 3, 1, 2), op)[:, 0].numpy()
    return make_training_views(
        images[:2],
        masks[:2],
        cams.subset([0, 1]),
        maps,
        cams.subset([2, 3]),
        op,
        np.eye(4),
        torch.device("cpu"),
    )


def _tiny_config(steps=6):
    cfg = get_preset("tiny")
    return dataclasses.replace(
        cfg,
        render=RenderConfig(coarse_samples=16, fine_samples=4),
        stage1=dataclasses.replace(cfg.stage1, steps=steps, rays_per_step=64),
        stage2=dataclasses.replace(cfg.stage2, steps=steps, patches_per_step=1, patch_size=6),
        checkpoint_every=2,
    )


def test_config_round_trip_is_typed():
    cfg = get_preset("fast")
    back = config_from_dict(json.loads(json.dumps(config_to_dict(cfg))))
    assert back == cfg
    with pytest.raises(PrivheadError):
        config_from_dict({"no_such_field": 1})


def test_modes_plan_the_right_stages():
    cfg = get_preset("fast")
    assert [s.name for s in plan_stages(cfg)] == ["stage1", "stage2"]
    full = plan_stages(dataclasses.replace(cfg, mode="full-rgb"))
    assert len(full) == 1 and full[0].gradient_weight == 0 and full[0].rgb_weight > 0
    assert full[0].steps == cfg.stage1.steps + cfg.stage2.steps
    grad_only = plan_stages(dataclasses.replace(cfg, mode="gradient-only"))[0]
    assert grad_only.rgb_weight == 0 and grad_only.gradient_weight > 0
    assert grad_only.steps == cfg.stage1.steps + cfg.stage2.steps
    joint = plan_stages(dataclasses.replace(cfg, mode="joint"))[0]
    assert joint.rgb_weight > 0 and joint.gradient_weight > 0


def test_resume_after_interruption_loses_nothing(tmp_path, monkeypatch):
    views = _tiny_views()
    cfg = _tiny_config()
    torch.manual_seed(0)
    reference = Trainer(cfg, views, tmp_path / "a", torch.device("cpu"), progress=False)
    reference.run()

    interrupted = Trainer(cfg, views, tmp_path / "b", torch.device("cpu"), progress=False)
    original = interrupted._losses
    calls = {"n": 0}

    def failing(stage):
        calls["n"] += 1
        if calls["n"] == 9:  # stage 2, step 3: after the checkpoint at stage-2 step 2
            raise KeyboardInterrupt
        return original(stage)

    monkeypatch.setattr(interrupted, "_losses", failing)
    with pytest.raises(KeyboardInterrupt):
        interrupted.run()
    resumed = Trainer(cfg, views, tmp_path / "b", torch.device("cpu"), progress=False)
    resumed.run(resume=True)
    for (name, a), (_, b) in zip(
        reference.field.state_dict().items(), resumed.field.state_dict().items()
    ):
        torch.testing.assert_close(a, b, msg=f"{name} differs after resume")

    field, loaded_cfg, scale_mat = load_field(tmp_path / "b" / "checkpoints" / "stage2.pt")
    assert loaded_cfg == cfg and np.allclose(scale_mat, np.eye(4))


def test_resume_refuses_a_different_config(tmp_path):
    views = _tiny_views()
    Trainer(_tiny_config(), views, tmp_path, torch.device("cpu"), progress=False).run()
    other = dataclasses.replace(_tiny_config(), seed=1)
    with pytest.raises(PrivheadError):
        Trainer(other, views, tmp_path, torch.device("cpu"), progress=False).run(resume=True)


def test_stage_without_its_data_is_a_clear_error():
    views = _tiny_views()
    no_rgb = dataclasses.replace(views, rgb_images=views.rgb_images[:0])
    with pytest.raises(PrivheadError, match="RGB"):
        Trainer(_tiny_config(), no_rgb, "/tmp/privhead-unused", torch.device("cpu"))


def test_normal_smoothness_prior_is_small_on_a_sphere_and_its_gradient_removes_grid_noise(tmp_path):
    cfg = _tiny_config()
    stage = dataclasses.replace(cfg.stage1, normal_smooth_weight=1.0, normal_smooth_radius=0.05)
    trainer = Trainer(cfg, _tiny_views(), tmp_path, torch.device("cpu"), progress=False)
    torch.manual_seed(1)
    _, samples = trainer._rgb_terms(stage)
    on_sphere = trainer._normal_smoothness(stage, [samples]).item()
    # A sphere's normals turn by radius / 0.6 rad over the pairing radius: 2 (1 - cos) ~ 3e-3.
    assert on_sphere < 1e-2
    finest = trainer.field.geometry.grids[-1]
    with torch.no_grad():
        finest.normal_(0.0, 0.01)
    optimizer = torch.optim.Adam([finest], lr=2e-3)
    values = []
    for _ in range(30):
        torch.manual_seed(1)  # the same rays and pairs every step
        _, samples = trainer._rgb_terms(stage)
        loss = trainer._normal_smoothness(stage, [samples])
        values.append(loss.item())
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    assert values[0] > 10 * on_sphere
    assert np.mean(values[-5:]) < 0.5 * np.mean(values[:5])


def test_extra_points_ride_the_render_pass_without_changing_it(tmp_path):
    """The eikonal loss's uniform points are evaluated in the render's pass over the grids:
    the render is the same as without them, and their gradients are the field's."""
    cfg = _tiny_config()
    stage = cfg.stage1
    trainer = Trainer(cfg, _tiny_views(), tmp_path, torch.device("cpu"), progress=False)
    with torch.no_grad():
        for grid in trainer.field.geometry.grids:
            grid.normal_(0.0, 0.01)  # a field whose gradients vary from point to point
    trainer.field.geometry.active_levels.fill_(len(trainer.field.geometry.grids))
    extra = torch.rand(300, 3) * 2 - 1
    torch.manual_seed(3)
    plain_terms, plain = trainer._rgb_terms(stage)
    torch.manual_seed(3)
    terms, samples = trainer._rgb_terms(stage, extra)
    assert set(terms) == set(plain_terms) and "extra_gradient" not in plain
    for key in terms:
        torch.testing.assert_close(terms[key], plain_terms[key])
    torch.testing.assert_close(samples["gradient"], plain["gradient"])
    _, expected, _ = trainer.field.geometry(extra, with_gradient=True)
    assert samples["extra_gradient"].shape == (300, 3)
    torch.testing.assert_close(samples["extra_gradient"], expected)
    assert samples["extra_gradient"].std(dim=0).min() > 1e-3  # not a constant
    # The gradient of a loss on them reaches the grids through the shared pass.
    samples["extra_gradient"].norm(dim=-1).sum().backward()
    assert trainer.field.geometry.grids[-1].grad.abs().sum() > 0
