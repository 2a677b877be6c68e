"""Expression wrinkles: the maps derived from ICT's own deformation, their render detail and the baked GLB."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from sie3d.avatar import lid_target_names
from sie3d.export.rig import rig_names
from sie3d.expressions import on_top_of_rest, prototype
from sie3d.head.names import ICT_NAMES
from sie3d.head.wrinkles import WrinkleMaps, detail_from_height, normal_map_image, wrinkle_maps
from sie3d.render import DirectionalLight, orbit_cameras, render_mesh
from sie3d.render.detail import bump_normals, uv_tangents
from sie3d.visemes import VISEME_NAMES

from conftest import glb_json, run_cli

F64 = torch.float64


@pytest.fixture(scope="module")
def maps(models) -> WrinkleMaps:
    return wrinkle_maps(models.head)


def _coefficients(**weights: float) -> torch.Tensor:
    values = torch.zeros(len(ICT_NAMES), dtype=F64)
    for name, value in weights.items():
        values[ICT_NAMES.index(name)] = value
    return values


def _region(detail: torch.Tensor, rows: slice) -> float:
    """Largest |detail| over a band of rows of the face tile (row 0 = top of the head)."""
    return float(detail[..., rows, :].abs().max())


def test_wrinkle_maps_are_zero_at_zero_expression(maps):
    zero = torch.zeros(len(ICT_NAMES))
    assert torch.equal(maps.detail(zero), torch.zeros(1, 3, maps.size, maps.size))
    assert maps.is_zero(np.zeros(len(ICT_NAMES))) and not maps.is_zero(prototype("anger"))
    assert float(maps.heights.max()) <= 0.0, "wrinkles are creases: heights never positive"


def test_folds_appear_where_their_muscles_act_and_nowhere_else(maps):
    """Raised brows fold the forehead, lowered brows the glabella; a smile leaves the upper face alone."""
    size = maps.size
    # ICT's face tile: forehead in rows 1/16 .. 7/32 (the brows below it), eyes at about 9/32, mouth 5/8
    forehead, above_eyes = slice(size // 16, size * 7 // 32), slice(0, size * 7 // 32)
    lower_face = slice(size // 2, size)
    raised = maps.detail(_coefficients(browInnerUp_L=1, browInnerUp_R=1, browOuterUp_L=1, browOuterUp_R=1))
    lowered = maps.detail(_coefficients(browDown_L=1, browDown_R=1))
    smile = maps.detail(_coefficients(mouthSmile_L=1, mouthSmile_R=1))
    assert _region(raised, forehead) > 0.1 and _region(raised, lower_face) == 0.0
    assert _region(lowered, forehead) > 0.1
    assert _region(smile, lower_face) > 0.1 and _region(smile, above_eyes) == 0.0
    # raised-brow creases run across the forehead: their height changes along v far more than along u
    height = maps.height(_coefficients(browInnerUp_L=1, browInnerUp_R=1))[0, forehead]
    assert float(height.diff(dim=0).abs().sum()) > 1.5 * float(height.diff(dim=1).abs().sum())
    # lowered-brow furrows between the brows run up and down: height changes along u more than along v
    centre = maps.height(_coefficients(browDown_L=1, browDown_R=1))[0, forehead, size * 2 // 5 : size * 3 // 5]
    assert float(centre.diff(dim=1).abs().sum()) > float(centre.diff(dim=0).abs().sum())


def test_wrinkle_detail_is_linear_and_differentiable_in_the_coefficients(maps):
    # a small crop in double precision keeps gradcheck quick; the maps' arithmetic is the same
    rows, cols = slice(100, 112), slice(240, 252)
    small = WrinkleMaps(maps.heights[:, rows, cols].to(F64), maps.shape_index, maps.texel_cm[rows, cols].to(F64),
                        maps.occlusion_per_cm)  # fmt: skip
    for start in (torch.zeros(len(ICT_NAMES), dtype=F64), torch.from_numpy(prototype("anger")).to(F64)):
        coefficients = start.clone().requires_grad_(True)
        assert torch.autograd.gradcheck(small.detail, (coefficients,))
    a, b = _coefficients(browDown_L=0.7), _coefficients(cheekSquint_R=0.4, noseSneer_L=0.2)
    torch.testing.assert_close(small.detail(a + b), small.detail(a) + small.detail(b))


def test_bumped_normals_follow_a_known_slope():
    """A plane facing +z with u along +x and v along +y: a height rising along u tilts the normal to -x."""
    verts = torch.tensor([[0.0, 0.0, 0.0], [1.0, 0.0, 0.0], [1.0, 1.0, 0.0], [0.0, 1.0, 0.0]], dtype=F64)
    faces = torch.tensor([[0, 1, 2], [0, 2, 3]])
    uv = torch.tensor([[0.0, 0.0], [0.5, 0.0], [0.5, 0.5], [0.0, 0.5]], dtype=F64)  # 2 cm per UV unit
    tangents = uv_tangents(verts, faces, uv, faces)
    torch.testing.assert_close(tangents[0] / tangents[0].norm(), torch.tensor([0.70710678, 0, 0, 0, 0.70710678, 0],
                                                                             dtype=F64))  # fmt: skip
    normals = torch.tensor([[0.0, 0.0, 1.0]], dtype=F64)
    bumped = bump_normals(normals, tangents[:1], torch.tensor([[0.5, -0.25]], dtype=F64))
    torch.testing.assert_close(bumped[0], torch.tensor([-0.5, 0.25, 1.0], dtype=F64) / 1.14564392373896)


def test_render_with_zero_detail_is_unchanged_and_gradients_reach_the_coefficients(models, maps):
    head = models.head
    from sie3d.head.texture import render_layout

    layout = render_layout(head)
    identity = torch.zeros(1, 100)
    faces, uv = torch.from_numpy(head.topology.faces), torch.from_numpy(layout.uvs)
    uv_faces, mask = torch.from_numpy(layout.uv_faces), torch.from_numpy(layout.visible_faces)
    expression = torch.from_numpy(prototype("anger"))[None]
    with torch.no_grad():
        verts = head(identity, expression)[0]
    face_centre = verts[np.unique(head.topology.faces[head.topology.faces_of("M_Face")])].mean(0)
    cams = orbit_cameras([0.0], 30.0, target=face_centre, focal_px=120.0, width=96, height=96)
    light = DirectionalLight((0.3, 0.5, 1.0), 0.4, 0.6)

    def render(detail):
        return render_mesh(verts, faces, cams, uv=uv, uv_faces=uv_faces, light=light, face_mask=mask,
                           detail=None if detail is None else [detail]).rgb  # fmt: skip

    plain = render(None)
    assert plain[0].std() > 0.05, "the camera sees the face"
    torch.testing.assert_close(render(maps.detail(torch.zeros(len(ICT_NAMES)))), plain, atol=1e-6, rtol=0)
    coefficients = expression[0].clone().requires_grad_(True)
    image = render(maps.detail(coefficients))
    assert (image - plain).abs().max() > 0.05, "anger's furrows show"
    weights = torch.rand(image.shape, generator=torch.Generator().manual_seed(0))
    (image * weights).sum().backward()
    k = ICT_NAMES.index("browDown_L")
    assert coefficients.grad[k] != 0
    step = 1e-2  # finite difference: the image is linear in the detail, the detail linear in the coefficients
    with torch.no_grad():
        moved = expression[0].clone()
        moved[k] += step
        forward = (render(maps.detail(moved)) * weights).sum()
        moved[k] -= 2 * step
        backward = (render(maps.detail(moved)) * weights).sum()
    numeric = float(forward - backward) / (2 * step)
    assert numeric == pytest.approx(float(coefficients.grad[k]), rel=0.05)


def test_normal_map_image_is_flat_without_folds_and_tilts_with_them(maps):
    flat = normal_map_image(maps.detail(torch.zeros(len(ICT_NAMES))))
    assert flat.shape == (maps.size, maps.size, 3) and flat.dtype == np.uint8
    assert (flat == np.array([128, 128, 255], np.uint8)).all()
    folded = normal_map_image(maps.detail(torch.from_numpy(prototype("surprise"))))
    assert (folded != flat).any(axis=-1).mean() > 0.01
    assert folded[..., 2].min() > 128, "normals point out of the surface"
    # the exact inverse of the encoding gives back the slopes' direction
    decoded = folded.astype(np.float64) / 127.5 - 1.0
    assert np.abs(np.linalg.norm(decoded, axis=-1) - 1.0).max() < 0.02
    slope = detail_from_height(torch.zeros(1, 4, 4), torch.ones(4, 4), 5.0)
    assert torch.equal(slope, torch.zeros(1, 3, 4, 4))


def test_baked_glb_has_the_normal_map_on_the_face_and_keeps_the_morph_targets(models, happy, tmp_path):
    from sie3d.avatar import OutputConfig, Variant, write_outputs

    anger = on_top_of_rest(happy.rest_expression, prototype("anger"))
    variants = [Variant("anger", anger), Variant("photo", happy.photo_expression)]
    config = OutputConfig(formats=("glb",), previews=True, in_photo=True, preview_size=128, wrinkles=True)
    write_outputs(happy, models, variants, tmp_path, config, save_person=False)
    assert (tmp_path / "anger" / "preview.png").is_file() and (tmp_path / "anger" / "in_photo.png").is_file()
    assert json.loads((tmp_path / "report.json").read_text())["config"]["output"]["wrinkles"] is True
    documents = {}
    for name in ("anger", "photo"):
        data = (tmp_path / name / "avatar.glb").read_bytes()
        documents[name] = glb_json(data)
    anger_doc, photo_doc = documents["anger"], documents["photo"]
    face = next(m for m in anger_doc["materials"] if m["name"] == "M_Face")
    assert "normalTexture" in face, "the expression's wrinkles are baked into the face"
    assert not any("normalTexture" in m for m in photo_doc["materials"]), "the photo's own expression adds none"
    primitives = anger_doc["meshes"][0]["primitives"]
    with_tangents = [p for p in primitives if "TANGENT" in p["attributes"]]
    assert [anger_doc["materials"][p["material"]]["name"] for p in with_tangents] == ["M_Face"]
    names = (*rig_names(), *VISEME_NAMES, *lid_target_names())  # the rig, the visemes and the lids' are kept
    assert tuple(anger_doc["meshes"][0]["extras"]["targetNames"]) == names
    assert all(len(p["targets"]) == len(names) for p in primitives)


def test_avatar_renders_fold_only_what_the_expression_adds_to_the_photo(models, happy):
    from sie3d.avatar import render_views, wrinkle_coefficients

    cams = orbit_cameras([0.0], 40.0, target=torch.tensor([0.0, 0.0, 8.0]), focal_px=150.0, width=96, height=96)
    photo = happy.photo_expression
    assert not wrinkle_coefficients(happy, photo).any(), "the photo's folds are in its texture already"
    np.testing.assert_array_equal(render_views(happy, models, photo, cams, wrinkles=True),
                                  render_views(happy, models, photo, cams))  # fmt: skip
    anger = on_top_of_rest(happy.rest_expression, prototype("anger"))
    assert wrinkle_coefficients(happy, anger)[ICT_NAMES.index("browDown_L")] > 0.5
    with_folds = render_views(happy, models, anger, cams, wrinkles=True).astype(int)
    assert np.abs(with_folds - render_views(happy, models, anger, cams)).max() > 10


def test_generate_bakes_the_wrinkles_on_request_only(happy, tmp_path):
    happy.save(tmp_path / "person")
    for flag, baked in (("--wrinkles", True), ("--no-wrinkles", False)):
        out = tmp_path / flag
        result = run_cli("generate", str(tmp_path / "person"), "--text", "furious", flag, "--formats", "glb",
                         "--no-previews", "--no-in-photo", "-q", "-o", str(out))  # fmt: skip
        assert result.returncode == 0, result.stderr[-2000:]
        (glb,) = out.glob("*/avatar.glb")
        data = glb.read_bytes()
        document = glb_json(data)
        assert any("normalTexture" in m for m in document["materials"]) == baked
