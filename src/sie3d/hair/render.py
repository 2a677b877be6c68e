"""Drawing the hair volume over a rendered head (`draw_hair`), as a viewer draws a double-sided, alpha-blended
mesh over an opaque one: the hair's far side (the inside of the shell facing the camera, where the camera looks
past the head) first, then its near side, each where it lies in front of what is drawn, blended by the
texture's alpha. The shell is star-shaped around the head, so its triangles facing the camera are its near
layer and the others its far layer: two layers are all there is to sort."""

from __future__ import annotations

import numpy as np
import torch

from sie3d.hair.volume import Hair
from sie3d.head.texture import _sample_bilinear
from sie3d.render import Cameras, RenderOutput, render_mesh
from sie3d.render.renderer import DirectionalLight

__all__ = ["draw_hair"]

INSIDE_SHADE = 0.6  # the inside of the shell (its far layer) is in the hair's own shadow


def draw_hair(out: RenderOutput, hair: Hair, cams: Cameras, *, sh_coeffs: torch.Tensor | None = None,
              light: DirectionalLight | None = None) -> RenderOutput:  # fmt: skip
    """`out` (the head seen by `cams`, head space) with `hair` drawn over it, lit like the head (`sh_coeffs`
    or `light`). The result's alpha is the union of the head's and the hair's coverage; its depth is the hair's
    where the hair is opaque (alpha >= 0.5). No gradients reach the hair."""
    mesh, rgba = hair.mesh, hair.texture.rgba
    texture = torch.from_numpy(np.ascontiguousarray(rgba[..., :3])).permute(2, 0, 1)[None].to(out.rgb.dtype)
    lighting = {"sh_coeffs": sh_coeffs} if sh_coeffs is not None else {"light": light}
    rgb, coverage, depth = out.rgb, out.alpha, out.depth
    behind = torch.where(out.alpha > 0, out.depth, torch.full_like(out.depth, float("inf"))).detach()
    verts, uvs = torch.from_numpy(mesh.verts).to(out.rgb.dtype), torch.from_numpy(mesh.uvs)
    size = rgba.shape[0]
    for faces, shade in ((mesh.faces[:, ::-1], INSIDE_SHADE), (mesh.faces, 1.0)):  # far layer (reversed winding:
        # it faces the camera), then the near layer
        faces = torch.from_numpy(np.ascontiguousarray(faces))
        with torch.no_grad():
            drawn = render_mesh(verts, faces, cams, uv=uvs, texture=texture, background=(0.0, 0.0, 0.0),
                                cull_backfaces=True, **lighting)  # fmt: skip
        frags = drawn.fragments
        # The texture's alpha at the pixels where this layer lies in front of what is drawn (0 elsewhere); the
        # blend is then whole-image arithmetic, much cheaper than indexing by the mask.
        front = ((frags.tri_id >= 0) & (drawn.depth < behind)).reshape(-1).nonzero()[:, 0]
        if len(front) == 0:
            continue
        bary = frags.bary.reshape(-1, 3)[front]
        uv = (uvs[faces[frags.tri_id.reshape(-1)[front]]] * bary[..., None]).sum(1).numpy()
        alpha = _sample_bilinear(rgba[..., 3:], np.stack([uv[:, 0] * size, (1.0 - uv[:, 1]) * size], -1))[:, 0]
        a = torch.zeros(rgb.shape[:3], dtype=rgb.dtype).reshape(-1)
        a[front] = torch.from_numpy(alpha.astype(np.float32)).to(rgb.dtype)
        a = a.reshape(rgb.shape[:3])
        rgb = rgb * (1 - a[..., None]) + drawn.rgb * (shade * a[..., None])
        coverage = torch.maximum(coverage, a)
        opaque = a >= 0.5
        depth = torch.where(opaque, drawn.depth.to(depth.dtype), depth)
        behind = torch.where(opaque, drawn.depth.to(behind.dtype), behind)
    return RenderOutput(rgb, coverage, depth, out.normals, out.fragments)
