"""Drawing the hair volume over a rendered head (`draw_hair`), as a viewer draws a double-sided, alpha-blended
mesh over an opaque one: the hair's far side (the inside of the shell facing the camera, where the camera looks
past the head) first, then its near side, each where it lies in front of what is drawn, blended by the
texture's alpha. The shell is star-shaped around the head, so its triangles facing the camera are its near
layer and the others its far layer: two layers are all there is to sort. (The near layer is rendered first,
so that the far one is shaded only where no opaque near hair hides it; the blend order stays far, then near.)"""

from __future__ import annotations

import numpy as np
import torch

from sie3d.hair.volume import Hair
from sie3d.head.texture import _sample_bilinear
from sie3d.render import Cameras, Fragments, RenderOutput, draw_in_window, rasterize, render_mesh
from sie3d.render.renderer import DirectionalLight

__all__ = ["draw_hair", "near_hair_alpha"]

INSIDE_SHADE = 0.6  # the inside of the shell (its far layer) is in the hair's own shadow
OPAQUE = 1.0 - 1e-6  # near hair this opaque (fully, but for rounding) hides the far layer (not shaded there)


def draw_hair(out: RenderOutput, hair: Hair, cams: Cameras, *, sh_coeffs: torch.Tensor | None = None,
              light: DirectionalLight | None = None) -> RenderOutput:  # fmt: skip
    """`out` (the head seen by `cams`, head space) with `hair` drawn over it, lit like the head (`sh_coeffs`
    or `light`). The result's alpha is the union of the head's and the hair's coverage; its depth is the hair's
    where the hair is opaque (alpha >= 0.5). No gradients reach the hair.

    Only the window of each view the hair can cover is rendered (`draw_in_window`)."""
    verts = torch.from_numpy(hair.mesh.verts)
    return draw_in_window(out, verts, cams, lambda part, window: _draw_hair(part, hair, window, sh_coeffs, light))


def _draw_hair(out: RenderOutput, hair: Hair, cams: Cameras, sh_coeffs: torch.Tensor | None,
               light: DirectionalLight | None) -> RenderOutput:  # fmt: skip
    """`draw_hair` on the whole of `out`."""
    mesh, rgba = hair.mesh, hair.texture.rgba
    texture = torch.from_numpy(np.ascontiguousarray(rgba[..., :3])).permute(2, 0, 1)[None].to(out.rgb.dtype)
    lighting = {"sh_coeffs": sh_coeffs} if sh_coeffs is not None else {"light": light}
    verts, uvs = torch.from_numpy(mesh.verts).to(out.rgb.dtype), torch.from_numpy(mesh.uvs)

    def layer(faces: np.ndarray, depth_limit: torch.Tensor) -> tuple[RenderOutput, torch.Tensor]:
        """The layer rendered where it lies nearer than `depth_limit`, and (B, H, W) its texture's alpha
        there (0 elsewhere)."""
        faces = torch.from_numpy(np.ascontiguousarray(faces))
        with torch.no_grad():
            drawn = render_mesh(verts, faces, cams, uv=uvs, texture=texture, background=(0.0, 0.0, 0.0),
                                cull_backfaces=True, depth_limit=depth_limit, **lighting)  # fmt: skip
        return drawn, _texture_alpha(hair, faces, drawn.fragments).to(out.rgb.dtype)

    behind = out.drawn_depth()
    near, a_near = layer(mesh.faces, behind)
    # The far layer (reversed winding: it faces the camera) where neither the head nor opaque near hair hides it.
    far, a_far = layer(mesh.faces[:, ::-1], torch.where(a_near > OPAQUE, near.depth.to(behind.dtype), behind))
    a_near = torch.where((a_far >= 0.5) & (far.depth <= near.depth), 0.0, a_near)  # behind opaque far hair (a fold)
    # Whole-image arithmetic (alpha 0 where a layer is not drawn): much cheaper than indexing by a mask.
    rgb, coverage, depth = out.rgb, out.alpha, out.depth
    for drawn, a, shade in ((far, a_far, INSIDE_SHADE), (near, a_near, 1.0)):
        rgb = rgb * (1 - a[..., None]) + drawn.rgb * (shade * a[..., None])
        coverage = torch.maximum(coverage, a)
        depth = torch.where(a >= 0.5, drawn.depth.to(depth.dtype), depth)
    return RenderOutput(rgb, coverage, depth, out.normals, out.fragments)


def near_hair_alpha(out: RenderOutput, hair: Hair, cams: Cameras, faces: np.ndarray | None = None) -> torch.Tensor:
    """(B, H, W) the texture's alpha of the hair's near layer where it lies in front of `out` (the head seen by
    `cams`), 0 elsewhere; `faces`: a subset of the hair's triangles (all by default). Coverage only: nothing is
    shaded."""
    faces = hair.mesh.faces if faces is None else faces
    faces = torch.from_numpy(np.ascontiguousarray(faces))
    frags = rasterize(torch.from_numpy(hair.mesh.verts), faces, cams, cull_backfaces=True,
                      depth_limit=out.drawn_depth())  # fmt: skip
    return _texture_alpha(hair, faces, frags)


def _texture_alpha(hair: Hair, faces: torch.Tensor, frags: Fragments) -> torch.Tensor:
    """(B, H, W) float32: the hair texture's alpha at the fragments of `faces` (0 where none is drawn)."""
    rgba, uvs = hair.texture.rgba, torch.from_numpy(hair.mesh.uvs)
    size = rgba.shape[0]
    shown = (frags.tri_id >= 0).reshape(-1).nonzero()[:, 0]
    a = torch.zeros(frags.tri_id.numel(), dtype=torch.float32)
    if len(shown):
        bary = frags.bary.reshape(-1, 3)[shown]
        uv = (uvs[faces[frags.tri_id.reshape(-1)[shown]]] * bary[..., None]).sum(1).numpy()
        alpha = _sample_bilinear(rgba[..., 3:], np.stack([uv[:, 0] * size, (1.0 - uv[:, 1]) * size], -1))[:, 0]
        a[shown] = torch.from_numpy(alpha.astype(np.float32))
    return a.reshape(frags.tri_id.shape)
