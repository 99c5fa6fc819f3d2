"""The fused C grid kernel against the torch implementation it replaces on the CPU."""

import subprocess
import sys

import pytest
import torch

from privhead.field import native
from privhead.field.grid import trilinear_with_gradient, trilinear_with_gradient_torch

pytestmark = pytest.mark.skipif(not native.available(), reason="no C compiler for the kernel")


def _case(res: int, n: int = 3000):
    generator = torch.Generator().manual_seed(res)
    grid = torch.randn(res, res, res, generator=generator).requires_grad_(True)
    # Points inside the cube, on its faces and outside it (the boundary cells extrapolate).
    points = torch.rand(n, 3, generator=generator) * 2.6 - 1.3
    points[:10] = torch.tensor([1.0, -1.0, 0.0])
    return grid, points, generator


@pytest.mark.parametrize("res", [2, 5, 32])
def test_kernel_equals_torch_values_gradients_and_grid_gradients(res):
    grid, points, generator = _case(res)
    assert native.applies(grid, points)
    results = []
    for fn in (native.trilinear, trilinear_with_gradient_torch):
        values, gradient = fn(grid, points, 0.8)
        w_values = torch.randn(values.shape, generator=torch.Generator().manual_seed(1))
        w_grad = torch.randn(gradient.shape, generator=torch.Generator().manual_seed(2))
        loss = (values * w_values).sum() + (gradient * w_grad).sum()
        (grid_grad,) = torch.autograd.grad(loss, grid)
        results.append((values.detach(), gradient.detach(), grid_grad))
    (v_c, g_c, gg_c), (v_t, g_t, gg_t) = results
    torch.testing.assert_close(v_c, v_t, rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(g_c, g_t, rtol=1e-5, atol=1e-5)
    # Each node sums many float32 terms in another order: equal to rounding of the largest.
    torch.testing.assert_close(gg_c, gg_t, rtol=0, atol=1e-5 * float(gg_t.abs().max()))
    assert gg_c.abs().sum() > 0


def test_values_only_and_gradient_only_losses_reach_the_grid():
    grid, points, _ = _case(8, 500)
    for pick in (0, 1):
        outs = [fn(grid, points, 1.0) for fn in (native.trilinear, trilinear_with_gradient_torch)]
        grads = [torch.autograd.grad(out[pick].square().sum(), grid)[0] for out in outs]
        torch.testing.assert_close(grads[0], grads[1], rtol=1e-5, atol=1e-5)
    values, gradient = native.trilinear(grid, points, 1.0, with_gradient=False)
    assert gradient is None
    torch.testing.assert_close(values, trilinear_with_gradient_torch(grid, points, 1.0)[0])


def test_dispatch_uses_torch_where_the_kernel_does_not_apply():
    grid, points, _ = _case(6, 100)
    # Points that need a gradient (the template placement), float64, other devices: torch.
    moving = points.clone().requires_grad_(True)
    assert not native.applies(grid, moving)
    values, _ = trilinear_with_gradient(grid, moving, 1.0)
    (d_points,) = torch.autograd.grad(values.sum(), moving)
    assert d_points.abs().sum() > 0
    assert not native.applies(grid.double(), points.double())


def test_native_can_be_switched_off_by_the_environment(tmp_path):
    code = "from privhead.field import native; print(native.available())"
    env = {"PRIVHEAD_NATIVE": "0", "PATH": "/usr/bin:/bin"}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    assert out.stdout.strip() == "False", out.stderr


def test_a_missing_compiler_is_a_clear_error(tmp_path, monkeypatch):
    monkeypatch.setenv("PRIVHEAD_CACHE", str(tmp_path))
    with pytest.raises(RuntimeError, match="failed"):
        native.build(compiler="/bin/false")
    assert not list((tmp_path / "native").glob("*.so"))  # nothing half-written


def test_the_thread_count_does_not_change_a_bit():
    grid, points, _ = _case(24, 50_000)
    weights = torch.randn(points.shape[0], generator=torch.Generator().manual_seed(3))

    def run():
        values, gradient = native.trilinear(grid, points, 1.0)
        loss = (values * weights).sum() + gradient.square().sum()
        return values.detach(), torch.autograd.grad(loss, grid)[0]

    previous = torch.get_num_threads()
    try:
        torch.set_num_threads(2)
        v_2, g_2 = run()
        torch.set_num_threads(1)
        v_1, g_1 = run()
    finally:
        torch.set_num_threads(previous)
    assert torch.equal(v_2, v_1) and torch.equal(g_2, g_1)


def test_strided_inputs_and_upstream_gradients_are_read_correctly():
    grid, points, _ = _case(7, 400)
    strided = torch.cat([points, points], dim=1)[:, ::2]  # a non-contiguous view, other values
    upstream = torch.randn(400, 6, generator=torch.Generator().manual_seed(4))[:, ::2]
    grads = []
    for fn in (native.trilinear, trilinear_with_gradient_torch):
        values, gradient = fn(grid, strided, 1.0)
        grads.append(torch.autograd.grad((gradient * upstream).sum() + values.sum(), grid)[0])
    torch.testing.assert_close(grads[0], grads[1], rtol=1e-5, atol=1e-5)
