"""Losses (paper Eq. 2, 4, 5, 8) as pure functions."""

import torch

from privhead.config import FieldConfig, RenderConfig
from privhead.data.cameras import patch_rays
from privhead.field.model import HeadField
from privhead.privacy.operators import OperatorConfig, gradient_modulus, operator_margin
from privhead.render.volume import render_rays
from privhead.train.losses import (
    eikonal_loss,
    gradient_loss,
    lipschitz_loss,
    mask_loss,
    normal_smoothness_loss,
    rgb_loss,
)


def test_rgb_and_eikonal_values():
    assert rgb_loss(torch.zeros(4, 3), torch.full((4, 3), 0.5)) == 0.5
    grad = torch.tensor([[2.0, 0.0, 0.0], [0.0, 1.0, 0.0]])
    torch.testing.assert_close(eikonal_loss(grad), torch.tensor(0.5))
    torch.testing.assert_close(lipschitz_loss(torch.tensor([2.0, 3.0, 0.5])), torch.tensor(3.0))
    assert mask_loss(torch.tensor([0.9999, 0.0001]), torch.tensor([1.0, 0.0])) < 1e-3


def test_gradient_loss_zero_on_own_render_and_flows_to_the_sdf(device):
    torch.manual_seed(0)
    field = HeadField(FieldConfig(grid_resolutions=(8, 16), beta_init=0.02)).to(device)
    op = OperatorConfig.paper(name="sobel")
    m = operator_margin(op)
    K = torch.tensor([[24.0, 0, 11.5], [0, 24.0, 11.5], [0, 0, 1]], device=device)
    c2w = torch.eye(4, device=device)
    c2w[:3, :3] = torch.tensor([[1.0, 0, 0], [0, -1.0, 0], [0, 0, -1.0]])
    c2w[2, 3] = 2.5
    o, d = patch_rays(K, c2w, 4 - m, 4 - m, 12 + 2 * m, 12 + 2 * m)
    cfg = RenderConfig(coarse_samples=32, fine_samples=8)
    rgb = render_rays(o, d, field.query, field.sdf, field.beta(), cfg)["rgb"]
    patch = rgb.reshape(1, 12 + 2 * m, 12 + 2 * m, 3).permute(0, 3, 1, 2)

    def operator(x):
        return gradient_modulus(x, op, "valid")

    target = operator(patch).detach()
    assert gradient_loss(patch, target, operator).item() < 1e-7
    loss = gradient_loss(patch, target * 0.5 + 0.05, operator)
    loss.backward()
    grid_grad = sum(g.grad.abs().sum() for g in field.geometry.grids)
    assert loss > 0 and torch.isfinite(grid_grad) and grid_grad > 0


def test_normal_smoothness_is_zero_for_parallel_normals_and_two_for_orthogonal():
    a = torch.tensor([[0.0, 0.0, 2.0], [1.0, 0.0, 0.0]])
    assert normal_smoothness_loss(a, 3 * a) < 1e-12  # lengths do not matter
    b = torch.tensor([[1.0, 0.0, 0.0], [0.0, 5.0, 0.0]])
    torch.testing.assert_close(normal_smoothness_loss(a, b), torch.tensor(2.0))
    assert normal_smoothness_loss(a[:0], b[:0]) == 0
