"""Tests for the software mesh renderer (privhead.mesh.render) on spheres and quads."""

from __future__ import annotations

import math

import numpy as np
import pytest
import trimesh
from PIL import Image

from privhead.errors import PrivheadError
from privhead.mesh.render import orbit_cameras, render_mesh, render_views, save_grid

SIZE = 128
DISTANCE = 3.0
FOV = 30.0
RADIUS = 0.5


@pytest.fixture(scope="module")
def sphere():
    return trimesh.creation.icosphere(subdivisions=5, radius=RADIUS)


@pytest.fixture(scope="module")
def front_camera():
    return orbit_cameras(1, DISTANCE, 0.0, FOV, SIZE, SIZE)


def covered(image, background=(255, 255, 255)):
    return (image != np.asarray(background, dtype=np.uint8)).any(axis=-1)


def test_orbit_convention():
    cams = orbit_cameras(4, 2.0, 0.0, 40.0, 64, 48)
    # azimuth 0: on +Z looking along -Z, image x = world +X, image y (down) = world -Y
    np.testing.assert_allclose(cams.c2w[0, :3, 3], [0, 0, 2], atol=1e-12)
    np.testing.assert_allclose(cams.c2w[0, :3, :3], np.diag([1.0, -1.0, -1.0]), atol=1e-12)
    # azimuth 90: on +X
    np.testing.assert_allclose(cams.c2w[1, :3, 3], [2, 0, 0], atol=1e-12)
    uv, depth = cams.project(np.zeros((1, 3)))
    np.testing.assert_allclose(uv[:, 0], [[31.5, 23.5]] * 4, atol=1e-9)
    np.testing.assert_allclose(depth[:, 0], 2.0)
    lifted = orbit_cameras(1, 2.0, 30.0, 40.0, 64, 48, target=(1, 2, 3))
    np.testing.assert_allclose(lifted.c2w[0, :3, 3], [1, 2 + 1.0, 3 + math.sqrt(3)], atol=1e-12)


def test_sphere_silhouette_area(sphere, front_camera):
    image = render_mesh(sphere, front_camera.K[0], front_camera.c2w[0], SIZE, SIZE)
    focal = front_camera.K[0, 0, 0]
    # The sphere's silhouette cone has half-angle asin(r / d): a disc of radius f * tan(that).
    disc_radius = focal * RADIUS / math.sqrt(DISTANCE**2 - RADIUS**2)
    assert covered(image).sum() == pytest.approx(math.pi * disc_radius**2, rel=0.02)


def test_headlight_centre_brighter_than_edge(sphere, front_camera):
    image = render_mesh(sphere, front_camera.K[0], front_camera.c2w[0], SIZE, SIZE)
    gray = image.astype(float).mean(axis=-1)
    centre = (SIZE - 1) / 2
    disc_radius = front_camera.K[0, 0, 0] * RADIUS / math.sqrt(DISTANCE**2 - RADIUS**2)
    c = round(centre)
    edge = [gray[c, round(centre + s * 0.93 * disc_radius)] for s in (-1, 1)] + [
        gray[round(centre + s * 0.93 * disc_radius), c] for s in (-1, 1)
    ]
    assert gray[c, c] > max(edge) + 40


def test_vertex_colours_and_image_orientation(sphere, front_camera):
    colours = np.full((len(sphere.vertices), 3), 200, dtype=np.uint8)
    top = sphere.vertices[:, 1] > 0.25  # world +Y: must appear in the upper image rows
    colours[top] = (0, 200, 0)
    image = render_mesh(
        sphere, front_camera.K[0], front_camera.c2w[0], SIZE, SIZE, vertex_colors=colours
    )
    green = (image[..., 1].astype(int) - image[..., 0].astype(int)) > 60
    rows = np.nonzero(green)[0]
    assert len(rows) > 100
    assert rows.max() < (SIZE - 1) / 2
    # float colours in [0, 1] are accepted as well
    as_float = render_mesh(
        sphere, front_camera.K[0], front_camera.c2w[0], SIZE, SIZE, vertex_colors=colours / 255.0
    )
    assert np.abs(as_float.astype(int) - image.astype(int)).max() <= 1
    with pytest.raises(PrivheadError, match="vertex_colors"):
        render_mesh(sphere, front_camera.K[0], front_camera.c2w[0], SIZE, SIZE, colours[:10])


def test_z_buffer_nearer_quad_wins():
    def quad(z, half):
        vertices = np.array(
            [[-half, -half, z], [half, -half, z], [half, half, z], [-half, half, z]]
        )
        return trimesh.Trimesh(vertices, [[0, 1, 2], [0, 2, 3]], process=False)

    # near quad listed first, then a larger far quad: order must not matter
    mesh = trimesh.util.concatenate([quad(0.5, 0.3), quad(-0.5, 0.6)])
    colours = np.array([[255, 0, 0]] * 4 + [[0, 0, 255]] * 4, dtype=np.uint8)
    cam = orbit_cameras(1, 3.0, 0.0, FOV, 64, 64)
    image = render_mesh(mesh, cam.K[0], cam.c2w[0], 64, 64, vertex_colors=colours, ambient=1.0)
    assert tuple(image[32, 32]) == (255, 0, 0)
    assert tuple(image[32, 4]) == (255, 255, 255)
    far_only = image[32, 12]  # outside the near quad's projection, inside the far quad's
    assert tuple(far_only) == (0, 0, 255)


def test_render_views_and_grid(tmp_path, sphere):
    cams = orbit_cameras(3, DISTANCE, 20.0, FOV, 40, 30)
    images = render_views(sphere, cams)
    assert len(images) == 3 and images[0].shape == (30, 40, 3) and images[0].dtype == np.uint8
    path = save_grid(images, tmp_path / "sub" / "grid.png", ncols=2, labels=["a", "b", "c"])
    with Image.open(path) as im:
        assert im.size == (80, 60)


def test_previews_are_upright_in_a_frame_whose_up_is_not_y(tmp_path):
    from PIL import Image

    from privhead.data.cameras import look_at_c2w
    from privhead.reconstruct import render_mesh_previews

    # A cone pointing up (+Y), seen by cameras that stand upright; then the same scene turned
    # upside down (180 deg about X), as a structure-from-motion frame may be.
    cone = trimesh.creation.cone(radius=0.4, height=0.9)
    cone.apply_transform(trimesh.transformations.rotation_matrix(-np.pi / 2, [1, 0, 0]))
    c2w = np.stack([look_at_c2w([2 * np.sin(a), 0.2, 2 * np.cos(a)]) for a in (0, 2, 4)])
    flip = np.diag([1.0, -1.0, -1.0, 1.0])
    upside_down = cone.copy()
    upside_down.apply_transform(flip)
    scale_mat = np.eye(4)
    a = render_mesh_previews(cone, scale_mat, tmp_path / "a.png", c2w)
    b = render_mesh_previews(upside_down, scale_mat, tmp_path / "b.png", flip @ c2w)
    c = render_mesh_previews(upside_down, scale_mat, tmp_path / "c.png")  # world +Y as up
    a, b, c = (np.asarray(Image.open(p).convert("L"), dtype=np.float64) for p in (a, b, c))
    assert np.abs(a - b).mean() < 2.0  # the same pictures, up to the sampling of the pixels
    assert np.abs(a - c).mean() > 5 * max(np.abs(a - b).mean(), 0.1)
