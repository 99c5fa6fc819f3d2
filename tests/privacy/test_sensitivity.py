"""Neutral / sensitive classification: rule order, the pose rule, safe defaults, extra checks."""

from __future__ import annotations

import numpy as np
import pytest

from privhead.data.cameras import Cameras, similarity
from privhead.data.formats import load_dataset
from privhead.errors import PrivheadError
from privhead.privacy.sensitivity import (
    NEUTRAL,
    SENSITIVE,
    ViewDecision,
    apply_checks,
    classify_views,
    describe_decisions,
    parse_indices,
    parse_vector,
)


def look_at(center, target=(0.0, 0.0, 0.0), up=(0.0, 1.0, 0.0)) -> np.ndarray:
    """[4, 4] OpenCV c2w of a camera at ``center`` looking at ``target``."""
    center = np.asarray(center, float)
    z = np.asarray(target, float) - center
    z /= np.linalg.norm(z)
    x = np.cross(z, -np.asarray(up, float))
    x /= np.linalg.norm(x)
    y = np.cross(z, x)
    c2w = np.eye(4)
    c2w[:3, :3] = np.stack([x, y, z], axis=1)
    c2w[:3, 3] = center
    return c2w


def ring(azimuths_deg, radius=3.0, offset=(0.0, 0.0, 0.0)) -> Cameras:
    """Cameras on a horizontal ring around ``offset``; azimuth 0 is on +Z (the face side)."""
    offset = np.asarray(offset, float)
    centers = [
        offset + radius * np.array([np.sin(np.radians(a)), 0.0, np.cos(np.radians(a))])
        for a in azimuths_deg
    ]
    c2w = np.stack([look_at(c, offset) for c in centers])
    K = np.tile(np.array([[20.0, 0, 7.5], [0, 20.0, 7.5], [0, 0, 1]]), (len(c2w), 1, 1))
    return Cameras(K, c2w, 16, 16)


AZIMUTHS = [0, 60, 100, 120, 180, -120, -100, -60]
# angle to +Z equals |azimuth| on a horizontal ring: > 110 deg at 120, 180, -120
POSE_NEUTRAL = [3, 4, 5]


def kinds(decisions):
    return [d.kind for d in decisions]


def neutral_indices(decisions):
    return [d.index for d in decisions if d.kind == NEUTRAL]


def test_nothing_known_means_every_view_sensitive():
    decisions = classify_views(4, ring([0, 90, 180, 270]))
    assert kinds(decisions) == [SENSITIVE] * 4
    assert {d.reason for d in decisions} == {"default"}


def test_pose_rule_with_given_forward():
    decisions = classify_views(len(AZIMUTHS), ring(AZIMUTHS), forward=[0, 0, 1])
    assert neutral_indices(decisions) == POSE_NEUTRAL
    assert all(d.reason == "pose" for d in decisions)
    assert "180.0 deg > 110 deg" in decisions[4].detail
    # a stricter threshold keeps only the camera right behind the head neutral
    decisions = classify_views(len(AZIMUTHS), ring(AZIMUTHS), forward=[0, 0, 1], threshold_deg=150)
    assert neutral_indices(decisions) == [4]
    # a face looking along +X: the views behind it are those at azimuth -60, -100, -120
    decisions = classify_views(len(AZIMUTHS), ring(AZIMUTHS), forward=[2, 0, 0])
    assert neutral_indices(decisions) == [5, 6, 7]


def test_pose_rule_uses_the_head_centre():
    shift = (5.0, 1.0, -2.0)
    cams = ring(AZIMUTHS, offset=shift)
    # centre from the optical axes, from the scale_mat, or given: all find the shifted head
    assert neutral_indices(classify_views(8, cams, forward=[0, 0, 1])) == POSE_NEUTRAL
    decided = classify_views(8, cams, forward=[0, 0, 1], scale_mat=similarity(shift, 1.0))
    assert neutral_indices(decided) == POSE_NEUTRAL
    decided = classify_views(8, cams, forward=[0, 0, 1], center=shift)
    assert neutral_indices(decided) == POSE_NEUTRAL
    # a wrong centre (far in front of the face) makes every camera look "behind" it
    decided = classify_views(8, cams, forward=[0, 0, 1], center=(5.0, 1.0, 50.0))
    assert neutral_indices(decided) == list(range(8))


def test_views_json_beats_pose_and_pose_fills_gaps():
    meta = {
        "forward": [0, 0, 1],
        "sensitive_threshold_deg": 110.0,
        "neutral_indices": [4, 2],
        "sensitive_indices": [3, 0],
    }
    decisions = classify_views(8, ring(AZIMUTHS), views_meta=meta)
    by_index = {d.index: d for d in decisions}
    assert (by_index[2].kind, by_index[2].reason) == (NEUTRAL, "views.json")
    assert (by_index[3].kind, by_index[3].reason) == (SENSITIVE, "views.json")
    assert (by_index[5].kind, by_index[5].reason) == (NEUTRAL, "pose")  # forward from views.json
    assert (by_index[1].kind, by_index[1].reason) == (SENSITIVE, "pose")
    # without cameras the pose rule cannot run: unlisted views fall back to sensitive
    decisions = classify_views(8, None, views_meta=meta)
    assert neutral_indices(decisions) == [2, 4]
    assert decisions[5].reason == "default"


def test_pose_rule_only_runs_when_needed():
    # parallel optical axes: the head centre cannot be derived from the cameras
    c2w = np.stack([np.eye(4)] * 3)
    c2w[:, 0, 3] = [-1.0, 0.0, 1.0]
    cams = Cameras(np.tile(np.eye(3), (3, 1, 1)), c2w, 16, 16)
    meta = {"forward": [0, 0, -1], "neutral_indices": [1], "sensitive_indices": [0, 2]}
    assert neutral_indices(classify_views(3, cams, views_meta=meta)) == [1]
    with pytest.raises(PrivheadError, match="head centre is unknown"):
        classify_views(3, cams, views_meta={"forward": [0, 0, -1]})
    # given a centre in front of the cameras, they all look at the face (forward points at them)
    decisions = classify_views(3, cams, forward=[0, 0, -1], center=[0, 0, 5])
    assert kinds(decisions) == [SENSITIVE] * 3
    decisions = classify_views(3, cams, forward=[0, 0, 1], center=[0, 0, 5])
    assert kinds(decisions) == [NEUTRAL] * 3


def test_views_json_per_view_flags():
    meta = {"views": [{"index": i, "file": f"{i:03d}.png", "sensitive": i < 2} for i in range(3)]}
    decisions = classify_views(3, views_meta=meta, names=["000", "001", "002"])
    assert kinds(decisions) == [SENSITIVE, SENSITIVE, NEUTRAL]
    with pytest.raises(PrivheadError, match="does not match"):
        classify_views(3, views_meta=meta, names=["000", "002", "001"])


def test_user_lists_win():
    meta = {"neutral_indices": [3, 4, 5], "sensitive_indices": [0, 1, 2, 6, 7]}
    # an explicit neutral list is complete: unlisted views are sensitive, whatever views.json says
    decisions = classify_views(8, ring(AZIMUTHS), neutral=[0, 4], views_meta=meta)
    assert neutral_indices(decisions) == [0, 4]
    assert all(d.reason == "user" for d in decisions)
    assert decisions[3].detail == "not in the user's neutral list"
    # a sensitive list only adds protection; the other views follow the next rules
    decisions = classify_views(8, ring(AZIMUTHS), sensitive=[4], views_meta=meta)
    assert neutral_indices(decisions) == [3, 5]
    assert (decisions[4].reason, decisions[3].reason) == ("user", "views.json")
    decisions = classify_views(8, ring(AZIMUTHS), neutral=[3, 4], sensitive=[0])
    assert neutral_indices(decisions) == [3, 4]


def test_bad_user_input_is_rejected():
    with pytest.raises(PrivheadError, match="both"):
        classify_views(4, neutral=[1], sensitive=[1])
    with pytest.raises(PrivheadError, match="out of range"):
        classify_views(4, neutral=[4])
    with pytest.raises(PrivheadError, match="describes 30 views"):
        classify_views(4, views_meta={"n_views": 30, "neutral_indices": [1]})
    with pytest.raises(PrivheadError, match="both neutral and sensitive"):
        classify_views(4, views_meta={"neutral_indices": [1], "sensitive_indices": [1]})
    with pytest.raises(PrivheadError, match="nonzero"):
        classify_views(4, ring([0, 90, 180, 270]), forward=[0, 0, 0])
    with pytest.raises(PrivheadError, match="180"):
        classify_views(4, ring([0, 90, 180, 270]), forward=[0, 0, 1], threshold_deg=200)


def test_checks_only_add_protection():
    def face_detector(index):
        return "face found" if index in (0, 4) else None

    decisions = classify_views(8, ring(AZIMUTHS), forward=[0, 0, 1], checks=[face_detector])
    assert neutral_indices(decisions) == [3, 5]
    assert (decisions[4].reason, decisions[4].detail) == ("face_detector", "face found")
    # view 0 was already sensitive by pose: the check does not re-label it
    assert decisions[0].reason == "pose"
    # a check that flags nothing changes nothing; a sensitive view never becomes neutral
    before = [ViewDecision(0, SENSITIVE, "user"), ViewDecision(1, NEUTRAL, "user")]
    assert apply_checks(before, [lambda i: None]) == before


def test_describe_and_parse():
    decisions = classify_views(8, ring(AZIMUTHS), forward=[0, 0, 1], sensitive=[4])
    lines = describe_decisions(decisions)
    assert lines[0] == "neutral: 2 views (pose: 3, 5)"
    assert lines[1] == "sensitive: 6 views (pose: 0, 1, 2, 6, 7; user: 4)"
    assert parse_indices("3, 4,5") == [3, 4, 5]
    assert parse_indices("4-6,13") == [4, 5, 6, 13]
    assert parse_indices(None) is None
    with pytest.raises(PrivheadError, match="--neutral"):
        parse_indices("3;4", "--neutral")
    assert parse_vector("0,0,-1") == [0.0, 0.0, -1.0]
    with pytest.raises(PrivheadError, match="three numbers"):
        parse_vector("1,2")


def test_pose_rule_reproduces_the_shared_views_json(shared_head):
    head = shared_head
    dataset = load_dataset(head)
    from_json = classify_views(len(dataset), dataset.cameras, views_meta=dataset.views)
    assert neutral_indices(from_json) == sorted(dataset.views["neutral_indices"])
    assert {d.reason for d in from_json} == {"views.json"}
    by_pose = classify_views(
        len(dataset), dataset.cameras, forward=dataset.views["forward"], scale_mat=dataset.scale_mat
    )
    assert kinds(by_pose) == kinds(from_json)
    assert {d.reason for d in by_pose} == {"pose"}
