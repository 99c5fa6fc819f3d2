"""The identity-free head template (paper Fig. 6, "Template Acquisition"): where to start when a
user has no usable neutral view.

The template is the mean signed distance of many of privhead's own synthetic heads (the built-in
generator varies identity with the seed), sampled on a grid in the canonical head frame
(normalised: head inside the unit sphere, face along +Z, up +Y). Averaging over identities keeps
what all heads share (skull, ears, a nose, a chin) and none of whose face it is: it is neutral by
construction and contains no third-party data. The package ships it
(``privhead/field/template_sdf.npz`` with ``template_sdf.json``: the seed list and the file's
SHA-256); ``privhead template OUT`` regenerates it bit for bit.

A bundle's frame is not the canonical one: :func:`bundle_pose` estimates the rotation from the
cameras (up = the cameras' mean up vector; forward = the mean direction of the protected views,
which are the views that see the face), and :func:`init_from_template` writes the placed template
into the field's grids so that stage 2 starts from it; stage 2 then refines it.
"""

from __future__ import annotations

import hashlib
import io
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from privhead.errors import PrivheadError

TEMPLATE_FILE = Path(__file__).with_name("template_sdf.npz")
TEMPLATE_RECORD = TEMPLATE_FILE.with_suffix(".json")
TEMPLATE_SEEDS = tuple(range(1000, 1024))
"""24 identities; none of them is a seed the tests, the demo or the benchmarks reconstruct."""
TEMPLATE_RESOLUTION = 64
TEMPLATE_BOUND = 1.0


@dataclass(frozen=True)
class HeadTemplate:
    """A signed distance grid in the canonical head frame.

    Attributes:
        sdf: [R, R, R] values at vertex-centred nodes over [-bound, bound]^3, x, y, z index
            order (the layout of :class:`privhead.field.sdf.GridSDF`'s grids).
        bound: half side of the cube.
        seeds: the synthetic identities averaged.
    """

    sdf: torch.Tensor
    bound: float
    seeds: tuple[int, ...]

    def __call__(self, points: torch.Tensor) -> torch.Tensor:
        """[P] template SDF at canonical points (trilinear; linear extrapolation outside)."""
        from privhead.field.grid import trilinear_with_gradient

        grid = self.sdf.to(points.device, points.dtype)
        return trilinear_with_gradient(grid, points, self.bound, with_gradient=False)[0]


def build_template(
    seeds=TEMPLATE_SEEDS, resolution: int = TEMPLATE_RESOLUTION, bound: float = TEMPLATE_BOUND
) -> HeadTemplate:
    """Average the SDFs of the synthetic heads of ``seeds`` on a ``resolution``^3 grid."""
    from privhead.data.synthetic.shape import head_sdf, sample_head_params

    axis = torch.linspace(-bound, bound, resolution, dtype=torch.float64)
    x, y, z = torch.meshgrid(axis, axis, axis, indexing="ij")
    nodes = torch.stack([x, y, z], dim=-1).reshape(-1, 3).float()
    total = torch.zeros(nodes.shape[0], dtype=torch.float64)
    for seed in seeds:
        total += head_sdf(nodes, sample_head_params(int(seed))).double()
    mean = (total / len(seeds)).float().reshape(resolution, resolution, resolution)
    return HeadTemplate(mean, float(bound), tuple(int(s) for s in seeds))


def template_bytes(template: HeadTemplate) -> bytes:
    """The template as a deterministic .npz (float16 values; the same bytes for the same
    template on every machine: entries stored uncompressed with a fixed timestamp, which
    ``np.savez`` does not do)."""
    import zipfile

    arrays = {
        "sdf": template.sdf.numpy().astype(np.float16),
        "bound": np.float32(template.bound),
        "seeds": np.asarray(template.seeds, dtype=np.int64),
    }
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_STORED) as archive:
        for name, array in arrays.items():
            entry = io.BytesIO()
            np.lib.format.write_array(entry, np.asarray(array), allow_pickle=False)
            info = zipfile.ZipInfo(f"{name}.npy", date_time=(1980, 1, 1, 0, 0, 0))
            archive.writestr(info, entry.getvalue())
    return buffer.getvalue()


def write_template(out: Path, template: HeadTemplate | None = None) -> dict:
    """Build (unless given) and write the template and its record; returns the record."""
    template = template or build_template()
    data = template_bytes(template)
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_bytes(data)
    record = {
        "file": out.name,
        "sha256": hashlib.sha256(data).hexdigest(),
        "seeds": list(template.seeds),
        "resolution": int(template.sdf.shape[0]),
        "bound": template.bound,
        "frame": "canonical head frame: normalised (head inside the unit sphere), face +Z, up +Y",
        "generator": "privhead.field.template.build_template (mean SDF of synthetic heads)",
    }
    out.with_suffix(".json").write_text(json.dumps(record, indent=1) + "\n")
    return record


def load_template(path: Path = TEMPLATE_FILE) -> HeadTemplate:
    """Read a template written by :func:`write_template`."""
    try:
        with np.load(Path(path)) as data:
            sdf = torch.from_numpy(data["sdf"].astype(np.float32))
            return HeadTemplate(sdf, float(data["bound"]), tuple(int(s) for s in data["seeds"]))
    except (OSError, KeyError, ValueError) as exc:
        raise PrivheadError(f"Cannot read the head template {path}: {exc}") from None


def bundle_pose(
    all_c2w: torch.Tensor, face_c2w: torch.Tensor, forward: torch.Tensor | None = None
) -> torch.Tensor:
    """Rotation [3, 3] from the canonical head frame to the bundle's normalised frame.

    Args:
        all_c2w: [N, 4, 4] camera-to-world of every view (OpenCV: x right, y down, z forward).
        face_c2w: [M, 4, 4] the views that see the face (the protected ones), M >= 1.
        forward: [3] the face's direction when the bundle records it (``head_forward``); used
            instead of the protected views' mean direction, which is unknown when every view
            around the head is protected.

    Returns:
        R with columns (x, y, z) = the bundle's directions of the canonical +X, +Y (up) and +Z
        (forward, where the face looks).
    """
    if face_c2w.shape[0] == 0:
        raise PrivheadError("The template needs at least one protected (face) view to aim it.")
    up = -all_c2w[:, :3, 1].mean(0)  # image rows run down: camera up is -y
    if up.norm() < 1e-6:
        raise PrivheadError("The cameras' up vectors cancel out: the head's up is unknown.")
    up = up / up.norm()
    if forward is None:  # the head sits at the origin of the normalised frame
        centers = face_c2w[:, :3, 3]
        forward = (centers / centers.norm(dim=-1, keepdim=True).clamp_min(1e-9)).mean(0)
    else:
        forward = forward.to(up.dtype) / forward.norm().clamp_min(1e-9)
    forward = forward.to(up.dtype)
    forward = forward - (forward @ up) * up
    # A mean of unit directions shorter than 0.2: the face views surround the head.
    if forward.norm() < 0.2:
        raise PrivheadError(
            "The template cannot be aimed: the protected views surround the head and the bundle "
            "records no face direction (head_forward); protect with --forward X,Y,Z."
        )
    forward = forward / forward.norm()
    right = torch.linalg.cross(up, forward)
    return torch.stack([right, up, forward], dim=1)


def init_from_template(
    geometry,
    template: HeadTemplate,
    rotation: torch.Tensor,
    translation: torch.Tensor | None = None,
    value_scale: float = 1.0,
) -> int:
    """Make the field's SDF the template placed by ``x = rotation c + translation`` (canonical
    c -> bundle x; ``rotation`` may include a per-axis scale), its values multiplied by
    ``value_scale`` (a scaled template's distances scale too).

    The residual between the placed template and the field's base sphere goes into the finest
    grid level whose resolution does not exceed the template's; the other levels are zeroed.
    Returns the index of the level written.

    Args:
        geometry: a :class:`privhead.field.sdf.GridSDF`.
        template: the canonical template.
        rotation: [3, 3] from :func:`bundle_pose`, or :meth:`TemplatePlacement.linear`.
        translation: [3] (default 0); value_scale: see above.
    """
    resolutions = [int(g.shape[0]) for g in geometry.grids]
    fitting = [k for k, r in enumerate(resolutions) if r <= template.sdf.shape[0]]
    level = fitting[-1] if fitting else 0
    res, bound = resolutions[level], geometry.bound
    grid = geometry.grids[level]
    axis = torch.linspace(-bound, bound, res, device=grid.device, dtype=grid.dtype)
    x, y, z = torch.meshgrid(axis, axis, axis, indexing="ij")
    nodes = torch.stack([x, y, z], dim=-1).reshape(-1, 3)
    linear = rotation.to(grid.device, grid.dtype)
    shift = 0.0 if translation is None else translation.to(grid.device, grid.dtype)
    canonical = (nodes - shift) @ torch.linalg.inv(linear).T  # bundle -> canonical
    placed = value_scale * template(canonical)
    sphere = nodes.norm(dim=-1) - geometry.init_radius
    with torch.no_grad():
        for g in geometry.grids:
            g.zero_()
        grid.copy_((placed - sphere).reshape(res, res, res))
    return level


def _axis_angle_matrix(v: torch.Tensor) -> torch.Tensor:
    """[3, 3] rotation of the axis-angle vector ``v`` (Rodrigues; differentiable, exact at 0)."""
    theta2 = (v * v).sum()
    k = torch.zeros(3, 3, dtype=v.dtype, device=v.device)
    k = k.index_put(
        (torch.tensor([2, 1, 0, 2, 1, 0]), torch.tensor([1, 2, 2, 0, 0, 1])),
        torch.stack([v[0], -v[0], v[1], -v[1], v[2], -v[2]]),
    )
    # sin(t)/t and (1 - cos t)/t^2 by their series near 0, where the closed form is 0 / 0.
    theta = theta2.clamp_min(1e-12).sqrt()
    small = theta2 < 1e-8
    a = torch.where(small, 1 - theta2 / 6, torch.sin(theta) / theta)
    b = torch.where(small, 0.5 - theta2 / 24, (1 - torch.cos(theta)) / theta2.clamp_min(1e-12))
    return torch.eye(3, dtype=v.dtype, device=v.device) + a * k + b * (k @ k)


class TemplatePlacement(torch.nn.Module):
    """The template as a geometry whose placement is learned: f(x) = s T(A^-1 (x - t)).

    ``A = exp([w]) R diag(exp(log_scale))``: R from :func:`bundle_pose`, a small learned
    rotation ``w`` (axis-angle), a per-axis scale; ``t`` a translation; ``s`` the geometric mean
    of the scales (the distances of a scaled template, exact for a uniform scale). It has the
    interface the renderer and the trainer use of :class:`privhead.field.sdf.GridSDF`
    (``forward`` with the analytic gradient, ``sdf``, ``coarse_sdf_fn``; no grid smoothness), so the
    first steps of a template run fit where the head is, how large and how turned, through the
    stage's own losses; :meth:`bake` then writes the placed template into the grids.

    Args:
        template: the canonical template; rotation: [3, 3] canonical -> bundle;
        num_features: the geometry features the colour network expects (zeros here).
    """

    def __init__(self, template: HeadTemplate, rotation: torch.Tensor, num_features: int):
        super().__init__()
        self.template = template
        self.register_buffer("rotation", rotation.detach().float().clone())
        self.register_buffer("template_sdf", template.sdf.float().clone())
        self.log_scale = torch.nn.Parameter(torch.zeros(3))
        self.translation = torch.nn.Parameter(torch.zeros(3))
        self.turn = torch.nn.Parameter(torch.zeros(3))
        self.num_features = num_features
        self.register_buffer("active_levels", torch.tensor(num_features))

    @property
    def num_levels(self) -> int:
        return self.num_features

    def linear(self) -> torch.Tensor:
        """[3, 3] A (canonical -> bundle, without the translation)."""
        return _axis_angle_matrix(self.turn) @ self.rotation @ torch.diag(self.log_scale.exp())

    def value_scale(self) -> torch.Tensor:
        return self.log_scale.mean().exp()

    def forward(self, points: torch.Tensor, with_gradient: bool = True):
        from privhead.field.grid import trilinear_with_gradient

        inverse = torch.linalg.inv(self.linear())
        canonical = (points - self.translation) @ inverse.T
        value, grad = trilinear_with_gradient(
            self.template_sdf, canonical, self.template.bound, with_gradient
        )
        s = self.value_scale()
        gradient = None if grad is None else s * grad @ inverse  # A^-T grad, row form
        features = torch.zeros(points.shape[0], self.num_features, device=points.device)
        return s * value, gradient, features

    def sdf(self, points: torch.Tensor) -> torch.Tensor:
        return self.forward(points, with_gradient=False)[0]

    def coarse_sdf_fn(self, resolution: int):
        return self.sdf

    @torch.no_grad()
    def bake(self, geometry) -> int:
        """Write the placed template into ``geometry``'s grids (:func:`init_from_template`)."""
        return init_from_template(
            geometry,
            self.template,
            self.linear().detach(),
            self.translation.detach(),
            float(self.value_scale()),
        )
