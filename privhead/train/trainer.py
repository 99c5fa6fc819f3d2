"""The training loop: stages, optimisers, checkpoints and resume, progress bars with the losses."""

from __future__ import annotations

import contextlib
import dataclasses
import json
import time
from pathlib import Path

import torch

from privhead.config import ReconstructionConfig, StageConfig, config_to_dict
from privhead.data.cameras import pixel_rays
from privhead.errors import PrivheadError
from privhead.field.model import HeadField
from privhead.privacy.operators import gradient_modulus, operator_margin
from privhead.progress import progress_bar
from privhead.render.volume import render_rays, sample_shares
from privhead.train.checkpoint import CHECKPOINT_VERSION, atomic_save, read_checkpoint
from privhead.train.losses import (
    eikonal_loss,
    gradient_loss,
    lipschitz_loss,
    mask_loss,
    normal_smoothness_loss,
    rgb_loss,
)
from privhead.train.views import PyramidLevel, TrainingViews, rgb_pyramid


def plan_stages(cfg: ReconstructionConfig) -> list[StageConfig]:
    """The stages a mode runs, in order (see ``privhead.config.MODES``)."""
    s1, s2 = cfg.stage1, cfg.stage2
    if cfg.mode == "two-stage":
        return [s1, s2]
    # Single-stage modes get the two stages' steps together: the same optimisation budget.
    steps = s1.steps + s2.steps
    if cfg.mode == "full-rgb":
        return [dataclasses.replace(s1, name="full-rgb", steps=steps)]
    if cfg.mode == "gradient-only":
        return [dataclasses.replace(s2, name="gradient-only", steps=steps, coarse_to_fine=True)]
    if cfg.mode == "template":
        # The template already holds the coarse shape: every level is trained from the start,
        # after the first steps have fitted the template's placement.
        fit = min(max(cfg.template_fit_steps, 0), steps - 1)
        main = dataclasses.replace(s2, name="template", steps=steps - fit, coarse_to_fine=False)
        if fit == 0:
            return [main]
        return [dataclasses.replace(main, name="template-fit", steps=fit), main]
    if cfg.mode == "joint":
        return [
            dataclasses.replace(
                s2,
                name="joint",
                steps=steps,
                rgb_weight=s1.rgb_weight,
                mask_weight=s1.mask_weight,
                lr=s1.lr,
                coarse_to_fine=True,
            )
        ]
    raise PrivheadError(f"Unknown mode {cfg.mode!r}.")


@contextlib.contextmanager
def deterministic_algorithms():
    """torch's deterministic algorithms on for the block (warn-only), restored after it.

    The grid gathers' backward (``index_put_`` with accumulation) is otherwise summed in a
    thread-dependent order on the CPU: two training runs with 2 threads differed.
    """
    previous = torch.are_deterministic_algorithms_enabled()
    previous_warn = torch.is_deterministic_algorithms_warn_only_enabled()
    torch.use_deterministic_algorithms(True, warn_only=True)
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(previous, warn_only=previous_warn)


class Trainer:
    """Runs the stages of a reconstruction on prepared :class:`TrainingViews`.

    Args:
        cfg: resolved reconstruction config.
        views: training inputs (on ``device``).
        out_dir: run directory; checkpoints go to ``out_dir / "checkpoints"``.
        device: torch device.
        progress: show progress bars.
    """

    def __init__(
        self,
        cfg: ReconstructionConfig,
        views: TrainingViews,
        out_dir: Path,
        device: torch.device,
        progress: bool = True,
    ) -> None:
        self.cfg = cfg
        self.views = views
        self.device = device
        self.progress = progress
        self.stages = plan_stages(cfg)
        self.checkpoint_dir = Path(out_dir) / "checkpoints"
        self.checkpoint_dir.mkdir(parents=True, exist_ok=True)
        torch.manual_seed(cfg.seed)
        self.field = HeadField(cfg.field).to(device)
        self.stage_index = 0
        self.step = 0
        self.stage_seconds: dict[str, float] = {}
        self.optimizer: torch.optim.Optimizer | None = None
        self._pyramids: dict[tuple, list[PyramidLevel]] = {}
        self._grid_geometry = None
        self.template_placement: dict | None = None
        """Template mode: the fitted placement (scale, translation, turn) once known."""
        self._check_inputs()
        if cfg.mode == "template":
            from privhead.field.template import bundle_pose, init_from_template, load_template

            every = torch.cat([views.rgb_c2w, views.protected_c2w]).float().cpu()
            rotation = bundle_pose(every, views.protected_c2w.float().cpu(), views.head_forward)
            self._template = (load_template(), rotation)
            init_from_template(self.field.geometry, *self._template)
        if views.operator is not None:
            operator = views.operator
            self.margin = operator_margin(operator)
            self.operator_fn = lambda images: gradient_modulus(images, operator, "valid")

    # ---------------------------------------------------------------- setup
    def _check_inputs(self) -> None:
        for stage in self.stages:
            needs_rgb = stage.rgb_weight > 0
            needs_grad = stage.gradient_weight > 0
            if needs_rgb and self.views.num_rgb == 0:
                raise PrivheadError(
                    f"{stage.name} needs RGB views, but there are none (the bundle has no "
                    "neutral view): reconstruct it with --template (or --mode gradient-only)."
                )
            if needs_grad and self.views.num_protected == 0:
                raise PrivheadError(f"{stage.name} needs protected views, but there are none.")

    def _begin_template_fit(self) -> None:
        """Swap the grids for the learnable :class:`TemplatePlacement` (stage template-fit)."""
        from privhead.field.template import TemplatePlacement

        template, rotation = self._template
        self._grid_geometry = self.field.geometry
        self.field.geometry = TemplatePlacement(
            template, rotation, self._grid_geometry.num_levels
        ).to(self.device)

    def _end_template_fit(self) -> None:
        """Write the fitted placement into the grids and put them back."""
        placement = self.field.geometry
        placement.bake(self._grid_geometry)
        turn = float(placement.turn.detach().norm()) * 180.0 / torch.pi
        self.template_placement = {
            "scale": [round(float(v), 4) for v in placement.log_scale.detach().exp()],
            "translation": [round(float(v), 4) for v in placement.translation.detach()],
            "turn_deg": round(turn, 2),
        }
        self.field.geometry = self._grid_geometry
        self._grid_geometry = None

    def _make_optimizer(self, stage: StageConfig) -> torch.optim.Optimizer:
        if self._grid_geometry is not None:  # fitting the template's placement
            placement = list(self.field.geometry.parameters())
            groups = [{"params": placement, "lr": stage.lr, "base_lr": stage.lr}]
        else:
            # Each grid level moves at most about a fixed fraction of its own cell per step:
            # coarse levels shape the head quickly, fine levels only add detail (no speckle).
            coarsest = self.cfg.field.grid_resolutions[0]
            groups = [
                {
                    "params": [grid],
                    "lr": stage.lr * coarsest / res,
                    "base_lr": stage.lr * coarsest / res,
                }
                for grid, res in zip(self.field.geometry.grids, self.cfg.field.grid_resolutions)
            ]
        colour = list(self.field.color.parameters()) + list(self.field.beta.parameters())
        groups.append({"params": colour, "lr": stage.color_lr, "base_lr": stage.color_lr})
        fused = {"fused": True} if self.device.type in ("cpu", "cuda") else {}
        return torch.optim.Adam(groups, betas=(0.9, 0.99), eps=1e-8, **fused)

    def _set_schedule(self, stage: StageConfig, step: int) -> None:
        frac = step / max(stage.steps - 1, 1)
        decay = stage.lr_final_fraction**frac
        for group in self.optimizer.param_groups:
            group["lr"] = group["base_lr"] * decay
        levels = self.field.geometry.num_levels
        if stage.coarse_to_fine and (self.stage_index == 0 or len(self.stages) == 1):
            starts = self.cfg.field.level_start_fraction
            active = sum(1 for s in starts[:levels] if frac >= s) or 1
        else:
            active = levels
        self.field.geometry.active_levels.fill_(active)

    # ---------------------------------------------------------------- losses
    def _render_pixels(
        self,
        K: torch.Tensor,
        c2w: torch.Tensor,
        view_idx: torch.Tensor,
        rows: torch.Tensor,
        cols: torch.Tensor,
        supersample: int,
        extra_points: torch.Tensor | None = None,
    ) -> tuple[dict, dict]:
        """Render pixels as the box average of ``supersample``^2 sub-pixel rays each.

        The images and protected maps are area averages of the scene over each pixel, so the
        renders are too (one ray per pixel centre systematically sharpens edges).

        Args:
            K, c2w: [N, 3, 3] / [N, 4, 4] cameras of the views.
            view_idx, rows, cols: [P] pixel coordinates (integer = pixel centre).
            supersample: sub-pixel rays per pixel along each axis.
            extra_points: [E, 3] points whose SDF gradient is wanted too (the eikonal loss's
                uniform points), evaluated in the same pass over the grids as the samples:
                each grid then receives one dense gradient per step instead of two, and on a
                CPU allocating, zeroing and summing the dense gradients of the 128^3 level
                costs more than the gathers of a few thousand points.

        Returns:
            (dict with ``rgb`` [P, 3] and ``opacity`` [P], :meth:`_samples` of the render,
            with ``extra_gradient`` [E, 3] when ``extra_points`` were given).
        """
        s = supersample
        offsets = (torch.arange(s, device=self.device, dtype=torch.float32) + 0.5) / s - 0.5
        dr, dc = torch.meshgrid(offsets, offsets, indexing="ij")
        sub_rows = (rows.float()[:, None] + dr.reshape(1, -1)).reshape(-1)
        sub_cols = (cols.float()[:, None] + dc.reshape(1, -1)).reshape(-1)
        vi = view_idx[:, None].expand(-1, s * s).reshape(-1)
        origins, directions = pixel_rays(K[vi], c2w[vi], sub_rows, sub_cols)
        query, extra = self.field.query_deferred, {}
        if extra_points is not None:

            def query(points, view_dirs):
                n = points.shape[0]
                # The extra points are never shaded (shade() indexes the samples only).
                dirs = torch.cat([view_dirs, torch.zeros_like(extra_points)])
                sdf, gradient, shade = self.field.query_deferred(
                    torch.cat([points, extra_points]), dirs
                )
                extra["gradient"] = gradient[n:]
                return sdf[:n], gradient[:n], shade

        out = render_rays(
            origins,
            directions,
            query,
            self.field.geometry.coarse_sdf_fn(self.cfg.render.coarse_grid),
            self.field.beta(),
            self.cfg.render,
            jitter=True,
        )
        pixels = {
            "rgb": out["rgb"].reshape(-1, s * s, 3).mean(dim=1),
            "opacity": out["opacity"].reshape(-1, s * s).mean(dim=1),
        }
        samples = self._samples(out)
        if extra_points is not None:
            samples["extra_gradient"] = extra["gradient"]
        return pixels, samples

    @staticmethod
    def _samples(out: dict) -> dict:
        """What the regularisers need of a render: every sample's SDF gradient and point, and
        the segment weights (for the samples' shares of their pixels, when a prior asks)."""
        return {"gradient": out["sdf_gradient"], "points": out["points"], "weights": out["weights"]}

    def _pyramid_level(self, stage: StageConfig) -> PyramidLevel:
        """The RGB pyramid level of the current step (coarse to fine over
        ``stage.pyramid_fraction`` of the stage; the images themselves after that)."""
        key = (stage.pyramid_base, stage.pyramid_min_footprint)
        if key not in self._pyramids:
            field = self.cfg.field
            cell = 2.0 * field.bound / max(field.grid_resolutions)
            self._pyramids[key] = rgb_pyramid(
                self.views, stage.pyramid_base, stage.pyramid_min_footprint * cell
            )
        levels = self._pyramids[key]
        if len(levels) == 1 or stage.pyramid_fraction <= 0:
            return levels[-1]
        frac = self.step / max(stage.steps, 1)
        index = int(frac / stage.pyramid_fraction * len(levels))
        return levels[min(index, len(levels) - 1)]

    def _rgb_terms(self, stage: StageConfig, extra_points=None) -> tuple[dict, dict]:
        level = self._pyramid_level(stage)
        n_views, height, width = level.images.shape[:3]
        n_pixels = max(stage.rays_per_step // stage.supersample**2, 1)
        flat = torch.randint(n_views * height * width, (n_pixels,), device=self.device)
        view_idx = flat // (height * width)
        rows = (flat % (height * width)) // width
        cols = flat % width
        out, samples = self._render_pixels(
            level.K, self.views.rgb_c2w, view_idx, rows, cols, stage.supersample, extra_points
        )
        terms = {}
        if stage.rgb_weight > 0:
            terms["rgb"] = rgb_loss(out["rgb"], level.images.reshape(-1, 3)[flat])
        if stage.mask_weight > 0 and level.masks is not None:
            terms["mask"] = mask_loss(out["opacity"], level.masks.reshape(-1)[flat])
        return terms, samples

    def _patch_terms(self, stage: StageConfig, extra_points=None) -> tuple[dict, dict]:
        views = self.views
        maps = views.protected_maps
        height, width = maps.shape[-2:]
        m = self.margin
        size = min(stage.patch_size, height - 2 * m, width - 2 * m)
        n = size + 2 * m
        b = stage.patches_per_step
        view_idx = torch.randint(views.num_protected, (b,))
        tops = torch.randint(m, height - m - size + 1, (b,))
        lefts = torch.randint(m, width - m - size + 1, (b,))
        offsets = torch.arange(n)
        rows = (tops[:, None, None] - m + offsets[None, :, None]).expand(b, n, n).reshape(-1)
        cols = (lefts[:, None, None] - m + offsets[None, None, :]).expand(b, n, n).reshape(-1)
        vi = view_idx[:, None, None].expand(b, n, n).reshape(-1)
        out, samples = self._render_pixels(
            views.protected_K,
            views.protected_c2w,
            vi.to(self.device),
            rows.to(self.device),
            cols.to(self.device),
            stage.supersample,
            extra_points,
        )
        patches = out["rgb"].reshape(b, n, n, 3).permute(0, 3, 1, 2)
        targets = torch.stack(
            [
                maps[v, t : t + size, l_ : l_ + size]
                for v, t, l_ in zip(view_idx.tolist(), tops.tolist(), lefts.tolist())
            ]
        )[:, None]
        valid = None
        if views.protected_valid is not None:
            valid = torch.stack(
                [
                    views.protected_valid[v, t : t + size, l_ : l_ + size]
                    for v, t, l_ in zip(view_idx.tolist(), tops.tolist(), lefts.tolist())
                ]
            )[:, None]
        return {"grad": gradient_loss(patches, targets, self.operator_fn, valid)}, samples

    def _normal_smoothness(self, stage: StageConfig, samples: list[dict]) -> torch.Tensor:
        """The normal-smoothness prior at up to ``stage.normal_smooth_points`` rendered samples
        that carry a visible share of their pixel (i.e. lie on the surface), each paired with a
        point ``stage.normal_smooth_radius`` away in a random direction."""
        gradient = torch.cat([s["gradient"] for s in samples])
        points = torch.cat([s["points"] for s in samples])
        share = torch.cat([sample_shares(s["weights"].detach()).reshape(-1) for s in samples])
        surface = (share >= 0.02).nonzero()[:, 0]
        if surface.shape[0] > stage.normal_smooth_points:
            pick = torch.randperm(surface.shape[0], device=self.device)
            surface = surface[pick[: stage.normal_smooth_points]]
        offsets = torch.nn.functional.normalize(
            torch.randn(surface.shape[0], 3, device=self.device), dim=-1
        )
        paired = points[surface].detach() + stage.normal_smooth_radius * offsets
        _, gradient_b, _ = self.field.geometry(paired, with_gradient=True)
        return normal_smoothness_loss(gradient[surface], gradient_b)

    def _losses(self, stage: StageConfig) -> dict[str, torch.Tensor]:
        terms: dict[str, torch.Tensor] = {}
        samples = []
        # Eikonal points: the rendered samples plus uniform points in the unit ball, whose
        # gradients the first render computes in its own pass over the grids.
        uniform = torch.rand(4096, 3, device=self.device) * 2 - 1
        uniform = uniform[uniform.norm(dim=-1) < 1.0]
        uses_masks = stage.mask_weight > 0 and self.views.rgb_masks is not None
        if stage.rgb_weight > 0 or (uses_masks and self.views.num_rgb):
            rgb_terms, rendered = self._rgb_terms(stage, uniform)
            terms.update(rgb_terms)
            samples.append(rendered)
        if stage.gradient_weight > 0:
            patch_terms, rendered = self._patch_terms(stage, None if samples else uniform)
            terms.update(patch_terms)
            samples.append(rendered)
        if samples:  # the first render carried the uniform points
            grad_uniform = samples[0]["extra_gradient"]
        else:
            _, grad_uniform, _ = self.field.geometry(uniform, with_gradient=True)
        gradients = [s["gradient"] for s in samples] + [grad_uniform]
        terms["eik"] = eikonal_loss(torch.cat(gradients))
        if stage.normal_smooth_weight > 0 and samples:
            terms["normal"] = self._normal_smoothness(stage, samples)
        if stage.lipschitz_weight > 0:
            bounds = torch.stack([layer.bound() for layer in self.field.color.layers])
            terms["lip"] = lipschitz_loss(bounds)
        # The grids' smoothness prior is added to their gradients after the backward pass
        # (GridSDF.add_smoothness_gradient), not through autograd.
        return terms

    @staticmethod
    def _weights(stage: StageConfig) -> dict[str, float]:
        return {
            "rgb": stage.rgb_weight,
            "mask": stage.mask_weight,
            "grad": stage.gradient_weight,
            "eik": stage.eikonal_weight,
            "lip": stage.lipschitz_weight,
            "smooth": stage.smooth_weight,
            "normal": stage.normal_smooth_weight,
        }

    # ---------------------------------------------------------------- checkpoints
    def save_checkpoint(self, path: Path) -> None:
        atomic_save(
            {
                "version": CHECKPOINT_VERSION,
                "config": config_to_dict(self.cfg),
                "stage_index": self.stage_index,
                "step": self.step,
                "field": self.field.state_dict(),
                "optimizer": None if self.optimizer is None else self.optimizer.state_dict(),
                "stage_seconds": self.stage_seconds,
                "rng": torch.get_rng_state(),
                "scale_mat": self.views.scale_mat.tolist(),
                "operator": None if self.views.operator is None else self.views.operator.to_dict(),
            },
            path,
        )
        (path.parent / "config.json").write_text(json.dumps(config_to_dict(self.cfg), indent=2))

    def load_checkpoint(self, path: Path) -> None:
        state = read_checkpoint(path)
        if state["config"] != config_to_dict(self.cfg):
            raise PrivheadError(
                f"{path} was written with a different config; resume with the same options."
            )
        self.field.load_state_dict(state["field"])
        self.stage_index = state["stage_index"]
        self.step = state["step"]
        self.stage_seconds = state["stage_seconds"]
        torch.set_rng_state(state["rng"])
        if state["optimizer"] is not None and self.stage_index < len(self.stages):
            self.optimizer = self._make_optimizer(self.stages[self.stage_index])
            self.optimizer.load_state_dict(state["optimizer"])

    # ---------------------------------------------------------------- loop
    def run(self, resume: bool = False, on_stage_end=None, on_step=None) -> dict[str, float]:
        """Run (or finish) every stage under :func:`deterministic_algorithms`, so that a seed,
        device and thread count give bit-identical fields and a run resumed from a checkpoint
        equals an uninterrupted one (``tests/train/test_determinism.py``)."""
        with deterministic_algorithms():
            return self._run(resume, on_stage_end, on_step)

    def _run(self, resume: bool = False, on_stage_end=None, on_step=None) -> dict[str, float]:
        """Run (or finish) every stage.

        Args:
            resume: continue from ``checkpoints/last.pt`` when it exists.
            on_stage_end: optional callback ``(stage_name, field)`` after each stage.
            on_step: optional callback ``(stage_name, step, steps, losses: dict[str, float])``
                every 10 steps and at the end of each stage; it may raise to stop the run
                (the last checkpoint stays, so the run can resume).

        Returns:
            seconds per stage.
        """
        last = self.checkpoint_dir / "last.pt"
        if resume and last.exists():
            self.load_checkpoint(last)
        while self.stage_index < len(self.stages):
            stage = self.stages[self.stage_index]
            if stage.name == "template-fit" and self._grid_geometry is None:
                self.step = 0  # the placement is not checkpointed: a resumed fit starts over
                self._begin_template_fit()
            if self.optimizer is None or self.step == 0:
                self.optimizer = self._make_optimizer(stage)
            weights = self._weights(stage)
            start = time.perf_counter() - self.stage_seconds.get(stage.name, 0.0)
            bar = progress_bar(
                total=stage.steps,
                initial=self.step,
                desc=stage.name,
                disable=not self.progress,
                dynamic_ncols=True,
            )
            self.field.train()
            while self.step < stage.steps:
                self._set_schedule(stage, self.step)
                terms = self._losses(stage)
                step_weights = dict(weights)
                frac = self.step / max(stage.steps - 1, 1)
                step_weights["normal"] *= 1.0 - (1.0 - stage.normal_smooth_anneal) * frac
                total = sum(step_weights[k] * v for k, v in terms.items())
                self.optimizer.zero_grad(set_to_none=True)
                total.backward()
                if stage.smooth_weight > 0 and self._grid_geometry is None:
                    terms["smooth"] = self.field.geometry.add_smoothness_gradient(
                        step_weights["smooth"]
                    )
                self.optimizer.step()
                self.step += 1
                bar.update(1)
                if self.step % 10 == 0 or self.step == stage.steps:
                    post = {k: f"{v.item():.4f}" for k, v in terms.items() if k != "lip"}
                    post["beta"] = f"{self.field.beta().item():.4f}"
                    bar.set_postfix(post, refresh=False)
                    if on_step is not None:
                        losses = {k: float(v.item()) for k, v in terms.items()}
                        on_step(stage.name, self.step, stage.steps, losses)
                if (
                    self.step % self.cfg.checkpoint_every == 0
                    and self.step < stage.steps
                    and self._grid_geometry is None
                ):
                    self.stage_seconds[stage.name] = time.perf_counter() - start
                    self.save_checkpoint(last)
            bar.close()
            if self._grid_geometry is not None:
                self._end_template_fit()
            self.stage_seconds[stage.name] = time.perf_counter() - start
            self.stage_index += 1
            self.step = 0
            self.optimizer = None
            self.save_checkpoint(self.checkpoint_dir / f"{stage.name}.pt")
            self.save_checkpoint(last)
            if on_stage_end is not None:
                on_stage_end(stage.name, self.field)
        return dict(self.stage_seconds)
