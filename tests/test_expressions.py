"""Emotion prototypes of the expression space."""

from __future__ import annotations

import numpy as np
import pytest

from sie3d.expressions import EMOTIONS, PROTOTYPES, coefficients, on_top_of_rest, prototype, with_gaze
from sie3d.head.names import ICT_NAMES


def test_every_emotion_has_a_prototype_made_of_ict_shapes():
    assert set(PROTOTYPES) == set(EMOTIONS) and len(EMOTIONS) == 7
    for emotion in EMOTIONS:
        vector = prototype(emotion)
        assert vector.shape == (53,) and vector.min() >= 0 and vector.max() <= 1
        assert (vector.sum() == 0) == (emotion == "neutral")


@pytest.mark.parametrize(("emotion", "defining"), [
    ("happy", "mouthSmile_L"), ("sadness", "mouthFrown_R"), ("surprise", "browOuterUp_L"),
    ("anger", "browDown_L"), ("disgust", "noseSneer_R"), ("fear", "mouthStretch_L"),
])
def test_prototypes_carry_their_defining_action_unit(emotion, defining):
    vector = prototype(emotion)
    assert vector[ICT_NAMES.index(defining)] >= 0.5
    assert np.allclose(vector[[ICT_NAMES.index(n) for n in ICT_NAMES if n.endswith("_L")]],
                       vector[[ICT_NAMES.index(n[:-2] + "_R") for n in ICT_NAMES if n.endswith("_L")]])


def test_intensity_scales_and_clips():
    assert np.allclose(prototype("happy", 0.5), 0.5 * prototype("happy"))
    assert prototype("surprise", 1.5).max() == 1.0
    with pytest.raises(ValueError, match="unknown emotion"):
        prototype("smug")
    with pytest.raises(ValueError, match="unknown ICT"):
        coefficients({"mouthSmileLeft": 1.0})


def test_an_expression_adds_to_the_rest_and_releases_its_antagonists():
    rest = coefficients({"eyeWide_L": 0.3, "browInnerUp_L": 0.2, "browOuterUp_L": 0.4, "eyeSquint_R": 0.2})
    combined = on_top_of_rest(rest, prototype("anger"))
    # anger drives browDown and eyeSquint: the rest's browOuterUp and eyeWide (their antagonists) let go.
    assert combined[ICT_NAMES.index("browOuterUp_L")] == 0
    assert combined[ICT_NAMES.index("eyeWide_L")] == 0
    assert combined[ICT_NAMES.index("browDown_L")] == pytest.approx(0.9)
    assert combined[ICT_NAMES.index("browInnerUp_L")] == 0  # a brow lowered without AU1: the inner raise lets go
    assert combined[ICT_NAMES.index("eyeSquint_R")] == pytest.approx(0.65)  # the rest's squint and anger's add
    wide = on_top_of_rest(rest, coefficients({"eyeWide_R": 0.25, "eyeSquint_R": 0.45}))
    assert wide[ICT_NAMES.index("eyeSquint_R")] == pytest.approx(0.45)  # an expression driving both releases both
    happy = on_top_of_rest(rest, prototype("happy"))
    assert happy[ICT_NAMES.index("eyeSquint_R")] == pytest.approx(0.4)  # added: 0.2 + 0.2
    surprise = on_top_of_rest(rest, prototype("surprise"))
    assert surprise[ICT_NAMES.index("eyeSquint_R")] == 0  # a resting squint does not fight the wide eyes
    assert surprise[ICT_NAMES.index("browInnerUp_L")] == 1.0  # 0.2 + 0.9, clipped
    assert np.array_equal(on_top_of_rest(rest, prototype("neutral")), rest)
    # sadness and fear lower the brows and raise their inner ends (AU1+4): the rest's inner raise adds to theirs
    for emotion in ("sadness", "fear"):
        assert on_top_of_rest(rest, prototype(emotion))[ICT_NAMES.index("browInnerUp_L")] == 1.0, emotion
    # one side lowered alone releases that side's inner raise only
    one_side = on_top_of_rest(coefficients({"browInnerUp_L": 0.3, "browInnerUp_R": 0.3}),
                              coefficients({"browDown_R": 0.6}))  # fmt: skip
    assert one_side[ICT_NAMES.index("browInnerUp_L")] == pytest.approx(0.3)
    assert one_side[ICT_NAMES.index("browInnerUp_R")] == 0


def test_a_rest_gaze_gives_way_to_an_expression_that_turns_that_eye():
    gaze = coefficients({"eyeLookUp_L": 0.2, "eyeLookUp_R": 0.2, "eyeLookIn_R": 0.1, "eyeLookOut_L": 0.1})
    left, right = ("eyeLookUp_L", "eyeLookOut_L"), ("eyeLookUp_R", "eyeLookIn_R")
    value = lambda v, names: v[[ICT_NAMES.index(n) for n in names]].tolist()  # noqa: E731
    rest = with_gaze(coefficients({"eyeSquint_L": 0.2}), gaze)  # the rest looking where the photo looked
    assert value(rest, left) == value(rest, right) == pytest.approx([0.2, 0.1])
    assert rest[ICT_NAMES.index("eyeSquint_L")] == pytest.approx(0.2)
    # an expression that does not turn the eyes keeps that gaze; one that turns an eye looks its own way with it
    assert value(on_top_of_rest(rest, prototype("happy")), left) == pytest.approx([0.2, 0.1])
    look_down = on_top_of_rest(rest, prototype("sadness"))  # AU64 in sadness: both eyes 0.15 down
    assert value(look_down, left) == value(look_down, right) == [0.0, 0.0]
    one_eye = coefficients({"eyeLookOut_R": 0.6})
    assert value(on_top_of_rest(rest, one_eye), right) == [0.0, 0.0]  # up 0.2 + out 0.6 would be a sum
    assert value(on_top_of_rest(rest, one_eye), left) == pytest.approx([0.2, 0.1])
    assert value(with_gaze(one_eye, gaze), left) == pytest.approx([0.2, 0.1])
    assert value(with_gaze(one_eye, gaze), right) == [0.0, 0.0]
    traces = coefficients({"eyeLookDown_L": 0.01})  # a text network's trace is not a turn
    assert value(with_gaze(traces, gaze), left) == pytest.approx([0.2, 0.1])


def test_the_rest_lip_seal_gives_way_to_mouth_movement():
    from sie3d.head.fit import REST_LIP_SEAL

    seal = ICT_NAMES.index(REST_LIP_SEAL[0])
    rest = coefficients({"eyeSquint_L": 0.2, REST_LIP_SEAL[0]: REST_LIP_SEAL[1]})
    for emotion in ("happy", "anger", "sadness", "disgust", "fear", "surprise"):  # each moves the mouth
        assert on_top_of_rest(rest, prototype(emotion))[seal] == 0, emotion
    assert on_top_of_rest(rest, coefficients({"browInnerUp_L": 0.5}))[seal] == pytest.approx(REST_LIP_SEAL[1])
