"""The exported rig: Apple's 52 ARKit names, ICT's halves merged, an authored tongueOut."""

from __future__ import annotations

import numpy as np
import pytest

from sie3d.assets import ict
from sie3d.export.rig import (
    ARKIT_NAMES,
    RIG_EXTRAS,
    TongueConfig,
    arkit_from_ict,
    rig_deltas,
    rig_names,
    rig_weights,
    tongue_out_delta,
    tongue_vertices,
)
from sie3d.head.names import ICT_NAMES

# Apple's ARFaceAnchor.BlendShapeLocation list (developer.apple.com), written out here as the oracle.
APPLE_ARKIT = {
    "eyeBlinkLeft", "eyeLookDownLeft", "eyeLookInLeft", "eyeLookOutLeft", "eyeLookUpLeft", "eyeSquintLeft",
    "eyeWideLeft", "eyeBlinkRight", "eyeLookDownRight", "eyeLookInRight", "eyeLookOutRight", "eyeLookUpRight",
    "eyeSquintRight", "eyeWideRight", "jawForward", "jawLeft", "jawRight", "jawOpen", "mouthClose", "mouthFunnel",
    "mouthPucker", "mouthLeft", "mouthRight", "mouthSmileLeft", "mouthSmileRight", "mouthFrownLeft",
    "mouthFrownRight", "mouthDimpleLeft", "mouthDimpleRight", "mouthStretchLeft", "mouthStretchRight",
    "mouthRollLower", "mouthRollUpper", "mouthShrugLower", "mouthShrugUpper", "mouthPressLeft", "mouthPressRight",
    "mouthLowerDownLeft", "mouthLowerDownRight", "mouthUpperUpLeft", "mouthUpperUpRight", "browDownLeft",
    "browDownRight", "browInnerUp", "browOuterUpLeft", "browOuterUpRight", "cheekPuff", "cheekSquintLeft",
    "cheekSquintRight", "noseSneerLeft", "noseSneerRight", "tongueOut",
}  # fmt: skip


@pytest.fixture(scope="module")
def model() -> ict.IctArrays:
    return ict.load()


@pytest.fixture(scope="module")
def tongue(model) -> np.ndarray:
    return tongue_out_delta(model.faces, model.uv_faces, model.neutral, *ict.REGIONS["gums_and_tongue"][:2])


def test_names_are_apples_52_then_the_halves():
    assert len(ARKIT_NAMES) == 52 and set(ARKIT_NAMES) == APPLE_ARKIT
    assert RIG_EXTRAS == ("browInnerUp_L", "browInnerUp_R", "cheekPuff_L", "cheekPuff_R")
    assert rig_names() == (*ARKIT_NAMES, *RIG_EXTRAS) and len(set(rig_names())) == 56


def test_rig_weights_reproduce_the_ict_surface(model, tongue):
    basis = model.expression_basis.astype(np.float32)
    deltas = rig_deltas(basis, tongue)
    rng = np.random.default_rng(3)
    coefficients = rng.uniform(0, 1, (4, len(ICT_NAMES))).astype(np.float32)
    coefficients[0, ICT_NAMES.index("browInnerUp_L")], coefficients[0, ICT_NAMES.index("browInnerUp_R")] = 0.9, 0.1
    weights = rig_weights(coefficients)
    assert weights.shape == (4, 56) and weights.min() >= 0
    for c, w in zip(coefficients, weights, strict=True):
        np.testing.assert_allclose(np.tensordot(w, deltas, 1), np.tensordot(c, basis, 1), atol=2e-4)
    names = rig_names()
    first = dict(zip(names, weights[0], strict=True))
    assert first["browInnerUp"] == pytest.approx(0.1) and first["browInnerUp_L"] == pytest.approx(0.8)
    assert first["browInnerUp_R"] == 0 and first["tongueOut"] == 0
    # the merged target is both halves at once
    k = names.index("cheekPuff")
    np.testing.assert_allclose(deltas[k], basis[ICT_NAMES.index("cheekPuff_L")] + basis[ICT_NAMES.index("cheekPuff_R")])
    with pytest.raises(ValueError, match="ICT coefficients"):
        rig_weights(np.zeros(52))


def test_arkit_sliders_from_ict():
    c = np.zeros(len(ICT_NAMES), np.float32)
    c[ICT_NAMES.index("mouthSmile_L")] = 0.6
    c[ICT_NAMES.index("cheekPuff_L")], c[ICT_NAMES.index("cheekPuff_R")] = 0.4, 0.2
    sliders = arkit_from_ict(c)
    assert list(sliders) == list(ARKIT_NAMES)
    assert sliders["mouthSmileLeft"] == pytest.approx(0.6) and sliders["cheekPuff"] == pytest.approx(0.3)
    assert sliders["mouthSmileRight"] == 0 and sliders["tongueOut"] == 0


def test_tongue_out_moves_the_tongue_past_the_lips(model, tongue):
    first, last = ict.REGIONS["gums_and_tongue"][:2]
    verts = tongue_vertices(model.faces, model.uv_faces, model.neutral, first, last)
    assert 300 < len(verts) < 700 and verts.min() >= first and verts.max() < last
    moved = np.flatnonzero(np.abs(tongue).max(axis=1) > 0)
    assert set(moved) <= set(verts.tolist()), "only the tongue moves"
    tip = model.neutral[verts] + tongue[verts]
    teeth = model.neutral[ict.REGIONS["teeth"][0] : ict.REGIONS["teeth"][1]]
    assert tip[:, 2].max() > teeth[:, 2].max() + 1.0, "the tip comes out in front of the teeth"
    assert abs(tip[:, 0].mean()) < 0.1, "centred"
    assert tongue[verts, 1].max() > 0.5, "the tip rises to clear the lower teeth (it rests 1.4 cm below their edge)"
    root = model.neutral[verts, 2] < TongueConfig().root_z_cm
    assert not np.abs(tongue[verts[root]]).any(), "the root stays"
