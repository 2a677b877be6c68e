"""The avatar API (sie3d.avatar): a saved person loads back exactly, damaged folders fail clearly,
write_outputs writes exactly what was asked, and the windowed in-photo composite equals a full-photo render.

Real models on a real photo: the session's reconstructed person (`happy`, conftest)."""

from __future__ import annotations

import dataclasses
import json
from dataclasses import asdict
from pathlib import Path

import numpy as np
import pytest

from sie3d.avatar import (
    _PAINTED_GAZE,
    Models,
    OutputConfig,
    Person,
    PhotoWindow,
    ReconstructConfig,
    Variant,
    _textured,
    composite,
    photo_variants,
    reconstruct,
    render_preview,
    write_outputs,
)
from sie3d.errors import PersonError, UsageError
from sie3d.expressions import on_top_of_rest, prototype
from sie3d.face.observation import FaceObservation
from sie3d.hair.geometry import HairConfig
from sie3d.head.names import ICT_NAMES

from conftest import OBJ_FILES, PERSON_FILES, files_under, run_cli


def _assert_same_fields(a: object, b: object, where: str) -> None:
    """Every dataclass field equal (nested dataclasses field by field): arrays with the same dtype and values,
    floats exactly."""
    for f in dataclasses.fields(a):
        x, y = getattr(a, f.name), getattr(b, f.name)
        name = f"{where}.{f.name}"
        if dataclasses.is_dataclass(x):
            assert type(x) is type(y), name
            _assert_same_fields(x, y, name)
        elif isinstance(x, np.ndarray):
            assert isinstance(y, np.ndarray) and x.dtype == y.dtype and np.array_equal(x, y), name
        elif isinstance(x, dict) and x and isinstance(next(iter(x.values())), np.ndarray):
            assert x.keys() == y.keys(), name
            for key in x:
                assert x[key].dtype == y[key].dtype and np.array_equal(x[key], y[key]), f"{name}[{key}]"
        elif isinstance(x, float) and np.isnan(x):
            assert np.isnan(y), name
        else:
            assert type(x) is type(y) and x == y, (name, x, y)


def assert_same_person(a: Person, b: Person) -> None:
    for part in ("photo", "observation", "fit", "textures"):
        _assert_same_fields(getattr(a, part), getattr(b, part), part)
    assert len(a.faces) == len(b.faces)
    for k, (x, y) in enumerate(zip(a.faces, b.faces, strict=True)):
        _assert_same_fields(x, y, f"faces[{k}]")
    assert a.warnings == b.warnings and a.config == b.config
    assert (a.hair is None) == (b.hair is None)
    if a.hair is not None:  # mesh, grid, texture, scalp tiles, mask summary, timings
        _assert_same_fields(a.hair, b.hair, "hair")
    assert set(b.timings) == {"load_person"}  # a loaded person times its own loading, not the saved run


def test_person_save_load_round_trip(happy: Person, tmp_path: Path) -> None:
    folder = happy.save(tmp_path / "person")
    assert sorted(p.name for p in folder.iterdir()) == ["arrays.npz", "person.json", "photo.png"]
    meta = json.loads((folder / "person.json").read_text())
    assert meta["format_version"] == 3 and meta["timings"] == happy.timings and meta["hair"]["mask"]["kind"] == "hair"
    loaded = Person.load(folder)
    assert_same_person(happy, loaded)
    assert isinstance(loaded.observation, FaceObservation) and loaded.observation.identity.shape == (128,)
    np.testing.assert_array_equal(loaded.rest_expression, happy.fit.rest_expression)
    np.testing.assert_array_equal(loaded.photo_expression, happy.fit.expression)
    # A face without a detection confidence (nan) and without identity survives as well.
    odd = dataclasses.replace(happy, faces=(*happy.faces, dataclasses.replace(happy.faces[0], confidence=np.nan,
                                                                              identity=None, index=1)))
    assert_same_person(odd, Person.load(odd.save(tmp_path / "odd")))


def test_a_saved_person_keeps_its_hair_and_generate_exports_it(happy: Person, models: Models, tmp_path: Path) -> None:
    from sie3d.avatar import with_hair, with_hair_as_asked

    from conftest import glb_json

    person = with_hair(happy, models)
    assert person.hair is not None
    folder = person.save(tmp_path / "person")
    meta = json.loads((folder / "person.json").read_text())
    assert meta["hair"]["mask"] == person.hair.mask_summary and meta["config"]["hair"]["enabled"]
    loaded = Person.load(folder)
    assert_same_person(person, loaded)  # every hair array equal, dtype and values
    # A folder of format version 1 (no hair in it; the iris painted where the photo looks, by a texture setting
    # since retired) still loads, without hair, and warns that its painted eyes are not made to turn.
    meta.update(format_version=1)
    meta["config"]["texture"]["gaze"] = "photo"
    del meta["hair"]
    (folder / "person.json").write_text(json.dumps(meta))
    old = Person.load(folder)
    assert old.warnings == (*person.warnings, _PAINTED_GAZE)
    assert_same_person(dataclasses.replace(person, hair=None, warnings=old.warnings), old)
    # ... and its hair, asked for when it was saved but never kept, is made when it is posed.
    assert not old.hair_made and with_hair_as_asked(old, models).hair is not None
    # `generate PERSON_FOLDER` exports the saved hair (not made again: no hair stage in this run).
    folder = person.save(tmp_path / "again")
    out = tmp_path / "out"
    done = run_cli("generate", str(folder), "--text", "a warm smile", "--formats", "glb", "--no-previews",
                   "--no-in-photo", "-o", str(out), "-q")  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    report = json.loads((out / "report.json").read_text())
    assert report["hair"]["triangles"] == len(person.hair.mesh.faces) and "hair" not in report["timings_s"]
    glb = next(out.glob("*/avatar.glb"))
    document = glb_json(glb.read_bytes())
    hair = next(m for m in document["materials"] if m["name"] == "M_Hair")
    assert hair["alphaMode"] == "BLEND" and "baseColorTexture" in hair["pbrMetallicRoughness"]
    # --no-hair takes the saved hair off this avatar (the folder keeps it).
    done = run_cli("generate", str(folder), "--text", "a warm smile", "--formats", "glb", "--no-previews",
                   "--no-in-photo", "--no-hair", "-o", str(tmp_path / "bare"), "-q")  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    glb = next((tmp_path / "bare").glob("*/avatar.glb"))
    assert "M_Hair" not in {m["name"] for m in glb_json(glb.read_bytes())["materials"]}
    assert Person.load(folder).hair is not None


def test_damaged_or_foreign_person_folders_fail_clearly(happy: Person, tmp_path: Path, faces: Path) -> None:
    good = happy.save(tmp_path / "good")

    def variant(name: str, change) -> Path:
        folder = tmp_path / name
        folder.mkdir()
        for item in good.iterdir():
            (folder / item.name).write_bytes(item.read_bytes())
        change(folder)
        return folder

    def set_version(version):
        def change(folder: Path) -> None:
            meta = json.loads((folder / "person.json").read_text())
            meta["format_version"] = version
            (folder / "person.json").write_text(json.dumps(meta))

        return change

    def flip_byte(folder: Path) -> None:
        data = bytearray((folder / "arrays.npz").read_bytes())
        data[len(data) // 2] ^= 0xFF
        (folder / "arrays.npz").write_bytes(bytes(data))

    cases = [
        (tmp_path / "absent", "not a saved person", "person/ folder"),
        (variant("newer", set_version(99)), "format version 99", "upgrade sie3d"),
        (variant("older", set_version(0)), "format version 0", "reconstruct the photo again"),
        (variant("flipped", flip_byte), "arrays.npz does not match its checksum", "sie3d reconstruct"),
        (variant("no-photo", lambda f: (f / "photo.png").unlink()), "photo.png is missing", "sie3d reconstruct"),
        (variant("not-json", lambda f: (f / "person.json").write_text("{trunc")), "not a sie3d person", "again"),
    ]
    for folder, message, hint in cases:
        with pytest.raises(PersonError) as info:
            Person.load(folder)
        assert message in info.value.message and hint in info.value.hint, (folder.name, info.value)
    # Through the CLI: its own exit code, one message and a fix, no traceback, nothing written.
    out = tmp_path / "out"
    result = run_cli("reconstruct", str(tmp_path / "newer"), "-o", str(out), "-q")
    assert result.returncode == PersonError.exit_code and "Traceback" not in result.stderr
    assert "format version 99" in result.stderr and "fix:" in result.stderr and not out.exists()
    result = run_cli("reconstruct", str(faces / "london_001_neutral.jpg"), "--variants", "neutral,smile", "-o",
                     str(out))
    assert result.returncode == UsageError.exit_code and "--variants" in result.stderr and not out.exists()


def test_write_outputs_one_variant_writes_exactly_what_is_asked(happy: Person, models: Models, tmp_path: Path):
    out = tmp_path / "one"
    config = OutputConfig(formats=("glb",), previews=False, in_photo=True)
    written = write_outputs(happy, models, photo_variants(happy, ["neutral"]), out, config, save_person=False,
                            report_extra={"command": "test"})  # fmt: skip
    assert files_under(out) == {"neutral/avatar.glb", "neutral/in_photo.png", "report.json"}
    assert {str(p.relative_to(out)) for p in written} == files_under(out)
    report = json.loads((out / "report.json").read_text())
    assert report["command"] == "test" and report["person"] is None
    assert report["config"]["output"] == {"formats": ["glb"], "previews": False, "in_photo": True, "preview_size": 512,
                                         "wrinkles": False, "light": "studio"}
    assert report["config"]["reconstruct"] == {"face": 0, "texture_size": 512, "texture": {
        "eyes": "photo", "lashes": True, "mouth": "detailed", "occlusion": True, "shadows": False},
        "hair": asdict(HairConfig()), "gaze": "ahead"}
    assert report["config"]["reconstruct"]["hair"]["enabled"] is True  # hair is on by default
    assert list(report["variants"]) == ["neutral"]
    assert report["variants"]["neutral"]["coefficients"] == report["expression_neutral"]


def test_write_outputs_three_variants(happy: Person, models: Models, tmp_path: Path) -> None:
    surprise = on_top_of_rest(happy.rest_expression, prototype("surprise", 1.0))
    variants = [*photo_variants(happy), Variant("surprise", surprise, {"text": "wide-eyed", "emotion": "surprise"})]
    out = tmp_path / "three"
    written = write_outputs(happy, models, variants, out, OutputConfig(formats=("obj",), in_photo=False,
                                                                       preview_size=96))  # fmt: skip
    expected = {f"{v}/{name}" for v in ("expression", "neutral", "surprise") for name in OBJ_FILES}
    expected |= {*PERSON_FILES, "report.json"}
    assert files_under(out) == expected and {str(p.relative_to(out)) for p in written} == expected
    # The OBJs hold each pose; the textures are the same bytes in every variant (encoded once).
    assert (out / "surprise" / "avatar.obj").read_bytes() != (out / "neutral" / "avatar.obj").read_bytes()
    assert (out / "surprise" / "avatar_M_Face.png").read_bytes() == (out / "neutral" / "avatar_M_Face.png").read_bytes()
    report = json.loads((out / "report.json").read_text())
    assert list(report["variants"]) == ["expression", "neutral", "surprise"]
    assert report["variants"]["surprise"]["info"] == {"text": "wide-eyed", "emotion": "surprise"}
    coefficients = report["variants"]["surprise"]["coefficients"]
    assert list(coefficients) == list(ICT_NAMES) and coefficients["jawOpen"] > 0.1
    assert {"preview_surprise", "export_surprise", "save_person"} <= set(report["timings_s"])
    assert_same_person(happy, Person.load(out / "person"))


def test_windowed_composite_equals_a_full_photo_render(happy: Person, models: Models) -> None:
    """`composite` renders only the face's region; a render of every pixel gives the same image."""
    coefficients = on_top_of_rest(happy.rest_expression, prototype("happy", 1.0))
    fast = composite(happy, models, coefficients)
    whole = PhotoWindow(happy.photo.rgb, happy.fit)  # a window that is the whole photo: every pixel rendered
    full = composite(happy, models, coefficients, whole)
    assert fast.shape == full.shape == happy.photo.rgb.shape
    difference = np.abs(fast.astype(int) - full.astype(int)).max(-1)
    # Equal but for a few dozen pixels where float rounding of the moved camera flips which of two nearly
    # coincident triangles (lid and eyeball, lip and teeth) the rasterizer keeps (a flip that opens a hole
    # in the face mask changes a patch around it: not on this photo and expression).
    assert (difference > 0).mean() < 2e-4 and (difference > 2).sum() < 20, (difference > 0).sum()
    assert (fast != happy.photo.rgb).any(axis=-1).mean() > 0.05  # the face really was replaced


def test_a_small_face_is_composited_finer_and_averaged_down(happy: Person, models: Models, faces: Path) -> None:
    """`in_photo` renders a face smaller than `SUPERSAMPLE_BELOW_PX` at a multiple of the photo's resolution and
    averages it down: the lash strands and lid edges of a 512-px snapshot's eyes (25 px wide) stop being hard
    black pixels, and the face keeps its colour. A studio photo's face is drawn at the photo's resolution."""
    from sie3d.head.fit import FACE_OVAL, LEFT_EYE_OPENING, RIGHT_EYE_OPENING
    from sie3d.photo import load_photo
    from sie3d.previews import in_photo, supersampling

    def outline(person: Person) -> np.ndarray:
        return person.fit.project(models.fitter.landmarks_3d(person.fit, person.rest_expression)[list(FACE_OVAL)])

    assert supersampling(outline(happy)) == 1
    small = reconstruct(load_photo(faces / "skimage_astronaut.png"), models,
                        ReconstructConfig(texture_size=256, hair=HairConfig(enabled=False)))  # fmt: skip
    assert supersampling(outline(small)) == 3  # its face 120 px high
    textured = _textured(small, models)
    images = {k: in_photo(textured, small.photo.rgb, small.fit, small.textures, small.rest_expression, outline(small),
                          factor=k) for k in (1, 3)}  # fmt: skip
    default = composite(small, models, small.rest_expression)  # the face's region only: rounding flips a few pixels
    assert (np.abs(default.astype(int) - images[3].astype(int)).max(-1) > 8).sum() < 20
    eyes = small.observation.landmarks_px[list(LEFT_EYE_OPENING + RIGHT_EYE_OPENING), :2]
    (x0, y0), (x1, y1) = np.floor(eyes.min(0)).astype(int) - 2, np.ceil(eyes.max(0)).astype(int) + 2
    dark = {k: int((image[y0:y1, x0:x1].mean(-1) < 40).sum()) for k, image in images.items()}
    assert dark[3] < 0.6 * dark[1], dark
    face = outline(small)
    (fx0, fy0), (fx1, fy1) = face.min(0).astype(int), face.max(0).astype(int)
    means = [image[fy0:fy1, fx0:fx1].reshape(-1, 3).mean(0) for image in images.values()]
    assert np.abs(means[0] - means[1]).max() < 2.0, means


def test_configs_and_variants_check_their_values() -> None:
    with pytest.raises(UsageError, match="power of two"):
        ReconstructConfig(texture_size=1000)
    with pytest.raises(UsageError, match="negative"):
        ReconstructConfig(face=-1)
    with pytest.raises(UsageError, match="unknown format"):
        OutputConfig(formats=("glb", "fbx"))
    with pytest.raises(UsageError, match="unknown light"):
        OutputConfig(light="sun")
    zeros = np.zeros(53, np.float32)
    for name in ("", "a/b", "person", "..", "x" * 65):
        with pytest.raises(ValueError, match="plain folder name"):
            Variant(name, zeros)
    with pytest.raises(ValueError, match=r"\(53,\)"):
        Variant("short", np.zeros(52))
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        Variant("big", np.full(53, 1.5))
    models = Models.load()
    assert not {"observer", "embedder", "head", "fitter"} & set(vars(models))  # nothing loaded until used
    models.close()


def test_the_photo_light_renders_the_face_as_bright_as_the_photo(happy: Person, models: Models) -> None:
    """`light="photo"` lights the previews with the light the texture's de-lighting divided out: the frontal
    render of the photo's expression is as bright as the photo between the eyes and the mouth (within 5 %; 1.01x
    when written), where the studio light renders it darker (0.89x)."""
    import torch

    from sie3d.avatar import posed_verts
    from sie3d.previews import preview_cameras
    from sie3d.render import project

    def between_eyes_and_mouth(image: np.ndarray, landmarks: np.ndarray) -> float:
        (x0, x1), y1 = sorted((landmarks[33, 0], landmarks[263, 0])), landmarks[13, 1]  # eye corners; upper lip
        y0 = (landmarks[33, 1] + landmarks[263, 1]) / 2
        y0 += 0.15 * (y1 - y0)
        return float(np.median(image[int(y0) : int(y1), int(x0) : int(x1)].reshape(-1, 3), 0).mean())

    photo = between_eyes_and_mouth(happy.photo.rgb, happy.observation.landmarks_px)
    expression = happy.fit.expression
    cams = preview_cameras(models.head, posed_verts(happy, models, expression), (0.0,), 256)
    landmarks = project(torch.from_numpy(models.fitter.landmarks_3d(happy.fit, expression)), cams)[0][0].numpy()
    ratio = {light: between_eyes_and_mouth(render_preview(happy, models, expression, 256, (0.0,), light=light),
                                           landmarks) / photo for light in ("photo", "studio")}  # fmt: skip
    assert abs(ratio["photo"] - 1) < 0.05 and ratio["studio"] < 0.95, ratio


def test_the_gaze_choice_makes_the_neutral_face_look_where_the_photo_looks(happy: Person, models: Models,
                                                                           tmp_path: Path) -> None:
    """`ReconstructConfig.gaze`: "ahead" (the default) keeps the rest's eyes straight; "photo" turns them as the
    photo's irises were fitted (`test_the_fit_turns_the_eyes_where_the_photos_irises_look`), so the neutral
    face, posed and projected with the photo's camera, has its painted irises on the photo's irises; a text that
    asks for a gaze looks its own way, one that does not keeps the photo's (on this photo the irises land 0.5 % of
    the eye distance off looking as in the photo, 4.7 % looking ahead)."""
    import torch

    from sie3d.avatar import text_variants
    from sie3d.head.eyes import pupil_surface
    from sie3d.head.fit import PUPILS

    gaze = [k for k, n in enumerate(ICT_NAMES) if n.startswith("eyeLook")]
    looking = dataclasses.replace(happy, config=dataclasses.replace(happy.config, gaze="photo"))
    assert not happy.rest_expression[gaze].any() and looking.rest_expression[gaze].max() > 0.1
    np.testing.assert_array_equal(looking.rest_expression[gaze], happy.photo_expression[gaze])
    others = [k for k in range(53) if k not in gaze]
    np.testing.assert_array_equal(looking.rest_expression[others], happy.rest_expression[others])

    obs, head = happy.observation, models.head
    tri, bary = pupil_surface(head)

    def iris_error(person: Person) -> float:
        with torch.no_grad():
            verts = head(torch.from_numpy(person.fit.identity)[None],
                         torch.from_numpy(person.rest_expression)[None])[0].numpy()  # fmt: skip
        poles = person.fit.project((verts[head.topology.faces[tri]] * bary[..., None]).sum(1))
        return float(np.linalg.norm(poles - obs.landmarks_px[list(PUPILS.values()), :2], axis=1).max()
                     / obs.interocular_px)

    assert iris_error(looking) < 0.02 < iris_error(happy), (iris_error(looking), iris_error(happy))

    calm, left = text_variants(looking, models, ["a calm face", "looking to the left"])
    np.testing.assert_allclose(calm.coefficients[gaze], happy.photo_expression[gaze])
    turned = left.coefficients[[ICT_NAMES.index("eyeLookOut_L"), ICT_NAMES.index("eyeLookIn_R")]]
    assert turned.min() > 0.3, turned  # its own gaze, not the photo's added to it
    with pytest.raises(UsageError, match="--gaze 'sideways'"):
        dataclasses.replace(happy.config, gaze="sideways")

    # A saved person is posed with --gaze photo and keeps the choice in the person folder written beside it.
    folder = happy.save(tmp_path / "person")
    done = run_cli("generate", str(folder), "--text", "a calm face", "--gaze", "photo", "--formats", "glb",
                   "--no-previews", "--no-in-photo", "-o", str(tmp_path / "out"), "-q")  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    assert Person.load(tmp_path / "out" / "person").config.gaze == "photo"
    assert Person.load(folder).config.gaze == "ahead"
    done = run_cli("generate", str(folder), "--text", "a calm face", "--gaze", "sideways", "-o", str(tmp_path / "x"))
    assert done.returncode == 2 and "--gaze 'sideways' is not a gaze" in done.stderr and "Traceback" not in done.stderr
    assert not (tmp_path / "x").exists()


def test_a_small_face_is_warned_about_and_a_studio_portrait_is_not(models, faces) -> None:
    """A face under `MIN_SHARP_FACE_PX` tall (a London portrait shrunk to 120 px: the face 46 px) gets a warning
    that names its size; the same portrait at its own 768 px (the face about 330 px) gets none."""
    import cv2

    from sie3d.avatar import MIN_SHARP_FACE_PX, ReconstructConfig, reconstruct
    from sie3d.photo import load_photo, photo_from_array

    photo = load_photo(faces / "london_012_neutral.jpg")
    small = photo_from_array(cv2.resize(photo.rgb, (120, 120), interpolation=cv2.INTER_AREA))
    config = ReconstructConfig(texture_size=256, hair=dataclasses.replace(ReconstructConfig().hair, enabled=False))
    warned = [w for w in reconstruct(small, models, config).warnings if "px tall" in w]
    assert len(warned) == 1 and f"at least {MIN_SHARP_FACE_PX} px" in warned[0], warned
    assert not [w for w in reconstruct(photo, models, config).warnings if "px tall" in w]
