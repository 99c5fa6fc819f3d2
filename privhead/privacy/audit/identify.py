"""Identification metrics an attacker would use: rank-1 in a gallery, true accepts at a false-accept
rate calibrated on the originals, ROC-AUC, each with a bootstrap confidence interval over
identities; and multi-view fusion of one bundle's views.

Everything works on an identity-level distance matrix ``D[p, k]``: the distance of probe ``p``
(an attack's output for one protected view) to gallery identity ``k`` (the smallest distance to
that identity's gallery photos). ``inf`` marks a probe the attack could not embed at all (no face
to recognise): for rank-1 the attacker then guesses (expected hit 1 / N), for TAR it is a miss,
for AUC it ranks below every finite distance.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy.stats import rankdata


def identity_distances(
    pair_distances: np.ndarray, gallery_ids: Sequence[str], identities: Sequence[str]
) -> np.ndarray:
    """[P, N] the smallest distance of each probe to each identity's gallery photos.

    Args:
        pair_distances: [P, G] distances of every probe to every gallery photo (inf allowed).
        gallery_ids: [G] identity of each gallery photo.
        identities: the N gallery identities, in the column order wanted.
    """
    pair_distances = np.asarray(pair_distances, dtype=np.float64)
    gallery_ids = np.asarray(gallery_ids)
    out = np.full((pair_distances.shape[0], len(identities)), np.inf)
    for k, identity in enumerate(identities):
        columns = gallery_ids == identity
        if columns.any():
            out[:, k] = pair_distances[:, columns].min(axis=1)
    return out


def rank1_hits(distances: np.ndarray, truth: Sequence[int]) -> np.ndarray:
    """[P] per probe: 1 when its own identity is the nearest, 1 / t for a t-way tie including it,
    1 / N when the probe has no finite distance (the attacker can only guess).

    Args:
        distances: [P, N] identity-level distances.
        truth: [P] column index of each probe's true identity.
    """
    distances = np.asarray(distances, dtype=np.float64)
    n_ids = distances.shape[1]
    hits = np.zeros(distances.shape[0])
    for p, k in enumerate(truth):
        row = distances[p]
        if not np.isfinite(row).any():
            hits[p] = 1.0 / n_ids
            continue
        best = row.min()
        if row[k] == best:
            hits[p] = 1.0 / np.count_nonzero(row == best)
    return hits


def split_pairs(distances: np.ndarray, truth: Sequence[int]) -> tuple[np.ndarray, np.ndarray]:
    """(genuine [P], impostor [P * (N - 1)]) distances of an identity-level matrix."""
    distances = np.asarray(distances, dtype=np.float64)
    mask = np.zeros(distances.shape, dtype=bool)
    mask[np.arange(distances.shape[0]), np.asarray(truth, dtype=int)] = True
    return distances[mask], distances[~mask]


def threshold_at_far(impostor: np.ndarray, far: float = 0.01) -> float:
    """The largest distance threshold accepting at most ``far`` of the impostor pairs.

    A pair is accepted when its distance is strictly below the threshold. Calibrated on the
    originals (the face recognizer's operating point on real photos), then applied to every
    attack, as an attacker who tunes their system on photos would.
    """
    finite = np.sort(np.asarray(impostor, dtype=np.float64)[np.isfinite(impostor)])
    if finite.size == 0:
        return float("inf")
    allowed = int(np.floor(far * len(impostor)))
    return float(finite[allowed]) if allowed < finite.size else float("inf")


def roc_auc(genuine: np.ndarray, impostor: np.ndarray) -> float:
    """P(a genuine distance < an impostor distance), ties counted half (Mann-Whitney U).

    ``inf`` distances (nothing embedded) tie with each other and lose to every finite one.
    """
    genuine = np.asarray(genuine, dtype=np.float64)
    impostor = np.asarray(impostor, dtype=np.float64)
    if genuine.size == 0 or impostor.size == 0:
        return float("nan")
    ranks = rankdata(np.concatenate([genuine, impostor]))  # inf == inf ties, as wanted
    u_genuine_larger = ranks[: genuine.size].sum() - genuine.size * (genuine.size + 1) / 2.0
    return float(1.0 - u_genuine_larger / (genuine.size * impostor.size))


@dataclass
class Estimate:
    """A value with its 95 % bootstrap confidence interval."""

    value: float
    low: float
    high: float

    def to_dict(self) -> dict:
        return {"value": self.value, "low": self.low, "high": self.high}

    def format(self, percent: bool = True) -> str:
        if not np.isfinite(self.value):
            return "n/a"
        if percent:
            return f"{100 * self.value:.0f}% [{100 * self.low:.0f}, {100 * self.high:.0f}]"
        return f"{self.value:.2f} [{self.low:.2f}, {self.high:.2f}]"


def identification_metrics(
    distances: np.ndarray,
    truth: Sequence[int],
    probe_groups: Sequence[str],
    threshold: float,
    n_boot: int = 1000,
    seed: int = 0,
) -> dict[str, Estimate]:
    """Rank-1, TAR at the calibrated threshold and ROC-AUC, with bootstrap CIs over identities.

    Args:
        distances: [P, N] identity-level distances of the probes.
        truth: [P] column of each probe's identity.
        probe_groups: [P] the resampling unit of each probe (its identity), so the views of one
            person are resampled together.
        threshold: accept a pair when its distance is below this (:func:`threshold_at_far` on the
            originals).
        n_boot: bootstrap resamples.
        seed: bootstrap seed.

    Returns:
        {"rank1", "tar", "auc"}: :class:`Estimate` each (fractions in [0, 1]).
    """
    distances = np.asarray(distances, dtype=np.float64)
    truth = np.asarray(truth, dtype=int)
    groups = np.asarray(probe_groups)
    hits = rank1_hits(distances, truth)
    genuine_all = distances[np.arange(len(truth)), truth]

    def stats(rows: np.ndarray) -> tuple[float, float, float]:
        genuine, impostor = split_pairs(distances[rows], truth[rows])
        return (
            float(hits[rows].mean()),
            float(np.mean(genuine_all[rows] < threshold)),
            roc_auc(genuine, impostor),
        )

    point = stats(np.arange(len(truth)))
    unique = np.unique(groups)
    members = [np.flatnonzero(groups == g) for g in unique]
    rng = np.random.default_rng(seed)
    samples = []
    for _ in range(n_boot):
        pick = rng.integers(0, len(unique), len(unique))
        samples.append(stats(np.concatenate([members[i] for i in pick])))
    samples = np.asarray(samples)
    out = {}
    for j, key in enumerate(("rank1", "tar", "auc")):
        column = samples[:, j][np.isfinite(samples[:, j])]
        low, high = np.percentile(column, [2.5, 97.5]) if column.size else (np.nan, np.nan)
        out[key] = Estimate(point[j], float(low), float(high))
    return out


def fuse_views(
    distances: np.ndarray, truth: Sequence[int], bundles: Sequence[str]
) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Multi-view fusion: one row per bundle, per identity the mean of its views' finite distances.

    An attacker holding a bundle combines the evidence of all its protected views. Distances
    the attack could not compute (inf) are left out of each mean; an identity no view reached
    stays ``inf``.

    Returns:
        (fused [B, N] distances, [B] truth column, [B] bundle names).
    """
    distances = np.asarray(distances, dtype=np.float64)
    truth = np.asarray(truth, dtype=int)
    names = list(dict.fromkeys(bundles))
    fused, fused_truth = [], []
    bundles = np.asarray(bundles)
    for name in names:
        rows = distances[bundles == name]
        finite = np.isfinite(rows)
        counts = finite.sum(axis=0)
        sums = np.where(finite, rows, 0.0).sum(axis=0)
        fused.append(np.where(counts > 0, sums / np.maximum(counts, 1), np.inf))
        fused_truth.append(int(truth[bundles == name][0]))
    return np.asarray(fused), np.asarray(fused_truth), names
