"""The operator family of the privacy levels: luminance, soft clip, quantisation, noise; and
version-1 bundles (made before these fields existed) still read with the same maps."""

import json

import numpy as np
import pytest
import torch

from privhead.data.cameras import Cameras
from privhead.data.formats import HeadDataset
from privhead.errors import PrivheadError
from privhead.privacy.bundle import read_bundle, write_bundle
from privhead.privacy.operators import (
    LUMINANCE_WEIGHTS,
    PAPER_OPERATOR,
    OperatorConfig,
    apply_operator,
    gradient_modulus,
    protect_image,
)
from privhead.privacy.sensitivity import classify_views


def _ramp(width=16, slope=0.02):
    x = torch.arange(width, dtype=torch.float64) * slope
    return x.view(1, 1, 1, -1).expand(1, 3, width, width).clone()


def test_the_paper_operator_is_downsampling_and_eq_6_alone():
    cfg = OperatorConfig.paper()
    assert cfg == PAPER_OPERATOR
    assert (cfg.name, cfg.resolution, cfg.blur_sigma) == ("sobel", 64, 0.0)
    assert (cfg.luminance, cfg.clip, cfg.levels, cfg.noise) == (False, 0.0, 0, 0.0)
    image = torch.rand(2, 3, 32, 32, dtype=torch.float64)
    # without the new knobs, apply_operator is downsampling + Eq. 6 and nothing else
    np.testing.assert_allclose(
        apply_operator(image, OperatorConfig.paper(resolution=16)).numpy(),
        gradient_modulus(
            torch.nn.functional.avg_pool2d(image, 2), PAPER_OPERATOR, padding="replicate"
        ).numpy(),
        rtol=0,
        atol=1e-12,
    )


def test_luminance_ignores_an_isoluminant_colour_edge():
    w = np.asarray(LUMINANCE_WEIGHTS)
    left = np.array([0.6, 0.4, 0.5])
    # a colour of the same luminance: move along a direction orthogonal to the weights
    direction = np.cross(w, [1.0, 0.0, 0.0])
    right = left + 0.2 * direction / np.linalg.norm(direction)
    image = np.zeros((12, 12, 3))
    image[:, :6], image[:, 6:] = left, right
    colour = protect_image(image, PAPER_OPERATOR)
    grey = protect_image(image, OperatorConfig.paper(luminance=True))
    assert colour.max() > 0.05 and grey.max() < 1e-6


def test_clip_keeps_small_slopes_and_bounds_large_ones():
    gentle, steep = _ramp(slope=0.005), _ramp(slope=0.5)
    cfg = OperatorConfig.paper(clip=0.05)
    g = gradient_modulus(gentle, cfg, "valid")
    unclipped = gradient_modulus(gentle, PAPER_OPERATOR, "valid")  # sqrt(3) * slope
    assert torch.allclose(unclipped, torch.full_like(g, 3**0.5 * 0.005))
    assert torch.allclose(g, 0.05 * torch.tanh(unclipped / 0.05))
    assert torch.allclose(g, unclipped, rtol=0.03)  # small slopes pass almost unchanged
    s = gradient_modulus(steep, cfg, "valid")
    assert float(s.max()) <= 0.05 and float(s.min()) > 0.049
    # differentiable: a loss on the clipped modulus reaches the image
    image = gentle.clone().requires_grad_(True)
    gradient_modulus(image, cfg, "valid").sum().backward()
    assert image.grad.abs().sum() > 0


def test_levels_quantise_to_the_grid_and_noise_is_seeded_by_the_image():
    rng = np.random.default_rng(0)
    image = rng.random((32, 32, 3)).astype(np.float32)
    quantised = protect_image(image, OperatorConfig.paper(resolution=16, clip=0.3, levels=4))
    grid = np.array([0.0, 0.1, 0.2, 0.3])
    assert np.all(np.min(np.abs(quantised[..., None] - grid), axis=-1) < 1e-6)
    assert len(np.unique(np.round(quantised, 6))) > 1
    noisy = OperatorConfig.paper(resolution=16, noise=0.01)
    a, b = protect_image(image, noisy), protect_image(image, noisy)
    other = protect_image(np.roll(image, 1, axis=0), noisy)
    clean = protect_image(image, OperatorConfig.paper(resolution=16))
    np.testing.assert_array_equal(a, b)  # reproducible for the same photo
    assert 0.005 < np.std(a - clean) < 0.02  # about the requested spread (clamped at 0)
    assert not np.allclose(
        a - clean, other - protect_image(np.roll(image, 1, 0), OperatorConfig.paper(resolution=16))
    )


@pytest.mark.parametrize(
    "fields, message",
    [
        ({"levels": 4, "clip": 0.0}, "clip > 0"),
        ({"clip": 0.1, "levels": 1}, "at least 2 levels"),
        ({"clip": -1.0}, "clip must be finite"),
        ({"noise": float("nan")}, "noise must be finite"),
        ({"luminance": "yes"}, "luminance must be true or false"),
    ],
)
def test_bad_fields_get_one_sentence(fields, message):
    with pytest.raises(PrivheadError, match=message):
        OperatorConfig(**fields)


def test_version_1_bundles_still_read_with_the_same_maps(tmp_path):
    rng = np.random.default_rng(1)
    images = rng.integers(0, 256, (4, 16, 16, 3)).astype(np.float32) / 255
    K = np.tile(np.array([[20.0, 0, 7.5], [0, 20.0, 7.5], [0, 0, 1]]), (4, 1, 1))
    c2w = np.tile(np.eye(4), (4, 1, 1))
    c2w[:, 2, 3] = -3.0
    dataset = HeadDataset(
        images=images,
        cameras=Cameras(K, c2w, 16, 16),
        masks=None,
        scale_mat=None,
        names=list("abcd"),
    )
    cfg = OperatorConfig.paper(resolution=8)
    path = write_bundle(dataset, classify_views(4, neutral=[0]), cfg, tmp_path / "b")
    current = read_bundle(path)
    manifest = json.loads((path / "manifest.json").read_text())
    assert manifest["version"] == 4
    # what privhead 0.1 wrote: version 1, the operator without the version-2 fields (and no
    # version-4 head_forward)
    manifest["version"] = 1
    manifest["operator"] = {
        k: manifest["operator"][k] for k in ("name", "resolution", "blur_sigma", "normalize")
    }
    manifest.pop("head_forward")
    (path / "manifest.json").write_text(json.dumps(manifest))
    old = read_bundle(path)
    assert old.operator == cfg and old.head_forward is None
    np.testing.assert_array_equal(old.protected_maps, current.protected_maps)


def test_a_version_1_bundle_still_reconstructs(tmp_path):
    from privhead.config import resolve_config
    from privhead.data.synthetic import write_synthetic_head
    from privhead.privacy.operators import PAPER_OPERATOR
    from privhead.privacy.protect import protect_dataset
    from privhead.reconstruct import reconstruct

    head = write_synthetic_head(tmp_path / "head", seed=4, n_views=6, resolution=24, supersample=1)
    bundle = protect_dataset(head, tmp_path / "b", PAPER_OPERATOR, detector="none").bundle
    manifest = json.loads((bundle / "manifest.json").read_text())
    manifest["version"] = 1  # as privhead 0.1 wrote it: no later operator fields or keys
    manifest["operator"] = {
        k: manifest["operator"][k] for k in ("name", "resolution", "blur_sigma", "normalize")
    }
    manifest.pop("head_forward")
    for view in manifest["views"]:
        view.pop("valid", None)
    (bundle / "manifest.json").write_text(json.dumps(manifest))
    assert read_bundle(bundle).operator == PAPER_OPERATOR
    cfg = resolve_config(
        "tiny", "two-stage", ["stage1.steps=2", "stage2.steps=2", "mesh_resolution=32"], 0
    )
    result = reconstruct(bundle, tmp_path / "run", cfg, progress=False, log=lambda s: None)
    assert result.mesh.is_file() and "stage2" in result.stage_seconds
