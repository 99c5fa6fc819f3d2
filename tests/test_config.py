"""Config presets and the one override mechanism (``section.field=value``)."""

import dataclasses

import pytest

from privhead.config import (
    apply_overrides,
    config_from_dict,
    config_to_dict,
    get_preset,
    resolve_config,
)
from privhead.errors import PrivheadError


def test_overrides_are_typed_and_leave_the_preset_alone():
    preset = get_preset("fast")
    cfg = apply_overrides(
        preset,
        [
            "stage2.steps=900",
            "mesh_resolution=128",
            "field.grid_resolutions=16,32",
            "stage1.coarse_to_fine=false",
            "stage2.lipschitz_weight=0",
            "render.background=0.5",
        ],
    )
    assert cfg.stage2.steps == 900 and isinstance(cfg.stage2.steps, int)
    assert cfg.mesh_resolution == 128
    assert cfg.field.grid_resolutions == (16, 32)
    assert cfg.stage1.coarse_to_fine is False
    assert cfg.stage2.lipschitz_weight == 0.0 and isinstance(cfg.stage2.lipschitz_weight, float)
    assert cfg.render.background == 0.5
    # the preset itself is unchanged, and the result still round-trips through JSON
    assert preset.stage2.steps == 450 and preset.mesh_resolution == 256
    assert config_from_dict(config_to_dict(cfg)) == cfg


@pytest.mark.parametrize(
    "override, message",
    [
        ("stage3.steps=1", "Unknown config key 'stage3.steps'"),
        ("stage2.stepz=1", "Unknown config key 'stage2.stepz'"),
        ("stage2.steps=many", "must be an integer"),
        ("stage1.coarse_to_fine=maybe", "must be true or false"),
        ("stage2=1", "is a section"),
        ("seed.x=1", "is a value, not a section"),
        ("steps", "not of the form"),
    ],
)
def test_bad_overrides_get_one_sentence(override, message):
    with pytest.raises(PrivheadError, match=message):
        apply_overrides(get_preset("tiny"), [override])


def test_resolve_config_applies_mode_seed_then_overrides():
    cfg = resolve_config("tiny", "joint", ["seed=5", "stage1.steps=7"], seed=3)
    assert cfg.mode == "joint" and cfg.seed == 5 and cfg.stage1.steps == 7
    assert resolve_config("tiny", seed=3).seed == 3
    with pytest.raises(PrivheadError, match="Unknown mode"):
        resolve_config("tiny", "three-stage")
    with pytest.raises(PrivheadError, match="Unknown preset"):
        resolve_config("huge")
    assert dataclasses.replace(get_preset("tiny")) == get_preset("tiny")
