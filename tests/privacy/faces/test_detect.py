"""Face detectors and the detector-based sensitivity check.

The logic (coordinates, NMS, the check, the override) is tested with stand-in detectors; the
real detectors (``privhead[audit]``) are tested on scikit-image's labelled faces / non-faces and
on a dataset whose views.json calls a face view neutral.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
from typer.testing import CliRunner

from privhead._optional import package_file, require
from privhead.cli import app
from privhead.data.cameras import Cameras
from privhead.data.formats import HeadDataset, write_idr
from privhead.errors import PrivheadError
from privhead.privacy.bundle import read_bundle
from privhead.privacy.faces.detect import (
    REASON_FACE,
    REASON_OVERRIDE,
    FaceCheck,
    FaceDetection,
    FaceDetector,
    best_detection,
    non_maximum_suppression,
    parse_detector_names,
    prepare_image,
)
from privhead.privacy.sensitivity import NEUTRAL, SENSITIVE, classify_views

# --------------------------------------------------------------------------------------------
# Logic, no optional packages
# --------------------------------------------------------------------------------------------


def test_prepare_image_maps_coordinates_both_ways():
    image = np.zeros((40, 64, 3), np.float32)
    prepared = prepare_image(image, min_side=160, pad_fraction=0.25)
    assert prepared.scale == pytest.approx(4.0)
    assert prepared.pad == 40  # 0.25 x the upscaled shorter side (160)
    assert prepared.image.shape == (160 + 80, 256 + 80, 3)
    face = FaceDetection((10.0, 5.0, 30.0, 25.0), 0.9, "x", np.array([[12.0, 10.0], [28.0, 10.0]]))
    there = prepared.to_prepared(face)
    assert there.box == pytest.approx((80.0, 60.0, 160.0, 140.0))
    # A pixel centre x maps to (x + 0.5) * 4 - 0.5 + pad.
    assert there.landmarks[0] == pytest.approx([(12.5 * 4 - 0.5) + 40, (10.5 * 4 - 0.5) + 40])
    back = prepared.to_input(there)
    assert back.box == pytest.approx(face.box)
    assert back.landmarks == pytest.approx(face.landmarks)


def test_prepare_image_pads_with_the_border_colour_and_keeps_large_images():
    image = np.zeros((400, 500, 3), np.uint8)
    image[1:-1, 1:-1] = 200  # a black frame around a bright inside
    prepared = prepare_image(image, min_side=320, pad_fraction=0.1)
    assert prepared.scale == 1.0
    assert prepared.pad == 40
    assert prepared.image[0, 0].tolist() == [0, 0, 0]
    assert prepared.image[100, 100].tolist() == [200, 200, 200]


def test_non_maximum_suppression_keeps_the_best_of_overlapping_boxes():
    boxes = np.array(
        [[0, 0, 10, 10], [1, 1, 11, 11], [20, 20, 30, 30], [0, 0, 10, 5]], dtype=np.float64
    )
    scores = np.array([0.8, 0.9, 0.5, 0.7])
    # Box 1 overlaps box 0 with IoU 81/119 = 0.68 (dropped); box 3 overlaps box 1 with IoU
    # 36/114 = 0.32 < 0.4 (kept); box 2 is alone.
    assert non_maximum_suppression(boxes, scores, 0.4) == [1, 3, 2]
    assert non_maximum_suppression(boxes, scores, 0.3) == [1, 2]


def test_detector_names_and_missing_packages_give_install_hints():
    assert parse_detector_names("none") == []
    assert parse_detector_names("YuNet, dlib,yunet") == ["yunet", "dlib"]
    with pytest.raises(PrivheadError, match="Unknown face detector 'haar'"):
        parse_detector_names("yunet,haar")
    with pytest.raises(PrivheadError, match=r"pip install 'privhead\[audit\]'"):
        require("privhead_no_such_module", "A test model")
    with pytest.raises(PrivheadError, match=r"pip install 'privhead\[audit\]'"):
        package_file("privhead_no_such_package", "model.onnx", "A test model")


def test_best_detection_prefers_landmarks():
    a = FaceDetection((0, 0, 1, 1), 2.0, "dlib")
    b = FaceDetection((0, 0, 1, 1), 0.6, "yunet", np.zeros((5, 2)))
    c = FaceDetection((0, 0, 1, 1), 0.8, "yunet", np.zeros((5, 2)))
    assert best_detection([a, b, c]) is c
    assert best_detection([a]) is a
    assert best_detection([]) is None


class BrightSquareDetector(FaceDetector):
    """Stand-in detector: "finds a face" when the image's centre is bright."""

    name = "bright"

    def detect(self, image):
        image = np.asarray(image, dtype=np.float64)
        h, w = image.shape[:2]
        if image[h // 2, w // 2].mean() > 0.5:
            return [FaceDetection((w / 4, h / 4, 3 * w / 4, 3 * h / 4), 0.99, self.name)]
        return []


def test_face_check_only_tightens_and_the_override_is_visible():
    images = np.zeros((4, 8, 8, 3), np.float32)
    images[[1, 2, 3], 4, 4] = 1.0  # views 1, 2, 3 "show a face"
    check = FaceCheck(images, [BrightSquareDetector()], allow_rgb_despite_face=[2])
    # views.json: 0, 1, 2 neutral; 3 sensitive.
    meta = {"neutral_indices": [0, 1, 2], "sensitive_indices": [3]}
    decisions = check.mark_overrides(classify_views(4, views_meta=meta, checks=[check]))
    kinds = [(d.kind, d.reason) for d in decisions]
    assert kinds == [
        (NEUTRAL, "views.json"),
        (SENSITIVE, REASON_FACE),
        (NEUTRAL, REASON_OVERRIDE),
        (SENSITIVE, "views.json"),
    ]
    assert "bright 0.99" in decisions[1].detail
    assert "--allow-rgb-despite-face" in decisions[2].detail
    assert set(check.findings) == {0, 1, 2}  # the sensitive view 3 needs no detection
    with pytest.raises(PrivheadError, match="out of range"):
        FaceCheck(images, [BrightSquareDetector()], allow_rgb_despite_face=[4])


# --------------------------------------------------------------------------------------------
# The real detectors (privhead[audit])
# --------------------------------------------------------------------------------------------


def _real_detectors(names: str):
    pytest.importorskip("cv2")
    pytest.importorskip("dlib")
    from privhead.privacy.faces.detect import installed_detectors, load_detectors

    if not set(names.split(",")) <= set(installed_detectors()):
        pytest.skip(f"detectors {names} not installed")
    return load_detectors(names)


def test_yunet_classifies_lfw_faces_and_non_faces():
    from skimage.data import lfw_subset

    (detector,) = _real_detectors("yunet")
    images = lfw_subset()  # 100 faces, then 100 non-faces (25x25 grey)
    found = np.array([bool(detector.detect(im)) for im in images])
    recall, false_alarms = found[:100].mean(), found[100:].mean()
    assert recall >= 0.9, recall
    assert false_alarms <= 0.05, false_alarms


@pytest.mark.slow  # ~10 s: CenterFace at 480x480 on 100 images
def test_all_installed_detectors_together_rarely_fire_on_lfw_non_faces():
    from skimage.data import lfw_subset

    from privhead.privacy.faces.detect import detect_faces, load_detectors

    pytest.importorskip("cv2")
    detectors = load_detectors("auto")
    if len(detectors) < 2:
        pytest.skip("fewer than two detectors installed")
    non_faces = lfw_subset()[100:]
    fired = np.mean([bool(detect_faces(im, detectors)) for im in non_faces])
    assert fired <= 0.05, fired


def test_detectors_find_the_astronaut_face_where_it_is():
    from skimage.data import astronaut

    for detector in _real_detectors("yunet,dlib"):
        best = max(detector.detect(astronaut()), key=lambda d: d.score)
        x0, y0, x1, y1 = best.box
        # Eileen Collins' face in the 512x512 photo: around x 180-270, y 60-175.
        assert 170 < (x0 + x1) / 2 < 260 and 90 < (y0 + y1) / 2 < 150, best


def test_detect_faces_is_safe_from_many_threads():
    """The server's guard detects in a thread pool; shared native detectors crashed the
    process (segmentation fault) before detect_faces serialised them."""
    import threading

    from skimage.data import astronaut

    from privhead.privacy.faces.detect import detect_faces

    detectors = _real_detectors("yunet,dlib")
    face = astronaut()[40:200, 150:300]
    blank = np.full((90, 150, 3), 128, np.uint8)
    results, errors = [], []

    def detect(k):
        for i in range(12):
            image = face if (i + k) % 2 == 0 else blank
            try:
                results.append((image is face, bool(detect_faces(image, detectors))))
            except Exception as exc:  # noqa: BLE001 - collected and asserted below
                errors.append(exc)

    threads = [threading.Thread(target=detect, args=(k,)) for k in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert len(results) == 72 and all(is_face == found for is_face, found in results)


def _face_dataset(root):
    """Two 96x96 views: 0 the astronaut's face, 1 a face-free gradient; views.json calls both
    neutral (as a wrong pose rule would)."""
    from PIL import Image
    from skimage.data import astronaut

    face = np.asarray(Image.fromarray(astronaut()[30:250, 110:330]).resize((96, 96)))
    ramp = np.linspace(0, 1, 96, dtype=np.float32)
    images = np.stack(
        [face.astype(np.float32) / 255.0, np.stack([np.add.outer(ramp, ramp) / 2] * 3, -1)]
    )
    K = np.array([[120.0, 0, 47.5], [0, 120.0, 47.5], [0, 0, 1]])
    c2w = np.tile(np.eye(4), (2, 1, 1))
    c2w[:, 2, 3] = [-3.0, -3.5]  # cameras on -z looking along +z
    dataset = HeadDataset(
        images=images.astype(np.float32),
        cameras=Cameras(np.stack([K, K]), c2w, 96, 96),
        masks=None,
        scale_mat=np.eye(4),
        names=["000000", "000001"],
        views={"n_views": 2, "neutral_indices": [0, 1], "sensitive_indices": []},
    )
    write_idr(dataset, root)
    (root / "views.json").write_text(json.dumps(dataset.views))
    return root


def test_a_face_marked_neutral_never_leaves_as_rgb(tmp_path):
    _real_detectors("yunet")
    data = _face_dataset(tmp_path / "data")
    runner = CliRunner()

    result = runner.invoke(app, ["protect", str(data), str(tmp_path / "b")])
    assert result.exit_code == 0, result.output
    bundle = read_bundle(tmp_path / "b")
    assert bundle.neutral_indices == [1]
    assert bundle.protected_indices == [0]
    assert bundle.reasons[0] == REASON_FACE
    assert not (tmp_path / "b" / "neutral" / "000000.png").exists()
    assert "face detector: 0" in result.output

    # Only the explicit, named override lets that very view out as RGB ...
    result = runner.invoke(
        app, ["protect", str(data), str(tmp_path / "o"), "--allow-rgb-despite-face", "0"]
    )
    assert result.exit_code == 0, result.output
    assert read_bundle(tmp_path / "o").neutral_indices == [0, 1]
    assert read_bundle(tmp_path / "o").reasons[0] == REASON_OVERRIDE
    assert "view 0 is kept as RGB although a face was found" in result.output

    # ... and without a detector the wrong views.json would have let it out.
    result = runner.invoke(app, ["protect", str(data), str(tmp_path / "n"), "--detector", "none"])
    assert result.exit_code == 0, result.output
    assert read_bundle(tmp_path / "n").neutral_indices == [0, 1]


def test_protect_rejects_an_unknown_detector(tmp_path):
    result = CliRunner().invoke(
        app, ["protect", str(tmp_path), str(tmp_path / "b"), "--detector", "haar"]
    )
    assert result.exit_code == 1
    assert "Unknown face detector 'haar'" in result.output
    assert not (tmp_path / "b").exists()
