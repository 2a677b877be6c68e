"""Where each MediaPipe landmark sits on the ICT head: a triangle and barycentric coordinates.

Built once (by `sie3d assets fetch ict`, or lazily) and cached next to the converted head model:

1. a similarity transform brings MediaPipe's canonical mesh (468 vertices, cm) onto the ICT neutral,
   from eight anatomical anchors (eye corners, nose tip, mouth corners, chin);
2. a few rounds of "project onto the surface, then refit ICT's identity to the canonical points"
   make the ICT face take the canonical face's proportions, so projections do not slide;
3. each canonical vertex is projected onto the closest point of the deformed ICT face surface; the
   (triangle, barycentrics) pair is valid for every identity and expression, since topology is shared.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from sie3d.assets import ict
from sie3d.head.canonical import N_CANONICAL, load_canonical_mesh
from sie3d.head.model import vertex_normals

log = logging.getLogger(__name__)

CORRESPONDENCE_VERSION = 2
# MediaPipe landmark id -> ICT 68-point landmark number (Multi-PIE order).
ANCHORS = {33: 36, 133: 39, 362: 42, 263: 45, 1: 30, 61: 48, 291: 54, 152: 8}
IDENTITY_PRIOR = 0.3  # ridge weight on identity coefficients while adapting ICT to the canonical face
ROUNDS = 4


@dataclass(frozen=True)
class Correspondence:
    tri: np.ndarray  # (468,) int64 triangle index into the ICT triangle list
    bary: np.ndarray  # (468, 3) float32 barycentric coordinates, rows sum to 1
    residual_cm: np.ndarray  # (468,) distance from the aligned canonical vertex to its surface point


def similarity_transform_3d(src: np.ndarray, dst: np.ndarray) -> tuple[float, np.ndarray, np.ndarray]:
    """Least-squares (scale, R, t) with dst ≈ scale * R @ src + t (Umeyama, no reflection)."""
    mu_s, mu_d = src.mean(0), dst.mean(0)
    a, b = src - mu_s, dst - mu_d
    u, sigma, vt = np.linalg.svd(b.T @ a / len(src))
    d = np.diag([1.0, 1.0, np.sign(np.linalg.det(u @ vt))])
    rotation = u @ d @ vt
    scale = float(np.trace(np.diag(sigma) @ d) / a.var(0).sum())
    return scale, rotation, mu_d - scale * rotation @ mu_s


def closest_points_on_triangles(
    points: np.ndarray, tri_verts: np.ndarray, chunk: int = 32, point_normals: np.ndarray | None = None,
    min_normal_agreement: float = 0.3,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """For each point (N,3), the closest point on any triangle (T,3,3).

    Returns (triangle index (N,), barycentrics (N,3), distance (N,)). Brute force over all triangles
    with the standard region tests (vertex / edge / face), vectorised in chunks of points. With
    `point_normals` (N,3), only triangles facing the same way (cosine > `min_normal_agreement`) qualify:
    a point on the front of an eyelid must not land on the lid's inner rim that faces the eyeball.
    """
    tri_normals = np.cross(tri_verts[:, 1] - tri_verts[:, 0], tri_verts[:, 2] - tri_verts[:, 0])
    tri_normals /= np.linalg.norm(tri_normals, axis=1, keepdims=True) + 1e-12
    a, b, c = tri_verts[:, 0], tri_verts[:, 1], tri_verts[:, 2]
    ab, ac = b - a, c - a
    best_tri = np.empty(len(points), np.int64)
    best_bary = np.empty((len(points), 3), np.float64)
    best_dist = np.empty(len(points), np.float64)
    for start in range(0, len(points), chunk):
        p = points[start : start + chunk, None, :]  # (n, 1, 3)
        ap = p - a
        d1, d2 = (ab * ap).sum(-1), (ac * ap).sum(-1)
        bp = p - b
        d3, d4 = (ab * bp).sum(-1), (ac * bp).sum(-1)
        cp = p - c
        d5, d6 = (ab * cp).sum(-1), (ac * cp).sum(-1)
        va, vb, vc = d3 * d6 - d5 * d4, d5 * d2 - d1 * d6, d1 * d4 - d3 * d2
        with np.errstate(divide="ignore", invalid="ignore"):
            # Interior of the face by default, then each Voronoi region overrides.
            denom = va + vb + vc
            v, w = vb / denom, vc / denom
            u = 1 - v - w
            t_ab = d1 / (d1 - d3)
            t_ac = d2 / (d2 - d6)
            t_bc = (d4 - d3) / ((d4 - d3) + (d5 - d6))
            zero = np.zeros_like(d1)
            # Voronoi regions in the order of precedence of the classic sequential test.
            precedence = [
                ((d1 <= 0) & (d2 <= 0), zero + 1, zero, zero),  # vertex a
                ((d3 >= 0) & (d4 <= d3), zero, zero + 1, zero),  # vertex b
                ((vc <= 0) & (d1 >= 0) & (d3 <= 0), 1 - t_ab, t_ab, zero),  # edge ab
                ((d6 >= 0) & (d5 <= d6), zero, zero, zero + 1),  # vertex c
                ((vb <= 0) & (d2 >= 0) & (d6 <= 0), 1 - t_ac, zero, t_ac),  # edge ac
                ((va <= 0) & ((d4 - d3) >= 0) & ((d5 - d6) >= 0), zero, 1 - t_bc, t_bc),  # edge bc
            ]
            for mask, bu, bv, bw in reversed(precedence):  # highest precedence applied last, so it wins
                u = np.where(mask, bu, u)
                v = np.where(mask, bv, v)
                w = np.where(mask, bw, w)
        closest = u[..., None] * a + v[..., None] * b + w[..., None] * c
        dist = np.linalg.norm(closest - p, axis=-1)
        dist = np.where(np.isfinite(dist), dist, np.inf)
        if point_normals is not None:
            agree = point_normals[start : start + chunk] @ tri_normals.T > min_normal_agreement
            dist = np.where(agree, dist, np.inf)
        k = dist.argmin(1)
        rows = np.arange(len(k))
        best_tri[start : start + chunk] = k
        best_bary[start : start + chunk] = np.stack([u[rows, k], v[rows, k], w[rows, k]], -1)
        best_dist[start : start + chunk] = dist[rows, k]
    return best_tri, best_bary, best_dist


def build(arrays: ict.IctArrays | None = None, canonical_verts: np.ndarray | None = None) -> Correspondence:
    arrays = arrays or ict.load()
    mesh = load_canonical_mesh()
    canonical = (mesh.verts if canonical_verts is None else canonical_verts).astype(np.float64)
    faces = arrays.faces.astype(np.int64)
    face_material = arrays.polygon_material[arrays.face_polygon]
    skin = np.flatnonzero(face_material == arrays.material_names.index("M_Face"))
    mp_ids, ict_ids = list(ANCHORS), [arrays.landmarks_68[k] for k in ANCHORS.values()]

    neutral = arrays.neutral.astype(np.float64)
    identity_basis = arrays.identity_basis.astype(np.float64)  # (100, V, 3)
    shape = neutral.copy()
    scale, rotation, translation = similarity_transform_3d(canonical[mp_ids], shape[ict_ids])
    for _ in range(ROUNDS):
        target = scale * canonical @ rotation.T + translation
        normals = vertex_normals(target, mesh.faces)
        tri, bary, _ = closest_points_on_triangles(target, shape[faces[skin]], point_normals=normals)
        corners = faces[skin[tri]]  # (N, 3)
        # Linear least squares for identity: points(id) = sum_k bary_k (neutral + B id)[corner_k].
        basis_at = np.einsum("nk,mnkd->mnd", bary, identity_basis[:, corners]).reshape(len(identity_basis), -1)
        base_at = np.einsum("nk,nkd->nd", bary, neutral[corners]).reshape(-1)
        lhs = basis_at @ basis_at.T + IDENTITY_PRIOR * np.eye(len(basis_at))
        coefficients = np.linalg.solve(lhs, basis_at @ (target.reshape(-1) - base_at))
        shape = neutral + np.tensordot(coefficients, identity_basis, axes=1)
        anchors_now = np.einsum("nk,nkd->nd", bary, shape[corners])[mp_ids]
        scale, rotation, translation = similarity_transform_3d(canonical[mp_ids], anchors_now)
    target = scale * canonical @ rotation.T + translation
    normals = vertex_normals(target, mesh.faces)
    tri, bary, dist = closest_points_on_triangles(target, shape[faces[skin]], point_normals=normals)
    log.info("MediaPipe->ICT correspondence: median residual %.3f cm, max %.3f cm", np.median(dist), dist.max())
    return Correspondence(skin[tri].astype(np.int64), bary.astype(np.float32), dist.astype(np.float32))


def cache_path() -> Path:
    return ict.cache_path().with_name(f"mediapipe_correspondence_v{CORRESPONDENCE_VERSION}.npz")


def load(*, rebuild: bool = False) -> Correspondence:
    """The cached correspondence, built on first use."""
    path = cache_path()
    if path.is_file() and not rebuild:
        with np.load(path) as data:
            if data["tri"].shape == (N_CANONICAL,):
                return Correspondence(data["tri"], data["bary"], data["residual_cm"])
    result = build()
    partial = path.with_name(path.name + ".partial.npz")
    np.savez(partial, tri=result.tri, bary=result.bary, residual_cm=result.residual_cm)
    os.replace(partial, path)
    return result
