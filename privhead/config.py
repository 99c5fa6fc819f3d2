"""Dataclass configs of the reconstruction engine and its named presets.

Presets are never mutated: derive variants with :func:`dataclasses.replace` or, from text such
as ``stage2.steps=900`` (the CLI's ``--set`` and every benchmark), :func:`apply_overrides`.
The resolved config is written as JSON beside every checkpoint and mesh and read back typed
with :func:`config_from_dict`.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from dataclasses import field as dc_field

from privhead.errors import PrivheadError


@dataclass(frozen=True)
class FieldConfig:
    """Geometry (SDF) and colour networks."""

    grid_resolutions: tuple[int, ...] = (16, 32, 64, 128)
    """Side lengths of the dense SDF grids summed on top of the initial sphere (coarse to fine)."""
    level_start_fraction: tuple[float, ...] = (0.0, 0.0, 0.15, 0.35)
    """Fraction of stage-1 steps after which each grid level starts to learn (coarse-to-fine)."""
    bound: float = 1.0
    """Half side of the cube covered by the grids, in normalised units (the unit sphere fits)."""
    init_radius: float = 0.6
    """Radius of the sphere SDF the field starts from (normalised units)."""
    beta_init: float = 0.05
    """Initial VolSDF Laplace scale beta (normalised units)."""
    beta_min: float = 0.002
    """Lower bound of beta."""
    color_frequencies: int = 6
    """Octaves of the Fourier encoding of x fed to the colour network (2^0 .. 2^(n-1) times pi)."""
    color_width: int = 64
    """Hidden width of the Lipschitz colour MLP."""
    color_layers: int = 3
    """Number of hidden layers of the colour MLP."""
    color_lipschitz_init: float = 2.0
    """Initial per-layer Lipschitz bound softplus(m_i) (paper Eq. 7)."""


@dataclass(frozen=True)
class RenderConfig:
    """Ray sampling and volume rendering."""

    coarse_samples: int = 64
    """Uniform samples per ray of the gradient-free pass that locates the surface."""
    fine_samples: int = 16
    """Importance samples per ray evaluated with gradients (plus the near and far bounds)."""
    coarse_grid: int = 64
    """Training renders place their samples with the SDF resampled on one ``coarse_grid``^3
    grid, rebuilt every step (one gather per coarse sample instead of one per level; its
    error, a fraction of a coarse step, only moves where samples go). 0: the exact SDF."""
    shade_threshold: float = 1e-4
    """Samples whose share of a pixel (half the compositing weight of the two segments they
    end) is below this get no colour-network evaluation and count as black: each changes its
    pixel by less than this. 0 shades every sample."""
    chunk_rays: int = 4096
    """Rays per chunk when rendering whole images without gradients."""
    background: float = 0.0
    """Background colour (the datasets have a black background)."""


@dataclass(frozen=True)
class StageConfig:
    """One training stage: which data it sees and the weight of every loss (paper Eq. 9)."""

    name: str = "stage1"
    steps: int = 1000
    """Optimisation steps."""
    rgb_weight: float = 1.0
    """lambda_1: L1 photometric loss on RGB views (Eq. 2)."""
    eikonal_weight: float = 0.1
    """lambda_2: eikonal loss (Eq. 4)."""
    lipschitz_weight: float = 0.0
    """lambda_3: Lipschitz bound of the colour network (Eq. 8)."""
    gradient_weight: float = 0.0
    """lambda_4: L1 loss between sigma(render) and the protected maps (Eq. 5)."""
    mask_weight: float = 0.1
    """Binary cross-entropy of the rendered opacity against the masks of RGB views."""
    smooth_weight: float = 1e-5
    """Weight of the discrete-Laplacian smoothness prior on the SDF grids."""
    normal_smooth_weight: float = 0.0
    """Weight of the normal-smoothness prior: mean squared difference of the unit normals at
    surface samples and at points ``normal_smooth_radius`` away (penalises the kinks of the
    trilinear grids at cell faces). 0: off."""
    normal_smooth_radius: float = 0.01
    """Distance (normalised units) of the paired points of the normal-smoothness prior."""
    normal_smooth_points: int = 4096
    """Surface samples per step used by the normal-smoothness prior."""
    normal_smooth_anneal: float = 1.0
    """The prior's weight falls linearly to this fraction of itself at the stage's last step
    (1: constant)."""
    rays_per_step: int = 2048
    """Rays of RGB views per step (pixels per step = rays_per_step / supersample^2)."""
    patches_per_step: int = 3
    """Patches of protected views per step."""
    patch_size: int = 16
    """Side of a rendered patch in protected-map pixels (the operator margin is added)."""
    supersample: int = 2
    """Rays per pixel along each axis, box-averaged like the area-filtered images and maps."""
    pyramid_base: int = 64
    """RGB views larger than this are first sampled from area-downsampled copies: pyramid
    levels halve the images while their longer side stays >= ``pyramid_base`` px (0: the
    images only). Views of ``pyramid_base`` px or less are unaffected."""
    pyramid_min_footprint: float = 0.0
    """Pyramid levels whose pixels are finer than this many cells of the finest SDF grid
    (the median footprint of a pixel at the normalised frame's centre) are not used: the stage
    trains on the finest level at least this coarse. Detail below a grid cell cannot be held
    by the grids, and the colour network explains it with geometry instead (0: every level,
    the images included)."""
    pyramid_fraction: float = 0.5
    """Fraction of the stage's steps over which the pyramid goes from its coarsest level to the
    images themselves (each level gets an equal share; the rest of the stage is at full size)."""
    lr: float = 0.01
    """Adam learning rate of the SDF grids (of the coarsest level; finer levels scale down)."""
    color_lr: float = 0.003
    """Adam learning rate of the colour network."""
    lr_final_fraction: float = 0.1
    """The learning rates decay exponentially to this fraction at the last step."""
    coarse_to_fine: bool = True
    """Unlock the finer SDF grid levels progressively (``FieldConfig.level_start_fraction``)."""


@dataclass(frozen=True)
class ReconstructionConfig:
    """Everything a reconstruction run needs, as written to ``config.json``."""

    preset: str = "default"
    mode: str = "two-stage"
    """two-stage | full-rgb | gradient-only | joint (see MODES)."""
    field: FieldConfig = dc_field(default_factory=FieldConfig)
    render: RenderConfig = dc_field(default_factory=RenderConfig)
    stage1: StageConfig = dc_field(default_factory=StageConfig)
    stage2: StageConfig = dc_field(
        default_factory=lambda: StageConfig(
            name="stage2",
            rgb_weight=0.0,
            gradient_weight=1.0,
            lipschitz_weight=1e-4,
            mask_weight=0.0,
            normal_smooth_weight=0.1,
        )
    )
    template_fit_steps: int = 0
    """Template mode: the first steps fit only where the template sits (translation, per-axis
    scale, a small turn: ``field.template.TemplatePlacement``) and the colour network, through
    the stage's losses; then the placed template is written into the grids and they train. 0
    (default): the template placed by the cameras alone. Measured on ict_s0 (fast, all views
    protected): 100 fitting steps learned an implausible stretch (scale 0.82 x 1.14 x 0.83) and
    ended worse, 0.00813 vs 0.00774 face Chamfer without the fit (docs/benchmarks.md)."""
    mesh_resolution: int = 512
    """Marching-cubes samples per axis over the normalised cube."""
    keep_largest_component: bool = True
    render_size: int = 128
    """Longer side (px) of the colour and clay renders written at the protected (or, for the
    full-RGB baseline, every) view's pose: ``renders_rgb/`` and ``renders_mesh/``."""
    seed: int = 0
    checkpoint_every: int = 200
    """Steps between checkpoints (each stage also checkpoints at its end)."""


MODES = {
    "two-stage": "stage 1 on neutral RGB views, then stage 2 on protected gradient maps (paper)",
    "full-rgb": "VolSDF baseline: one stage on ALL views as RGB (needs the original dataset), "
    "with the steps of both stages",
    "gradient-only": "ablation: one stage with the gradient loss only, from the initial sphere",
    "joint": "ablation: one stage with neutral RGB and the gradient loss together",
    "template": "paper Fig. 6: one gradient stage started from the identity-free head template "
    "(no neutral view needed), with the steps of both stages",
}


def _preset(steps1: int, steps2: int, mesh: int, **render) -> ReconstructionConfig:
    base = ReconstructionConfig()
    return dataclasses.replace(
        base,
        render=dataclasses.replace(base.render, **render),
        stage1=dataclasses.replace(base.stage1, steps=steps1),
        stage2=dataclasses.replace(base.stage2, steps=steps2),
        mesh_resolution=mesh,
    )


PRESETS: dict[str, ReconstructionConfig] = {
    "tiny": dataclasses.replace(
        _preset(150, 150, 96, coarse_samples=48, fine_samples=12),
        preset="tiny",
        field=dataclasses.replace(FieldConfig(), grid_resolutions=(16, 32, 64)),
    ),
    "fast": dataclasses.replace(_preset(400, 450, 256), preset="fast"),
    "default": dataclasses.replace(_preset(1200, 1200, 512), preset="default"),
    "paper": dataclasses.replace(
        _preset(4000, 3000, 512, coarse_samples=128, fine_samples=32), preset="paper"
    ),
}


def get_preset(name: str) -> ReconstructionConfig:
    """A named preset (tiny, fast, default, paper)."""
    if name not in PRESETS:
        raise PrivheadError(f"Unknown preset {name!r}; choose one of {', '.join(PRESETS)}.")
    return PRESETS[name]


def config_to_dict(cfg) -> dict:
    """A JSON-ready dict of a (nested) config dataclass."""
    return dataclasses.asdict(cfg)


def _from_dict(cls, data: dict):
    kwargs = {}
    fields = {f.name: f for f in dataclasses.fields(cls)}
    for key, value in data.items():
        if key not in fields:
            raise PrivheadError(f"Unknown config field {cls.__name__}.{key}.")
        default = getattr(cls(), key)
        if dataclasses.is_dataclass(default):
            value = _from_dict(type(default), value)
        elif isinstance(default, tuple):
            value = tuple(value)
        kwargs[key] = value
    return cls(**kwargs)


def config_from_dict(data: dict) -> ReconstructionConfig:
    """Read back a config written by :func:`config_to_dict` (typed, validated field names)."""
    return _from_dict(ReconstructionConfig, data)


def _parse_value(text: str, default, key: str):
    """``text`` as the type of ``default`` (bool, int, float, str, or a tuple of those)."""
    text = text.strip()
    if isinstance(default, bool):
        lowered = text.lower()
        if lowered in ("true", "1", "yes", "on"):
            return True
        if lowered in ("false", "0", "no", "off"):
            return False
        raise PrivheadError(f"{key} must be true or false, got {text!r}.")
    if isinstance(default, tuple):
        items = [t for t in text.strip("()[] ").split(",") if t.strip()]
        like = default[0] if default else 0.0
        return tuple(_parse_value(item, like, key) for item in items)
    try:
        if isinstance(default, int):
            return int(text)
        if isinstance(default, float):
            return float(text)
    except ValueError:
        kind = "an integer" if isinstance(default, int) else "a number"
        raise PrivheadError(f"{key} must be {kind}, got {text!r}.") from None
    return text


def apply_overrides(cfg, overrides):
    """A copy of a (nested, frozen) config dataclass with ``section.field=value`` overrides.

    Values are parsed to the type of the field they replace (bool, int, float, str, or a
    comma-separated tuple); the config itself is never mutated.

    Args:
        cfg: a config dataclass, e.g. a :class:`ReconstructionConfig` from :func:`get_preset`.
        overrides: strings such as ``"stage2.steps=900"``, ``"mesh_resolution=256"``,
            ``"field.grid_resolutions=16,32,64"``.

    Returns:
        the new config.

    Raises:
        PrivheadError: malformed text, an unknown key (one sentence naming the known ones), or a
            value of the wrong type.
    """
    for item in overrides or ():
        key, sep, text = str(item).partition("=")
        key = key.strip()
        if not sep or not key:
            raise PrivheadError(f"Override {item!r} is not of the form section.field=value.")
        cfg = _override(cfg, key.split("."), text, key)
    return cfg


def _override(cfg, path: list[str], text: str, key: str):
    known = {f.name for f in dataclasses.fields(cfg)}
    name = path[0]
    if name not in known:
        raise PrivheadError(
            f"Unknown config key {key!r}: {type(cfg).__name__} has {', '.join(sorted(known))}."
        )
    current = getattr(cfg, name)
    if dataclasses.is_dataclass(current):
        if len(path) == 1:
            raise PrivheadError(f"Config key {key!r} is a section; name one of its fields.")
        return dataclasses.replace(cfg, **{name: _override(current, path[1:], text, key)})
    if len(path) > 1:
        raise PrivheadError(f"Config key {key!r}: {name} is a value, not a section.")
    return dataclasses.replace(cfg, **{name: _parse_value(text, current, key)})


def resolve_config(
    preset: str = "default", mode: str = "two-stage", overrides=(), seed: int | None = None
) -> ReconstructionConfig:
    """A preset with its mode, seed and ``section.field=value`` overrides applied (in order).

    Raises:
        PrivheadError: unknown preset, mode or override key, or a malformed value.
    """
    if mode not in MODES:
        raise PrivheadError(f"Unknown mode {mode!r}; choose one of {', '.join(MODES)}.")
    cfg = dataclasses.replace(get_preset(preset), mode=mode)
    if seed is not None:
        cfg = dataclasses.replace(cfg, seed=seed)
    return apply_overrides(cfg, overrides)
