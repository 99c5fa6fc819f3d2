"""A learned inverter of protected gradient maps: an ATTACK, for measuring privacy.

This module is not a product feature. It plays the attacker of the privacy audit: someone who
holds protected maps sigma(photo) (paper Eq. 6), knows the public operator and its parameters
(Kerckhoffs' principle) and trains a network to turn such maps back into face images. How close
its outputs come to the true photos, and whether they single out the right person, measures
what the protection leaks. Weights are trained on the user's machine, cached outside the
repository (``~/.cache/privhead/inverters``) and never shipped.

The attacker:
  * a small U-Net (:class:`InverterModel`) maps a protected map, resized to a fixed working
    size ``S`` x ``S`` and divided by its own mean (:func:`prepare_maps`: scale-free, so maps
    whose absolute scale was lost, e.g. 8-bit PNGs, are handled alike), plus two coordinate
    channels, to an RGB image of ``S`` x ``S`` pixels in [0, 1];
  * it is trained on pairs (image, sigma(image)) made on the fly with the given operator
    config, from images privhead may use offline: the built-in synthetic heads
    (:mod:`privhead.data.synthetic`; identities, albedo, pose and lighting varied, rendered once
    into an in-memory pool and relit at every step), scikit-image's ``lfw_subset`` face crops
    (real faces of people who are not in the benchmark; grey, given random skin tints) and
    random crops of scikit-image's bundled sample images; flips, small shifts, scales,
    rotations, brightness and gamma changes on top;
  * loss: L1 to the true image plus a small gradient-consistency term (sigma of the output
    against the input map, both mean-normalised); Adam with a cosine learning-rate decay.

:func:`evaluate_inverter` renders held-out synthetic heads (seeds outside the training pool)
and reports the inverter's L1 error against the mean-training-image baseline and the rank-1
identification rate by normalised cross-correlation.

What it achieves (default training, the paper's operator: colour Sobel at 64 px, 10 held-out
heads, 128 px renders): L1 0.066 against 0.241 for the mean training image (0.063 for the
held-out images' own per-pixel median, an in-sample bound on any blind guess), rank-1 10 / 10
(chance 1 / 10) with random poses and lights, and 10 / 10 with every head frontal under the
benchmark's lights. The outputs are smooth heads with the right silhouette, pose and feature
positions but an average skin tone: the mean normalisation discards the map's absolute scale,
which is what tells a dark face from a light one on a dark background. Bundles keep that scale
(16-bit PNG + scale), so this attacker is a lower bound on what a map leaks.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import json
import math
import os
import sys
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from privhead.cache import cache_root
from privhead.data.cameras import Cameras, pixel_rays
from privhead.data.synthetic import (
    AMBIENT,
    HAIR_COLOURS_SRGB,
    LIGHTS,
    SKIN_TONES_SRGB,
    RigConfig,
    build_sdf_grid,
    head_albedo,
    linear_to_srgb,
    sample_head_params,
    surface_normals,
    trace_sdf_grid,
)
from privhead.privacy.operators import OperatorConfig, apply_operator, downsample_area

CODE_VERSION = 2
"""Bumped whenever a change to this module changes what training produces (invalidates the
weight cache)."""

MAP_CLIP = 16.0
"""Mean-normalised map values are clipped at this many times the map's mean."""

HELD_OUT_SEED_START = 900_000
"""First identity seed of the held-out evaluation heads (far from any training pool)."""


@dataclass
class InverterTrainConfig:
    """How the attacker trains (:func:`train_inverter`); every field enters the cache key
    except ``device``.

    The default takes about 3 minutes on 2 idle CPU cores (pool about 30 s, then 600 steps of
    about 0.25 s with 2 threads). On a busy machine ``torch.set_num_threads(1)`` is much faster
    than 2 threads (measured: 0.6 s against 2-3 s a step, 7.3 min in all, with other jobs
    running).
    """

    steps: int = 600
    """Adam steps."""

    batch_size: int = 12
    """Images per step."""

    learning_rate: float = 2e-3
    """Peak Adam step size (linear warm-up over the first 5 % of the steps, then a cosine
    decay to 5 % of it)."""

    image_size: int = 64
    """Working size S: maps are resized to S x S and the inverter outputs S x S RGB images."""

    render_size: int = 128
    """Side in pixels of the training images sigma is applied to (the operator then
    downsamples them to its own resolution, as it does with real photos)."""

    n_heads: int = 24
    """Synthetic identities rendered into the training pool."""

    views_per_head: int = 10
    """Random views (pose) rendered per identity; lighting is drawn anew at every step."""

    head_seed_start: int = 1000
    """The pool's identity seeds are ``head_seed_start + i`` (the benchmark's synthetic heads
    use small seeds; held-out evaluation uses :data:`HELD_OUT_SEED_START` onwards)."""

    sdf_grid_resolution: int = 96
    """Resolution of the SDF grid the pool's heads are sphere-traced in."""

    synthetic_fraction: float = 0.6
    """Share of each batch drawn from the synthetic-head pool."""

    lfw_fraction: float = 0.25
    """Share drawn from scikit-image's ``lfw_subset`` faces (tinted); the rest are crops of
    scikit-image's sample images."""

    background_fraction: float = 0.5
    """Probability that a synthetic head is composited on a random background instead of the
    renderer's black."""

    base_channels: int = 16
    """U-Net channels at full resolution (doubled at every level). 16 channels over 4 levels
    has the parameter count of 32 over 3 (1.9 M) and a larger receptive field, at a third of
    the CPU time per step (0.25 s against 0.7 s for 12 images of 64 px on 2 cores)."""

    levels: int = 4
    """U-Net downsampling levels (``image_size`` must be divisible by ``2**levels``)."""

    consistency_weight: float = 0.1
    """Weight of the gradient-consistency term L1(n(sigma(output)), n(input map))."""

    seed: int = 0
    """Seeds the pool's poses and variations, the batches and the network's initialisation."""

    device: str | None = None
    """Torch device to train on; None = CUDA when available, else CPU. Results are
    deterministic for a seed on a given device."""

    def key_dict(self) -> dict:
        """The fields that determine the trained weights (all but ``device``)."""
        data = asdict(self)
        data.pop("device")
        return data


# --------------------------------------------------------------------------------------------
# The network
# --------------------------------------------------------------------------------------------


def _block(in_ch: int, out_ch: int) -> nn.Sequential:
    groups = math.gcd(8, out_ch)
    return nn.Sequential(
        nn.Conv2d(in_ch, out_ch, 3, padding=1),
        nn.GroupNorm(groups, out_ch),
        nn.SiLU(),
        nn.Conv2d(out_ch, out_ch, 3, padding=1),
        nn.GroupNorm(groups, out_ch),
        nn.SiLU(),
    )


def prepare_maps(maps: torch.Tensor, size: int) -> torch.Tensor:
    """The inverter's input normalisation of protected maps.

    Each map is resized to ``size`` x ``size`` (area averaging when shrinking, bilinear when
    enlarging; non-square maps are stretched), divided by its own mean (+1e-6) and clipped at
    :data:`MAP_CLIP`. The result does not depend on the map's absolute scale.

    Args:
        maps: [B, 1, h, w] gradient-modulus maps (non-negative).
        size: working size S.

    Returns:
        [B, 1, S, S] normalised maps.
    """
    return _normalise(_resize(maps, size)).clamp(0.0, MAP_CLIP)


def _resize(images: torch.Tensor, size: int) -> torch.Tensor:
    h, w = images.shape[-2:]
    if (h, w) == (size, size):
        return images
    if h >= size and w >= size:
        return downsample_area(images, size)
    return F.interpolate(images, size=(size, size), mode="bilinear", align_corners=False)


def _normalise(maps: torch.Tensor) -> torch.Tensor:
    return maps / (maps.mean(dim=(1, 2, 3), keepdim=True) + 1e-6)


class InverterModel(nn.Module):
    """U-Net from a normalised protected map to an RGB image, both ``image_size`` square.

    Attributes:
        operator_cfg: the operator the inverter was trained for.
        image_size: working size S.
        mean_image: buffer [3, S, S], the mean training image (the blind baseline).
    """

    def __init__(
        self,
        operator_cfg: OperatorConfig,
        image_size: int = 64,
        base_channels: int = 32,
        levels: int = 3,
    ):
        super().__init__()
        if image_size % (2**levels):
            raise ValueError(f"image_size {image_size} must be divisible by 2**levels")
        self.operator_cfg = operator_cfg
        self.image_size = int(image_size)
        channels = [base_channels * 2**i for i in range(levels + 1)]
        in_channels = [3] + channels[: levels - 1]
        self.encoders = nn.ModuleList(_block(i, o) for i, o in zip(in_channels, channels))
        self.middle = _block(channels[levels - 1], channels[levels])
        # Bilinear upsampling then a 1x1 convolution: no transposed-convolution checkerboard.
        self.ups = nn.ModuleList(
            nn.Sequential(
                nn.Upsample(scale_factor=2, mode="bilinear", align_corners=False),
                nn.Conv2d(channels[i + 1], channels[i], 1),
            )
            for i in reversed(range(levels))
        )
        self.decoders = nn.ModuleList(
            _block(2 * channels[i], channels[i]) for i in reversed(range(levels))
        )
        self.head = nn.Conv2d(channels[0], 3, 1)
        axis = torch.linspace(-1.0, 1.0, image_size)
        yy, xx = torch.meshgrid(axis, axis, indexing="ij")
        self.register_buffer("coords", torch.stack([xx, yy])[None], persistent=False)
        self.register_buffer("mean_image", torch.full((3, image_size, image_size), 0.5))

    @classmethod
    def for_config(cls, operator_cfg: OperatorConfig, train_cfg: InverterTrainConfig):
        """An untrained model with the architecture ``train_cfg`` describes."""
        return cls(operator_cfg, train_cfg.image_size, train_cfg.base_channels, train_cfg.levels)

    @property
    def device(self) -> torch.device:
        return self.head.weight.device

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """[B, 1, S, S] normalised maps (:func:`prepare_maps`) -> [B, 3, S, S] RGB in [0, 1]."""
        x = torch.cat([x, self.coords.expand(len(x), -1, -1, -1)], dim=1)
        skips = []
        for encoder in self.encoders:
            x = encoder(x)
            skips.append(x)
            x = F.avg_pool2d(x, 2)
        x = self.middle(x)
        for up, decoder in zip(self.ups, self.decoders):
            x = decoder(torch.cat([up(x), skips.pop()], dim=1))
        return torch.sigmoid(self.head(x))

    @torch.no_grad()
    def invert(self, maps: list[np.ndarray], batch_size: int = 64) -> list[np.ndarray]:
        """Invert protected maps.

        Args:
            maps: [h, w] float maps (sigma of a photo with :attr:`operator_cfg`; any size, any
                absolute scale).

        Returns:
            One [S, S, 3] float32 RGB image in [0, 1] per map.
        """
        was_training = self.training
        self.eval()
        out = []
        try:
            for start in range(0, len(maps), batch_size):
                chunk = [
                    torch.as_tensor(np.asarray(m, dtype=np.float32))
                    for m in maps[start : start + batch_size]
                ]
                x = torch.cat(
                    [prepare_maps(m[None, None].to(self.device), self.image_size) for m in chunk]
                )
                images = self(x).permute(0, 2, 3, 1).cpu().numpy().astype(np.float32)
                out.extend(list(images))
        finally:
            self.train(was_training)
        return out

    def baseline(self) -> np.ndarray:
        """The blind attacker's guess: the mean training image, [S, S, 3] float32."""
        return self.mean_image.permute(1, 2, 0).cpu().numpy().astype(np.float32)


# --------------------------------------------------------------------------------------------
# Training data: synthetic heads (rendered once, relit at every step), LFW faces, sample images
# --------------------------------------------------------------------------------------------


@contextlib.contextmanager
def _torch_threads(n: int):
    """Run torch on ``n`` threads, restoring the caller's setting afterwards (the renderer's
    many small ops are faster single-threaded, as in :mod:`privhead.data.synthetic`)."""
    previous = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


@dataclass
class HeadPool:
    """Rendered synthetic views, kept unlit so that every batch can draw new lighting.

    Attributes:
        albedo: [N, H, W, 3] linear-RGB albedo at the first surface hit (0 off the head).
        normals: [N, H, W, 3] world normals there (0 off the head).
        coverage: [N, H, W] 1 where the pixel centre's ray hits the head, else 0.
        seeds: [N] identity seed of each view.
    """

    albedo: torch.Tensor
    normals: torch.Tensor
    coverage: torch.Tensor
    seeds: np.ndarray

    def __len__(self) -> int:
        return len(self.seeds)


def _look_at(center: np.ndarray, target: np.ndarray) -> np.ndarray:
    """OpenCV camera-to-world matrix (x right, y down, z forward) looking at ``target``, world
    up +Y (as the synthetic rig)."""
    forward = target - center
    forward = forward / np.linalg.norm(forward)
    right = np.cross(forward, (0.0, 1.0, 0.0))
    right = right / np.linalg.norm(right)
    c2w = np.eye(4)
    c2w[:3, 0], c2w[:3, 1], c2w[:3, 2], c2w[:3, 3] = (
        right,
        np.cross(forward, right),
        forward,
        center,
    )
    return c2w


def _sample_camera(rng: np.random.Generator, size: int, pose: str) -> Cameras:
    """One camera looking at the head: ``pose`` "random" (yaw within +-100 deg, pitch -20 to
    40 deg, distance and aim jittered) or "frontal" (the rig's distance, straight ahead)."""
    rig = RigConfig()
    if pose == "frontal":
        azimuth, elevation, distance, target = 0.0, 0.0, rig.distance, np.zeros(3)
    else:
        azimuth = float(rng.uniform(-100.0, 100.0))
        elevation = float(rng.uniform(-20.0, 40.0))
        distance = float(rng.uniform(2.2, 3.0))
        target = rng.uniform(-0.08, 0.08, size=3)
    az, el = math.radians(azimuth), math.radians(elevation)
    center = distance * np.array(
        [math.cos(el) * math.sin(az), math.sin(el), math.cos(el) * math.cos(az)]
    )
    fy = 0.5 * size / math.tan(math.radians(rig.fov_y_deg) / 2.0)
    K = np.array([[fy, 0.0, (size - 1) / 2.0], [0.0, fy, (size - 1) / 2.0], [0.0, 0.0, 1.0]])
    return Cameras(K[None], _look_at(center, target)[None], size, size)


@functools.lru_cache(maxsize=256)
def _head_params(seed: int):
    """:func:`sample_head_params`, memoised (it costs about 0.3 s a head)."""
    return sample_head_params(seed)


def _vary_albedo(params, rng: np.random.Generator):
    """Half of the time, a new skin tone and hair colour (the shape stays the seed's)."""
    if rng.uniform() < 0.5:
        return params
    tone = rng.uniform(0.0, len(SKIN_TONES_SRGB) - 1)
    low = min(int(tone), len(SKIN_TONES_SRGB) - 2)
    skin = (1 - (tone - low)) * np.array(SKIN_TONES_SRGB[low]) + (tone - low) * np.array(
        SKIN_TONES_SRGB[low + 1]
    )
    skin = skin * rng.uniform(0.9, 1.1, size=3)
    hair = np.array(list(HAIR_COLOURS_SRGB.values())[rng.integers(len(HAIR_COLOURS_SRGB))])
    hair = hair * rng.uniform(0.8, 1.2, size=3)
    return replace(
        params,
        skin_srgb=tuple(float(v) for v in np.clip(skin, 0, 255)),
        hair_srgb=tuple(float(v) for v in np.clip(hair, 0, 255)),
    )


def render_head_pool(
    seeds,
    views_per_head: int,
    size: int,
    rng: np.random.Generator,
    pose: str = "random",
    grid_resolution: int = 96,
    vary_albedo: bool = True,
) -> HeadPool:
    """Render ``views_per_head`` unlit views of each synthetic identity (one ray per pixel).

    Args:
        seeds: identity seeds (:func:`privhead.data.synthetic.sample_head_params`).
        views_per_head: views per identity.
        size: image side in pixels.
        rng: draws poses and albedo variations.
        pose: "random" or "frontal" (see :func:`_sample_camera`).
        grid_resolution: SDF grid the heads are traced in.
        vary_albedo: allow new skin / hair colours for some identities.
    """
    n = len(seeds) * views_per_head
    albedo = torch.zeros(n, size, size, 3)
    normals = torch.zeros(n, size, size, 3)
    coverage = torch.zeros(n, size, size)
    view_seeds = np.repeat(np.asarray(seeds, dtype=np.int64), views_per_head)
    rows, cols = torch.meshgrid(
        torch.arange(size, dtype=torch.float64),
        torch.arange(size, dtype=torch.float64),
        indexing="ij",
    )
    rows, cols = rows.reshape(-1), cols.reshape(-1)
    with _torch_threads(1):
        for h, seed in enumerate(seeds):
            params = _head_params(int(seed))
            grid = build_sdf_grid(params, resolution=grid_resolution)
            if vary_albedo:
                params = _vary_albedo(params, rng)
            # All views of a head in one sphere-tracing call (fewer, larger tensor ops).
            rays = []
            for _ in range(views_per_head):
                camera = _sample_camera(rng, size, pose)
                K, c2w = torch.from_numpy(camera.K[0]), torch.from_numpy(camera.c2w[0])
                rays.append(pixel_rays(K, c2w, rows, cols))
            origins = torch.cat([o for o, _ in rays]).float()
            directions = torch.cat([d for _, d in rays]).float()
            t, hit = trace_sdf_grid(grid, origins, directions)
            points = origins[hit] + t[hit, None] * directions[hit]
            views = slice(h * views_per_head, (h + 1) * views_per_head)
            if len(points):
                albedo[views].view(-1, 3)[hit] = head_albedo(points, params)
                normals[views].view(-1, 3)[hit] = surface_normals(points, params)
            coverage[views].view(-1)[hit] = 1.0
    return HeadPool(albedo, normals, coverage, view_seeds)


def _direction(azimuth_deg, elevation_deg) -> np.ndarray:
    az, el = np.radians(azimuth_deg), np.radians(elevation_deg)
    return np.stack([np.cos(el) * np.sin(az), np.sin(el), np.cos(el) * np.cos(az)], axis=-1)


def _sample_lights(rng: np.random.Generator, n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Random lighting per image: ([n, 3, 3] unit directions, [n, 3, 3] RGB, [n, 3] ambient).

    A key light in front (yaw +-90 deg, elevation -20 to 60 deg), a weaker fill from the other
    side and an optional back light; a quarter of the images get the benchmark's fixed lights.
    """
    key_az = rng.uniform(-90.0, 90.0, n)
    directions = np.stack(
        [
            _direction(key_az, rng.uniform(-20.0, 60.0, n)),
            _direction(-np.sign(key_az) * rng.uniform(30.0, 100.0, n), rng.uniform(-20, 40, n)),
            _direction(rng.uniform(120.0, 240.0, n), rng.uniform(10.0, 70.0, n)),
        ],
        axis=1,
    )
    strengths = np.stack(
        [rng.uniform(0.6, 1.2, n), rng.uniform(0.05, 0.45, n), rng.uniform(0.0, 0.6, n)], axis=1
    )
    rgb = strengths[..., None] * rng.uniform(0.88, 1.0, size=(n, 3, 3))
    ambient = rng.uniform(0.05, 0.3, (n, 1)) * rng.uniform(0.9, 1.0, (n, 3))
    standard = rng.uniform(size=n) < 0.25
    std_dirs = np.array([light.direction for light in LIGHTS], dtype=np.float64)
    directions[standard] = std_dirs / np.linalg.norm(std_dirs, axis=1, keepdims=True)
    rgb[standard] = np.array([light.rgb for light in LIGHTS])
    ambient[standard] = np.array(AMBIENT)
    return directions, rgb, ambient


def shade_pool(
    pool: HeadPool,
    indices: np.ndarray,
    directions: np.ndarray,
    rgb: np.ndarray,
    ambient: np.ndarray,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Lambertian shading of pool views (as :func:`privhead.data.synthetic.shade`).

    Returns:
        images: [n, 3, H, W] sRGB in [0, 1] on black; coverage: [n, 1, H, W].
    """
    idx = torch.as_tensor(indices, dtype=torch.long)
    albedo, normals = pool.albedo[idx], pool.normals[idx]  # [n, H, W, 3]
    d = torch.as_tensor(directions, dtype=torch.float32)  # [n, L, 3]
    cosines = torch.einsum("nhwc,nlc->nhwl", normals, d).clamp_min(0.0)
    irradiance = torch.as_tensor(ambient, dtype=torch.float32)[:, None, None] + torch.einsum(
        "nhwl,nlc->nhwc", cosines, torch.as_tensor(rgb, dtype=torch.float32)
    )
    images = linear_to_srgb(albedo * irradiance) * pool.coverage[idx, ..., None]
    return images.permute(0, 3, 1, 2).contiguous(), pool.coverage[idx, None]


_RGB_SAMPLES = (
    "astronaut",
    "chelsea",
    "coffee",
    "rocket",
    "hubble_deep_field",
    "immunohistochemistry",
    "retina",
    "colorwheel",
)
_GREY_SAMPLES = ("camera", "coins", "moon", "page", "text", "grass", "gravel", "brick")


@functools.lru_cache(maxsize=1)
def _skimage_samples(max_side: int = 512) -> tuple[torch.Tensor, ...]:
    """scikit-image's bundled sample images as [3, H, W] float tensors in [0, 1] (grey ones
    repeated over the channels); images that are not bundled are skipped."""
    from skimage import data

    out = []
    for name in _RGB_SAMPLES + _GREY_SAMPLES:
        try:
            image = np.asarray(getattr(data, name)())
        except Exception:  # noqa: BLE001 - not bundled (needs a download): skip it
            continue
        image = image.astype(np.float32) / (255.0 if image.dtype == np.uint8 else 1.0)
        if image.ndim == 2:
            image = np.repeat(image[..., None], 3, axis=2)
        tensor = torch.from_numpy(np.ascontiguousarray(image[..., :3])).permute(2, 0, 1)
        scale = max_side / max(tensor.shape[1:])
        if scale < 1:
            size = (round(tensor.shape[1] * scale), round(tensor.shape[2] * scale))
            tensor = downsample_area(tensor[None], size)[0]
        out.append(tensor.clamp(0.0, 1.0).contiguous())
    return tuple(out)


@functools.lru_cache(maxsize=1)
def _lfw_faces() -> torch.Tensor:
    """The 100 face crops of scikit-image's ``lfw_subset`` (the other 100 are non-faces) as
    [100, 1, 25, 25] grey in [0, 1]."""
    from skimage import data

    return torch.from_numpy(np.asarray(data.lfw_subset()[:100], dtype=np.float32))[:, None]


def _skin_tint(rng: np.random.Generator) -> np.ndarray:
    tone = rng.uniform(0.0, len(SKIN_TONES_SRGB) - 1)
    low = min(int(tone), len(SKIN_TONES_SRGB) - 2)
    skin = (1 - (tone - low)) * np.array(SKIN_TONES_SRGB[low]) + (tone - low) * np.array(
        SKIN_TONES_SRGB[low + 1]
    )
    tint = 0.8 * skin / skin.max() + 0.2 * rng.uniform(0.3, 1.0, size=3)
    return tint / tint.max()


class _Sampler:
    """Draws augmented training images [B, 3, R, R] in [0, 1]."""

    def __init__(self, train_cfg: InverterTrainConfig, rng: np.random.Generator, progress):
        self.cfg = train_cfg
        self.rng = rng
        self.noise = torch.Generator().manual_seed(int(rng.integers(2**62)))
        start = time.perf_counter()
        seeds = range(train_cfg.head_seed_start, train_cfg.head_seed_start + train_cfg.n_heads)
        self.pool = render_head_pool(
            list(seeds),
            train_cfg.views_per_head,
            train_cfg.render_size,
            rng,
            grid_resolution=train_cfg.sdf_grid_resolution,
        )
        self.samples = [
            (image, bool((image[0] == image[1]).all() and (image[1] == image[2]).all()))
            for image in _skimage_samples()
        ]
        self.faces = _lfw_faces()
        if progress:
            print(
                f"inverter: rendered {len(self.pool)} synthetic views and loaded "
                f"{len(self.faces)} LFW faces, {len(self.samples)} sample images in "
                f"{time.perf_counter() - start:.1f} s",
                file=sys.stderr,
                flush=True,
            )

    def _crops(self, n: int) -> torch.Tensor:
        size = self.cfg.render_size
        out = torch.empty(n, 3, size, size)
        for i in range(n):
            image, grey = self.samples[self.rng.integers(len(self.samples))]
            _, h, w = image.shape
            side = int(self.rng.integers(min(48, h, w), min(h, w) + 1))
            top, left = self.rng.integers(h - side + 1), self.rng.integers(w - side + 1)
            crop = image[None, :, top : top + side, left : left + side]
            if grey:
                crop = (
                    crop
                    * torch.as_tensor(self.rng.uniform(0.4, 1.0, 3), dtype=torch.float32)[
                        None, :, None, None
                    ]
                )
            out[i] = _resize(crop, size)[0]
        return out

    def _backgrounds(self, n: int) -> torch.Tensor:
        size = self.cfg.render_size
        kind = self.rng.integers(3, size=n)
        colours = torch.as_tensor(self.rng.uniform(0.0, 1.0, (n, 2, 3)), dtype=torch.float32)
        ramp = torch.linspace(0.0, 1.0, size)
        out = colours[:, 0, :, None, None].expand(n, 3, size, size).clone()
        for i in np.nonzero(kind == 1)[0]:
            gradient = ramp[:, None] if self.rng.uniform() < 0.5 else ramp[None, :]
            out[i] = torch.lerp(
                colours[i, 0, :, None, None], colours[i, 1, :, None, None], gradient
            )
        crops = np.nonzero(kind == 2)[0]
        if len(crops):
            out[crops] = self._crops(len(crops))
        return out

    def _heads(self, n: int) -> torch.Tensor:
        indices = self.rng.integers(len(self.pool), size=n)
        images, coverage = shade_pool(self.pool, indices, *_sample_lights(self.rng, n))
        images = images * torch.as_tensor(
            self.rng.uniform(0.8, 1.25, (n, 1, 1, 1)), dtype=torch.float32
        )
        composite = np.nonzero(self.rng.uniform(size=n) < self.cfg.background_fraction)[0]
        if len(composite):
            bg = self._backgrounds(len(composite))
            cov = coverage[composite]
            images[composite] = images[composite] * cov + bg * (1.0 - cov)
        return images.clamp(0.0, 1.0)

    def _lfw(self, n: int) -> torch.Tensor:
        idx = torch.as_tensor(self.rng.integers(len(self.faces), size=n), dtype=torch.long)
        grey = F.interpolate(
            self.faces[idx],
            size=(self.cfg.render_size,) * 2,
            mode="bicubic",
            align_corners=False,
        ).clamp(0.0, 1.0)
        gamma = torch.as_tensor(self.rng.uniform(0.8, 1.25, (n, 1, 1, 1)), dtype=torch.float32)
        tints = np.stack([_skin_tint(self.rng) for _ in range(n)])
        tint = torch.as_tensor(tints, dtype=torch.float32)[:, :, None, None]
        return grey**gamma * tint

    def sample(self, n: int) -> torch.Tensor:
        cfg = self.cfg
        u = self.rng.uniform(size=n)
        source = np.where(
            u < cfg.synthetic_fraction,
            0,
            np.where(u < cfg.synthetic_fraction + cfg.lfw_fraction, 1, 2),
        )
        images = torch.empty(n, 3, cfg.render_size, cfg.render_size)
        for kind, make in ((0, self._heads), (1, self._lfw), (2, self._crops)):
            where = np.nonzero(source == kind)[0]
            if len(where):
                images[where] = make(len(where))
        return self._augment(images)

    def _augment(self, images: torch.Tensor) -> torch.Tensor:
        """Flips, small shifts / scales / rotations, brightness, gamma, a little noise."""
        n = len(images)
        rng = self.rng
        angle = np.radians(rng.uniform(-8.0, 8.0, n))
        scale = rng.uniform(0.9, 1.12, n)
        flip = np.where(rng.uniform(size=n) < 0.5, -1.0, 1.0)
        theta = np.zeros((n, 2, 3))
        theta[:, 0, 0] = np.cos(angle) / scale * flip
        theta[:, 0, 1] = -np.sin(angle) / scale
        theta[:, 1, 0] = np.sin(angle) / scale * flip
        theta[:, 1, 1] = np.cos(angle) / scale
        theta[:, :, 2] = rng.uniform(-0.08, 0.08, (n, 2))
        grid = F.affine_grid(
            torch.as_tensor(theta, dtype=torch.float32), list(images.shape), align_corners=False
        )
        images = F.grid_sample(
            images, grid, mode="bilinear", padding_mode="reflection", align_corners=False
        )
        gain = torch.as_tensor(rng.uniform(0.75, 1.25, (n, 1, 1, 1)), dtype=torch.float32)
        gamma = torch.as_tensor(rng.uniform(0.85, 1.2, (n, 1, 1, 1)), dtype=torch.float32)
        images = (images.clamp(0.0, 1.0) ** gamma) * gain
        sigma = torch.as_tensor(rng.uniform(0.0, 0.01, (n, 1, 1, 1)), dtype=torch.float32)
        noise = torch.randn(images.shape, generator=self.noise) * sigma
        return (images + noise).clamp(0.0, 1.0)


# --------------------------------------------------------------------------------------------
# Training and the weight cache
# --------------------------------------------------------------------------------------------


def _device(train_cfg: InverterTrainConfig) -> torch.device:
    if train_cfg.device is not None:
        return torch.device(train_cfg.device)
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def _learning_rate(step: int, cfg: InverterTrainConfig) -> float:
    warmup = max(1, cfg.steps // 20)
    if step < warmup:
        return cfg.learning_rate * (step + 1) / warmup
    progress = (step - warmup) / max(1, cfg.steps - warmup)
    return cfg.learning_rate * (0.05 + 0.95 * 0.5 * (1.0 + math.cos(math.pi * progress)))


def _suppression(images: torch.Tensor, operator_cfg: OperatorConfig) -> torch.Tensor | None:
    """[B, 1, H, W] feature-suppression masks of a batch, found as the user side finds them (the
    on-device detector's landmarks), so the attacker trains on maps with the same holes."""
    if operator_cfg.suppress_features <= 0:
        return None
    from privhead.privacy.operators import suppression_mask

    masks = []
    for image in images.detach().cpu().permute(0, 2, 3, 1).numpy():
        mask = suppression_mask(image, operator_cfg)
        masks.append(np.zeros(image.shape[:2], bool) if mask is None else mask)
    return torch.from_numpy(np.stack(masks))[:, None].float().to(images.device)


def train_inverter(
    operator_cfg: OperatorConfig,
    train_cfg: InverterTrainConfig = InverterTrainConfig(),
    progress: bool = True,
) -> InverterModel:
    """Train the attacker's inverter for ``operator_cfg`` (see the module docstring).

    Deterministic for ``train_cfg.seed`` on a given device (the global torch RNG state is
    restored afterwards). ``torch.set_num_threads`` is left to the caller (the pool renderer
    alone runs single-threaded).

    Returns:
        The trained model, in eval mode, on the training device.
    """
    device = _device(train_cfg)
    start = time.perf_counter()
    rng = np.random.default_rng([train_cfg.seed, 0x1A7E])
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(train_cfg.seed)
        model = InverterModel.for_config(operator_cfg, train_cfg)
    model.to(device).train()
    sampler = _Sampler(train_cfg, rng, progress)
    optimiser = torch.optim.Adam(model.parameters(), lr=train_cfg.learning_rate)
    size = train_cfg.image_size
    mean_sum = torch.zeros(3, size, size, dtype=torch.float64)
    report_every = max(1, train_cfg.steps // 10)
    running = 0.0
    for step in range(train_cfg.steps):
        images = sampler.sample(train_cfg.batch_size).to(device)
        with torch.no_grad():
            suppress = _suppression(images, operator_cfg)
            maps = apply_operator(images, operator_cfg, suppress)
            target = _resize(images, size)
            inputs = prepare_maps(maps, size)
        mean_sum += target.sum(dim=0).double().cpu()
        output = model(inputs)
        loss = (output - target).abs().mean()
        if train_cfg.consistency_weight > 0:
            regenerated = _normalise(_resize(apply_operator(output, operator_cfg, suppress), size))
            loss = (
                loss
                + train_cfg.consistency_weight
                * (regenerated - _normalise(_resize(maps, size))).abs().mean()
            )
        for group in optimiser.param_groups:
            group["lr"] = _learning_rate(step, train_cfg)
        optimiser.zero_grad(set_to_none=True)
        loss.backward()
        optimiser.step()
        running += float(loss.detach())
        if progress and ((step + 1) % report_every == 0 or step + 1 == train_cfg.steps):
            count = (step % report_every) + 1
            print(
                f"inverter: step {step + 1}/{train_cfg.steps} loss {running / count:.4f} "
                f"({time.perf_counter() - start:.0f} s)",
                file=sys.stderr,
                flush=True,
            )
            running = 0.0
        elif (step + 1) % report_every == 0:
            running = 0.0
    total = train_cfg.steps * train_cfg.batch_size
    model.mean_image.copy_((mean_sum / max(total, 1)).float().to(device))
    return model.eval()


def cache_key(operator_cfg: OperatorConfig, train_cfg: InverterTrainConfig) -> str:
    """sha1 of the operator parameters, the training config (less ``device``) and
    :data:`CODE_VERSION`."""
    payload = {
        "operator": operator_cfg.to_dict(),
        "train": train_cfg.key_dict(),
        "code_version": CODE_VERSION,
    }
    return hashlib.sha1(json.dumps(payload, sort_keys=True).encode()).hexdigest()


def default_cache_dir() -> Path:
    """``$PRIVHEAD_CACHE/inverters`` when the variable is set, else
    ``~/.cache/privhead/inverters``."""
    return cache_root() / "inverters"


def cache_path(
    operator_cfg: OperatorConfig, train_cfg: InverterTrainConfig, cache_dir=None
) -> Path:
    """Where :func:`load_or_train_inverter` keeps these weights."""
    folder = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    return folder / f"{cache_key(operator_cfg, train_cfg)}.pt"


def load_inverter(
    path, operator_cfg: OperatorConfig, train_cfg: InverterTrainConfig
) -> InverterModel:
    """A model built for the configs with the state dict at ``path`` (``weights_only`` load)."""
    model = InverterModel.for_config(operator_cfg, train_cfg)
    state = torch.load(path, map_location="cpu", weights_only=True)
    model.load_state_dict(state)
    return model.to(_device(train_cfg)).eval()


def load_or_train_inverter(
    operator_cfg: OperatorConfig,
    train_cfg: InverterTrainConfig = InverterTrainConfig(),
    cache_dir=None,
    progress: bool = True,
) -> InverterModel:
    """The cached inverter for these configs, training (and caching) it when absent.

    Weights live in ``cache_dir`` (default :func:`default_cache_dir`, outside the repository)
    as ``<cache_key>.pt``, a plain ``torch.save(state_dict)``, beside a ``.json`` note of the
    configs. An unreadable or mismatched file is retrained and replaced.
    """
    path = cache_path(operator_cfg, train_cfg, cache_dir)
    if path.is_file():
        try:
            return load_inverter(path, operator_cfg, train_cfg)
        except Exception as error:  # noqa: BLE001 - a broken cache entry is retrained
            if progress:
                print(f"inverter: cannot load {path} ({error}); retraining", file=sys.stderr)
    model = train_inverter(operator_cfg, train_cfg, progress=progress)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
    torch.save({k: v.detach().cpu() for k, v in model.state_dict().items()}, tmp)
    os.replace(tmp, path)
    note = {
        "operator": operator_cfg.to_dict(),
        "train": train_cfg.key_dict(),
        "code_version": CODE_VERSION,
        "what": "privhead learned inverter: an attack for measuring privacy, never shipped",
    }
    path.with_suffix(".json").write_text(json.dumps(note, indent=1) + "\n")
    return model


# --------------------------------------------------------------------------------------------
# Evaluation on held-out synthetic heads
# --------------------------------------------------------------------------------------------


def render_faces(
    seeds,
    size: int,
    pose: str = "random",
    rng_seed: int = 0,
    grid_resolution: int = 96,
) -> np.ndarray:
    """Lit views of synthetic identities on black, one per seed: [K, size, size, 3] float32.

    ``pose`` "random" draws pose and lighting per view (as the training pool), "frontal"
    renders every head straight ahead under the benchmark's fixed lights, so only the identity
    differs.
    """
    rng = np.random.default_rng([rng_seed, 0xE7A1])
    pool = render_head_pool(
        list(seeds),
        1,
        size,
        rng,
        pose=pose,
        grid_resolution=grid_resolution,
        vary_albedo=False,
    )
    n = len(pool)
    if pose == "frontal":
        directions = np.array([light.direction for light in LIGHTS], dtype=np.float64)
        directions = np.repeat(
            (directions / np.linalg.norm(directions, axis=1, keepdims=True))[None], n, axis=0
        )
        rgb = np.repeat(np.array([light.rgb for light in LIGHTS])[None], n, axis=0)
        ambient = np.repeat(np.array(AMBIENT)[None], n, axis=0)
    else:
        directions, rgb, ambient = _sample_lights(rng, n)
    images, _ = shade_pool(pool, np.arange(n), directions, rgb, ambient)
    return images.permute(0, 2, 3, 1).numpy().astype(np.float32)


def identification_rank1(inverted, truths) -> float:
    """Fraction of inverted images whose most similar true image (normalised cross-correlation
    over all pixels and channels) is their own."""

    def unit(images):
        flat = np.stack([np.asarray(im, dtype=np.float64).ravel() for im in images])
        flat = flat - flat.mean(axis=1, keepdims=True)
        return flat / (np.linalg.norm(flat, axis=1, keepdims=True) + 1e-12)

    similarity = unit(inverted) @ unit(truths).T
    return float(np.mean(np.argmax(similarity, axis=1) == np.arange(len(similarity))))


def evaluate_inverter(
    model: InverterModel,
    seeds=None,
    render_size: int = 128,
    pose: str = "random",
    rng_seed: int = 0,
    grid_resolution: int = 96,
) -> dict:
    """Attack held-out synthetic heads and score it.

    Renders one view per seed (default 10 seeds from :data:`HELD_OUT_SEED_START`; see
    :func:`render_faces` for ``pose``, ``rng_seed`` and ``grid_resolution``), protects
    each with the model's operator, inverts the maps and compares with the true images resized
    to the model's working size.

    Returns:
        dict with ``l1`` (mean absolute error of the inversions), ``baseline_l1`` (of the mean
        training image), ``l1_ratio`` (l1 / baseline_l1), ``best_constant_l1`` (of the
        held-out images' own per-pixel median: the best any blind guess can do on this set,
        a stricter baseline than the mean training image), ``rank1`` (identification by
        normalised cross-correlation among the K heads), ``chance`` (1 / K, what a blind
        attacker gets) and ``k``.
    """
    if seeds is None:
        seeds = range(HELD_OUT_SEED_START, HELD_OUT_SEED_START + 10)
    seeds = list(seeds)
    truths = render_faces(
        seeds, render_size, pose=pose, rng_seed=rng_seed, grid_resolution=grid_resolution
    )
    tensor = torch.from_numpy(truths).permute(0, 3, 1, 2)
    suppress = _suppression(tensor, model.operator_cfg)
    maps = [m[0].numpy() for m in apply_operator(tensor, model.operator_cfg, suppress)]
    targets = _resize(tensor, model.image_size).permute(0, 2, 3, 1).numpy()
    inverted = np.stack(model.invert(maps))
    baseline = model.baseline()
    l1 = float(np.abs(inverted - targets).mean())
    baseline_l1 = float(np.abs(baseline[None] - targets).mean())
    best_constant = np.median(targets, axis=0)
    return {
        "l1": l1,
        "baseline_l1": baseline_l1,
        "l1_ratio": l1 / baseline_l1,
        "best_constant_l1": float(np.abs(best_constant[None] - targets).mean()),
        "rank1": identification_rank1(inverted, targets),
        "chance": 1.0 / len(seeds),
        "k": len(seeds),
    }
