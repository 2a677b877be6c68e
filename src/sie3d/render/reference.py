"""Slow, obviously correct rasterizer: the test oracle for `sie3d.render.rasterize`.

It shares no code with the fast path: for every pixel and every triangle it casts the ray through the
pixel centre and solves ``t * d = v0 + beta (v1 - v0) + gamma (v2 - v0)`` in camera space with
float64 numpy. Only for tiny images (e.g. 16 x 16) and a handful of triangles.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

from .camera import Cameras
from .rasterize import Fragments

__all__ = ["rasterize_reference"]


def rasterize_reference(
    verts_world: Tensor,
    faces: Tensor,
    cams: Cameras,
    *,
    cull_backfaces: bool = False,
    near: float = 1e-3,
) -> Fragments:
    """Same contract as `sie3d.render.rasterize` (no face_mask): nearest surface with depth >= near
    wins; equal depths go to the lower face index; pixel centres on an edge are inside."""
    K = cams.K.detach().double().cpu().numpy()
    w2c = cams.world_to_cam.detach().double().cpu().numpy()
    verts = verts_world.detach().double().cpu().numpy()
    if verts.ndim == 2:
        verts = np.broadcast_to(verts, (cams.batch_size, *verts.shape))
    elif verts.shape[0] == 1:
        verts = np.broadcast_to(verts, (cams.batch_size, *verts.shape[1:]))
    tris = faces.cpu().numpy()
    B, H, W = cams.batch_size, cams.height, cams.width
    tri_id = np.full((B, H, W), -1, dtype=np.int64)
    bary = np.zeros((B, H, W, 3))
    depth = np.zeros((B, H, W))

    for b in range(B):
        rot, trans = w2c[b, :3, :3], w2c[b, :3, 3]
        v_cam = verts[b] @ rot.T + trans
        k_inv = np.linalg.inv(K[b])
        for row in range(H):
            for col in range(W):
                ray = k_inv @ np.array([col + 0.5, row + 0.5, 1.0])
                ray = ray / ray[2]  # ray point at parameter t has camera depth t
                best_depth = np.inf
                for f, (i, j, k) in enumerate(tris):
                    v0, v1, v2 = v_cam[i], v_cam[j], v_cam[k]
                    normal = np.cross(v1 - v0, v2 - v0)
                    if cull_backfaces and np.dot(normal, -v0) <= 0:
                        continue  # the normal does not point toward the camera centre (origin)
                    system = np.stack([ray, v0 - v1, v0 - v2], axis=1)  # t, beta, gamma
                    if abs(np.linalg.det(system)) < 1e-12:
                        continue  # ray parallel to the triangle's plane
                    t, beta, gamma = np.linalg.solve(system, v0)
                    alpha = 1.0 - beta - gamma
                    if min(alpha, beta, gamma) < 0 or t < near:
                        continue
                    if t < best_depth:  # strict: on equal depth the earlier (lower) face index stays
                        best_depth = t
                        tri_id[b, row, col] = f
                        bary[b, row, col] = (alpha, beta, gamma)
                        depth[b, row, col] = t

    dtype, device = verts_world.dtype, verts_world.device
    return Fragments(
        torch.from_numpy(tri_id).to(device),
        torch.from_numpy(bary).to(device=device, dtype=dtype),
        torch.from_numpy(depth).to(device=device, dtype=dtype),
    )
