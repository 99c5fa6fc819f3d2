"""The face split from the poses: detector OR angle to the voted face direction."""

from types import SimpleNamespace

import numpy as np

from privhead.data.synthetic.rig import ring_cameras
from privhead.prepare.layout import face_direction, split_views


def test_face_direction_is_the_vote_of_the_detected_views():
    cameras, azimuths, _ = ring_cameras(30, 32, 32)
    center = np.zeros(3)
    frontal = {i: 0.9 for i, a in enumerate(azimuths) if abs(a) < 40}
    forward = face_direction(cameras, center, frontal)
    assert forward[2] > 0.95  # the rig's face looks along +Z


def test_split_uses_detector_or_angle():
    cameras, azimuths, _ = ring_cameras(30, 32, 32)
    center = np.zeros(3)
    frontal = [i for i, a in enumerate(azimuths) if abs(a) < 40]
    odd = 17  # a back view where a detector (say, wrongly) fires: still protected
    detections = {i: 0.9 for i in frontal} | {odd: 0.2}
    sensitive, neutral, forward = split_views(cameras, center, detections, angle_deg=110.0)
    assert sensitive[odd] == "face detector"
    directions = cameras.centers / np.linalg.norm(cameras.centers, axis=1, keepdims=True)
    angles = np.degrees(np.arccos(np.clip(directions @ forward, -1, 1)))
    for i in range(len(cameras)):
        if i in detections:
            assert sensitive[i] == "face detector"
        elif angles[i] <= 110.0:
            assert sensitive[i] == "pose"
        else:
            assert i in neutral
    assert set(sensitive) | set(neutral) == set(range(30))
    assert 0 < len(neutral) < 15


def test_no_detection_protects_everything():
    cameras, _, _ = ring_cameras(12, 32, 32)
    sensitive, neutral, forward = split_views(cameras, np.zeros(3), {})
    assert forward is None and neutral == [] and len(sensitive) == 12


def _ring(n: int, elevation_deg: float, radius: float = 3.0) -> np.ndarray:
    az = np.radians(np.arange(n) * 360.0 / n)
    el = np.radians(elevation_deg)
    return radius * np.stack(
        [np.cos(el) * np.sin(az), np.full(n, np.sin(el)), np.cos(el) * np.cos(az)], axis=1
    )


def test_the_vote_is_not_pulled_towards_where_cameras_are_dense():
    # Few cameras low, many high: the firing views' plain mean leans upwards.
    centers = np.concatenate([_ring(10, -20.0), _ring(24, 45.0)])
    cameras = SimpleNamespace(centers=centers)
    unit = centers / np.linalg.norm(centers, axis=1, keepdims=True)
    true = np.array([0.0, 0.0, 1.0])
    firing = {i: 0.9 for i in range(len(centers)) if unit[i] @ true > np.cos(np.radians(95))}
    plain = unit[list(firing)].mean(axis=0)
    plain_error = np.degrees(np.arccos(plain @ true / np.linalg.norm(plain)))
    vote = face_direction(cameras, np.zeros(3), firing)
    error = np.degrees(np.arccos(np.clip(vote @ true, -1, 1)))
    assert plain_error > 10.0  # the bias the contrast removes is real in this layout
    assert error < 3.0
    # Every view fires: nothing to contrast with, the mean of the firing views.
    everything = face_direction(cameras, np.zeros(3), dict.fromkeys(range(len(centers)), 1.0))
    np.testing.assert_allclose(everything, unit.mean(0) / np.linalg.norm(unit.mean(0)))


def test_false_registrations_are_left_out():
    from privhead.data.cameras import Cameras, look_at_c2w
    from privhead.prepare.layout import consistent_registrations

    cameras, _, _ = ring_cameras(12, 32, 32)
    c2w = cameras.c2w.copy()
    c2w[3] = look_at_c2w(c2w[3, :3, 3] * 12.0)  # registered far away, still facing the head
    c2w[7] = look_at_c2w(c2w[7, :3, 3], target=c2w[7, :3, 3] * 2.0)  # facing away from it
    keep, why = consistent_registrations(Cameras(cameras.K, c2w, 32, 32))
    assert sorted(why) == [3, 7] and keep.sum() == 10
    assert "median distance" in why[3] and "away" in why[7]
    keep, why = consistent_registrations(cameras)  # a clean ring keeps every view
    assert keep.all() and not why


def test_canonical_transform_puts_the_head_in_its_own_frame():
    from scipy.spatial.transform import Rotation

    from privhead.data.cameras import Cameras
    from privhead.prepare.layout import _up_direction, canonical_transform

    # The rig (head frame: up +Y, face +Z) seen in an arbitrary SfM frame: turned, moved.
    cameras, azimuths, _ = ring_cameras(30, 32, 32)
    M = np.eye(4)
    M[:3, :3] = Rotation.from_euler("xyz", [150, -40, 70], degrees=True).as_matrix()
    M[:3, 3] = [3.0, -1.0, 7.0]
    sfm = Cameras(cameras.K, M @ cameras.c2w, cameras.width, cameras.height)
    center = M[:3, 3]
    frontal = {i: 0.9 for i, a in enumerate(azimuths) if abs(a) < 40}
    forward = face_direction(sfm, center, frontal)
    up = _up_direction(sfm, None)  # the cameras' mean up, as prepare uses it
    T = canonical_transform(sfm, center, up, forward)
    assert np.allclose(T[:3, :3] @ T[:3, :3].T, np.eye(3)) and np.isclose(np.linalg.det(T), 1)
    back = T @ sfm.c2w  # the rig's own cameras again, up to the vote's error
    assert np.allclose(T[:3, :3] @ center + T[:3, 3], 0)
    turn = np.einsum("nij,nkj->nik", back[:, :3, :3], cameras.c2w[:, :3, :3])
    angles = np.degrees(np.arccos(np.clip((np.trace(turn, axis1=1, axis2=2) - 1) / 2, -1, 1)))
    assert angles.max() < 5
    assert (
        np.abs(back[:, :3, 3] - cameras.c2w[:, :3, 3]).max()
        < 0.05 * np.abs(cameras.c2w[:, :3, 3]).max()
    )
    # without a face direction +Z points to the cameras' mean position; still rigid
    T2 = canonical_transform(sfm, center, up, None)
    assert np.isclose(np.linalg.det(T2[:3, :3]), 1) and np.allclose(T2[:3, :3] @ up, [0, 1, 0])
