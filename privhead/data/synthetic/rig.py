"""Camera rig of the synthetic head: FaceScape-like rings of cameras looking at the origin.

Fifth stage (shape -> albedo -> grid -> tracer -> rig -> writer).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from privhead.data.cameras import Cameras, look_at_c2w
from privhead.data.synthetic.shape import UP


@dataclass(frozen=True)
class RigConfig:
    """The camera rig of the shared heads (FaceScape-like rings looking at the origin)."""

    elevations_deg: tuple[float, ...] = (-15.0, 10.0, 35.0)
    """Ring elevations, degrees (negative = camera below the head centre)."""
    ring_azimuth_offsets_deg: tuple[float, ...] | None = None
    """Azimuth of each ring's first camera; default: half a step on the middle ring (0/18/0 deg
    for 10 views per ring)."""
    distance: float = 2.7
    """Camera distance from the origin, world units."""
    fov_y_deg: float = 43.0
    """Vertical field of view, degrees (``fy = (H / 2) / tan(fov_y / 2)``)."""


def ring_layout(n_views: int, rig: RigConfig = RigConfig()) -> tuple[list[int], list[float]]:
    """Views per ring (split evenly, earlier rings get the remainder) and each ring's first
    azimuth (degrees; default: half a step on every other ring, i.e. 0/18/0 for 10 per ring)."""
    n_rings = len(rig.elevations_deg)
    counts = [n_views // n_rings + (1 if r < n_views % n_rings else 0) for r in range(n_rings)]
    if rig.ring_azimuth_offsets_deg is not None:
        return counts, [float(v) for v in rig.ring_azimuth_offsets_deg]
    offsets = [0.5 * 360.0 / max(c, 1) if r % 2 == 1 else 0.0 for r, c in enumerate(counts)]
    return counts, offsets


def ring_cameras(
    n_views: int, width: int, height: int, rig: RigConfig = RigConfig()
) -> tuple[Cameras, np.ndarray, np.ndarray]:
    """Cameras on rings around the origin, looking at it (world up +Y), ring by ring.

    Returns:
        cameras: the views, ring by ring, azimuth increasing from the ring's offset;
            ``fy = (H / 2) / tan(fov_y / 2)``, principal point at the image centre.
        azimuths_deg: [N] in [-180, 180) (0 = in front of the face, positive towards +X).
        elevations_deg: [N].
    """
    counts, offsets = ring_layout(n_views, rig)
    fy = 0.5 * height / math.tan(math.radians(rig.fov_y_deg) / 2.0)
    K = np.array([[fy, 0.0, (width - 1) / 2.0], [0.0, fy, (height - 1) / 2.0], [0.0, 0.0, 1.0]])
    c2ws, azimuths, elevations = [], [], []
    for elevation, count, offset in zip(rig.elevations_deg, counts, offsets, strict=True):
        for k in range(count):
            azimuth = (offset + k * 360.0 / count + 180.0) % 360.0 - 180.0
            az, el = math.radians(azimuth), math.radians(elevation)
            center = rig.distance * np.array(
                [math.cos(el) * math.sin(az), math.sin(el), math.cos(el) * math.cos(az)]
            )
            c2ws.append(look_at_c2w(center, up=UP))
            azimuths.append(azimuth)
            elevations.append(float(elevation))
    cameras = Cameras(np.repeat(K[None], n_views, axis=0), np.stack(c2ws), width, height)
    return cameras, np.array(azimuths), np.array(elevations)
