"""3D Gaussian splats from the textured, posed mesh, written as a PLY in the INRIA layout.

Every triangle of the `AvatarMesh` is cut into n x n similar sub-triangles (n from its longest edge and
`SplatConfig.spacing_cm`), and each sub-triangle becomes one flat Gaussian lying in it: centred on its
centroid, with the sub-triangle's own second moment (a uniform triangle's covariance is
``sum(d_i d_i^T) / 12`` for its corners' offsets d_i from the centroid) widened by `coverage` so that
neighbours overlap, and `thickness_cm` along the normal. Its colour is the texture at the centroid's UV
(or the material's flat colour) shaded by the renderer's studio light with the interpolated vertex
normal -- the look of ``preview.png``, baked: splat viewers do not light splats. Its opacity follows the
material's alpha as glTF does: alpha-tested (MASK) eyelash cards keep splats on their strands only, the
alpha-blended (BLEND) shade over the eyeballs gives translucent splats, transparent texels none. Spherical harmonics
above degree 0 are zero (the shading is diffuse, so it does not depend on the view).

The PLY (`to_ply`) is the layout of the INRIA 3DGS reference code that viewers and engine plug-ins read:
binary little-endian float32 properties ``x y z nx ny nz f_dc_0..2 f_rest_0..44 opacity scale_0..2
rot_0..3``; ``f_dc = (colour - 0.5) / C0`` (SH degree 0), ``opacity`` as a logit, ``scale_*`` as natural
logs, ``rot`` a unit quaternion (w, x, y, z) whose rotation's columns are the axes of ``scale_0..2``.
Units are metres and axes as the GLB (+y up, +z out of the face).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from sie3d.export.mesh import AvatarMesh, vertex_normals
from sie3d.render.renderer import STUDIO_LIGHT, DirectionalLight

SH_C0 = 0.28209479177387814  # the degree-0 spherical harmonic, as in the INRIA code
SH_REST = 45  # f_rest coefficients for SH degree 3 (15 per channel)
PLY_PROPERTIES = ("x", "y", "z", "nx", "ny", "nz", "f_dc_0", "f_dc_1", "f_dc_2",
                  *(f"f_rest_{k}" for k in range(SH_REST)), "opacity", "scale_0", "scale_1", "scale_2",
                  "rot_0", "rot_1", "rot_2", "rot_3")  # fmt: skip


@dataclass(frozen=True)
class SplatConfig:
    """How the mesh becomes Gaussians."""

    # Longest sub-triangle edge. Most face triangles of ICT are smaller (one splat each): 95k splats, 23 MB.
    # Measured against the mesh render at 256 px (tests/test_splats.py): 0.5 cm gives 26 dB, 0.3 cm (200k
    # splats) and 0.12 cm (930k) no better -- sub-pixel splats are widened by the renderers' 0.3 px^2 filter.
    spacing_cm: float = 0.5
    max_subdivision: int = 16  # at most n x n sub-triangles per triangle
    coverage: float = 1.4  # sigma multiplier over the sub-triangle's own: neighbours overlap, no holes
    thickness_cm: float = 0.004  # sigma along the normal: flat, surface-aligned
    opacity: float = 0.995
    light: DirectionalLight | None = STUDIO_LIGHT  # baked into the colours; None: the unlit texture

    def __post_init__(self) -> None:
        if not (self.spacing_cm > 0 and self.max_subdivision >= 1 and self.coverage > 0 and self.thickness_cm > 0
                and 0 < self.opacity < 1):  # fmt: skip
            raise ValueError(f"invalid SplatConfig {self}")


@dataclass(frozen=True)
class Splats:
    """N Gaussians in the mesh's frame (centimetres, +y up): ``means`` (N, 3), ``quats`` (N, 4) unit
    (w, x, y, z), ``scales`` (N, 3) standard deviations along the rotation's columns, ``colors`` (N, 3)
    display (sRGB) colours in [0, 1], ``opacities`` (N,) in (0, 1), ``normals`` (N, 3) unit."""

    means: np.ndarray
    quats: np.ndarray
    scales: np.ndarray
    colors: np.ndarray
    opacities: np.ndarray
    normals: np.ndarray

    def __len__(self) -> int:
        return len(self.means)


def _sub_centroids(n: int) -> np.ndarray:
    """(n * n, 2) barycentric (b1, b2) of the centroids of the n x n similar sub-triangles of a triangle."""
    up = [((3 * i + 1) / (3 * n), (3 * j + 1) / (3 * n)) for i in range(n) for j in range(n - i)]
    down = [((3 * i + 2) / (3 * n), (3 * j + 2) / (3 * n)) for i in range(n - 1) for j in range(n - 1 - i)]
    return np.asarray(up + down, np.float64)


def _sample(texture: np.ndarray, uv: np.ndarray) -> np.ndarray:
    """(N, C) float values in [0, 1] of an (H, W, C) uint8 texture at (N, 2) UVs (v up), bilinear."""
    from sie3d.head.texture import _sample_bilinear

    height, width = texture.shape[:2]
    pixels = np.stack([uv[:, 0] * width, (1.0 - uv[:, 1]) * height], axis=1)  # pixel centres at +0.5
    return _sample_bilinear(texture.astype(np.float64) / 255.0, pixels)


def _quaternions(rotations: np.ndarray) -> np.ndarray:
    """(N, 4) unit quaternions (w, x, y, z) of (N, 3, 3) proper rotation matrices."""
    r = rotations
    w = np.sqrt(np.maximum(0.0, 1 + r[:, 0, 0] + r[:, 1, 1] + r[:, 2, 2])) / 2
    x = np.sqrt(np.maximum(0.0, 1 + r[:, 0, 0] - r[:, 1, 1] - r[:, 2, 2])) / 2
    y = np.sqrt(np.maximum(0.0, 1 - r[:, 0, 0] + r[:, 1, 1] - r[:, 2, 2])) / 2
    z = np.sqrt(np.maximum(0.0, 1 - r[:, 0, 0] - r[:, 1, 1] + r[:, 2, 2])) / 2
    x = np.copysign(x, r[:, 2, 1] - r[:, 1, 2])
    y = np.copysign(y, r[:, 0, 2] - r[:, 2, 0])
    z = np.copysign(z, r[:, 1, 0] - r[:, 0, 1])
    q = np.stack([w, x, y, z], axis=1)
    return q / np.linalg.norm(q, axis=1, keepdims=True)


def splats_from_mesh(mesh: AvatarMesh, config: SplatConfig = SplatConfig()) -> Splats:
    """Flat Gaussians covering every triangle of `mesh` (its current pose, ``mesh.verts``), coloured by its
    materials (see the module docstring)."""
    from sie3d.head.texture import linear_to_srgb, srgb_to_linear

    verts = mesh.verts.astype(np.float64)
    corners = verts[mesh.faces]  # (F, 3, 3)
    longest = np.linalg.norm(corners - np.roll(corners, 1, axis=1), axis=2).max(axis=1)
    area2 = np.linalg.norm(np.cross(corners[:, 1] - corners[:, 0], corners[:, 2] - corners[:, 0]), axis=1)
    subdivision = np.clip(np.ceil(longest / config.spacing_cm), 1, config.max_subdivision).astype(np.int64)
    subdivision[area2 < 1e-12] = 0  # degenerate: no splat
    normals_v = vertex_normals(mesh.verts, mesh.faces).astype(np.float64)
    uv_corners = mesh.uvs[mesh.uv_faces].astype(np.float64)  # (F, 3, 2)
    offsets = corners - corners.mean(axis=1, keepdims=True)
    covariance = np.einsum("fki,fkj->fij", offsets, offsets) / 12.0  # (F, 3, 3) of the whole triangle

    parts = []
    for n in np.unique(subdivision[subdivision > 0]):
        tris = np.flatnonzero(subdivision == n)
        bary2 = _sub_centroids(int(n))
        bary = np.concatenate([1 - bary2.sum(1, keepdims=True), bary2], axis=1)  # (S, 3)
        tri = np.repeat(tris, len(bary))
        weights = np.tile(bary, (len(tris), 1))  # (N, 3)
        parts.append((tri, weights, covariance[tri] / float(n * n)))
    tri = np.concatenate([p[0] for p in parts])
    weights = np.concatenate([p[1] for p in parts])
    cov = np.concatenate([p[2] for p in parts]) * config.coverage**2

    means = np.einsum("nk,nki->ni", weights, corners[tri])
    normals = np.einsum("nk,nki->ni", weights, normals_v[mesh.faces[tri]])
    normals /= np.maximum(np.linalg.norm(normals, axis=1, keepdims=True), 1e-12)
    uv = np.einsum("nk,nki->ni", weights, uv_corners[tri])

    # colour: texture (or flat colour) per material, shaded by the baked light
    # opacity: a material's alpha as a glTF viewer uses it -- MASK cuts (eyelash cards keep their strands
    # only), BLEND scales the opacity (the lids' shade over the eyeballs), OPAQUE ignores it
    albedo = np.zeros_like(means)
    opacity = np.full(len(means), config.opacity)
    material = mesh.face_material[tri]
    for m, mat in enumerate(mesh.materials):
        rows = np.flatnonzero(material == m)
        if not len(rows):
            continue
        alpha = np.full(len(rows), mat.base_color[3])
        if mat.texture is not None:
            texel = _sample(mat.texture, uv[rows])
            albedo[rows] = srgb_to_linear(texel[:, :3]) * np.asarray(mat.base_color[:3])
            if texel.shape[1] == 4:
                alpha = alpha * texel[:, 3]
        else:
            albedo[rows] = np.asarray(mat.base_color[:3])
        if mat.alpha_mode == "MASK":
            opacity[rows] = np.where(alpha >= mat.alpha_cutoff, config.opacity, 0.0)
        elif mat.alpha_mode == "BLEND":
            opacity[rows] = config.opacity * alpha
    if config.light is not None:
        direction = np.asarray(config.light.direction, np.float64)
        direction /= np.linalg.norm(direction)
        shade = config.light.ambient + config.light.diffuse * np.clip(normals @ direction, 0, None)
        albedo = albedo * shade[:, None]
    colors = linear_to_srgb(albedo)

    # axes: the covariance's in-plane eigenvectors, then the normal; a proper rotation
    values, vectors = np.linalg.eigh(cov)  # ascending: vectors[:, :, 0] is the (near-zero) normal direction
    axes = np.stack([vectors[:, :, 2], vectors[:, :, 1], vectors[:, :, 0]], axis=2)
    flip = np.linalg.det(axes) < 0
    axes[flip, :, 2] *= -1
    scales = np.stack([np.sqrt(np.maximum(values[:, 2], 0)), np.sqrt(np.maximum(values[:, 1], 0)),
                       np.full(len(values), config.thickness_cm)], axis=1)  # fmt: skip
    scales[:, :2] = np.maximum(scales[:, :2], config.thickness_cm)
    keep = opacity >= 1.0 / 255.0  # a fully transparent Gaussian is no Gaussian
    return Splats(means[keep].astype(np.float32), _quaternions(axes[keep]).astype(np.float32),
                  scales[keep].astype(np.float32), colors[keep].astype(np.float32),
                  opacity[keep].astype(np.float32), normals[keep].astype(np.float32))  # fmt: skip


def to_ply(splats: Splats, scale: float = 0.01) -> bytes:
    """The INRIA-layout binary PLY of `splats`, positions and sizes multiplied by `scale` (cm -> m)."""
    n = len(splats)
    data = np.zeros((n, len(PLY_PROPERTIES)), np.float32)
    data[:, 0:3] = splats.means * scale
    data[:, 3:6] = splats.normals
    data[:, 6:9] = (splats.colors - 0.5) / SH_C0
    p = 9 + SH_REST
    opacity = np.clip(splats.opacities.astype(np.float64), 1e-6, 1 - 1e-6)
    data[:, p] = np.log(opacity / (1 - opacity))
    data[:, p + 1:p + 4] = np.log(splats.scales.astype(np.float64) * scale)
    data[:, p + 4:p + 8] = splats.quats
    header = "\n".join(["ply", "format binary_little_endian 1.0", "comment sie3d 3D Gaussian splats (INRIA layout)",
                        f"element vertex {n}", *(f"property float {name}" for name in PLY_PROPERTIES),
                        "end_header"]) + "\n"  # fmt: skip
    return header.encode("ascii") + data.astype("<f4").tobytes()


def ply_files(mesh: AvatarMesh, stem: str) -> dict[str, bytes]:
    """The exporter of the registry: ``{stem}.ply``."""
    return {f"{stem}.ply": to_ply(splats_from_mesh(mesh))}
