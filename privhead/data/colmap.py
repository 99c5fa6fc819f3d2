"""COLMAP sparse models: read and write ``cameras``, ``images`` and ``points3D`` (.txt and .bin).

The format is COLMAP's documented one (https://colmap.github.io/format.html): text files with one
record per line (two per image), or little-endian binary files. This module owns the conversion
to privhead's camera convention (:mod:`privhead.data.cameras`):

  * COLMAP stores world-to-camera poses (quaternion ``qw qx qy qz`` and translation) with OpenCV
    axes, as privhead does; ``c2w`` is their inverse.
  * COLMAP puts the centre of the top-left pixel at (0.5, 0.5); privhead (as OpenCV, IDR) puts it
    at (0, 0): ``cx_privhead = cx_colmap - 0.5`` (same for ``cy``).
  * Distortion (SIMPLE_RADIAL, RADIAL, OPENCV) is returned as OpenCV coefficients
    ``(k1, k2, p1, p2)``; :func:`undistort_image` removes it, keeping the same ``K``.

:func:`read_colmap_dataset` reads a COLMAP project folder (``images/`` + ``sparse/0/`` or
``sparse/``, optional ``masks/``) as a :class:`~privhead.data.formats.HeadDataset`.
"""

from __future__ import annotations

import dataclasses
import struct
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from privhead.errors import PrivheadError

CAMERA_MODELS: dict[str, tuple[int, tuple[str, ...]]] = {
    "SIMPLE_PINHOLE": (0, ("f", "cx", "cy")),
    "PINHOLE": (1, ("fx", "fy", "cx", "cy")),
    "SIMPLE_RADIAL": (2, ("f", "cx", "cy", "k")),
    "RADIAL": (3, ("f", "cx", "cy", "k1", "k2")),
    "OPENCV": (4, ("fx", "fy", "cx", "cy", "k1", "k2", "p1", "p2")),
}
"""The camera models privhead reads: name -> (COLMAP model id, parameter names)."""
_MODEL_BY_ID = {model_id: name for name, (model_id, _) in CAMERA_MODELS.items()}


@dataclass
class ColmapCamera:
    """One COLMAP camera (intrinsics shared by the images that name it)."""

    camera_id: int
    model: str
    width: int
    height: int
    params: np.ndarray

    def __post_init__(self) -> None:
        if self.model not in CAMERA_MODELS:
            raise PrivheadError(
                f"COLMAP camera {self.camera_id} uses the model {self.model}; privhead reads "
                f"{', '.join(CAMERA_MODELS)}."
            )
        self.params = np.asarray(self.params, dtype=np.float64).reshape(-1)
        expected = len(CAMERA_MODELS[self.model][1])
        if len(self.params) != expected:
            raise PrivheadError(
                f"COLMAP camera {self.camera_id} ({self.model}) has {len(self.params)} "
                f"parameters; the model has {expected}."
            )

    def K(self) -> np.ndarray:
        """3x3 intrinsics in privhead's pixel convention (pixel centres at integers)."""
        p = dict(zip(CAMERA_MODELS[self.model][1], self.params, strict=True))
        fx = p.get("fx", p.get("f"))
        fy = p.get("fy", p.get("f"))
        return np.array([[fx, 0.0, p["cx"] - 0.5], [0.0, fy, p["cy"] - 0.5], [0.0, 0.0, 1.0]])

    def distortion(self) -> np.ndarray:
        """OpenCV distortion coefficients (k1, k2, p1, p2); zeros for pinhole models."""
        p = dict(zip(CAMERA_MODELS[self.model][1], self.params, strict=True))
        return np.array(
            [p.get("k1", p.get("k", 0.0)), p.get("k2", 0.0), p.get("p1", 0.0), p.get("p2", 0.0)]
        )

    @classmethod
    def from_K(cls, camera_id: int, K: np.ndarray, width: int, height: int) -> ColmapCamera:
        """A PINHOLE camera from privhead intrinsics."""
        K = np.asarray(K, dtype=np.float64)
        params = [K[0, 0], K[1, 1], K[0, 2] + 0.5, K[1, 2] + 0.5]
        return cls(camera_id, "PINHOLE", int(width), int(height), np.array(params))


@dataclass
class ColmapImage:
    """One registered image: its world-to-camera pose and its 2D points."""

    image_id: int
    qvec: np.ndarray
    tvec: np.ndarray
    camera_id: int
    name: str
    xys: np.ndarray = field(default_factory=lambda: np.zeros((0, 2)))
    point3d_ids: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))

    def c2w(self) -> np.ndarray:
        """4x4 camera-to-world matrix (OpenCV axes)."""
        w2c = np.eye(4)
        w2c[:3, :3] = quaternion_to_matrix(self.qvec)
        w2c[:3, 3] = self.tvec
        return np.linalg.inv(w2c)

    @classmethod
    def from_c2w(cls, image_id: int, c2w: np.ndarray, camera_id: int, name: str) -> ColmapImage:
        w2c = np.linalg.inv(np.asarray(c2w, dtype=np.float64))
        return cls(image_id, matrix_to_quaternion(w2c[:3, :3]), w2c[:3, 3].copy(), camera_id, name)


@dataclass
class ColmapPoint:
    """One triangulated 3D point."""

    point_id: int
    xyz: np.ndarray
    rgb: np.ndarray
    error: float
    image_ids: np.ndarray
    point2d_idxs: np.ndarray


@dataclass
class ColmapModel:
    """A COLMAP sparse model (points may be empty: a model of cameras and poses only)."""

    cameras: dict[int, ColmapCamera]
    images: dict[int, ColmapImage]
    points: dict[int, ColmapPoint] = field(default_factory=dict)

    def point_array(self) -> np.ndarray:
        """[P, 3] world positions of the 3D points."""
        if not self.points:
            return np.zeros((0, 3))
        return np.stack([p.xyz for p in self.points.values()])

    def without_images(self, names) -> ColmapModel:
        """This model less the images named in ``names``: their observations leave the points'
        tracks, points seen by fewer than two remaining images are removed, and the remaining
        images' 2D points lose their link to removed points (``point3d_ids`` -1)."""
        names = set(names)
        gone = np.array([i for i, im in self.images.items() if im.name in names], dtype=np.int64)
        points = {}
        for pid, p in self.points.items():
            keep = ~np.isin(p.image_ids, gone)
            if len(set(p.image_ids[keep].tolist())) >= 2:
                points[pid] = dataclasses.replace(
                    p, image_ids=p.image_ids[keep], point2d_idxs=p.point2d_idxs[keep]
                )
        kept = np.array(list(points), dtype=np.int64)
        images = {}
        for i, im in self.images.items():
            if i in gone:
                continue
            ids = im.point3d_ids.copy()
            ids[(ids >= 0) & ~np.isin(ids, kept)] = -1
            images[i] = dataclasses.replace(im, point3d_ids=ids)
        used = {im.camera_id for im in images.values()}
        cameras = {c: cam for c, cam in self.cameras.items() if c in used}
        return ColmapModel(cameras, images, points)

    def mean_reprojection_error(self) -> float:
        """Mean of the points' reprojection errors (pixels), NaN without points."""
        if not self.points:
            return float("nan")
        return float(np.mean([p.error for p in self.points.values()]))


def quaternion_to_matrix(q) -> np.ndarray:
    """Rotation matrix of a unit quaternion (w, x, y, z), COLMAP's ``qvec2rotmat`` convention."""
    w, x, y, z = np.asarray(q, dtype=np.float64) / np.linalg.norm(q)
    return np.array(
        [
            [1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y)],
            [2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x)],
            [2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y)],
        ]
    )


def matrix_to_quaternion(R) -> np.ndarray:
    """Unit quaternion (w, x, y, z) with w >= 0 of a rotation matrix (Shepperd's method: the
    branch of the largest of w, x, y, z keeps the division well conditioned)."""
    R = np.asarray(R, dtype=np.float64)
    trace = np.trace(R)
    diagonal = np.diag(R)
    k = int(np.argmax(diagonal))
    if trace >= diagonal[k]:
        s = 2.0 * np.sqrt(1.0 + trace)
        q = [s / 4, (R[2, 1] - R[1, 2]) / s, (R[0, 2] - R[2, 0]) / s, (R[1, 0] - R[0, 1]) / s]
    elif k == 0:
        s = 2.0 * np.sqrt(1.0 + R[0, 0] - R[1, 1] - R[2, 2])
        q = [(R[2, 1] - R[1, 2]) / s, s / 4, (R[0, 1] + R[1, 0]) / s, (R[0, 2] + R[2, 0]) / s]
    elif k == 1:
        s = 2.0 * np.sqrt(1.0 + R[1, 1] - R[0, 0] - R[2, 2])
        q = [(R[0, 2] - R[2, 0]) / s, (R[0, 1] + R[1, 0]) / s, s / 4, (R[1, 2] + R[2, 1]) / s]
    else:
        s = 2.0 * np.sqrt(1.0 + R[2, 2] - R[0, 0] - R[1, 1])
        q = [(R[1, 0] - R[0, 1]) / s, (R[0, 2] + R[2, 0]) / s, (R[1, 2] + R[2, 1]) / s, s / 4]
    q = np.array(q) / np.linalg.norm(q)
    return q if q[0] >= 0 else -q


# --------------------------------------------------------------------------------------------
# Text files
# --------------------------------------------------------------------------------------------


def _data_lines(path: Path) -> list[str]:
    return [
        line.strip()
        for line in path.read_text(errors="replace").splitlines()
        if line.strip() and not line.lstrip().startswith("#")
    ]


def _read_cameras_txt(path: Path) -> dict[int, ColmapCamera]:
    cameras = {}
    for number, line in enumerate(_data_lines(path), 1):
        parts = line.split()
        try:
            camera = ColmapCamera(
                int(parts[0]), parts[1], int(parts[2]), int(parts[3]), [float(v) for v in parts[4:]]
            )
        except (IndexError, ValueError) as exc:
            raise PrivheadError(f"{path}: camera record {number} is malformed ({exc}).") from None
        cameras[camera.camera_id] = camera
    return cameras


def _read_images_txt(path: Path) -> dict[int, ColmapImage]:
    # One header line per image then one line of 2D points; the points line may be empty, so
    # blank lines count here (comments do not).
    lines = [
        line.strip()
        for line in path.read_text(errors="replace").splitlines()
        if not line.lstrip().startswith("#")
    ]
    while lines and not lines[-1]:
        lines.pop()
    images = {}
    k = 0
    while k < len(lines):
        if not lines[k]:
            k += 1
            continue
        parts = lines[k].split()
        points = lines[k + 1].split() if k + 1 < len(lines) else []
        try:
            if len(parts) < 10 or len(points) % 3:
                raise ValueError("wrong number of fields")
            xs, ys, ids = (
                np.array([float(v) for v in points[0::3]]),
                np.array([float(v) for v in points[1::3]]),
                np.array([int(v) for v in points[2::3]], dtype=np.int64),
            )
            image = ColmapImage(
                int(parts[0]),
                np.array([float(v) for v in parts[1:5]]),
                np.array([float(v) for v in parts[5:8]]),
                int(parts[8]),
                " ".join(parts[9:]),
                np.stack([xs, ys], axis=1).reshape(-1, 2),
                ids,
            )
        except ValueError as exc:
            raise PrivheadError(
                f"{path}: image record at line {k + 1} is malformed ({exc})."
            ) from None
        images[image.image_id] = image
        k += 2
    return images


def _read_points_txt(path: Path) -> dict[int, ColmapPoint]:
    points = {}
    for number, line in enumerate(_data_lines(path), 1):
        parts = line.split()
        try:
            track = [int(v) for v in parts[8:]]
            if len(parts) < 8 or len(track) % 2:
                raise ValueError("wrong number of fields")
            point = ColmapPoint(
                int(parts[0]),
                np.array([float(v) for v in parts[1:4]]),
                np.array([int(v) for v in parts[4:7]], dtype=np.uint8),
                float(parts[7]),
                np.array(track[0::2], dtype=np.int64),
                np.array(track[1::2], dtype=np.int64),
            )
        except ValueError as exc:
            raise PrivheadError(f"{path}: point record {number} is malformed ({exc}).") from None
        points[point.point_id] = point
    return points


def _write_text(model: ColmapModel, folder: Path) -> None:
    lines = ["# Camera list: CAMERA_ID, MODEL, WIDTH, HEIGHT, PARAMS[]"]
    for cam in model.cameras.values():
        params = " ".join(repr(float(v)) for v in cam.params)
        lines.append(f"{cam.camera_id} {cam.model} {cam.width} {cam.height} {params}")
    (folder / "cameras.txt").write_text("\n".join(lines) + "\n")
    lines = [
        "# Image list with two lines of data per image:",
        "#   IMAGE_ID, QW, QX, QY, QZ, TX, TY, TZ, CAMERA_ID, NAME",
        "#   POINTS2D[] as (X, Y, POINT3D_ID)",
    ]
    for im in model.images.values():
        pose = " ".join(repr(float(v)) for v in (*im.qvec, *im.tvec))
        lines.append(f"{im.image_id} {pose} {im.camera_id} {im.name}")
        lines.append(
            " ".join(
                f"{float(x)!r} {float(y)!r} {int(p)}"
                for (x, y), p in zip(im.xys, im.point3d_ids, strict=True)
            )
        )
    (folder / "images.txt").write_text("\n".join(lines) + "\n")
    lines = [
        "# 3D point list: POINT3D_ID, X, Y, Z, R, G, B, ERROR, TRACK[] as (IMAGE_ID, POINT2D_IDX)"
    ]
    for pt in model.points.values():
        track = " ".join(
            f"{int(i)} {int(j)}" for i, j in zip(pt.image_ids, pt.point2d_idxs, strict=True)
        )
        xyz = " ".join(repr(float(v)) for v in pt.xyz)
        rgb = " ".join(str(int(v)) for v in pt.rgb)
        lines.append(f"{pt.point_id} {xyz} {rgb} {float(pt.error)!r} {track}".rstrip())
    (folder / "points3D.txt").write_text("\n".join(lines) + "\n")


# --------------------------------------------------------------------------------------------
# Binary files
# --------------------------------------------------------------------------------------------


class _Reader:
    def __init__(self, path: Path) -> None:
        self.path = path
        self.data = path.read_bytes()
        self.offset = 0

    def read(self, fmt: str):
        size = struct.calcsize("<" + fmt)
        if self.offset + size > len(self.data):
            raise PrivheadError(
                f"{self.path} is truncated (needs {size} more bytes at {self.offset})."
            )
        values = struct.unpack_from("<" + fmt, self.data, self.offset)
        self.offset += size
        return values

    def read_name(self) -> str:
        end = self.data.find(b"\x00", self.offset)
        if end < 0:
            raise PrivheadError(f"{self.path}: an image name is not terminated.")
        name = self.data[self.offset : end].decode("utf-8", errors="replace")
        self.offset = end + 1
        return name

    def count(self, what: str, item_bytes: int) -> int:
        (n,) = self.read("Q")
        if n * item_bytes > len(self.data) - self.offset:
            raise PrivheadError(f"{self.path} announces {n} {what}, more than the file holds.")
        return n


def _read_cameras_bin(path: Path) -> dict[int, ColmapCamera]:
    reader = _Reader(path)
    cameras = {}
    for _ in range(reader.count("cameras", 24)):
        camera_id, model_id, width, height = reader.read("iiQQ")
        if model_id not in _MODEL_BY_ID:
            raise PrivheadError(
                f"{path}: camera {camera_id} has COLMAP model id {model_id}; privhead reads "
                f"{', '.join(f'{n} ({i})' for n, (i, _) in CAMERA_MODELS.items())}."
            )
        model = _MODEL_BY_ID[model_id]
        params = reader.read("d" * len(CAMERA_MODELS[model][1]))
        cameras[camera_id] = ColmapCamera(camera_id, model, width, height, np.array(params))
    return cameras


def _read_images_bin(path: Path) -> dict[int, ColmapImage]:
    reader = _Reader(path)
    images = {}
    for _ in range(reader.count("images", 64)):
        image_id, *pose, camera_id = reader.read("i7di")
        name = reader.read_name()
        n_points = reader.count("2D points", 24)
        start = reader.offset
        reader.read("ddq" * n_points)
        record = np.dtype([("x", "<f8"), ("y", "<f8"), ("id", "<i8")])
        table = np.frombuffer(reader.data, dtype=record, count=n_points, offset=start)
        xys = np.stack([table["x"], table["y"]], axis=1)
        ids = table["id"].astype(np.int64)
        images[image_id] = ColmapImage(
            image_id, np.array(pose[:4]), np.array(pose[4:]), camera_id, name, xys, ids
        )
    return images


def _read_points_bin(path: Path) -> dict[int, ColmapPoint]:
    reader = _Reader(path)
    points = {}
    for _ in range(reader.count("points", 43)):
        point_id, x, y, z, r, g, b, error = reader.read("Q3d3Bd")
        length = reader.count("track elements", 8)
        track = np.array(reader.read("ii" * length), dtype=np.int64).reshape(-1, 2)
        points[point_id] = ColmapPoint(
            point_id,
            np.array([x, y, z]),
            np.array([r, g, b], dtype=np.uint8),
            error,
            track[:, 0],
            track[:, 1],
        )
    return points


def _write_binary(model: ColmapModel, folder: Path) -> None:
    out = [struct.pack("<Q", len(model.cameras))]
    for cam in model.cameras.values():
        model_id = CAMERA_MODELS[cam.model][0]
        out.append(struct.pack("<iiQQ", cam.camera_id, model_id, cam.width, cam.height))
        out.append(struct.pack("<" + "d" * len(cam.params), *cam.params))
    (folder / "cameras.bin").write_bytes(b"".join(out))
    out = [struct.pack("<Q", len(model.images))]
    for im in model.images.values():
        out.append(struct.pack("<i7di", im.image_id, *im.qvec, *im.tvec, im.camera_id))
        out.append(im.name.encode("utf-8") + b"\x00")
        out.append(struct.pack("<Q", len(im.xys)))
        for (x, y), p in zip(im.xys, im.point3d_ids, strict=True):
            out.append(struct.pack("<ddq", x, y, p))
    (folder / "images.bin").write_bytes(b"".join(out))
    out = [struct.pack("<Q", len(model.points))]
    for pt in model.points.values():
        out.append(
            struct.pack("<Q3d3Bd", pt.point_id, *pt.xyz, *(int(v) for v in pt.rgb), pt.error)
        )
        out.append(struct.pack("<Q", len(pt.image_ids)))
        for i, j in zip(pt.image_ids, pt.point2d_idxs, strict=True):
            out.append(struct.pack("<ii", i, j))
    (folder / "points3D.bin").write_bytes(b"".join(out))


# --------------------------------------------------------------------------------------------
# Models
# --------------------------------------------------------------------------------------------


def find_model_folder(root) -> Path:
    """The folder holding a model: ``root`` itself, ``root/sparse/0``, ``root/sparse``, or
    ``root/0``, whichever first has ``cameras`` and ``images`` files."""
    root = Path(root)
    for folder in (root, root / "sparse" / "0", root / "sparse", root / "0"):
        for ext in (".bin", ".txt"):
            if (folder / f"cameras{ext}").is_file() and (folder / f"images{ext}").is_file():
                return folder
    raise PrivheadError(
        f"No COLMAP model in {root}: expected cameras.bin/.txt and images.bin/.txt there or in "
        "sparse/0/."
    )


def read_model(folder) -> ColmapModel:
    """Read a COLMAP model folder (binary files preferred when both kinds are there).

    ``points3D`` is optional. Every malformed file raises one PrivheadError sentence.
    """
    folder = find_model_folder(folder)
    ext = (
        ".bin"
        if (folder / "cameras.bin").is_file() and (folder / "images.bin").is_file()
        else ".txt"
    )
    try:
        if ext == ".bin":
            cameras = _read_cameras_bin(folder / "cameras.bin")
            images = _read_images_bin(folder / "images.bin")
            points_path = folder / "points3D.bin"
            points = _read_points_bin(points_path) if points_path.is_file() else {}
        else:
            cameras = _read_cameras_txt(folder / "cameras.txt")
            images = _read_images_txt(folder / "images.txt")
            points_path = folder / "points3D.txt"
            points = _read_points_txt(points_path) if points_path.is_file() else {}
    except (struct.error, UnicodeDecodeError) as exc:
        raise PrivheadError(f"The COLMAP model in {folder} is malformed ({exc}).") from None
    missing = sorted({im.camera_id for im in images.values()} - set(cameras))
    if missing:
        raise PrivheadError(
            f"The COLMAP model in {folder} has images of unknown camera(s) {missing}."
        )
    if not images:
        raise PrivheadError(f"The COLMAP model in {folder} has no registered image.")
    return ColmapModel(cameras, images, points)


def write_model(model: ColmapModel, folder, binary: bool = False) -> Path:
    """Write ``model`` as text (default) or binary files into ``folder`` (created)."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    (_write_binary if binary else _write_text)(model, folder)
    return folder


def model_cameras(model: ColmapModel, names: list[str] | None = None):
    """The images' cameras in privhead's convention, in ``names`` order (default: by name).

    Returns:
        (names, K [N, 3, 3], c2w [N, 4, 4], distortion [N, 4], (width, height)); every image
        must share one size.
    """
    by_name = {im.name: im for im in model.images.values()}
    names = sorted(by_name) if names is None else list(names)
    sizes = set()
    Ks, c2ws, dists = [], [], []
    for name in names:
        image = by_name[name]
        camera = model.cameras[image.camera_id]
        sizes.add((camera.width, camera.height))
        Ks.append(camera.K())
        c2ws.append(image.c2w())
        dists.append(camera.distortion())
    if len(sizes) != 1:
        raise PrivheadError(f"The COLMAP images have different sizes {sorted(sizes)}.")
    return names, np.stack(Ks), np.stack(c2ws), np.stack(dists), sizes.pop()


def undistort_image(image: np.ndarray, K: np.ndarray, distortion: np.ndarray) -> np.ndarray:
    """Remove OpenCV distortion ``(k1, k2, p1, p2)`` from an image, keeping the intrinsics ``K``."""
    if not np.any(distortion):
        return image
    from privhead._optional import require_opencv

    cv2 = require_opencv()
    return cv2.undistort(np.ascontiguousarray(image), K, np.asarray(distortion, dtype=np.float64))


def read_colmap_dataset(root):
    """A COLMAP project folder as a HeadDataset: ``images/`` + a model (``sparse/0`` ...).

    Masks are read from ``masks/`` when there (``NAME.png`` or ``NAME`` with the image's own
    suffix replaced by ``.png``; COLMAP's own mask convention ``NAME.png`` included). Images are
    undistorted; ``scale_mat`` is estimated from the cameras (and masks when present).
    """
    from privhead.data.cameras import Cameras, estimate_normalization
    from privhead.data.formats import HeadDataset, read_image, read_mask

    root = Path(root)
    model = read_model(root)
    image_dir = root / "images"
    if not image_dir.is_dir():
        raise PrivheadError(f"{root} has a COLMAP model but no images/ folder.")
    names, K, c2w, dist, (width, height) = model_cameras(model)
    images, masks = [], []
    for name, k, d in zip(names, K, dist, strict=True):
        path = image_dir / name
        if not path.is_file():
            raise PrivheadError(f"The COLMAP model names {name}, which is not in {image_dir}.")
        image = read_image(path)
        if image.shape[:2] != (height, width):
            raise PrivheadError(
                f"{path} is {image.shape[1]}x{image.shape[0]}, the model says {width}x{height}."
            )
        images.append(undistort_image(image, k, d))
        for candidate in (
            root / "masks" / f"{name}.png",
            root / "masks" / (Path(name).stem + ".png"),
        ):
            if candidate.is_file():
                mask = read_mask(candidate)
                masks.append(undistort_image(mask.astype(np.uint8), k, d) > 0)
                break
    if masks and len(masks) != len(images):
        raise PrivheadError(f"{root / 'masks'} has masks for only some of the images.")
    cameras = Cameras(K, c2w, width, height)
    mask_array = np.stack(masks) if masks else None
    return HeadDataset(
        images=np.stack(images).astype(np.float32),
        cameras=cameras,
        masks=mask_array,
        scale_mat=estimate_normalization(cameras, mask_array),
        names=[Path(n).stem for n in names],
        root=root,
    )
