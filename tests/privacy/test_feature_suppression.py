"""Feature suppression: regions from landmarks, validity masks in the bundle, stage 2 skips them."""

import numpy as np
import pytest
import torch

from privhead.data.cameras import Cameras
from privhead.data.formats import HeadDataset
from privhead.privacy import operators
from privhead.privacy.bundle import read_bundle, write_bundle
from privhead.privacy.operators import (
    OperatorConfig,
    apply_operator,
    feature_regions,
    gradient_modulus,
    operator_margin,
    valid_pixels,
)
from privhead.privacy.sensitivity import classify_views
from privhead.train.losses import gradient_loss

LANDMARKS = np.array([[30.0, 40.0], [70.0, 40.0], [50.0, 60.0], [35.0, 78.0], [65.0, 78.0]])


def test_feature_regions_cover_eyes_brows_and_mouth_only():
    mask = feature_regions(LANDMARKS, 128, 100, radius=0.3)  # iod 40 px -> disks of 12 px
    assert mask[40 - 8, 30] and mask[40 - 8, 70]  # eye disks, centred 8 px above the eyes
    assert mask[78, 50]  # mouth centre
    assert not mask[60, 50]  # the nose stays: it is geometry
    assert not mask[10, 50] and not mask[120, 50]
    assert mask[78, 50 + 15] and not mask[78, 50 + 17]  # mouth radius 1.3 * 12 = 15.6 px
    # rotated faces rotate their regions (upside down: the brows are below the eyes)
    flipped = LANDMARKS.copy()
    flipped[:, 1] = 127 - flipped[:, 1]
    assert feature_regions(flipped, 128, 100, 0.3)[127 - 40 + 8, 30]


def test_valid_pixels_add_the_operator_margin():
    suppress = torch.zeros(1, 1, 64, 64)
    suppress[..., 30:34, 30:34] = 1
    cfg = OperatorConfig(resolution=16, blur_sigma=0.0)
    valid = valid_pixels(suppress, cfg, (16, 16))[0, 0]
    margin = operator_margin(cfg)
    assert not valid[7, 7] and not valid[7 - margin, 7 - margin] and not valid[8 + margin, 8]
    assert valid[7 - margin - 1, 7] and valid[7, 8 + margin + 1]
    blurred = OperatorConfig(resolution=16, blur_sigma=1.0)
    assert (~valid_pixels(suppress, blurred, (16, 16))).sum() > (~valid).sum()


def test_suppressed_maps_are_zero_there_and_unchanged_elsewhere():
    rng = np.random.default_rng(0)
    images = torch.from_numpy(rng.random((2, 3, 64, 64)).astype(np.float32))
    suppress = torch.from_numpy(feature_regions(LANDMARKS * 0.5, 64, 64, 0.3))[None, None]
    suppress = suppress.float().expand(2, 1, 64, 64)
    cfg = OperatorConfig(resolution=32, suppress_features=0.3)
    plain = apply_operator(images, cfg)
    held = apply_operator(images, cfg, suppress)
    valid = valid_pixels(suppress, cfg, (32, 32))
    assert (~valid).any() and valid.any()
    assert torch.equal(held[valid], plain[valid])
    assert (held[~valid] == 0).all() and (plain[~valid] > 0).any()


def test_gradient_loss_ignores_invalid_pixels():
    rng = np.random.default_rng(1)
    patches = torch.from_numpy(rng.random((2, 3, 10, 10)).astype(np.float32))
    cfg = OperatorConfig(resolution=8)
    op = lambda x: gradient_modulus(x, cfg, "valid")  # noqa: E731
    target = op(patches).detach().clone()
    valid = torch.ones_like(target)
    valid[:, :, :3] = 0
    corrupted = target.clone()
    corrupted[:, :, :3] += 5.0  # garbage where the map was suppressed
    assert gradient_loss(patches, corrupted, op, valid).item() == pytest.approx(0.0, abs=1e-7)
    assert gradient_loss(patches, corrupted, op).item() > 1.0


def _dataset(n=3, size=64):
    rng = np.random.default_rng(2)
    images = rng.random((n, size, size, 3)).astype(np.float32)
    K = np.tile(np.array([[80.0, 0, 31.5], [0, 80.0, 31.5], [0, 0, 1]]), (n, 1, 1))
    c2w = np.tile(np.eye(4), (n, 1, 1))
    c2w[:, 2, 3] = -3.0
    return HeadDataset(images, Cameras(K, c2w, size, size), None, None, [f"v{i}" for i in range(n)])


def test_bundle_stores_and_reads_validity(tmp_path, monkeypatch):
    # The detector is replaced by known landmarks (its own test needs the audit extra).
    monkeypatch.setattr(
        operators,
        "suppression_mask",
        lambda image, cfg: (
            feature_regions(LANDMARKS * 0.5, *image.shape[:2], cfg.suppress_features)
            if cfg.suppress_features > 0
            else None
        ),
    )
    cfg = OperatorConfig(resolution=32, suppress_features=0.3)
    path = write_bundle(_dataset(), classify_views(3, neutral=[0]), cfg, tmp_path / "b")
    bundle = read_bundle(path)
    assert bundle.operator.suppress_features == 0.3
    assert bundle.protected_valid is not None and bundle.protected_valid.shape == (2, 32, 32)
    assert (~bundle.protected_valid).any()
    assert (bundle.protected_maps[~bundle.protected_valid] == 0).all()
    assert sorted(p.name for p in (path / "protected_valid").iterdir()) == ["v1.png", "v2.png"]
    plain = read_bundle(
        write_bundle(
            _dataset(),
            classify_views(3, neutral=[0]),
            OperatorConfig(resolution=32),
            tmp_path / "p",
        )
    )
    assert plain.protected_valid is None and not (tmp_path / "p" / "protected_valid").exists()


def test_suppression_on_a_detected_face(tmp_path):
    pytest.importorskip("cv2")
    from privhead.data.formats import load_dataset
    from privhead.data.synthetic import write_synthetic_head

    head = load_dataset(write_synthetic_head(tmp_path / "head", seed=1, n_views=3, resolution=96))
    frontal = head.images[int(np.argmin([abs(v["azimuth_deg"]) for v in head.views["views"]]))]
    cfg = OperatorConfig(suppress_features=0.35)
    mask = operators.suppression_mask(frontal, cfg)
    assert mask is not None and 0.01 < mask.mean() < 0.3
    protected, valid = operators.protect_image_valid(frontal, cfg)
    assert valid is not None and (~valid).any() and (protected[~valid] == 0).all()
