"""The typed input of every exporter: a posed, textured, morphable triangle mesh.

ICT-FaceKit lays its textures out as UDIM tiles (the integer part of u picks the tile). glTF and most
OBJ readers know no UDIM, so :func:`avatar_mesh_from_ict` turns every (material, tile) pair that
occurs into its own material with UVs shifted into the unit square (u - tile).

Which ICT material lives in which tile, computed from the converted model (triangle counts), and
checked by ``tests/test_export.py``:

    tile (UDIM)    material (triangles)            notes
    0 (1001)       M_Face (18460)                  owner of the tile: ``textures_per_tile[0]`` goes here
    0 (1001)       M_ScleraLeft/Right (1536 each)  an eye-texture layout over the same unit square
    0 (1001)       M_IrisLeft/Right (1596 each)    an eye-texture layout over the same unit square
    0 (1001)       M_EyeOcclusion (512)            Unreal helper shell, dropped by default
    0 (1001)       M_EyeBlend (60)                 Unreal helper shell, dropped by default
    1 (1002)       M_BackHead (9608)               scalp, ears, neck
    2 (1003)       M_GumsTongue (5808)
    3 (1004)       M_Teeth (8696)
    4, 5 (1005-6)  M_LacrimalFluid (326 + 326)     left eye in tile 4, right in tile 5; dropped by default
    6 (1007)       M_EyeLashes (2160)

A tile texture is given to the material that owns the tile (the one with most triangles in it);
the eye materials share tile 0's coordinates with the face but not its texture, so they get flat
colours unless a texture is passed by material name.
"""

from __future__ import annotations

import dataclasses
import io
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from typing import Literal

import numpy as np
from PIL import Image

from sie3d.assets.ict import IctArrays
from sie3d.head.names import ICT_NAMES

log = logging.getLogger(__name__)

AlphaMode = Literal["OPAQUE", "BLEND", "MASK"]
DEFAULT_DROPPED = ("M_EyeOcclusion", "M_EyeBlend", "M_LacrimalFluid")


def srgb_to_linear(rgb: Sequence[float]) -> tuple[float, ...]:
    """sRGB-encoded colour in [0, 1] -> linear (glTF base colour factors are linear)."""
    c = np.asarray(rgb, np.float64)
    return tuple(float(x) for x in np.where(c <= 0.04045, c / 12.92, ((c + 0.055) / 1.055) ** 2.4))


@dataclass(frozen=True, eq=False)
class Material:
    """A metallic-roughness PBR material.

    ``texture`` is an (H, W, 3|4) uint8 sRGB image, row 0 at the top (v = 1 in the OBJ convention);
    ``base_color`` is linear RGBA and multiplies the texture when there is one. ``normal_texture``: an
    optional (H, W, 3) uint8 tangent-space normal map in glTF's convention (x along +u, y along +v of the
    OBJ convention, z out of the surface; ``(n + 1) / 2 * 255``), written by the GLB exporter only.
    ``roughness_texture``: an optional (H, W) uint8 roughness map (255 = 1) in the colour texture's layout,
    used instead of ``roughness`` (glTF ``metallicRoughnessTexture`` as a grey image, whose blue channel,
    glTF's metallic, is multiplied by ``metallic``, which must then be 0; OBJ ``map_Pr``).
    """

    name: str
    texture: np.ndarray | None = None
    base_color: tuple[float, float, float, float] = (1.0, 1.0, 1.0, 1.0)
    roughness: float = 0.6
    metallic: float = 0.0
    double_sided: bool = False
    alpha_mode: AlphaMode = "OPAQUE"
    alpha_cutoff: float = 0.5  # used by MASK only
    normal_texture: np.ndarray | None = None
    roughness_texture: np.ndarray | None = None

    def __post_init__(self) -> None:
        if not self.name or any(c.isspace() for c in self.name):
            raise ValueError(f"material name {self.name!r} must be non-empty and contain no whitespace")
        if len(self.base_color) != 4:
            raise ValueError(f"material {self.name}: base_color must be RGBA (4 floats), got {self.base_color}")
        object.__setattr__(self, "base_color", tuple(float(c) for c in self.base_color))
        if self.alpha_mode not in ("OPAQUE", "BLEND", "MASK"):
            raise ValueError(f"material {self.name}: alpha_mode must be OPAQUE, BLEND or MASK, not {self.alpha_mode}")
        if self.texture is not None:
            tex = self.texture
            if tex.dtype != np.uint8 or tex.ndim != 3 or tex.shape[2] not in (3, 4) or min(tex.shape[:2]) < 1:
                shape = f"{tex.dtype} {tex.shape}"
                raise ValueError(f"material {self.name}: texture must be an (H, W, 3|4) uint8 image, got {shape}")
        normal = self.normal_texture
        if normal is not None and (normal.dtype != np.uint8 or normal.ndim != 3 or normal.shape[2] != 3):
            raise ValueError(f"material {self.name}: normal_texture must be an (H, W, 3) uint8 image, "
                             f"got {normal.dtype} {normal.shape}")  # fmt: skip
        rough = self.roughness_texture
        if rough is not None and (rough.dtype != np.uint8 or rough.ndim != 2 or min(rough.shape) < 1
                                  or self.metallic != 0):
            raise ValueError(f"material {self.name}: roughness_texture must be an (H, W) uint8 image on a material "
                             f"with metallic 0, got {rough.dtype} {rough.shape}, metallic {self.metallic}")  # fmt: skip

    @cached_property
    def png(self) -> bytes:
        """The texture as PNG bytes, encoded once per material: meshes that share this material (the
        variants of one avatar) and every format that embeds or writes the texture reuse the bytes."""
        if self.texture is None:
            raise ValueError(f"material {self.name} has no texture")
        return texture_png(self.texture)

    @cached_property
    def roughness_png(self) -> bytes:
        if self.roughness_texture is None:
            raise ValueError(f"material {self.name} has no roughness texture")
        return texture_png(self.roughness_texture)

    @cached_property
    def normal_png(self) -> bytes:
        if self.normal_texture is None:
            raise ValueError(f"material {self.name} has no normal texture")
        return texture_png(self.normal_texture)

    def with_normal_texture(self, normal_texture: np.ndarray | None) -> Material:
        """This material with another normal map; the colour and roughness images' PNGs, if already encoded, are
        kept."""
        material = dataclasses.replace(self, normal_texture=normal_texture)
        for encoded in ("png", "roughness_png"):
            if encoded in self.__dict__:
                material.__dict__[encoded] = self.__dict__[encoded]
        return material


@dataclass(frozen=True, eq=False)
class AvatarMesh:
    """A posed, textured triangle mesh with named morph targets (blendshapes).

    Units are ICT's centimetres, axes +y up, +z out of the face (the exporters convert units).

    - ``verts`` (V, 3) float32: the pose to show, *including* the current expression;
    - ``faces`` (F, 3) int: vertex triangles; ``uv_faces`` (F, 3) int: triangles into ``uvs``;
    - ``uvs`` (T, 2) float32: texture coordinates in the unit square, v up (OBJ convention);
    - ``face_material`` (F,) int: index into ``materials`` per triangle;
    - ``morph_deltas`` (K, V, 3) float32: per-target vertex offsets; ``morph_weights`` (K,) float32: the
      current expression. ``verts == rest_verts + morph_weights @ morph_deltas``: exporters that store
      morph targets write ``rest_verts`` as the base so that the default weights show ``verts``.
    """

    verts: np.ndarray
    faces: np.ndarray
    uvs: np.ndarray
    uv_faces: np.ndarray
    face_material: np.ndarray
    materials: tuple[Material, ...]
    morph_names: tuple[str, ...] = ()
    morph_deltas: np.ndarray = field(default_factory=lambda: np.zeros((0, 0, 3), np.float32))
    morph_weights: np.ndarray = field(default_factory=lambda: np.zeros(0, np.float32))
    name: str = "avatar"

    def __post_init__(self) -> None:
        def fix(name: str, dtype: type) -> np.ndarray:
            value = np.ascontiguousarray(getattr(self, name), dtype=dtype)
            object.__setattr__(self, name, value)
            return value

        verts, faces, uvs = fix("verts", np.float32), fix("faces", np.int64), fix("uvs", np.float32)
        uv_faces, face_material = fix("uv_faces", np.int64), fix("face_material", np.int64)
        object.__setattr__(self, "materials", tuple(self.materials))
        object.__setattr__(self, "morph_names", tuple(self.morph_names))
        n_verts, n_faces, n_morphs = len(verts), len(faces), len(self.morph_names)
        if self.morph_deltas.size == 0 and n_morphs == 0:
            object.__setattr__(self, "morph_deltas", np.zeros((0, n_verts, 3), np.float32))
        deltas, weights = fix("morph_deltas", np.float32), fix("morph_weights", np.float32)

        def in_range(index: np.ndarray, size: int) -> bool:
            return index.size == 0 or (index.min() >= 0 and index.max() < size)

        checks = [
            (verts.ndim == 2 and verts.shape[1] == 3, f"verts must be (V, 3), got {verts.shape}"),
            (faces.shape == (n_faces, 3), f"faces must be (F, 3), got {faces.shape}"),
            (uvs.ndim == 2 and uvs.shape[1] == 2, f"uvs must be (T, 2), got {uvs.shape}"),
            (uv_faces.shape == faces.shape, f"uv_faces must be (F, 3) like faces, got {uv_faces.shape}"),
            (face_material.shape == (n_faces,), f"face_material must be (F,), got {face_material.shape}"),
            (deltas.shape == (n_morphs, n_verts, 3), f"morph_deltas must be (K, V, 3), got {deltas.shape}"),
            (weights.shape == (n_morphs,), f"morph_weights must be (K,) = ({n_morphs},), got {weights.shape}"),
            (len(set(self.morph_names)) == n_morphs, "morph_names must be unique"),
            (len({m.name for m in self.materials}) == len(self.materials), "material names must be unique"),
            (in_range(faces, n_verts), "faces index past the vertices"),
            (in_range(uv_faces, len(uvs)), "uv_faces index past the uvs"),
            (in_range(face_material, len(self.materials)), "face_material indexes past the materials"),
            (bool(np.isfinite(verts).all() and np.isfinite(deltas).all()), "verts or morph_deltas hold NaN/inf"),
        ]
        for ok, message in checks:
            if not ok:
                raise ValueError(f"AvatarMesh {self.name!r}: {message}")

    @property
    def rest_verts(self) -> np.ndarray:
        """(V, 3) float32: ``verts`` with the current expression taken off (all morph weights 0)."""
        if len(self.morph_names) == 0 or not self.morph_weights.any():
            return self.verts
        offset = np.tensordot(self.morph_weights, self.morph_deltas, axes=1)
        return (self.verts - offset).astype(np.float32)


def with_extra_targets(mesh: AvatarMesh, names: Sequence[str], deltas: np.ndarray) -> AvatarMesh:
    """`mesh` with morph targets `names` ((K', V, 3) `deltas`, weight 0) appended after its own."""
    return AvatarMesh(
        verts=mesh.verts, faces=mesh.faces, uvs=mesh.uvs, uv_faces=mesh.uv_faces, face_material=mesh.face_material,
        materials=mesh.materials, morph_names=(*mesh.morph_names, *names),
        morph_deltas=np.concatenate([mesh.morph_deltas, np.asarray(deltas, np.float32)]),
        morph_weights=np.concatenate([mesh.morph_weights, np.zeros(len(names), np.float32)]), name=mesh.name,
    )  # fmt: skip


def with_part(mesh: AvatarMesh, verts: np.ndarray, faces: np.ndarray, uvs: np.ndarray, material: Material
              ) -> AvatarMesh:  # fmt: skip
    """`mesh` with a rigid part appended: (N, 3) `verts` (cm, the same frame), (F, 3) `faces` into them, (N, 2)
    `uvs` (one per vertex) and its own `material`; its morph deltas are zero (it does not deform). In glTF it is
    its own primitive (one per material), in OBJ its own group."""
    n, t = len(mesh.verts), len(mesh.uvs)
    zeros = np.zeros((len(mesh.morph_names), len(verts), 3), np.float32)
    return AvatarMesh(
        verts=np.concatenate([mesh.verts, verts]), faces=np.concatenate([mesh.faces, faces + n]),
        uvs=np.concatenate([mesh.uvs, uvs]), uv_faces=np.concatenate([mesh.uv_faces, faces + t]),
        face_material=np.concatenate([mesh.face_material, np.full(len(faces), len(mesh.materials))]),
        materials=(*mesh.materials, material), morph_names=mesh.morph_names,
        morph_deltas=np.concatenate([mesh.morph_deltas, zeros], 1), morph_weights=mesh.morph_weights, name=mesh.name,
    )  # fmt: skip


def vertex_normals(verts: np.ndarray, faces: np.ndarray) -> np.ndarray:
    """(V, 3) float32 unit smooth normals: sum of the adjacent unit face normals, weighted by corner angle.

    Angle weights, not area weights, make the result independent of how quads were split into
    triangles (ICT is a quad mesh). Vertices in no (or only degenerate) triangles get +z so that every
    normal is unit length, as glTF validators require.
    """
    tri = np.asarray(verts, np.float64)[faces]  # (F, 3 corners, 3)
    cross = np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0])
    area2 = np.linalg.norm(cross, axis=1, keepdims=True)
    unit_face = np.divide(cross, area2, out=np.zeros_like(cross), where=area2 > 1e-20)
    normals = np.zeros((len(verts), 3))
    for corner in range(3):
        a = tri[:, (corner + 1) % 3] - tri[:, corner]
        b = tri[:, (corner + 2) % 3] - tri[:, corner]
        angle = np.arctan2(np.linalg.norm(np.cross(a, b), axis=1), (a * b).sum(axis=1))
        np.add.at(normals, faces[:, corner], unit_face * angle[:, None])
    length = np.linalg.norm(normals, axis=1, keepdims=True)
    bad = length[:, 0] < 1e-12
    normals = np.divide(normals, length, out=np.zeros_like(normals), where=~bad[:, None])
    normals[bad] = (0.0, 0.0, 1.0)
    return normals.astype(np.float32)


def vertex_tangents(verts: np.ndarray, faces: np.ndarray, uvs: np.ndarray, uv_faces: np.ndarray) -> np.ndarray:
    """(V, 4) float32 glTF tangents of a mesh with a normal map: xyz the unit direction of +u made
    orthogonal to the smooth normal (`vertex_normals`), w = +-1 the handedness (the bitangent, +v in the
    OBJ convention, is w * normal x tangent). Where +u is undefined, any unit vector orthogonal to the normal."""
    import torch

    from sie3d.render.detail import uv_tangents

    normals = vertex_normals(verts, faces).astype(np.float64)
    frame = uv_tangents(torch.from_numpy(np.asarray(verts, np.float64)), torch.from_numpy(np.asarray(faces)),
                        torch.from_numpy(np.asarray(uvs, np.float64)), torch.from_numpy(np.asarray(uv_faces))).numpy()
    tangent = frame[:, :3] - (frame[:, :3] * normals).sum(1, keepdims=True) * normals
    length = np.linalg.norm(tangent, axis=1, keepdims=True)
    fallback = np.cross(normals, np.where(np.abs(normals[:, :1]) < 0.9, [[1.0, 0.0, 0.0]], [[0.0, 1.0, 0.0]]))
    tangent = np.where(length > 1e-9, tangent / np.maximum(length, 1e-12), fallback)
    tangent /= np.linalg.norm(tangent, axis=1, keepdims=True)
    handedness = np.where((np.cross(normals, tangent) * frame[:, 3:]).sum(1) < 0, -1.0, 1.0)
    return np.concatenate([tangent, handedness[:, None]], 1).astype(np.float32)


PNG_COMPRESS_LEVEL = 3  # zlib level: 2.4x faster than level 6 for ~20% larger texture files


def texture_png(texture: np.ndarray) -> bytes:
    """PNG bytes of an (H, W, 3|4) or (H, W) grey uint8 image (lossless)."""
    stream = io.BytesIO()
    Image.fromarray(texture).save(stream, "PNG", compress_level=PNG_COMPRESS_LEVEL)
    return stream.getvalue()


# -- ICT ------------------------------------------------------------------------------------------

# Flat looks for untextured ICT materials: (sRGB colour, alpha, roughness, double sided, alpha mode).
_SKIN = (0.87, 0.68, 0.58)
_ICT_LOOKS: dict[str, tuple[tuple[float, float, float], float, float, bool, AlphaMode]] = {
    "M_Face": (_SKIN, 1.0, 0.6, False, "OPAQUE"),
    "M_BackHead": (_SKIN, 1.0, 0.6, False, "OPAQUE"),
    "M_GumsTongue": ((0.80, 0.42, 0.45), 1.0, 0.35, False, "OPAQUE"),  # wet
    "M_Teeth": ((0.93, 0.90, 0.82), 1.0, 0.3, False, "OPAQUE"),  # off-white
    "M_ScleraLeft": ((0.95, 0.93, 0.90), 1.0, 0.15, False, "OPAQUE"),
    "M_ScleraRight": ((0.95, 0.93, 0.90), 1.0, 0.15, False, "OPAQUE"),
    "M_IrisLeft": ((0.40, 0.26, 0.16), 1.0, 0.15, False, "OPAQUE"),
    "M_IrisRight": ((0.40, 0.26, 0.16), 1.0, 0.15, False, "OPAQUE"),
    "M_EyeLashes": ((0.10, 0.07, 0.06), 1.0, 0.7, True, "OPAQUE"),  # cards: seen from both sides
    # the Unreal helpers, when a caller keeps them: thin see-through shells
    "M_LacrimalFluid": ((1.0, 1.0, 1.0), 0.15, 0.05, False, "BLEND"),
    "M_EyeBlend": (_SKIN, 0.3, 0.6, False, "BLEND"),
    "M_EyeOcclusion": ((0.0, 0.0, 0.0), 0.25, 0.9, False, "BLEND"),
}
_DEFAULT_LOOK = (_SKIN, 1.0, 0.6, False, "OPAQUE")


def ict_triangle_tiles(ict: IctArrays) -> np.ndarray:
    """(F,) int: UDIM tile (0-based) of each ICT triangle, from the mean u of its corners.

    The mean, not a corner, because corners may sit exactly on a tile border (u = 1.0).
    """
    return np.floor(ict.uvs[ict.uv_faces][:, :, 0].mean(axis=1)).astype(np.int64)


def ict_tile_owners(ict: IctArrays) -> dict[int, str]:
    """{tile: name of the ICT material with most triangles in that tile} (the tile texture's user)."""
    tiles = ict_triangle_tiles(ict)
    material = ict.polygon_material[ict.face_polygon].astype(np.int64)
    owners = {}
    for tile in np.unique(tiles):
        counts = np.bincount(material[tiles == tile], minlength=len(ict.material_names))
        owners[int(tile)] = ict.material_names[int(counts.argmax())]
    return owners


def avatar_mesh_from_ict(
    ict_arrays: IctArrays,
    verts: np.ndarray | None = None,
    textures_per_tile: Mapping[int, np.ndarray] | None = None,
    weights: np.ndarray | None = None,
    drop_materials: Sequence[str] = DEFAULT_DROPPED,
    *,
    textures_per_material: Mapping[str, np.ndarray] | None = None,
    name: str = "avatar",
) -> AvatarMesh:
    """Build an :class:`AvatarMesh` from the ICT model, one material per (ICT material, UDIM tile).

    - ``verts`` (V, 3) float32 centimetres: the pose to show, expression included; by default the
      ICT neutral plus ``weights @ expression_basis``;
    - ``textures_per_tile``: {tile (0-6): (H, W, 3|4) uint8}; each goes to the tile's owner material
      (see the module docstring);
    - ``weights`` (53,) float: the current expression in ICT coefficients (default zeros); the exported
      default morph weights are its `rig.rig_weights`;
    - ``drop_materials``: ICT material names left out (by default the Unreal-only eye helpers);
    - ``textures_per_material``: {exported material name: texture}, e.g. for the eyes; wins over tiles.

    Exported material names are the ICT names, with ``_<UDIM>`` appended for materials that span several
    tiles (``M_LacrimalFluid_1005``). Morph targets are the ARKit rig of `sie3d.export.rig` (`rig_names`:
    the 52 ARKit names, then the extras), the same on every primitive.
    """
    from sie3d.assets.ict import REGIONS
    from sie3d.export.rig import rig_deltas, rig_names, rig_weights, tongue_out_delta

    n_expr = len(ict_arrays.expression_names)
    weights = np.zeros(n_expr, np.float32) if weights is None else np.asarray(weights, np.float32)
    if tuple(ict_arrays.expression_names) != ICT_NAMES:
        raise ValueError("the ICT model's expression names differ from sie3d.head.names.ICT_NAMES")
    if weights.shape != (n_expr,):
        raise ValueError(f"weights must be ({n_expr},) ICT expression coefficients, got {weights.shape}")
    deltas = ict_arrays.expression_basis.astype(np.float32)
    if verts is None:
        verts = ict_arrays.neutral + np.tensordot(weights, deltas, axes=1)
    elif np.shape(verts) != ict_arrays.neutral.shape:
        raise ValueError(f"verts must be {ict_arrays.neutral.shape} like the ICT neutral, got {np.shape(verts)}")
    unknown = set(drop_materials) - set(ict_arrays.material_names)
    if unknown:
        raise ValueError(f"drop_materials names unknown ICT materials {sorted(unknown)}; "
                         f"known: {list(ict_arrays.material_names)}")  # fmt: skip

    tiles = ict_triangle_tiles(ict_arrays)
    owners = ict_tile_owners(ict_arrays)
    textures_per_tile = dict(textures_per_tile or {})
    if set(textures_per_tile) - set(owners):
        raise ValueError(f"textures_per_tile has tiles {sorted(set(textures_per_tile) - set(owners))}; "
                         f"the ICT model uses tiles {sorted(owners)}")  # fmt: skip
    textures_per_material = dict(textures_per_material or {})
    dropped_tiles = {t for t, owner in owners.items() if owner in drop_materials} & set(textures_per_tile)
    if dropped_tiles:
        log.debug("textures of tiles %s unused: their materials are dropped", sorted(dropped_tiles))

    ict_material = ict_arrays.polygon_material[ict_arrays.face_polygon].astype(np.int64)
    dropped = np.isin(ict_material, [ict_arrays.material_names.index(n) for n in drop_materials])
    keep = np.flatnonzero(~dropped)
    tiles_of = {m: np.unique(tiles[ict_material == m]) for m in range(len(ict_arrays.material_names))}

    # one exported material per (ICT material, tile) pair, ordered by ICT material then tile
    pair_key = ict_material[keep] * 1000 + tiles[keep]
    pairs, face_material = np.unique(pair_key, return_inverse=True)
    materials = []
    for key in pairs:
        m, tile = divmod(int(key), 1000)
        ict_name = ict_arrays.material_names[m]
        mat_name = ict_name if len(tiles_of[m]) == 1 else f"{ict_name}_{1001 + tile}"
        texture = textures_per_material.get(mat_name)
        if texture is None and owners.get(tile) == ict_name:
            texture = textures_per_tile.get(tile)
        srgb, alpha, roughness, double_sided, alpha_mode = _ICT_LOOKS.get(ict_name, _DEFAULT_LOOK)
        if texture is not None:
            base = (1.0, 1.0, 1.0, alpha)
            if texture.shape[2] == 4:  # the texture's alpha is the coverage (eyelash cards, the lids' shade)
                base = (1.0, 1.0, 1.0, 1.0)
                alpha_mode = "MASK" if alpha_mode == "OPAQUE" else alpha_mode  # opaque + alpha = cut-outs
        else:
            base = (*srgb_to_linear(srgb), alpha)
        materials.append(Material(mat_name, texture, base, roughness, 0.0, double_sided, alpha_mode))
    unused = set(textures_per_material) - {m.name for m in materials}
    if unused:
        raise ValueError(f"textures_per_material names no exported material: {sorted(unused)}; "
                         f"exported: {[m.name for m in materials]}")  # fmt: skip

    # UVs shifted per tile; a UV index used by two tiles (none in ICT) is split
    uv_faces_kept = ict_arrays.uv_faces[keep].astype(np.int64)
    uv_tile = np.repeat(tiles[keep], 3)
    uv_key = uv_faces_kept.ravel() * 64 + uv_tile
    uv_unique, uv_inverse = np.unique(uv_key, return_inverse=True)
    uv_index, uv_shift = np.divmod(uv_unique, 64)
    uvs = ict_arrays.uvs[uv_index].copy()
    uvs[:, 0] -= uv_shift
    # ICT repeats identical UVs under different indices; merged, they split no vertex in the exporters
    uvs, uv_merged = np.unique(uvs, axis=0, return_inverse=True)
    uv_inverse = uv_merged.reshape(-1)[uv_inverse]
    log.debug("ICT -> AvatarMesh: %d triangles, %d materials, %d UVs", len(keep), len(materials), len(uvs))
    return AvatarMesh(
        verts=np.asarray(verts, np.float32),
        faces=ict_arrays.faces[keep],
        uvs=uvs,
        uv_faces=uv_inverse.reshape(-1, 3),
        face_material=face_material,
        materials=tuple(materials),
        morph_names=rig_names(),
        morph_deltas=rig_deltas(deltas, tongue_out_delta(ict_arrays.faces, ict_arrays.uv_faces, ict_arrays.neutral,
                                                         *REGIONS["gums_and_tongue"][:2])),
        morph_weights=rig_weights(weights),
        name=name,
    )
