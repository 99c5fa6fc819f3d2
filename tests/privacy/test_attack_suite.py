"""The attack suite can tell private from not: every attack re-identifies people behind a
deliberately weak operator (no downsampling), and the metrics are what they claim."""

import numpy as np
import pytest

from privhead.privacy.audit.attacks import InversionConfig
from privhead.privacy.audit.identify import (
    fuse_views,
    identification_metrics,
    rank1_hits,
    roc_auc,
    threshold_at_far,
)
from privhead.privacy.audit.suite import (
    ATTACKS,
    CHANCE_ROW,
    ORIGINALS_ROW,
    FaceSample,
    SuiteConfig,
    run_attack_suite,
    suite_table,
)
from privhead.privacy.faces.detect import FaceDetection, FaceDetector
from privhead.privacy.faces.recognize import FaceRecognizer
from privhead.privacy.operators import OperatorConfig, gradient_modulus


class WholeImageDetector(FaceDetector):
    """Test double: the face is the whole image."""

    name = "whole"

    def detect(self, image):
        h, w = np.asarray(image).shape[:2]
        return [FaceDetection((0.0, 0.0, float(w), float(h)), 1.0, self.name)]


class EdgeRecognizer(FaceRecognizer):
    """Test double of a face recogniser: identity = the layout of strong edges at 16 px."""

    name = "edges"
    metric = "cosine"
    threshold = 0.3

    def embed(self, image, detection):
        import torch

        x = torch.from_numpy(np.ascontiguousarray(image, dtype=np.float32)).permute(2, 0, 1)
        x = torch.nn.functional.interpolate(x[None], size=(16, 16), mode="area")
        g = gradient_modulus(x.mean(1, keepdim=True), OperatorConfig.paper(), padding="replicate")
        v = g.flatten().double().numpy()
        return (v - v.mean()) / max(v.std(), 1e-9)


def _identity_field(rng, size=48):
    """A person: a few random blobs of colour (structure that edges reveal)."""
    yy, xx = np.mgrid[0:size, 0:size] / size
    image = np.full((size, size, 3), 0.5, dtype=np.float32)
    for _ in range(4):
        cy, cx, r = rng.uniform(0.2, 0.8), rng.uniform(0.2, 0.8), rng.uniform(0.08, 0.2)
        blob = ((yy - cy) ** 2 + (xx - cx) ** 2 < r * r).astype(np.float32)
        image += blob[..., None] * rng.uniform(-0.35, 0.35, 3).astype(np.float32)
    return np.clip(image, 0, 1)


def _photo(field, rng):
    noisy = field + rng.normal(0, 0.01, field.shape).astype(np.float32) + rng.uniform(-0.03, 0.03)
    return np.clip(noisy, 0, 1).astype(np.float32)


@pytest.fixture(scope="module")
def people():
    rng = np.random.default_rng(0)
    probes, gallery = [], []
    for k in range(6):
        field = _identity_field(rng)
        for v in range(2):
            probes.append(
                FaceSample(
                    f"p{k}_{v}", f"id{k}", _photo(field, rng), colour_hint=field.mean((0, 1))
                )
            )
        gallery.append(FaceSample(f"g{k}", f"id{k}", _photo(field, rng)))
    return probes, gallery


class _Echo:
    """An 'inverter' that has learnt the identity map: sigma^-1 ~ the template (test double of
    the interface; the learned U-Net itself is tested in test_learned_inverter.py)."""

    def invert(self, maps):
        return [np.repeat((m / max(m.max(), 1e-9))[..., None], 3, axis=2) for m in maps]


def _run(people, operator, attacks=None):
    probes, gallery = people
    cfg = SuiteConfig(
        attacks=attacks, inversion=InversionConfig(steps=200), n_boot=100, exclude_source_photo=True
    )
    return run_attack_suite(
        probes, gallery, operator, [WholeImageDetector()], [EdgeRecognizer()], cfg, _Echo()
    )


def test_every_attack_reidentifies_behind_a_weak_operator(people):
    weak = OperatorConfig.paper(resolution=48)  # no downsampling: the maps keep every edge
    result = _run(people, weak)
    rows = {(r["row"], r["fused"]): r for r in result.rows if r["pose"] == "all"}
    assert rows[(CHANCE_ROW, False)]["rank1"]["value"] == pytest.approx(1 / 6)
    assert rows[(ORIGINALS_ROW, False)]["rank1"]["value"] == 1.0
    for attack in ATTACKS:
        assert rows[(attack, False)]["rank1"]["value"] >= 0.75, attack
        # two views per bundle fused: still far above chance (1/6)
        assert rows[(attack, True)]["rank1"]["value"] >= 0.6, attack
    worst = result.worst_case()
    assert worst["rank1"]["value"] >= 0.75
    assert "| Inversion, grey start | edges |" in suite_table(result)


def test_a_strong_operator_brings_the_inversions_down(people):
    # (Map-to-map matching stays high here by design: these gallery photos are the probes' own
    # pixels plus noise, the "attacker holds the source photo" case no operator resists.)
    attacks = ("inversion_grey", "inversion_template")
    weak = _run(people, OperatorConfig.paper(resolution=48), attacks)
    strong = _run(people, OperatorConfig.paper(resolution=6, blur_sigma=1.5), attacks)

    def rank1(result, row):
        return next(r["rank1"]["value"] for r in result.rows if r["row"] == row and not r["fused"])

    for row in attacks:
        assert rank1(strong, row) < rank1(weak, row) - 0.4, row


def test_rank1_threshold_auc_and_fusion_by_hand():
    d = np.array([[0.1, 0.5, 0.9], [0.4, 0.2, 0.2], [np.inf, np.inf, np.inf], [0.3, 0.1, 0.6]])
    truth = [0, 2, 1, 0]
    hits = rank1_hits(d, truth)
    assert hits.tolist() == [1.0, 0.5, pytest.approx(1 / 3), 0.0]  # hit, tie, guess, miss
    impostor = np.array([0.05, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0])
    assert threshold_at_far(impostor, 0.1) == 0.2  # accepts 0.05 only: 10 %
    assert threshold_at_far(impostor, 0.0) == 0.05
    genuine = np.array([0.1, 0.35, np.inf])
    naive = np.mean([1.0 if g < i else 0.5 if g == i else 0.0 for g in genuine for i in impostor])
    assert roc_auc(genuine, impostor) == pytest.approx(naive)
    fused, fused_truth, names = fuse_views(d, truth, ["a", "a", "b", "c"])
    assert names == ["a", "b", "c"] and fused_truth.tolist() == [0, 1, 0]
    assert np.allclose(fused[0], [0.25, 0.35, 0.55]) and np.isinf(fused[1]).all()
    metrics = identification_metrics(d, truth, ["x", "y", "z", "x"], 0.25, n_boot=200)
    assert metrics["rank1"].value == pytest.approx(np.mean(hits))
    assert metrics["tar"].value == pytest.approx(0.5)  # 0.1 and 0.2 < 0.25; inf and 0.3 not
    assert metrics["rank1"].low <= metrics["rank1"].value <= metrics["rank1"].high


def test_worst_case_ignores_rows_too_small_to_decide():
    from privhead.privacy.audit.suite import SuiteResult

    def row(name, n, value):
        est = {"value": value, "low": value, "high": value}
        return {
            "row": name,
            "pose": "all",
            "fused": n < 3,
            "n": n,
            "model": "m",
            "rank1": est,
            "tar": est,
            "auc": est,
        }

    result = SuiteResult(
        [row("chance", 9, 0.1), row("a", 9, 0.3), row("b", 2, 1.0), row("originals", 9, 1.0)],
        ["x"] * 10,
        9,
        {},
    )
    assert result.worst_case()["row"] == "a"
    assert result.worst_case(min_n=1)["row"] == "b"
    assert result.worst_case(rows=["b"]) is None
