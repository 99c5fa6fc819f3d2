"""The field: grid interpolation and its analytic gradient, the sphere start, Lipschitz layers."""

import pytest
import torch

from privhead.config import FieldConfig
from privhead.field.color import ColorNetwork, LipschitzLinear, fourier_encode
from privhead.field.grid import (
    add_laplacian_energy_gradient,
    grid_laplacian_energy,
    trilinear_with_gradient,
)
from privhead.field.sdf import GridSDF
from privhead.train.losses import eikonal_loss


def test_trilinear_matches_grid_sample_and_gradient_matches_finite_differences():
    torch.manual_seed(0)
    grid = torch.randn(9, 9, 9, dtype=torch.float64)
    points = (torch.rand(64, 3, dtype=torch.float64) * 2 - 1) * 0.99
    values, gradient = trilinear_with_gradient(grid, points, bound=1.0)
    reference = torch.nn.functional.grid_sample(
        grid.permute(2, 1, 0)[None, None], points[None, None, None], align_corners=True
    )[0, 0, 0, 0]
    torch.testing.assert_close(values, reference)
    eps = 1e-6
    numeric = torch.stack(
        [
            (
                trilinear_with_gradient(grid, points + eps * e, 1.0)[0]
                - trilinear_with_gradient(grid, points - eps * e, 1.0)[0]
            )
            / (2 * eps)
            for e in torch.eye(3, dtype=torch.float64)
        ],
        dim=-1,
    )
    torch.testing.assert_close(gradient, numeric, atol=1e-6, rtol=1e-6)


def test_linear_grid_is_reproduced_exactly():
    axis = torch.linspace(-1, 1, 5, dtype=torch.float64)
    x, y, z = torch.meshgrid(axis, axis, axis, indexing="ij")
    grid = 0.3 * x - 0.2 * y + 0.5 * z
    points = torch.rand(20, 3, dtype=torch.float64) * 2 - 1
    values, gradient = trilinear_with_gradient(grid, points, 1.0)
    torch.testing.assert_close(values, points @ torch.tensor([0.3, -0.2, 0.5], dtype=torch.float64))
    torch.testing.assert_close(gradient, torch.tensor([[0.3, -0.2, 0.5]]).double().expand(20, 3))
    assert grid_laplacian_energy(grid, 1.0) < 1e-20


def test_initial_field_is_a_true_sphere_sdf(device):
    sdf = GridSDF(FieldConfig(init_radius=0.6)).to(device)
    points = torch.randn(500, 3, device=device) * 0.5
    values, gradient, features = sdf(points)
    torch.testing.assert_close(values, points.norm(dim=-1) - 0.6)
    assert eikonal_loss(gradient) < 1e-10
    assert features.shape == (500, 4)


def test_lipschitz_layer_bounds_differences():
    torch.manual_seed(0)
    layer = LipschitzLinear(16, 8, bound_init=0.7)
    with torch.no_grad():
        layer.linear.weight.mul_(20)  # rows far above the bound: normalisation must act
    x, y = torch.randn(1000, 16), torch.randn(1000, 16)
    lhs = (layer(x) - layer(y)).abs().amax(dim=-1)
    rhs = layer.bound() * (x - y).abs().amax(dim=-1)
    assert torch.all(lhs <= rhs + 1e-5)
    assert (lhs / rhs).max() > 0.3  # the bound is not vacuous


def test_color_network_is_bounded_by_the_product_of_layer_bounds():
    torch.manual_seed(0)
    net = ColorNetwork(FieldConfig(color_frequencies=0, color_lipschitz_init=1.5), feature_dim=2)
    for layer in net.layers:
        with torch.no_grad():
            layer.linear.weight.mul_(10)
    inputs = [
        torch.randn(2000, 3),
        torch.randn(2000, 3),
        torch.randn(2000, 3),
        torch.randn(2000, 2),
    ]
    deltas = [torch.randn_like(t) * 0.1 for t in inputs]
    a = net(*inputs)
    b = net(*[t + d for t, d in zip(inputs, deltas)])
    dist_in = torch.cat(deltas, dim=-1).abs().amax(dim=-1)
    dist_out = (a - b).abs().amax(dim=-1)
    # sigmoid is 1/4-Lipschitz and ReLU 1-Lipschitz.
    assert torch.all(dist_out <= 0.25 * net.lipschitz_bound() * dist_in + 1e-6)


def test_fourier_encoding_shape_and_values():
    p = torch.tensor([[0.5, 0.0, -0.25]])
    enc = fourier_encode(p, 2)
    assert enc.shape == (1, 15)
    torch.testing.assert_close(enc[0, 3], torch.sin(torch.tensor(0.5 * torch.pi)))


def test_dense_sdf_equals_the_field_at_its_nodes_and_follows_the_active_levels():
    torch.manual_seed(0)
    geometry = GridSDF(FieldConfig(grid_resolutions=(5, 9, 17)))
    with torch.no_grad():
        for grid in geometry.grids:
            grid.normal_(0.0, 0.02)
    res = 33  # finer than every level, and no level's resolution: each one is resampled
    axis = torch.linspace(-1, 1, res)
    x, y, z = torch.meshgrid(axis, axis, axis, indexing="ij")
    nodes = torch.stack([x, y, z], dim=-1).reshape(-1, 3)
    torch.testing.assert_close(
        geometry.dense_sdf(res).reshape(-1), geometry.sdf(nodes), atol=1e-5, rtol=0
    )
    # Between nodes the one-gather SDF is the dense grid's interpolant: close, not equal.
    points = (torch.rand(2000, 3) * 2 - 1) * 0.95
    coarse = geometry.coarse_sdf_fn(res)(points)
    assert 0 < (coarse - geometry.sdf(points)).abs().max() < 0.1
    geometry.active_levels.fill_(1)
    torch.testing.assert_close(
        geometry.dense_sdf(res).reshape(-1), geometry.sdf(nodes), atol=1e-5, rtol=0
    )
    assert geometry.coarse_sdf_fn(0) == geometry.sdf


@pytest.mark.parametrize("crop", [None, 6])
def test_closed_form_smoothness_gradient_equals_autograd(crop):
    torch.manual_seed(0)
    grid = torch.nn.Parameter(torch.randn(12, 12, 12))
    weight = 0.3
    torch.manual_seed(5)
    energy = grid_laplacian_energy(grid, 1.0, crop=crop)
    (weight * energy).backward()
    expected = grid.grad.clone()
    grid.grad = torch.full_like(grid, 0.25)  # an earlier loss's gradient: added to, not replaced
    torch.manual_seed(5)  # the same random window
    closed = add_laplacian_energy_gradient(grid, 1.0, weight, crop=crop)
    torch.testing.assert_close(closed, energy.detach())
    torch.testing.assert_close(grid.grad - 0.25, expected, rtol=1e-5, atol=1e-6)
    # The window's nodes but its 12 edges and 8 corners (no Laplacian reads them).
    n = 12 if crop is None else crop + 2
    assert (expected != 0).sum().item() == n**3 - 12 * (n - 2) - 8


def test_grid_sdf_smoothness_gradient_over_its_levels():
    field = GridSDF(FieldConfig(grid_resolutions=(8, 48)))
    torch.manual_seed(0)
    with torch.no_grad():
        for g in field.grids:
            g.normal_()
    torch.manual_seed(2)
    reference = field.smoothness()
    (0.01 * reference).backward()
    expected = [g.grad.clone() for g in field.grids]
    field.zero_grad(set_to_none=True)
    torch.manual_seed(2)
    closed = field.add_smoothness_gradient(0.01)
    torch.testing.assert_close(closed, reference.detach())
    for g, e in zip(field.grids, expected):
        torch.testing.assert_close(g.grad, e, rtol=1e-4, atol=1e-5 * e.abs().max().item())
