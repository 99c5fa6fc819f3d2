"""Privacy levels in `protect` and the attack suite in `audit --gallery`, through the CLI."""

import dataclasses
import json

import pytest
from typer.testing import CliRunner

from privhead.cli import app
from privhead.data.formats import load_dataset, write_image
from privhead.data.synthetic import write_synthetic_head
from privhead.privacy.bundle import read_bundle
from privhead.privacy.levels import LEVELS, leakage_line
from privhead.privacy.operators import PAPER_OPERATOR, OperatorConfig, protect_image

runner = CliRunner()


@pytest.fixture(scope="module")
def heads(tmp_path_factory):
    root = tmp_path_factory.mktemp("heads")
    return [
        write_synthetic_head(root / f"h{s}", seed=s, n_views=6, resolution=64, supersample=1)
        for s in range(3)
    ]


def test_paper_level_reproduces_the_paper_maps_and_warns(heads, tmp_path):
    out = tmp_path / "paper"
    result = runner.invoke(
        app, ["protect", str(heads[0]), str(out), "--privacy", "paper", "--detector", "none"]
    )
    assert result.exit_code == 0, result.output
    assert "warning: " in result.output and "privacy" in result.output
    bundle = read_bundle(out)
    assert bundle.operator == LEVELS["paper"]
    assert LEVELS["paper"] == dataclasses.replace(PAPER_OPERATOR, linear_light=True)
    dataset = load_dataset(heads[0])
    # 64 px photos are not resampled: the level's maps are the paper operator's, bit for bit.
    for k, index in enumerate(bundle.protected_indices):
        expected = protect_image(dataset.images[index], PAPER_OPERATOR)
        assert abs(bundle.protected_maps[k] - expected).max() <= expected.max() / 65535 + 1e-7


def test_levels_and_overrides(heads, tmp_path):
    result = runner.invoke(
        app,
        [
            "protect",
            str(heads[0]),
            str(tmp_path / "s"),
            "--privacy",
            "strong",
            "--detector",
            "none",
            "--resolution",
            "24",
        ],
    )
    assert result.exit_code == 0, result.output
    operator = read_bundle(tmp_path / "s").operator
    assert operator.resolution == 24 and operator.levels == LEVELS["strong"].levels
    assert "privacy" in result.output.splitlines()[-1]
    bad = runner.invoke(app, ["protect", str(heads[0]), str(tmp_path / "x"), "--privacy", "max"])
    assert bad.exit_code == 1 and "Unknown privacy level 'max'" in bad.output
    assert not (tmp_path / "x").exists()


def test_leakage_line_quotes_a_measurement_or_says_there_is_none(tmp_path):
    record = {
        "operator": LEVELS["paper"].to_dict(),
        "n_faces": 20,
        "n_identities": 17,
        "chance": 1 / 17,
        "criterion_holds": False,
        "other_photo": {"attack": "X", "rank1": {"value": 0.6, "low": 0.2, "high": 1.0}},
        "source_photo": {"attack": "Y", "rank1": {"value": 1.0, "low": 1.0, "high": 1.0}},
        "commit": "abc",
    }
    path = tmp_path / "leakage.json"
    path.write_text(json.dumps({"paper": record}))
    line = leakage_line(LEVELS["paper"], path)
    assert "60%" in line and "chance 6%" in line and "NOT privhead's criterion" in line
    assert "no measurement" in leakage_line(LEVELS["strong"], path)
    assert "custom operator" in leakage_line(OperatorConfig(resolution=17), path)
    assert "custom operator" in leakage_line(PAPER_OPERATOR, path)  # sRGB averaging: no level
    # A record written before linear_light existed measured the sRGB-averaging operator: it
    # does not describe the level now.
    old = dict(record, operator=PAPER_OPERATOR.to_dict())
    del old["operator"]["linear_light"]
    path.write_text(json.dumps({"paper": old}))
    assert "no measurement" in leakage_line(LEVELS["paper"], path)


def test_audit_gallery_runs_the_suite_and_names_a_missing_subject(heads, tmp_path):
    gallery = tmp_path / "gallery"
    for k, head in enumerate(heads):
        dataset = load_dataset(head)
        frontal = int(json.loads((head / "views.json").read_text())["sensitive_indices"][0])
        write_image(gallery / f"head{k}" / "photo.png", dataset.images[frontal])
    out = tmp_path / "audit"
    result = runner.invoke(
        app,
        [
            "audit",
            str(heads[0]),
            str(out),
            "--gallery",
            str(gallery),
            "--subject",
            "head0",
            "--inversion-steps",
            "5",
        ],
    )
    assert result.exit_code == 0, result.output
    rows = json.loads((out / "suite.json").read_text())
    assert {r["row"] for r in rows} >= {"chance", "originals", "inversion_grey", "map_to_map_fr"}
    assert "strongest attack" in result.output
    missing = runner.invoke(
        app, ["audit", str(heads[0]), str(tmp_path / "a2"), "--gallery", str(gallery)]
    )
    assert missing.exit_code == 1 and "no sub-folder 'h0'" in missing.output


def test_a_level_that_suppresses_falls_back_loudly_without_the_detector(monkeypatch):
    import dataclasses

    import privhead.privacy.levels as levels

    suppressing = dataclasses.replace(levels.LEVELS["standard"], suppress_features=0.35)
    monkeypatch.setitem(levels.LEVELS, "standard", suppressing)
    monkeypatch.setattr(levels, "landmarks_available", lambda: False)
    operator, note = levels.usable_level_operator("standard")
    assert operator == dataclasses.replace(suppressing, suppress_features=0.0)
    assert "WITHOUT" in note and "privhead[audit]" in note
    monkeypatch.setattr(levels, "landmarks_available", lambda: True)
    assert levels.usable_level_operator("standard") == (suppressing, None)
    assert levels.usable_level_operator("paper") == (levels.LEVELS["paper"], None)


def test_linear_light_is_the_default_and_srgb_averaging_an_option(heads, tmp_path):
    args = ["protect", str(heads[0]), "--detector", "none", "--resolution", "32"]
    dataset = load_dataset(heads[0])
    maps = {}
    for flag, linear in (([], True), (["--srgb-average"], False)):
        out = tmp_path / str(linear)
        result = runner.invoke(app, [*args[:2], str(out), *args[2:], *flag])
        assert result.exit_code == 0, result.output
        bundle = read_bundle(out)
        assert bundle.operator.linear_light is linear and bundle.operator.resolution == 32
        index = bundle.protected_indices[0]
        expected = protect_image(dataset.images[index], bundle.operator)
        assert abs(bundle.protected_maps[0] - expected).max() <= expected.max() / 65535 + 1e-7
        maps[linear] = expected
    srgb = protect_image(dataset.images[index], OperatorConfig.paper(resolution=32))
    assert abs(srgb - maps[False]).max() <= 1e-6
    assert abs(maps[True] - maps[False]).max() > 1e-3  # 64 px averaged to 32 px: edges differ
