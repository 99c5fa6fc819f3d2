"""reconstruct's outputs: every stage's mesh, and per-view renders named by the bundle's view
names so the audit pairs them with the right photos (render k is view k, not protected map k)."""

import json

import numpy as np
import pytest
import trimesh

from privhead.config import resolve_config
from privhead.data.formats import load_dataset, read_image
from privhead.data.synthetic import write_synthetic_head
from privhead.mesh.render import render_views
from privhead.privacy.audit import read_image_set
from privhead.privacy.bundle import read_bundle
from privhead.privacy.protect import protect_dataset
from privhead.reconstruct import reconstruct

TINY = [
    "stage1.steps=10",
    "stage2.steps=10",
    "stage1.rays_per_step=256",
    "stage2.patches_per_step=1",
    "render.coarse_samples=24",
    "render.fine_samples=8",
    "mesh_resolution=40",
    "render_size=48",
]


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    root = tmp_path_factory.mktemp("pairing")
    head = write_synthetic_head(root / "head", seed=1, n_views=10, resolution=32, supersample=1)
    bundle = protect_dataset(head, root / "bundle", detector="none").bundle
    cfg = resolve_config("tiny", overrides=TINY)
    result = reconstruct(bundle, root / "run", cfg, device="cpu", progress=False, log=lambda s: 0)
    return head, bundle, result


def test_stage_meshes_and_summary(run):
    _, _, result = run
    out = result.out_dir
    assert (out / "mesh_stage1.ply").is_file() and (out / "mesh.ply").is_file()
    summary = json.loads((out / "summary.json").read_text())
    assert summary["stage_meshes"] == {
        "stage1": str(out / "mesh_stage1.ply"),
        "stage2": str(out / "mesh.ply"),
    }
    assert set(summary["view_renders"]) == {"renders_rgb", "renders_mesh"}


def test_renders_are_named_by_view_and_show_that_view(run):
    head, bundle_dir, result = run
    bundle = read_bundle(bundle_dir)
    protected_names = [bundle.names[i] for i in bundle.protected_indices]
    # the synthetic head's sensitive views are not views 0..Np-1, so index naming would differ
    assert protected_names != [f"{k:06d}" for k in range(len(protected_names))]
    for folder in ("renders_rgb", "renders_mesh"):
        stems = sorted(p.stem for p in (result.out_dir / folder).glob("*.png"))
        assert stems == sorted(protected_names)
    # the clay render called <view> is the mesh seen from that view's camera
    mesh = trimesh.load(result.out_dir / "mesh.ply")
    cams = bundle.protected_cameras.scaled(48, 48)
    fresh = render_views(mesh, cams, background=(0, 0, 0))
    for k, name in enumerate(protected_names):
        stored = read_image(result.out_dir / "renders_mesh" / f"{name}.png")
        assert np.abs(stored - fresh[k] / 255.0).max() < 1.5 / 255
    # the audit reads the folder under those names, the same as the original sensitive views
    renders = read_image_set(result.out_dir / "renders_rgb", "subject", "renders")
    originals = read_image_set(head, "subject", "originals")
    assert sorted(renders.names) == sorted(originals.names)
    dataset = load_dataset(head)
    assert set(originals.names) <= set(dataset.names)
