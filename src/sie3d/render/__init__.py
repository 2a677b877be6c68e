"""Differentiable mesh renderer in pure PyTorch (CPU first; runs on the inputs' device).

One functional API with batched cameras: `rasterize` (which face covers each pixel, no gradients),
differentiable shading ops (`barycentrics`, `interpolate`, `sample_texture`, `sh_shading`, ...), surface
detail from textures (`uv_tangents`, `bump_normals`: bumped normals and creases) and `render_mesh`, which
chains them. `rasterize_reference` is the slow oracle used by the tests.
Conventions (world +y up / +z toward the viewer, OpenCV cameras, pixel centres at +0.5, OBJ UVs with
v up) are documented in `sie3d.render.camera` and `sie3d.render.shade`.
"""

from .camera import Cameras, look_at, orbit_cameras, perspective_K, project, to_camera
from .detail import bump_normals, uv_tangents
from .rasterize import Fragments, rasterize
from .reference import rasterize_reference
from .renderer import DirectionalLight, RenderOutput, draw_in_window, render_mesh
from .shade import (
    PackedPixels,
    barycentrics,
    composite,
    interpolate,
    lambert,
    sample_texture,
    sh_basis,
    sh_shading,
    texture_tiles,
    vertex_normals,
)

__all__ = [
    "Cameras",
    "DirectionalLight",
    "Fragments",
    "PackedPixels",
    "RenderOutput",
    "barycentrics",
    "bump_normals",
    "composite",
    "draw_in_window",
    "interpolate",
    "lambert",
    "look_at",
    "orbit_cameras",
    "perspective_K",
    "project",
    "rasterize",
    "rasterize_reference",
    "render_mesh",
    "sample_texture",
    "sh_basis",
    "sh_shading",
    "texture_tiles",
    "to_camera",
    "uv_tangents",
    "vertex_normals",
]
