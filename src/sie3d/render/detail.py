"""Surface detail from textures: UV tangent frames, bumped normals and crease occlusion.

A *detail* texture has three channels per texel: the slope of a small height field along +u and +v
(height change per unit of surface distance, in the surface's UV tangent frame) and a cavity term
(>= 0; the shading is multiplied by ``exp(-cavity)``, the light a crease's walls keep out). A height
``h`` over the surface displaces it along the normal, so to first order its normal becomes
``normalize(n - dh/dt * t - dh/db * b)`` with ``t``, ``b`` the unit tangents along +u and +v. Zero
detail leaves the shading exactly as it is. Everything here is differentiable.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = ["bump_normals", "uv_tangents"]


def uv_tangents(verts: Tensor, faces: Tensor, uv: Tensor, uv_faces: Tensor) -> Tensor:
    """(…, V, 3) vertices -> (…, V, 6): per-vertex d position / du and d position / dv (not normalised),
    summed over the adjacent faces (UV-degenerate faces add nothing). ``uv`` (T, 2) in the OBJ
    convention (v up), ``uv_faces`` (F, 3) indices into it, one row per row of ``faces``."""
    corners = verts[..., faces, :]  # (…, F, 3, 3)
    e1, e2 = corners[..., 1, :] - corners[..., 0, :], corners[..., 2, :] - corners[..., 0, :]
    t = uv.to(verts.dtype)[uv_faces]  # (F, 3, 2)
    d1, d2 = t[:, 1] - t[:, 0], t[:, 2] - t[:, 0]
    det = d1[:, 0] * d2[:, 1] - d2[:, 0] * d1[:, 1]
    inverse = torch.where(det.abs() > 1e-12, 1.0 / torch.where(det == 0, torch.ones_like(det), det),
                          torch.zeros_like(det))[:, None]  # fmt: skip
    d_du = (e1 * d2[:, 1:2] - e2 * d1[:, 1:2]) * inverse
    d_dv = (e2 * d1[:, 0:1] - e1 * d2[:, 0:1]) * inverse
    per_face = torch.cat([d_du, d_dv], dim=-1)  # (…, F, 6)
    source = per_face.unsqueeze(-2).expand(*per_face.shape[:-1], 3, 6).reshape(*per_face.shape[:-2], -1, 6)
    out = verts.new_zeros(*verts.shape[:-1], 6)
    return out.index_add(verts.ndim - 2, faces.reshape(-1), source)


def bump_normals(normals: Tensor, tangents: Tensor, slopes: Tensor) -> Tensor:
    """Unit normals (P, 3), tangents (P, 6) from `uv_tangents` (interpolated), slopes (P, 2) of the height
    along +u and +v -> (P, 3) unit bumped normals. The tangents are made orthonormal to each normal
    first (Gram-Schmidt), so only their directions matter."""
    t = F.normalize(tangents[:, 0:3] - (tangents[:, 0:3] * normals).sum(-1, keepdim=True) * normals, dim=-1,
                    eps=1e-12)  # fmt: skip
    b = tangents[:, 3:6] - (tangents[:, 3:6] * normals).sum(-1, keepdim=True) * normals
    b = F.normalize(b - (b * t).sum(-1, keepdim=True) * t, dim=-1, eps=1e-12)
    return F.normalize(normals - slopes[:, 0:1] * t - slopes[:, 1:2] * b, dim=-1, eps=1e-12)
