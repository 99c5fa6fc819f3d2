"""The privacy bundle: round trip, validation of malformed bundles, atomic writes, and the
privacy guarantee that no sensitive view's RGB (or mask) ever ends up in a bundle."""

from __future__ import annotations

import io
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from privhead.data.cameras import Cameras, similarity
from privhead.data.formats import HeadDataset, load_dataset
from privhead.errors import PrivheadError
from privhead.privacy.bundle import read_bundle, write_bundle
from privhead.privacy.operators import OperatorConfig, apply_operator, downsample_area
from privhead.privacy.sensitivity import classify_dataset, classify_views


def look_at(center, target=(0.0, 0.0, 0.0)) -> np.ndarray:
    """[4, 4] OpenCV c2w of a camera at ``center`` looking at ``target`` (world up = +Y)."""
    center = np.asarray(center, float)
    z = np.asarray(target, float) - center
    z /= np.linalg.norm(z)
    x = np.cross(z, [0.0, -1.0, 0.0])
    x /= np.linalg.norm(x)
    c2w = np.eye(4)
    c2w[:3, :3] = np.stack([x, np.cross(z, x), z], axis=1)
    c2w[:3, 3] = center
    return c2w


def make_dataset(n_views=6, height=32, width=32, seed=0, masks=True) -> HeadDataset:
    """Random 8-bit textures and disc masks (every view different), cameras on a ring."""
    rng = np.random.default_rng(seed)
    images = rng.integers(0, 256, size=(n_views, height, width, 3)).astype(np.float32) / 255.0
    rows, cols = np.mgrid[:height, :width]
    radius = 0.3 * min(height, width)
    discs = np.stack(
        [
            (rows - height / 2 - i % 3) ** 2 + (cols - width / 2 - i) ** 2 < radius**2
            for i in range(n_views)
        ]
    )
    angles = np.linspace(0.0, 2 * np.pi, n_views, endpoint=False)
    c2w = np.stack([look_at([3 * np.sin(a), 0.2, 3 * np.cos(a)]) for a in angles])
    K = np.array([[1.5 * width, 0, (width - 1) / 2], [0, 1.5 * width, (height - 1) / 2], [0, 0, 1]])
    return HeadDataset(
        images=images,
        cameras=Cameras(np.tile(K, (n_views, 1, 1)), c2w, width, height),
        masks=discs if masks else None,
        scale_mat=similarity([0.0, 0.1, 0.0], 1.2),
        names=[f"view{i:02d}" for i in range(n_views)],
    )


NEUTRAL = [2, 3]
CFG = OperatorConfig.paper(resolution=16)


@pytest.fixture
def bundle_dir(tmp_path):
    dataset = make_dataset()
    decisions = classify_views(len(dataset), neutral=NEUTRAL)
    return write_bundle(dataset, decisions, CFG, tmp_path / "bundle"), dataset


def test_round_trip(bundle_dir):
    path, dataset = bundle_dir
    bundle = read_bundle(path)
    sensitive = [i for i in range(len(dataset)) if i not in NEUTRAL]
    assert bundle.kinds == ["neutral" if i in NEUTRAL else "sensitive" for i in range(6)]
    assert bundle.names == dataset.names
    assert (bundle.neutral_indices, bundle.protected_indices) == (NEUTRAL, sensitive)
    np.testing.assert_array_equal(bundle.neutral_images, dataset.images[NEUTRAL])
    np.testing.assert_array_equal(bundle.neutral_masks, dataset.masks[NEUTRAL])
    np.testing.assert_allclose(bundle.neutral_cameras.K, dataset.cameras.K[NEUTRAL])
    np.testing.assert_allclose(bundle.neutral_cameras.c2w, dataset.cameras.c2w[NEUTRAL])
    assert (bundle.neutral_cameras.width, bundle.neutral_cameras.height) == (32, 32)
    # protected maps: sigma of the sensitive views, to 16-bit precision (scale / 65535)
    expected = apply_operator(torch.from_numpy(dataset.images[sensitive]).permute(0, 3, 1, 2), CFG)
    expected = expected[:, 0].numpy()
    assert bundle.protected_maps.shape == (4, 16, 16)
    tolerance = expected.max(axis=(1, 2), keepdims=True) / 65535
    assert np.all(np.abs(bundle.protected_maps - expected) <= tolerance)
    # cameras at the working resolution: exact 2x area downsampling, K scaled accordingly
    scaled = dataset.cameras.subset(sensitive).scaled(16, 16)
    np.testing.assert_allclose(bundle.protected_cameras.K, scaled.K)
    np.testing.assert_allclose(bundle.protected_cameras.K[0, 0, 2], (31 / 2 + 0.5) / 2 - 0.5)
    np.testing.assert_allclose(bundle.protected_cameras.c2w, dataset.cameras.c2w[sensitive])
    assert (bundle.protected_cameras.width, bundle.protected_cameras.height) == (16, 16)
    assert bundle.operator == CFG
    np.testing.assert_allclose(bundle.scale_mat, dataset.scale_mat)
    manifest = json.loads((path / "manifest.json").read_text())
    assert manifest["format"] == "privhead-bundle" and manifest["version"] == 4
    assert manifest["working_resolution"] == {"width": 16, "height": 16}
    assert {v["reason"] for v in manifest["views"]} == {"user"}


def test_non_square_and_float_images(tmp_path):
    dataset = make_dataset(n_views=3, height=24, width=40, masks=False)
    dataset.images = dataset.images + np.float32(0.3 / 255)  # not 8-bit: stored as float32 .npy
    decisions = classify_views(3, neutral=[1])
    bundle = read_bundle(write_bundle(dataset, decisions, CFG, tmp_path / "b", scale_mat=None))
    np.testing.assert_array_equal(bundle.neutral_images, dataset.images[[1]])
    assert bundle.neutral_masks is None
    assert bundle.protected_maps.shape == (2, 10, 16)
    cams = bundle.protected_cameras
    assert (cams.width, cams.height) == (16, 10)
    # a world point projects to the same place in both resolutions: u' = (u + 0.5) * a - 0.5
    point = np.array([[0.1, -0.2, 0.3]])
    uv, _ = dataset.cameras.subset([0, 2]).project(point)
    uv_small, _ = cams.project(point)
    np.testing.assert_allclose(uv_small[..., 0], (uv[..., 0] + 0.5) * 16 / 40 - 0.5)
    np.testing.assert_allclose(uv_small[..., 1], (uv[..., 1] + 0.5) * 10 / 24 - 0.5)
    # the dataset's scale_mat is the default
    assert bundle.scale_mat is not None


def test_all_views_sensitive(tmp_path):
    """No neutral view at all (the template case): an empty neutral part, everything protected."""
    dataset = make_dataset(n_views=3)
    bundle = read_bundle(write_bundle(dataset, classify_views(3), CFG, tmp_path / "b"))
    assert bundle.neutral_images.shape[0] == 0 and len(bundle.neutral_cameras) == 0
    assert bundle.neutral_masks is None
    assert bundle.protected_maps.shape == (3, 16, 16) and len(bundle.protected_cameras) == 3
    assert list((tmp_path / "b").iterdir()) != [] and not (tmp_path / "b" / "neutral").exists()


def test_existing_output_and_overwrite(tmp_path, bundle_dir):
    path, dataset = bundle_dir
    decisions = classify_views(len(dataset), neutral=[0])
    with pytest.raises(PrivheadError, match="already exists"):
        write_bundle(dataset, decisions, CFG, path)
    assert read_bundle(path).neutral_indices == NEUTRAL
    write_bundle(dataset, decisions, CFG, path, overwrite=True)
    assert read_bundle(path).neutral_indices == [0]
    other = tmp_path / "not_a_bundle"
    other.mkdir()
    (other / "precious.txt").write_text("keep me")
    with pytest.raises(PrivheadError, match="not a privhead bundle"):
        write_bundle(dataset, decisions, CFG, other, overwrite=True)
    assert (other / "precious.txt").read_text() == "keep me"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bundle", "not_a_bundle"]


def test_failure_leaves_nothing(tmp_path, monkeypatch):
    import privhead.privacy.bundle as bundle_module

    calls = []

    def failing_protect(image, cfg):
        calls.append(1)
        if len(calls) == 3:
            raise RuntimeError("disk on fire")
        return np.zeros((16, 16), np.float32), None

    monkeypatch.setattr(bundle_module, "protect_image_valid", failing_protect)
    dataset = make_dataset()
    with pytest.raises(RuntimeError, match="disk on fire"):
        write_bundle(dataset, classify_views(6, neutral=NEUTRAL), CFG, tmp_path / "out")
    assert list(tmp_path.iterdir()) == []


def test_bad_decisions_rejected(tmp_path):
    dataset = make_dataset()
    with pytest.raises(PrivheadError, match="one view decision per view"):
        write_bundle(dataset, classify_views(5), CFG, tmp_path / "out")
    assert not (tmp_path / "out").exists()


# --------------------------------------------------------------------------------------------
# Malformed bundles
# --------------------------------------------------------------------------------------------


def _edit_manifest(path: Path, edit) -> None:
    manifest = json.loads((path / "manifest.json").read_text())
    edit(manifest)
    (path / "manifest.json").write_text(json.dumps(manifest))


def _view(manifest, kind):
    return next(v for v in manifest["views"] if v["kind"] == kind)


MALFORMED = {
    "unknown version": (lambda m: m.update(version=5), "version 5"),
    "wrong format": (lambda m: m.update(format="zip"), "format 'zip'"),
    "unknown operator": (lambda m: m["operator"].update(name="canny"), "sobel, scharr"),
    "unknown operator parameter": (lambda m: m["operator"].update(gamma=2), "gamma"),
    "no views": (lambda m: m.update(views=[]), "non-empty"),
    "bad K": (lambda m: _view(m, "neutral").update(K=[[1, 0], [0, 1]]), "3x3"),
    "bad focal": (
        lambda m: _view(m, "neutral").update(K=[[-5, 0, 1], [0, 5, 1], [0, 0, 1]]),
        "positive focal",
    ),
    "bad c2w": (lambda m: _view(m, "sensitive").update(c2w=np.ones((4, 4)).tolist()), "rigid"),
    "path escape": (lambda m: _view(m, "neutral").update(image="../secret.png"), "inside"),
    "wrong folder": (
        lambda m: _view(m, "sensitive").update(image="neutral/view02.png"),
        "inside protected",
    ),
    "stated size": (lambda m: _view(m, "neutral").update(width=31), "32x32 pixels"),
    "protected size": (lambda m: m["working_resolution"].update(width=8), "working resolution"),
    "bad scale": (lambda m: _view(m, "sensitive").update(scale="big"), "scale"),
    "bad scale_mat": (lambda m: m.update(scale_mat=[[1, 2], [3, 4]]), "scale_mat"),
    "index order": (lambda m: m["views"].reverse(), "index"),
    "unknown kind": (lambda m: _view(m, "neutral").update(kind="public"), "kind 'public'"),
}


@pytest.mark.parametrize("case", list(MALFORMED))
def test_malformed_manifest_rejected(bundle_dir, case):
    path, _ = bundle_dir
    edit, message = MALFORMED[case]
    _edit_manifest(path, edit)
    with pytest.raises(PrivheadError, match=message):
        read_bundle(path)


def test_broken_files_rejected(bundle_dir):
    path, _ = bundle_dir
    (path / "manifest.json").write_text("{not json")
    with pytest.raises(PrivheadError, match="not valid JSON"):
        read_bundle(path)
    (path / "manifest.json").unlink()
    with pytest.raises(PrivheadError, match="no manifest.json"):
        read_bundle(path)
    with pytest.raises(PrivheadError, match="not a privacy bundle folder"):
        read_bundle(path / "nowhere")


def test_missing_or_wrong_files_rejected(bundle_dir):
    path, _ = bundle_dir
    (path / "protected" / "view04.png").unlink()
    with pytest.raises(PrivheadError, match="view 4: image file protected/view04.png is missing"):
        read_bundle(path)
    Image.fromarray(np.zeros((8, 16), np.uint16)).save(path / "protected" / "view04.png")
    with pytest.raises(PrivheadError, match="16x8 pixels"):
        read_bundle(path)
    Image.fromarray(np.zeros((16, 16, 3), np.uint8)).save(path / "protected" / "view04.png")
    with pytest.raises(PrivheadError, match="16-bit grey"):
        read_bundle(path)
    (path / "protected" / "view04.png").write_bytes(b"not a png")
    with pytest.raises(PrivheadError, match="not a readable PNG"):
        read_bundle(path)
    shutil.copy(path / "neutral" / "view03.png", path / "protected" / "view04.png")
    (path / "neutral_mask" / "view02.png").unlink()
    with pytest.raises(PrivheadError, match="mask file neutral_mask/view02.png is missing"):
        read_bundle(path)


# --------------------------------------------------------------------------------------------
# The privacy test
# --------------------------------------------------------------------------------------------


def _grey(image: np.ndarray) -> np.ndarray:
    return image @ np.array([0.299, 0.587, 0.114], dtype=np.float32)


def _forbidden_arrays(dataset: HeadDataset, sensitive: list[int], resolution: int) -> list:
    """Every form in which a sensitive view's RGB (or its mask) must never appear."""
    forbidden = []
    for i in sensitive:
        image = dataset.images[i]
        masked = image * dataset.masks[i][..., None]
        small = downsample_area(torch.from_numpy(image).permute(2, 0, 1)[None], resolution)
        small = small[0].permute(1, 2, 0).numpy()
        for rgb in (image, masked, small):
            forbidden += [rgb, _grey(rgb), rgb.mean(axis=2)]
            forbidden += [rgb[..., c] for c in range(3)]
        forbidden.append(dataset.masks[i].astype(np.float32))
    return forbidden


def _png(array_uint8: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(array_uint8).save(buffer, format="PNG")
    return buffer.getvalue()


def _decoded_arrays(path: Path, manifest: dict) -> list[np.ndarray]:
    """Every array a file decodes to, scaled to [0, 1] where it has an integer type; a
    protected map is also given dequantised with its manifest scale."""
    arrays = []
    if path.suffix == ".npy":
        arrays.append(np.load(path, allow_pickle=False).astype(np.float32))
    try:
        with Image.open(path) as im:
            raw = np.asarray(im)
    except Exception:
        raw = None
    if raw is not None:
        scale = 65535.0 if raw.dtype in (np.uint16, np.int32) and raw.max() > 255 else 255.0
        arrays.append(raw.astype(np.float32) / scale)
        arrays.append(raw.astype(np.float32) / 65535.0)
        for view in manifest["views"]:
            if path.as_posix().endswith(view["image"]) and "scale" in view:
                arrays.append(raw.astype(np.float32) / 65535.0 * view["scale"])
    expanded = []
    for array in arrays:
        expanded.append(array)
        if array.ndim == 3:
            expanded += [array[..., c] for c in range(array.shape[-1])]
    return expanded


def _leaks(bundle_root: Path, dataset: HeadDataset, sensitive: list[int], resolution: int):
    """Descriptions of every place a sensitive view's data appears in the bundle folder."""
    manifest = json.loads((bundle_root / "manifest.json").read_text())
    forbidden = _forbidden_arrays(dataset, sensitive, resolution)
    forbidden_bytes = []
    for i in sensitive:
        uint8 = np.round(dataset.images[i] * 255).astype(np.uint8)
        mask = np.where(dataset.masks[i], 255, 0).astype(np.uint8)
        forbidden_bytes += [_png(uint8), uint8.tobytes(), dataset.images[i].tobytes(), _png(mask)]
    leaks = []
    for path in sorted(p for p in bundle_root.rglob("*") if p.is_file()):
        content = path.read_bytes()
        for k, needle in enumerate(forbidden_bytes):
            if needle in content:
                leaks.append(f"{path}: raw bytes #{k}")
        for array in _decoded_arrays(path, manifest):
            for k, target in enumerate(forbidden):
                if array.shape == target.shape and np.max(np.abs(array - target)) <= 1 / 255:
                    leaks.append(f"{path}: array #{k}")
    return leaks


def test_no_sensitive_rgb_in_the_bundle(tmp_path):
    dataset = make_dataset(n_views=5, seed=3)
    decisions = classify_views(len(dataset), neutral=[1, 3])
    sensitive = [d.index for d in decisions if d.sensitive]
    root = write_bundle(dataset, decisions, CFG, tmp_path / "bundle")
    assert _leaks(root, dataset, sensitive, CFG.resolution) == []
    # only the expected files exist: no sensitive view has a file outside protected/
    names = {p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file()}
    expected = {"manifest.json"}
    expected |= {f"neutral/view0{i}.png" for i in (1, 3)}
    expected |= {f"neutral_mask/view0{i}.png" for i in (1, 3)}
    expected |= {f"protected/view0{i}.png" for i in sensitive}
    assert names == expected


def test_the_privacy_scan_detects_planted_leaks(tmp_path):
    """The scanner above must be able to fail: plant each kind of leak and see it found."""
    dataset = make_dataset(n_views=3, seed=4)
    decisions = classify_views(3, neutral=[0])
    root = write_bundle(dataset, decisions, CFG, tmp_path / "bundle")
    assert _leaks(root, dataset, [1, 2], CFG.resolution) == []
    image = dataset.images[1]
    small = downsample_area(torch.from_numpy(image).permute(2, 0, 1)[None], 16)[0]
    plants = {
        "rgb.png": _png(np.round(image * 255).astype(np.uint8)),
        "grey.png": _png(np.round(_grey(image) * 255).astype(np.uint8)),
        "small.png": _png(np.round(small.permute(1, 2, 0).numpy() * 255).astype(np.uint8)),
        "masked.png": _png(np.round(image * dataset.masks[1][..., None] * 255).astype(np.uint8)),
        "raw.bin": b"header" + np.round(image * 255).astype(np.uint8).tobytes(),
    }
    for name, content in plants.items():
        plant = root / "protected" / name
        plant.write_bytes(content)
        assert _leaks(root, dataset, [1, 2], CFG.resolution), name
        plant.unlink()
    # a neutral image is allowed in the bundle, but would be a leak if it were sensitive
    assert _leaks(root, dataset, [0], CFG.resolution)


def test_shared_head_bundle_has_no_sensitive_rgb(tmp_path, shared_head):
    head = shared_head
    dataset = load_dataset(head).subset(range(8))  # views 0-3, 7 sensitive; 4-6 neutral
    decisions = classify_dataset(dataset)
    sensitive = [d.index for d in decisions if d.sensitive]
    assert sensitive == [0, 1, 2, 3, 7]
    root = write_bundle(dataset, decisions, OperatorConfig.paper(resolution=32), tmp_path / "b")
    assert _leaks(root, dataset, sensitive, 32) == []
