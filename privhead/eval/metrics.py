"""Geometry metrics: surface sampling, chamfer / F-score / normal consistency, regions, alignment.

The last step of the flow (mesh -> evaluate). Functions take meshes and arrays. Distances are in
the meshes' world units; millimetres are added wherever ``mm_per_unit`` is known.

Region semantics: a region restricts the *query* points only; their nearest neighbours are
searched on the complete other surface. Accuracy is pred points inside the region -> the full GT
surface; completeness is GT points inside the region -> the full predicted surface. So a cut at
the region border is not mistaken for an error.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import trimesh
from scipy.spatial import cKDTree

from privhead.errors import PrivheadError

DEFAULT_THRESHOLDS = (0.005, 0.01, 0.02)
"""F-score distance thresholds in world units (1, 2 and 4 mm for a head of ~200 mm per unit)."""

ALIGNMENTS = ("none", "icp", "landmarks")
"""Alignment methods: exact cameras, rigid ICP, landmark Procrustes followed by ICP."""


# --------------------------------------------------------------------------------------------
# Meshes and surface samples
# --------------------------------------------------------------------------------------------


def load_mesh(path: str | Path) -> trimesh.Trimesh:
    """Read a triangle mesh (any format trimesh reads), vertices and faces as stored."""
    path = Path(path)
    if not path.is_file():
        raise PrivheadError(f"Mesh file {path} does not exist.")
    try:
        mesh = trimesh.load(path, force="mesh", process=False)
    except Exception as exc:  # trimesh raises many types for malformed files
        raise PrivheadError(f"Cannot read a mesh from {path}: {exc}.") from exc
    if not isinstance(mesh, trimesh.Trimesh) or len(mesh.faces) == 0:
        raise PrivheadError(f"{path} holds no triangles (a point cloud or an empty mesh?).")
    return mesh


def sample_surface(mesh: trimesh.Trimesh, n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Points uniformly distributed on the surface (area-weighted faces, uniform in each face).

    The same mesh, ``n`` and ``seed`` always give the same samples.

    Args:
        mesh: triangle mesh.
        n: number of samples.
        seed: random seed.

    Returns:
        points: [n, 3] float64 surface points (mesh coordinates).
        normals: [n, 3] unit normals of the faces the points lie on.
    """
    if n < 1:
        raise PrivheadError(f"The number of surface samples must be positive, got {n}.")
    triangles = np.asarray(mesh.triangles, dtype=np.float64)
    if len(triangles) == 0:
        raise PrivheadError("The mesh has no faces to sample.")
    cross = np.cross(triangles[:, 1] - triangles[:, 0], triangles[:, 2] - triangles[:, 0])
    double_area = np.linalg.norm(cross, axis=1)
    cumulative = np.cumsum(double_area)
    if not cumulative[-1] > 0:
        raise PrivheadError("The mesh has zero surface area: nothing to sample.")
    rng = np.random.default_rng(seed)
    face = np.searchsorted(cumulative, rng.random(n) * cumulative[-1], side="right")
    face = np.minimum(face, len(triangles) - 1)
    u, v = rng.random(n), rng.random(n)
    flip = u + v > 1.0
    u[flip], v[flip] = 1.0 - u[flip], 1.0 - v[flip]
    a, b, c = triangles[face, 0], triangles[face, 1], triangles[face, 2]
    points = a + u[:, None] * (b - a) + v[:, None] * (c - a)
    normals = cross[face] / np.maximum(double_area[face], 1e-300)[:, None]
    return points, normals


def nearest_neighbors(
    query: np.ndarray, target: np.ndarray, workers: int = 1
) -> tuple[np.ndarray, np.ndarray]:
    """Euclidean nearest neighbour in ``target`` of every ``query`` point.

    Returns:
        distances: [Q] float64; indices: [Q] int64 into ``target``.
    """
    distances, indices = cKDTree(target).query(query, k=1, workers=workers)
    return distances, indices


def _triangle_radii(triangles: np.ndarray) -> np.ndarray:
    """[T] largest centroid-to-corner distance of each of [T, 3, 3] triangles."""
    return np.linalg.norm(triangles - triangles.mean(axis=1, keepdims=True), axis=2).max(axis=1)


def _split_large_triangles(triangles: np.ndarray, factor: float = 2.0) -> np.ndarray:
    """The triangles with every one larger than ``factor`` times the median (centroid-to-corner
    radius) cut into four at its edge midpoints, repeatedly: the same surface in pieces of
    similar size, so that one large triangle does not loosen the search bound of
    :func:`point_mesh_distance` for every point."""
    limit = factor * float(np.median(_triangle_radii(triangles)))
    done, todo = [], triangles
    while len(todo):
        large = _triangle_radii(todo) > limit
        done.append(todo[~large])
        big = todo[large]
        if not len(big) or limit <= 0:
            done.append(big)
            break
        a, b, c = big[:, 0], big[:, 1], big[:, 2]
        ab, bc, ca = (a + b) / 2, (b + c) / 2, (c + a) / 2
        todo = np.concatenate(
            [np.stack(t, axis=1) for t in ((a, ab, ca), (ab, b, bc), (ca, bc, c), (ab, bc, ca))]
        )
    return np.concatenate(done)


_PAIRS_PER_CHUNK = 1 << 18
"""Point-triangle pairs :func:`point_mesh_distance` tests at once (about 100 MB of arrays)."""


def point_mesh_distance(
    points: np.ndarray, mesh: trimesh.Trimesh, workers: int = 1, candidates: int = 8
) -> np.ndarray:
    """Exact distance from every point to the surface of ``mesh`` (its nearest triangle).

    Unlike the distance to the nearest of the other mesh's *samples*, this has no floor from
    the sample spacing: two meshes of one surface score 0 however they are sampled.

    Triangles much larger than the median are first cut into pieces (the same surface).
    Candidate triangles are the ``candidates`` nearest by centroid; a point's answer is exact
    once its distance found is no more than the distance to the farthest candidate centroid
    minus the mesh's largest centroid-to-corner radius (no other triangle can then be nearer);
    points not yet settled are retried with twice the candidates, up to every triangle.

    Returns:
        [N] float64 distances.
    """
    triangles = np.asarray(mesh.triangles, dtype=np.float64)
    if len(triangles) == 0:
        raise PrivheadError("The mesh has no faces to measure distances to.")
    points = np.asarray(points, dtype=np.float64)
    triangles = _split_large_triangles(triangles)
    radius = float(_triangle_radii(triangles).max())
    tree = cKDTree(triangles.mean(axis=1))
    result = np.full(len(points), np.inf)
    todo = np.arange(len(points))
    k = min(candidates, len(triangles))
    while len(todo):
        unsettled = []
        rows = max(1, _PAIRS_PER_CHUNK // k)  # bounds the memory of one pass
        for chunk in np.array_split(todo, -(-len(todo) // rows)):
            centroid_d, faces = tree.query(points[chunk], k=k, workers=workers)
            centroid_d, faces = centroid_d.reshape(len(chunk), k), faces.reshape(len(chunk), k)
            query = np.repeat(points[chunk], k, axis=0)
            nearest = trimesh.triangles.closest_point(triangles[faces.reshape(-1)], query)
            best = np.linalg.norm(query - nearest, axis=1).reshape(len(chunk), k).min(axis=1)
            result[chunk] = best
            unsettled.append(chunk[best > centroid_d[:, -1] - radius])
        if k == len(triangles):
            break
        todo = np.concatenate(unsettled)
        k = min(2 * k, len(triangles))
    return result


# --------------------------------------------------------------------------------------------
# Point-set metrics
# --------------------------------------------------------------------------------------------


@dataclass
class FScore:
    """F-score at one threshold: precision (pred -> GT) and recall (GT -> pred) fractions."""

    threshold: float
    """Distance threshold, world units."""
    precision: float
    """Fraction of predicted query points within ``threshold`` of the GT surface."""
    recall: float
    """Fraction of GT query points within ``threshold`` of the predicted surface."""
    fscore: float
    """Harmonic mean of precision and recall (0 when both are 0)."""


@dataclass
class PointMetrics:
    """Distances between two point sets, in the points' units."""

    accuracy: float
    """Mean distance pred -> GT (nearest neighbour)."""
    completeness: float
    """Mean distance GT -> pred."""
    chamfer: float
    """(accuracy + completeness) / 2."""
    accuracy_sq: float
    """Mean squared distance pred -> GT (units^2)."""
    completeness_sq: float
    """Mean squared distance GT -> pred (units^2)."""
    chamfer_sq: float
    """(accuracy_sq + completeness_sq) / 2 (units^2): the squared chamfer variant."""
    fscores: list[FScore]
    normal_consistency: float | None
    """Mean |cos| between each query normal and its nearest neighbour's normal, averaged over
    both directions; None without normals."""
    normal_error_deg: float | None
    """Mean angle, in degrees, between each query normal and its nearest neighbour's normal
    (``arccos |cos|``: orientation-free), averaged over both directions; None without normals.
    The surface-smoothness measure: bumps and ripples raise it even when distances are small."""
    n_pred: int
    """Predicted query points used (after region cropping and subsampling)."""
    n_gt: int
    """GT query points used."""


def chamfer(
    pred_points: np.ndarray,
    gt_points: np.ndarray,
    pred_normals: np.ndarray | None = None,
    gt_normals: np.ndarray | None = None,
    thresholds=DEFAULT_THRESHOLDS,
    pred_mask: np.ndarray | None = None,
    gt_mask: np.ndarray | None = None,
    max_points: int | None = None,
    seed: int = 0,
    workers: int = 1,
) -> PointMetrics:
    """Chamfer distance, its squared variant, F-scores and normal consistency.

    Masks select the query points (see the module docstring): accuracy uses the predicted points
    where ``pred_mask`` holds, searched among *all* GT points; completeness the GT points where
    ``gt_mask`` holds, searched among all predicted points.

    Args:
        pred_points: [P, 3] predicted surface points.
        gt_points: [G, 3] ground-truth surface points (same frame and units).
        pred_normals: optional [P, 3] unit normals (normal consistency needs both).
        gt_normals: optional [G, 3] unit normals.
        thresholds: F-score thresholds, same units as the points.
        pred_mask: optional [P] bool, predicted points used as queries.
        gt_mask: optional [G] bool, GT points used as queries.
        max_points: bound on each point set (memory and time): larger sets are subsampled
            uniformly at random, the same way for sets of equal size.
        seed: seed of that subsampling.
        workers: cKDTree query threads.

    Returns:
        PointMetrics in the points' units.
    """
    pred = _PointSet(pred_points, pred_normals, pred_mask, "predicted")
    gt = _PointSet(gt_points, gt_normals, gt_mask, "ground-truth")
    if max_points is not None:
        pred, gt = pred.subsample(max_points, seed), gt.subsample(max_points, seed)
    if not pred.mask.any() or not gt.mask.any():
        which = "predicted" if not pred.mask.any() else "ground-truth"
        raise PrivheadError(f"No {which} points to evaluate (the region holds none).")
    d_pred, i_pred = nearest_neighbors(pred.points[pred.mask], gt.points, workers)
    d_gt, i_gt = nearest_neighbors(gt.points[gt.mask], pred.points, workers)
    accuracy, completeness = float(d_pred.mean()), float(d_gt.mean())
    accuracy_sq, completeness_sq = float((d_pred**2).mean()), float((d_gt**2).mean())
    fscores = []
    for threshold in thresholds:
        precision = float((d_pred < threshold).mean())
        recall = float((d_gt < threshold).mean())
        total = precision + recall
        fscore = 2 * precision * recall / total if total > 0 else 0.0
        fscores.append(FScore(float(threshold), precision, recall, fscore))
    consistency = angle = None
    if pred.normals is not None and gt.normals is not None:
        to_gt = np.abs(np.einsum("ij,ij->i", pred.normals[pred.mask], gt.normals[i_pred]))
        to_pred = np.abs(np.einsum("ij,ij->i", gt.normals[gt.mask], pred.normals[i_gt]))
        consistency = float((to_gt.mean() + to_pred.mean()) / 2)
        degrees = [np.degrees(np.arccos(np.clip(c, 0.0, 1.0))).mean() for c in (to_gt, to_pred)]
        angle = float(sum(degrees) / 2)
    return PointMetrics(
        accuracy=accuracy,
        completeness=completeness,
        chamfer=(accuracy + completeness) / 2,
        accuracy_sq=accuracy_sq,
        completeness_sq=completeness_sq,
        chamfer_sq=(accuracy_sq + completeness_sq) / 2,
        fscores=fscores,
        normal_consistency=consistency,
        normal_error_deg=angle,
        n_pred=len(d_pred),
        n_gt=len(d_gt),
    )


class _PointSet:
    """Validated points with optional normals and a query mask."""

    def __init__(self, points, normals, mask, name: str) -> None:
        self.points = np.asarray(points, dtype=np.float64)
        if self.points.ndim != 2 or self.points.shape[1] != 3 or len(self.points) == 0:
            raise PrivheadError(
                f"The {name} points must be a non-empty [N, 3] array, got shape "
                f"{list(self.points.shape)}."
            )
        n = len(self.points)
        self.normals = None if normals is None else np.asarray(normals, dtype=np.float64)
        if self.normals is not None and self.normals.shape != (n, 3):
            raise PrivheadError(f"The {name} normals must have shape [{n}, 3].")
        self.mask = np.ones(n, dtype=bool) if mask is None else np.asarray(mask, dtype=bool)
        if self.mask.shape != (n,):
            raise PrivheadError(f"The {name} mask must have shape [{n}].")

    def subsample(self, max_points: int, seed: int) -> _PointSet:
        if len(self.points) <= max_points:
            return self
        keep = np.sort(np.random.default_rng(seed).permutation(len(self.points))[:max_points])
        out = _PointSet.__new__(_PointSet)
        out.points = self.points[keep]
        out.normals = None if self.normals is None else self.normals[keep]
        out.mask = self.mask[keep]
        return out


# --------------------------------------------------------------------------------------------
# Regions
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class WholeRegion:
    """Every point (the whole head)."""

    def contains(self, points: np.ndarray) -> np.ndarray:
        """[N] bool: always True."""
        return np.ones(len(points), dtype=bool)

    def to_dict(self) -> dict:
        return {"type": "whole"}

    def describe(self) -> str:
        return "whole surface"


@dataclass(frozen=True)
class SphereRegion:
    """Points strictly inside a sphere (the H3DS face crop is one: 95 mm around the nose tip)."""

    center: tuple[float, float, float]
    """Centre, world units."""
    radius: float
    """Radius, world units."""

    def __post_init__(self) -> None:
        center = tuple(float(c) for c in np.asarray(self.center, dtype=np.float64).reshape(-1))
        if len(center) != 3 or not self.radius > 0:
            raise PrivheadError(
                f"A sphere region needs a 3D centre and a positive radius, got {center}, "
                f"{self.radius}."
            )
        object.__setattr__(self, "center", center)
        object.__setattr__(self, "radius", float(self.radius))

    def contains(self, points: np.ndarray) -> np.ndarray:
        """[N] bool: ``|p - center| < radius``."""
        return np.linalg.norm(np.asarray(points) - np.asarray(self.center), axis=1) < self.radius

    def to_dict(self) -> dict:
        return {"type": "sphere", "center": list(self.center), "radius": self.radius}

    def describe(self) -> str:
        c = ", ".join(f"{x:.4g}" for x in self.center)
        return f"sphere centre ({c}) radius {self.radius:.4g}"


@dataclass(frozen=True)
class BoxRegion:
    """Points inside an axis-aligned box (bounds included)."""

    box_min: tuple[float, float, float]
    box_max: tuple[float, float, float]

    def __post_init__(self) -> None:
        lo = np.asarray(self.box_min, dtype=np.float64).reshape(-1)
        hi = np.asarray(self.box_max, dtype=np.float64).reshape(-1)
        if lo.shape != (3,) or hi.shape != (3,) or not (hi > lo).all():
            raise PrivheadError(f"A box region needs 3D bounds with min < max, got {lo}, {hi}.")
        object.__setattr__(self, "box_min", tuple(lo.tolist()))
        object.__setattr__(self, "box_max", tuple(hi.tolist()))

    def contains(self, points: np.ndarray) -> np.ndarray:
        """[N] bool: ``box_min <= p <= box_max`` on every axis."""
        points = np.asarray(points)
        return ((points >= self.box_min) & (points <= self.box_max)).all(axis=1)

    def to_dict(self) -> dict:
        return {"type": "box", "box_min": list(self.box_min), "box_max": list(self.box_max)}

    def describe(self) -> str:
        lo = ", ".join(f"{x:.4g}" for x in self.box_min)
        hi = ", ".join(f"{x:.4g}" for x in self.box_max)
        return f"box ({lo}) - ({hi})"


Region = WholeRegion | SphereRegion | BoxRegion


@dataclass
class FaceRegion:
    """The contents of a ``face_region.json``."""

    sphere: SphereRegion
    """``sphere_center`` / ``sphere_radius``: the H3DS face sphere."""
    box: BoxRegion | None
    """``box_min`` / ``box_max`` when present."""
    landmarks: dict[str, np.ndarray] = field(default_factory=dict)
    """Named [3] world landmarks."""
    mm_per_unit: float | None = None
    """Millimetres per world unit, when known."""


def read_face_region(path: str | Path) -> FaceRegion:
    """Read a ``face_region.json`` (sphere, optional box, landmarks, ``mm_per_unit``)."""
    data = _read_json(path)
    try:
        sphere = SphereRegion(tuple(data["sphere_center"]), float(data["sphere_radius"]))
        box = None
        if "box_min" in data and "box_max" in data:
            box = BoxRegion(tuple(data["box_min"]), tuple(data["box_max"]))
        landmarks = _parse_landmarks(data.get("landmarks", {}), path)
        mm = data.get("mm_per_unit")
    except (KeyError, TypeError, ValueError) as exc:
        raise PrivheadError(f"{path} is not a valid face region file (missing {exc}).") from exc
    return FaceRegion(sphere, box, landmarks, None if mm is None else float(mm))


def read_landmarks(path: str | Path) -> dict[str, np.ndarray]:
    """Read named 3D landmarks: a JSON object ``{name: [x, y, z]}`` or ``{"landmarks": {...}}``."""
    data = _read_json(path)
    return _parse_landmarks(data.get("landmarks", data), path)


def nose_tip_region(
    landmarks: dict[str, np.ndarray], mm_per_unit: float, radius_mm: float = 95.0
) -> SphereRegion:
    """The H3DS face region: points within ``radius_mm`` of the ``nose_tip`` landmark."""
    if "nose_tip" not in landmarks:
        raise PrivheadError("The landmarks have no 'nose_tip': cannot place the face region.")
    if not mm_per_unit > 0:
        raise PrivheadError(f"mm_per_unit must be positive, got {mm_per_unit}.")
    return SphereRegion(tuple(landmarks["nose_tip"]), radius_mm / mm_per_unit)


def _read_json(path: str | Path) -> dict:
    path = Path(path)
    if not path.is_file():
        raise PrivheadError(f"File {path} does not exist.")
    try:
        data = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise PrivheadError(f"{path} is not valid JSON ({exc}).") from exc
    if not isinstance(data, dict):
        raise PrivheadError(f"{path} must hold a JSON object.")
    return data


def _parse_landmarks(data, path) -> dict[str, np.ndarray]:
    landmarks = {}
    for name, value in dict(data).items():
        point = np.asarray(value, dtype=np.float64)
        if point.shape != (3,):
            raise PrivheadError(f"Landmark '{name}' in {path} is not an [x, y, z] point.")
        landmarks[str(name)] = point
    return landmarks


# --------------------------------------------------------------------------------------------
# Alignment
# --------------------------------------------------------------------------------------------


def transform_points(transform: np.ndarray, points: np.ndarray) -> np.ndarray:
    """Apply a [4, 4] transform to [N, 3] points."""
    transform = np.asarray(transform, dtype=np.float64)
    return np.asarray(points, dtype=np.float64) @ transform[:3, :3].T + transform[:3, 3]


def rigid_fit(source: np.ndarray, target: np.ndarray) -> np.ndarray:
    """Least-squares rotation + translation mapping ``source`` onto ``target`` (Kabsch).

    Args:
        source, target: [N, 3] corresponding points, N >= 3 not all collinear.

    Returns:
        [4, 4] rigid transform T minimising ``sum |T source_i - target_i|^2``.
    """
    source = np.asarray(source, dtype=np.float64)
    target = np.asarray(target, dtype=np.float64)
    mu_s, mu_t = source.mean(axis=0), target.mean(axis=0)
    covariance = (target - mu_t).T @ (source - mu_s)
    u, _, vt = np.linalg.svd(covariance)
    # Reflection guard: force det(R) = +1.
    d = np.diag([1.0, 1.0, np.sign(np.linalg.det(u @ vt)) or 1.0])
    rotation = u @ d @ vt
    transform = np.eye(4)
    transform[:3, :3] = rotation
    transform[:3, 3] = mu_t - rotation @ mu_s
    return transform


def similarity_fit(source: np.ndarray, target: np.ndarray) -> np.ndarray:
    """Least-squares similarity (scale, rotation, translation) mapping ``source`` onto
    ``target`` (Umeyama 1991).

    Args:
        source, target: [N, 3] corresponding points, N >= 3 not all collinear.

    Returns:
        [4, 4] transform ``T`` with ``T[:3, :3] = s R``, minimising ``sum |T source_i -
        target_i|^2``.
    """
    source = np.asarray(source, dtype=np.float64)
    target = np.asarray(target, dtype=np.float64)
    if len(source) < 3 or source.shape != target.shape:
        raise ValueError("similarity_fit needs two [N, 3] arrays with N >= 3")
    mu_s, mu_t = source.mean(axis=0), target.mean(axis=0)
    xs, xt = source - mu_s, target - mu_t
    covariance = xt.T @ xs / len(source)
    u, sigma, vt = np.linalg.svd(covariance)
    d = np.diag([1.0, 1.0, np.sign(np.linalg.det(u @ vt)) or 1.0])
    rotation = u @ d @ vt
    variance = (xs**2).sum() / len(source)
    scale = float(np.trace(np.diag(sigma) @ d) / variance)
    transform = np.eye(4)
    transform[:3, :3] = scale * rotation
    transform[:3, 3] = mu_t - scale * rotation @ mu_s
    return transform


def camera_errors(c2w_est: np.ndarray, c2w_true: np.ndarray) -> dict:
    """Camera pose errors after the similarity aligning the estimated centres to the true ones.

    Args:
        c2w_est, c2w_true: [N, 4, 4] camera-to-world matrices of the same views (OpenCV axes).

    Returns:
        dict with ``transform`` (the [4, 4] similarity, estimated world -> true world, as a
        list), ``scale``, ``rotation_deg`` (per view: angle between the aligned and the true
        camera rotation), ``median_rotation_deg``, ``max_rotation_deg``, ``position`` (per view
        distance after alignment, true units) and ``median_position``.
    """
    c2w_est = np.asarray(c2w_est, dtype=np.float64)
    c2w_true = np.asarray(c2w_true, dtype=np.float64)
    transform = similarity_fit(c2w_est[:, :3, 3], c2w_true[:, :3, 3])
    scale = float(np.cbrt(np.linalg.det(transform[:3, :3])))
    rotation = transform[:3, :3] / scale
    angles, positions = [], []
    for est, true in zip(c2w_est, c2w_true, strict=True):
        aligned = rotation @ est[:3, :3]
        cosine = (np.trace(aligned.T @ true[:3, :3]) - 1.0) / 2.0
        angles.append(float(np.degrees(np.arccos(np.clip(cosine, -1.0, 1.0)))))
        centre = transform[:3, :3] @ est[:3, 3] + transform[:3, 3]
        positions.append(float(np.linalg.norm(centre - true[:3, 3])))
    return {
        "transform": transform.tolist(),
        "scale": scale,
        "rotation_deg": angles,
        "median_rotation_deg": float(np.median(angles)),
        "max_rotation_deg": float(np.max(angles)),
        "position": positions,
        "median_position": float(np.median(positions)),
    }


def landmark_alignment(
    pred_landmarks: dict[str, np.ndarray], gt_landmarks: dict[str, np.ndarray]
) -> np.ndarray:
    """Rigid Procrustes fit of the predicted landmarks onto the GT ones (names matched).

    Returns:
        [4, 4] transform, prediction frame -> GT frame.
    """
    names = sorted(set(pred_landmarks) & set(gt_landmarks))
    if len(names) < 3:
        raise PrivheadError(
            f"Landmark alignment needs at least 3 landmarks named in both sets, found {names}."
        )
    source = np.stack([pred_landmarks[n] for n in names])
    target = np.stack([gt_landmarks[n] for n in names])
    if np.linalg.matrix_rank(source - source.mean(axis=0), tol=1e-9) < 2:
        raise PrivheadError("The predicted landmarks are collinear: cannot fit a rotation.")
    return rigid_fit(source, target)


@dataclass
class IcpResult:
    """Outcome of :func:`icp`."""

    transform: np.ndarray
    """[4, 4] rigid transform, source frame -> target frame."""
    rms: float
    """Root-mean-square distance of the kept (trimmed) pairs after alignment."""
    iterations: int
    converged: bool


def icp(
    source: np.ndarray,
    target: np.ndarray,
    init: np.ndarray | None = None,
    max_iterations: int = 100,
    tolerance: float = 1e-9,
    trim: float = 0.9,
    workers: int = 1,
) -> IcpResult:
    """Rigid point-to-point ICP (Besl & McKay 1992), trimmed (Chetverikov et al. 2002).

    Each iteration pairs every transformed source point with its nearest target point, keeps the
    ``trim`` fraction of pairs with the smallest distances (robust to partial overlap, e.g. at a
    region's border) and refits the rigid transform (Kabsch).

    Args:
        source: [S, 3] points to move (prediction).
        target: [T, 3] fixed points (GT).
        init: optional [4, 4] initial transform.
        max_iterations: iteration cap.
        tolerance: stop when the update's largest matrix entry change is below this.
        trim: fraction of pairs kept, in (0, 1].
        workers: cKDTree query threads.

    Returns:
        IcpResult with the source -> target transform.
    """
    if not 0 < trim <= 1:
        raise PrivheadError(f"The ICP trim fraction must be in (0, 1], got {trim}.")
    source = np.asarray(source, dtype=np.float64)
    target = np.asarray(target, dtype=np.float64)
    if len(source) < 3 or len(target) < 3:
        raise PrivheadError("ICP needs at least 3 points on each surface (inside the region).")
    tree = cKDTree(target)
    transform = np.eye(4) if init is None else np.asarray(init, dtype=np.float64).copy()
    n_keep = max(3, int(round(trim * len(source))))
    converged = False
    iterations = 0
    while iterations < max_iterations:
        iterations += 1
        moved = transform_points(transform, source)
        distances, indices = tree.query(moved, k=1, workers=workers)
        if n_keep < len(source):
            keep = np.argpartition(distances, n_keep - 1)[:n_keep]
        else:
            keep = np.arange(len(source))
        update = rigid_fit(moved[keep], target[indices[keep]])
        transform = update @ transform
        if np.abs(update - np.eye(4)).max() < tolerance:
            converged = True
            break
    distances, _ = tree.query(transform_points(transform, source), k=1, workers=workers)
    kept = np.partition(distances, n_keep - 1)[:n_keep]
    return IcpResult(transform, float(np.sqrt((kept**2).mean())), iterations, converged)


# --------------------------------------------------------------------------------------------
# Mesh evaluation
# --------------------------------------------------------------------------------------------


@dataclass
class SurfaceMetrics:
    """Distances from surface samples to the other mesh's triangles (no sampling floor).

    The point-set :class:`PointMetrics` measure sample to nearest *sample*: with 100k samples
    per head the ground truth scored against itself resampled is about 0.5 mm, a floor under
    every reconstruction. These use the same query samples and region, but the exact distance
    to the other surface (:func:`point_mesh_distance`), so a perfect mesh scores 0."""

    accuracy: float
    """Mean distance from predicted samples (in the region) to the GT triangles."""
    completeness: float
    """Mean distance from GT samples (in the region) to the predicted triangles."""
    chamfer: float
    """(accuracy + completeness) / 2."""


@dataclass
class EvaluationResult:
    """A predicted mesh compared with the GT mesh; :meth:`to_dict` adds units to every number."""

    metrics: PointMetrics
    """Distances in world units (the meshes' coordinates)."""
    region: Region
    alignment: str
    """One of :data:`ALIGNMENTS`."""
    transform: np.ndarray
    """[4, 4] rigid transform applied to the prediction (prediction -> GT frame)."""
    mm_per_unit: float | None
    samples: int
    """Surface samples drawn on each mesh (before region cropping)."""
    seed: int
    icp_rms: float | None = None
    """Trimmed RMS residual of ICP, world units (None without ICP)."""
    surface: SurfaceMetrics | None = None
    """Sample-to-triangle distances (``surface_*`` keys of :meth:`to_dict`); None if not
    computed."""

    def to_dict(self) -> dict:
        """JSON-ready dict: lengths as ``<name>`` (world units) and ``<name>_mm``; squared ones
        as ``<name>`` (units^2) and ``<name>_mm2``; the ``_mm`` keys only when ``mm_per_unit``
        is known."""
        m, mm = self.metrics, self.mm_per_unit
        out: dict = {
            "units": "world units of the meshes",
            "mm_per_unit": mm,
            "region": self.region.to_dict(),
            "alignment": self.alignment,
            "transform_pred_to_gt": self.transform.tolist(),
            "samples": self.samples,
            "seed": self.seed,
            "n_pred_points": m.n_pred,
            "n_gt_points": m.n_gt,
        }
        for name in ("accuracy", "completeness", "chamfer"):
            out[name] = getattr(m, name)
            if mm:
                out[f"{name}_mm"] = getattr(m, name) * mm
        for name in ("accuracy_sq", "completeness_sq", "chamfer_sq"):
            out[name] = getattr(m, name)
            if mm:
                out[f"{name}_mm2"] = getattr(m, name) * mm**2
        out["fscore"] = []
        for f in m.fscores:
            entry = {"threshold": f.threshold}
            if mm:
                entry["threshold_mm"] = f.threshold * mm
            entry.update(precision=f.precision, recall=f.recall, fscore=f.fscore)
            out["fscore"].append(entry)
        out["normal_consistency"] = m.normal_consistency
        out["normal_error_deg"] = m.normal_error_deg
        if self.surface is not None:
            for name in ("accuracy", "completeness", "chamfer"):
                value = getattr(self.surface, name)
                out[f"surface_{name}"] = value
                if mm:
                    out[f"surface_{name}_mm"] = value * mm
        if self.icp_rms is not None:
            out["icp_rms"] = self.icp_rms
            if mm:
                out["icp_rms_mm"] = self.icp_rms * mm
        return out

    def format_table(self) -> str:
        """A small human-readable table with units."""
        m, mm = self.metrics, self.mm_per_unit
        lines = [
            f"region: {self.region.describe()} | alignment: {self.alignment} | "
            f"samples: {self.samples} per mesh (seed {self.seed}), "
            f"{m.n_pred} pred / {m.n_gt} GT in region",
            f"{'metric':<38}{'units':>12}" + (f"{'mm':>12}" if mm else ""),
        ]

        def row(label: str, value: float, power: int = 1) -> None:
            text = f"{label:<38}{value:>12.6g}"
            if mm:
                text += f"{value * mm**power:>12.4f}"
            lines.append(text)

        row("accuracy (pred->GT, mean)", m.accuracy)
        row("completeness (GT->pred, mean)", m.completeness)
        row("chamfer (mean of the two)", m.chamfer)
        squared = "units^2, mm^2" if mm else "units^2"
        row(f"accuracy squared [{squared}]", m.accuracy_sq, 2)
        row(f"completeness squared [{squared}]", m.completeness_sq, 2)
        row(f"chamfer squared [{squared}]", m.chamfer_sq, 2)
        if self.surface is not None:
            row("surface accuracy (to GT triangles)", self.surface.accuracy)
            row("surface completeness (to pred tri.)", self.surface.completeness)
            row("surface chamfer (no sampling floor)", self.surface.chamfer)
        if self.icp_rms is not None:
            row("ICP residual (trimmed RMS)", self.icp_rms)
        for f in m.fscores:
            at = f"{f.threshold:g} units" + (f" = {f.threshold * mm:.3g} mm" if mm else "")
            lines.append(
                f"F-score @ {at}: precision {f.precision:.4f}  recall {f.recall:.4f}  "
                f"F {f.fscore:.4f}"
            )
        if m.normal_consistency is not None:
            lines.append(f"normal consistency (mean |cos|): {m.normal_consistency:.4f}")
        if m.normal_error_deg is not None:
            lines.append(f"normal error (mean angle, degrees): {m.normal_error_deg:.2f}")
        return "\n".join(lines)


def evaluate_meshes(
    pred_mesh: trimesh.Trimesh,
    gt_mesh: trimesh.Trimesh,
    *,
    region: Region | None = None,
    align: str = "none",
    samples: int = 200_000,
    seed: int = 0,
    thresholds=DEFAULT_THRESHOLDS,
    mm_per_unit: float | None = None,
    pred_landmarks: dict[str, np.ndarray] | None = None,
    gt_landmarks: dict[str, np.ndarray] | None = None,
    icp_points: int = 50_000,
    workers: int = 1,
    surface: bool = True,
) -> EvaluationResult:
    """Compare a predicted mesh with the GT mesh on ``samples`` surface points of each.

    Both meshes are sampled with the same ``seed``, so identical meshes give exactly 0. The
    region is defined in the GT frame and applied after alignment (see the module docstring for
    its semantics). Sampled point-to-point distances overestimate the surface distance ``d`` by
    about ``s^2 / (2 d)`` for a sample spacing ``s``; use enough samples for the accuracy needed.

    Args:
        pred_mesh: reconstruction, in (or near, with ``align``) the GT frame.
        gt_mesh: ground truth.
        region: where query points are taken (default the whole surface).
        align: "none" (cameras exact), "icp" (rigid ICP on the region) or "landmarks"
            (Procrustes on ``pred_landmarks`` -> ``gt_landmarks``, then ICP).
        samples: surface samples per mesh.
        seed: sampling seed.
        thresholds: F-score thresholds, world units.
        mm_per_unit: millimetres per world unit, for reporting.
        pred_landmarks, gt_landmarks: named [3] points, for ``align="landmarks"``.
        icp_points: most points per surface used by ICP.
        workers: cKDTree query threads.
        surface: also measure the same query samples against the other mesh's triangles
            (:class:`SurfaceMetrics`, no sampling floor; a few seconds for a 512^3 mesh).

    Returns:
        EvaluationResult, distances in world units.
    """
    if align not in ALIGNMENTS:
        raise PrivheadError(f"Unknown alignment '{align}': choose one of {', '.join(ALIGNMENTS)}.")
    if mm_per_unit is not None and not mm_per_unit > 0:
        raise PrivheadError(f"mm_per_unit must be positive, got {mm_per_unit}.")
    region = WholeRegion() if region is None else region
    pred_points, pred_normals = sample_surface(pred_mesh, samples, seed)
    gt_points, gt_normals = sample_surface(gt_mesh, samples, seed)

    transform = np.eye(4)
    icp_rms = None
    if align == "landmarks":
        if not pred_landmarks or not gt_landmarks:
            raise PrivheadError(
                "Landmark alignment needs landmarks for both the prediction and GT."
            )
        transform = landmark_alignment(pred_landmarks, gt_landmarks)
    if align in ("icp", "landmarks"):
        rng = np.random.default_rng(seed)
        source = pred_points[region.contains(transform_points(transform, pred_points))]
        target = gt_points[region.contains(gt_points)]
        source = source[rng.permutation(len(source))[:icp_points]]
        target = target[rng.permutation(len(target))[:icp_points]]
        result = icp(source, target, init=transform, workers=workers)
        transform, icp_rms = result.transform, result.rms
        pred_points = transform_points(transform, pred_points)
        pred_normals = pred_normals @ transform[:3, :3].T

    pred_mask, gt_mask = region.contains(pred_points), region.contains(gt_points)
    metrics = chamfer(
        pred_points,
        gt_points,
        pred_normals,
        gt_normals,
        thresholds=thresholds,
        pred_mask=pred_mask,
        gt_mask=gt_mask,
        workers=workers,
    )
    surface_metrics = None
    if surface:
        accuracy = point_mesh_distance(pred_points[pred_mask], gt_mesh, workers).mean()
        # distances are rigid-invariant: the GT samples go back to the unmoved prediction
        back = transform_points(np.linalg.inv(transform), gt_points[gt_mask])
        completeness = point_mesh_distance(back, pred_mesh, workers).mean()
        surface_metrics = SurfaceMetrics(
            float(accuracy), float(completeness), float((accuracy + completeness) / 2)
        )
    return EvaluationResult(
        metrics=metrics,
        surface=surface_metrics,
        region=region,
        alignment=align,
        transform=transform,
        mm_per_unit=mm_per_unit,
        samples=samples,
        seed=seed,
        icp_rms=icp_rms,
    )


def parse_numbers(text: str, name: str, n: int | None = None) -> tuple[float, ...]:
    """Parse ``"x,y,z"``-style comma-separated numbers (exactly ``n`` when given)."""
    try:
        values = tuple(float(v) for v in text.split(","))
    except ValueError:
        values = ()
    count_ok = len(values) == n if n is not None else len(values) > 0
    if not count_ok or not all(math.isfinite(v) for v in values):
        count = f"{n} " if n is not None else ""
        raise PrivheadError(f"{name} must be {count}comma-separated numbers, got '{text}'.")
    return values


def face_chamfer(mesh_path: str | Path, dataset_root: str | Path, samples: int = 100_000) -> dict:
    """The project's official face metric: Chamfer distance inside the dataset's face region.

    The region is the sphere of ``dataset_root/face_region.json`` (95 mm around the nose tip,
    read by :func:`read_face_region`), against ``dataset_root/gt_mesh.ply``, exact cameras (no
    alignment). The demo, the benchmarks and the docs all use this function.

    Returns:
        :meth:`EvaluationResult.to_dict`: distances in world units and, when the region file
        gives ``mm_per_unit``, in mm.
    """
    dataset_root = Path(dataset_root)
    face = read_face_region(dataset_root / "face_region.json")
    result = evaluate_meshes(
        load_mesh(mesh_path),
        load_mesh(dataset_root / "gt_mesh.ply"),
        region=face.sphere,
        samples=samples,
        mm_per_unit=face.mm_per_unit,
    )
    return result.to_dict()
