"""Expression-dependent occlusion: openness of a known shape, darkening only what an expression deepens."""

from __future__ import annotations

import dataclasses

import numpy as np
import torch

from sie3d.expressions import on_top_of_rest, prototype
from sie3d.render import orbit_cameras
from sie3d.render.occlusion import OcclusionConfig, vertex_openness


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


def test_the_photo_expression_renders_as_before_and_anger_darkens_between_the_brows(models, happy):
    from sie3d.avatar import _textured, render_views, retextured

    flat = retextured(happy, models, dataclasses.replace(happy.config.texture, occlusion=False))
    assert happy.config.texture.occlusion and flat.textures is happy.textures  # render-time only: same textures
    textured = _textured(happy, models)
    cams = orbit_cameras([0.0], 40.0, target=torch.tensor([0.0, 0.0, 8.0]), focal_px=150.0, width=96, height=96)
    photo = happy.photo_expression
    factor = textured.occlusion.shade(textured.verts(happy.fit.identity, photo))
    assert torch.equal(factor, torch.ones_like(factor)), "the photo's own shading is in its texture already"
    np.testing.assert_array_equal(render_views(happy, models, photo, cams), render_views(flat, models, photo, cams))
    anger = on_top_of_rest(happy.rest_expression, prototype("anger"))
    factor = textured.occlusion.shade(textured.verts(happy.fit.identity, anger)).numpy()
    assert factor.max() <= 1.0 and factor.min() >= OcclusionConfig().floor
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
