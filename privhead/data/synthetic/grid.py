"""The head SDF sampled on a grid (narrow band around the surface) and the GT mesh from it.

Third stage (shape -> albedo -> grid -> tracer -> rig -> writer); the tracer finds surfaces in it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from privhead.data.synthetic._threads import single_threaded
from privhead.data.synthetic.shape import HeadParams, _anatomy, head_sdf


@dataclass
class SdfGrid:
    """The head SDF sampled on a cube of nodes.

    Attributes:
        values: [R, R, R] world-unit signed distances indexed [z, y, x] (grid_sample's order).
        bound: the grid spans [-bound, bound]^3 (world units).
    """

    values: torch.Tensor
    bound: float

    @property
    def spacing(self) -> float:
        return 2.0 * self.bound / (self.values.shape[0] - 1)

    def sample(self, points: torch.Tensor) -> torch.Tensor:
        """Trilinearly interpolated SDF at [P, 3] world points -> [P]."""
        coords = (points / self.bound).to(self.values.dtype).view(1, -1, 1, 1, 3)
        out = F.grid_sample(
            self.values[None, None],
            coords,
            mode="bilinear",
            padding_mode="border",
            align_corners=True,
        )
        return out.view(-1)


@single_threaded()
def build_sdf_grid(
    params: HeadParams, resolution: int = 160, bound: float = 1.0, coarse: int = 49
) -> SdfGrid:
    """Sample :func:`head_sdf` on a ``resolution``^3 grid over [-bound, bound]^3.

    The SDF is evaluated exactly on a coarse grid and then on the fine nodes within a band
    around the surface; farther fine nodes keep the coarse grid's interpolation (there only the
    sign and a rough distance matter).
    """
    axis_c = torch.linspace(-bound, bound, coarse, dtype=torch.float32)
    zc, yc, xc = torch.meshgrid(axis_c, axis_c, axis_c, indexing="ij")
    nodes_c = torch.stack([xc, yc, zc], dim=-1).reshape(-1, 3)
    values_c = head_sdf(nodes_c, params).reshape(coarse, coarse, coarse)
    fine = F.interpolate(
        values_c[None, None], size=(resolution,) * 3, mode="trilinear", align_corners=True
    )[0, 0]
    # A fine node within one fine cell of the surface has a coarse interpolation below this.
    band = 1.2 * math.sqrt(3.0) * (2.0 * bound / (coarse - 1) + 2.0 * bound / (resolution - 1))
    idx = torch.nonzero(fine.abs() < band)
    axis = torch.linspace(-bound, bound, resolution, dtype=torch.float32)
    nodes = torch.stack([axis[idx[:, 2]], axis[idx[:, 1]], axis[idx[:, 0]]], dim=-1)
    exact = torch.cat([head_sdf(chunk, params) for chunk in nodes.split(1 << 18)])
    fine[idx[:, 0], idx[:, 1], idx[:, 2]] = exact
    return SdfGrid(fine, bound)


def extract_head_mesh(grid: SdfGrid, params: HeadParams):
    """Marching cubes of the SDF grid (world frame), without the flat cap under the neck.

    Returns:
        A ``trimesh.Trimesh`` with outward-facing triangles.
    """
    import trimesh
    from skimage.measure import marching_cubes

    values = grid.values.numpy()
    verts_zyx, faces, _, _ = marching_cubes(values, level=0.0, spacing=(grid.spacing,) * 3)
    vertices = verts_zyx[:, ::-1] - grid.bound
    faces = faces[:, ::-1]  # swapping x and z mirrors the winding back
    mesh = trimesh.Trimesh(vertices, faces, process=False)
    cut_y = (_anatomy(params).neck_cut_y - params.center_mm[1]) / params.mm_per_unit
    on_cap = np.all(mesh.vertices[mesh.faces][:, :, 1] < cut_y + 0.5 * grid.spacing, axis=1)
    cap = on_cap & (mesh.face_normals[:, 1] < -0.5)
    mesh.update_faces(~cap)
    mesh.remove_unreferenced_vertices()
    return mesh
