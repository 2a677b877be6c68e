"""The ICT head model, the expression name map, the MediaPipe correspondence and the landmark fit."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from sie3d.assets import ict
from sie3d.face.observation import BLENDSHAPE_NAMES, FaceObservation
from sie3d.head import correspondence
from sie3d.head.fit import FitSettings, HeadFitter, project
from sie3d.head.model import EYE_TURNS, RIG_GAINS, HeadModel
from sie3d.head.names import ICT_NAMES, MEDIAPIPE_TO_ICT, ict_from_mediapipe, mediapipe_from_ict


@pytest.fixture(scope="module")
def head() -> HeadModel:
    return HeadModel()


@pytest.fixture(scope="module")
def fitter(head) -> HeadFitter:
    return HeadFitter(head)


def test_model_shapes_and_known_values(head):
    arrays = ict.load()
    zero = head(torch.zeros(2, 100), torch.zeros(2, 53))
    assert zero.shape == (2, ict.N_VERTICES, 3)
    assert torch.allclose(zero[0], torch.from_numpy(arrays.neutral))
    jaw = torch.zeros(1, 53)
    jaw[0, ICT_NAMES.index("jawOpen")] = 1.0
    opened = head(expression=jaw)[0]
    expected = arrays.neutral + arrays.expression_basis[ICT_NAMES.index("jawOpen")].astype(np.float32)
    assert torch.allclose(opened, torch.from_numpy(expected), atol=1e-5)
    identity = torch.zeros(1, 100)
    identity[0, 3] = 1.0
    shaped = head(identity=identity)[0]
    assert torch.allclose(shaped - head()[0], torch.from_numpy(arrays.identity_basis[3].astype(np.float32)), atol=1e-5)

    # Linear and batched: two heads in one call equal two calls.
    both = head(torch.cat([identity, -identity]), torch.cat([jaw, jaw]))
    assert torch.allclose(both[1], head(-identity, jaw)[0], atol=1e-5)


def test_the_rig_gains_scale_their_shapes_in_the_model_and_in_what_exporters_read(head):
    raw = ict.load().expression_basis.astype(np.float32)
    deltas = head.expression_deltas().numpy()
    exported = head.arrays.expression_basis.astype(np.float32)
    skin = ~np.isin(np.arange(head.n_verts), head.eyeball_vertices.numpy())  # the gaze shapes also turn the eyes
    for k, name in enumerate(ICT_NAMES):
        gain = RIG_GAINS.get(name, 1.0)
        np.testing.assert_allclose(deltas[k][skin], gain * raw[k][skin], atol=1e-6, err_msg=name)
        np.testing.assert_allclose(exported[k], gain * raw[k], atol=1e-6, err_msg=name)
    assert RIG_GAINS == {"browDown_L": 2.0, "browDown_R": 2.0}


def test_the_gaze_shapes_turn_each_eyeball_about_its_centre(head):
    """ICT's eyeLook shapes move only the lids (its eyeballs stay); sie3d's rig turns the eyeball as well: at
    weight 1 each vertex of that eye keeps its distance from the eye's centre (a rigid turn) and the sclera's
    ball stays on its own sphere (turned about the mean of the eyeball's vertices, the sphere moved 2 mm), its
    pole moves by the turn's angle toward the gaze, the other eye stays, and a person's morph
    targets are exactly what `forward` poses for that person."""
    raw = ict.load().expression_basis
    eyes = head.eyeball_vertices.numpy()
    assert not np.abs(raw[:, eyes.ravel()]).any()  # ICT: no shape moves an eyeball
    identity = torch.from_numpy(np.random.default_rng(3).normal(0, 1, 100).astype(np.float32))[None]
    shape = head(identity)[0]
    deltas = head.expression_deltas(identity[0])
    centres = head.eyeball_centres(shape[None])[0]
    for name, (_, degrees) in EYE_TURNS.items():
        k = 0 if name.endswith("_L") else 1
        eye, other, centre = eyes[k], eyes[1 - k], centres[k]
        expression = torch.zeros(1, 53)
        expression[0, ICT_NAMES.index(name)] = 1.0
        posed = head(identity, expression)[0]
        assert (head.eyeball_centres(posed[None])[0, k] - centre).norm() < 0.01, name  # the sphere stays: 0.1 mm
        before, after = (shape[eye] - centre).numpy(), (posed[eye] - centre).numpy()
        np.testing.assert_allclose(np.linalg.norm(after, axis=1), np.linalg.norm(before, axis=1), atol=1e-4)
        pole = before[np.argmax(before[:, 2])]  # the most forward vertex, before and after the turn
        turned = after[np.argmax(before[:, 2])]
        angle = np.degrees(np.arccos(pole @ turned / np.linalg.norm(pole) / np.linalg.norm(turned)))
        assert angle == pytest.approx(abs(degrees), abs=0.5), name
        toward = 0 if "In_" in name or "Out_" in name else 1
        sign = 1 if name in ("eyeLookOut_L", "eyeLookIn_R", "eyeLookUp_L", "eyeLookUp_R") else -1
        assert sign * (turned - pole)[toward] > 0.3, name  # +x: the subject's left; +y: up
        assert torch.equal(posed[other], shape[other]), name
        np.testing.assert_allclose((posed - shape).numpy(), deltas[ICT_NAMES.index(name)].numpy(), atol=1e-5)


def test_model_is_differentiable_and_checks_shapes(head):
    identity = torch.zeros(1, 100, requires_grad=True)
    expression = torch.zeros(1, 53, requires_grad=True)
    head(identity, expression)[0, head.topology.landmarks_68[8], 1].backward()  # chin height
    assert identity.grad.abs().sum() > 0 and expression.grad[0, ICT_NAMES.index("jawOpen")] < 0
    with pytest.raises(ValueError, match=r"\(B, 53\)"):
        head(expression=torch.zeros(1, 52))
    with pytest.raises(ValueError, match="batch sizes differ"):
        head(torch.zeros(2, 100), torch.zeros(3, 53))


def test_name_map_is_complete_and_round_trips():
    targets = [t for ts in MEDIAPIPE_TO_ICT.values() for t in ts]
    assert sorted(targets) == sorted(ICT_NAMES)  # every ICT shape driven exactly once
    assert MEDIAPIPE_TO_ICT["_neutral"] == ()
    assert MEDIAPIPE_TO_ICT["eyeBlinkLeft"] == ("eyeBlink_L",)
    assert MEDIAPIPE_TO_ICT["mouthLeft"] == ("mouthLeft",) and MEDIAPIPE_TO_ICT["jawRight"] == ("jawRight",)
    assert MEDIAPIPE_TO_ICT["browInnerUp"] == ("browInnerUp_L", "browInnerUp_R")
    scores = np.random.default_rng(0).uniform(size=len(BLENDSHAPE_NAMES)).astype(np.float32)
    scores[0] = 0.0  # _neutral has no ICT counterpart
    ict_coefficients = ict_from_mediapipe(scores)
    assert ict_coefficients[ICT_NAMES.index("cheekPuff_R")] == scores[BLENDSHAPE_NAMES.index("cheekPuff")]
    assert np.allclose(mediapipe_from_ict(ict_coefficients), scores)


def test_ict_left_is_the_subjects_left(head):
    """ICT _L shapes move the +x side, which is the subject's left (viewer's right at yaw 0)."""
    deltas = head.expression_deltas()
    for name in ("eyeBlink_L", "mouthSmile_L", "browDown_L"):
        moved = deltas[ICT_NAMES.index(name)].norm(dim=1)
        assert (head.neutral[:, 0] * moved).sum() / moved.sum() > 1.0, name


def test_correspondence_lands_on_anatomy(head):
    corr = correspondence.load()
    assert corr.tri.shape == (468,) and np.allclose(corr.bary.sum(1), 1, atol=1e-5) and corr.bary.min() >= -1e-6
    faces = head.topology.faces[corr.tri]
    points = (head.neutral.numpy()[faces] * corr.bary[:, :, None]).sum(1)
    landmark = head.neutral.numpy()[head.topology.landmarks_68]
    # Nose tip, eye corners, mouth corners and chin within a few millimetres of ICT's own landmarks.
    for mp_id, ict68 in correspondence.ANCHORS.items():
        assert np.linalg.norm(points[mp_id] - landmark[ict68]) < 0.6, (mp_id, ict68)
    assert np.argmax(points[:, 2]) in (1, 4, 5, 19, 94, 195)  # the most forward point is on the nose
    assert np.median(corr.residual_cm) < 0.1 and corr.residual_cm.max() < 0.5
    # Every correspondence lies on the skin of the face, not on eyes, teeth or the back of the head.
    skin = head.topology.material_names.index("M_Face")
    assert np.all(head.topology.face_material[corr.tri] == skin)


def _synthetic_observation(fitter: HeadFitter, identity, expression, rotation, translation, size=768):
    coefficients = torch.from_numpy(identity)[None], torch.from_numpy(expression)[None]
    points = torch.cat([fitter.points(*coefficients)[0], fitter.pupils(*coefficients)[0]])
    cam = points @ torch.from_numpy(rotation).T + torch.from_numpy(translation)
    focal = fitter.settings.focal_factor * size
    pixels = project(cam, focal, (size / 2, size / 2)).numpy()
    depth = (cam[:468, 2] * focal / cam[:468, 2].mean()).numpy()
    landmarks = np.zeros((478, 3), np.float32)
    landmarks[:468, :2], landmarks[:468, 2] = pixels[:468], depth - depth.mean()
    landmarks[468:473, :2], landmarks[473:, :2] = pixels[468], pixels[469]  # each iris (centre and rim) at its pupil
    pose = np.eye(4, dtype=np.float32)
    pose[:3, :3] = np.diag([1.0, -1.0, -1.0]) @ rotation  # OpenCV -> MediaPipe's OpenGL camera
    box = (*pixels.min(0), *pixels.max(0))
    return FaceObservation(landmarks, np.zeros(52, np.float32), pose, box, 1.0, (size, size))


def test_fit_recovers_known_coefficients_from_synthetic_landmarks(fitter, head):
    rng = np.random.default_rng(7)
    identity = rng.normal(0, 0.3, 100).astype(np.float32)
    expression = np.zeros(53, np.float32)
    truth = {"jawOpen": 0.35, "mouthSmile_L": 0.6, "mouthSmile_R": 0.5, "browInnerUp_L": 0.4, "browInnerUp_R": 0.4,
             "eyeLookOut_L": 0.3, "eyeLookIn_R": 0.3}  # the eyes turned toward the subject's left
    for name, value in truth.items():
        expression[ICT_NAMES.index(name)] = value
    angle = np.radians(12.0)
    rotation = np.array([[np.cos(angle), 0, np.sin(angle)], [0, 1, 0], [-np.sin(angle), 0, np.cos(angle)]], np.float32)
    translation = np.array([1.0, -2.0, 55.0], np.float32)
    obs = _synthetic_observation(fitter, identity, expression, rotation, translation)
    # The landmarks alone (a negligible pull towards the observation's all-zero blendshape scores) ...
    geometric = HeadFitter(head, FitSettings(blendshape_prior=1e-7), fitter.calibration)
    fit = geometric.fit(obs)
    assert fit.landmark_error_iod < 0.004, fit.landmark_error_iod
    for name, value in truth.items():
        assert fit.expression[ICT_NAMES.index(name)] == pytest.approx(value, abs=0.15), name
    # ... and with the default prior, when MediaPipe's scores read the truth, the fit stays there.
    consistent = fitter.fit(dataclasses.replace(obs, blendshapes=mediapipe_from_ict(expression)))
    assert np.abs(consistent.expression - expression).max() < 0.1
    assert consistent.landmark_error_iod < 0.004
    assert np.allclose(fit.rotation, rotation, atol=0.03)
    # The recovered face surface matches the true one to a few millimetres.
    with torch.no_grad():
        true_verts = head(torch.from_numpy(identity)[None], torch.from_numpy(expression)[None])[0, :6706]
        fit_verts = head(torch.from_numpy(fit.identity)[None], torch.from_numpy(fit.expression)[None])[0, :6706]
    assert (true_verts - fit_verts).norm(dim=1).mean() < 0.3


def test_fit_on_real_studio_photos(fitter, london_observations):
    errors = {}
    for name in ("london_001_neutral", "london_004_happy", "london_012_neutral", "london_030_happy"):
        fit = fitter.fit(london_observations[name])
        errors[name] = fit.landmark_error_iod
        assert np.all((fit.expression >= 0) & (fit.expression <= 1))
        assert np.all(fit.rest_expression[[ICT_NAMES.index("jawOpen"), ICT_NAMES.index("mouthSmile_L")]] == 0)
        assert 30 < fit.translation[2] < 120  # the head sits in front of the camera at a portrait distance
    assert max(errors.values()) < 0.025, errors
    happy = fitter.fit(london_observations["london_004_happy"])
    neutral = fitter.fit(london_observations["london_004_neutral"])
    smile = [ICT_NAMES.index("mouthSmile_L"), ICT_NAMES.index("mouthSmile_R")]
    assert happy.expression[smile].sum() > neutral.expression[smile].sum() + 0.3
