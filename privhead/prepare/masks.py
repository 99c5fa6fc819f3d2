"""Head masks on the device: the head separated from the room, from multi-view evidence.

Two sources of evidence, both turned into per-view masks by OpenCV's GrabCut (a colour model of
foreground and background refined by graph cuts):

  * walk-around captures (the room moves between views): after structure from motion, 3D points
    near the head centre are the head, the others are the room. Their projections seed GrabCut
    (sure foreground / sure background), the projected head sphere bounds it.
  * static-camera captures (turntable, the head turns in front of a fixed background): before
    structure from motion, the colour most views agree on at each pixel is the background plate,
    and what differs from it in a view is the head; the masks then keep SfM off the background
    (only masked features register).

After structure from motion both kinds are cut to their visual hull (:func:`hull_consistent_masks`):
a patch of room that a mask takes in and the other views' masks do not explain is dropped.
"""

from __future__ import annotations

import numpy as np

from privhead.errors import PrivheadError

STATIC_STD = 6.0
"""Temporal standard deviation (0-255 grey levels) under which a pixel counts as static."""
STATIC_BORDER_FRACTION = 0.6
"""A capture is static-camera when at least this fraction of the image border is static."""
PLATE_TOLERANCE = 8.0
"""Per-channel difference (0-255) within which two views of a static camera show the same colour."""
PLATE_MIN_VIEWS = 3
"""A pixel is background in some view only if at least this many views agree on its colour."""
HULL_RESOLUTION = 128
"""Grid points per axis over the normalisation sphere's cube for :func:`hull_consistent_masks`
(about 3 mm apart on a head)."""
HULL_TOLERANCE = 0.2
"""A grid point stays in the visual hull when at most this fraction of the views put it
outside their mask: a few bad masks do not carve the head away. (0.1 before: on 3 of 7
prepare runs of one walk-around, 4-5 views' masks lacked the top of the hair and the cut took
it from every view, IoU 0.96-0.97 -> 0.90-0.93; with 0.2 no run lost more than 0.001 and the
turntables' masks were as good as with 0.1.)"""


def _cv2():
    from privhead._optional import require_opencv

    return require_opencv()


def temporal_std(images: np.ndarray) -> np.ndarray:
    """[H, W] standard deviation over the views of each pixel's grey level (0-255)."""
    grey = images.astype(np.float32).mean(axis=3)
    return grey.std(axis=0)


def is_static_camera(images: np.ndarray) -> bool:
    """True when the image border (where the background is) hardly changes across the views."""
    std = temporal_std(images)
    border = np.concatenate(
        [std[:4].ravel(), std[-4:].ravel(), std[:, :4].ravel(), std[:, -4:].ravel()]
    )
    return float(np.mean(border < STATIC_STD)) >= STATIC_BORDER_FRACTION


def largest_component(mask: np.ndarray) -> np.ndarray:
    """The largest 8-connected component of a boolean mask, holes filled."""
    cv2 = _cv2()
    count, labels, stats, _ = cv2.connectedComponentsWithStats(mask.astype(np.uint8), 8)
    if count <= 1:
        return np.zeros_like(mask, dtype=bool)
    keep = 1 + int(np.argmax(stats[1:, cv2.CC_STAT_AREA]))
    component = labels == keep
    # Fill holes: background components not touching the border join the mask.
    inverse = (~component).astype(np.uint8)
    count, labels = cv2.connectedComponents(inverse, connectivity=4)
    border = set(np.unique(np.concatenate([labels[0], labels[-1], labels[:, 0], labels[:, -1]])))
    holes = ~np.isin(labels, list(border)) & (inverse > 0)
    return component | holes


def grabcut(image: np.ndarray, seeds: np.ndarray, iterations: int = 5) -> np.ndarray:
    """GrabCut of an [H, W, 3] uint8 RGB image from a seed map of cv2.GC_* labels: boolean mask."""
    cv2 = _cv2()
    labels = seeds.astype(np.uint8).copy()
    if not np.any((labels == cv2.GC_FGD) | (labels == cv2.GC_PR_FGD)):
        return np.zeros(labels.shape, dtype=bool)
    if not np.any((labels == cv2.GC_BGD) | (labels == cv2.GC_PR_BGD)):
        return np.ones(labels.shape, dtype=bool)
    bgd, fgd = np.zeros((1, 65)), np.zeros((1, 65))
    bgr = np.ascontiguousarray(image[..., ::-1])
    cv2.grabCut(bgr, labels, None, bgd, fgd, iterations, cv2.GC_INIT_WITH_MASK)
    return (labels == cv2.GC_FGD) | (labels == cv2.GC_PR_FGD)


def _disk_mark(labels: np.ndarray, uv: np.ndarray, radius: int, value: int) -> None:
    cv2 = _cv2()
    height, width = labels.shape
    for u, v in np.round(uv).astype(int):
        if 0 <= u < width and 0 <= v < height:
            cv2.circle(labels, (int(u), int(v)), radius, int(value), -1)


def masks_from_points(
    images: np.ndarray,
    cameras,
    points: np.ndarray,
    center: np.ndarray,
    head_radius: float,
    room_radius: float,
    visible: list[np.ndarray] | None = None,
) -> np.ndarray:
    """Head masks of a walk-around capture from its sparse 3D points.

    The room's points (farther than ``room_radius`` from the head centre) are sure background
    where they project; the head's own points (closer than ``head_radius``) sure foreground. A
    smooth head may have few points of its own, so the head's image is also bounded from the
    room's side: around the projected centre, the disk reaching to the nearest projected room
    points is probable foreground, the rest of the sphere of ``room_radius`` probable
    background, everything else sure background. GrabCut then separates them by colour.

    Args:
        images: [N, H, W, 3] uint8.
        cameras: their :class:`~privhead.data.cameras.Cameras`.
        points: [P, 3] triangulated points.
        center: [3] head centre.
        head_radius, room_radius: world radii (see above).
        visible: per view, indices of the points that view observed (default: all points).

    Returns:
        [N, H, W] bool masks.
    """
    cv2 = _cv2()
    n, height, width = images.shape[:3]
    distance = np.linalg.norm(points - center, axis=1)
    head, room = distance < head_radius, distance > room_radius
    mark = max(2, round(0.006 * max(height, width)))
    masks = np.zeros((n, height, width), dtype=bool)
    for i in range(n):
        chosen = np.arange(len(points)) if visible is None else visible[i]
        uv, depth = cameras.subset([i]).project(np.concatenate([points[chosen], center[None]]))
        uv, depth = uv[0], depth[0]
        c_uv, uv, depth = uv[-1], uv[:-1], depth[:-1]
        front = depth > 0
        head_uv = uv[front & head[chosen]]
        room_uv = uv[front & room[chosen]]
        labels = np.full((height, width), cv2.GC_BGD, dtype=np.uint8)
        labels[_sphere_disk(cameras, i, center, room_radius)] = cv2.GC_PR_BGD
        if len(room_uv):
            gaps = np.sort(np.linalg.norm(room_uv - c_uv, axis=1))
            reach = 0.9 * gaps[min(2, len(gaps) - 1)]
            cv2.circle(
                labels, (int(round(c_uv[0])), int(round(c_uv[1]))), int(reach), cv2.GC_PR_FGD, -1
            )
        if len(head_uv) >= 3:
            hull = cv2.convexHull(np.round(head_uv).astype(np.int32))
            cv2.fillConvexPoly(labels, hull, int(cv2.GC_PR_FGD))
        _disk_mark(labels, room_uv, mark, cv2.GC_BGD)
        _disk_mark(labels, head_uv, mark, cv2.GC_FGD)
        masks[i] = largest_component(grabcut(images[i], labels))
    return masks


def _sphere_disk(cameras, index: int, center: np.ndarray, radius: float) -> np.ndarray:
    """Pixels whose rays pass within ``radius`` of ``center`` in view ``index``."""
    K, c2w = cameras.K[index], cameras.c2w[index]
    height, width = cameras.height, cameras.width
    cols, rows = np.meshgrid(np.arange(width), np.arange(height))
    pixels = np.stack([cols, rows, np.ones_like(cols)], axis=-1).reshape(-1, 3).astype(np.float64)
    dirs = pixels @ np.linalg.inv(K).T @ c2w[:3, :3].T
    dirs /= np.linalg.norm(dirs, axis=1, keepdims=True)
    to_center = center - c2w[:3, 3]
    along = dirs @ to_center
    distance = np.linalg.norm(to_center[None] - along[:, None] * dirs, axis=1)
    return ((distance < radius) & (along > 0)).reshape(height, width)


def background_plate(
    images: np.ndarray, tolerance: float = PLATE_TOLERANCE, rows_per_chunk: int = 64
) -> tuple[np.ndarray, np.ndarray]:
    """The background of a static-camera capture, pixel by pixel: the colour most views agree on.

    A background pixel has one colour in every view that sees it (up to noise); the head turning
    in front of it shows other colours each time. The median of the views, used before, is the
    head's colour wherever the head covers the pixel in most views (just outside a narrow
    frontal silhouette, when the head is wider in profile), so a frontal view's background there
    looked like head. Here each view's colour is a candidate and the one most views match
    (every channel within ``tolerance`` grey levels) wins; the plate is the mean of the views
    that match it.

    Args:
        images: [V, H, W, 3] uint8 views.
        tolerance: largest per-channel difference of two views that show the same thing.
        rows_per_chunk: image rows compared at once (bounds the memory to
            V^2 x rows x W booleans).

    Returns:
        (plate [H, W, 3] float32, agreement [H, W] int: how many views show the plate colour).
    """
    x = images.astype(np.int16)
    height = x.shape[1]
    plate = np.zeros(x.shape[1:], dtype=np.float32)
    agreement = np.zeros(x.shape[1:3], dtype=np.int64)
    for top in range(0, height, rows_per_chunk):
        block = x[:, top : top + rows_per_chunk]
        best = np.zeros(block.shape[1:3], dtype=np.int64)
        winner = np.zeros(block.shape[1:3], dtype=np.int64)
        for k, candidate in enumerate(block):
            count = (np.abs(block - candidate[None]).max(axis=3) <= tolerance).sum(axis=0)
            better = count > best
            best[better] = count[better]
            winner[better] = k
        # The mean of the views that match each pixel's winning candidate.
        chosen = np.take_along_axis(block, winner[None, ..., None], axis=0)
        match = np.abs(block - chosen).max(axis=3) <= tolerance  # [V, h, W]
        colour = (block * match[..., None]).sum(axis=0) / np.maximum(best, 1)[..., None]
        plate[top : top + rows_per_chunk] = colour
        agreement[top : top + rows_per_chunk] = best
    return plate, agreement


def second_agreement(
    images: np.ndarray,
    plate: np.ndarray,
    tolerance: float = PLATE_TOLERANCE,
    rows_per_chunk: int = 64,
) -> np.ndarray:
    """[H, W] int: how many of the views that do not show the plate's colour agree on another one.

    Where the turning head covers a pixel now and then, the views that do not show the plate
    show the head, whose look changes as it turns: some of them agree (smooth skin; 3-6 views
    of the 30 on a synthetic turntable), not all. Where a part of the head of one colour
    (uniform hair) covers a pixel in most views, the plate is that colour and the other views
    show the room, which never changes: they all agree.
    """
    x = images.astype(np.int16)
    out = np.zeros(x.shape[1:3], dtype=np.int64)
    for top in range(0, x.shape[1], rows_per_chunk):
        block = x[:, top : top + rows_per_chunk]
        off_plate = np.abs(block - plate[None, top : top + rows_per_chunk]).max(axis=3) > tolerance
        best = np.zeros(block.shape[1:3], dtype=np.int64)
        for k, candidate in enumerate(block):
            same = (np.abs(block - candidate[None]).max(axis=3) <= tolerance) & off_plate
            count = np.where(off_plate[k], same.sum(axis=0), 0)
            np.maximum(best, count, out=best)
        out[top : top + rows_per_chunk] = best
    return out


def static_background_masks(images: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Head masks of a static-camera capture, and where SfM may take features in them.

    1. The background plate (:func:`background_plate`); a pixel whose plate colour fewer than
       :data:`PLATE_MIN_VIEWS` views show is covered by the turning head in every view.
    2. Which of the plate is head: a region the head covers in every view with one colour (the
       top of uniform hair, on the turning axis) looks static like the room. GrabCut on the
       plate image separates it by colour and edges, seeded with the image frame (room), the
       never-agreeing pixels (head) and the moving pixels (probably head) except room that the
       head covers now and then (:func:`second_agreement`; on three synthetic turntable shoots
       labelling that band head put 3-8 % of the head's area of room into the masks, and once
       lost the whole hair cap: masks before SfM at IoU 0.92 / 0.15 / 0.93, now 0.96 / 0.97 /
       0.98).
    3. Per view, GrabCut seeded by the difference to the plate (far: head; near and not head in
       the plate: room) and the plate's head; the largest component, holes filled.

    SfM takes no features where a view shows the plate's colour and at least half the views
    show that colour there: that is room, uncovered most of the time. A patch of room that the
    masks take in by mistake (next to hair of a similar colour) has the same features at the
    same pixels in every view and pulls SfM towards a camera that does not move (measured on a
    30-view turntable: the masks as SfM masks gave a median rotation error of 12 deg, these
    0.16; keeping only pixels that differ from the plate lost most of a uniform face and
    registered 3 of 30 views of another head, these 30 at 0.05 deg).

    Returns:
        (masks [V, H, W] bool, SfM feature masks [V, H, W] bool).
    """
    cv2 = _cv2()
    n, height, width = images.shape[:3]
    plate, agreement = background_plate(images)
    seen = agreement >= min(PLATE_MIN_VIEWS, n)
    border = max(2, min(height, width) // 20)
    frame = np.zeros((height, width), dtype=bool)
    frame[:border], frame[-border:], frame[:, :border], frame[:, -border:] = True, True, True, True
    room_colour = agreement >= n / 2  # the plate's colour is shown by at least half the views
    # Room that the turning head covers now and then (the band between its narrowest and widest
    # silhouette): at least half the views show the plate's colour, and the others do not all
    # show one other colour (they show the head, whose look changes as it turns). It moves, but
    # it is not head in the plate. Where the others all agree (within half the tolerance), they
    # show the room, and the plate is a uniform part of the head (hair) covering the pixel in
    # most views.
    others = n - agreement
    sometimes_covered = room_colour & (
        (others < PLATE_MIN_VIEWS) | (second_agreement(images, plate, PLATE_TOLERANCE / 2) < others)
    )
    labels = np.full((height, width), cv2.GC_PR_BGD, dtype=np.uint8)
    labels[(temporal_std(images) > 3 * STATIC_STD) & ~sometimes_covered] = cv2.GC_PR_FGD
    labels[frame & seen] = cv2.GC_BGD
    labels[~seen] = cv2.GC_FGD
    head_in_plate = grabcut(np.clip(np.round(plate), 0, 255).astype(np.uint8), labels)
    masks = np.zeros(images.shape[:3], dtype=bool)
    features = np.zeros(images.shape[:3], dtype=bool)
    for i, image in enumerate(images):
        difference = np.abs(image.astype(np.float32) - plate).max(axis=2)
        near = difference < 12
        features[i] = ~(near & room_colour)
        labels = np.full((height, width), cv2.GC_PR_BGD, dtype=np.uint8)
        labels[near & ~head_in_plate] = cv2.GC_BGD
        labels[(difference > 20) | head_in_plate] = cv2.GC_PR_FGD
        labels[(difference > 40) | (head_in_plate & ~seen)] = cv2.GC_FGD
        masks[i] = largest_component(grabcut(image, labels))
    if not masks.any():
        raise PrivheadError(
            "The camera is static but nothing moves in front of it: no head to mask."
        )
    return masks, masks & features


def mask_iou(a: np.ndarray, b: np.ndarray) -> float:
    """Intersection over union of two boolean masks (or stacks of them)."""
    union = np.logical_or(a, b).sum()
    return float(np.logical_and(a, b).sum() / union) if union else 1.0


def visual_hull(
    cameras,
    masks: np.ndarray,
    scale_mat: np.ndarray,
    resolution: int = HULL_RESOLUTION,
    tolerance: float = HULL_TOLERANCE,
) -> tuple[np.ndarray, float]:
    """The masks' visual hull, sampled on a grid over the normalisation sphere.

    Args:
        cameras: the N views' cameras (world frame).
        masks: [N, H, W] bool head masks at the cameras' size.
        scale_mat: IDR ``scale_mat`` (normalised frame -> world) whose unit sphere holds the head.
        resolution: grid points per axis over the sphere's cube.
        tolerance: fraction of the views that may put a hull point outside their mask.

    Returns:
        ([P, 3] world points of the hull, the grid spacing in world units).
    """
    from privhead.data.cameras import check_similarity

    center, scale = check_similarity(scale_mat)
    axis = np.linspace(-1.0, 1.0, resolution)
    grid = np.stack(np.meshgrid(axis, axis, axis, indexing="ij"), axis=-1).reshape(-1, 3)
    grid = grid[np.linalg.norm(grid, axis=1) <= 1.0] * scale + center
    outside = np.zeros(len(grid), dtype=np.int32)
    for i in range(len(cameras)):
        rows, cols, seen, _ = _pixels(cameras, i, grid)
        miss = np.zeros(len(grid), dtype=bool)
        miss[seen] = ~masks[i][rows[seen], cols[seen]]
        outside += miss
    inside = outside <= tolerance * len(cameras)
    return grid[inside], 2.0 * scale / (resolution - 1)


def _pixels(cameras, index: int, points: np.ndarray):
    """(rows, cols, in-view flags, depths) of ``points`` projected into view ``index``."""
    uv, depth = cameras.subset([index]).project(points)
    cols = np.round(uv[0, :, 0]).astype(np.int64)
    rows = np.round(uv[0, :, 1]).astype(np.int64)
    seen = (cols >= 0) & (cols < cameras.width) & (rows >= 0) & (rows < cameras.height)
    return rows, cols, seen & (depth[0] > 0), depth[0]


def hull_consistent_masks(
    cameras,
    masks: np.ndarray,
    scale_mat: np.ndarray,
    resolution: int = HULL_RESOLUTION,
    tolerance: float = HULL_TOLERANCE,
) -> np.ndarray:
    """Each mask cut to the projection of the masks' visual hull (multi-view consistency).

    A pixel stays head only if its ray meets a point that (nearly) every view calls head. A
    patch of room that one mask (or a few) takes in is explained by no such point and is
    dropped; the head itself lies inside the hull and keeps its pixels. Room that a static
    camera's masks take in at the same pixels in every view is dropped only where its rays
    miss the cylinder the turning head sweeps: beside the head they pass through points that
    project onto the head in the other views, and the patch stays. The hull's points are splatted
    with the footprint of one grid step at their nearest depth, so the cut is never finer than
    the grid.

    Args:
        cameras, masks, scale_mat, resolution, tolerance: as :func:`visual_hull`.

    Returns:
        [N, H, W] bool masks, each a subset of its input.
    """
    cv2 = _cv2()
    points, step = visual_hull(cameras, masks, scale_mat, resolution, tolerance)
    if len(points) == 0:
        raise PrivheadError("The masks' visual hull is empty: the masks and cameras disagree.")
    out = np.zeros_like(masks, dtype=bool)
    for i in range(len(cameras)):
        rows, cols, seen, depth = _pixels(cameras, i, points)
        if not seen.any():
            continue
        hit = np.zeros(masks[i].shape, dtype=np.uint8)
        hit[rows[seen], cols[seen]] = 1
        depth = depth[seen]
        focal = float(max(cameras.K[i, 0, 0], cameras.K[i, 1, 1]))
        radius = int(np.ceil(focal * step / max(float(depth.min()), 1e-9))) + 1
        disk = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * radius + 1, 2 * radius + 1))
        out[i] = masks[i] & (cv2.dilate(hit, disk) > 0)
    return out
