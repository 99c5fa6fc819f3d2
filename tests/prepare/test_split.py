"""The face split from the poses: detector OR angle to the voted face direction."""

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
