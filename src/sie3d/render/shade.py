"""Differentiable shading: barycentrics, attribute interpolation, normals, textures and lighting.

Everything here is differentiable. Gradients reach vertex positions through `barycentrics`, which
recomputes the barycentrics of each covered pixel centre from the projected triangle corners
(the rasterizer only decides *which* face is visible, without gradients). There are no silhouette
gradients: coverage itself is not differentiable.

UV convention (OBJ): ``u`` grows to the right, ``v`` grows **up**, ``(0, 0)`` is the bottom-left corner
of the texture image and ``(1, 1)`` its top-right corner; texel centres sit at ``(i + 0.5) / size``.
Row 0 of a texture tensor is the top of the image. UDIM tiles: tile ``k`` covers ``u`` in ``[k, k+1)``.
(glTF's ``v`` points down: flip with ``v_obj = 1 - v_gltf``.)
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from .camera import Cameras, _check_faces, _check_points, _check_shape, _check_tensor, _to_pixel_homogeneous
from .rasterize import Fragments

__all__ = [
    "PackedPixels",
    "barycentrics",
    "composite",
    "interpolate",
    "lambert",
    "sample_texture",
    "sh_basis",
    "sh_shading",
    "texture_tiles",
    "vertex_normals",
]


def _check_fragments(fragments: object) -> Fragments:
    if not isinstance(fragments, Fragments):
        raise ValueError(f"fragments must be a Fragments (from rasterize), got {type(fragments).__name__}")
    return fragments


@dataclass(frozen=True)
class PackedPixels:
    """The covered pixels of a `Fragments`, in flat row-major order (view by view).

    Per-pixel work in `render_mesh` runs on these P pixels only, not on the B * H * W image.
    """

    index: Tensor  # (P,) long, flat index into B * H * W
    face: Tensor  # (P,) long, visible face
    camera: Tensor  # (P,) long, camera (view) index
    shape: tuple[int, int, int]  # (B, H, W)

    @staticmethod
    def from_fragments(fragments: Fragments) -> PackedPixels:
        B, H, W = _check_fragments(fragments).tri_id.shape
        flat = fragments.tri_id.reshape(-1)
        index = (flat >= 0).nonzero().squeeze(1)
        return PackedPixels(index, flat.index_select(0, index), index // (H * W), (B, H, W))

    def scatter(self, values: Tensor, fill: Tensor | float = 0.0) -> Tensor:
        """(P, C) values -> (B, H, W, C) image; other pixels get ``fill`` (a scalar, (C,) or (B, H, W, C)).
        Differentiable with respect to ``values`` and a tensor ``fill``."""
        B, H, W = self.shape
        channels = values.shape[-1]
        base = torch.as_tensor(fill, dtype=values.dtype, device=values.device)
        base = base.expand(B, H, W, channels).reshape(B * H * W, channels)
        return base.index_put((self.index,), values).reshape(B, H, W, channels)


def _barycentrics_packed(hom: Tensor, faces: Tensor, pixels: PackedPixels) -> Tensor:
    """(P, 3) differentiable barycentrics of the packed pixel centres (see `barycentrics`), from the
    (B, V, 3) pixel-homogeneous vertices ``hom = K (R v + t)``."""
    _, H, W = pixels.shape
    num_verts = hom.shape[1]
    corner_rows = faces.index_select(0, pixels.face) + (pixels.camera * num_verts).unsqueeze(1)  # (P, 3)
    h = hom.reshape(-1, 3).index_select(0, corner_rows.reshape(-1)).reshape(-1, 3, 3)  # (P, corner, xyz)
    u = (pixels.index % W).to(h.dtype) + 0.5
    v = ((pixels.index // W) % H).to(h.dtype) + 0.5
    # Edge function w_i = det[h_j, h_k, p] with p = (u, v, 1). Subtracting z * p from each corner leaves
    # the determinant unchanged and zeroes the third row, so it is a 2-D cross product of
    # q = (x - z u, y - z v): fewer operations and better conditioned than the 3-D form.
    qx = h[:, :, 0] - h[:, :, 2] * u.unsqueeze(1)
    qy = h[:, :, 1] - h[:, :, 2] * v.unsqueeze(1)
    w0 = qx[:, 1] * qy[:, 2] - qy[:, 1] * qx[:, 2]
    w1 = qx[:, 2] * qy[:, 0] - qy[:, 2] * qx[:, 0]
    w2 = qx[:, 0] * qy[:, 1] - qy[:, 0] * qx[:, 1]
    w = torch.stack([w0, w1, w2], dim=1)
    return w / w.sum(1, keepdim=True)


def _check_cams_match(cams: Cameras, fragments: Fragments) -> None:
    B, H, W = fragments.tri_id.shape
    if (cams.batch_size, cams.height, cams.width) != (B, H, W):
        raise ValueError(
            f"fragments are {B}x{H}x{W} (B x H x W) but the cameras are "
            f"{cams.batch_size}x{cams.height}x{cams.width}; pass the cameras used for rasterization"
        )


def barycentrics(verts_world: Tensor, faces: Tensor, cams: Cameras, fragments: Fragments) -> Tensor:
    """Differentiable perspective-correct barycentrics of every covered pixel centre.

    Args:
        verts_world: (V, 3) or (B, V, 3), the same vertices that were rasterized.
        faces: (F, 3) long.
        cams: the B cameras used for rasterization.
        fragments: output of `rasterize` (decides which face each pixel sees).

    Returns:
        (B, H, W, 3) barycentrics, zeros on background pixels; gradients flow to ``verts_world``
        (and to the camera tensors).
    """
    verts_world = _check_points(verts_world, cams, "verts_world")
    faces = _check_faces(faces, verts_world.shape[-2]).to(verts_world.device)
    _check_cams_match(cams, _check_fragments(fragments))
    pixels = PackedPixels.from_fragments(fragments)
    return pixels.scatter(_barycentrics_packed(_to_pixel_homogeneous(verts_world, cams), faces, pixels))


def _interpolate_packed(attr: Tensor, faces: Tensor, pixels: PackedPixels, bary: Tensor) -> Tensor:
    """attr (V, C) or (B or 1, V, C), bary (P, 3) -> (P, C)."""
    num_channels = attr.shape[-1]
    corners = faces.index_select(0, pixels.face)  # (P, 3)
    if attr.ndim == 3 and attr.shape[0] > 1:
        corners = corners + (pixels.camera * attr.shape[1]).unsqueeze(1)
    values = attr.reshape(-1, num_channels).index_select(0, corners.reshape(-1)).reshape(-1, 3, num_channels)
    dtype = torch.promote_types(attr.dtype, bary.dtype)
    values, bary = values.to(dtype), bary.to(dtype)
    return values[:, 0] * bary[:, 0:1] + values[:, 1] * bary[:, 1:2] + values[:, 2] * bary[:, 2:3]


def interpolate(
    attr: Tensor,
    faces: Tensor,
    fragments: Fragments,
    *,
    bary: Tensor | None = None,
    verts_world: Tensor | None = None,
    cams: Cameras | None = None,
) -> Tensor:
    """Interpolate per-vertex attributes at every pixel.

    Args:
        attr: (V, C) shared by all views, or (B, V, C) per view (B may be 1). ``V`` is whatever
            ``faces`` indexes: pass UV coordinates with the UV faces, colours with the vertex faces.
        faces: (F, 3) long, indices into ``attr``; face ``f`` must be the face that ``fragments``
            calls ``f``.
        fragments: output of `rasterize`.
        bary: optional (B, H, W, 3) barycentrics to use instead of ``fragments.bary``, typically
            ``barycentrics(verts_world, faces, cams, fragments)`` computed once for several attributes.
        verts_world, cams: alternatively, the rasterized vertices and cameras; the barycentrics are then
            recomputed differentiably (with ``faces``) so gradients also reach ``verts_world``. For a
            separate UV topology use ``bary=barycentrics(verts_world, vertex_faces, cams, fragments)``.

    Returns:
        (B, H, W, C), zeros on background pixels. Differentiable with respect to ``attr`` (and to
        ``bary`` / ``verts_world`` when given).
    """
    attr = _check_tensor("attr", attr, floating=True)
    _check_shape("attr", attr, "(V, C) or (B, V, C)", attr.ndim in (2, 3))
    faces = _check_faces(faces, attr.shape[-2]).to(attr.device)
    B, H, W = _check_fragments(fragments).tri_id.shape
    if attr.ndim == 3 and attr.shape[0] not in (1, B):
        raise ValueError(f"attr has batch size {attr.shape[0]} but the fragments have {B} views")
    if bary is not None and verts_world is not None:
        raise ValueError("interpolate: pass either bary or verts_world + cams, not both")
    pixels = PackedPixels.from_fragments(fragments)
    if verts_world is not None:
        if cams is None:
            raise ValueError("interpolate: verts_world needs the cameras too (cams=...)")
        verts_world = _check_points(verts_world, cams, "verts_world")
        _check_cams_match(cams, fragments)
        bary_packed = _barycentrics_packed(_to_pixel_homogeneous(verts_world, cams), faces, pixels)
    else:
        bary = fragments.bary if bary is None else _check_tensor("bary", bary, floating=True)
        _check_shape("bary", bary, f"({B}, {H}, {W}, 3)", bary.shape == (B, H, W, 3))
        bary_packed = bary.reshape(-1, 3).index_select(0, pixels.index)
    return pixels.scatter(_interpolate_packed(attr, faces, pixels, bary_packed))


def vertex_normals(verts: Tensor, faces: Tensor, eps: float = 1e-12) -> Tensor:
    """Area-weighted unit vertex normals of (V, 3) or (B, V, 3) vertices; faces are counter-clockwise
    seen from outside, so normals point out. Unreferenced vertices get a zero normal."""
    verts = _check_tensor("verts", verts, floating=True)
    _check_shape("verts", verts, "(V, 3) or (B, V, 3)", verts.ndim in (2, 3) and verts.shape[-1] == 3)
    faces = _check_faces(faces, verts.shape[-2]).to(verts.device)
    corners = verts[..., faces, :]  # (..., F, 3, 3)
    face_n = torch.linalg.cross(
        corners[..., 1, :] - corners[..., 0, :], corners[..., 2, :] - corners[..., 0, :]
    )
    # |cross| is twice the area, so summing unnormalised face normals weights by area.
    source = face_n.unsqueeze(-2).expand(*face_n.shape[:-1], 3, 3).reshape(*face_n.shape[:-2], -1, 3)
    summed = torch.zeros_like(verts).index_add(verts.ndim - 2, faces.reshape(-1), source)
    return F.normalize(summed, dim=-1, eps=eps)


TextureTiles = Tensor | Sequence[Tensor]


def texture_tiles(texture: TextureTiles, name: str = "texture") -> list[Tensor]:
    """Normalise a texture argument to a list of N UDIM tiles, each (B or 1, C, Ht, Wt).

    Accepted: a (B or 1, C, Ht, Wt) tensor (one tile), a (B or 1, N, C, Ht, Wt) tensor, or a sequence of
    N tensors (C, Ht, Wt) / (B or 1, C, Ht, Wt); listed tiles may differ in resolution. No copies are
    made, so gradients flow back to the given tensors.
    """
    if isinstance(texture, Tensor):
        _check_tensor(name, texture, floating=True)
        _check_shape(name, texture, "(B, C, Ht, Wt) or (B, N, C, Ht, Wt)", texture.ndim in (4, 5))
        tiles = list(texture.unbind(1)) if texture.ndim == 5 else [texture]
    elif isinstance(texture, Sequence) and len(texture) > 0:
        tiles = []
        for k, tile in enumerate(texture):
            _check_tensor(f"{name}[{k}]", tile, floating=True)
            _check_shape(f"{name}[{k}]", tile, "(C, Ht, Wt) or (B, C, Ht, Wt)", tile.ndim in (3, 4))
            tiles.append(tile if tile.ndim == 4 else tile.unsqueeze(0))
    else:
        raise ValueError(
            f"{name} must be a tensor or a non-empty list of tile tensors, got {type(texture).__name__}"
        )
    for k, tile in enumerate(tiles):
        if tile.shape[:2] != tiles[0].shape[:2]:
            raise ValueError(
                f"{name} tiles must share batch size and channels; tile 0 is {tuple(tiles[0].shape)}, "
                f"tile {k} is {tuple(tile.shape)}"
            )
    return tiles


def _sample_packed(tiles: list[Tensor], uv: Tensor, tile: Tensor, camera: Tensor, mode: str) -> Tensor:
    """uv (P, 2), tile (P,) long in [0, N), camera (P,) long -> (P, C): each point reads its tile only."""
    b_tex, channels = tiles[0].shape[:2]
    idx_parts, value_parts = [], []
    for k, tex in enumerate(tiles):
        in_tile = tile == k
        groups = [(0, in_tile)] if b_tex == 1 else [(b, in_tile & (camera == b)) for b in range(b_tex)]
        for b, selected in groups:
            idx = selected.nonzero().squeeze(1)
            if idx.numel() == 0:
                continue
            uv_k = uv.index_select(0, idx).to(tex.dtype)
            # Clamping u to the tile's outer texel centres is border padding, per tile: no bleeding into
            # the neighbouring tile. grid_sample's border padding does the same for v.
            width = tex.shape[-1]
            u_local = (uv_k[:, 0] - k).clamp(0.5 / width, 1.0 - 0.5 / width)
            grid = torch.stack([2.0 * u_local - 1.0, 1.0 - 2.0 * uv_k[:, 1]], dim=-1).view(1, 1, -1, 2)
            sampled = F.grid_sample(
                tex[b : b + 1], grid, mode=mode, padding_mode="border", align_corners=False
            )
            idx_parts.append(idx)
            value_parts.append(sampled.view(channels, -1).t())
    out = torch.zeros(uv.shape[0], channels, dtype=tiles[0].dtype, device=uv.device)
    if not idx_parts:
        return out
    return out.index_put((torch.cat(idx_parts),), torch.cat(value_parts))


def sample_texture(
    texture: TextureTiles, uv: Tensor, *, tile_id: Tensor | None = None, mode: str = "bilinear"
) -> Tensor:
    """Sample a texture (or a row of UDIM tiles) at UV coordinates, differentiably.

    Args:
        texture: (B or 1, C, Ht, Wt) a single tile covering ``u, v`` in [0, 1]; or N UDIM tiles, tile k
            covering ``u`` in [k, k+1), as a (B or 1, N, C, Ht, Wt) tensor or a list (see `texture_tiles`).
        uv: (B, H, W, 2) OBJ-convention UV coordinates (module docstring).
        tile_id: optional (B, H, W) long, the tile to read per pixel. Pass the tile of the visible face:
            deriving it from ``floor(u)`` (the default) is ambiguous on tile borders.
        mode: ``"bilinear"`` or ``"nearest"``.

    Returns:
        (B, H, W, C). Outside its tile a coordinate is clamped to the tile's border texels (no bleeding
        between tiles). Differentiable with respect to ``texture`` and ``uv``.
    """
    tiles = texture_tiles(texture)
    uv = _check_tensor("uv", uv, floating=True)
    _check_shape("uv", uv, "(B, H, W, 2)", uv.ndim == 4 and uv.shape[-1] == 2)
    B, H, W, _ = uv.shape
    if tiles[0].shape[0] not in (1, B):
        raise ValueError(f"texture has batch size {tiles[0].shape[0]} but uv has {B}; use 1 (shared) or {B}")
    if mode not in ("bilinear", "nearest"):
        raise ValueError(f"mode must be 'bilinear' or 'nearest', got {mode!r}")
    if tile_id is None:
        tile = torch.floor(uv[..., 0].detach()).long()
    else:
        tile_id = _check_tensor("tile_id", tile_id, integer=True)
        _check_shape("tile_id", tile_id, f"({B}, {H}, {W})", tile_id.shape == (B, H, W))
        tile = tile_id.long()
    tile = tile.clamp(0, len(tiles) - 1).reshape(-1)
    camera = torch.arange(B, device=uv.device).repeat_interleave(H * W)
    out = _sample_packed(tiles, uv.reshape(-1, 2), tile, camera, mode)
    return out.reshape(B, H, W, -1)


# Real spherical harmonics, bands 0-2, (l, m) order: (0,0) (1,-1) (1,0) (1,1) (2,-2) (2,-1) (2,0) (2,1) (2,2)
_SH_C0 = 0.28209479177387814  # 1 / (2 sqrt(pi))
_SH_C1 = 0.4886025119029199  # sqrt(3 / (4 pi))
_SH_C2 = 1.0925484305920792  # sqrt(15 / (4 pi))
_SH_C3 = 0.31539156525252005  # sqrt(5 / (16 pi))
_SH_C4 = 0.5462742152960396  # sqrt(15 / (16 pi))
# Lambertian convolution A_l / pi (Ramamoorthi & Hanrahan 2001): 1, 2/3, 1/4.
_SH_BAND_WEIGHT = (1.0, 2.0 / 3.0, 2.0 / 3.0, 2.0 / 3.0, 0.25, 0.25, 0.25, 0.25, 0.25)


def sh_basis(directions: Tensor) -> Tensor:
    """(..., 3) unit directions -> (..., 9) orthonormal real SH basis values Y_lm (bands 0-2)."""
    x, y, z = directions.unbind(-1)
    return torch.stack(
        [
            torch.full_like(x, _SH_C0),
            _SH_C1 * y,
            _SH_C1 * z,
            _SH_C1 * x,
            _SH_C2 * x * y,
            _SH_C2 * y * z,
            _SH_C3 * (3.0 * z * z - 1.0),
            _SH_C2 * x * z,
            _SH_C4 * (x * x - y * y),
        ],
        dim=-1,
    )


def sh_shading(normals: Tensor, sh_coeffs: Tensor) -> Tensor:
    """Diffuse shading factor under distant light given by 2nd-order spherical harmonics.

    ``sh_coeffs`` are the SH coefficients ``L_lm`` of the incoming radiance (order as in `sh_basis`),
    in the frame of ``normals`` (world space in `render_mesh`). The result is irradiance / pi,
    ``sum_lm (A_l / pi) L_lm Y_lm(n)``, so a Lambertian surface of albedo ``rho`` looks
    ``rho * sh_shading(n, L)``. Uniform light of radiance ``c`` is ``L_00 = c * sqrt(4 pi)`` and gives
    exactly ``c``.

    Args:
        normals: (B, ..., 3) unit normals.
        sh_coeffs: (B or 1, 9, C) per-channel light, or (B or 1, 9) one light for all channels.

    Returns:
        (B, ..., C), or (B, ..., 1) for (B, 9) coefficients. Differentiable in both arguments.
    """
    normals = _check_tensor("normals", normals, floating=True)
    sh_coeffs = _check_tensor("sh_coeffs", sh_coeffs, floating=True)
    _check_shape("normals", normals, "(B, ..., 3)", normals.ndim >= 2 and normals.shape[-1] == 3)
    _check_shape(
        "sh_coeffs", sh_coeffs, "(B, 9, C) or (B, 9)", sh_coeffs.ndim in (2, 3) and sh_coeffs.shape[1] == 9
    )
    if sh_coeffs.shape[0] not in (1, normals.shape[0]):
        raise ValueError(f"sh_coeffs has batch size {sh_coeffs.shape[0]} but normals have {normals.shape[0]}")
    coeffs = sh_coeffs if sh_coeffs.ndim == 3 else sh_coeffs.unsqueeze(-1)
    weight = torch.tensor(_SH_BAND_WEIGHT, dtype=coeffs.dtype, device=coeffs.device)
    coeffs = coeffs * weight.view(1, 9, 1)
    basis = sh_basis(normals).reshape(normals.shape[0], -1, 9)
    out = basis.to(coeffs.dtype) @ coeffs  # (B, M, C)
    return out.reshape(*normals.shape[:-1], coeffs.shape[-1])


def lambert(
    normals: Tensor, light_dir: Tensor | Sequence[float], ambient: float = 0.3, diffuse: float = 0.7
) -> Tensor:
    """``ambient + diffuse * max(0, n . l)`` for (B, ..., 3) unit normals.

    ``light_dir`` is (3,) or (B, 3), the direction *toward* the light in the normals' frame (it is
    normalised here). Returns (B, ..., 1).
    """
    normals = _check_tensor("normals", normals, floating=True)
    _check_shape("normals", normals, "(B, ..., 3)", normals.ndim >= 2 and normals.shape[-1] == 3)
    light = torch.as_tensor(light_dir, dtype=normals.dtype, device=normals.device)
    _check_shape("light_dir", light, "(3,) or (B, 3)", light.ndim in (1, 2) and light.shape[-1] == 3)
    light = F.normalize(light, dim=-1)
    if light.ndim == 2:
        light = light.reshape(light.shape[0], *([1] * (normals.ndim - 2)), 3)
    return ambient + diffuse * (normals * light).sum(-1, keepdim=True).clamp(min=0.0)


def composite(rgb: Tensor, alpha: Tensor, background: Tensor | Sequence[float] = (1.0, 1.0, 1.0)) -> Tensor:
    """``rgb * alpha + background * (1 - alpha)``.

    Args:
        rgb: (B, H, W, C); alpha: (B, H, W) in [0, 1] (a bool mask works too);
        background: (C,) colour or a (B, H, W, C) image.
    """
    rgb = _check_tensor("rgb", rgb, floating=True)
    alpha = _check_tensor("alpha", alpha)
    _check_shape("rgb", rgb, "(B, H, W, C)", rgb.ndim == 4)
    _check_shape("alpha", alpha, f"{tuple(rgb.shape[:3])}", alpha.shape == rgb.shape[:3])
    bg = torch.as_tensor(background, dtype=rgb.dtype, device=rgb.device)
    if bg.shape not in ((rgb.shape[-1],), rgb.shape):
        raise ValueError(
            f"background must have shape ({rgb.shape[-1]},) or {tuple(rgb.shape)}, got {tuple(bg.shape)}"
        )
    a = alpha.to(rgb.dtype).unsqueeze(-1)
    return rgb * a + bg * (1.0 - a)
