"""Face observation on the real studio photos: landmarks, blendshapes, pose, several faces."""

from __future__ import annotations

import numpy as np
import pytest

from sie3d.errors import UsageError
from sie3d.face.observation import BLENDSHAPE_NAMES, N_LANDMARKS
from sie3d.photo import load_photo

from conftest import london_people


def test_observation_fields_on_every_studio_photo(london_observations):
    assert len(london_observations) == 48
    for name, face in london_observations.items():
        assert face.landmarks_px.shape == (N_LANDMARKS, 3) and face.landmarks_px.dtype == np.float32
        assert face.blendshapes.shape == (len(BLENDSHAPE_NAMES),) == (52,)
        assert np.all((face.blendshapes >= 0) & (face.blendshapes <= 1))
        assert face.head_pose.shape == (4, 4) and np.allclose(face.head_pose[3], [0, 0, 0, 1])
        assert face.confidence > 0.6, name  # BlazeFace short-range scores 0.75-0.98 here
        assert face.image_size == (768, 768)
        x0, y0, x1, y1 = face.box
        assert 0 <= x0 < x1 <= 768 and 0 <= y0 < y1 <= 768
        yaw, pitch, roll = face.yaw_pitch_roll_degrees
        assert abs(yaw) < 20 and abs(roll) < 20, (name, yaw, roll)  # frontal studio photos


def test_landmark_geometry_is_anatomical(london_observations):
    for name, face in london_observations.items():
        right_eye, left_eye = face.point("right_iris"), face.point("left_iris")
        nose, chin = face.point("nose_tip"), face.point("chin")
        mouth = (face.point("mouth_left") + face.point("mouth_right")) / 2
        assert right_eye[0] < nose[0] < left_eye[0], name  # subject's right eye is on the image left
        assert max(right_eye[1], left_eye[1]) < nose[1] < mouth[1] < chin[1], name
        assert 0.25 < face.interocular_px / (face.box[2] - face.box[0]) < 0.75, name


def test_smile_scores_higher_on_happy_photos(london_observations):
    people = london_people()
    smile = {name: face.blendshape_dict["mouthSmileLeft"] + face.blendshape_dict["mouthSmileRight"]
             for name, face in london_observations.items()}
    clearly_higher = [p for p in people if smile[f"{p}_happy"] > smile[f"{p}_neutral"] + 0.1]
    assert len(clearly_higher) >= 0.8 * len(people), {p: (smile[f"{p}_neutral"], smile[f"{p}_happy"]) for p in people}


def test_several_faces_largest_first_and_selectable(observer, faces):
    photo = load_photo(faces / "max_group.jpeg")
    all_faces = observer.observe_all(photo)
    assert len(all_faces) >= 2
    areas = [f.box_area for f in all_faces]
    assert areas == sorted(areas, reverse=True) and [f.index for f in all_faces] == list(range(len(all_faces)))
    second, reported = observer.observe(photo, face=1)
    assert second.index == 1 and len(reported) == len(all_faces)
    with pytest.raises(UsageError, match=f"has {len(all_faces)} face"):
        observer.observe(photo, face=len(all_faces))


def test_turned_head_reports_yaw(observer, faces):
    frontal, _ = observer.observe(load_photo(faces / "london_001_neutral.jpg"))
    turned, _ = observer.observe(load_photo(faces / "max_group.jpeg"))
    assert abs(turned.yaw_pitch_roll_degrees[0]) > abs(frontal.yaw_pitch_roll_degrees[0]) + 15
