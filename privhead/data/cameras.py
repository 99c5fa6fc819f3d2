"""Cameras, rays and scene normalisation: the one camera convention every other module uses.

Convention (everywhere inside privhead):
  * ``K`` is a 3x3 OpenCV intrinsic matrix; the centre of the pixel in row ``r``, column ``c`` is at
    image coordinates ``(u, v) = (c, r)`` (pixel centres at integer coordinates, as OpenCV, IDR,
    VolSDF and NeuS assume; a centred principal point is ``cx = (W - 1) / 2``).
  * ``c2w`` is a 4x4 camera-to-world matrix with OpenCV camera axes: x right, y down, z forward.
  * Rays have unit-length directions, so ray parameters ``t`` are distances.
  * Normalisation: ``scale_mat`` (IDR convention) maps the normalised frame, in which the head lies
    inside the unit sphere, to the dataset's world frame: ``x_world = scale_mat @ x_norm``. It is a
    similarity (uniform scale ``s`` and a translation).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.linalg
import torch

from privhead.errors import PrivheadError


@dataclass
class Cameras:
    """A set of pinhole cameras sharing one image size.

    Attributes:
        K: [N, 3, 3] float64 OpenCV intrinsics (pixel centres at integer coordinates).
        c2w: [N, 4, 4] float64 camera-to-world, OpenCV axes (x right, y down, z forward).
        width: image width in pixels.
        height: image height in pixels.
    """

    K: np.ndarray
    c2w: np.ndarray
    width: int
    height: int

    def __post_init__(self) -> None:
        self.K = np.asarray(self.K, dtype=np.float64).reshape(-1, 3, 3)
        self.c2w = np.asarray(self.c2w, dtype=np.float64).reshape(-1, 4, 4)
        if len(self.K) != len(self.c2w):
            raise PrivheadError(
                f"{len(self.K)} intrinsic matrices but {len(self.c2w)} camera poses."
            )

    def __len__(self) -> int:
        return len(self.c2w)

    @property
    def centers(self) -> np.ndarray:
        """[N, 3] camera centres in world coordinates."""
        return self.c2w[:, :3, 3].copy()

    @property
    def w2c(self) -> np.ndarray:
        """[N, 4, 4] world-to-camera matrices."""
        return np.linalg.inv(self.c2w)

    def subset(self, indices) -> Cameras:
        """Cameras at the given indices (same image size)."""
        idx = np.asarray(indices, dtype=np.int64)
        return Cameras(self.K[idx], self.c2w[idx], self.width, self.height)

    def scaled(self, width: int, height: int) -> Cameras:
        """The same cameras for images resampled to ``width`` x ``height`` (area resampling).

        With pixel centres at integer coordinates, resampling by a factor ``a`` maps a coordinate
        ``u`` to ``(u + 0.5) * a - 0.5``.
        """
        K = scaled_intrinsics(self.K, width / self.width, height / self.height)
        return Cameras(K, self.c2w.copy(), width, height)

    def project(self, points: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Project world points into every camera.

        Args:
            points: [P, 3] world points.

        Returns:
            uv: [N, P, 2] pixel coordinates (integer = pixel centre).
            depth: [N, P] z in camera coordinates (positive in front of the camera).
        """
        pts = np.concatenate([points, np.ones((len(points), 1))], axis=1)
        cam = np.einsum("nij,pj->npi", self.w2c, pts)[..., :3]
        depth = cam[..., 2]
        pix = np.einsum("nij,npj->npi", self.K, cam)
        uv = pix[..., :2] / np.where(np.abs(pix[..., 2:]) < 1e-12, 1e-12, pix[..., 2:])
        return uv, depth


# --------------------------------------------------------------------------------------------
# Conversions between conventions
# --------------------------------------------------------------------------------------------

OPENGL_TO_OPENCV = np.diag([1.0, -1.0, -1.0, 1.0])
"""Flips camera y and z: OpenGL / nerfstudio (x right, y up, z back) <-> OpenCV axes."""


def scaled_intrinsics(K, ax: float, ay: float):
    """[N, 3, 3] intrinsics (NumPy array or torch tensor, not modified) for images resampled by
    (ax, ay), pixel centres at integer coordinates: ``u -> (u + 0.5) * a - 0.5``."""
    K = K.clone() if hasattr(K, "clone") else K.copy()
    K[:, 0, 0] *= ax
    K[:, 0, 1] *= ax
    K[:, 1, 1] *= ay
    K[:, 0, 2] = (K[:, 0, 2] + 0.5) * ax - 0.5
    K[:, 1, 2] = (K[:, 1, 2] + 0.5) * ay - 0.5
    return K


def opengl_to_opencv_c2w(c2w_gl: np.ndarray) -> np.ndarray:
    """Convert OpenGL camera-to-world matrices ([..., 4, 4]) to OpenCV axes (and back)."""
    return np.asarray(c2w_gl, dtype=np.float64) @ OPENGL_TO_OPENCV


def decompose_projection(P: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Split a 3x4 projection matrix ``P = K [R | t]`` into ``K`` and a c2w matrix.

    Args:
        P: [3, 4] (or [4, 4]) projection matrix, OpenCV convention.

    Returns:
        K: [3, 3] intrinsics normalised so that ``K[2, 2] = 1`` with positive focal lengths.
        c2w: [4, 4] camera-to-world, OpenCV axes.
    """
    P = np.asarray(P, dtype=np.float64)[:3, :4]
    K, R = scipy.linalg.rq(P[:, :3])
    # RQ is unique up to signs: make the diagonal of K positive.
    diag_signs = np.sign(np.diag(K))
    diag_signs[diag_signs == 0] = 1.0
    signs = np.diag(diag_signs)
    K = K @ signs
    R = signs @ R
    if np.linalg.det(R) < 0:
        # P was given up to a negative scale factor.
        R = -R
        P = -P
    t = np.linalg.solve(K, P[:, 3])
    K = K / K[2, 2]
    c2w = np.eye(4)
    c2w[:3, :3] = R.T
    c2w[:3, 3] = -R.T @ t
    return K, c2w


def compose_projection(K: np.ndarray, c2w: np.ndarray) -> np.ndarray:
    """The 4x4 IDR ``world_mat`` ``[K @ [R | t]; 0 0 0 1]`` for one camera."""
    w2c = np.linalg.inv(np.asarray(c2w, dtype=np.float64))
    P = np.eye(4)
    P[:3, :4] = np.asarray(K, dtype=np.float64) @ w2c[:3, :4]
    return P


# --------------------------------------------------------------------------------------------
# Poses
# --------------------------------------------------------------------------------------------


def look_at_c2w(center, target=(0.0, 0.0, 0.0), up=(0.0, 1.0, 0.0)) -> np.ndarray:
    """Camera-to-world matrix of a camera at ``center`` looking at ``target`` (OpenCV axes).

    The camera's z axis (forward) points from ``center`` to ``target``, its x axis (right) is
    ``forward x up`` normalised and its y axis (down) is ``forward x right``, so the image's up
    direction (-y) is as close to ``up`` as possible. When ``forward`` is parallel to ``up`` any
    right vector perpendicular to ``forward`` is used.

    Args:
        center: [3] camera centre, world coordinates.
        target: [3] world point on the optical axis.
        up: [3] world direction that should appear upwards in the image (need not be unit).

    Returns:
        [4, 4] float64 camera-to-world: columns right, down, forward (x, y, z), then ``center``.

    Raises:
        PrivheadError: when ``center`` equals ``target``.
    """
    center = np.asarray(center, dtype=np.float64)
    forward = np.asarray(target, dtype=np.float64) - center
    norm = np.linalg.norm(forward)
    if norm == 0:
        raise PrivheadError("The camera sits on its target: cannot define a viewing direction.")
    forward /= norm
    up = np.asarray(up, dtype=np.float64)
    right = np.cross(forward, up)
    if np.linalg.norm(right) < 1e-9:
        # Looking along ``up``: any perpendicular right vector will do.
        right = np.cross(forward, [1.0, 0.0, 0.0] if abs(forward[0]) < 0.9 else [0.0, 0.0, 1.0])
    right /= np.linalg.norm(right)
    down = np.cross(forward, right)
    c2w = np.eye(4)
    c2w[:3, 0], c2w[:3, 1], c2w[:3, 2], c2w[:3, 3] = right, down, forward, center
    return c2w


# --------------------------------------------------------------------------------------------
# Normalisation to the unit sphere
# --------------------------------------------------------------------------------------------


def similarity(center, radius: float) -> np.ndarray:
    """The IDR ``scale_mat`` of the sphere ``(center, radius)``: unit sphere -> that sphere."""
    S = np.eye(4)
    S[:3, :3] *= float(radius)
    S[:3, 3] = np.asarray(center, dtype=np.float64)
    return S


def check_similarity(scale_mat: np.ndarray) -> tuple[np.ndarray, float]:
    """Validate a ``scale_mat`` and return its (centre, scale)."""
    S = np.asarray(scale_mat, dtype=np.float64)
    if S.shape != (4, 4):
        raise PrivheadError(f"scale_mat must be 4x4, got shape {S.shape}.")
    A = S[:3, :3]
    scale = float(np.cbrt(abs(np.linalg.det(A))))
    if scale <= 0 or not np.allclose(A, scale * np.eye(3), atol=1e-6 * max(scale, 1.0)):
        raise PrivheadError("scale_mat must be a uniform scale plus a translation.")
    return S[:3, 3].copy(), scale


def normalize_cameras(cameras: Cameras, scale_mat: np.ndarray) -> Cameras:
    """Express cameras in the normalised frame (``x_norm = scale_mat^-1 @ x_world``).

    Rotations are unchanged, camera centres move and shrink; the intrinsics do not change.
    """
    center, scale = check_similarity(scale_mat)
    c2w = cameras.c2w.copy()
    c2w[:, :3, 3] = (c2w[:, :3, 3] - center) / scale
    return Cameras(cameras.K.copy(), c2w, cameras.width, cameras.height)


def denormalize_points(points: np.ndarray, scale_mat: np.ndarray) -> np.ndarray:
    """Map [P, 3] points from the normalised frame to the dataset's world frame."""
    center, scale = check_similarity(scale_mat)
    return np.asarray(points, dtype=np.float64) * scale + center


def optical_axes_center(cameras: Cameras) -> np.ndarray:
    """The point closest (least squares) to all cameras' optical axes: [3]."""
    centers = cameras.centers
    axes = cameras.c2w[:, :3, 2]
    axes = axes / np.linalg.norm(axes, axis=1, keepdims=True)
    A = np.zeros((3, 3))
    b = np.zeros(3)
    for c, d in zip(centers, axes):
        M = np.eye(3) - np.outer(d, d)
        A += M
        b += M @ c
    if np.linalg.cond(A) > 1e8:
        raise PrivheadError(
            "Cannot derive the scene centre: the cameras' optical axes are (nearly) parallel; "
            "give --center/--radius explicitly."
        )
    return np.linalg.solve(A, b)


def estimate_normalization(
    cameras: Cameras,
    masks: np.ndarray | None = None,
    center=None,
    radius: float | None = None,
    margin: float = 1.1,
) -> np.ndarray:
    """Derive a ``scale_mat`` whose unit sphere holds the subject.

    The centre is given, or the point closest to all optical axes. The radius is given, or, with
    masks, the largest sphere radius that the masked pixels need in any view (times ``margin``),
    or, without masks, half the smallest camera distance.

    Args:
        cameras: cameras in world coordinates.
        masks: optional [N, H, W] boolean foreground masks.
        center: optional [3] world centre.
        radius: optional world radius.
        margin: safety factor on a radius derived from masks.

    Returns:
        [4, 4] scale_mat (normalised -> world).
    """
    c = optical_axes_center(cameras) if center is None else np.asarray(center, dtype=np.float64)
    dists = np.linalg.norm(cameras.centers - c, axis=1)
    if radius is None:
        if masks is not None:
            radii = []
            for i in range(len(cameras)):
                rows, cols = np.nonzero(masks[i])
                if len(rows) == 0:
                    continue
                uv = np.stack([cols, rows, np.ones_like(cols)], axis=1).astype(np.float64)
                dirs = (cameras.c2w[i, :3, :3] @ np.linalg.solve(cameras.K[i], uv.T)).T
                dirs /= np.linalg.norm(dirs, axis=1, keepdims=True)
                to_c = c - cameras.centers[i]
                # distance from the centre to each masked pixel's ray
                proj = dirs @ to_c
                perp = np.linalg.norm(to_c[None] - proj[:, None] * dirs, axis=1)
                radii.append(perp.max())
            if not radii:
                raise PrivheadError("Every mask is empty: cannot derive the scene radius.")
            radius = float(max(radii)) * margin
        else:
            radius = float(dists.min()) * 0.5
    S = similarity(c, radius)
    check_cameras_see_region(cameras, S)
    return S


def check_cameras_see_region(cameras: Cameras, scale_mat: np.ndarray) -> None:
    """Raise a clear error unless every camera is outside the unit sphere and sees its centre."""
    center, scale = check_similarity(scale_mat)
    dists = np.linalg.norm(cameras.centers - center, axis=1) / scale
    inside = np.nonzero(dists <= 1.0)[0]
    if len(inside):
        raise PrivheadError(
            f"Camera {int(inside[0])} lies inside the normalised region (distance "
            f"{dists[inside[0]]:.3f} <= 1 radius): the normalisation does not fit these cameras."
        )
    uv, depth = cameras.project(center[None])
    w, h = cameras.width, cameras.height
    for i in range(len(cameras)):
        u, v = uv[i, 0]
        if depth[i, 0] <= 0 or not (-0.5 <= u <= w - 0.5 and -0.5 <= v <= h - 0.5):
            raise PrivheadError(
                f"Camera {i} does not see the centre of the region ({center.round(4).tolist()}): "
                "check the camera poses or give the centre explicitly."
            )


# --------------------------------------------------------------------------------------------
# Rays (torch)
# --------------------------------------------------------------------------------------------


def pixel_rays(
    K: torch.Tensor, c2w: torch.Tensor, rows: torch.Tensor, cols: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Rays through the centres of the given pixels.

    Args:
        K: [B, 3, 3] or [3, 3] intrinsics (per ray when batched).
        c2w: [B, 4, 4] or [4, 4] camera-to-world (per ray when batched).
        rows: [B] pixel rows (may be fractional: integer = pixel centre).
        cols: [B] pixel columns.

    Returns:
        origins: [B, 3] world ray origins (camera centres).
        directions: [B, 3] unit world directions.
    """
    rows = rows.to(K.dtype)
    cols = cols.to(K.dtype)
    if K.dim() == 2:
        K = K.expand(rows.shape[0], 3, 3)
        c2w = c2w.expand(rows.shape[0], 4, 4)
    fx, fy = K[:, 0, 0], K[:, 1, 1]
    cx, cy, skew = K[:, 0, 2], K[:, 1, 2], K[:, 0, 1]
    y = (rows - cy) / fy
    x = (cols - cx - skew * y) / fx
    d_cam = torch.stack([x, y, torch.ones_like(x)], dim=-1)
    directions = torch.einsum("bij,bj->bi", c2w[:, :3, :3], d_cam)
    directions = directions / directions.norm(dim=-1, keepdim=True)
    origins = c2w[:, :3, 3].clone()
    return origins, directions


def image_rays(
    K: torch.Tensor, c2w: torch.Tensor, height: int, width: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Rays through every pixel centre of one image, row-major.

    Returns:
        origins, directions: [H * W, 3] each.
    """
    return patch_rays(K, c2w, 0, 0, height, width)


def patch_rays(
    K: torch.Tensor, c2w: torch.Tensor, top: int, left: int, size_h: int, size_w: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Rays through the pixel centres of an image patch, row-major.

    Args:
        K: [3, 3] intrinsics; c2w: [4, 4] camera-to-world.
        top, left: first row / column of the patch (may lie outside the image: the rays are
            still well defined, which lets a patch carry the operator's margin at the border).
        size_h, size_w: patch size in pixels.

    Returns:
        origins, directions: [size_h * size_w, 3] each.
    """
    rr = torch.arange(top, top + size_h, device=K.device, dtype=K.dtype)
    cc = torch.arange(left, left + size_w, device=K.device, dtype=K.dtype)
    rows, cols = torch.meshgrid(rr, cc, indexing="ij")
    return pixel_rays(K, c2w, rows.reshape(-1), cols.reshape(-1))


def ray_sphere_intersect(
    origins: torch.Tensor, directions: torch.Tensor, radius: float = 1.0
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Intersect unit-direction rays with the origin-centred sphere of ``radius``.

    Returns:
        near, far: [B] entry / exit distances (clamped to >= 0).
        hit: [B] bool, whether the ray meets the sphere.
    """
    b = (origins * directions).sum(-1)
    c = (origins * origins).sum(-1) - radius**2
    disc = b * b - c
    hit = disc > 0
    sq = torch.sqrt(disc.clamp_min(0))
    near = (-b - sq).clamp_min(0)
    far = (-b + sq).clamp_min(0)
    return near, far, hit
