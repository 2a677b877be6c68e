"""Vectorized triangle rasterizer (not differentiable): which triangle covers each pixel, and where.

Method: homogeneous 2-D rasterization. For a triangle with camera-space corners mapped to pixel
homogeneous coordinates ``h_i = K v_i``, the pixel centre ``p = (u, v, 1)`` lies on the triangle iff
``p = a h_0 + b h_1 + c h_2`` with ``a, b, c >= 0``. ``(a, b, c)`` are three linear "edge functions"
``w_i = (h_j x h_k) . p`` divided by ``det[h_0 h_1 h_2]``; normalised to sum 1 they are the
perspective-correct barycentrics, and the depth is ``det / (w_0 + w_1 + w_2)``. No division by the
vertex depth happens, so triangles crossing the camera plane need no clipping: the sign test rejects
the part behind the camera, and a per-pixel ``depth >= near`` test rejects the part in front of it
but closer than ``near``. Shared edges evaluate to exactly opposite values in both triangles, so a
closed mesh has no pinholes.

Work is done per candidate (triangle, pixel) pair inside each triangle's pixel bounding box, fully
vectorized: triangles are grouped by bounding-box size (exact up to 4 pixels, then powers of two) so
that each group is one dense (T, h, w) block of broadcast arithmetic, and the candidates are resolved
with a z-buffer ``scatter_reduce(amin)`` on int64 keys packing (float32 depth bits, face id).
Per-triangle set-up runs in float64; per-candidate arithmetic in the dtype of the vertices.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from .camera import Cameras, _check_faces, _check_points, _check_shape, _check_tensor, _to_pixel_homogeneous

__all__ = ["Fragments", "rasterize"]

_NO_HIT = torch.iinfo(torch.int64).max
_PENALTY = 1e300  # pushes unused bounding-box points out of a float64 min / max
_FAR = 3.0e38  # float32 depth that marks a rejected candidate; depths >= _FAR are never drawn
_FAR_KEY = int(torch.tensor(_FAR, dtype=torch.float32).view(torch.int32)) << 32


@dataclass(frozen=True)
class Fragments:
    """What the rasterizer found at each pixel centre.

    Attributes:
        tri_id: (B, H, W) long, index of the visible face in ``faces``; -1 for background.
        bary: (B, H, W, 3) perspective-correct barycentrics of the pixel centre with respect to the
            face corners ``faces[tri_id]``; zeros for background. Not differentiable (see
            `sie3d.render.shade.barycentrics` for the differentiable version).
        depth: (B, H, W) camera-space z of the visible surface; 0 for background.
    """

    tri_id: Tensor
    bary: Tensor
    depth: Tensor

    @property
    def mask(self) -> Tensor:
        """(B, H, W) bool, True where a face is visible."""
        return self.tri_id >= 0


@dataclass(frozen=True)
class _Triangles:
    """Per (camera, face) set-up, flattened to T = B * F rows (structure of arrays for speed)."""

    coef: Tensor  # (9, T) [A0 A1 A2 B0 B1 B2 C0 C1 C2]: edge function w_i = A_i u + B_i v + C_i
    abs_det: Tensor  # (T,) |det[h0 h1 h2]|; depth = abs_det / (w0 + w1 + w2)
    valid: Tensor  # (T,) bool
    bbox: Tensor  # (4, T) long [x0, x1, y0, y1], inclusive pixel ranges
    nearest: Tensor  # (T,) the smallest camera depth of the corners: no point of the face is nearer


def _setup_triangles(
    verts_world: Tensor, faces: Tensor, cams: Cameras, near: float, cull_backfaces: bool, dtype: torch.dtype
) -> _Triangles:
    """Edge functions, validity and pixel bounding boxes of every (camera, face).

    Computed in float64: it is only B * F values and it keeps the sign of tiny triangles right.
    """
    W, H = cams.width, cams.height
    hom = _to_pixel_homogeneous(verts_world.detach().double(), cams.to(dtype=torch.float64))
    hom = hom.permute(2, 0, 1)  # (3, B, V); hom[2] = depth
    num_faces = faces.shape[0]
    corners = _take(hom.reshape(-1, hom.shape[-1]), faces.t().reshape(-1)).reshape(
        3, hom.shape[1], 3, num_faces
    )
    x, y, z = ([corners[c, :, k] for k in range(3)] for c in range(3))  # 3 corners of (B, F) each

    # Edge function k is (h_i x h_j) . p with (i, j) the other two corners. Swapping i and j negates
    # every product exactly, so a shared edge gives exactly opposite values in its two faces.
    a_, b_, c_ = [], [], []
    for k in range(3):
        i, j = (k + 1) % 3, (k + 2) % 3
        a_.append(y[i] * z[j] - z[i] * y[j])
        b_.append(z[i] * x[j] - x[i] * z[j])
        c_.append(x[i] * y[j] - y[i] * x[j])
    det = x[0] * a_[0] + y[0] * b_[0] + z[0] * c_[0]  # (B, F)
    scale = torch.ones_like(det)
    for k in range(3):
        scale = scale * torch.sqrt(x[k] * x[k] + y[k] * y[k] + z[k] * z[k])
    valid = torch.isfinite(det) & (det.abs() > 1e-13 * scale)
    if cull_backfaces:
        # det = v0 . ((v1 - v0) x (v2 - v0)) in camera space: negative when the face's
        # counter-clockwise (right-hand) normal points toward the camera.
        valid &= det < 0
    # Sign-normalise so that "inside" is always w_i >= 0 (exact negation keeps edges watertight).
    # (Arithmetic instead of torch.where / masked_fill: those are several times slower on CPU.)
    sign = 1.0 - 2.0 * (det < 0).to(det.dtype)
    coef = torch.stack(a_ + b_ + c_).mul_(sign).reshape(9, -1)
    abs_det = det.abs().reshape(-1)
    # Faces whose edge functions could overflow the working dtype at any pixel (absurd coordinates) or
    # whose |det| underflows it are dropped: the fast path must never produce NaN.
    headroom = torch.isfinite((coef * (4.0 * (W + H + 2))).to(dtype)).all(0)
    abs_det_w = abs_det.to(dtype)
    valid = valid.reshape(-1) & headroom & torch.isfinite(abs_det_w) & (abs_det_w > 0)

    # Pixel bounding box of the part in front of the near plane: corners with z >= near plus the points
    # where edges cross z = near. Points that do not apply are pushed out by +-_PENALTY.
    front = [(z[k] >= near).to(det.dtype) for k in range(3)]
    valid &= (front[0] + front[1] + front[2] > 0).reshape(-1)
    points = [(front[k], x[k] / z[k].clamp(min=near), y[k] / z[k].clamp(min=near)) for k in range(3)]
    for i, j in ((0, 1), (1, 2), (2, 0)):
        crosses = (front[i] - front[j]).abs()
        t = (near - z[i]) * crosses / ((z[j] - z[i]) * crosses + (1.0 - crosses))
        points.append((crosses, (x[i] + t * (x[j] - x[i])) / near, (y[i] + t * (y[j] - y[i])) / near))
    lo_u = lo_v = torch.full_like(det, _PENALTY)
    hi_u = hi_v = torch.full_like(det, -_PENALTY)
    for applies, u, v in points:
        penalty = (1.0 - applies) * _PENALTY
        lo_u, hi_u = torch.minimum(lo_u, u + penalty), torch.maximum(hi_u, u - penalty)
        lo_v, hi_v = torch.minimum(lo_v, v + penalty), torch.maximum(hi_v, v - penalty)
    # Pixel j is a candidate iff its centre j + 0.5 lies in [lo, hi]. Clamp before the int cast.
    big = float(W + H + 1)
    bounds = []
    for lo, hi, size in ((lo_u, hi_u, W), (lo_v, hi_v, H)):
        first = torch.ceil(lo.nan_to_num(big, big, big).clamp(-1.0, big) - 0.5).clamp(min=0)
        last = torch.floor(hi.nan_to_num(-big, -big, -big).clamp(-big, big) - 0.5).clamp(max=size - 1)
        valid &= (last >= first).reshape(-1)
        bounds += [first, last]
    bbox = torch.stack(bounds).long().reshape(4, -1)
    return _Triangles(coef, abs_det, valid, bbox, torch.minimum(torch.minimum(z[0], z[1]), z[2]).reshape(-1))


def _take(table: Tensor, index: Tensor) -> Tensor:
    """(R, N) table, (M,) column indices -> (R, M); gather is much faster than indexing along dim 1."""
    return torch.gather(table, 1, index.expand(table.shape[0], -1))


def _bucket_size(extent: Tensor) -> Tensor:
    """Bounding-box extent (pixels) -> the padded extent of its bucket: exact up to 4, then powers of 2."""
    pow2 = torch.exp2(torch.ceil(torch.log2(extent.clamp(min=1).double()))).long()
    small = (extent <= 4).long()
    return extent * small + pow2 * (1 - small)


def rasterize(
    verts_world: Tensor,
    faces: Tensor,
    cams: Cameras,
    *,
    face_mask: Tensor | None = None,
    cull_backfaces: bool = False,
    near: float = 1e-3,
    depth_limit: Tensor | None = None,
    max_candidates: int = 1 << 21,
) -> Fragments:
    """Rasterize a triangle mesh seen by B cameras.

    Args:
        verts_world: (V, 3) shared by all cameras, or (B, V, 3) one posed mesh per camera (B may be 1).
        faces: (F, 3) long vertex indices; counter-clockwise seen from outside (right-hand normal out).
        cams: B cameras, see `sie3d.render.camera`.
        face_mask: optional (F,) bool, False drops a face (e.g. hidden parts of the head).
        cull_backfaces: drop faces whose normal points away from the camera.
        near: surfaces closer than this camera-space depth are not drawn (same unit as the mesh).
        depth_limit: optional (B, H, W) camera depth of what is already drawn (a z-buffer, ``inf`` where
            nothing is): only surfaces nearer than it are drawn, and faces wholly behind it over their
            bounding box are dropped before their pixels are tested (a layer drawn over others costs only
            what can show).
        max_candidates: memory bound: (face, pixel) pairs tested at once.

    Returns:
        Fragments; the nearest surface wins, exact depth ties (compared in float32) go to the lower face
        index. Pixel centres on an edge count as inside. Computed without gradients.
    """
    verts_world = _check_points(verts_world, cams, "verts_world")
    faces = _check_faces(faces, verts_world.shape[-2]).to(verts_world.device)
    num_faces = faces.shape[0]
    if num_faces >= 2**31:
        raise ValueError(f"rasterize supports fewer than 2**31 faces, got {num_faces}")
    if face_mask is not None:
        face_mask = _check_tensor("face_mask", face_mask)
        _check_shape("face_mask", face_mask, f"({num_faces},) bool", face_mask.shape == (num_faces,))
        if face_mask.dtype != torch.bool:
            raise ValueError(f"face_mask must be a bool tensor, got {face_mask.dtype}")
    if near <= 0:
        raise ValueError(f"near must be positive, got {near}")

    B, H, W = cams.batch_size, cams.height, cams.width
    device, dtype = verts_world.device, verts_world.dtype
    if depth_limit is not None:
        depth_limit = _check_tensor("depth_limit", depth_limit, floating=True)
        _check_shape("depth_limit", depth_limit, f"({B}, {H}, {W})", depth_limit.shape == (B, H, W))
    with torch.no_grad():
        if depth_limit is None:
            zbuf = torch.full((B * H * W,), _NO_HIT, dtype=torch.int64, device=device)
        else:  # what is drawn, as keys that only candidates strictly nearer beat
            limit = depth_limit.detach().to(device=device, dtype=torch.float32).clamp(max=_FAR).reshape(-1)
            zbuf = _depth_key(limit)
            no_limit = zbuf.clone()
        tris = _setup_triangles(verts_world, faces, cams, near, cull_backfaces, dtype)
        valid = tris.valid
        if face_mask is not None:
            valid = valid & face_mask.to(device).repeat(B)
        if depth_limit is not None:
            valid = valid & ~_hidden(tris, depth_limit.detach().to(device), num_faces)

        # Group the triangles by bounding-box size so that each group is one dense (T, h, w) block of
        # candidate pixels: broadcasting only, no per-candidate gathers or integer division.
        rows = valid.nonzero().squeeze(1)  # rows into the B * F tables
        x0, x1, y0, y1 = _take(tris.bbox, rows)
        bucket_w, bucket_h = _bucket_size(x1 - x0 + 1), _bucket_size(y1 - y0 + 1)
        order = torch.argsort(bucket_w * (4 * (W + H + 1)) + bucket_h)
        rows = rows.index_select(0, order)
        x0, x1, y0, y1 = _take(tris.bbox, rows)
        bucket_w, bucket_h = bucket_w.index_select(0, order), bucket_h.index_select(0, order)
        coef = _take(tris.coef, rows).to(dtype)  # (9, T)
        abs_det = tris.abs_det.index_select(0, rows).to(dtype)
        face_id = rows % max(num_faces, 1)
        row0 = (rows // max(num_faces, 1)) * H + y0  # image row in the stacked (B * H, W) z-buffer
        _, group_sizes = torch.unique_consecutive(bucket_w * (4 * (W + H + 1)) + bucket_h, return_counts=True)

        start = 0
        for size in group_sizes.tolist():
            bw, bh = int(bucket_w[start]), int(bucket_h[start])
            step = max(1, max_candidates // (bw * bh))
            for lo in range(start, start + size, step):
                sl = slice(lo, min(lo + step, start + size))
                _rasterize_block(zbuf, sl, bw, bh, x0, x1, y0, y1, row0, coef, abs_det, face_id, near, W, H)
            start += size

        hit = zbuf < (_FAR_KEY if depth_limit is None else no_limit.clamp(max=_FAR_KEY))
        tri_id = ((zbuf & 0xFFFFFFFF) + 1) * hit.long() - 1  # -1 on background (torch.where is slow)
        # Barycentrics and depth only for the winning face of each covered pixel.
        pix = hit.nonzero().squeeze(1)
        row = (pix // (H * W)) * num_faces + tri_id.index_select(0, pix)
        c = _take(tris.coef, row).to(dtype)
        u, v = (pix % W).to(dtype) + 0.5, ((pix // W) % H).to(dtype) + 0.5
        w = torch.stack([c[k] * u + c[k + 3] * v + c[k + 6] for k in range(3)], dim=1)
        w_sum = w.sum(1)
        bary = torch.zeros(B * H * W, 3, dtype=dtype, device=device)
        bary[pix] = w / w_sum.unsqueeze(1)
        depth_img = torch.zeros(B * H * W, dtype=dtype, device=device)
        depth_img[pix] = tris.abs_det.index_select(0, row).to(dtype) / w_sum
    return Fragments(tri_id.reshape(B, H, W), bary.reshape(B, H, W, 3), depth_img.reshape(B, H, W))


_TILE = 8  # pixels: the culling's tiles (`_hidden`)


def _depth_key(depth: Tensor) -> Tensor:
    """int64 z-buffer keys of float32 `depth` (>= 0), face index 0: its bits in the high half (positive float32
    bit patterns sort like the floats), the face index to be or-ed into the low half."""
    return depth.view(torch.int32).long().bitwise_left_shift_(32)


def _hidden(tris: _Triangles, depth_limit: Tensor, num_faces: int) -> Tensor:
    """(T,) bool: faces whose nearest corner lies at or behind `depth_limit` (B, H, W) everywhere in their
    bounding box, found from the limit's maximum over tiles of `_TILE` pixels for boxes that span at most
    two tiles each way (larger ones are kept)."""
    tiles = torch.nn.functional.max_pool2d(depth_limit[:, None], _TILE, ceil_mode=True)[:, 0]  # (B, h, w)
    h, w = tiles.shape[1:]
    x0, x1, y0, y1 = (tris.bbox // _TILE).clamp(min=0)  # (faces not drawn may have any box: clamped all four)
    x0, x1, y0, y1 = x0.clamp(max=w - 1), x1.clamp(max=w - 1), y0.clamp(max=h - 1), y1.clamp(max=h - 1)
    base = (torch.arange(tris.bbox.shape[1], device=tiles.device) // max(num_faces, 1)) * (h * w)
    flat = tiles.reshape(-1)
    deepest = torch.maximum(
        torch.maximum(flat[base + y0 * w + x0], flat[base + y0 * w + x1]),
        torch.maximum(flat[base + y1 * w + x0], flat[base + y1 * w + x1]),
    )
    small = (x1 - x0 <= 1) & (y1 - y0 <= 1)
    return small & (tris.nearest.to(deepest.dtype) >= deepest)


def _rasterize_block(
    zbuf: Tensor,
    sl: slice,
    bw: int,
    bh: int,
    x0: Tensor,
    x1: Tensor,
    y0: Tensor,
    y1: Tensor,
    row0: Tensor,
    coef: Tensor,
    abs_det: Tensor,
    face_id: Tensor,
    near: float,
    W: int,
    H: int,
) -> None:
    """Test the triangles ``sl`` (bounding boxes at most bw x bh) against every pixel of their padded box
    and fold the hits into the z-buffer."""
    dev, dtype = zbuf.device, coef.dtype
    dx = torch.arange(bw, device=dev).view(1, 1, bw)
    dy = torch.arange(bh, device=dev).view(1, bh, 1)
    x = x0[sl].view(-1, 1, 1) + dx  # (T, 1, bw)
    y = y0[sl].view(-1, 1, 1) + dy  # (T, bh, 1)
    u, v = x.to(dtype) + 0.5, y.to(dtype) + 0.5
    c = coef[:, sl].view(9, -1, 1, 1)
    w0 = c[0] * u + c[3] * v + c[6]
    w1 = c[1] * u + c[4] * v + c[7]
    w2 = c[2] * u + c[5] * v + c[8]
    w_sum = w0 + w1 + w2
    depth = abs_det[sl].view(-1, 1, 1) / w_sum
    # Inside iff min(w0, w1, w2) >= 0 and depth >= near (and within the real box for padded buckets).
    # Float arithmetic only: bool masks and torch.where are slow on CPU.
    margin = torch.minimum(torch.minimum(torch.minimum(w0, w1), w2), depth - near)
    if bw > 4:  # padded bucket: drop the pixels beyond the real box
        margin = torch.minimum(margin, (x1[sl].view(-1, 1, 1) - x).to(dtype))
    if bh > 4:
        margin = torch.minimum(margin, (y1[sl].view(-1, 1, 1) - y).to(dtype))
    outside = margin.neg_().clamp_(0.0, 1.0).ceil_()  # 1.0 where rejected, else 0.0
    depth = torch.maximum(depth, outside.mul_(_FAR)).float()
    # Positive float32 bit patterns sort like the floats, so (depth bits << 32 | face) orders by depth,
    # then by face index.
    key = _depth_key(depth).bitwise_or_(face_id[sl].view(-1, 1, 1))
    pixel = (row0[sl].view(-1, 1, 1) + dy).clamp(max=zbuf.numel() // W - 1) * W + x.clamp(max=W - 1)
    zbuf.scatter_reduce_(0, pixel.reshape(-1), key.reshape(-1), reduce="amin", include_self=True)
