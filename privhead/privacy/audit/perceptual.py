"""Perceptual similarity (paper Table 4): ST-LPIPS, SSIM and PSNR, and
:func:`perceptual_similarity` of protected maps vs RGB photos across identities."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from privhead._optional import package_file
from privhead.errors import PrivheadError
from privhead.privacy.audit.images import ImageSet
from privhead.privacy.operators import OperatorConfig, apply_operator, downsample_area

STLPIPS_WEIGHTS = "weights/vST0.0/alex_shift_tolerant.pth"
"""The AlexNet ST-LPIPS weights inside the ``stlpips_pytorch`` package."""
STLPIPS_LICENSE = "BSD-2-Clause (stlpips-pytorch, (c) 2022 Abhijay Ghildyal, Feng Liu)"

_CHANNELS = (64, 192, 384, 256, 256)
_SHIFT = (-0.030, -0.088, -0.188)
_SCALE = (0.458, 0.448, 0.450)


class _BlurDownsample(nn.Module):
    """Anti-aliased stride-2 downsampling: reflect-pad 2, depthwise [1 2 1]^T [1 2 1] / 16."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        taps = torch.tensor([1.0, 2.0, 1.0])
        kernel = taps[:, None] * taps[None, :]
        self.register_buffer("filt", (kernel / kernel.sum()).expand(channels, 1, 3, 3).clone())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.conv2d(
            F.pad(x, (2, 2, 2, 2), mode="reflect"), self.filt, stride=2, groups=x.shape[1]
        )


class _ShiftTolerantAlexNet(nn.Module):
    """AlexNet features with stride-1 first conv and blur-pool after every max-pool.

    Module indices follow the weight file (``slice1.0`` ... ``slice5.13``); each slice ends at
    one of the five ReLU taps that ST-LPIPS compares.
    """

    def __init__(self) -> None:
        super().__init__()
        relu = nn.ReLU()
        self.slice1 = nn.Sequential(nn.Conv2d(3, 64, 11, padding=2), _BlurDownsample(64), relu)
        self.slice2 = nn.Sequential()
        for index, layer in zip(
            (3, 4, 5, 6),
            (
                nn.MaxPool2d(3, stride=1),
                _BlurDownsample(64),
                nn.Conv2d(64, 192, 5, padding=2),
                relu,
            ),
            strict=True,
        ):
            self.slice2.add_module(str(index), layer)
        self.slice3 = nn.Sequential()
        for index, layer in zip(
            (7, 8, 9, 10),
            (
                nn.MaxPool2d(3, stride=1),
                _BlurDownsample(192),
                nn.Conv2d(192, 384, 3, padding=1),
                relu,
            ),
            strict=True,
        ):
            self.slice3.add_module(str(index), layer)
        self.slice4 = nn.Sequential()
        self.slice4.add_module("11", nn.Conv2d(384, 256, 3, padding=1))
        self.slice4.add_module("12", relu)
        self.slice5 = nn.Sequential()
        self.slice5.add_module("13", nn.Conv2d(256, 256, 3, padding=1))
        self.slice5.add_module("14", relu)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        taps = []
        for block in (self.slice1, self.slice2, self.slice3, self.slice4, self.slice5):
            x = block(x)
            taps.append(x)
        return taps


class STLPIPS(nn.Module):
    """Shift-tolerant LPIPS distance with the AlexNet backbone (eval mode, no dropout).

    LPIPS (Zhang et al. 2018) needs ImageNet backbones that torchvision downloads at run time,
    which cannot happen here. The ``stlpips-pytorch`` wheel (BSD-2-Clause, Ghildyal & Liu, ECCV
    2022) ships *complete* weights of the shift-tolerant variant, ST-LPIPS (backbone and linear
    heads), so this class builds that AlexNet variant itself and loads the shipped weights: no
    torchvision, and the package is never imported. Numbers are ST-LPIPS, not LPIPS: same scale
    and meaning (0 = same image, larger = more different), different values.

    d(a, b) = sum over the 5 taps l of mean over pixels of w_l . (f_l(a) - f_l(b))^2, where f_l
    are the tap's features normalised to unit length over channels and w_l >= 0 the learnt
    per-channel weights.
    """

    def __init__(self) -> None:
        super().__init__()
        self.register_buffer("shift", torch.tensor(_SHIFT).view(1, 3, 1, 1))
        self.register_buffer("scale", torch.tensor(_SCALE).view(1, 3, 1, 1))
        self.net = _ShiftTolerantAlexNet()
        self.lins = nn.ParameterList(
            [nn.Parameter(torch.zeros(1, c, 1, 1), requires_grad=False) for c in _CHANNELS]
        )

    @classmethod
    def from_package(cls) -> STLPIPS:
        """Load the weights shipped in the ``stlpips-pytorch`` wheel (audit extra)."""
        path = package_file("stlpips_pytorch", STLPIPS_WEIGHTS, "ST-LPIPS")
        state = torch.load(path, map_location="cpu", weights_only=True)
        model = cls()
        try:
            model.load_weights(state)
        except (KeyError, RuntimeError) as exc:
            raise PrivheadError(
                f"{path} is not the expected ST-LPIPS AlexNet file ({exc})."
            ) from exc
        return model.eval()

    def load_weights(self, state: dict) -> None:
        """Copy a stlpips state dict (``scaling_layer.*``, ``net.*``, ``linK.model.1.weight``)."""
        net_state = {k[len("net.") :]: v for k, v in state.items() if k.startswith("net.")}
        self.net.load_state_dict(net_state, strict=True)
        with torch.no_grad():
            self.shift.copy_(state["scaling_layer.shift"])
            self.scale.copy_(state["scaling_layer.scale"])
            for k, lin in enumerate(self.lins):
                lin.copy_(state[f"lin{k}.model.1.weight"])

    @torch.no_grad()
    def forward(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        """ST-LPIPS distance.

        Args:
            a, b: [B, 3, H, W] images in [0, 1] (H, W >= 32).

        Returns:
            [B] distances.
        """
        feats = []
        for image in (a, b):
            x = (image * 2.0 - 1.0 - self.shift) / self.scale
            feats.append(self.net(x))
        total = torch.zeros(a.shape[0], dtype=a.dtype, device=a.device)
        for fa, fb, weight in zip(*feats, self.lins, strict=True):
            na = fa / (fa.pow(2).sum(dim=1, keepdim=True).sqrt() + 1e-10)
            nb = fb / (fb.pow(2).sum(dim=1, keepdim=True).sqrt() + 1e-10)
            total = total + ((na - nb).pow(2) * weight).sum(dim=1).mean(dim=(1, 2))
        return total


def to_tensor(images) -> torch.Tensor:
    """[N, H, W] or [N, H, W, C] (C = 1 or 3) floats in [0, 1] -> [N, 3, H, W] float32."""
    array = np.asarray(images, dtype=np.float32)
    if array.ndim == 3:
        array = array[..., None]
    if array.shape[-1] == 1:
        array = np.repeat(array, 3, axis=-1)
    return torch.from_numpy(np.ascontiguousarray(array.transpose(0, 3, 1, 2)))


def ssim(a: np.ndarray, b: np.ndarray) -> float:
    """Structural similarity of two images in [0, 1] ([H, W] or [H, W, C]; skimage, 7x7 window)."""
    from skimage.metrics import structural_similarity

    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    channel_axis = -1 if a.ndim == 3 else None
    return float(structural_similarity(a, b, data_range=1.0, channel_axis=channel_axis))


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    """Peak signal-to-noise ratio in dB of two images in [0, 1] (inf when identical)."""
    mse = float(np.mean((np.asarray(a, np.float64) - np.asarray(b, np.float64)) ** 2))
    return float("inf") if mse == 0 else float(10.0 * np.log10(1.0 / mse))


def perceptual_similarity(
    originals: ImageSet,
    impostors: Sequence[ImageSet],
    operator_cfg: OperatorConfig,
    notes: list[str] | None = None,
) -> dict | None:
    """ST-LPIPS, SSIM and PSNR between the subject and each impostor, view by view, for the
    protected maps and for the RGB photos at the same working resolution.

    Maps are shown to the metrics as grey images divided by one common scale (the 99th
    percentile of all maps compared), so their relative contrast is kept.

    Returns:
        {"protected": stats, "rgb": stats, "n_pairs": N, "pairs": [...]}, or None when no
        impostor shares a view name with the subject.
    """
    pairs = []
    for impostor in impostors:
        for name in originals.names:
            if name in impostor.names:
                pairs.append((name, impostor))
    if not pairs:
        return None
    try:
        metric = STLPIPS.from_package()
    except PrivheadError as exc:
        metric = None
        if notes is not None:
            notes.append(f"ST-LPIPS skipped: {exc}")
    rgb_a, rgb_b, maps_a, maps_b, labels = [], [], [], [], []
    for name, impostor in pairs:
        a = originals.images[originals.names.index(name)]
        b = impostor.images[impostor.names.index(name)]
        work_a, work_b = _working_rgb(a, operator_cfg), _working_rgb(b, operator_cfg)
        if work_a.shape != work_b.shape:
            continue
        rgb_a.append(work_a)
        rgb_b.append(work_b)
        maps_a.append(apply_operator(work_a[None], operator_cfg)[0])
        maps_b.append(apply_operator(work_b[None], operator_cfg)[0])
        labels.append({"view": name, "impostor": impostor.identity})
    if not labels:
        return None
    all_maps = torch.cat([torch.stack(maps_a), torch.stack(maps_b)])
    scale = float(torch.quantile(all_maps.flatten(), 0.99).clamp_min(1e-12))
    grey_a = (torch.stack(maps_a) / scale).clamp(0, 1).repeat(1, 3, 1, 1)
    grey_b = (torch.stack(maps_b) / scale).clamp(0, 1).repeat(1, 3, 1, 1)
    rgb_a_t, rgb_b_t = torch.stack(rgb_a), torch.stack(rgb_b)
    result: dict = {"n_pairs": len(labels), "map_scale": scale, "metric_notes": []}
    for key, (x, y) in {"protected": (grey_a, grey_b), "rgb": (rgb_a_t, rgb_b_t)}.items():
        stats = {}
        if metric is not None and min(x.shape[-2:]) >= 32:
            stats["st_lpips"] = _mean_std(metric(x, y).numpy())
        x_np, y_np = x.permute(0, 2, 3, 1).numpy(), y.permute(0, 2, 3, 1).numpy()
        stats["ssim"] = _mean_std([ssim(p, q) for p, q in zip(x_np, y_np, strict=True)])
        stats["psnr"] = _mean_std([psnr(p, q) for p, q in zip(x_np, y_np, strict=True)])
        result[key] = stats
    result["pairs"] = labels
    return result


def _mean_std(values) -> dict:
    """Mean, standard deviation and count of the finite values, and the values themselves."""
    values = np.asarray(values, dtype=np.float64)
    finite = values[np.isfinite(values)]
    return {
        "mean": float(finite.mean()) if finite.size else float("nan"),
        "std": float(finite.std()) if finite.size else float("nan"),
        "n": int(finite.size),
        "values": [float(v) for v in values],
    }


def _working_rgb(image: np.ndarray, cfg: OperatorConfig) -> torch.Tensor:
    """[3, h, w] the image area-downsampled to the operator's working size."""
    tensor = torch.from_numpy(np.ascontiguousarray(image, dtype=np.float32)).permute(2, 0, 1)
    width, height = cfg.working_size(tensor.shape[-1], tensor.shape[-2])
    return downsample_area(tensor[None], (height, width))[0]
