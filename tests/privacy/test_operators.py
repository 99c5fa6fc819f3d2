"""The privacy operator sigma (paper Eq. 6): known values, invariances, shapes and gradients."""

from __future__ import annotations

import math

import pytest
import torch

from privhead.errors import PrivheadError
from privhead.privacy.operators import (
    KNOWN_OPERATORS,
    PAPER_OPERATOR,
    OperatorConfig,
    apply_operator,
    downsample_area,
    gradient_modulus,
    operator_margin,
)

DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])


@pytest.fixture(params=DEVICES)
def device(request):
    return torch.device(request.param)


def ramp(height: int, width: int, slope_x: float, slope_y: float, channel_slopes=(1.0, 1.0, 1.0)):
    """[1, 3, H, W] image whose channel c is channel_slopes[c] * (slope_x * col + slope_y * row)."""
    rows = torch.arange(height, dtype=torch.float64)[:, None]
    cols = torch.arange(width, dtype=torch.float64)[None, :]
    plane = slope_x * cols + slope_y * rows
    return torch.stack([s * plane for s in channel_slopes])[None]


def test_config_defaults_round_trip_and_validation():
    cfg = OperatorConfig.paper()
    assert (cfg.name, cfg.resolution, cfg.blur_sigma, cfg.normalize) == ("sobel", 64, 0.0, True)
    other = OperatorConfig.paper(name="scharr", resolution=32, blur_sigma=0.7, normalize=False)
    assert OperatorConfig.from_dict(other.to_dict()) == other
    with pytest.raises(PrivheadError, match="sobel.*scharr.*prewitt.*central"):
        OperatorConfig.from_dict({"name": "laplace"})
    with pytest.raises(PrivheadError, match="colour"):
        OperatorConfig.from_dict({"name": "sobel", "colour": 1})
    with pytest.raises(PrivheadError):
        OperatorConfig.paper(blur_sigma=-1.0)
    with pytest.raises(PrivheadError):
        OperatorConfig.paper(resolution=0)


def test_working_size_keeps_aspect_and_never_upsamples():
    cfg = OperatorConfig.paper(resolution=64)
    assert cfg.working_size(256, 256) == (64, 64)
    assert cfg.working_size(256, 128) == (64, 32)
    assert cfg.working_size(100, 300) == (21, 64)
    assert cfg.working_size(48, 40) == (48, 40)


def test_margin():
    assert operator_margin(OperatorConfig.paper()) == 1
    assert operator_margin(OperatorConfig.paper(name="central")) == 1
    assert operator_margin(OperatorConfig.paper(blur_sigma=1.0)) == 1 + 3
    assert operator_margin(OperatorConfig.paper(blur_sigma=0.5)) == 1 + 2


@pytest.mark.parametrize("name", KNOWN_OPERATORS)
def test_constant_image_gives_zero(name, device):
    image = torch.full((2, 3, 12, 10), 0.37, dtype=torch.float32, device=device)
    for padding in ("valid", "replicate"):
        out = gradient_modulus(image, OperatorConfig.paper(name=name), padding=padding)
        assert out.abs().max().item() < 1e-6


@pytest.mark.parametrize("name", KNOWN_OPERATORS)
@pytest.mark.parametrize("blur", [0.0, 1.0])
def test_linear_ramps_give_their_slope(name, blur, device):
    cfg = OperatorConfig.paper(name=name, blur_sigma=blur)
    # ramp along x in all channels: ||dC/dx|| = 0.02 * sqrt(3), ||dC/dy|| = 0
    out = gradient_modulus(ramp(16, 16, 0.02, 0.0).to(device), cfg)
    torch.testing.assert_close(out, torch.full_like(out, 0.02 * math.sqrt(3)))
    # ramp along y in one colour channel only
    out = gradient_modulus(ramp(16, 16, 0.0, 0.05, (0.0, 1.0, 0.0)).to(device), cfg)
    torch.testing.assert_close(out, torch.full_like(out, 0.05))
    # a ramp along both axes: the two norms add (Eq. 6), they are not combined in quadrature
    slopes = (1.0, -2.0, 0.5)
    out = gradient_modulus(ramp(16, 16, 0.01, 0.03, slopes).to(device), cfg)
    norm = math.sqrt(sum(s * s for s in slopes))
    torch.testing.assert_close(out, torch.full_like(out, (0.01 + 0.03) * norm))


def test_unnormalised_sobel_scales_the_slope_by_eight():
    out = gradient_modulus(
        ramp(8, 8, 0.1, 0.0, (1.0, 0.0, 0.0)), OperatorConfig.paper(normalize=False)
    )
    torch.testing.assert_close(out, torch.full_like(out, 0.8))


def test_step_edge_sobel_value():
    # a vertical step of height 1 in one channel: sobel (normalised) gives 1/2 beside the step
    image = torch.zeros(1, 3, 6, 6, dtype=torch.float64)
    image[:, 0, :, 3:] = 1.0
    out = gradient_modulus(image, OperatorConfig.paper(), padding="replicate")[0, 0]
    torch.testing.assert_close(out[:, 2], torch.full((6,), 0.5, dtype=torch.float64))
    torch.testing.assert_close(out[:, 3], torch.full((6,), 0.5, dtype=torch.float64))
    assert out[:, [0, 1, 4, 5]].abs().max() < 1e-12


@pytest.mark.parametrize("name", KNOWN_OPERATORS)
def test_adding_a_constant_changes_nothing(name, device):
    gen = torch.Generator().manual_seed(0)
    image = torch.rand(2, 3, 20, 20, generator=gen, dtype=torch.float64).to(device)
    cfg = OperatorConfig.paper(name=name, resolution=10, blur_sigma=0.8)
    torch.testing.assert_close(apply_operator(image + 0.3, cfg), apply_operator(image, cfg))
    shift = torch.tensor([0.1, -0.2, 0.05], dtype=torch.float64, device=device).view(1, 3, 1, 1)
    torch.testing.assert_close(apply_operator(image + shift, cfg), apply_operator(image, cfg))


def test_batched_equals_one_by_one(device):
    gen = torch.Generator().manual_seed(1)
    images = torch.rand(3, 3, 24, 18, generator=gen).to(device)
    cfg = OperatorConfig.paper(resolution=12, blur_sigma=0.5)
    batched = apply_operator(images, cfg)
    assert batched.shape == (3, 1, 12, 9)
    single = torch.cat([apply_operator(images[i : i + 1], cfg) for i in range(3)])
    torch.testing.assert_close(batched, single)


@pytest.mark.parametrize("blur", [0.0, 0.6])
def test_valid_is_the_interior_of_replicate(blur, device):
    gen = torch.Generator().manual_seed(2)
    images = torch.rand(2, 3, 17, 15, generator=gen, dtype=torch.float64).to(device)
    cfg = OperatorConfig.paper(name="scharr", blur_sigma=blur)
    m = operator_margin(cfg)
    valid = gradient_modulus(images, cfg, padding="valid")
    same = gradient_modulus(images, cfg, padding="replicate")
    assert same.shape == (2, 1, 17, 15)
    assert valid.shape == (2, 1, 17 - 2 * m, 15 - 2 * m)
    torch.testing.assert_close(valid, same[..., m:-m, m:-m])


def test_gradient_flows(device):
    gen = torch.Generator().manual_seed(3)
    images = torch.rand(2, 3, 16, 16, generator=gen).to(device)
    images[0, :, :8] = 0.5  # a flat region, where the modulus is at its kink
    images.requires_grad_(True)
    out = apply_operator(images, OperatorConfig.paper(resolution=8, blur_sigma=0.5))
    (grad,) = torch.autograd.grad(out.sum(), images)
    assert torch.isfinite(grad).all()
    assert grad.abs().sum() > 0
    flat = torch.full((1, 3, 8, 8), 0.2, device=device, requires_grad=True)
    (grad,) = torch.autograd.grad(gradient_modulus(flat, OperatorConfig.paper()).sum(), flat)
    assert torch.isfinite(grad).all()


def test_gradient_matches_finite_differences():
    gen = torch.Generator().manual_seed(4)
    images = torch.rand(1, 3, 5, 5, generator=gen, dtype=torch.float64, requires_grad=True)
    cfg = OperatorConfig.paper(name="prewitt", blur_sigma=0.4)
    check = torch.autograd.gradcheck
    assert check(lambda x: gradient_modulus(x, cfg, "replicate"), (images,), fast_mode=True)


def test_downsample_area_inverts_nearest_upsampling(device):
    gen = torch.Generator().manual_seed(5)
    small = torch.rand(2, 3, 5, 7, generator=gen).to(device)
    big = small.repeat_interleave(4, dim=-2).repeat_interleave(4, dim=-1)
    torch.testing.assert_close(downsample_area(big, (5, 7)), small)


def test_downsample_area_is_the_box_mean_and_keeps_the_mean(device):
    gen = torch.Generator().manual_seed(6)
    image = torch.rand(1, 1, 8, 6, generator=gen, dtype=torch.float64).to(device)
    out = downsample_area(image, (4, 3))
    torch.testing.assert_close(out[0, 0, 1, 2], image[0, 0, 2:4, 4:6].mean())
    # a non-integer factor: every input pixel still counts with equal total weight
    odd = downsample_area(image, (3, 4))
    torch.testing.assert_close(odd.mean(), image.mean())
    # first output row covers input rows [0, 8/3): rows 0, 1 fully and 2/3 of row 2
    expected = (image[0, 0, 0] + image[0, 0, 1] + image[0, 0, 2] * 2 / 3) / (8 / 3)
    torch.testing.assert_close(downsample_area(image, (3, 6))[0, 0, 0], expected)


def test_linear_light_downsampling_averages_the_light(device):
    # a pixel half white, half black records half the light: sRGB 0.7354, not 0.5
    image = torch.tensor([[1.0, 0.0], [0.0, 1.0]], dtype=torch.float64, device=device)
    image = image.expand(1, 3, 2, 2)
    plain = downsample_area(image, (1, 1))
    light = downsample_area(image, (1, 1), linear_light=True)
    torch.testing.assert_close(plain, torch.full_like(plain, 0.5))
    torch.testing.assert_close(light, torch.full_like(light, 1.055 * 0.5 ** (1 / 2.4) - 0.055))
    # uniform regions are unchanged, whatever the grey (both branches of the sRGB curve)
    grey = torch.tensor([0.02, 0.3, 0.9], dtype=torch.float64, device=device)
    flat = grey.view(1, 3, 1, 1).expand(1, 3, 4, 4)
    torch.testing.assert_close(downsample_area(flat, (2, 2), linear_light=True)[0, :, 0, 0], grey)
    # the operator downsamples that way when asked
    gen = torch.Generator().manual_seed(3)
    photo = torch.rand(1, 3, 32, 32, generator=gen, dtype=torch.float64).to(device)
    cfg = OperatorConfig.paper(resolution=8, linear_light=True)
    working = downsample_area(photo, (8, 8), linear_light=True)
    expected = gradient_modulus(working, cfg, "replicate")
    torch.testing.assert_close(apply_operator(photo, cfg), expected)
    assert not torch.allclose(apply_operator(photo, OperatorConfig.paper(resolution=8)), expected)


def test_linear_light_in_the_levels_and_off_for_earlier_bundles():
    from privhead.privacy.levels import DEFAULT_LEVEL, LEVELS

    old = OperatorConfig.paper().to_dict()
    del old["linear_light"]
    assert OperatorConfig.from_dict(old).linear_light is False
    assert PAPER_OPERATOR.linear_light is False
    assert LEVELS["paper"].linear_light and LEVELS["standard"].linear_light
    assert not LEVELS["strong"].linear_light
    assert OperatorConfig() == LEVELS[DEFAULT_LEVEL]
    with pytest.raises(PrivheadError, match="linear_light"):
        OperatorConfig.paper(linear_light=1)
    on = OperatorConfig.paper(linear_light=True)
    assert OperatorConfig.from_dict(on.to_dict()) == on
