"""How close the engine's SDF grids can get to a head when fitted to its ground truth directly.

No images: ``GridSDF`` is trained with Adam on points moved along the ground truth's normals
(Gaussian offsets, sigma ``--offset`` normalised units; target = the signed offset), an
eikonal term on uniform points and a normal-alignment term, then extracted at 512^3 as a
reconstruction is and scored with :func:`privhead.eval.metrics.face_chamfer`. The result is the
floor of the representation under the project's metric (docs/benchmarks.md, session 14).

    python benchmarks/grid_floor.py ../shared/data/heads/ict_s0/r64_v30 --grids 16,32,64,128 \\
        --steps 1500 --out runs/grid_floor/s0_128.ply
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch
import trimesh

from privhead.config import FieldConfig
from privhead.data.cameras import check_similarity, denormalize_points
from privhead.eval.metrics import face_chamfer
from privhead.field.sdf import GridSDF
from privhead.mesh.extract import extract_mesh, keep_largest_component


def fit(dataset: Path, grids: tuple[int, ...], steps: int, offset: float, batch: int = 32768):
    scale_mat = np.load(dataset / "cameras.npz")["scale_mat_0"]
    center, scale = check_similarity(scale_mat)
    gt = trimesh.load(dataset / "gt_mesh.ply", process=False)
    points, faces = trimesh.sample.sample_surface(gt, 2_000_000, seed=0)
    surface = torch.tensor((points - center) / scale, dtype=torch.float32)
    normals = torch.tensor(gt.face_normals[faces], dtype=torch.float32)
    model = GridSDF(FieldConfig(grid_resolutions=grids))
    base_lr = [0.01 / 2**level for level in range(len(grids))]
    optimizer = torch.optim.Adam(
        [{"params": [g], "lr": lr} for g, lr in zip(model.grids, base_lr, strict=True)]
    )
    generator = torch.Generator().manual_seed(0)
    start = time.perf_counter()
    for step in range(steps):
        index = torch.randint(0, len(surface), (batch,), generator=generator)
        shift = torch.randn(batch, generator=generator) * offset
        near = surface[index] + shift[:, None] * normals[index]
        uniform = torch.rand(4096, 3, generator=generator) * 2 - 1
        sdf, gradient, _ = model(torch.cat([near, uniform]))
        loss = (
            (sdf[:batch] - shift).abs().mean()
            + 0.1 * ((gradient.norm(dim=-1) - 1) ** 2).mean()
            + 0.1 * (1 - torch.cosine_similarity(gradient[:batch], normals[index], dim=-1)).mean()
        )
        optimizer.zero_grad()
        loss.backward()
        for group, lr in zip(optimizer.param_groups, base_lr, strict=True):
            group["lr"] = lr * 0.1 ** (step / steps)
        optimizer.step()
        if step % 500 == 0:
            print(f"step {step}: loss {loss.item():.5f}, {time.perf_counter() - start:.0f} s")
    return model, scale_mat, time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("dataset", type=Path, help="a shared head (gt_mesh.ply, cameras.npz)")
    parser.add_argument("--grids", default="16,32,64,128", help="grid resolutions")
    parser.add_argument("--steps", type=int, default=1500)
    parser.add_argument("--offset", type=float, default=0.01)
    parser.add_argument("--out", type=Path, required=True, help="mesh to write (.ply)")
    args = parser.parse_args()
    torch.set_num_threads(2)
    grids = tuple(int(r) for r in args.grids.split(","))
    model, scale_mat, seconds = fit(args.dataset, grids, args.steps, args.offset)

    def sdf_fn(p: torch.Tensor) -> torch.Tensor:
        return torch.maximum(model.sdf(p), p.norm(dim=-1) - 1.0)

    with torch.no_grad():
        mesh = keep_largest_component(extract_mesh(sdf_fn, resolution=512, progress=False))
    mesh.vertices = denormalize_points(np.asarray(mesh.vertices), scale_mat)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    mesh.export(args.out)
    scores = face_chamfer(args.out, args.dataset)
    keep = ("chamfer", "surface_chamfer", "surface_accuracy", "surface_completeness")
    report = {k: scores[k] for k in keep} | {
        "normal_error_deg": scores["normal_error_deg"],
        "grids": grids,
        "steps": args.steps,
        "fit_seconds": seconds,
    }
    print(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
