"""The 15 visemes: names and order lip-sync tools expect, built from the ICT shapes, exported after the
ARKit rig's targets, and shaping the mouth as their sounds do."""

from __future__ import annotations

import numpy as np
import pygltflib
import pytest

from sie3d.avatar import lid_target_names
from sie3d.export.rig import rig_names, rig_weights
from sie3d.head.names import ICT_NAMES
from sie3d.visemes import VISEME_NAMES, viseme_coefficients

STANDARD = ["sil", "PP", "FF", "TH", "DD", "kk", "CH", "SS", "nn", "RR", "aa", "E", "I", "O", "U"]


def test_names_and_coefficients():
    assert list(VISEME_NAMES) == [f"viseme_{v}" for v in STANDARD]
    table = viseme_coefficients()
    assert table.shape == (15, 53) and table.min() >= 0 and table.max() <= 1
    assert not table[0].any() and (table[1:].sum(1) > 0).all()
    sides = [(ICT_NAMES.index(n), ICT_NAMES.index(n[:-2] + "_R")) for n in ICT_NAMES if n.endswith("_L")]
    assert all((table[:, left] == table[:, right]).all() for left, right in sides)  # symmetric mouths


@pytest.fixture(scope="module")
def mesh(happy, models):
    from sie3d.avatar import export_meshes

    return export_meshes(happy, models, [happy.rest_expression])[0]


def test_exported_after_the_rig_as_their_combination(mesh, written, models):
    rig, visemes = len(rig_names()), slice(len(rig_names()), len(rig_names()) + len(VISEME_NAMES))
    assert mesh.morph_names == (*rig_names(), *VISEME_NAMES, *lid_target_names())
    assert not mesh.morph_weights[visemes].any()
    basis = models.head.arrays.expression_basis  # ICT's 53 shapes on the head's vertices
    head = basis.shape[1]  # the hair's vertices come after the head's, rigid
    np.testing.assert_allclose(mesh.morph_deltas[visemes, :head],
                               np.tensordot(viseme_coefficients(), basis, axes=1), atol=1e-5)  # fmt: skip
    assert not mesh.morph_deltas[:, head:].any()
    # ... which is the same surface as the rig's targets at the visemes' rig weights
    np.testing.assert_allclose(mesh.morph_deltas[visemes], np.tensordot(rig_weights(viseme_coefficients()),
                                                                     mesh.morph_deltas[:rig], axes=1), atol=1e-5)
    glb = pygltflib.GLTF2().load(str(written / "neutral" / "avatar.glb"))
    assert glb.meshes[0].extras["targetNames"][visemes] == list(VISEME_NAMES)
    assert all(len(p.targets) == rig + 15 + len(lid_target_names()) for p in glb.meshes[0].primitives)


def test_mouth_shapes(mesh):
    """Jaw drop (chin down) and lip protrusion (lips forward) of each viseme, in cm, from the shapes' offsets."""
    deltas = dict(zip(mesh.morph_names, mesh.morph_deltas, strict=True))
    chin = np.argsort(deltas["jawOpen"][:, 1])[:200]  # the vertices jawOpen lowers most
    lips = np.argsort(-deltas["mouthPucker"][:, 2])[:200]  # the vertices a pucker pushes forward most
    drop = {v: -float(deltas[f"viseme_{v}"][chin, 1].mean()) for v in STANDARD}
    forward = {v: float(deltas[f"viseme_{v}"][lips, 2].mean()) for v in STANDARD}
    assert drop["sil"] == forward["sil"] == 0
    assert drop["aa"] > drop["O"] > drop["E"] > drop["I"] > drop["PP"]  # open vowels open the jaw most
    assert drop["aa"] > 1.0 and drop["PP"] < 0 and drop["FF"] < 0.3  # closed lips for p b m and f v
    assert min(forward["U"], forward["O"]) > max(forward["E"], forward["I"], forward["aa"])  # rounded vowels
