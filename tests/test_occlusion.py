"""Expression-dependent occlusion: openness of a known shape, darkening only what an expression deepens; the
inside of the mouth lit through the lips' opening, the deeper the darker, whatever the pose."""

from __future__ import annotations

import dataclasses

import cv2
import numpy as np
import torch

from sie3d.expressions import on_top_of_rest, prototype
from sie3d.head.mouth import mouth_interior
from sie3d.render import orbit_cameras
from sie3d.render.occlusion import MouthInterior, OcclusionConfig, vertex_light, vertex_openness


def _grid(heights: np.ndarray, spacing: float) -> tuple[torch.Tensor, torch.Tensor]:
    """A height field (rows along -y, columns along +x, height along +z) as a triangle mesh facing +z."""
    rows, cols = heights.shape
    y, x = np.mgrid[0:rows, 0:cols].astype(np.float32) * spacing
    verts = np.stack([x - x.mean(), y.mean() - y, heights], -1).reshape(-1, 3)
    index = np.arange(rows * cols).reshape(rows, cols)
    a, b, c, d = index[:-1, :-1], index[:-1, 1:], index[1:, :-1], index[1:, 1:]
    faces = np.concatenate([np.stack([a, c, b], -1).reshape(-1, 3), np.stack([b, c, d], -1).reshape(-1, 3)])
    return torch.from_numpy(verts.astype(np.float32)), torch.from_numpy(faces.astype(np.int64))


def test_a_flat_sheet_is_open_and_the_foot_of_a_wall_is_not():
    flat = np.zeros((61, 61), np.float32)
    verts, faces = _grid(flat, 0.25)
    openness = vertex_openness(verts, faces, torch.zeros(3), OcclusionConfig(span_cm=20.0))
    inner = np.abs(verts[:, :2].numpy()).max(1) < 5.0
    assert float(openness[torch.from_numpy(inner)].min()) > 0.999
    # A 2 cm step: the lower side at the foot of the wall sees a quarter of its sky hidden, the top stays open.
    step = flat.copy()
    step[:, 31:] = 2.0
    verts, faces = _grid(step, 0.25)
    openness = vertex_openness(verts, faces, torch.zeros(3), OcclusionConfig(span_cm=20.0)).numpy()
    x, y = verts[:, 0].numpy(), verts[:, 1].numpy()
    middle = np.abs(y) < 3.0
    foot = middle & (x > -0.6) & (x < -0.2)
    assert openness[foot].max() < 0.9
    assert openness[middle & (x < -2.0)].min() > 0.999  # beyond the radius
    assert openness[middle & (x > 2.0)].min() > 0.999  # on top


def test_a_wall_casts_its_shadow_on_the_sheet_at_its_foot_and_nothing_shadows_itself():
    """`vertex_light` on a 2 cm step lit at 45 degrees from the top's side: the lower sheet is in shadow up to
    2 cm from the foot of the wall and lit beyond; the top and the lit sheet keep all the light (no acne); lit from
    behind, nothing facing away gets any."""
    step = np.zeros((61, 61), np.float32)
    step[:, 31:] = 2.0
    verts, faces = _grid(step, 0.25)
    config = OcclusionConfig(span_cm=20.0)
    light = vertex_light(verts, faces, torch.zeros(3), torch.tensor([1.0, 0.0, 1.0]), config).numpy()
    x, y, z = verts.numpy().T
    middle = np.abs(y) < 3.0
    assert light[middle & (z == 0) & (x > -1.6) & (x < -0.4)].max() == 0.0  # in the wall's shadow
    assert light[middle & (z == 0) & (x < -2.6)].min() == 1.0  # beyond it
    assert light[middle & (z == 2) & (x > 0.6)].min() == 1.0  # on top
    behind = vertex_light(verts, faces, torch.zeros(3), torch.tensor([0.0, 0.0, -1.0]), config).numpy()
    assert behind[middle].max() == 0.0


def test_the_inside_of_the_mouth_is_lit_by_its_depth_behind_the_inner_lips():
    """`MouthInterior.light` on a known shape: points of the inside 0.3 cm behind the lips keep all the light,
    2.5 cm behind get exp(-2); the outside is never touched."""
    config = OcclusionConfig()
    verts = torch.tensor([[0.0, 0.0, 10.0], [1.0, 0.0, 10.0], [0.0, 0.0, 9.7], [0.0, 0.0, 7.5], [0.0, 0.0, 2.0],
                          [0.0, 0.0, 7.5]])  # fmt: skip
    inside = torch.tensor([False, False, True, True, True, False])
    light = MouthInterior(inside, torch.tensor([0, 1])).light(verts, config).numpy()
    np.testing.assert_allclose(light, [1.0, 1.0, 1.0, np.exp(-(2.5 - config.mouth_free_cm) / config.mouth_falloff_cm),
                                       config.mouth_floor, 1.0], rtol=1e-6)  # fmt: skip


def _mouth_brightness(image: np.ndarray, inner_lips_px: np.ndarray) -> float:
    """Mean brightness (0..255) of an image inside the polygon of the inner lips' projected landmarks."""
    mask = np.zeros(image.shape[:2], np.uint8)
    cv2.fillPoly(mask, [np.round(inner_lips_px).astype(np.int32)], 1)
    assert mask.sum() >= 30
    return float(image[mask > 0].mean())


def test_a_smile_keeps_its_teeth_bright_and_an_open_mouth_is_dark_inside(models, happy):
    """Frontal renders with the mouth's depth light (the default) against the same occlusion without it: the
    photo's smile inside its lips nearly as bright (its front teeth at the lips, its side teeth dimmer: measured
    0.95 of it); the open mouth of surprise far darker inside (its tongue and molars 2-4 cm behind the lips:
    measured 0.46); no pixel changes but those of the inside of the mouth (teeth, gums, tongue, socket)."""
    from sie3d.avatar import _textured
    from sie3d.head.mouth import mouth_interior
    from sie3d.previews import to_image
    from sie3d.render import project

    cams = orbit_cameras([0.0], 40.0, target=torch.tensor([0.0, 0.0, 8.0]), focal_px=600.0, width=320, height=320)
    inner_lips = models.head.topology.landmarks_68[60:68]
    lit = _textured(happy, models)
    dark = dataclasses.replace(lit, occlusion=dataclasses.replace(lit.occlusion, mouth=None))
    for pose, ratio in ((happy.photo_expression, (0.85, 0.99)),
                        (on_top_of_rest(happy.rest_expression, prototype("surprise")), (0.0, 0.65))):  # fmt: skip
        verts = lit.verts(happy.fit.identity, pose)
        lips = project(verts[inner_lips], cams)[0][0].numpy()
        rendered = lit.render(verts, cams)
        with_light, without = to_image(rendered.rgb[0]), to_image(dark.render(verts, cams).rgb[0])
        assert ratio[0] <= _mouth_brightness(with_light, lips) / _mouth_brightness(without, lips) <= ratio[1]
        changed = np.abs(with_light.astype(int) - without).max(-1) > 0
        tri = rendered.fragments.tri_id[0].numpy()
        interior = mouth_interior(models.head)[models.head.topology.faces[tri]].all(-1) & (tri >= 0)
        assert changed.any() and not (changed & ~interior).any()


def test_the_photo_expression_renders_as_before_and_anger_darkens_between_the_brows(models, happy):
    from sie3d.avatar import _textured, render_views, retextured

    flat = retextured(happy, models, dataclasses.replace(happy.config.texture, occlusion=False))
    assert happy.config.texture.occlusion and flat.textures is happy.textures  # render-time only: same textures
    textured = _textured(happy, models)
    cams = orbit_cameras([0.0], 40.0, target=torch.tensor([0.0, 0.0, 8.0]), focal_px=150.0, width=96, height=96)
    photo = happy.photo_expression
    factor = textured.occlusion.shade(textured.verts(happy.fit.identity, photo))
    mouth = torch.from_numpy(mouth_interior(models.head))
    assert torch.equal(factor[~mouth], torch.ones_like(factor[~mouth])), "the photo's own shading is in its texture"
    difference = render_views(happy, models, photo, cams).astype(int) - render_views(flat, models, photo, cams)
    assert difference.max() <= 0  # only the inside of the mouth (procedural) is darker, by its depth ...
    rendered = textured.render(textured.verts(happy.fit.identity, photo), cams)
    outside = ~torch.isin(rendered.fragments.tri_id[0], torch.from_numpy(np.flatnonzero(
        mouth.numpy()[models.head.topology.faces].any(1))))  # fmt: skip
    assert not (torch.from_numpy(difference[0]).abs().amax(-1) > 0)[outside].any()  # ... and nothing else
    anger = on_top_of_rest(happy.rest_expression, prototype("anger"))
    factor = textured.occlusion.shade(textured.verts(happy.fit.identity, anger)).numpy()
    assert factor.max() <= 1.0 and factor[~mouth.numpy()].min() >= OcclusionConfig().floor
    # The darkened skin lies between the lowered brows, on the nose bridge at eye level (head space, cm).
    topology = models.head.topology
    skin = np.unique(topology.faces[topology.faces_of("M_Face")])
    eyes = np.unique(topology.faces[topology.faces_of("M_ScleraLeft")])
    verts = textured.verts(happy.fit.identity, anger).numpy()
    darker = verts[skin][factor[skin] < 0.9]
    assert len(darker) > 50
    eye_level = verts[eyes, 1].mean()
    middle = np.median(darker, axis=0)
    assert abs(middle[0]) < 1.0 and eye_level - 1.0 < middle[1] < eye_level + 2.0, (middle, eye_level)
    held = textured.occlusion.held(torch.from_numpy(verts))  # the refinement's steps: one shading for all
    np.testing.assert_array_equal(held.shade(textured.verts(happy.fit.identity, photo)).numpy(), factor)
    darker_render = render_views(happy, models, anger, cams).astype(int)
    assert (darker_render - render_views(flat, models, anger, cams)).min() < -10
    assert (darker_render - render_views(flat, models, anger, cams)).max() <= 0


def test_anger_shades_the_lids_under_the_lowered_brows_when_shadows_are_on(models, happy):
    """`TextureConfig(shadows=True)`: the studio light's new cast shadows on top of the occlusion -- none at the
    photo's own expression, and anger's lowered brows put the upper lids in a shadow they were not in."""
    from sie3d.avatar import _textured, retextured

    shadowed = retextured(happy, models, dataclasses.replace(happy.config.texture, shadows=True))
    assert shadowed.textures is happy.textures  # render-time only
    plain, lit = _textured(happy, models).occlusion, _textured(shadowed, models).occlusion
    assert plain.light is None and lit.light is not None
    head = _textured(happy, models)
    photo = head.verts(happy.fit.identity, happy.photo_expression)
    mouth = torch.from_numpy(mouth_interior(models.head))
    assert torch.equal(lit.shade(photo)[~mouth], torch.ones(int((~mouth).sum())))
    anger = head.verts(happy.fit.identity, on_top_of_rest(happy.rest_expression, prototype("anger")))
    with_shadows, without = lit.shade(anger).numpy(), plain.shade(anger).numpy()
    assert (with_shadows <= without + 1e-6).all()
    newly = np.flatnonzero(with_shadows < 0.9 * without)
    assert len(newly) > 20
    eyes = np.unique(models.head.topology.faces[models.head.topology.faces_of("M_ScleraLeft")])
    verts = anger.numpy()
    eye_level, middle = verts[eyes, 1].mean(), np.median(verts[newly], axis=0)
    # on the upper lids under the brows: anger's tightened lids come down to about the eyeballs' middle (the
    # median 0.12 cm below it on this person; 0.23 cm above it while anger raised the lids with eyeWide)
    assert eye_level - 0.5 < middle[1] < eye_level + 2.0, (middle, eye_level)
