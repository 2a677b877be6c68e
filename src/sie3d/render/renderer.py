"""`render_mesh`: one call from a posed, textured mesh and B cameras to images.

Rasterization (no gradients) picks the visible face per pixel; everything after it -- barycentrics,
UVs, texture lookups, normals, lighting, depth -- is differentiable, so a loss on the images reaches
vertex positions, textures, vertex colours and lighting. Coverage (the silhouette) is not
differentiable; there is no anti-aliasing.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

from .camera import Cameras, _check_faces, _check_points, _check_shape, _check_tensor, _to_pixel_homogeneous, project
from .detail import bump_normals, uv_tangents
from .rasterize import Fragments, rasterize
from .shade import (
    PackedPixels,
    _barycentrics_packed,
    _interpolate_packed,
    _sample_packed,
    lambert,
    sh_shading,
    texture_tiles,
    vertex_normals,
)

__all__ = ["DirectionalLight", "RenderOutput", "draw_in_window", "render_mesh"]


@dataclass(frozen=True)
class DirectionalLight:
    """A distant light plus ambient term (see `sie3d.render.shade.lambert`).

    ``direction`` points from the surface *toward* the light, in world space; (3,) or (B, 3).
    """

    direction: Tensor | tuple[float, float, float] = (0.3, 0.4, 1.0)
    ambient: float = 0.35
    diffuse: float = 0.65


STUDIO_LIGHT = DirectionalLight(direction=(0.35, 0.45, 1.0), ambient=0.45, diffuse=0.6)  # previews, splat colours


@dataclass(frozen=True)
class RenderOutput:
    """Images from `render_mesh`; B views of H x W pixels.

    Attributes:
        rgb: (B, H, W, 3) shaded colour composited over the background.
        alpha: (B, H, W) coverage, 1 on the mesh, 0 on background (hard edges, no gradient).
        depth: (B, H, W) camera-space z of the visible surface, 0 on background (differentiable
            with respect to the vertices).
        normals: (B, H, W, 3) unit world-space shading normals (interpolated vertex normals, bumped by
            ``detail`` when given), 0 on background.
        fragments: the rasterizer output (face ids, barycentrics) for further lookups.
    """

    rgb: Tensor
    alpha: Tensor
    depth: Tensor
    normals: Tensor
    fragments: Fragments

    def drawn_depth(self) -> Tensor:
        """(B, H, W) the depth of what is drawn, ``inf`` where nothing is: the z-buffer a layer drawn over this
        one is tested against (no gradient)."""
        return torch.where(self.alpha > 0, self.depth, torch.full_like(self.depth, float("inf"))).detach()


def render_mesh(
    verts_world: Tensor,
    faces: Tensor,
    cams: Cameras,
    *,
    uv: Tensor | None = None,
    uv_faces: Tensor | None = None,
    texture: Tensor | Sequence[Tensor] | None = None,
    detail: Tensor | Sequence[Tensor] | None = None,
    vertex_colors: Tensor | None = None,
    sh_coeffs: Tensor | None = None,
    light: DirectionalLight | None = None,
    background: Sequence[float] | Tensor = (1.0, 1.0, 1.0),
    face_mask: Tensor | None = None,
    cull_backfaces: bool = False,
    near: float = 1e-3,
    depth_limit: Tensor | None = None,
    min_shading: float | None = None,
) -> RenderOutput:
    """Render a triangle mesh from B cameras.

    Args:
        verts_world: (V, 3) shared by all views, or (B, V, 3) per view (B may be 1). World convention in
            `sie3d.render.camera`.
        faces: (F, 3) long, counter-clockwise seen from outside.
        cams: B cameras.
        uv: (T, 2) OBJ-convention UV coordinates (``v`` up; see `sie3d.render.shade`). With ``uv_faces``
            they have their own topology (as in ICT-FaceKit); without, ``T == V`` and ``faces`` index them.
            Or (F, 3, 2): one UV per face corner (no ``uv_faces``).
            UDIM: ``u`` in ``[k, k+1)`` reads tile k; each face reads the tile of its UV centroid.
        uv_faces: (F, 3) long indices into ``uv``, one row per row of ``faces``.
        texture: (B or 1, C=3, Ht, Wt) one texture, or UDIM tiles as a (B or 1, N, 3, Ht, Wt) tensor or a
            list of N (3, Ht, Wt) / (B or 1, 3, Ht, Wt) tensors. Needs ``uv``.
        detail: surface detail in the same UV layout and tiling as ``texture`` (tiles may differ in
            resolution; faces on tiles past the last one get none): 3 channels, the slopes of a small
            height field along +u and +v and a cavity term (`sie3d.render.detail`). Bumps the shading
            normals and multiplies the shading by ``exp(-cavity)``; zero detail changes nothing.
            Differentiable. Needs ``uv`` and a lighting.
        vertex_colors: (V, 3) or (B, V, 3) albedo per vertex (instead of a texture).
            With neither, the albedo is white.
        sh_coeffs: (B or 1, 9, 3) or (B or 1, 9) world-space SH lighting (`sh_shading`), or
        light: a `DirectionalLight`. With neither, the output is the unlit albedo.
        min_shading: with ``sh_coeffs``, the SH shading is clamped from below at this (a second-order SH
            fitted to one photo rings below zero on the normals it never saw; irradiance never does).
        background: (3,) colour or a (B, H, W, 3) image behind the mesh.
        face_mask: optional (F,) bool, False hides a face.
        cull_backfaces, near: see `rasterize`.
        depth_limit: optional (B, H, W) camera depth of what is already drawn (a z-buffer, ``inf`` where
            nothing is): the mesh is drawn only where it lies nearer, elsewhere left as background (see
            `rasterize`). Layers drawn over other layers rasterize and shade only what can show.

    Returns:
        RenderOutput.
    """
    verts_world = _check_points(verts_world, cams, "verts_world")
    faces = _check_faces(faces, verts_world.shape[-2]).to(verts_world.device)
    B, V = cams.batch_size, verts_world.shape[-2]
    if texture is not None and vertex_colors is not None:
        raise ValueError("render_mesh: give either texture or vertex_colors, not both")
    if sh_coeffs is not None and light is not None:
        raise ValueError("render_mesh: give either sh_coeffs or light, not both")
    if light is not None and not isinstance(light, DirectionalLight):
        raise ValueError(f"light must be a DirectionalLight, got {type(light).__name__}")
    tiles = detail_tiles = None
    if detail is not None and (uv is None or (sh_coeffs is None and light is None)):
        raise ValueError("render_mesh: detail needs uv coordinates and a lighting (sh_coeffs or light)")
    if texture is not None or detail is not None:
        if uv is None:
            raise ValueError(
                "render_mesh: a texture needs uv coordinates "
                "(uv=..., plus uv_faces=... if the UVs have their own topology)"
            )
        for name, value in (("texture", texture), ("detail", detail)):
            if value is None:
                continue
            checked = texture_tiles(value, name)
            if checked[0].shape[1] != 3:
                raise ValueError(f"{name} must have 3 channels, got {checked[0].shape[1]}")
            if checked[0].shape[0] not in (1, B):
                raise ValueError(f"{name} has batch size {checked[0].shape[0]}; use 1 (shared) or {B} (per view)")
            if name == "texture":
                tiles = checked
            else:
                detail_tiles = checked
        uv = _check_tensor("uv", uv, floating=True)
        _check_shape(
            "uv",
            uv,
            f"(T, 2) or ({faces.shape[0]}, 3, 2)",
            (uv.ndim == 2 and uv.shape[1] == 2) or (uv.ndim == 3 and uv.shape == (faces.shape[0], 3, 2)),
        )
        if uv.ndim == 3:  # one UV per face corner
            if uv_faces is not None:
                raise ValueError("uv_faces must be None when uv is given per face corner (F, 3, 2)")
            uv = uv.reshape(-1, 2)
            uv_faces = torch.arange(uv.shape[0], device=faces.device).reshape(-1, 3)
        if uv_faces is None:
            if uv.shape[0] != V:
                raise ValueError(
                    f"uv has {uv.shape[0]} rows but the mesh has {V} vertices; pass uv_faces when the UVs "
                    "have their own topology"
                )
            uv_faces = faces
        uv_faces = _check_faces(uv_faces, uv.shape[0], "uv_faces").to(faces.device)
        if uv_faces.shape != faces.shape:
            raise ValueError(f"uv_faces has shape {tuple(uv_faces.shape)} but faces has {tuple(faces.shape)}")
    if sh_coeffs is not None:
        sh_coeffs = _check_tensor("sh_coeffs", sh_coeffs, floating=True)
        _check_shape(
            "sh_coeffs",
            sh_coeffs,
            f"(B, 9, 3) or (B, 9) with B = 1 or {B}",
            sh_coeffs.ndim in (2, 3)
            and sh_coeffs.shape[0] in (1, B)
            and sh_coeffs.shape[1] == 9
            and (sh_coeffs.ndim == 2 or sh_coeffs.shape[2] in (1, 3)),
        )
    if vertex_colors is not None:
        vertex_colors = _check_tensor("vertex_colors", vertex_colors, floating=True)
        _check_shape(
            "vertex_colors",
            vertex_colors,
            f"({V}, 3) or (B, {V}, 3)",
            vertex_colors.ndim in (2, 3)
            and vertex_colors.shape[-2:] == (V, 3)
            and (vertex_colors.ndim == 2 or vertex_colors.shape[0] in (1, B)),
        )

    dtype = verts_world.dtype
    if light is not None:
        direction = torch.as_tensor(light.direction, dtype=dtype, device=verts_world.device)
        direction = direction if direction.ndim == 2 else direction.unsqueeze(0)
        _check_shape("light.direction", direction, f"(3,) or ({B}, 3)", direction.shape in ((1, 3), (B, 3)))
    bg = torch.as_tensor(background, dtype=dtype, device=verts_world.device)
    if bg.shape not in ((3,), (B, cams.height, cams.width, 3)):
        raise ValueError(
            f"background must be an RGB colour (3,) or a (B, H, W, 3) image, got {tuple(bg.shape)}"
        )

    fragments = rasterize(
        verts_world, faces, cams, face_mask=face_mask, cull_backfaces=cull_backfaces, near=near,
        depth_limit=depth_limit,
    )
    # Everything below runs on the P covered pixels only, then is scattered into the images.
    pixels = PackedPixels.from_fragments(fragments)
    hom = _to_pixel_homogeneous(verts_world, cams)  # (B, V, 3), last component = camera depth
    bary = _barycentrics_packed(hom, faces, pixels)  # (P, 3), differentiable

    # One gather for everything indexed by the vertex faces: normals, camera depth, colours.
    per_vertex = [vertex_normals(verts_world, faces).expand(B, V, 3), hom[..., 2:]]
    if vertex_colors is not None:
        per_vertex.append(vertex_colors.to(dtype).expand(B, V, 3))
    if detail is not None:
        per_vertex.append(uv_tangents(verts_world, faces, uv, uv_faces).expand(B, V, 6))
    attrs = _interpolate_packed(torch.cat(per_vertex, dim=-1), faces, pixels, bary)
    normals = torch.nn.functional.normalize(attrs[:, 0:3], dim=-1, eps=1e-12)

    cavity = None
    if uv is not None and (tiles is not None or detail is not None):
        uv_pix = _interpolate_packed(uv, uv_faces, pixels, bary)
        # UDIM: each face reads the tile of its UV centroid (its corners may sit on a tile border).
        n_tiles = max(len(tiles) if tiles is not None else 0, len(detail_tiles) if detail is not None else 0)
        tile_of_face = torch.floor(uv.detach()[uv_faces, 0].mean(1)).long().clamp(0, n_tiles - 1)
        tile_of_pixel = tile_of_face.index_select(0, pixels.face)
        if detail is not None:
            # faces on tiles past the detail's last tile read no detail (zeros)
            bumps = _sample_packed(detail_tiles, uv_pix, tile_of_pixel, pixels.camera, "bilinear")
            normals = bump_normals(normals, attrs[:, -6:], bumps[:, 0:2])
            cavity = bumps[:, 2:3]
    if tiles is not None:
        albedo = _sample_packed(tiles, uv_pix, tile_of_pixel.clamp(max=len(tiles) - 1), pixels.camera, "bilinear")
    elif vertex_colors is not None:
        albedo = attrs[:, 4:7]
    else:
        albedo = torch.ones_like(normals)

    if sh_coeffs is not None:
        shading = _per_view(
            lambda n, c: sh_shading(n.unsqueeze(0), c.unsqueeze(0))[0], normals, sh_coeffs, pixels
        )
        if min_shading is not None:
            shading = shading.clamp(min=min_shading)
        shaded = albedo * shading
    elif light is not None:
        shading = _per_view(
            lambda n, d: lambert(n.unsqueeze(0), d, light.ambient, light.diffuse)[0],
            normals,
            direction,
            pixels,
        )
        shaded = albedo * shading
    else:
        shaded = albedo
    if cavity is not None:
        shaded = shaded * torch.exp(-cavity)

    return RenderOutput(
        rgb=pixels.scatter(shaded, bg.to(shaded.dtype)),
        alpha=fragments.mask.to(shaded.dtype),
        depth=pixels.scatter(attrs[:, 3:4])[..., 0],
        normals=pixels.scatter(normals),
        fragments=fragments,
    )


def _per_view(
    fn: Callable[[Tensor, Tensor], Tensor], normals: Tensor, param: Tensor, pixels: PackedPixels
) -> Tensor:
    """``fn(normals_b (P_b, 3), param[b])`` view by view when ``param`` has one entry per view, else
    ``fn(normals, param[0])`` once. Packed pixels are ordered by view."""
    B = pixels.shape[0]
    if B == 1 or param.shape[0] == 1:
        return fn(normals, param[0])
    counts = torch.bincount(pixels.camera, minlength=B).tolist()
    return torch.cat([fn(chunk, param[b]) for b, chunk in enumerate(normals.split(counts))])


def draw_in_window(out: RenderOutput, points: Tensor, cams: Cameras,
                   draw: Callable[[RenderOutput, Cameras], RenderOutput]) -> RenderOutput:  # fmt: skip
    """`draw(out, cams)` (something drawn over `out`, seen by `cams`, that covers only pixels of triangles
    with corners among `points` (N, 3) or (B, N, 3)) run on the window of each view those pixels can lie in:
    one size for all views, each camera's own corner (`Cameras.window`); the rest of `out` is kept as it is.
    Most of a whole image's rendering cost is per pixel, and a part like the eyelashes covers a few hundred.
    `draw` sees the window's rgb, alpha and depth (no normals or fragments); the whole image is drawn when the
    window would be all of it or a point lies behind a camera. Differentiable as `draw` is."""
    uv, depth = project(points.detach().to(cams.dtype), cams)
    if not bool((depth > 0).all()):
        return draw(out, cams)
    size = torch.tensor([cams.width, cams.height], device=uv.device)
    lo = (torch.floor(uv.amin(-2)).long() - 1).clamp(min=0)  # (B, 2), a pixel's margin for rounding
    hi = torch.minimum(torch.ceil(uv.amax(-2)).long() + 1, size)
    width = min(max(int((hi - lo)[:, 0].amax()), 1), cams.width)
    height = min(max(int((hi - lo)[:, 1].amax()), 1), cams.height)
    if width * height >= cams.width * cams.height:
        return draw(out, cams)
    left = lo[:, 0].clamp(min=0, max=cams.width - width).tolist()
    top = lo[:, 1].clamp(min=0, max=cams.height - height).tolist()
    windows = [(slice(y, y + height), slice(x, x + width)) for x, y in zip(left, top, strict=True)]

    def crop(image: Tensor) -> Tensor:
        return torch.stack([image[b, rows, columns] for b, (rows, columns) in enumerate(windows)])

    def paste(image: Tensor, part: Tensor) -> Tensor:
        image = image.clone()
        for b, (rows, columns) in enumerate(windows):
            image[b, rows, columns] = part[b]
        return image

    drawn = draw(RenderOutput(crop(out.rgb), crop(out.alpha), crop(out.depth), None, None),
                 cams.window(left, top, width, height))  # fmt: skip
    return RenderOutput(paste(out.rgb, drawn.rgb), paste(out.alpha, drawn.alpha), paste(out.depth, drawn.depth),
                        out.normals, out.fragments)  # fmt: skip
