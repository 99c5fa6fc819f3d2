"""Photos and videos in: a folder of photos (EXIF orientation applied) or a video's frames."""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from privhead.errors import PrivheadError

PHOTO_SUFFIXES = (".jpg", ".jpeg", ".png", ".heic", ".heif", ".webp", ".tif", ".tiff")
"""Photo file suffixes (lower case); HEIC/HEIF need the optional ``pillow-heif`` wheel."""
VIDEO_SUFFIXES = (".mp4", ".mov", ".m4v", ".avi", ".mkv", ".webm")
"""Video file suffixes (lower case), decoded with OpenCV."""


@dataclass
class Captures:
    """The input views, before any camera is known.

    Attributes:
        images: [N, H, W, 3] uint8 sRGB, upright, one size.
        names: file stems (photos) or ``frame_000123`` (video frames), in capture order.
        focal_35mm: EXIF 35 mm-equivalent focal length of each photo (None when unknown).
        source: "photos" or "video".
        skipped: (file name, why) of inputs not used.
    """

    images: np.ndarray
    names: list[str]
    focal_35mm: list[float | None]
    source: str
    skipped: list[tuple[str, str]]


def _register_heif() -> bool:
    try:
        from pillow_heif import register_heif_opener
    except ImportError:
        return False
    register_heif_opener()
    return True


def _exif_focal_35mm(image) -> float | None:
    try:
        exif = image.getexif()
        value = exif.get_ifd(0x8769).get(0xA405)
    except Exception:  # noqa: BLE001 - malformed EXIF is simply no prior
        return None
    try:
        value = float(value)
    except (TypeError, ValueError):
        return None
    return value if math.isfinite(value) and value > 0 else None


def _fit(image: np.ndarray, max_side: int) -> np.ndarray:
    from PIL import Image

    height, width = image.shape[:2]
    if max(height, width) <= max_side:
        return image
    factor = max_side / max(height, width)
    size = (max(1, round(width * factor)), max(1, round(height * factor)))
    return np.asarray(Image.fromarray(image).resize(size, Image.Resampling.LANCZOS))


def _common_size(images: list[np.ndarray], names: list[str]) -> np.ndarray:
    sizes = {im.shape[:2] for im in images}
    if len(sizes) > 1:
        counts = {s: sum(im.shape[:2] == s for im in images) for s in sizes}
        main = max(counts, key=counts.get)
        odd = [n for n, im in zip(names, images, strict=True) if im.shape[:2] != main][:3]
        raise PrivheadError(
            f"The photos have {len(sizes)} different sizes (e.g. {', '.join(odd)} differ from "
            f"{main[1]}x{main[0]}); use photos from one camera in one orientation."
        )
    return np.stack(images)


def read_photos(folder: Path, max_side: int) -> Captures:
    """Every photo in ``folder`` (sorted by name), upright (EXIF orientation), at most
    ``max_side`` pixels on the longer side."""
    from PIL import Image, ImageOps, UnidentifiedImageError

    heif = _register_heif()
    files = sorted(p for p in folder.iterdir() if p.is_file() and not p.name.startswith("."))
    images, names, focals, skipped = [], [], [], []
    for path in files:
        suffix = path.suffix.lower()
        if suffix not in PHOTO_SUFFIXES:
            skipped.append((path.name, "not a photo"))
            continue
        if suffix in (".heic", ".heif") and not heif:
            skipped.append((path.name, "HEIC needs `pip install pillow-heif`"))
            continue
        try:
            with Image.open(path) as pil:
                focal = _exif_focal_35mm(pil)
                pil = ImageOps.exif_transpose(pil).convert("RGB")
                image = np.asarray(pil)
        except (UnidentifiedImageError, OSError, ValueError) as exc:
            skipped.append((path.name, f"unreadable ({exc.__class__.__name__})"))
            continue
        images.append(_fit(image, max_side))
        names.append(path.stem)
        focals.append(focal)
    if not images:
        raise PrivheadError(
            f"{folder} holds no readable photo ({', '.join(PHOTO_SUFFIXES)}); "
            + (f"skipped: {skipped[0][0]} ({skipped[0][1]})." if skipped else "it is empty.")
        )
    if len(set(names)) != len(names):
        raise PrivheadError(f"{folder} has photos with the same name and different suffixes.")
    return Captures(_common_size(images, names), names, focals, "photos", skipped)


def sharpness(image: np.ndarray) -> float:
    """Variance of the Laplacian of the grey image: higher = sharper."""
    grey = image.astype(np.float32).mean(axis=2)
    lap = (
        -4.0 * grey[1:-1, 1:-1]
        + grey[:-2, 1:-1]
        + grey[2:, 1:-1]
        + grey[1:-1, :-2]
        + grey[1:-1, 2:]
    )
    return float(lap.var())


def read_video(path: Path, n_frames: int, max_side: int) -> Captures:
    """The sharpest frame of each of ``n_frames`` equal windows of the video."""
    from privhead._optional import require_opencv

    cv2 = require_opencv()
    capture = cv2.VideoCapture(str(path))
    if not capture.isOpened():
        raise PrivheadError(f"{path} cannot be opened as a video.")
    frames: list[tuple[int, float, np.ndarray]] = []
    index = 0
    total = int(capture.get(cv2.CAP_PROP_FRAME_COUNT) or 0)
    window = max(1, total // n_frames) if total > 0 else 1
    best: tuple[int, float, np.ndarray] | None = None
    while True:
        ok, frame = capture.read()
        if not ok:
            break
        rgb = _fit(cv2.cvtColor(frame, cv2.COLOR_BGR2RGB), max_side)
        score = sharpness(rgb)
        if best is None or score > best[1]:
            best = (index, score, rgb)
        index += 1
        if index % window == 0:
            frames.append(best)
            best = None
    if best is not None and len(frames) < n_frames:
        frames.append(best)
    capture.release()
    if index == 0:
        raise PrivheadError(f"{path} has no decodable frame (unreadable or not a video).")
    if total <= 0 and len(frames) > n_frames:  # frame count unknown up front: thin evenly
        keep = np.linspace(0, len(frames) - 1, n_frames).round().astype(int)
        frames = [frames[k] for k in sorted(set(keep))]
    frames = frames[:n_frames]
    return Captures(
        np.stack([f[2] for f in frames]),
        [f"frame_{f[0]:06d}" for f in frames],
        [None] * len(frames),
        "video",
        [],
    )


def read_captures(source, n_frames: int = 40, max_side: int = 1024) -> Captures:
    """Photos of a folder or frames of a video file (by suffix)."""
    source = Path(source)
    if source.is_dir():
        return read_photos(source, max_side)
    if not source.exists():
        raise PrivheadError(f"{source} does not exist.")
    if source.suffix.lower() in VIDEO_SUFFIXES:
        if n_frames < 3:
            raise PrivheadError(f"--frames must be at least 3, got {n_frames}.")
        return read_video(source, n_frames, max_side)
    raise PrivheadError(
        f"{source} is neither a folder of photos nor a video ({', '.join(VIDEO_SUFFIXES)})."
    )
