"""The hair volume (`sie3d.hair.geometry`, `texture`, `volume`, `render`) on real photos and the real head model.

A bald head gets no hair mesh; the hair never enters the head and never covers the face under any of the 53
expressions at 1.0; long hair reaches below the ears and short hair does not; seen through the photo's own
camera the hair covers the photo's hair; its texture comes from the photo where seen and is not a flat colour
elsewhere; previews draw it and the in-photo composite keeps the photo's real hair.
"""

from __future__ import annotations

import dataclasses

import cv2
import numpy as np
import pytest
import torch

from sie3d.avatar import (
    Person,
    ReconstructConfig,
    composite,
    reconstruct,
    render_preview,
    with_hair,
    with_hair_as_asked,
)
from sie3d.hair.config import HairConfig
from sie3d.hair.geometry import (
    detached_hair,
    directions,
    envelope_expressions,
    filled_mask,
    posed_heads,
    to_angles,
)
from sie3d.hair.mask import hair_mask
from sie3d.hair.texture import (
    SCALP_ROUGHNESS,
    HairTexture,
    despeckled,
    hair_alpha,
    hair_at,
    scalp_roughness,
    short_tips,
    smooth_edge,
    soft_edged,
    synthesize_rings,
    texel_points,
)
from sie3d.head.fit import BROWS
from sie3d.head.model import N_EXPRESSION
from sie3d.head.texture import LUMINANCE, srgb8_to_linear
from sie3d.photo import load_photo

BALD = "london_021_neutral.jpg"
SHORT = "london_004_neutral.jpg"
LONG = "singnet_adele_2016.jpg"
CURLY_UPDO = "london_001_neutral.jpg"
FRINGE = "london_003_neutral.jpg"  # bangs down to the brows
HAIR_ON = ReconstructConfig(texture_size=256, hair=HairConfig(enabled=True))


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def people(models, faces) -> dict:
    names = (BALD, SHORT, LONG, CURLY_UPDO, FRINGE)
    return {name: reconstruct(load_photo(faces / name), models, HAIR_ON) for name in names}


def test_a_person_saved_without_hair_stays_so_unless_hair_is_asked(models, people, tmp_path) -> None:
    """Saved with the hair taken off (--no-hair), loaded and posed as saved: still no hair (the default being on
    does not put it back); asked for (--hair): made, with today's hair settings."""
    bare = with_hair_as_asked(people[SHORT], models, False)
    loaded = Person.load(bare.save(tmp_path / "bare"))
    assert loaded.hair is None and not loaded.config.hair.enabled
    assert with_hair_as_asked(loaded, models) is loaded
    asked = with_hair_as_asked(loaded, models, True)
    assert asked.hair is not None and asked.config.hair == HairConfig()


def test_a_bald_head_gets_no_hair_mesh(models, people, tmp_path) -> None:
    person = people[BALD]
    assert person.hair is None and person.config.hair.enabled and "hair" in person.timings
    # Saved and loaded, the bald head is not sent through the hair stage again each time it is posed.
    loaded = Person.load(person.save(tmp_path / "bald"))
    assert loaded.hair is None and loaded.hair_made
    assert with_hair_as_asked(loaded, models, True) is loaded
    assert with_hair_as_asked(loaded, models, HAIR_ON.hair) is loaded


def test_hair_on_by_default_and_an_older_person_keeps_none(models, people) -> None:
    bare = ReconstructConfig(texture_size=256, hair=HairConfig(enabled=False))
    person = dataclasses.replace(people[SHORT], hair=None, config=bare)
    assert ReconstructConfig().hair.enabled is True
    assert ReconstructConfig.from_json(HAIR_ON.to_json()) == HAIR_ON
    assert ReconstructConfig.from_json(bare.to_json()) == bare
    # a person.json from before the hair existed was made without it, and says so
    assert ReconstructConfig.from_json({"face": 0, "texture_size": 256}).hair == HairConfig(enabled=False)
    # one saved with a hair setting a later version dropped still loads (its hair was saved made)
    older = HAIR_ON.to_json()
    older["hair"]["min_curtain_deg"] = 60.0
    assert ReconstructConfig.from_json(older) == HAIR_ON
    assert person.hair is None
    assert with_hair(person, models).hair is not None


@pytest.mark.parametrize("name", (SHORT, LONG, CURLY_UPDO, FRINGE))
def test_the_hair_never_enters_the_head_under_any_expression(models, people, name) -> None:
    """Every vertex of the head, under the rest, the photo's expression and each of the 53 shapes at 1.0, in a
    direction the hair covers (grown by a grid cell), lies inside the hair's inner clearance."""
    person = people[name]
    grid, config = person.hair.mesh.grid, person.config.hair
    poses = posed_heads(models.head, person.fit.identity, envelope_expressions(person.fit))
    assert poses.shape[0] == 3 + N_EXPRESSION
    covered = grid.presence > 0.0
    step_p, step_a = grid.polar[1] - grid.polar[0], grid.azimuth[1] - grid.azimuth[0]
    for verts in poses:
        offsets = verts - grid.centre
        polar, azimuth = to_angles(offsets)
        radius = np.linalg.norm(offsets, axis=1)
        near = np.zeros(len(verts), bool)
        for dp in (-step_p, 0.0, step_p):  # the vertex's own cell and its neighbours
            for da in (-step_a, 0.0, step_a):
                hair_radius, presence = grid.radius_at(directions(polar + dp, azimuth + da))
                near |= presence > 0
                inside = radius < hair_radius - config.gap_cm / 2
                assert inside[presence > 0].all(), (name, int((~inside & (presence > 0)).sum()))
        assert covered.any() and near.any()


@pytest.mark.parametrize("name", (SHORT, LONG, CURLY_UPDO, FRINGE))
def test_the_hair_keeps_off_the_face_under_every_expression(models, people, name) -> None:
    """No MediaPipe face landmark lower than the brows (eyes, nose, cheeks, mouth, jaw) lies in a direction the
    hair covers, for the rest, the photo's expression and each shape at 1.0; nor do the brows themselves in the
    rest and the photo's expression (raised, they may go under a fringe, as under a real one)."""
    person = people[name]
    grid = person.hair.mesh.grid
    expressions = envelope_expressions(person.fit)
    rest = models.fitter.landmarks_3d(person.fit, expressions[1])
    lower = rest[:, 1] < rest[list(BROWS), 1].min()
    for k, expression in enumerate(expressions):
        landmarks = models.fitter.landmarks_3d(person.fit, expression)
        _, presence = grid.radius_at(landmarks - grid.centre)
        assert (presence[lower] == 0).all(), (name, k, np.flatnonzero(lower & (presence > 0)).tolist())
        if k < 3:
            assert (presence[list(BROWS)] == 0).all(), (name, k)


def test_a_fringe_the_photo_shows_covers_the_forehead_and_a_bare_forehead_stays_bare(models, people) -> None:
    """Over the forehead (MediaPipe landmarks 151, 108, 337, 9, 69, 299, at rest), the fringe's hair is modelled
    where the photo shows it (measured: 3 of 6 covered, the parting and one side left bare, as in the photo);
    foreheads the photos show bare stay bare."""
    forehead = [151, 108, 337, 9, 69, 299]
    for name in (FRINGE, SHORT, LONG, CURLY_UPDO):
        person = people[name]
        grid = person.hair.mesh.grid
        landmarks = models.fitter.landmarks_3d(person.fit, person.fit.rest_expression)
        _, presence = grid.radius_at(landmarks[forehead] - grid.centre)
        if name == FRINGE:
            assert (presence > 0.5).sum() >= 2, presence
        else:
            assert (presence == 0).all(), (name, presence)


def ear_lobe_y(models, person) -> float:
    """Head-space height (cm) of the person's ear lobes at rest (ICT landmarks 2 and 14)."""
    verts = posed_heads(models.head, person.fit.identity, person.fit.rest_expression[None])[0]
    return float(verts[models.head.topology.landmarks_68[[2, 14]], 1].mean())


def lowest_hair(person, low_deg: float, high_deg: float) -> float:
    """Head-space height (cm) of the lowest covered hair vertex between `low_deg` and `high_deg` from the nose
    (signed: positive on the subject's left); +inf when none lies there."""
    mesh = person.hair.mesh
    used = np.unique(mesh.faces[(mesh.presence[mesh.faces] >= 0.5).all(1)])
    _, azimuth = to_angles(mesh.verts[used] - mesh.grid.centre)
    there = (np.degrees(azimuth) >= low_deg) & (np.degrees(azimuth) <= high_deg)
    return float(mesh.verts[used][there, 1].min()) if there.any() else np.inf


def test_long_hair_reaches_below_the_ears_and_short_hair_does_not(models, people) -> None:
    """The lowest hair a front view shows beside the face (covered vertices within 100 degrees of the nose)."""
    long, short = people[LONG], people[SHORT]
    assert lowest_hair(long, -100, 100) < ear_lobe_y(models, long) - 3.0, lowest_hair(long, -100, 100)
    assert lowest_hair(short, -100, 100) > ear_lobe_y(models, short), lowest_hair(short, -100, 100)


@pytest.mark.parametrize("name", ("singnet_city_portrait.jpg", "singnet_woman_portrait.jpg"))
def test_loose_long_hair_hangs_below_the_jaw_on_both_sides_and_behind(models, faces, name) -> None:
    """Loose hair to the shoulders, in a frontal portrait and in a 3/4 one turned away (dark hair on dark clothes):
    the photo shows it beside the neck, and the hair hangs there and behind, at least 5 cm below the ear lobes on
    each side (85 to 115 degrees from the nose) and on both halves of the back (beyond 120). Measured 5.7 to 9.1 cm;
    it used to end 1.2 to 3.0 cm below them, or above them: the hanging hair was continued from the few directions
    the photo sees edge-on and faded out behind."""
    person = reconstruct(load_photo(faces / name), models, HAIR_ON)
    lobe = ear_lobe_y(models, person)
    sides = {"left": lowest_hair(person, 85, 115), "right": lowest_hair(person, -115, -85),
             "back": max(lowest_hair(person, 120, 180), lowest_hair(person, -180, -120))}  # fmt: skip
    assert all(y < lobe - 5.0 for y in sides.values()), (lobe, sides)


def test_short_hair_lies_on_the_nape_and_long_hair_hangs_free(models, people) -> None:
    """Behind the head (more than 150 degrees from the nose) below the drop row, where hair covers the neck: short
    hair lies on it (outer surface 0.8 cm off the scalp envelope on average, 1.3 at most; it hung straight down from
    the back of the skull, 2.3 and 3.3 cm off, a helmet's rim), a long curtain hangs free (3 cm or more)."""

    def off_the_neck(person) -> np.ndarray:
        grid = person.hair.mesh.grid
        drop = int(np.searchsorted(grid.polar, grid.drop_polar))
        back = np.abs(np.degrees(grid.azimuth)) > 150.0
        covered = grid.presence[drop:][:, back] >= 0.5
        return (grid.radius - grid.scalp)[drop:][:, back][covered]

    short, long = off_the_neck(people[SHORT]), off_the_neck(people[LONG])
    assert short.size and long.size
    assert short.mean() < 1.2 and short.max() < 2.0, (short.mean(), short.max())
    assert long.mean() > 3.0, long.mean()


def test_hair_lying_on_the_nape_never_passes_through_the_head_where_the_envelope_is_empty() -> None:
    """`_surface` below the drop row with nothing falling: it follows the scalp envelope, except in directions no part
    of the head lies in (an empty envelope, below the neck's open end), where it falls as a curtain would -- following
    a zero envelope, it came within a centimetre of the head's centre."""
    from sie3d.hair.geometry import _grid_angles, _surface

    config = HairConfig()
    polar, azimuth = _grid_angles(config)
    scalp = np.full((config.rows, config.columns + 1), 9.0, np.float32)
    scalp[-4:] = 0.0  # the lowest rows: no vertex of the head there
    thickness = np.full_like(scalp, 1.0)
    falling = _surface(np.zeros(3), polar, azimuth, scalp, thickness, config)
    lying = _surface(np.zeros(3), polar, azimuth, scalp, thickness, config, falls=np.zeros(config.columns + 1))
    drop = int(np.searchsorted(polar, np.radians(config.drop_polar_deg)))
    np.testing.assert_allclose(lying[drop:-4], 9.0 + config.gap_cm + 1.0)  # on the neck
    np.testing.assert_array_equal(lying[-4:], falling[-4:])  # below it: falls
    assert (lying[-4:] > 9.0).all()


def test_a_ponytails_end_brought_forward_hangs_no_curtain(models, faces) -> None:
    """A ponytail's end brought forward over one shoulder shows beside the neck as a lock about a centimetre wide:
    narrower than `min_hanging_width_cm`, it does not make that side of the head hang (it did: 3 cm below the ear
    lobe, a ribbon on one side; now the side stays 2 cm above it)."""
    person = reconstruct(load_photo(faces / "london_025_neutral.jpg"), models, HAIR_ON)
    lobe = ear_lobe_y(models, person)
    assert lowest_hair(person, 85, 115) > lobe and lowest_hair(person, -115, -85) > lobe, lobe


@pytest.mark.parametrize("name", (SHORT, LONG, CURLY_UPDO))
def test_seen_through_the_photo_camera_the_hair_covers_the_photos_hair(models, people, name) -> None:
    """The hair mesh placed by the fit's camera (rigid with the head) covers most of the photo's hair above the
    forehead (landmark 10), and nearly all it covers there is hair in the photo. Below it, hair framing the face
    is left out by design (it falls behind the shoulders' line), so it is not counted."""
    person = people[name]
    mesh = person.hair.mesh
    mask = filled_mask(hair_mask(person.photo.rgb, person.observation, models.segmenter).mask, 1e9)
    height, width = mask.shape
    points, normals, presence = texel_points(mesh.grid, 256)
    camera = -person.fit.rotation.T @ person.fit.translation
    facing = ((camera - points) * normals).sum(-1) > 0  # the side of the hair the photo's camera sees
    pixels = person.fit.project(points[(presence > 0.5) & facing])
    top_y = float(person.observation.landmarks_px[10, 1])
    keep = (pixels[:, 1] < top_y) & (pixels[:, 0] >= 0) & (pixels[:, 0] < width) & (pixels[:, 1] >= 0)
    drawn = np.zeros_like(mask, bool)
    drawn[pixels[keep, 1].astype(int), pixels[keep, 0].astype(int)] = True
    import cv2

    drawn = cv2.morphologyEx(drawn.astype(np.uint8), cv2.MORPH_CLOSE, np.ones((9, 9), np.uint8)) > 0
    hair = mask > 0.5
    hair[int(top_y):] = False
    recall = (drawn & hair).sum() / hair.sum()
    precision = (drawn & hair).sum() / drawn.sum()
    assert recall > 0.75 and precision > 0.95, (name, recall, precision)  # measured 0.79-0.89 and > 0.99


def test_a_buzz_cut_covers_its_crown_without_a_bare_wedge(models, faces) -> None:
    """Beside a buzz cut the fitted scalp projected just outside the photo's head outline, onto the background, and
    read as bare: a bare wedge through the hair from the crown to the ear (london_042, seen at +30 degrees). Hair
    within `silhouette_slack_cm` of the scalp's point now counts: 0.94 of the directions within 60 degrees of the
    top were covered before, 0.98 now."""
    person = reconstruct(load_photo(faces / "london_042_neutral.jpg"), models, HAIR_ON)
    grid = person.hair.mesh.grid
    crown = np.degrees(grid.polar) < 60.0
    assert (grid.presence[crown] >= HairConfig().min_presence).mean() > 0.97


def test_a_crown_cut_off_by_the_frame_still_gets_hair_behind(models, faces) -> None:
    """A close 3/4 portrait cropped at the crown, dark hair against a dark backdrop: the mask finds hair on the
    top and one side only. The back of the head, which the photo cannot show, is taken to hold hair like the
    scalp it does show, not continued bald from the side the mask missed (it was: a strip of hair on the
    front of a bald head)."""
    person = reconstruct(load_photo(faces / "singnet_woman_portrait.jpg"), models, HAIR_ON)
    grid = person.hair.mesh.grid
    back = np.abs(np.degrees(grid.azimuth)) > 150
    cap = grid.polar < grid.drop_polar
    assert grid.presence[np.ix_(cap, back)].mean() > 0.8, grid.presence[np.ix_(cap, back)].mean()  # 0.24 before


@pytest.mark.parametrize("name", ("zoom_30cm.jpg", "singnet_elon_musk_2015.jpg"))
def test_a_side_the_mask_missed_holds_hair_like_the_other(models, faces, name) -> None:
    """Dark hair pulled back against a dark door (a phone selfie), short hair thinning at one temple: the mask
    finds hair on one side of the head and not on the other, which came out bald above the ear with a band of
    hair across the top (seen at +30 degrees). Above the ears the two sides hold hair alike (the mirrored
    direction's hair counts), so the side the mask missed is covered as the other is."""
    grid = reconstruct(load_photo(faces / name), models, HAIR_ON).hair.mesh.grid
    azimuth = np.degrees(grid.azimuth)
    rows = (grid.polar > np.radians(50)) & (grid.polar < grid.drop_polar)
    left = grid.presence[np.ix_(rows, (azimuth > 60) & (azimuth < 120))].mean()
    right = grid.presence[np.ix_(rows, (azimuth < -60) & (azimuth > -120))].mean()
    assert left > 0.7 and right > 0.7, (left, right)  # the subject's left: 0.20 (zoom) and 0.48 before


@pytest.mark.parametrize("name", ("london_038_happy.jpg", "london_025_happy.jpg"))
def test_hair_synthesized_from_little_seen_hair_is_not_one_patch_tiled(models, faces, name) -> None:
    """Tied-back hair seen from the front: the texture holds one or two windows of seen hair, and the back of
    the head was that patch tiled, a regular knitted pattern (its brightness correlated 0.8-1.0 with itself
    shifted by the patches' step). Now the most seen windows are copied, their unseen texels left out, and
    mirrored at random across the strands: no period at the step."""
    hair = reconstruct(load_photo(faces / name), models, HAIR_ON).hair
    rgba, step = hair.texture.rgba, HairConfig().patch // 2
    size = rgba.shape[0]
    back = np.concatenate([rgba[: size // 2, : size // 8], rgba[: size // 2, -size // 8 :]], 1)[..., :3] @ LUMINANCE

    def correlation(a: np.ndarray, b: np.ndarray) -> float:
        a, b = a - a.mean(), b - b.mean()
        return float((a * b).sum() / np.sqrt((a * a).sum() * (b * b).sum()))

    assert correlation(back[:, :-step], back[:, step:]) < 0.3  # 1.00 and 0.80 before
    assert correlation(back[:-step], back[step:]) < 0.3


def test_a_crown_cut_off_by_the_frame_is_rounded_not_a_block(models, faces) -> None:
    """A close portrait cropped above the hairline: the hair's reach cannot be measured over the crown (and where
    the hair runs into the frame, the frame is not its outline). The crown's thickness used to jump from what was
    continued around the seen hair to the typical thickness where that continuation ended, 1.5 cm from one grid
    row to the next: a flat-topped block standing on the head. Now it passes smoothly from one to the other."""
    person = reconstruct(load_photo(faces / "singnet_city_portrait.jpg"), models, HAIR_ON)
    grid = person.hair.mesh.grid
    crown = grid.polar < np.radians(45)
    thickness, hair = grid.thickness[crown], grid.presence[crown] >= 0.5
    steps = np.abs(np.diff(thickness, axis=0))[hair[1:] & hair[:-1]]
    assert steps.max() < 0.7, steps.max()  # 1.50 before


@pytest.mark.parametrize("name", (SHORT, LONG, CURLY_UPDO, FRINGE))
def test_the_hair_texture_keeps_the_photos_brightness(models, people, name) -> None:
    """The hair texture (seen and synthesized, where it is opaque) was the photo divided by the light's strength
    toward the camera, 1.4-1.5x the face's median light to which the skin is scaled: 0.63-0.86x the photo's
    hair (median luminance), blond rendered brown. Now only the light's colour is divided out: 0.90-1.26x
    (seven people checked). The colour is estimated on the face, so the fit moves it: since the lids are fitted
    to the render (December 4) london_004's light reads redder (R/G 1.24 -> 1.35) and his dark hair 1.38x."""
    person = people[name]
    photo_hair = hair_mask(person.photo.rgb, person.observation, models.segmenter).mask > 0.5
    photo = srgb8_to_linear(person.photo.rgb)[photo_hair] @ LUMINANCE
    rgba = person.hair.texture.rgba
    texture = rgba[..., :3][rgba[..., 3] > 0.5] @ LUMINANCE
    assert 0.8 < np.median(texture) / np.median(photo) < 1.45


def test_a_two_coloured_hat_keeps_both_colours_and_copies_no_specks(models, faces) -> None:
    """A Santa hat (the mask's "headwear-or-hair", for its vivid red): its red crown, far darker than the white
    brim above the forehead, was taken for backdrop between strands by hair's outlier rule and painted white.
    Opaque headwear keeps every seen texel's colour, and its unseen back goes round the head ring by ring: patches
    copied per channel across the red-white border put white and cyan specks into the red and red ones into the
    white."""
    person = reconstruct(load_photo(faces / "max_surprised.jpeg"), models, HAIR_ON)
    assert person.hair.mask_summary["kind"] == "headwear-or-hair"
    assert any("vivid colour" in note for note in person.hair.mask_summary["notes"])
    rgba = person.hair.texture.rgba
    r, g, b = (rgba[..., k][rgba[..., 3] > 0.5] for k in range(3))
    red = (r > 3 * g) & (r > 3 * b) & (r > 0.1)  # the crown's red (linear: about 0.35, 0.01, 0.02)
    cyan = (g > 1.5 * r) & (b > 1.5 * r)
    assert 0.05 < red.mean() < 0.6, red.mean()  # the crown's share of the hat: 0.12 (none before)
    assert cyan.mean() < 0.002, cyan.mean()  # 0 (0.006 with per-channel patches)
    assert person.hair.texture.seen > 0.15  # 0.08 when the crown was dropped as an outlier (0.24 with it)
    size = rgba.shape[0]
    rows, colours, _ = _back_rings(rgba)
    r, g, b = (colours[rows < 0.2 * size][..., k] for k in range(3))
    assert ((r > 3 * g) & (r > 3 * b)).mean() > 0.5  # red behind, at the crown (a grey-white cap before the rings)


def _back_rings(rgba: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The back of the head (azimuth beyond +-150 degrees) of a hair texture: (its rows covered all across, as
    indices from the crown; their texels' (rows, texels, 3) colours; their median luminance)."""
    size = rgba.shape[0]
    back = np.concatenate([rgba[:, : size // 12], rgba[:, -size // 12 :]], 1)
    rows = np.flatnonzero((back[..., 3] > 0.9).mean(1) > 0.9)
    return rows, back[rows, :, :3], np.median(back[rows, :, :3] @ LUMINANCE, 1)


def test_headwear_seen_only_edge_on_is_synthesized_not_left_black() -> None:
    """`synthesize_rings` with no row seen face-on falls back to hair's synthesis: every texel gets a colour."""
    rng = np.random.default_rng(0)
    size = 64
    colour = np.zeros((size, size, 3), np.float32)
    seen = np.zeros((size, size), np.float32)
    colour[20:30, 10:40] = (0.5, 0.1, 0.1)
    seen[20:30, 10:40] = 1.0
    facing = np.full((size, size), 0.2, np.float32)  # all edge-on: no row has a face-on texel
    out = synthesize_rings(colour, seen, facing, rng, 16)
    assert out.shape == colour.shape and out.min() > 0.01  # no black texel left where nothing was seen
    np.testing.assert_allclose(out[24, 25], colour[24, 25], atol=1e-3)  # the seen colour kept


def test_a_caps_band_and_crown_go_round_the_head(models, faces) -> None:
    """A navy cap with a white crown (two tones: opaque headwear) was black hair all round, its crown and badge
    dropped as backdrop between strands. Its back now continues what the photo shows of its front ring by ring:
    the white crown (rows from the crown down) over the dark band, each ring about one colour round the head
    (hair's patches mottled it with the band's and the crown's colours)."""
    person = reconstruct(load_photo(faces / "mpl_grace_hopper.jpg"), models, HAIR_ON)
    assert person.hair.mask_summary["kind"] == "headwear-or-hair"
    size = person.hair.texture.rgba.shape[0]
    rows, colours, ring = _back_rings(person.hair.texture.rgba)
    crown, band = np.median(ring[rows < 0.2 * size]), np.median(ring[rows > 0.35 * size])
    assert crown > 10 * band, (crown, band)  # measured 0.93 and 0.003
    spread = np.median(np.std(np.log(colours @ LUMINANCE + 1e-3), 1))
    assert spread < 0.2, spread  # 0.08: the rings' faint strand noise


@pytest.mark.parametrize("name", (SHORT, LONG))
def test_the_texture_comes_from_the_photo_and_is_not_flat_behind(people, name) -> None:
    hair = people[name].hair
    rgba = hair.texture.rgba
    size = people[name].config.hair.texture_size
    assert rgba.shape == (size, size, 4) and np.isfinite(rgba).all() and rgba.min() >= 0 and rgba.max() <= 1
    assert hair.texture.seen > 0.04  # of the covered texels (adele, a 3/4 view: 0.050; the short cut 0.12)
    # The back of the head (azimuth beyond +-150 degrees, u near 0 and 1), where the photo sees nothing: hair
    # colours (within a factor of the seen hair's median), with strand detail, not one flat colour.
    back = np.concatenate([rgba[:, : size // 12], rgba[:, -size // 12 :]], 1)
    covered = back[..., 3] > 0.9
    assert covered.mean() > 0.3
    luminance = back[..., :3][covered] @ np.array([0.2126, 0.7152, 0.0722])
    front = rgba[:, size * 2 // 5 : size * 3 // 5]
    seen_luminance = np.median(front[..., :3][front[..., 3] > 0.9] @ np.array([0.2126, 0.7152, 0.0722]))
    assert 0.4 < np.median(luminance) / seen_luminance < 2.5
    assert luminance.std() / luminance.mean() > 0.15


def test_previews_draw_the_hair_and_the_composite_keeps_the_photos_hair(models, people) -> None:
    person = people[SHORT]
    bald = dataclasses.replace(person, hair=None)
    with_, without = (render_preview(p, models, p.rest_expression, 128, (0.0, 180.0)) for p in (person, bald))
    top = (slice(0, 40), slice(0, 256))  # the crown in both views
    assert np.abs(with_[top].astype(int) - without[top].astype(int)).mean() > 10
    assert (composite(person, models, person.rest_expression) == composite(bald, models, bald.rest_expression)).all()


def test_the_composite_keeps_a_fringe_over_the_forehead(models, people) -> None:
    """Where the hair volume lies in front of the face (a fringe), the in-photo composite keeps the photo: the
    avatar's forehead skin used to be blended over the bangs as a pale band. (Without a fringe nothing changes:
    the test above.)"""
    person = people[FRINGE]
    bald = dataclasses.replace(person, hair=None)
    with_, without = (composite(p, models, p.rest_expression).astype(int) for p in (person, bald))
    photo = person.photo.rgb.astype(int)
    face = (without != photo).any(-1)
    changed = (with_ != without).any(-1)
    assert changed.sum() > 0.1 * face.sum()  # the bangs: 19% of the face's pixels (london_003)
    assert (changed & ~face).sum() == 0
    assert np.abs(with_ - photo)[changed].mean() < 0.4 * np.abs(without - photo)[changed].mean()  # 7 against 29


def test_hanging_hair_not_joined_to_the_cap_is_cleared() -> None:
    """On a grid (rows down from the crown, columns around the head, wrapping): a curtain hanging from the cap
    stays, across the azimuth seam too; a band floating below a gap (a ponytail's end seen beside the neck) is
    cleared with its soft edge, but not the cells beside the joined curtain."""
    covered = np.zeros((20, 40), bool)
    covered[:8] = True  # the cap, above the drop row
    covered[8:14, 36:] = covered[8:14, :3] = True  # a curtain across the seam, joined to the cap
    covered[16:18, 10:20] = True  # a floating band below a gap
    clear = detached_hair(covered, drop_row=8)
    assert clear[16:18, 10:20].all() and clear[15, 9] and clear[19, 21]  # the band and its soft edge
    assert not (clear & covered)[:14].any()  # the cap and the joined curtain
    assert not clear[14, 0] and not clear[14, 38]  # the curtain's own soft edge stays


def test_an_island_apart_from_the_hair_is_cleared(models, faces) -> None:
    """Without a drop row, the pieces not joined to the largest are cleared: on a grid, a patch beside the face
    apart from the cap (london_024's right side, seen in profile as a dark block in front of the ear) goes, the
    cap across the azimuth seam stays; on the photo, the hair is one piece."""
    covered = np.zeros((20, 40), bool)
    covered[:6] = True
    covered[6:9, 38:] = covered[6:9, :2] = True  # the cap reaching down across the seam
    covered[10:13, 12:16] = True  # an island
    clear = detached_hair(covered)
    assert clear[10:13, 12:16].all() and not (clear & covered)[:9].any()
    # The largest piece beside the seam but not across it keeps its soft edge on the seam's other side.
    beside = np.zeros((10, 20), bool)
    beside[2:6, 0:5] = True
    beside[8, 10] = True
    clear = detached_hair(beside)
    assert clear[8, 10] and not clear[:, 15:].any() and not (clear & beside)[:7].any()
    person = reconstruct(load_photo(faces / "london_024_neutral.jpg"), models, HAIR_ON)
    grid = person.hair.mesh.grid
    pieces, _ = cv2.connectedComponents(np.concatenate([grid.presence[:, :-1] >= 0.5] * 3, 1).astype(np.uint8),
                                        connectivity=8)  # fmt: skip
    assert pieces == 2  # the background and one piece (it wraps across the three copies); before, also an
    # island of 26 cells, seen three times


def test_the_alpha_edge_is_a_curve_not_the_grids_staircase() -> None:
    """A diagonal hair edge on the grid (binary per vertex), interpolated bilinearly into texels as the texture
    is, steps along the cells; `smooth_edge` makes its 0.5 level a curve: the level's distance from a straight
    line (in grid rows) at most half of the staircase's, at three slopes."""
    import cv2

    rows, cols, cell = 24, 32, (7.0, 5.0)  # texels per grid row and column, as 512 texels over 72 x 96 cells
    r, c = np.mgrid[:rows, :cols]

    def roughness(presence: np.ndarray) -> float:
        columns = np.arange(40, presence.shape[1] - 40)  # away from the wrap-around
        level = []
        for j in columns:
            i = int(np.argmax(presence[:, j] < 0.5))
            level.append(i - 1 + (presence[i - 1, j] - 0.5) / (presence[i - 1, j] - presence[i, j]))
        line = np.polyval(np.polyfit(columns, level, 1), columns)
        return float(np.sqrt(np.mean((np.array(level) - line) ** 2)) / cell[0])

    for slope in (0.2, 0.35, 0.65):
        grid = (r <= 4 + c * slope).astype(np.float32)
        texels = cv2.resize(grid, (int(cols * cell[1]), int(rows * cell[0])), interpolation=cv2.INTER_LINEAR)
        stairs, smooth = roughness(texels), roughness(smooth_edge(texels, cell))
        assert stairs > 0.15 and smooth < 0.5 * stairs, (slope, stairs, smooth)


def test_strand_tips_hang_from_the_hair_and_never_float() -> None:
    """Hair above, then a band where the continued presence lingers just below one half, then skin: the edge noise
    used to raise specks and strokes in that band, floating on the skin below the hairline (london_012's temple).
    Every piece of the alpha now touches the hair (presence >= 0.5), and the edge keeps its strand tips."""
    import cv2

    presence = np.zeros((256, 256), np.float32)
    presence[:100] = 1.0
    presence[100:180] = 0.4
    alpha = hair_alpha(presence, np.random.default_rng(0))
    count, labels = cv2.connectedComponents((alpha > 0).astype(np.uint8), connectivity=8)
    assert count == 2  # the hair and its tips, in one piece
    assert alpha[100:180].max() > 0.5  # the tips reach into the band
    assert (alpha[120:180] > 0).mean() < (alpha[100:110] > 0).mean()  # thinning out downward


def test_strand_tips_are_short_at_the_hairline_and_long_where_the_hair_hangs(models, people) -> None:
    """Long strand tips hung over the forehead as a fringe of dark teeth the photo does not show: high on the head
    (the hairline, the temples) the tips' noise is a third as long as where the hair hangs, and the tips come out
    about half as long. Measured as the mean length along v (the strands' direction) of the alpha's runs across an
    edge where the presence fades; and on a real head, short at the forehead's hairline, long at the chin's level."""
    presence = np.tile(np.clip(np.linspace(1.4, -0.4, 256), 0, 1)[:, None], (1, 256)).astype(np.float32)

    def run_length(alpha: np.ndarray) -> float:
        band = alpha[96:160] > 0.5  # where the presence crosses one half
        starts = band[0].sum() + (band[1:] & ~band[:-1]).sum()  # (a run already on at the band's top counts)
        return float(band.sum() / max(starts, 1))

    long, short = (np.mean([run_length(hair_alpha(presence, np.random.default_rng(seed), s)) for seed in range(3)])
                   for s in (0.0, 1.0))  # fmt: skip
    assert short < 0.7 * long, (short, long)
    person = people[SHORT]
    grid = person.hair.mesh.grid
    size = 512
    weights = short_tips(grid, size)
    landmarks = models.fitter.landmarks_3d(person.fit, person.rest_expression)
    polar, _ = to_angles(landmarks[[10, 152]] - grid.centre)  # the forehead's top, the chin
    rows = np.minimum(polar / (grid.polar[0] + grid.polar[-1]) * size, size - 1).astype(int)
    assert weights[rows[0]] == 1.0 and weights[rows[1]] == 0.0, np.degrees(polar)


def test_the_hair_painted_on_the_scalp_fades_into_the_skin_in_the_hairs_colour() -> None:
    """The painted hairline is the hair's alpha blurred: partial at the edge, where its colour is the hair's (the
    texture's colour outside the hair, black here, is not mixed in), unchanged where the hair is whole, and the
    same across the texture's seam at the back of the head as anywhere else."""
    rgba = np.zeros((64, 64, 4), np.float32)
    rgba[:32, :, :3] = (0.3, 0.2, 0.1)
    rgba[:32, :, 3] = 1.0
    soft = soft_edged(HairTexture(rgba, 1.0), 4.0).rgba
    edge = (soft[..., 3] > 0.05) & (soft[..., 3] < 0.95)
    assert edge[28:36].all() and not edge[:16].any() and not edge[48:].any()
    np.testing.assert_allclose(soft[edge][:, :3], np.broadcast_to((0.3, 0.2, 0.1), (edge.sum(), 3)), atol=1e-5)
    np.testing.assert_allclose(soft[:16], rgba[:16], atol=1e-6)
    lock = np.zeros((64, 64, 4), np.float32)
    lock[:, 60:63] = (0.3, 0.2, 0.1, 1.0)  # a lock of hair beside the seam (u wraps around)
    moved = soft_edged(HairTexture(np.roll(lock, 20, 1), 1.0), 2.0).rgba
    np.testing.assert_allclose(np.roll(soft_edged(HairTexture(lock, 1.0), 2.0).rgba, 20, 1), moved, atol=1e-6)


def test_specks_of_the_seen_hair_are_not_copied_around_the_head(people) -> None:
    """Dark specks (texels darker than the median of their 5 x 5 neighbours by more than e^0.3) in the covered hair
    texture, per 1000 texels: a pore or a compression artefact of the photo's hair was copied patch by patch all over
    the back of the head (measured 18 to 54 on these four, 32 on average; now 6 to 13, 10)."""
    rates = []
    for name in (SHORT, LONG, CURLY_UPDO, FRINGE):
        rgba = people[name].hair.texture.rgba
        brightness = np.maximum(rgba[..., :3].mean(-1), 1e-4).astype(np.float32)
        dark = np.log(brightness / np.maximum(cv2.medianBlur(brightness, 5), 1e-4)) < -0.3
        rates.append(1000 * dark[rgba[..., 3] > 0.5].mean())
    assert np.mean(rates) < 18, rates


def test_despeckled_takes_out_points_and_keeps_patches_and_what_is_unseen() -> None:
    colour = np.full((40, 40, 3), 0.4, np.float32)
    colour[10, 10] = (0.05, 0.04, 0.03)  # a dark point
    colour[20:30, 20:30] = 0.1  # a dark patch, larger than the median's window
    colour[35, 35] = 0.9  # a bright point, unseen
    seen = np.ones((40, 40), bool)
    seen[35, 35] = False
    out = despeckled(colour, seen)
    np.testing.assert_allclose(out[10, 10].mean(), 0.4, rtol=1e-5)
    assert out[10, 10, 0] > out[10, 10, 2]  # its hue kept
    np.testing.assert_array_equal(out[22:28, 20:30], colour[22:28, 20:30])  # (a median rounds only its corners)
    np.testing.assert_array_equal(out[20:30, 22:28], colour[20:30, 22:28])
    np.testing.assert_array_equal(out[35, 35], colour[35, 35])


@pytest.mark.parametrize("name", (SHORT, CURLY_UPDO))
def test_the_hair_painted_on_the_scalp_is_the_volumes_texture_in_the_same_direction(people, name) -> None:
    """`hair_at` reads the hair texture where the volume's own UVs do, in the same direction from the centre
    (on the cap, where the shell follows its direction; off the azimuth seam); the painted scalp tiles keep the
    person's own texels where no hair is painted, and in the directions where the photo shows hair but the volume
    may not reach (the forehead), the face is painted with hair, darker than the skin."""
    from sie3d.head.texture import _sample_bilinear

    person = people[name]
    hair = person.hair
    mesh, grid, rgba = hair.mesh, hair.mesh.grid, hair.texture.rgba
    size = rgba.shape[0]
    polar, _ = to_angles(mesh.verts - grid.centre)
    cap = (polar < grid.drop_polar - 0.05) & (mesh.uvs[:, 0] > 0.02) & (mesh.uvs[:, 0] < 0.98)
    cap &= mesh.uvs[:, 1] < 0.99  # (not the crown's pole)
    via_uv = _sample_bilinear(rgba, np.stack([mesh.uvs[cap, 0] * size, (1 - mesh.uvs[cap, 1]) * size], -1))
    via_direction = hair_at(hair.texture, grid, mesh.verts[cap])
    assert cap.sum() > 500 and np.abs(via_uv - via_direction).max() < 2e-3
    own = person.textures.tiles[0]
    painted = hair.scalp_tiles[0]
    changed = np.abs(painted - own).max(-1) > 1e-6
    assert 0.02 < changed.mean() < 0.5  # the scalp part of the face tile, not the face
    luminance = np.array([0.2126, 0.7152, 0.0722], np.float32)
    assert (painted[changed] @ luminance).mean() < 0.8 * (own[changed] @ luminance).mean()
    # Exported, the painted scalp is matte and the skin keeps its roughness.
    roughness = scalp_roughness(own, painted, 0.6) / 255.0
    share = cv2.resize(changed.astype(np.float32), roughness.shape[::-1], interpolation=cv2.INTER_AREA)
    far_from_hair = cv2.dilate((share > 0).astype(np.uint8), np.ones((9, 9), np.uint8)) == 0
    assert np.allclose(roughness[far_from_hair], 0.6, atol=0.003)
    inside = cv2.erode((share > 0.999).astype(np.uint8), np.ones((9, 9), np.uint8)) > 0
    assert inside.any() and np.allclose(roughness[inside], SCALP_ROUGHNESS, atol=0.003)


def test_the_glb_carries_the_hair_as_its_own_blended_material_and_passes_the_validator(
        models, people, gltf_validator, node_packages, tmp_path) -> None:  # fmt: skip
    from sie3d.avatar import export_meshes
    from sie3d.export import to_glb

    from conftest import glb_json, load_in_three, validate_gltf

    person = people[SHORT]
    mesh = export_meshes(person, models, [person.rest_expression])[0]
    bald = export_meshes(dataclasses.replace(person, hair=None), models, [person.rest_expression])[0]
    assert len(mesh.verts) == len(bald.verts) + len(person.hair.mesh.verts)
    assert not mesh.morph_deltas[:, len(bald.verts) :].any()  # rigid: no morph target moves the hair
    data = to_glb(mesh)
    report = validate_gltf(gltf_validator, data, tmp_path)
    issues = report["issues"]
    assert issues["numErrors"] == 0 and issues["numWarnings"] == 0, issues["messages"][:10]
    document = glb_json(data)
    hair = next(m for m in document["materials"] if m["name"] == "M_Hair")
    assert hair["alphaMode"] == "BLEND" and hair["doubleSided"] and "baseColorTexture" in hair["pbrMetallicRoughness"]
    # The scalp under the hair is matte (a roughness map on the head's materials); the bare head has none.
    for name in ("M_Face", "M_BackHead"):
        pbr = next(m for m in document["materials"] if m["name"] == name)["pbrMetallicRoughness"]
        assert "metallicRoughnessTexture" in pbr and pbr["roughnessFactor"] == 1.0 and pbr["metallicFactor"] == 0.0
    assert all(m.roughness_texture is None for m in bald.materials)
    loaded = load_in_three(node_packages, data, tmp_path, "hair.glb")
    assert loaded["warnings"] == [] and "M_Hair" in [m["material"] for m in loaded["meshes"]]


def test_write_outputs_reports_the_hair_and_exports_it(models, people, tmp_path) -> None:
    import json

    from sie3d.avatar import OutputConfig, photo_variants, write_outputs

    from conftest import glb_json

    person = people[SHORT]
    config = OutputConfig(formats=("glb", "obj"), previews=True, in_photo=False, preview_size=128)
    write_outputs(person, models, photo_variants(person, ["neutral"]), tmp_path, config, save_person=False)
    mtl = (tmp_path / "neutral" / "avatar.mtl").read_text()
    for name in ("M_Face", "M_BackHead"):  # the matte scalp's roughness maps, as the PBR extension's map_Pr
        assert f"map_Pr avatar_{name}_roughness.png" in mtl
        assert (tmp_path / "neutral" / f"avatar_{name}_roughness.png").is_file()
    report = json.loads((tmp_path / "report.json").read_text())
    assert report["hair"]["mask"]["kind"] == "hair" and report["hair"]["triangles"] == len(person.hair.mesh.faces)
    assert report["config"]["reconstruct"]["hair"]["enabled"] is True
    document = glb_json((tmp_path / "neutral" / "avatar.glb").read_bytes())
    assert "M_Hair" in [m["name"] for m in document["materials"]]
    bald = people[BALD]
    write_outputs(bald, models, photo_variants(bald, ["neutral"]), tmp_path / "bald", config, save_person=False)
    assert json.loads((tmp_path / "bald" / "report.json").read_text())["hair"] is None


def test_the_cli_makes_hair_by_default_a_saved_person_keeps_it_and_no_hair_leaves_it_out(faces, tmp_path) -> None:
    import json

    from conftest import glb_json, run_cli

    out = tmp_path / "out"
    done = run_cli("reconstruct", str(faces / SHORT), "--variants", "neutral", "--formats", "glb",
                   "--no-in-photo", "--no-previews", "-o", str(out), "-q")  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    report = json.loads((out / "report.json").read_text())
    assert report["hair"]["mask"]["kind"] == "hair" and report["config"]["reconstruct"]["hair"]["enabled"]
    assert "M_Hair" in [m["name"] for m in glb_json((out / "neutral" / "avatar.glb").read_bytes())["materials"]]
    again = tmp_path / "again"
    done = run_cli("reconstruct", str(out / "person"), "--variants", "neutral", "--formats", "glb", "--no-in-photo",
                   "--no-previews", "-o", str(again), "-q")  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    assert json.loads((again / "report.json").read_text())["hair"]["triangles"] == report["hair"]["triangles"]
    done = run_cli("reconstruct", str(faces / SHORT), "--no-hair", "--variants", "neutral", "--formats", "glb",
                   "--no-in-photo", "--no-previews", "-o", str(tmp_path / "plain"), "-q")  # fmt: skip
    assert json.loads((tmp_path / "plain" / "report.json").read_text())["hair"] is None  # on by default: asked off
