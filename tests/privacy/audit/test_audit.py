"""The privacy audit: metrics, the inversion attack, ST-LPIPS, the pairing logic, and (with
``privhead[audit]``) real face verification on the astronaut photo and ``privhead audit``."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image
from typer.testing import CliRunner

from privhead.errors import PrivheadError
from privhead.privacy.audit import ImageSet, run_audit
from privhead.privacy.audit.attacks import (
    InversionConfig,
    invert_gradient_modulus,
    total_variation,
)
from privhead.privacy.audit.perceptual import psnr
from privhead.privacy.faces import FaceDetection, FaceDetector, FaceRecognizer
from privhead.privacy.faces.recognize import roc_auc, verification_rates
from privhead.privacy.operators import OperatorConfig, apply_operator

# --------------------------------------------------------------------------------------------
# Metrics
# --------------------------------------------------------------------------------------------


def test_roc_auc_equals_the_pair_count_with_ties():
    rng = np.random.default_rng(0)
    genuine = rng.integers(0, 6, 40).astype(float)
    impostor = rng.integers(2, 9, 30).astype(float)
    genuine[:3] = np.inf  # faces that could not be located
    impostor[:2] = np.inf
    wins = sum((g < i) + 0.5 * (g == i) for g in genuine for i in impostor)
    assert roc_auc(genuine, impostor) == pytest.approx(wins / (40 * 30))
    assert roc_auc([0.1, 0.2], [0.3, 0.4]) == 1.0
    assert roc_auc([0.3, 0.4], [0.1, 0.2]) == 0.0
    assert np.isnan(roc_auc([], [0.1]))


def test_verification_rates_at_a_threshold():
    rates = verification_rates([0.1, 0.5, 0.7, np.inf], [0.2, 0.9, 1.0, 2.0, np.inf], 0.6)
    assert rates["verified"] == pytest.approx(0.5)  # 0.1 and 0.5 accepted
    assert rates["false_accept"] == pytest.approx(0.2)  # 0.2 accepted
    assert rates["accuracy"] == pytest.approx(0.5 * (0.5 + 0.8))


def test_total_variation_of_a_ramp_is_its_slope():
    ramp = torch.arange(10.0).view(1, 1, 1, 10).expand(2, 3, 6, 10) * 0.25
    assert total_variation(ramp) == pytest.approx(torch.tensor([0.25, 0.25]))


def test_psnr_of_a_constant_offset():
    a = np.full((8, 8, 3), 0.5)
    assert psnr(a, a + 0.1) == pytest.approx(20.0)
    assert psnr(a, a) == float("inf")


@pytest.fixture(scope="module")
def stlpips():
    from privhead._optional import package_file
    from privhead.privacy.audit.perceptual import STLPIPS, STLPIPS_WEIGHTS

    try:
        package_file("stlpips_pytorch", STLPIPS_WEIGHTS, "ST-LPIPS")
    except PrivheadError:
        pytest.skip("stlpips-pytorch (privhead[audit]) not installed")
    return STLPIPS.from_package()


def test_stlpips_value_matches_the_original_code(stlpips):
    y, x = np.mgrid[0:48, 0:48] / 47.0
    a = torch.from_numpy(np.stack([x, y, 0.5 * (x + y)])).float()[None]
    b = torch.from_numpy(np.stack([y, x, np.abs(x - y)])).float()[None]
    # The value stlpips_pytorch's own LPIPS(net="alex", variant="shift_tolerant") gives for this
    # pair (normalize=True), computed once with the package.
    assert stlpips(a, b).item() == pytest.approx(0.7614131, abs=2e-6)
    assert stlpips(a, a).item() == pytest.approx(0.0, abs=1e-7)


# --------------------------------------------------------------------------------------------
# The inversion attack
# --------------------------------------------------------------------------------------------


def test_inversion_from_grey_reproduces_the_protected_map():
    torch.manual_seed(0)
    y, x = torch.meshgrid(torch.linspace(-1, 1, 32), torch.linspace(-1, 1, 32), indexing="ij")
    blob = torch.exp(-(x**2 + y**2) / 0.3)
    image = torch.stack([0.2 + 0.6 * blob, 0.3 + 0.4 * blob, 0.5 - 0.3 * blob])[None]
    cfg = OperatorConfig.paper(resolution=32)
    target = apply_operator(image, cfg)
    start = invert_gradient_modulus(target, cfg, None, InversionConfig(steps=0))
    found = invert_gradient_modulus(target, cfg, None, InversionConfig(steps=100))

    def error(candidate):
        return ((apply_operator(candidate, cfg) - target).abs().mean() / target.mean()).item()

    assert found.shape == image.shape and 0.0 <= found.min() and found.max() <= 1.0
    assert error(found) < 0.1
    assert error(found) < error(start) / 5


# --------------------------------------------------------------------------------------------
# Pairing logic with stand-in models (no optional packages)
# --------------------------------------------------------------------------------------------


class CentreDetector(FaceDetector):
    """Stand-in: a face is where the image centre is not black."""

    name = "centre"

    def detect(self, image):
        image = np.asarray(image, dtype=np.float64)
        h, w = image.shape[:2]
        if image[h // 2, w // 2].max() > 0.05:
            return [FaceDetection((0.0, 0.0, float(w), float(h)), 1.0, self.name, np.zeros((5, 2)))]
        return []


class ColourRecognizer(FaceRecognizer):
    """Stand-in: the embedding is the mean colour of the located box."""

    name = "colour"
    metric = "euclidean"
    threshold = 0.3

    def embed(self, image, detection):
        x0, y0, x1, y1 = (int(round(v)) for v in detection.box)
        return np.asarray(image, dtype=np.float64)[y0:y1, x0:x1].reshape(-1, 3).mean(axis=0)


def _solid(colour, centre_black=False):
    image = np.empty((8, 8, 3), np.float32)
    image[:] = colour
    if centre_black:
        image[2:6, 2:6] = 0.0
    return image


def test_audit_pairs_are_pose_matched_and_missed_faces_use_the_original_box():
    views = ["v0", "v1", "v2"]
    red = [(0.9, 0.1, 0.1), (0.8, 0.1, 0.1), (0.85, 0.15, 0.1)]
    originals = ImageSet("a", views, [_solid(c) for c in red])
    # Renders: same colours, but view v1's centre is black: the detector misses it there, the
    # original's box (the whole image) is used, and its mean colour is still red enough.
    renders = ImageSet("a", views, [_solid(c, centre_black=(i == 1)) for i, c in enumerate(red)])
    green = ImageSet("b", views + ["v9"], [_solid((0.1, 0.9, 0.1)) for _ in range(4)])
    elsewhere = ImageSet("c", ["x0", "x1"], [_solid((0.85, 0.12, 0.1)), _solid((0, 0, 0.9))])
    result = run_audit(
        originals,
        {"renders": renders},
        [green, elsewhere],
        [CentreDetector()],
        [ColourRecognizer()],
        inversion=None,
        perceptual=False,
    )
    orig = result.kinds["originals"]["verification"]["colour"]
    rend = result.kinds["renders"]["verification"]["colour"]
    # Originals: 3 probes x 2 other views; impostors: 3 x the same 2 views of "b" (not v9).
    assert orig["genuine"]["n"] == 6 and orig["impostor"]["n"] == 6
    # Renders: 3 probes x all 3 views, on both sides.
    assert rend["genuine"]["n"] == 9 and rend["impostor"]["n"] == 9
    assert orig["verified"] == 1.0 and orig["false_accept"] == 0.0 and orig["auc"] == 1.0
    assert rend["impostors"] == "same-rig identities, pose-matched"
    # The set from elsewhere shares no view: a separate false-accept rate (1 of its 2 is red).
    assert rend["false_accept_other"] == pytest.approx(0.5)
    assert result.kinds["renders"]["located"] == {"own": 2, "original": 1, "none": 0}
    assert result.kinds["renders"]["detection"]["centre"] == pytest.approx(2 / 3)
    # The black centre darkens v1's mean colour by a quarter, to (0.6, 0.075, 0.075): at
    # distances 0.302, 0.203, 0.262 from the three originals, one genuine pair of 9 is rejected.
    assert rend["verified"] == pytest.approx(8 / 9)

    with pytest.raises(PrivheadError, match="subject's identity"):
        run_audit(originals, {}, [originals], [CentreDetector()], [ColourRecognizer()])


# --------------------------------------------------------------------------------------------
# Real models (privhead[audit])
# --------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def face_models():
    pytest.importorskip("cv2")
    pytest.importorskip("dlib")
    from privhead.privacy.faces import load_detectors, load_recognizers

    try:
        return load_detectors("yunet"), load_recognizers("sface,dlib")
    except PrivheadError as exc:
        pytest.skip(str(exc))


def test_astronaut_verifies_against_its_mirror_image_but_not_its_protected_map(face_models):
    from skimage.data import astronaut

    from privhead.privacy.faces.detect import best_detection, detect_faces

    detectors, recognizers = face_models
    photo = astronaut().astype(np.float32) / 255.0
    mirror = np.ascontiguousarray(photo[:, ::-1])
    face = best_detection(detect_faces(photo, detectors))
    mirror_face = best_detection(detect_faces(mirror, detectors))
    protected = apply_operator(
        torch.from_numpy(photo).permute(2, 0, 1)[None], OperatorConfig.paper()
    )
    protected = protected[0, 0].numpy()
    assert protected.shape == (64, 64)
    protected_image = np.repeat((protected / protected.max())[..., None], 3, axis=2)
    # The attacker is even told where the face is: the photo's box scaled to the map.
    protected_face = face.scaled(64 / 512)
    for recognizer in recognizers:
        reference = recognizer.embed(photo, face)
        same = recognizer.distances(reference, recognizer.embed(mirror, mirror_face))[0, 0]
        masked = recognizer.distances(reference, recognizer.embed(protected_image, protected_face))[
            0, 0
        ]
        assert same <= recognizer.threshold, (recognizer.name, same)
        assert masked > recognizer.threshold, (recognizer.name, masked)


def test_audit_command_on_shared_heads(tmp_path, shared_heads):
    pytest.importorskip("cv2")
    pytest.importorskip("dlib")
    heads = shared_heads
    from privhead.cli import app

    views = ["000000", "000010", "000019"]
    folders = {}
    for kind, head in (("orig", "ict_s0"), ("other", "ict_s1")):
        folders[kind] = tmp_path / kind
        folders[kind].mkdir()
        for view in views:
            source = heads / head / "r64_v30" / "image" / f"{view}.png"
            (folders[kind] / f"{view}.png").write_bytes(source.read_bytes())
    # Protected maps as 8-bit PNGs (their absolute scale is lost: the attack fits a gain).
    folders["maps"] = tmp_path / "maps"
    folders["maps"].mkdir()
    for view in views:
        image = np.asarray(Image.open(folders["orig"] / f"{view}.png"), np.float32)[..., :3] / 255
        grad = apply_operator(
            torch.from_numpy(image).permute(2, 0, 1)[None], OperatorConfig.paper()
        )
        grad = (grad[0, 0] / grad.max()).numpy()
        Image.fromarray((grad * 255).astype(np.uint8)).save(folders["maps"] / f"{view}.png")
    result = CliRunner().invoke(
        app,
        [
            "audit",
            str(folders["orig"]),
            str(tmp_path / "out"),
            "--protected",
            str(folders["maps"]),
            "--impostor",
            str(folders["other"]),
            "--lfw-impostors",
            "5",
            "--detector",
            "yunet",
            "--inversion-steps",
            "20",
            "--privacy",
            "paper",
        ],
    )
    assert result.exit_code == 0, result.output
    report = json.loads((tmp_path / "out" / "audit.json").read_text())
    assert set(report["kinds"]) == {
        "originals",
        "protected",
        "inversion_template",
        "inversion_grey",
        "template_only",
    }
    assert {m["name"] for m in report["models"]} == {"SFace", "Dlib"}
    assert "ArcFace" in report["unavailable_models"]
    originals = report["kinds"]["originals"]
    assert originals["detection"]["yunet"] == 1.0  # three views showing the face
    for entry in report["kinds"].values():
        for model in entry["verification"].values():
            assert model["genuine"]["n"] > 0 and model["impostor"]["n"] > 0
    assert report["perceptual"]["n_pairs"] == 3
    text = (tmp_path / "out" / "report.md").read_text()
    assert "| GhostFaceNet | unavailable" in text
    assert (tmp_path / "out" / "kinds.png").is_file()
