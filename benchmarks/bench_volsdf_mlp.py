"""Throughput of a VolSDF / IDR-style MLP SDF with an autograd eikonal term (the comparison anchor).

The network is the geometry MLP of IDR / VolSDF: 8 hidden layers of 256 units, softplus
activations (beta 100), the input re-injected (concatenated) before the fifth layer, positional
encoding of x with 6 octaves (3 + 3 * 2 * 6 = 39 inputs), one SDF output plus a 256-d feature.
One measured step is what training does with it per sample: forward, the SDF gradient by
autograd (``create_graph=True``), the eikonal loss on it, and the backward pass through both
(double back-propagation). The script reports samples per second (forward + backward) and, with
``--compare-field``, the privhead field's (``bench_reconstruct.field_throughput``) measured in
the same process and minute, so the ratio is not skewed by other load on the machine.

    python benchmarks/bench_volsdf_mlp.py --seconds 20 --compare-field
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

import _runs
import torch
from torch import nn


class PositionalEncoding(nn.Module):
    """x -> [x, sin(2^k pi x), cos(2^k pi x)] for k < octaves (NeRF / IDR style)."""

    def __init__(self, octaves: int = 6) -> None:
        super().__init__()
        self.register_buffer("scales", (2.0 ** torch.arange(octaves)) * torch.pi)
        self.out_dim = 3 + 3 * 2 * octaves

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        scaled = (x[..., None, :] * self.scales[:, None]).flatten(-2)
        return torch.cat([x, torch.sin(scaled), torch.cos(scaled)], dim=-1)


class VolSDFGeometry(nn.Module):
    """IDR / VolSDF geometry network: 8 x 256, softplus(beta=100), skip at layer 4."""

    def __init__(
        self, width: int = 256, layers: int = 8, octaves: int = 6, skip: int = 4, feature: int = 256
    ) -> None:
        super().__init__()
        self.encoding = PositionalEncoding(octaves)
        self.skip = skip
        d_in = self.encoding.out_dim
        dims = [d_in] + [width] * layers + [1 + feature]
        self.linears = nn.ModuleList()
        for i in range(len(dims) - 1):
            out = dims[i + 1] - d_in if i + 1 == skip else dims[i + 1]
            self.linears.append(nn.Linear(dims[i], out))
        self.activation = nn.Softplus(beta=100)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        encoded = self.encoding(x)
        h = encoded
        for i, linear in enumerate(self.linears):
            if i == self.skip:
                h = torch.cat([h, encoded], dim=-1) / 2**0.5
            h = linear(h)
            if i < len(self.linears) - 1:
                h = self.activation(h)
        return h  # [..., 1 + feature]: SDF, feature


def step(model: VolSDFGeometry, points: torch.Tensor) -> None:
    """Forward, autograd SDF gradient, eikonal + SDF loss, backward (double back-propagation)."""
    x = points.detach().requires_grad_(True)
    out = model(x)
    sdf = out[:, :1]
    (grad,) = torch.autograd.grad(sdf, x, torch.ones_like(sdf), create_graph=True)
    eikonal = ((grad.norm(dim=-1) - 1.0) ** 2).mean()
    loss = sdf.abs().mean() + 0.1 * eikonal + 1e-3 * out[:, 1:].mean()
    model.zero_grad(set_to_none=True)
    loss.backward()


def measure(fn, seconds: float, device: torch.device) -> list[float]:
    """Run ``fn`` once to warm up, then repeatedly for about ``seconds``; per-call times."""
    fn()
    times, deadline = [], time.perf_counter() + seconds
    while time.perf_counter() < deadline or len(times) < 3:
        start = time.perf_counter()
        fn()
        if device.type == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - start)
    return times


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__.splitlines()[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--samples", type=int, default=8192, help="points per step")
    parser.add_argument("--seconds", type=float, default=20.0, help="measuring time")
    parser.add_argument("--device", default="cpu", help="cpu | cuda | auto")
    parser.add_argument(
        "--compare-field",
        action="store_true",
        help="also measure the privhead field (65,536 samples, best of 5) for the ratio",
    )
    parser.add_argument("--json", help="also write the results to this JSON file")
    args = parser.parse_args(argv)

    from privhead.device import resolve_device

    device = resolve_device(args.device)
    torch.manual_seed(0)
    model = VolSDFGeometry().to(device)
    points = ((torch.rand(args.samples, 3, device=device) * 2 - 1) * 0.9).contiguous()
    times = measure(lambda: step(model, points), args.seconds, device)
    best, median = min(times), sorted(times)[len(times) // 2]
    result = {
        "network": "8x256 softplus(100) MLP, skip at layer 4, PE 6 octaves, 1+256 outputs",
        "parameters": sum(p.numel() for p in model.parameters()),
        "samples_per_step": args.samples,
        "steps": len(times),
        "samples_per_s_best": args.samples / best,
        "samples_per_s_median": args.samples / median,
        "machine": _runs.machine_info(str(device)),
        "load_average": os.getloadavg() if hasattr(os, "getloadavg") else None,
        "commit": _runs.git_state()["commit"],
    }
    print(f"machine: {_runs.describe_machine(result['machine'])}; commit {result['commit']}")
    if result["load_average"]:
        load = ", ".join(f"{x:.2f}" for x in result["load_average"])
        print(f"load average (1, 5, 15 min): {load}")
    print(
        f"VolSDF MLP ({result['parameters']:,} parameters), {args.samples} samples per step, "
        f"{len(times)} steps in {sum(times):.1f} s: {result['samples_per_s_best']:,.0f} samples/s "
        f"(best step), {result['samples_per_s_median']:,.0f} (median step)"
    )
    if args.compare_field:
        from bench_reconstruct import field_throughput

        field = field_throughput(str(device))
        result["field_samples_per_s"] = field
        result["ratio_best"] = field / result["samples_per_s_best"]
        print(
            f"privhead field (bench_reconstruct.field_throughput, 65,536 samples, best of 5): "
            f"{field:,.0f} samples/s = {result['ratio_best']:,.0f}x the MLP's best step"
        )
    if args.json:
        with open(args.json, "w") as handle:
            json.dump(result, handle, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
