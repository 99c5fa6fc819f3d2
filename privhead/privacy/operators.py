"""The privacy operator sigma (paper Eq. 6): colour-gradient modulus at a working resolution.

One torch implementation, differentiable, used on the user side (``apply_operator`` turns each
sensitive photo into a protected gradient map) and in training stage 2 (``gradient_modulus`` on
rendered patches), so both sides compute exactly the same maths.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import asdict, dataclass, fields

import numpy as np
import torch
import torch.nn.functional as F

from privhead.errors import PrivheadError

# Each operator is a separable 3x3 derivative kernel: d/dx = smoothing (along y) x difference
# (along x), d/dy its transpose. Normalising divides by the response to a unit-slope ramp,
# sum(smoothing) * 2, so every normalised operator measures the slope in units per pixel.
_DIFFERENCE = (-1.0, 0.0, 1.0)
OPERATOR_SMOOTHING: dict[str, tuple[float, ...]] = {
    "sobel": (1.0, 2.0, 1.0),
    "scharr": (3.0, 10.0, 3.0),
    "prewitt": (1.0, 1.0, 1.0),
    "central": (1.0,),
}
"""Smoothing profile (across the derivative direction) of each known operator."""

KNOWN_OPERATORS = tuple(OPERATOR_SMOOTHING)

SQRT_EPS = 1e-16
"""Added under each square root of Eq. 6 so its gradient is finite where the colour gradient is 0.
The offset ``sqrt(SQRT_EPS)`` = 1e-8 is subtracted again, so a constant image maps to 0 and a
nonzero norm is biased by less than 1e-8. (Representable in float32 / bfloat16, not float16.)"""

LUMINANCE_WEIGHTS = (0.2126, 0.7152, 0.0722)
"""Rec. 709 luma weights (applied to the stored sRGB values) of ``OperatorConfig.luminance``."""

BLUR_TRUNCATE = 3.0
"""The Gaussian blur kernel is cut at ``ceil(BLUR_TRUNCATE * blur_sigma)`` pixels."""


@dataclass
class OperatorConfig:
    """Parameters of the privacy operator sigma; recorded in every privacy bundle.

    The defaults are privhead's default privacy level, chosen from the privacy-fidelity curve
    in docs/privacy.md at the default preset: the paper's operator (Sobel modulus of the colour
    at 64 px), downsampling in linear light (:data:`PAPER_OPERATOR` is the same with the sRGB
    averaging of earlier bundles), the only operator measured whose stage-2 face error stays
    within 1.3x the full-RGB baseline on every shared head. The more private levels
    (``privhead.privacy.levels``) cost fidelity.
    """

    name: str = "sobel"
    """Derivative kernel: one of ``KNOWN_OPERATORS`` (sobel as in the paper, scharr, prewitt,
    central = plain central difference)."""

    resolution: int = 64
    """Working resolution in pixels (the paper uses 64x64): images are area-downsampled so that
    their longer side has this many pixels, keeping the aspect ratio (a square image becomes
    ``resolution`` x ``resolution``). Images already this small or smaller are not resampled."""

    linear_light: bool = True
    """Area-downsample in linear light (sRGB decoded, averaged, encoded again), which is what a
    lower-resolution camera records and how the shared heads' 64 px images were made from their
    256 px renders; on in the ``paper`` (default) and ``standard`` levels. False averages the
    stored sRGB values, as the ``strong`` level, :data:`PAPER_OPERATOR` and every bundle made
    before this field existed: edges against a dark
    background come out darker, and stage 2 from 256 px and 512 px photos measured 9-24 % worse
    than from the 64 px images of the same views (docs/benchmarks.md). Images at or below the
    working resolution are not resampled, so it changes nothing for them."""

    blur_sigma: float = 0.0
    """Standard deviation, in working-resolution pixels, of a Gaussian blur applied before the
    derivatives; 0 = no blur."""

    normalize: bool = True
    """Divide the kernels so that a ramp of slope 1 per working pixel gives a derivative of 1."""

    luminance: bool = False
    """Take the derivatives of the luminance (Rec. 709 weights of the sRGB values) instead of
    the three colour channels: chromatic edges (lips, skin vs brows) vanish, shading stays."""

    clip: float = 0.0
    """Soft clip of the modulus, ``clip * tanh(|g| / clip)`` (in |g| units per working pixel;
    0 = off). Shading gives small, smooth gradients and albedo edges (brows, eyes, lips, hair
    line) large ones: clipping keeps the first and flattens the second (a Retinex-style split).
    Differentiable; applied to renders in stage 2 too."""

    levels: int = 0
    """Quantise the stored map to this many levels over [0, clip] (needs ``clip`` > 0; 0 = no
    quantisation). User side only: stage 2 compares the continuous modulus of its renders with
    the quantised map."""

    noise: float = 0.0
    """Standard deviation (|g| units) of Gaussian noise added to the stored map, user side only.
    Seeded from the image itself, so a bundle is reproducible but the noise is unknown to
    anyone without the photo."""

    suppress_features: float = 0.0
    """Suppress the facial feature regions (eyes with their brows, mouth) located by the
    on-device face detector's landmarks (YuNet, ``privhead[audit]``): disks of this radius, in
    inter-ocular distances, around each eye (centred 0.2 of that distance above it, to take in
    the brow) and, 1.3 times larger, around the middle of the mouth corners. The stored map is 0
    there and in the operator's margin around them, and the bundle records a per-pixel validity
    mask so that stage 2 ignores those pixels. 0 = off; a view without detected landmarks is
    not suppressed. User side only (stage 2 needs no landmarks: it skips the invalid pixels)."""

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or self.name.lower() not in OPERATOR_SMOOTHING:
            raise PrivheadError(
                f"Unknown privacy operator {self.name!r}; known operators: "
                f"{', '.join(KNOWN_OPERATORS)}."
            )
        self.name = self.name.lower()
        if isinstance(self.resolution, bool) or not isinstance(self.resolution, int):
            raise PrivheadError(f"Operator resolution must be an integer, got {self.resolution!r}.")
        if self.resolution < 4:
            raise PrivheadError(f"Operator resolution must be at least 4, got {self.resolution}.")
        if isinstance(self.blur_sigma, bool) or not isinstance(self.blur_sigma, (int, float)):
            raise PrivheadError(f"Operator blur_sigma must be a number, got {self.blur_sigma!r}.")
        if not math.isfinite(self.blur_sigma) or self.blur_sigma < 0:
            raise PrivheadError(
                f"Operator blur_sigma must be finite and >= 0, got {self.blur_sigma}."
            )
        self.blur_sigma = float(self.blur_sigma)
        if not isinstance(self.normalize, bool):
            raise PrivheadError(
                f"Operator normalize must be true or false, got {self.normalize!r}."
            )
        if not isinstance(self.linear_light, bool):
            raise PrivheadError(
                f"Operator linear_light must be true or false, got {self.linear_light!r}."
            )
        if not isinstance(self.luminance, bool):
            raise PrivheadError(
                f"Operator luminance must be true or false, got {self.luminance!r}."
            )
        for name in ("clip", "noise", "suppress_features"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise PrivheadError(f"Operator {name} must be a number, got {value!r}.")
            if not math.isfinite(value) or value < 0:
                raise PrivheadError(f"Operator {name} must be finite and >= 0, got {value}.")
            setattr(self, name, float(value))
        if isinstance(self.levels, bool) or not isinstance(self.levels, int) or self.levels < 0:
            raise PrivheadError(f"Operator levels must be an integer >= 0, got {self.levels!r}.")
        if self.levels == 1 or (self.levels and self.clip <= 0):
            raise PrivheadError(
                "Operator levels needs at least 2 levels and a clip > 0 (the quantisation range)."
            )

    def to_dict(self) -> dict:
        """JSON-ready dict of every parameter (read back with :meth:`from_dict`)."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data) -> OperatorConfig:
        """Build and validate a config from a dict; unknown keys or values raise PrivheadError.

        Missing fields take the PAPER operator's values (not the defaults): version-1 bundles
        record only name, resolution, blur_sigma and normalize, and were all made with it.
        """
        if not isinstance(data, dict):
            raise PrivheadError(f"Operator parameters must be a JSON object, got {data!r}.")
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise PrivheadError(
                f"Unknown operator parameter(s) {', '.join(unknown)}; known: "
                f"{', '.join(sorted(known))}."
            )
        return cls(**{**_PAPER_FIELDS, **data})

    @classmethod
    def paper(cls, **fields) -> OperatorConfig:
        """The paper's operator (:data:`PAPER_OPERATOR`) with some fields replaced."""
        return cls(**{**_PAPER_FIELDS, **fields})

    def working_size(self, width: int, height: int) -> tuple[int, int]:
        """(width, height) of the working images for inputs of ``width`` x ``height`` pixels."""
        longer = max(width, height)
        if longer <= self.resolution:
            return int(width), int(height)
        factor = self.resolution / longer
        return max(1, round(width * factor)), max(1, round(height * factor))


def _derivative_kernels(cfg: OperatorConfig, dtype, device) -> torch.Tensor:
    """[2, 1, k, k] correlation kernels for d/dx (columns) and d/dy (rows)."""
    smoothing = torch.tensor(OPERATOR_SMOOTHING[cfg.name], dtype=torch.float64)
    difference = torch.tensor(_DIFFERENCE, dtype=torch.float64)
    size = max(len(smoothing), len(difference))
    smoothing = F.pad(smoothing, ((size - len(smoothing)) // 2,) * 2)
    kx = smoothing[:, None] * difference[None, :]
    if cfg.normalize:
        kx = kx / (2.0 * smoothing.sum())
    return torch.stack([kx, kx.T])[:, None].to(dtype=dtype, device=device)


def _blur_kernel(sigma: float, dtype, device) -> torch.Tensor:
    """[2r + 1] normalised 1D Gaussian."""
    radius = math.ceil(BLUR_TRUNCATE * sigma)
    x = torch.arange(-radius, radius + 1, dtype=torch.float64)
    kernel = torch.exp(-0.5 * (x / sigma) ** 2)
    return (kernel / kernel.sum()).to(dtype=dtype, device=device)


def _blur_radius(cfg: OperatorConfig) -> int:
    return math.ceil(BLUR_TRUNCATE * cfg.blur_sigma) if cfg.blur_sigma > 0 else 0


def operator_margin(cfg: OperatorConfig) -> int:
    """Pixels lost on each side by ``gradient_modulus(..., padding="valid")``.

    The derivative kernel's radius plus the blur kernel's radius: a stage-2 patch rendered with
    this margin on every side yields the operator on its whole interior.
    """
    kernel_size = max(len(OPERATOR_SMOOTHING[cfg.name]), len(_DIFFERENCE))
    return kernel_size // 2 + _blur_radius(cfg)


def srgb_to_linear(values: torch.Tensor) -> torch.Tensor:
    """sRGB-encoded values in [0, 1] -> linear light (IEC 61966-2-1)."""
    values = values.clamp(0.0, 1.0)
    return torch.where(values <= 0.04045, values / 12.92, ((values + 0.055) / 1.055) ** 2.4)


def linear_to_srgb(values: torch.Tensor) -> torch.Tensor:
    """Linear light in [0, 1] -> sRGB-encoded values (inverse of :func:`srgb_to_linear`)."""
    values = values.clamp(0.0, 1.0)
    high = 1.055 * values.clamp_min(0.0031308) ** (1.0 / 2.4) - 0.055
    return torch.where(values <= 0.0031308, values * 12.92, high)


def downsample_area(images: torch.Tensor, size, linear_light: bool = False) -> torch.Tensor:
    """Area (box-filter) resampling: each output pixel is the mean of the input area it covers.

    Input pixels partly covered contribute with the covered fraction (as OpenCV ``INTER_AREA`` /
    Pillow ``BOX``), so an integer factor gives the exact box average. Differentiable.

    Args:
        images: [B, C, H, W] images.
        size: output ``(height, width)``, or an int for a square output.
        linear_light: the images are sRGB-encoded in [0, 1]: average their linear light and
            encode the result (what a camera with larger pixels records).

    Returns:
        [B, C, height, width] images (same dtype and device).
    """
    if images.dim() != 4:
        raise ValueError(f"images must be [B, C, H, W], got shape {tuple(images.shape)}")
    out_h, out_w = (size, size) if isinstance(size, int) else (int(size[0]), int(size[1]))
    in_h, in_w = images.shape[-2:]
    if (out_h, out_w) == (in_h, in_w):
        return images
    rows = _area_matrix(in_h, out_h).to(dtype=images.dtype, device=images.device)
    cols = _area_matrix(in_w, out_w).to(dtype=images.dtype, device=images.device)
    if linear_light:
        linear = torch.einsum("oh,bchw,pw->bcop", rows, srgb_to_linear(images), cols)
        return linear_to_srgb(linear)
    return torch.einsum("oh,bchw,pw->bcop", rows, images, cols)


def _area_matrix(n_in: int, n_out: int) -> torch.Tensor:
    """[n_out, n_in] weights: row i averages the input interval [i, i + 1) * n_in / n_out."""
    edges = torch.arange(n_out + 1, dtype=torch.float64) * (n_in / n_out)
    starts, ends = edges[:-1, None], edges[1:, None]
    pixel = torch.arange(n_in, dtype=torch.float64)[None, :]
    overlap = (torch.minimum(ends, pixel + 1) - torch.maximum(starts, pixel)).clamp_min(0)
    return overlap / overlap.sum(dim=1, keepdim=True)


def gradient_modulus(
    images: torch.Tensor, cfg: OperatorConfig, padding: str = "valid"
) -> torch.Tensor:
    """Colour-gradient modulus, paper Eq. 6: |g| = ||dC/dx||_2 + ||dC/dy||_2.

    Optional Gaussian blur, then per-channel derivatives with the configured kernel; the norms
    are taken over the colour channels. Each norm is computed as
    ``sqrt(sum_c d_c^2 + SQRT_EPS) - sqrt(SQRT_EPS)`` so its gradient stays finite at 0.

    Args:
        images: [B, C, H, W] images (C = 3 for RGB), values in the image's own units.
        cfg: operator parameters (resolution is not used here: the images are taken as given).
        padding: "valid" (no padding: the output loses ``operator_margin(cfg)`` pixels on each
            side) or "replicate" (edge pixels repeated: the output has the input's size).

    Returns:
        [B, 1, H', W'] gradient modulus; H' = H - 2 * margin for "valid", H for "replicate".
    """
    if images.dim() != 4:
        raise ValueError(f"images must be [B, C, H, W], got shape {tuple(images.shape)}")
    margin = operator_margin(cfg)
    if padding == "replicate":
        if margin:
            images = F.pad(images, (margin,) * 4, mode="replicate")
    elif padding != "valid":
        raise ValueError(f"padding must be 'valid' or 'replicate', got {padding!r}")
    batch, channels, height, width = images.shape
    if min(height, width) <= 2 * margin:
        raise ValueError(
            f"images of {height}x{width} pixels are too small for an operator margin of {margin}"
        )
    if cfg.luminance and channels == 3:
        weights = torch.tensor(LUMINANCE_WEIGHTS, dtype=images.dtype, device=images.device)
        images = (images * weights.view(1, 3, 1, 1)).sum(dim=1, keepdim=True)
        channels = 1
    x = images.reshape(batch * channels, 1, height, width)
    if cfg.blur_sigma > 0:
        blur = _blur_kernel(cfg.blur_sigma, x.dtype, x.device)
        x = F.conv2d(x, blur.view(1, 1, -1, 1))
        x = F.conv2d(x, blur.view(1, 1, 1, -1))
    derivatives = F.conv2d(x, _derivative_kernels(cfg, x.dtype, x.device))
    derivatives = derivatives.reshape(batch, channels, 2, *derivatives.shape[-2:])
    squared = (derivatives * derivatives).sum(dim=1)  # [B, 2, H', W']: sum over colour channels
    offset = torch.sqrt(torch.tensor(SQRT_EPS, dtype=squared.dtype, device=squared.device))
    norms = torch.sqrt(squared + SQRT_EPS) - offset
    modulus = norms.sum(dim=1, keepdim=True)
    if cfg.clip > 0:
        modulus = cfg.clip * torch.tanh(modulus / cfg.clip)
    return modulus


def apply_operator(
    images: torch.Tensor, cfg: OperatorConfig, suppress: torch.Tensor | None = None
) -> torch.Tensor:
    """The user-side privacy operator sigma: area-downsample to the working size, then Eq. 6.

    Args:
        images: [B, 3, H, W] RGB images in [0, 1].
        cfg: operator parameters.
        suppress: optional [B, 1, H, W] masks (1 = feature region to suppress) of
            ``cfg.suppress_features`` (:func:`feature_regions`); the maps are 0 wherever
            :func:`valid_pixels` says a working pixel depends on a suppressed one.

    Returns:
        [B, 1, h, w] protected gradient maps, (w, h) = ``cfg.working_size(W, H)``, replicate
        padding at the image border (same size as the working image).
    """
    width, height = cfg.working_size(images.shape[-1], images.shape[-2])
    working = downsample_area(images, (height, width), cfg.linear_light)
    maps = gradient_modulus(working, cfg, padding="replicate")
    maps = finish_maps(maps, cfg, images)
    if suppress is not None:
        maps = maps * valid_pixels(suppress, cfg, (height, width)).to(maps.dtype)
    return maps


def valid_pixels(suppress: torch.Tensor, cfg: OperatorConfig, size) -> torch.Tensor:
    """[B, 1, h, w] bool: working pixels whose operator value depends on no suppressed pixel.

    A working pixel is invalid when its area holds any suppressed image pixel, or when one lies
    within the operator's margin (derivative kernel + blur) of it.

    Args:
        suppress: [B, 1, H, W] masks (nonzero = suppressed) at image resolution.
        cfg: the operator.
        size: (h, w) working size.
    """
    touched = downsample_area(suppress.float(), size) > 0
    margin = operator_margin(cfg)
    if margin:
        touched = F.max_pool2d(touched.float(), 2 * margin + 1, stride=1, padding=margin) > 0
    return ~touched


FEATURE_BROW_SHIFT = 0.2
"""Eye disks are centred this many inter-ocular distances above the eye landmark (brows)."""
FEATURE_MOUTH_SCALE = 1.3
"""The mouth disk's radius is this many times the eye disks' radius."""


def feature_regions(landmarks: np.ndarray, height: int, width: int, radius: float) -> np.ndarray:
    """[H, W] bool mask of the facial feature regions of one face (``suppress_features``).

    Args:
        landmarks: [5, 2] (x, y) pixels in the detectors' order (eye_left, eye_right, nose,
            mouth_left, mouth_right).
        height, width: image size.
        radius: disk radius in inter-ocular distances.
    """
    points = np.asarray(landmarks, dtype=np.float64).reshape(5, 2)
    eyes, mouth = points[:2], points[3:5].mean(axis=0)
    iod = float(np.linalg.norm(eyes[1] - eyes[0]))
    # "Up" in the face: perpendicular to the eye line, pointing away from the mouth.
    along = (eyes[1] - eyes[0]) / max(iod, 1e-9)
    up = np.array([along[1], -along[0]])
    if up @ (eyes.mean(axis=0) - mouth) < 0:
        up = -up
    rows, cols = np.mgrid[0:height, 0:width]
    grid = np.stack([cols, rows], axis=-1).astype(np.float64)
    mask = np.zeros((height, width), dtype=bool)
    for eye in eyes:
        centre = eye + FEATURE_BROW_SHIFT * iod * up
        mask |= np.linalg.norm(grid - centre, axis=-1) < radius * iod
    mask |= np.linalg.norm(grid - mouth, axis=-1) < FEATURE_MOUTH_SCALE * radius * iod
    return mask


_LANDMARK_DETECTOR = None


def suppression_mask(image: np.ndarray, cfg: OperatorConfig) -> np.ndarray | None:
    """The ``suppress_features`` mask of one [H, W, 3] image, from the on-device detector's
    landmarks (YuNet, loaded once); None when the operator does not suppress or no face with
    landmarks is found (every face found is suppressed)."""
    global _LANDMARK_DETECTOR
    if cfg.suppress_features <= 0:
        return None
    if _LANDMARK_DETECTOR is None:
        from privhead.privacy.faces.detect import YuNetDetector

        _LANDMARK_DETECTOR = YuNetDetector()
    height, width = image.shape[:2]
    mask = np.zeros((height, width), dtype=bool)
    found = False
    for detection in _LANDMARK_DETECTOR.detect(image):
        if detection.landmarks is not None:
            mask |= feature_regions(detection.landmarks, height, width, cfg.suppress_features)
            found = True
    return mask if found else None


def finish_maps(maps: torch.Tensor, cfg: OperatorConfig, images: torch.Tensor) -> torch.Tensor:
    """The user-side-only steps after Eq. 6: noise (seeded by each image) then quantisation.

    Not differentiable where it changes anything (stage 2 never calls it).

    Args:
        maps: [B, 1, h, w] gradient moduli.
        cfg: operator parameters.
        images: [B, 3, H, W] the images the maps were made from (seed the noise).
    """
    if cfg.noise > 0:
        noisy = []
        for map_, image in zip(maps, images, strict=True):
            digest = hashlib.sha256(image.detach().cpu().numpy().tobytes()).digest()
            generator = torch.Generator().manual_seed(int.from_bytes(digest[:8], "little"))
            noise = torch.randn(map_.shape, generator=generator, dtype=torch.float64)
            noisy.append((map_ + cfg.noise * noise.to(map_)).clamp_min(0))
        maps = torch.stack(noisy)
    if cfg.levels:
        step = cfg.clip / (cfg.levels - 1)
        maps = torch.round(maps.clamp(0, cfg.clip) / step) * step
    return maps


def protect_image(image: np.ndarray, cfg: OperatorConfig) -> np.ndarray:
    """sigma of one [H, W, 3] float RGB image in [0, 1] (numpy): the [h, w] float32 map.

    The one numpy entry point used by the bundle writer and the audit, so both protect an
    image exactly as ``apply_operator`` does (feature suppression included).
    """
    return protect_image_valid(image, cfg)[0]


def protect_image_valid(image: np.ndarray, cfg: OperatorConfig):
    """sigma of one image and its validity mask: ([h, w] float32 map, [h, w] bool or None).

    The mask is None when nothing was suppressed (every pixel valid).
    """
    tensor = torch.from_numpy(np.ascontiguousarray(image, dtype=np.float32)).permute(2, 0, 1)
    suppress = suppression_mask(image, cfg)
    with torch.no_grad():
        if suppress is None:
            return apply_operator(tensor[None], cfg)[0, 0].numpy(), None
        mask = torch.from_numpy(suppress)[None, None].float()
        width, height = cfg.working_size(image.shape[1], image.shape[0])
        maps = apply_operator(tensor[None], cfg, mask)[0, 0].numpy()
        return maps, valid_pixels(mask, cfg, (height, width))[0, 0].numpy()


_PAPER_FIELDS = dict(
    name="sobel",
    resolution=64,
    linear_light=False,
    blur_sigma=0.0,
    normalize=True,
    luminance=False,
    clip=0.0,
    levels=0,
    noise=0.0,
    suppress_features=0.0,
)
PAPER_OPERATOR = OperatorConfig(**_PAPER_FIELDS)
"""The paper's operator (Sobel gradient modulus at 64 px) as privhead first applied it, with the
sRGB values averaged when downsampling; every field spelled out so it never changes with the
defaults: version-1 bundles were all made with it, and the fields a bundle does not record take
its values. The ``paper`` privacy level is this operator downsampling in linear light."""
