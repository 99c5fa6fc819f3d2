"""The learned inverter (an attack for measuring privacy): it must really invert a weak
operator, identify held-out heads, and cache its weights safely."""

from dataclasses import replace

import numpy as np
import pytest
import torch

from privhead.privacy import learned_inverter as li
from privhead.privacy.learned_inverter import (
    HELD_OUT_SEED_START,
    InverterTrainConfig,
    cache_path,
    default_cache_dir,
    evaluate_inverter,
    identification_rank1,
    load_or_train_inverter,
    prepare_maps,
    render_faces,
    train_inverter,
)
from privhead.privacy.operators import OperatorConfig, apply_operator

# A deliberately weak operator: the paper's colour Sobel modulus, on 32 px renders that are not
# downsampled (resolution = image size). Fields spelled out, whatever the defaults are.
WEAK = OperatorConfig(name="sobel", resolution=32, luminance=False, clip=0.0)
WEAK_TRAIN = InverterTrainConfig(
    steps=150,
    batch_size=8,
    learning_rate=5e-3,
    image_size=32,
    render_size=32,
    n_heads=6,
    views_per_head=8,
    sdf_grid_resolution=48,
    synthetic_fraction=1.0,
    lfw_fraction=0.0,
    background_fraction=0.2,
    base_channels=12,
    levels=3,
    seed=0,
    device="cpu",
)
HELD_OUT = list(range(HELD_OUT_SEED_START, HELD_OUT_SEED_START + 8))

TINY_TRAIN = InverterTrainConfig(
    steps=3,
    batch_size=4,
    image_size=16,
    render_size=16,
    n_heads=1,
    views_per_head=2,
    sdf_grid_resolution=32,
    base_channels=8,
    levels=2,
    device="cpu",
)
TINY_OP = OperatorConfig(name="sobel", resolution=16, luminance=False, clip=0.0)


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """Small convolutions run best on one thread (and far better on a busy machine)."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


@pytest.fixture(scope="module")
def weak_inverter():
    return train_inverter(WEAK, WEAK_TRAIN, progress=False)


@pytest.fixture(scope="module")
def held_out():
    """(true images at the working size, their protected maps) of heads not in the pool."""
    assert not set(HELD_OUT) & set(
        range(WEAK_TRAIN.head_seed_start, WEAK_TRAIN.head_seed_start + WEAK_TRAIN.n_heads)
    )
    images = render_faces(HELD_OUT, WEAK_TRAIN.render_size, rng_seed=1, grid_resolution=48)
    maps = apply_operator(torch.from_numpy(images).permute(0, 3, 1, 2), WEAK)
    return images, [m[0].numpy() for m in maps]


def test_inverter_beats_the_mean_image_on_held_out_heads(weak_inverter, held_out):
    images, maps = held_out
    inverted = np.stack(weak_inverter.invert(maps))
    assert inverted.shape == images.shape and inverted.dtype == np.float32
    assert inverted.min() >= 0.0 and inverted.max() <= 1.0
    error = np.abs(inverted - images).mean()
    baseline = np.abs(weak_inverter.baseline()[None] - images).mean()
    assert error < 0.7 * baseline, (error, baseline)


def test_inversions_identify_held_out_heads(weak_inverter, held_out):
    images, maps = held_out
    inverted = weak_inverter.invert(maps)
    chance = 1.0 / len(images)
    rank1 = identification_rank1(inverted, images)
    assert rank1 >= 0.5, rank1
    # A blind attacker (the same image for everyone, or inversions of the wrong maps) does
    # not pass that bar.
    assert identification_rank1([weak_inverter.baseline()] * len(images), images) <= chance
    assert identification_rank1(inverted[1:] + inverted[:1], images) < 0.5


def test_evaluate_inverter_reports_the_same_scores(weak_inverter):
    scores = evaluate_inverter(
        weak_inverter, HELD_OUT[:3], render_size=32, rng_seed=2, grid_resolution=48
    )
    assert scores["k"] == 3 and scores["chance"] == pytest.approx(1 / 3)
    assert scores["l1"] < scores["baseline_l1"]
    assert 0 < scores["best_constant_l1"] < scores["baseline_l1"]
    assert scores["l1_ratio"] == pytest.approx(scores["l1"] / scores["baseline_l1"])


def test_prepare_maps_is_scale_free_and_sized():
    maps = torch.rand(2, 1, 20, 28)
    x = prepare_maps(maps, 32)
    assert x.shape == (2, 1, 32, 32)
    assert torch.allclose(prepare_maps(7.5 * maps, 32), x, atol=1e-5)
    assert torch.allclose(x.mean(dim=(1, 2, 3)), torch.ones(2), atol=0.05)
    assert prepare_maps(torch.zeros(1, 1, 8, 8), 16).abs().max() == 0


def test_training_is_deterministic_for_a_seed():
    a = train_inverter(TINY_OP, TINY_TRAIN, progress=False).state_dict()
    b = train_inverter(TINY_OP, TINY_TRAIN, progress=False).state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)
    other = replace(TINY_TRAIN, seed=1)
    c = train_inverter(TINY_OP, other, progress=False).state_dict()
    assert not all(torch.equal(a[k], c[k]) for k in a)


def test_cache_round_trip(tmp_path, monkeypatch):
    model = load_or_train_inverter(TINY_OP, TINY_TRAIN, cache_dir=tmp_path, progress=False)
    path = cache_path(TINY_OP, TINY_TRAIN, tmp_path)
    assert path.is_file() and path.with_suffix(".json").is_file()

    # weights_only loading: the file is a plain state dict of tensors.
    state = torch.load(path, map_location="cpu", weights_only=True)
    assert set(state) == set(model.state_dict())
    assert all(isinstance(v, torch.Tensor) for v in state.values())

    def no_training(*args, **kwargs):
        raise AssertionError("the cached weights should have been loaded")

    monkeypatch.setattr(li, "train_inverter", no_training)
    loaded = load_or_train_inverter(TINY_OP, TINY_TRAIN, cache_dir=tmp_path, progress=False)
    maps = [np.random.default_rng(0).random((16, 16)).astype(np.float32) for _ in range(3)]
    for a, b in zip(model.invert(maps), loaded.invert(maps)):
        np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(model.baseline(), loaded.baseline())


def test_a_broken_cache_entry_is_retrained(tmp_path):
    path = cache_path(TINY_OP, TINY_TRAIN, tmp_path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"not a checkpoint")
    load_or_train_inverter(TINY_OP, TINY_TRAIN, cache_dir=tmp_path, progress=False)
    assert torch.load(path, map_location="cpu", weights_only=True)


def test_cache_location_and_key(tmp_path, monkeypatch):
    monkeypatch.setenv("PRIVHEAD_CACHE", str(tmp_path))
    assert default_cache_dir() == tmp_path / "inverters"
    path = cache_path(TINY_OP, TINY_TRAIN)
    assert path.parent == tmp_path / "inverters" and path.suffix == ".pt"
    monkeypatch.delenv("PRIVHEAD_CACHE")
    assert default_cache_dir().parts[-3:] == (".cache", "privhead", "inverters")
    # The key follows the operator and the training config, but not the device.
    assert cache_path(replace(TINY_OP, resolution=17), TINY_TRAIN).name != path.name
    longer = replace(TINY_TRAIN, steps=4)
    assert cache_path(TINY_OP, longer).name != path.name
    elsewhere = replace(TINY_TRAIN, device="meta")
    assert cache_path(TINY_OP, elsewhere, tmp_path) == cache_path(TINY_OP, TINY_TRAIN, tmp_path)
