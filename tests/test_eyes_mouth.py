"""Eyes and mouth from the photo (`sie3d.head.eyes`, `sie3d.head.mouth`), eyelash cards in renders and GLB, and
the appearance ablations, on real photos: closed eyes, glasses and heavy shadow never paint skin on the eyeball."""

from __future__ import annotations

import dataclasses

import numpy as np
import pygltflib
import pytest
import torch

from sie3d.avatar import Models, Person, ReconstructConfig, reconstruct, render_views, retextured
from sie3d.eval import ablations
from sie3d.expressions import on_top_of_rest, prototype
from sie3d.head import eyes, mouth, texture
from sie3d.head.fit import HeadFitter
from sie3d.head.texture import EYE_TILE, LASH_TILE, PLAIN_TEXTURES, TextureConfig
from sie3d.photo import load_photo
from sie3d.render import project

from conftest import load_in_three, validate_gltf

# Hard eyes of the shared photos (looked at): squeezed shut in anger (black and white, deep shadow), narrowed
# while crying, a stare over glasses, an elderly face behind glasses with hooded lids.
HARD = ("max_angry.jpg", "singnet_waaah.jpg", "max_surprised.jpeg", "mpl_grace_hopper.jpg")


@pytest.fixture(scope="module")
def hard_people(models: Models, faces) -> dict[str, Person]:
    return {name: reconstruct(load_photo(faces / name), models, ReconstructConfig(texture_size=256)) for name in HARD}


def _eyeball_texels(person: Person, models: Models) -> tuple[np.ndarray, np.ndarray]:
    """(iris texels, sclera texels) of the eye tile, (N, 3) linear, split by the iris's angular size."""
    tile = person.textures.tiles[EYE_TILE]
    size = tile.shape[0]
    grid = (np.arange(size) + 0.5) / size
    u, v = np.meshgrid(grid, 1.0 - grid)
    radius = np.hypot(2 * u - 1, 2 * v - 1)  # sine of the angle from the eye's axis
    # the catch-light is a reflection painted on purpose: left out
    geometry = eyes.eye_geometry(models.head)["left"]
    half = np.array([0.3, 0.4, 1.0]) / np.linalg.norm([0.3, 0.4, 1.0]) + [0.0, 0.0, 1.0]
    spot = np.stack([geometry.side, geometry.up, geometry.axis]) @ (half / np.linalg.norm(half))
    glint = np.hypot(2 * u - 1 - spot[0], 2 * v - 1 - spot[1]) < 0.12
    iris = (radius < 0.25) & ~glint  # inside the smallest iris any photo may give, gaze included (<= 20°)
    sclera = (radius > 0.75) & (radius < 0.95)
    return tile[iris], tile[sclera]


def _skin(person: Person) -> np.ndarray:
    """(N, 3) the person's skin albedo: the face tile's cheeks and nose."""
    face = person.textures.tiles[0]
    s = face.shape[0]
    return face[int(0.45 * s) : int(0.6 * s), int(0.3 * s) : int(0.7 * s)].reshape(-1, 3)


def _lids(person: Person) -> np.ndarray:
    """(N, 3) linear photo colours of the lids: the band around each eye opening, between the lid contour and
    the contour widened by half (the skin that would be painted on the eyeball if sampling went wrong)."""
    from sie3d.head.texture import polygon_mask, srgb_to_linear

    photo = srgb_to_linear(person.photo.rgb.astype(np.float32) / 255)
    size = (photo.shape[1], photo.shape[0])
    band = np.zeros(photo.shape[:2], bool)
    for ids in eyes._EYES.values():
        contour = person.observation.landmarks_px[list(ids["contour"]), :2]
        band |= polygon_mask(contour, size, shrink=-0.5) & ~polygon_mask(contour, size, shrink=-0.1)
    return photo[band]


def _like(colours: np.ndarray, reference: np.ndarray) -> np.ndarray:
    """(N,) True where a linear colour has the reference's brightness (within 30%) and its chromaticity
    (within 0.04): what a texel painted from the lids would look like."""
    brightness = np.abs(np.log(np.maximum(colours.sum(1), 1e-6) / max(reference.sum(), 1e-6))) < np.log(1.3)
    chroma = np.abs(colours[:, :2] / np.maximum(colours.sum(1, keepdims=True), 1e-6)
                    - reference[:2] / max(reference.sum(), 1e-6)).max(1) < 0.04  # fmt: skip
    return brightness & chroma


@pytest.mark.parametrize("name", HARD[1:])
def test_eye_texture_never_paints_skin_on_the_eyeball(hard_people, models, name):
    """Narrowed, behind glasses, hooded: the eyeball's colours are not the lids'. (The shut eyes of the
    black-and-white max_angry take nothing from the photo: `test_closed_eyes_take_nothing_from_the_photo`;
    against its colourless skin, even the generic pupil's black would count as 'skin-like'.)"""
    person = hard_people[name]
    iris, sclera = _eyeball_texels(person, models)
    lids = np.median(_lids(person), axis=0)  # the texture keeps the photo's exposure: comparable colours
    assert _like(iris, lids).mean() < 0.05, name
    assert _like(sclera, lids).mean() < 0.05, name
    # The sclera is nearly colourless, whatever the photo showed between the lids.
    saturation = (sclera.max(1) - sclera.min(1)) / np.maximum(sclera.max(1), 1e-6)
    assert np.median(saturation) < 0.2, name
    assert sclera.mean() > 2 * iris.mean(), name  # an iris darker than the white of the eye


def test_closed_eyes_take_nothing_from_the_photo(hard_people, models):
    """Squeezed shut: neither eye counts as open, no iris or sclera sample is taken, and the fit reads no gaze
    from the irises (the same fit as without them)."""
    person = hard_people["max_angry.jpg"]
    assert not eyes.eye_open(person.observation, "left") and not eyes.eye_open(person.observation, "right")
    photo = eyes.sample_eyes(np.zeros((8, 8, 3), np.float32) + 0.5, person.observation, _skin(person))
    assert not photo.iris_seen.any() and not photo.sclera_seen
    settings = dataclasses.replace(models.fitter.settings, pupil_weight=0.0)
    blind = HeadFitter(models.head, settings, models.fitter.calibration)  # the irises ignored
    assert np.array_equal(models.fitter.fit(person.observation).expression, blind.fit(person.observation).expression)


@pytest.mark.parametrize("name", ["london_024_neutral.jpg", "london_004_neutral.jpg"])
def test_lids_are_not_brightened_past_the_skin(models, faces, name):
    """The upper lid under the brow is folded down in the model with the eye open: dividing the photo by the light
    its normals receive brightened it up to 2.9x (p90 of the lid texels 1.5-1.6x the skin, p99 2.7-3.0x before
    the cap), a bright band on every closed lid. Now the lids keep near the skin's brightness."""
    person = reconstruct(load_photo(faces / name), models, ReconstructConfig(texture_size=512))
    on_lids = texture.lid_texels(models.head, 512)
    _, (rows, cols), _ = texture.material_texels(models.head, "M_Face", 0, 512)
    assert 0.02 < on_lids.mean() < 0.08  # the lids, not the face
    lid = person.textures.tiles[0][rows[on_lids], cols[on_lids]] @ texture.LUMINANCE
    skin = float(person.textures.skin_albedo @ texture.LUMINANCE)
    assert np.percentile(lid, 90) < 1.4 * skin and np.percentile(lid, 99) < 2.2 * skin


def test_open_eyes_are_sampled(happy):
    from sie3d.head.texture import srgb_to_linear

    linear = srgb_to_linear(happy.photo.rgb.astype(np.float32) / 255)
    samples = eyes.sample_eyes(linear, happy.observation, _skin(happy))
    assert samples.iris_seen.mean() > 0.5 and samples.sclera_seen
    assert eyes.IRIS_TO_EYE_WIDTH_RANGE[0] <= samples.iris_to_eye_width <= eyes.IRIS_TO_EYE_WIDTH_RANGE[1]


def test_irises_keep_the_photos_colour_under_a_side_light(models, faces):
    """Hand-checked: grey-blue irises under a hard side light (`singnet_benedict_cumberbatch_2014`, one eye in
    shadow), blue ones in a studio photo (`london_012`), hazel-brown and dark brown ones (`london_004`,
    `zoom_45cm`). The side-lit grey-blue irises came out dark brown: their colour was the mean of polar samples
    that count the pupil, and the lit iris's own pixels were dropped as catch-lights (brighter than 2.5x a median
    that counted the pupil) and as skin (the side-lit face's skin spans every shade). Now the colour is read off
    the pupil and the lid's shadow (`eyes.iris_colour`), and each eye is brought to the two eyes' mean light."""

    def iris(name: str) -> np.ndarray:
        person = reconstruct(load_photo(faces / name), models, ReconstructConfig(texture_size=256))
        texels, _ = _eyeball_texels(person, models)
        return np.median(texels[texels.mean(1) > 0.012], axis=0)  # not the pupil

    side_lit, blue, hazel, brown = (iris(name) for name in ("singnet_benedict_cumberbatch_2014.png",
                                                             "london_012_neutral.jpg", "london_004_neutral.jpg",
                                                             "zoom_45cm.jpg"))  # fmt: skip
    assert side_lit[2] / side_lit[0] > 0.85 and blue[2] / blue[0] > 1.0  # grey-blue and blue: as blue as red
    assert hazel[2] / hazel[0] < 0.8 and brown[2] / brown[0] < 0.7  # brown: red over blue
    assert side_lit.mean() > 3 * brown.mean()  # a light iris, not a dark one (0.018 before: as dark as brown)


def test_the_point_the_fit_meets_the_iris_with_is_the_painted_irises_centre(models):
    """The iris (darkest texels) sits at the eye tile's centre, and the point of each eyeball that the fit puts on
    the photo's iris (`pupil_surface`) carries that centre's UV: the fit turns the eye so that the painted iris
    lands on the photo's."""
    samples = eyes.EyeSamples(np.full((eyes.POLAR_RINGS, eyes.POLAR_ANGLES, 3), 0.02, np.float32),
                              np.ones((eyes.POLAR_RINGS, eyes.POLAR_ANGLES), bool), np.full(3, 0.4, np.float32),
                              True, eyes.IRIS_TO_EYE_WIDTH)  # fmt: skip
    tile = eyes.eye_texture(samples, models.head, 128, eye_width_cm=3.0)
    rows, cols = np.nonzero(tile.mean(-1) < 0.035)  # iris and pupil, not the shaded sclera
    assert np.allclose(np.array([cols.mean(), rows.mean()]) / 128, 0.5, atol=0.02)
    tri, bary = eyes.pupil_surface(models.head)
    layout = texture.render_layout(models.head)
    uv = (layout.uvs[layout.uv_faces[tri]] * bary[..., None]).sum(1)
    np.testing.assert_allclose(uv, [[EYE_TILE + 0.5, 0.5]] * 2, atol=0.005)


def test_lash_texture_is_alpha_tested_strands_on_the_upper_cards(models):
    lashes = eyes.lash_texture(models.head, 256)
    assert lashes.shape == (256, 256, 4)
    assert set(np.unique(lashes[..., 3])) == {0.0, 1.0}  # alpha-tested: no partial coverage
    assert 0.02 < lashes[..., 3].mean() < 0.3
    assert lashes[..., :3].max() < 0.05  # dark hair


def test_lashes_show_in_renders_and_respect_depth(happy, models):
    """With cards, a frontal render changes only around the eyes, and to darker pixels."""
    from sie3d.eval.harness import _turntable_cameras

    lm = models.fitter.landmarks_3d(happy.fit, happy.rest_expression)
    cams = _turntable_cameras(lm, [0.0, 40.0], 256)
    base = dataclasses.replace(happy.config.texture, lashes=False)
    without = render_views(retextured(happy, models, base), models, happy.rest_expression, cams).astype(int)
    with_lashes = render_views(retextured(happy, models, dataclasses.replace(base, lashes=True)), models,
                               happy.rest_expression, cams).astype(int)  # fmt: skip
    changed = np.abs(with_lashes - without).sum(-1) > 0
    assert changed.sum() > 20
    # Darker, except over the lids' darkest shade, which the lashes' own colour (about 84 over R+G+B) does not
    # darken: a few pixels there.
    lighter = with_lashes[changed].sum(-1) >= without[changed].sum(-1)
    assert lighter.mean() < 0.1 and (without[changed][lighter].sum(-1) < 90).all()
    rows, _ = np.nonzero(changed[0])
    pixels = project(torch.from_numpy(lm), cams)[0][0].numpy()
    eye_box_y = pixels[[159, 386, 145, 374], 1]
    assert rows.min() > eye_box_y.min() - 30 and rows.max() < eye_box_y.max() + 30
    # Nor out past the eyes' outer corners (MediaPipe 33, 263) in a wing: the cards' drooping ends stay bare.
    _, cols = np.nonzero(changed[0])
    corners_x = np.sort(pixels[[33, 263], 0])
    beyond = np.maximum(corners_x[0] - cols, cols - corners_x[1]).max() / (corners_x[1] - corners_x[0])
    assert beyond < 0.09, beyond  # 0.073 (0.10 with strands on the drooping ends); of the corner-to-corner span


def test_teeth_are_shaded_tooth_by_tooth_and_darken_into_the_mouth(models):
    tile = mouth.teeth_tile(models.head, 256)
    from sie3d.head.texture import material_texels

    tri, (rows, cols), _ = material_texels(models.head, "M_Teeth", 3, 256)
    tooth = mouth._teeth_components(models.head)[models.head.topology.faces[tri, 0]]
    assert tooth.max() + 1 == 32
    means = np.array([tile[rows[tooth == k], cols[tooth == k]].mean(0) for k in range(32)])
    assert len(np.unique(means.round(4), axis=0)) == 32  # every tooth its own shade
    # The incisors (front) are brighter than the molars (back).
    z = models.head.neutral.numpy()[models.head.topology.faces[tri, 0], 2]
    front, back = z > np.percentile(z, 85), z < np.percentile(z, 15)
    assert tile[rows[front], cols[front]].mean() > 1.5 * tile[rows[back], cols[back]].mean()
    gums = mouth.gums_tongue_tile(models.head, 256)
    assert gums[..., 0].mean() > gums[..., 2].mean()  # red, not grey


def test_teeth_colour_from_the_photo_only_where_teeth_show(happy, faces, models):
    from sie3d.face import observe_photo
    from sie3d.head.texture import srgb_to_linear

    linear = srgb_to_linear(happy.photo.rgb.astype(np.float32) / 255)
    colour = mouth.photo_teeth_colour(linear, happy.observation)  # a smile with teeth
    assert colour is not None and 0.35 < colour.mean() < 0.65 and colour[2] <= colour[0]
    neutral = load_photo(faces / "london_004_neutral.jpg")
    obs, _ = observe_photo(neutral, models.observer, models.embedder)
    closed = srgb_to_linear(neutral.rgb.astype(np.float32) / 255)
    assert mouth.photo_teeth_colour(closed, obs) is None


def test_mouth_light_follows_the_lips(models):
    from sie3d.previews import MOUTH_LIGHT, mouth_light

    def light(emotion: str) -> float:
        with torch.no_grad():
            verts = models.head(torch.zeros(1, 100), torch.from_numpy(prototype(emotion, 1.0))[None])[0]
        return mouth_light(models.head, verts)

    assert MOUTH_LIGHT[0] <= light("neutral") < 0.6 and light("surprise") == 1.0


def test_appearance_ablations_are_registered_with_their_textures():
    assert ablations.get("plain").texture == PLAIN_TEXTURES
    assert ablations.get("appearance").texture == TextureConfig(eyes="photo", lashes=True, mouth="detailed")
    for name, field in (("eyes", "eyes"), ("lashes", "lashes"), ("mouth", "mouth")):
        changed = {f.name for f in dataclasses.fields(TextureConfig)
                   if getattr(ablations.get(name).texture, f.name) != getattr(PLAIN_TEXTURES, f.name)}  # fmt: skip
        assert changed == {field}, name


def test_texture_config_is_checked_and_saved(happy, tmp_path):
    with pytest.raises(ValueError, match="eyes"):
        TextureConfig(eyes="glass")
    assert ReconstructConfig.from_json(happy.config.to_json()) == happy.config
    old = {"face": 0, "texture_size": 512}  # a person saved before TextureConfig: the plain textures it had
    assert ReconstructConfig.from_json(old).texture == PLAIN_TEXTURES


# -- GLB with eyelash cards: Khronos validator and three.js --------------------------------------------------


@pytest.fixture(scope="module")
def lash_glb(happy, models) -> bytes:
    from sie3d.avatar import _SharedMesh
    from sie3d.export import to_glb

    person = retextured(happy, models, dataclasses.replace(happy.config.texture, lashes=True))
    assert LASH_TILE in person.textures.tiles
    posed = _SharedMesh.build(person, models).posed(on_top_of_rest(person.rest_expression, prototype("happy")))
    return to_glb(posed)


def test_glb_with_lashes_is_alpha_masked(lash_glb):
    gltf = pygltflib.GLTF2.load_from_bytes(lash_glb)
    lashes = [m for m in gltf.materials if m.name == "M_EyeLashes"]
    assert len(lashes) == 1
    assert lashes[0].alphaMode == "MASK" and lashes[0].alphaCutoff == 0.5 and lashes[0].doubleSided
    assert lashes[0].pbrMetallicRoughness.baseColorTexture is not None
    # the lids' shade: a black shell blended by its texture's alpha, not weakened by a base alpha
    shade = [m for m in gltf.materials if m.name == "M_EyeOcclusion"]
    assert len(shade) == 1 and shade[0].alphaMode == "BLEND"
    assert shade[0].pbrMetallicRoughness.baseColorFactor == [1.0, 1.0, 1.0, 1.0]


def test_glb_with_lashes_passes_the_khronos_validator_and_loads_in_three_js(gltf_validator, node_packages, lash_glb,
                                                                           tmp_path):  # fmt: skip
    report = validate_gltf(gltf_validator, lash_glb, tmp_path)
    issues = report["issues"]
    assert issues["numErrors"] == 0 and issues["numWarnings"] == 0, issues["messages"][:10]
    loaded = load_in_three(node_packages, lash_glb, tmp_path, "lashes.glb")
    assert loaded["warnings"] == []
    lash_meshes = [m for m in loaded["meshes"] if m["material"] == "M_EyeLashes"]
    assert len(lash_meshes) == 1
    assert lash_meshes[0]["alphaTest"] == 0.5 and not lash_meshes[0]["transparent"]
    assert lash_meshes[0]["texture"] is not None
