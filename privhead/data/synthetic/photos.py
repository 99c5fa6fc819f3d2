"""The synthetic head as a photo shoot: JPEG photos in a textured room, no camera files.

What a user brings to ``privhead prepare``: photos taken walking around the head (or a turntable
capture: fixed camera, turning head, the same background in every photo), at a phone-like
resolution, with the true cameras, masks and geometry kept apart in ``truth/`` for evaluation.

Layout written by :func:`write_photo_shoot`::

    OUT/photos/IMG_0001.jpg ...   the photos (sRGB JPEG, EXIF focal length), nothing else
    OUT/truth/                    a dataset (IDR + transforms.json + views.json + face_region.json
                                  + gt_mesh.ply) of the same views on a black background, with
                                  the true cameras and masks
    OUT/shoot.json                how the shoot was made (seed, mode, jitter, room)

The room is an axis-aligned box around the head whose walls carry a procedural, multi-scale
tiling (fixed in the world for a walk-around shoot, fixed to the camera for a turntable), so
structure from motion sees consistent parallax in the first case and a static background in
the second. Lights stay fixed to the head in both modes (in a turntable they would turn with
the room; the difference does not matter to what the shoot tests).
"""

from __future__ import annotations

import json
import math
import shutil
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch

from privhead.data.cameras import Cameras, look_at_c2w
from privhead.data.synthetic._threads import single_threaded
from privhead.data.synthetic.albedo import srgb_to_linear
from privhead.data.synthetic.rig import RigConfig, ring_cameras
from privhead.data.synthetic.shape import UP
from privhead.errors import PrivheadError

SHOOT_MODES = ("walkaround", "turntable")


@dataclass(frozen=True)
class ShootConfig:
    """How the photo shoot is taken."""

    mode: str = "walkaround"
    """``walkaround`` (the photographer circles the head on three rings, the room stays) or
    ``turntable`` (one fixed camera, the head turns through 360 degrees, the room turns with
    the camera)."""
    n_views: int = 30
    """Number of photos."""
    resolution: int = 512
    """Photo width and height in pixels."""
    supersample: int = 2
    """Sub-pixels per pixel side (antialiasing)."""
    jitter: float = 1.0
    """Scale of the hand-held jitter (walk-around only): camera distance +-5 %, aim point
    +-0.05 units, roll +-4 degrees, times this; 0 = the exact ring rig."""
    room_half_size: tuple[float, float, float] = (4.5, 3.5, 4.5)
    """Half extents of the room box (x, y, z) in world units (the head radius is ~1)."""
    jpeg_quality: int = 92
    """JPEG quality of the photos."""
    turntable_elevation_deg: float = 10.0
    """Camera elevation of the turntable mode."""
    skin_detail: float = 0.0
    """Strength of the fine albedo texture (:func:`skin_detail`, e.g. 0.35); the default 0 keeps
    the smooth albedo of the plain synthetic datasets, the harder case for SfM."""

    def __post_init__(self) -> None:
        if self.mode not in SHOOT_MODES:
            raise PrivheadError(
                f"Unknown shoot mode {self.mode!r}; choose one of {', '.join(SHOOT_MODES)}."
            )
        if self.n_views < 3 or self.resolution < 32 or self.supersample < 1:
            raise PrivheadError(
                "A photo shoot needs >= 3 views, a resolution >= 32 and supersample >= 1 (got "
                f"{self.n_views}, {self.resolution}, {self.supersample})."
            )
        if not 0.0 <= self.skin_detail <= 1.0:
            raise PrivheadError(f"skin_detail must be in [0, 1] (got {self.skin_detail}).")


_HASH_WEIGHTS = ((12.9898, 78.233, 37.719), (39.346, 11.135, 83.155), (73.156, 52.235, 9.151))


def _hash3(cells: torch.Tensor, salt: float) -> torch.Tensor:
    """[B, 3] pseudo-random colours in [0, 1) of integer cells [B, 3] (float64)."""
    out = []
    for k, weights in enumerate(_HASH_WEIGHTS):
        w = torch.tensor(weights, dtype=torch.float64)
        value = torch.sin(cells @ w + salt * (k + 1) * 3.7) * 43758.5453
        out.append(value - torch.floor(value))
    return torch.stack(out, dim=-1)


def value_noise(points: torch.Tensor, cell: float, salt: float) -> torch.Tensor:
    """[P] smooth pseudo-random values in [0, 1): trilinear interpolation of hashed lattice values
    with cells of ``cell`` world units."""
    x = points.double() / cell
    base = torch.floor(x)
    frac = x - base
    frac = frac * frac * (3.0 - 2.0 * frac)  # smoothstep weights
    total = torch.zeros(len(points), dtype=torch.float64)
    for corner in range(8):
        offset = torch.tensor([(corner >> k) & 1 for k in range(3)], dtype=torch.float64)
        weight = torch.prod(torch.where(offset.bool(), frac, 1.0 - frac), dim=1)
        total += weight * _hash3(base + offset, salt)[:, 0]
    return total


def skin_detail(points: torch.Tensor, strength: float = 0.35) -> torch.Tensor:
    """[P, 1] albedo factor of fine skin and hair texture (pores, freckles, strands: value noise
    at ~1.5, 4 and 10 mm for a 200 mm head), mean 1; what gives a real head its SIFT features."""
    noise = (
        0.5 * value_noise(points, 0.008, 1.0)
        + 0.3 * value_noise(points, 0.02, 2.0)
        + 0.2 * value_noise(points, 0.05, 3.0)
    )
    return (1.0 + strength * 2.0 * (noise - 0.5)).float()[:, None].to(points.dtype)


def room_radiance(
    origins: torch.Tensor, directions: torch.Tensor, half_size=(4.5, 3.5, 4.5)
) -> torch.Tensor:
    """Linear radiance [B, 3] of rays from inside an axis-aligned room box with textured walls.

    Each wall carries three tilings (cells of 0.9, 0.3 and 0.1 units) of pseudo-random colours,
    mixed 50/30/20, so features exist at every scale structure from motion looks at.
    """
    o = origins.double()
    d = directions.double()
    half = torch.tensor(half_size, dtype=torch.float64)
    safe = torch.where(d.abs() < 1e-12, torch.full_like(d, 1e-12), d)
    t_axis = (torch.sign(safe) * half - o) / safe  # [B, 3], each > 0 from inside
    t, axis = t_axis.min(dim=1)
    points = o + t[:, None] * d
    side = torch.sign(torch.gather(safe, 1, axis[:, None]))[:, 0]
    face = (axis * 2 + (side > 0).long()).double()  # 0..5: which wall
    colour = torch.zeros(len(o), 3, dtype=torch.float64)
    for scale, weight in ((0.9, 0.5), (0.3, 0.3), (0.1, 0.2)):
        cells = torch.floor(points / scale)
        cells = cells.scatter(1, axis[:, None], face[:, None] * 101.0)
        colour += weight * _hash3(cells, salt=scale)
    srgb = 0.12 + 0.76 * colour
    return srgb_to_linear(srgb.float()).to(origins.dtype)


def _roll(c2w: np.ndarray, degrees: float) -> np.ndarray:
    angle = math.radians(degrees)
    rot = np.eye(4)
    rot[:2, :2] = [[math.cos(angle), -math.sin(angle)], [math.sin(angle), math.cos(angle)]]
    return c2w @ rot


def shoot_cameras(cfg: ShootConfig, seed: int) -> tuple[Cameras, np.ndarray, np.ndarray]:
    """The true cameras of the shoot (world = head frame), with azimuths and elevations."""
    rig = RigConfig()
    size = cfg.resolution
    if cfg.mode == "turntable":
        fixed = RigConfig(elevations_deg=(cfg.turntable_elevation_deg,))
        return ring_cameras(cfg.n_views, size, size, fixed)
    cameras, azimuths, elevations = ring_cameras(cfg.n_views, size, size, rig)
    rng = np.random.default_rng(10_000 + seed)
    c2ws = []
    for c2w in cameras.c2w:
        center = c2w[:3, 3] * (1.0 + cfg.jitter * rng.uniform(-0.05, 0.05))
        target = cfg.jitter * rng.uniform(-0.05, 0.05, size=3)
        pose = look_at_c2w(center, target=target, up=UP)
        c2ws.append(_roll(pose, cfg.jitter * rng.uniform(-4.0, 4.0)))
    return Cameras(cameras.K, np.stack(c2ws), size, size), azimuths, elevations


def _room_frames(cameras: Cameras, mode: str) -> np.ndarray:
    """[N, 4, 4] maps from the head frame to the room frame of each view."""
    if mode == "walkaround":
        return np.repeat(np.eye(4)[None], len(cameras), axis=0)
    # Turntable: the room is fixed to the camera, i.e. it turns with the camera around the head.
    return np.stack([cameras.c2w[0] @ np.linalg.inv(c2w) for c2w in cameras.c2w])


def _focal_35mm(cameras: Cameras) -> float:
    """The 35 mm-equivalent focal length (EXIF FocalLengthIn35mmFilm) of the cameras."""
    diagonal = math.hypot(cameras.width, cameras.height)
    return float(cameras.K[0, 0, 0] / diagonal * math.hypot(36.0, 24.0))


def _write_jpeg(path: Path, image: np.ndarray, quality: int, focal_35mm: float) -> None:
    from PIL import Image

    pil = Image.fromarray(np.clip(np.round(image * 255.0), 0, 255).astype(np.uint8))
    exif = Image.Exif()
    exif[0x010F] = "privhead"  # Make
    exif[0x0110] = "synthetic photo shoot"  # Model
    exif[0x0112] = 1  # Orientation: upright
    ifd = exif.get_ifd(0x8769)
    ifd[0xA405] = int(round(focal_35mm))  # FocalLengthIn35mmFilm
    pil.save(path, quality=quality, exif=exif)


def write_photo_shoot(
    out,
    seed: int = 0,
    cfg: ShootConfig = ShootConfig(),
    overwrite: bool = False,
    progress: Callable[[int], None] | None = None,
) -> Path:
    """Render the synthetic head of ``seed`` as a photo shoot (see the module docstring).

    Returns:
        ``out``; the photos are in ``out / "photos"``, the truth in ``out / "truth"``.
    """
    from privhead.data.synthetic.writer import write_synthetic_head

    out = Path(out)
    if out.exists() and any(out.iterdir()):
        if not overwrite:
            raise PrivheadError(
                f"{out} is not empty; choose another folder or overwrite it (--overwrite)."
            )
        shutil.rmtree(out)
    out.mkdir(parents=True, exist_ok=True)
    cameras, azimuths, elevations = shoot_cameras(cfg, seed)
    frames = _room_frames(cameras, cfg.mode)

    def background(index: int, origins: torch.Tensor, directions: torch.Tensor) -> torch.Tensor:
        frame = torch.from_numpy(frames[index]).to(origins.dtype)
        o = origins @ frame[:3, :3].T + frame[:3, 3]
        d = directions @ frame[:3, :3].T
        return room_radiance(o, d, cfg.room_half_size)

    truth = out / "truth"
    photos_dir = out / "photos"
    photos_dir.mkdir()
    focal = _focal_35mm(cameras)
    names = [f"IMG_{i + 1:04d}" for i in range(len(cameras))]

    def write_photo(index: int, image: np.ndarray) -> None:
        _write_jpeg(photos_dir / f"{names[index]}.jpg", image, cfg.jpeg_quality, focal)

    with single_threaded():
        write_synthetic_head(
            truth,
            seed=seed,
            n_views=cfg.n_views,
            resolution=cfg.resolution,
            supersample=cfg.supersample,
            cameras=(cameras, azimuths, elevations),
            names=names,
            background=background,
            on_backdrop=write_photo,
            albedo_detail=(lambda p: skin_detail(p, cfg.skin_detail)) if cfg.skin_detail else None,
            progress=progress,
        )
    info = {
        "seed": int(seed),
        "config": asdict(cfg),
        "photos": sorted(p.name for p in photos_dir.iterdir()),
        "truth": "truth/ (IDR dataset of the same views on black, true cameras and masks)",
        "focal_35mm": focal,
        "lights": "fixed to the head (both modes)",
    }
    (out / "shoot.json").write_text(json.dumps(info, indent=1) + "\n")
    return out
