"""Hands over the face (`sie3d.face.hands`) on real photos, with the real models.

The two ported hand models equal LiteRT's on real inputs; a hand on the chin (`singnet_benedict_cumberbatch_2014`)
is found and its mask covers the mouth and chin, the two hands of a group photo are found, and none on the London
studio portraits; the texture takes no colour from under the hand and the person is warned.
"""

from __future__ import annotations

import cv2
import numpy as np
import pytest
import torch

from sie3d.assets import registry
from sie3d.avatar import (
    OutputConfig,
    Person,
    PhotoWindow,
    ReconstructConfig,
    build_report,
    composite,
    hands_over_face,
    reconstruct,
)
from sie3d.face import observe_photo
from sie3d.face.hands import HAND_ASSET, LANDMARK_FILE, PALM_FILE, _weighted_nms, hand_mask, palm_anchors
from sie3d.head.names import ICT_NAMES
from sie3d.head.texture import build_textures
from sie3d.photo import load_photo

HAND_ON_CHIN = "singnet_benedict_cumberbatch_2014.png"
GROUP = "max_group.jpeg"  # two hands on a table and a tablet, away from the faces


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def hand_on_chin(models, faces):
    photo = load_photo(faces / HAND_ON_CHIN)
    return photo, models.hands(photo.rgb)


def test_the_ported_hand_models_match_litert_on_a_real_hand(models, hand_on_chin) -> None:
    """The palm detector on the letterboxed photo and the landmark model on the hand's square, as `HandDetector`
    feeds them: outputs (boxes and keypoints in input pixels, logits, landmarks) as LiteRT computes them."""
    interpreter_module = pytest.importorskip("ai_edge_litert.interpreter")
    photo, _ = hand_on_chin
    detector = models.hands
    box, keypoints, _ = detector.palms(photo.rgb)[0]
    square = detector.region(box, keypoints)
    inputs = {PALM_FILE: (detector.palm, detector.palm_input(photo.rgb)[0]),
              LANDMARK_FILE: (detector.landmarks, detector.landmark_input(photo.rgb, *square)[0])}
    for file, (graph, x) in inputs.items():
        interpreter = interpreter_module.Interpreter(model_path=str(registry.asset_file(HAND_ASSET, file)),
                                                     num_threads=1)  # fmt: skip
        interpreter.allocate_tensors()
        interpreter.set_tensor(interpreter.get_input_details()[0]["index"], x)
        interpreter.invoke()
        with torch.no_grad():
            ours = graph(torch.from_numpy(x))
        for detail, value in zip(interpreter.get_output_details(), ours, strict=True):
            reference = interpreter.get_tensor(detail["index"])
            scale = max(1.0, float(np.abs(reference).max()))
            assert np.abs(value.numpy() - reference).max() < 2e-4 * scale, (file, detail["name"])


def test_the_palm_anchors_are_the_detectors_grid() -> None:
    anchors = palm_anchors()
    assert anchors.shape == (2016, 2) and anchors.min() > 0 and anchors.max() < 1
    assert np.allclose(anchors[0], [0.5 / 24, 0.5 / 24]) and np.allclose(anchors[1], anchors[0])
    assert np.allclose(anchors[1152], [0.5 / 12, 0.5 / 12]) and np.allclose(anchors[-1], [11.5 / 12, 11.5 / 12])


def test_a_hand_on_the_chin_is_found_and_covers_the_mouth_and_chin(models, hand_on_chin) -> None:
    photo, hands = hand_on_chin
    assert len(hands) == 1 and hands[0].score > 0.9
    observation, _ = observe_photo(photo, models.observer, models.embedder)
    mask = hand_mask(np.stack([hand.landmarks for hand in hands]), photo.rgb.shape[:2])
    lips_and_chin = observation.landmarks_px[[13, 14, 17, 152], :2].round().astype(int)  # inner lips, chin
    assert mask[lips_and_chin[:, 1], lips_and_chin[:, 0]].all()
    eyes_and_brows = observation.landmarks_px[[33, 263, 105, 334], :2].round().astype(int)
    assert not mask[eyes_and_brows[:, 1], eyes_and_brows[:, 0]].any()
    covered, share = hands_over_face(np.stack([hand.landmarks for hand in hands]), observation, photo.rgb.shape[:2])
    assert covered is not None and 0.08 < share < 0.3, share  # 0.16: the mouth, the chin, part of a cheek


def test_hands_away_from_faces_are_found_and_none_on_studio_portraits(models, faces) -> None:
    group = load_photo(faces / GROUP)
    assert len(models.hands(group.rgb)) == 2
    for name in ("london_001_neutral.jpg", "london_004_happy.jpg", "london_025_neutral.jpg", "mpl_grace_hopper.jpg",
                 "singnet_waaah.jpg", "max_angry.jpg"):  # fmt: skip
        assert models.hands(load_photo(faces / name).rgb) == [], name


def test_the_texture_takes_no_colour_from_under_a_hand_and_the_person_is_warned(models, hand_on_chin) -> None:
    photo, hands = hand_on_chin
    person = reconstruct(photo, models, ReconstructConfig(texture_size=256))
    assert any("a hand covers" in w for w in person.warnings), person.warnings
    blind = build_textures(photo.rgb, person.observation, person.fit, models.head, size=256)
    assert person.textures.coverage < blind.coverage - 0.02  # what the hand hides is no longer taken
    # The hand is lit brighter than the face: where the texture used to take the hand (the chin and the mouth's
    # corners, face tile rows of the lower face), it is now darker, the skin's fill.
    face, before = person.textures.tiles[0], blind.tiles[0]
    changed = np.abs(face - before).max(-1) > 0.02
    assert changed.mean() > 0.01
    assert (face[changed] @ [0.2126, 0.7152, 0.0722]).mean() < (before[changed] @ [0.2126, 0.7152, 0.0722]).mean()


def test_the_hand_stays_in_front_of_the_composite_and_is_saved_with_the_person(models, hand_on_chin,
                                                                               tmp_path) -> None:  # fmt: skip
    photo, hands = hand_on_chin
    person = reconstruct(photo, models, ReconstructConfig(texture_size=256))
    assert person.hands.shape == (1, 21, 2)
    smile = person.rest_expression.copy()
    smile[[ICT_NAMES.index("mouthSmile_L"), ICT_NAMES.index("mouthSmile_R")]] = 1.0
    image = composite(person, models, smile)
    covered = hand_mask(person.hands, photo.rgb.shape[:2])
    assert np.array_equal(image[covered], photo.rgb[covered])  # the hand is the photo's, not the avatar's chin
    face = person.observation.landmarks_px[[1, 6, 4], :2].round().astype(int)  # the nose: rendered
    assert (image[face[:, 1], face[:, 0]] != photo.rgb[face[:, 1], face[:, 0]]).any()
    loaded = Person.load(person.save(tmp_path / "person"))
    assert np.array_equal(loaded.hands, person.hands)
    assert np.array_equal(composite(loaded, models, smile), image)
    # Into a window of the photo (a crop, halved), as the evaluation composites: the hand stays there too.
    left, top = 40, 120
    crop = photo.rgb[top : top + 320, left : left + 320]
    window = PhotoWindow(cv2.resize(crop, (160, 160), interpolation=cv2.INTER_AREA),
                         person.fit.crop(left, top, (160, 160), 0.5))  # fmt: skip
    framed = composite(person, models, smile, window)
    in_window = hand_mask((person.hands - np.array([left, top], np.float32)) * 0.5, (160, 160))
    assert in_window.mean() > 0.1 and np.array_equal(framed[in_window], window.rgb[in_window])
    assert (framed != window.rgb).any(-1).mean() > 0.05  # the face around it is rendered
    report = build_report(loaded, models, [], OutputConfig(), {})
    assert report["hands"]["found"] == 1 and 0.08 < report["hands"]["face_covered"] < 0.3


def test_merging_palms_ends_with_a_degenerate_box() -> None:
    """A box of no area overlaps nothing, itself included: it is still a cluster of its own (the merging loop
    once waited for it to leave forever)."""
    boxes = np.array([[0.5, 0.5, 0.5, 0.5], [0.1, 0.1, 0.3, 0.3], [0.12, 0.1, 0.31, 0.3]], np.float32)
    clusters = _weighted_nms(boxes, np.array([0.9, 0.8, 0.7], np.float32), 0.3)
    assert [sorted(m.tolist()) for m, _ in clusters] == [[0], [1, 2]]
