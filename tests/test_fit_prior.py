"""The fit leaves the eyes alone: MediaPipe's scores as a prior, exclusive pairs, the landmark calibration."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from sie3d.head.calibrate import CalibrationSettings, calibration_photos, compare, learn, rest_ceiling
from sie3d.head.calibration import CALIBRATION_PATH, LandmarkCalibration
from sie3d.head.eyes import pupil_surface
from sie3d.head.fit import EXCLUSIVE_PAIRS, PUPILS, REST_LIP_SEAL, REST_SHAPES, HeadFitter, exclusive_projection
from sie3d.head.names import ICT_NAMES
from sie3d.photo import load_photo

from conftest import faces_dir

OTHER_PHOTOS = ("max_surprised.jpeg", "max_angry.jpg", "max_neutral.jpeg", "skimage_astronaut.png",
                "mpl_grace_hopper.jpg")
WIDE = [ICT_NAMES.index("eyeWide_L"), ICT_NAMES.index("eyeWide_R")]


@pytest.fixture(scope="module")
def fitter() -> HeadFitter:
    return HeadFitter()


@pytest.fixture(scope="module")
def others(observer) -> dict:
    return {name: observer.observe(load_photo(faces_dir() / name))[0] for name in OTHER_PHOTOS}


@pytest.fixture(scope="module")
def fits(fitter, london_observations, others) -> dict:
    """Fits of the 48 London studio photos and a few others (labelled surprise, anger, neutral, happy)."""
    return {name: fitter.fit(obs) for name, obs in {**london_observations, **others}.items()}


def test_exclusive_projection_keeps_the_net_effect():
    expression = np.zeros(53, np.float32)
    for name, value in {"jawLeft": 0.24, "jawRight": 0.27, "eyeWide_L": 0.66, "eyeSquint_L": 0.7,
                        "eyeBlink_L": 0.1, "mouthLeft": 0.3}.items():
        expression[ICT_NAMES.index(name)] = value
    projected, frozen, changed = exclusive_projection(expression)
    value = dict(zip(ICT_NAMES, projected, strict=True))
    assert changed and value["jawLeft"] == 0 and value["jawRight"] == pytest.approx(0.03)
    assert value["eyeWide_L"] == 0 and value["eyeSquint_L"] == pytest.approx(0.04)
    assert value["eyeBlink_L"] == pytest.approx(0.1) and value["mouthLeft"] == pytest.approx(0.3)  # partner at 0
    # Every member that is zero in a pair is frozen for the refit, so no pair can become co-active again.
    assert frozen[ICT_NAMES.index("eyeWide_L")] and frozen[ICT_NAMES.index("mouthRight")]
    assert not frozen[ICT_NAMES.index("mouthLeft")] and not frozen[ICT_NAMES.index("jawOpen")]
    assert not exclusive_projection(projected)[2]  # idempotent


def test_exclusive_pairs_are_never_both_active_after_a_fit(fits):
    assert len(fits) == 48 + len(OTHER_PHOTOS)
    for name, fit in fits.items():
        for first, second in EXCLUSIVE_PAIRS:
            both = fit.expression[ICT_NAMES.index(first)] * fit.expression[ICT_NAMES.index(second)]
            assert both == 0, (name, first, second)


def test_fit_error_on_the_studio_photos_stays_within_two_percent(fits):
    errors = np.array([fit.landmark_error_iod for name, fit in fits.items() if name.startswith("london_")])
    assert len(errors) == 48 and errors.mean() < 0.02 and errors.max() < 0.02, (errors.mean(), errors.max())


def test_neutral_eyes_are_not_wide_but_a_surprised_stare_is(fits, fitter):
    # Neutral photos fit with little eyeWide (0.04 on average); the widest-eyed person near 0.4: her raised lids
    # went to a gaze upward (0.29) while the gaze shapes moved only lids; her irises, now fitted, look level.
    neutral = np.array([fit.expression[WIDE] for name, fit in fits.items() if name.endswith("_neutral")])
    assert neutral.mean() < 0.1 and neutral.max() < 0.45, (neutral.mean(), neutral.max())
    surprised = fits["max_surprised.jpeg"]
    # MediaPipe reads 0.07, 0.20; the fit 0.21, 0.28 (0.3 before the lid margins counted more, `lid_weight`)
    assert surprised.expression[WIDE].mean() > 0.2 > 2 * neutral.mean(), surprised.expression[WIDE]
    # The stare is expression, not the person: the rest keeps no more than a neutral face shows.
    shapes = [ICT_NAMES.index(n) for n in REST_SHAPES]
    assert np.all(surprised.rest_expression[shapes] <= fitter.calibration.rest_ceiling[shapes] + 1e-6)
    assert surprised.rest_expression[WIDE].max() < 0.1
    for name, fit in fits.items():
        seal = ICT_NAMES.index(REST_LIP_SEAL[0])
        assert fit.rest_expression[seal] == pytest.approx(REST_LIP_SEAL[1]), name  # the lips meet
        outside = [k for k, n in enumerate(ICT_NAMES) if n not in REST_SHAPES and k != seal]
        assert not fit.rest_expression[outside].any(), name  # no other mouth shape, no jaw or gaze in a rest


def test_calibration_command_reproduces_the_committed_file(london_observations, observer):
    committed = LandmarkCalibration.load()
    meta = committed.meta
    assert meta["command"] == "python -m sie3d.head.calibrate"
    assert meta["photos"] == [p.name for p in calibration_photos(faces_dir())] and len(meta["photos"]) == 24
    observations = [london_observations[name.removesuffix(".jpg")] for name in meta["photos"]]
    photos = [load_photo(faces_dir() / name).rgb for name in meta["photos"]]
    settings = CalibrationSettings(**meta["settings"])
    assert settings.render_rounds > 0  # the renders read where the photos do (calibrate.py, step 4)
    offsets, figures = learn(observations, settings, log=lambda *_: None, photos=photos, observer=observer)
    gaps = [row["render_gap_iod_mean"] for row in figures["rounds"] if "render_round" in row]
    assert gaps[-1] < 0.6 * gaps[0], gaps
    same, summary = compare(committed, meta["photos"], offsets, rest_ceiling(observations))
    assert same, summary
    assert np.sqrt((committed.offsets_cm**2).sum(1).mean()) > 0.05  # and they are not trivially zero


def test_calibration_file_round_trips_and_refuses_another_correspondence(tmp_path):
    rng = np.random.default_rng(0)
    calibration = LandmarkCalibration(rng.normal(0, 0.1, (468, 3)).astype(np.float32),
                                      rng.uniform(size=53).astype(np.float32), {"command": "test"})
    calibration.save(tmp_path / "c.json")
    loaded = LandmarkCalibration.load(tmp_path / "c.json")
    assert np.allclose(loaded.offsets_cm, calibration.offsets_cm, atol=1e-4)
    assert np.allclose(loaded.rest_ceiling, calibration.rest_ceiling, atol=1e-4)
    data = json.loads(CALIBRATION_PATH.read_text())
    data["correspondence_version"] = -1
    (tmp_path / "old.json").write_text(json.dumps(data))
    with pytest.raises(ValueError, match="re-run python -m sie3d.head.calibrate"):
        LandmarkCalibration.load(tmp_path / "old.json")
    with pytest.raises(ValueError, match="shape"):
        LandmarkCalibration(np.zeros((10, 3), np.float32))


@pytest.mark.parametrize("name", ("london_004_neutral", "singnet_city_portrait.jpg"))
def test_the_fit_turns_the_eyes_where_the_photos_irises_look(name, fitter, london_observations, observer):
    """MediaPipe's iris centres are fitted with the poles of the eyeballs the gaze shapes turn (`PUPILS`): posed
    as the renders pose them, the poles land within 1.5 % of the eye distance of the irises on a frontal studio
    photo and on a portrait looking aside (without that term: 2.3-3.3 %), and the landmarks fit as before."""
    obs = london_observations.get(name) or observer.observe(load_photo(faces_dir() / name))[0]
    fit = fitter.fit(obs)
    with torch.no_grad():
        verts = fitter.head(torch.from_numpy(fit.identity)[None], torch.from_numpy(fit.expression)[None])[0].numpy()
    tri, bary = pupil_surface(fitter.head)  # the painted irises' centres, as the render poses them
    poles = fit.project((verts[fitter.head.topology.faces[tri]] * bary[..., None]).sum(1))
    errors = np.linalg.norm(poles - obs.landmarks_px[list(PUPILS.values()), :2], axis=1) / obs.interocular_px
    assert errors.max() < 0.015 and fit.landmark_error_iod < 0.02, (errors, fit.landmark_error_iod)
    if name.startswith("singnet_city"):  # she looks toward her left: both eyes turned that way
        assert min(fit.expression[[ICT_NAMES.index("eyeLookOut_L"), ICT_NAMES.index("eyeLookIn_R")]]) > 0.2
