"""Time of the grid SDF's inner loop: the fused C kernel against the torch implementation.

One measured call is what a training step does with the geometry per batch of samples: for
each grid level (16, 32, 64, 128^3 by default), trilinear values and closed-form gradients at
the points, a loss on both, and the backward pass onto the grids. The best of ``--repeats``
is reported for each implementation and thread count, in one process and minute.

    python benchmarks/bench_grid_kernel.py --points 70000 --threads 1,2
"""

from __future__ import annotations

import argparse
import time

import torch

from privhead.field import native
from privhead.field.grid import trilinear_with_gradient_torch


def step_seconds(fn, grids, points, repeats: int) -> float:
    """Best wall time of ``repeats`` forward + backward passes over every level."""

    def once() -> None:
        loss = 0.0
        for grid in grids:
            values, gradient = fn(grid, points, 1.0)
            loss = loss + values.square().sum() + gradient.square().sum()
        loss.backward()

    once()  # warm-up (and, for the kernel, its first-use compile)
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        once()
        best = min(best, time.perf_counter() - start)
    return best


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--points", type=int, default=70_000)
    parser.add_argument("--resolutions", default="16,32,64,128")
    parser.add_argument("--threads", default="1,2", help="comma list of torch thread counts")
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args(argv)
    generator = torch.Generator().manual_seed(0)
    grids = [
        torch.randn(r, r, r, generator=generator).requires_grad_()
        for r in (int(v) for v in args.resolutions.split(","))
    ]
    points = torch.rand(args.points, 3, generator=generator) * 1.6 - 0.8
    candidates = [("torch", trilinear_with_gradient_torch)]
    if native.available():
        candidates.append(("C kernel", native.trilinear))
    else:
        print("the C kernel is not available here (no compiler, or PRIVHEAD_NATIVE=0)")
    previous = torch.get_num_threads()
    print("| implementation | threads | ms per call (best) |\n|---|---|---|")
    try:
        for name, fn in candidates:
            for threads in (int(v) for v in args.threads.split(",")):
                torch.set_num_threads(threads)
                ms = 1000 * step_seconds(fn, grids, points, args.repeats)
                print(f"| {name} | {threads} | {ms:.1f} |")
    finally:
        torch.set_num_threads(previous)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
