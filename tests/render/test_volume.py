"""Volume rendering: compositing, the Laplace density, sampling, patch vs image rendering."""

import math

import torch

from privhead.config import FieldConfig, RenderConfig
from privhead.data.cameras import image_rays, patch_rays
from privhead.field.density import laplace_cdf, laplace_density, segment_optical_depth
from privhead.field.model import HeadField
from privhead.render.volume import composite, compositing_weights, render_rays, sample_pdf


def test_compositing_weights_by_hand():
    tau = torch.tensor([[0.5, 1.0, 0.0, 2.0]])
    weights, transmittance = compositing_weights(tau)
    t0, t1, t2, t3 = 1.0, math.exp(-0.5), math.exp(-1.5), math.exp(-1.5)
    expected_t = torch.tensor([[t0, t1, t2, t3]])
    expected_w = torch.tensor(
        [[1 - math.exp(-0.5), t1 * (1 - math.exp(-1.0)), 0.0, t3 * (1 - math.exp(-2.0))]]
    )
    torch.testing.assert_close(transmittance, expected_t)
    torch.testing.assert_close(weights, expected_w)
    # Opacity telescopes to 1 - exp(-total optical depth).
    torch.testing.assert_close(weights.sum(), torch.tensor(1 - math.exp(-3.5)))


def test_laplace_density_values():
    beta = torch.tensor(0.1)
    sdf = torch.tensor([0.0, 0.1, -0.1, 1.0])
    expected = torch.tensor([0.5, 0.5 * math.exp(-1), 1 - 0.5 * math.exp(-1), 0.5 * math.exp(-10)])
    torch.testing.assert_close(laplace_cdf(-sdf, beta), expected)
    torch.testing.assert_close(laplace_density(sdf, beta), expected / 0.1)


def test_segment_optical_depth_matches_numerical_integral():
    beta = torch.tensor(0.02, dtype=torch.float64)
    starts = torch.tensor([0.3, 0.05, 0.01, -0.2, 0.2, 0.0], dtype=torch.float64)
    ends = torch.tensor([-0.1, -0.05, 0.01, -0.3, 0.25, 1e-9], dtype=torch.float64)
    length = torch.tensor([0.4, 0.1, 0.05, 0.1, 0.05, 0.01], dtype=torch.float64)
    tau = segment_optical_depth(starts, ends, length, beta)
    s = torch.linspace(0, 1, 200001, dtype=torch.float64)[:, None]
    sdf = starts[None] + (ends - starts)[None] * s
    numeric = torch.trapezoid(laplace_density(sdf, beta), s[:, 0], dim=0) * length
    torch.testing.assert_close(tau, numeric, rtol=1e-6, atol=1e-9)


def test_composite_opaque_plane_gives_its_colour_and_depth():
    # A ray crossing the plane sdf = 1 - t at t = 1 with a tiny beta: opacity 1, depth 1.
    t = torch.linspace(0.0, 2.0, 9)[None]
    sdf = 1.0 - t
    colors = torch.tensor([0.2, 0.4, 0.6]).expand(1, 9, 3)
    out = composite(t, sdf, colors, torch.tensor(1e-3), background=0.0)
    torch.testing.assert_close(out["opacity"], torch.tensor([1.0]), atol=1e-5, rtol=0)
    torch.testing.assert_close(out["rgb"], torch.tensor([[0.2, 0.4, 0.6]]), atol=1e-5, rtol=0)
    torch.testing.assert_close(out["depth"], torch.tensor([1.0]), atol=0.13, rtol=0)


def test_sample_pdf_follows_the_weights():
    bins = torch.linspace(0, 4, 5)[None]
    weights = torch.tensor([[0.0, 1.0, 0.0, 3.0]])
    samples = sample_pdf(bins, weights, 400, jitter=False)
    in_second = ((samples >= 1) & (samples < 2)).float().mean()
    in_last = (samples >= 3).float().mean()
    assert abs(in_second.item() - 0.25) < 0.01
    assert abs(in_last.item() - 0.75) < 0.01
    assert ((samples >= 0) & (samples < 1)).sum() == 0
    assert torch.all(samples[:, 1:] >= samples[:, :-1])


def _camera(device):
    K = torch.tensor([[30.0, 0, 15.5], [0, 30.0, 15.5], [0, 0, 1]], device=device)
    c2w = torch.eye(4, device=device)
    c2w[:3, :3] = torch.tensor([[1.0, 0, 0], [0, -1.0, 0], [0, 0, -1.0]])
    c2w[2, 3] = 2.5
    return K, c2w


def test_patch_rendering_equals_full_image_pixels(device):
    torch.manual_seed(0)
    field = HeadField(FieldConfig(grid_resolutions=(8, 16))).to(device)
    with torch.no_grad():
        for grid in field.geometry.grids:
            grid.normal_(0, 0.02)
    cfg = RenderConfig(coarse_samples=32, fine_samples=8)
    K, c2w = _camera(device)
    o, d = image_rays(K, c2w, 32, 32)
    full = render_rays(o, d, field.query, field.sdf, field.beta(), cfg)["rgb"].reshape(32, 32, 3)
    po, pd = patch_rays(K, c2w, 10, 7, 6, 9)
    patch = render_rays(po, pd, field.query, field.sdf, field.beta(), cfg)["rgb"].reshape(6, 9, 3)
    torch.testing.assert_close(patch, full[10:16, 7:16], atol=1e-5, rtol=0)


def test_initial_sphere_renders_its_silhouette(device):
    field = HeadField(FieldConfig(grid_resolutions=(8,), init_radius=0.5, beta_init=0.005)).to(
        device
    )
    K, c2w = _camera(device)
    o, d = image_rays(K, c2w, 32, 32)
    out = render_rays(o, d, field.query, field.sdf, field.beta(), RenderConfig())
    opacity = out["opacity"].reshape(32, 32)
    assert opacity[15, 15] > 0.99 and opacity[0, 0] < 0.01
    # Projected radius of a sphere of radius 0.5 seen from distance 2.5.
    radius_px = 30.0 * math.tan(math.asin(0.5 / 2.5))
    covered = (opacity > 0.5).sum().item()
    assert abs(covered - math.pi * radius_px**2) / (math.pi * radius_px**2) < 0.08
    # Depth of the centre pixel: the sphere's front at 2.5 - 0.5.
    assert abs(out["depth"].reshape(32, 32)[15:17, 15:17].mean().item() - 2.0) < 0.02


def test_shading_only_visible_samples_changes_pixels_by_at_most_the_threshold(device):
    torch.manual_seed(0)
    field = HeadField(FieldConfig(grid_resolutions=(8, 16), beta_init=0.01)).to(device)
    with torch.no_grad():
        for grid in field.geometry.grids:
            grid.normal_(0, 0.02)
    K, c2w = _camera(device)
    o, d = image_rays(K, c2w, 32, 32)
    shaded = []

    def counting(points, dirs):
        sdf, grad, shade = field.query_deferred(points, dirs)

        def count(index):
            shaded.append(points.shape[0] if index is None else index.shape[0])
            return shade(index)

        return sdf, grad, count

    outs = {}
    for threshold in (0.0, 1e-3):
        cfg = RenderConfig(coarse_samples=32, fine_samples=8, shade_threshold=threshold)
        outs[threshold] = render_rays(o, d, counting, field.sdf, field.beta(), cfg)
    total, culled = shaded
    assert culled < 0.6 * total  # most samples of the rays that miss are not shaded
    k = outs[0.0]["t"].shape[1]
    error = (outs[0.0]["rgb"] - outs[1e-3]["rgb"]).abs().max().item()
    assert 0 < error <= k * 1e-3
    torch.testing.assert_close(outs[0.0]["opacity"], outs[1e-3]["opacity"])
    # field.query (eager colour) and the deferred query agree when every sample is shaded.
    eager = render_rays(o, d, field.query, field.sdf, field.beta(), RenderConfig(32, 8))
    torch.testing.assert_close(eager["rgb"], outs[0.0]["rgb"])
