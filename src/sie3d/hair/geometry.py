"""A hair volume bound to the ICT scalp, shaped by the photo's hair outline (`HairMask`) seen through the fit.

The hair is one closed-topped shell around the head, described as a radial function on a grid of directions
from a centre inside the skull (`HairGrid`): polar angle from the crown (+y), azimuth around +y with 0 at the
nose (+z) and +90° on the subject's left (+x). Star-shaped by construction, so "inside the hair" is one
comparison per point, which is what keeps the face out and what the tests check.

1. **Scalp envelope.** Every vertex of the person's head, under the rest, the photo's expression and each of
   the 53 expressions at 1.0, is binned by direction; the envelope is the largest radius per direction,
   dilated by `envelope_dilation` cells (a flat triangle is never farther from the centre than its farthest
   corner, so the dilation covers triangles' interiors). The hair's inner clearance starts `gap_cm` above it.
2. **Where the photo shows hair** (`presence`). For every direction whose hair point faces the photo's camera
   (or lies on its silhouette), the hair mask at that point's projection: hair or not (near the silhouette, hair
   within `silhouette_slack_cm` inward or outward counts: the fitted head's width is not the photo's).
   Above the ears the two sides of the head hold hair alike: beyond `mirror_from_azimuth_deg` from the nose, hair
   the photo shows in the mirrored direction counts too (a side whose hair the mask lost against a dark backdrop
   is not bald). Directions the photo cannot see get a normalised-convolution continuation, broad around the
   head (azimuth) and narrow in elevation: the back of the head at a given height looks like the sides at that
   height. Far from anything seen, the scalp (above the ears) holds hair (`unseen_scalp_prior`: a bald head
   never gets here).
   Behind the ears the hair reaches at least the nape (`nape_azimuth_deg`): a back view shows hair down to the neck.
3. **How thick** (`thickness`). Where a direction lies on the photo's silhouette, the hair's reach along it
   is measured in the mask (how far out the mask goes from the scalp; not where it runs into the photo's border,
   which measures the frame) and continued elsewhere the same way, passing smoothly far from every measurement to
   the typical measured thickness (`unmeasured_thickness_prior`).
4. **Hanging hair.** Below `drop_polar_deg` (about ear height) the shell stops following the scalp and falls
   vertically (constant horizontal distance from the head's axis) -- long hair hangs, it does not wrap the
   neck -- and only behind `curtain_azimuth_deg` from the nose: long hair falls behind the shoulders' line,
   never in front of the face or the neck. How far it falls is read beside the neck, where the photo sees the
   hanging shell edge-on (`hanging_rows`): on each side, as far down as hair at least `min_hanging_width_cm`
   wide lies there, from the drop row down (gaps of `hanging_gap_rows` bridged; a lock or a ponytail's end
   brought forward is narrower); around the back the length passes smoothly to the shorter side's (curls beside
   one ear make no curtain across the back), and a side the photo does not see hangs like the other. It ends
   above the shoulders, where they would push it out. A hanging piece not joined to the cap (`detached_hair`)
   is left out, as is any piece apart from the rest (an island beside the face at the ear's height); above
   hanging hair the cap holds hair down to the drop row (hair reaches what hangs from it). Only such a curtain
   falls vertically: where nothing hangs (short hair, hair tied back), the hair below the drop row lies on the
   nape as the cap lies on the scalp, thinning towards its edge (`fall_rows`, `nape_thinning_rows`).
5. **The face is excluded by construction**: the directions of MediaPipe's face oval (its 3D landmarks on the
   fitted head under every expression), grown by `face_margin_deg`, carry no hair, whatever the mask says --
   except a **fringe**: above the brows at rest (by `fringe_clearance_deg`), the directions the photo shows
   covered by hair (the mask keeps a fringe, `sie3d.hair.mask`) hold hair of the minimum thickness lying on the
   forehead; nothing is continued there from elsewhere. Like all the hair it stays outside the scalp envelope of
   every expression: brows raised go under it, as under a real fringe.

`hair_geometry` returns a `HairMesh` in head space (cm): it moves rigidly with the head, and none of its
vertices depends on the expression. Bald (`HairMask.kind == "bald"`) or too little hair gives None.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache
from typing import TYPE_CHECKING

import cv2
import numpy as np
import torch

from sie3d.hair.config import HairConfig
from sie3d.head.fit import BROWS, FACE_OVAL, HeadFit
from sie3d.head.model import N_EXPRESSION, HeadModel

if TYPE_CHECKING:  # the mask (and its segmentation net) is not needed to load or draw a saved person's hair
    from sie3d.hair.mask import HairMask

__all__ = ["HairConfig", "HairGrid", "HairMesh", "blur_around", "detached_hair", "directions", "envelope_expressions",
           "face_landmarks_under_every_expression", "facing_camera", "filled_mask", "hair_geometry", "hanging_rows",
           "head_centre", "outward_normals", "scalp_envelope", "to_angles"]


@dataclass(frozen=True)
class HairGrid:
    """The hair as a radial function of direction from `centre`. Grid (rows, columns + 1): the last column
    repeats the first (azimuth -180° = +180°) so that the texture's seam is a plain edge."""

    centre: np.ndarray  # (3,) head space, cm
    polar: np.ndarray  # (R,) radians from +y
    azimuth: np.ndarray  # (C + 1,) radians, 0 = +z (the nose), +pi/2 = +x (the subject's left)
    scalp: np.ndarray  # (R, C + 1) cm: the scalp envelope (largest radius under any expression)
    radius: np.ndarray  # (R, C + 1) cm: the hair's outer surface
    presence: np.ndarray  # (R, C + 1) in [0, 1]: how much the direction holds hair (after the face exclusion)
    thickness: np.ndarray  # (R, C + 1) cm: hair thickness above the clearance (cap part)
    measured: np.ndarray  # (R, C + 1) bool: presence read from the photo (not continued)
    drop_polar: float  # radians: below this polar angle the shell hangs vertically where a curtain hangs

    def radius_at(self, dirs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(N, 3) unit directions -> (outer radius (N,), presence (N,)), bilinear in the grid; directions
        below the grid get presence 0."""
        return self.radius_at_angles(*to_angles(dirs))

    def radius_at_angles(self, polar: np.ndarray, azimuth: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """`radius_at` of the directions given by their angles (radians; broadcastable arrays, e.g. a column
        of polar angles and a row of azimuths for a whole texture)."""
        both = _bilinear(self, np.stack([self.radius, self.presence], -1), polar, azimuth)
        return both[..., 0], both[..., 1]


@dataclass(frozen=True)
class HairMesh:
    """The hair's outer surface as a triangle mesh in head space (cm), with UVs into the hair texture
    (u = azimuth from -180° to 180°, v = 1 at the crown down to 0 at the grid's lowest row: strands run
    along -v) and, per vertex, the presence."""

    verts: np.ndarray  # (N, 3) float32
    faces: np.ndarray  # (F, 3) int64, counter-clockwise seen from outside
    uvs: np.ndarray  # (N, 2) float32, v up
    presence: np.ndarray  # (N,) float32
    grid: HairGrid

    @property
    def lowest_y(self) -> float:
        """Lowest point (head-space y, cm) of the covered part of the hair."""
        used = np.unique(self.faces)
        return float(self.verts[used, 1].min())


def directions(polar: np.ndarray, azimuth: np.ndarray) -> np.ndarray:
    """(...,) polar, azimuth (radians) -> (..., 3) unit vectors (see the module doc for the convention)."""
    s = np.sin(polar)  # the sines and cosines before broadcasting: a grid's row and column, not every point
    return np.stack(np.broadcast_arrays(s * np.sin(azimuth), np.cos(polar), s * np.cos(azimuth)), -1)


def to_angles(dirs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(N, 3) vectors -> polar (N,), azimuth (N,) radians."""
    return _angles(dirs, np.sqrt(np.einsum("...i,...i->...", dirs, dirs)))


def _angles(dirs: np.ndarray, norm: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """`to_angles` of `dirs` (..., 3) whose lengths `norm` (...) are known."""
    return np.arccos(np.clip(dirs[..., 1] / (norm + 1e-12), -1, 1)), np.arctan2(dirs[..., 0], dirs[..., 2])


def head_centre(verts: np.ndarray, head: HeadModel) -> np.ndarray:
    """(3,) a point inside the skull: midway across and front to back of the head above the brows, at
    the eyes' height (ICT landmarks 19/24 = brows, 36/45 = eye corners)."""
    lm = head.topology.landmarks_68
    brow_y = float(verts[lm[[19, 24]], 1].mean())
    skin = np.unique(head.topology.faces[head.topology.faces_of("M_Face", "M_BackHead")])
    upper = verts[skin][verts[skin, 1] > brow_y]
    low, high = upper.min(0), upper.max(0)
    return np.array([(low[0] + high[0]) / 2, float(verts[lm[[36, 45]], 1].mean()), (low[2] + high[2]) / 2],
                    np.float32)  # fmt: skip


def _grid_angles(config: HairConfig) -> tuple[np.ndarray, np.ndarray]:
    polar = np.radians(config.max_polar_deg) * (np.arange(config.rows) + 0.5) / config.rows
    azimuth = -np.pi + 2 * np.pi * np.arange(config.columns + 1) / config.columns
    return polar, azimuth


def _cell_of(grid_polar: np.ndarray, grid_azimuth: np.ndarray, polar: np.ndarray, azimuth: np.ndarray
             ) -> tuple[np.ndarray, np.ndarray]:  # fmt: skip
    """Continuous (row, column) grid coordinates of directions."""
    step_p = grid_polar[1] - grid_polar[0]
    row = (polar - grid_polar[0]) / step_p
    col = (azimuth - grid_azimuth[0]) / (grid_azimuth[1] - grid_azimuth[0])
    return row, col


def _bilinear(grid: HairGrid, values: np.ndarray, polar: np.ndarray, azimuth: np.ndarray) -> np.ndarray:
    """`values` (R, C + 1, ...) at the directions of `polar` and `azimuth` (broadcastable, shape (...)),
    bilinearly: (..., ...); 0 below the grid."""
    rows, cols = values.shape[:2]
    row, col = _cell_of(grid.polar, grid.azimuth, polar, azimuth)
    outside = row > rows - 1
    row = np.clip(row, 0, rows - 1.001)
    col = np.mod(col, cols - 1)
    r0, c0 = np.floor(row).astype(int), np.floor(col).astype(int)
    extra = (Ellipsis,) + (None,) * (values.ndim - 2)
    fr, fc = (row - r0)[extra], (col - c0)[extra]
    top = values[r0, c0] * (1 - fc) + values[r0, c0 + 1] * fc
    bottom = values[r0 + 1, c0] * (1 - fc) + values[r0 + 1, c0 + 1] * fc
    return np.where(outside[extra], 0.0, top * (1 - fr) + bottom * fr)


def posed_heads(head: HeadModel, identity: np.ndarray, expressions: np.ndarray) -> np.ndarray:
    """(K, V, 3) the person's head under each of the (K, 53) expressions."""
    with torch.no_grad():
        ident = torch.from_numpy(np.asarray(identity, np.float32))[None].expand(len(expressions), -1)
        return head(ident, torch.from_numpy(np.asarray(expressions, np.float32))).numpy()


def face_landmarks_under_every_expression(fitter, fit: HeadFit) -> np.ndarray:
    """(K, 468, 3): MediaPipe's landmarks on the fitted head (head space) under each of
    `envelope_expressions(fit)` (index 1: the rest); `fitter` is the `HeadFitter`."""
    return np.stack([fitter.landmarks_3d(fit, e) for e in envelope_expressions(fit)])


def envelope_expressions(fit: HeadFit) -> np.ndarray:
    """(56, 53): zero, the rest, the photo's expression and each of the 53 shapes at 1.0 on its own."""
    return np.concatenate([np.zeros((1, N_EXPRESSION)), fit.rest_expression[None], fit.expression[None],
                           np.eye(N_EXPRESSION)]).astype(np.float32)  # fmt: skip


def envelope_points(head: HeadModel, fit: HeadFit) -> tuple[np.ndarray, np.ndarray]:
    """(M, 3) every distinct vertex position of the person's head under each of `envelope_expressions(fit)`
    and (V, 3) the head at rest. Built from the identity shape plus the expression deltas (the 53 unit
    expressions are the deltas themselves), not from 56 evaluations of the model; a vertex a unit expression
    does not move is where the identity shape has it, so only the (expression, vertex) pairs that move are
    added (about half of them)."""
    moving, basis, basis_moving, moved_vertex, moved_delta = _expression_moves(head)
    shape = posed_heads(head, fit.identity, np.zeros((1, N_EXPRESSION), np.float32))[0]
    rest = shape + np.tensordot(fit.rest_expression, basis, axes=1)
    photo = shape[moving] + np.tensordot(fit.expression, basis_moving, axes=1)
    points = [shape, rest[moving], photo, shape[moved_vertex] + moved_delta]
    return np.concatenate(points).astype(np.float32), rest.astype(np.float32)


@lru_cache(maxsize=2)
def _expression_moves(head: HeadModel) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The head model's expression deltas as `envelope_points` reads them (once per process): (V,) bool, the
    vertices some expression moves; (53, V, 3) the deltas and (53, V', 3) those of the moving vertices; and
    every (expression, vertex) pair that moves as its vertex (M,) and delta (M, 3)."""
    basis = head.expression_deltas().numpy()
    moves = (basis[..., 0] != 0) | (basis[..., 1] != 0) | (basis[..., 2] != 0)  # (53, V); 20x np.abs(...).max(2)
    expression, vertex = np.nonzero(moves)
    moving = moves.any(0)
    return moving, basis, basis[:, moving], vertex, basis[expression, vertex]


def scalp_envelope(verts: np.ndarray, centre: np.ndarray, polar: np.ndarray, azimuth: np.ndarray,
                   dilation: int) -> np.ndarray:  # fmt: skip
    """(R, C + 1) the largest radius of `verts` (..., 3) per direction cell, grown by `dilation` cells
    (wrapping around in azimuth); 0 where no vertex comes near."""
    offsets = verts.reshape(-1, 3) - centre
    radius = np.sqrt(np.einsum("ij,ij->i", offsets, offsets))
    p, a = _angles(offsets, radius)
    row, col = _cell_of(polar, azimuth, p, a)
    rows, columns = len(polar), len(azimuth) - 1
    r = np.clip(np.round(row).astype(int), 0, rows - 1)
    keep = row < rows - 0.5
    c = np.mod(np.round(col).astype(int), columns)
    env = np.zeros((rows, columns), np.float32)
    np.maximum.at(env, (r[keep], c[keep]), radius[keep])
    if dilation:
        # Grown by `dilation` cells of arc: in polar, then around each row by as many columns as that arc spans
        # there (near the crown a column is a sliver; at the pole row it is the whole row).
        env = cv2.dilate(env, np.ones((2 * dilation + 1, 1), np.uint8), borderType=cv2.BORDER_REPLICATE)
        step = polar[1] - polar[0]
        for row in range(rows):
            reach = int(min(columns // 2, math.ceil(dilation * step / max(math.sin(polar[row]), 1e-6)
                                                    / (azimuth[1] - azimuth[0]))))  # fmt: skip
            if reach:
                ring = np.concatenate([env[row, -reach:], env[row], env[row, :reach]])[None]
                env[row] = cv2.dilate(ring, np.ones((1, 2 * reach + 1), np.uint8))[0, reach:-reach]
    return np.concatenate([env, env[:, :1]], 1)


def blur_around(x: np.ndarray, sigma_rows: float, sigma_cols: float) -> np.ndarray:
    """(R, C) float32: `x` (R, C: rows down from the crown, columns around the head) Gaussian-blurred, wrapping
    around the head (columns) and reflected at the first and last rows; sigmas in cells, at least 0.3."""
    columns = x.shape[1]
    wide = np.concatenate([x, x, x], 1).astype(np.float32)
    out = cv2.GaussianBlur(wide, (0, 0), sigmaX=max(sigma_cols, 0.3), sigmaY=max(sigma_rows, 0.3),
                           borderType=cv2.BORDER_REFLECT)  # fmt: skip
    return out[:, columns : 2 * columns]


def _continue(values: np.ndarray, weights: np.ndarray, sigma_rows: float, sigma_cols: float,
              fallback: float | np.ndarray, prior_weight: float = 0.0) -> np.ndarray:  # fmt: skip
    """Normalised convolution on the (R, C + 1) grid (wrapping in azimuth): the weighted values continued
    smoothly where the weights are zero, kept where they are one. With `prior_weight`, the `fallback` (a value
    or an (R, C + 1) map) counts as that much weight everywhere, so it wins far from anything weighted;
    without, it stands only where nothing weighted reaches at all."""
    v, w = values[:, :-1] * weights[:, :-1], weights[:, :-1].astype(np.float32)
    prior = (np.broadcast_to(fallback, values.shape)[:, :-1]).astype(np.float32)
    num = blur_around(v, sigma_rows, sigma_cols) + prior_weight * prior
    den = blur_around(w, sigma_rows, sigma_cols) + prior_weight
    smooth = np.where(den > 1e-4, num / np.maximum(den, 1e-12), prior)
    out = np.where(w > 0, v / np.maximum(w, 1e-12) * w + smooth * (1 - w), smooth)
    return np.concatenate([out, out[:, :1]], 1)


def _face_exclusion(ovals_head: np.ndarray, centre: np.ndarray, polar: np.ndarray, azimuth: np.ndarray,
                    margin_deg: float) -> np.ndarray:  # fmt: skip
    """(R, C + 1) bool: directions inside any of the face ovals (K, N, 3) (3D landmarks, head space: the oval
    under each expression), grown by `margin_deg`."""
    scale = 8  # rasterise the polygons at 8x the grid for a clean edge
    rows, columns = len(polar), len(azimuth)
    canvas = np.zeros((rows * scale, columns * scale), np.uint8)
    for oval in ovals_head:
        p, a = to_angles(oval - centre)
        row, col = _cell_of(polar, azimuth, p, a)
        points = np.stack([(col + 0.5) * scale, (row + 0.5) * scale], -1)
        cv2.fillPoly(canvas, [np.round(points).astype(np.int32)], 1)
    inside = cv2.resize(canvas.astype(np.float32), (columns, rows), interpolation=cv2.INTER_AREA) > 0
    grow = margin_deg / np.degrees(azimuth[1] - azimuth[0])
    grow_rows = margin_deg / np.degrees(polar[1] - polar[0])
    kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * math.ceil(grow) + 1, 2 * math.ceil(grow_rows) + 1))
    return cv2.dilate(inside.astype(np.uint8), kernel) > 0


def _above_brows(brows_head: np.ndarray, centre: np.ndarray, polar: np.ndarray, azimuth: np.ndarray,
                 clearance_deg: float) -> np.ndarray:  # fmt: skip
    """(R, C + 1) bool: the forehead's directions higher than the brows `brows_head` (N, 3: points of their upper
    outline, head space) by `clearance_deg`, between the brows' outer ends (the temples' hair lies flat: it is
    painted on the skin, not a fringe)."""
    p, a = to_angles(brows_head - centre)
    order = np.argsort(a)
    line = np.interp(azimuth, a[order], p[order])  # (C + 1,) polar angle of the brows above each column
    between = (azimuth >= a.min()) & (azimuth <= a.max())
    return (polar[:, None] < line[None] - np.radians(clearance_deg)) & between[None]


def _surface(centre: np.ndarray, polar: np.ndarray, azimuth: np.ndarray, scalp: np.ndarray, thickness: np.ndarray,
             config: HairConfig, falls: np.ndarray | float = 1.0) -> np.ndarray:  # fmt: skip
    """(R, C + 1) outer radius: scalp + clearance + thickness above `drop_polar_deg`; below it, in the columns
    where hair `falls` (1; (C + 1,) or a number in [0, 1]), the shell falls vertically from the drop row (the
    same horizontal distance from the head's vertical axis), never closer to the centre than the scalp plus
    clearance and minimum thickness; where it does not (0), it keeps following the scalp as above -- except in
    directions where no part of the head lies (an empty envelope, below the neck's open end): there it falls."""
    cap = scalp + config.gap_cm + thickness
    drop = np.radians(config.drop_polar_deg)
    k = int(np.searchsorted(polar, drop))
    out = cap.copy()
    if k < len(polar):
        horizontal = cap[k - 1] * np.sin(polar[k - 1])  # (C + 1,) distance from the axis at the drop row
        floor = scalp[k:] + config.gap_cm + config.min_thickness_cm
        hanging = np.maximum(horizontal[None] / np.sin(polar[k:, None]), floor)
        # (following an empty envelope, the shell would pass through the centre of the head)
        falls = np.where(scalp[k:] > 0, falls, 1.0)
        out[k:] = hanging * falls + cap[k:] * (1.0 - falls)
    return out


def hair_geometry(head: HeadModel, fit: HeadFit, face_landmarks: np.ndarray, mask: HairMask,
                  config: HairConfig | None = None) -> HairMesh | None:  # fmt: skip
    """The person's hair volume (see the module doc), or None for a bald head or when the photo shows too
    little hair. `face_landmarks` (K, 468, 3): MediaPipe's landmarks on the fitted head (head space) under each
    of `envelope_expressions(fit)` (`face_landmarks_under_every_expression`); `mask`: the photo's `HairMask`."""
    config = config or HairConfig()
    if mask.kind == "bald" or mask.kind == "unknown" or mask.mask.max() < config.min_presence:
        return None
    polar, azimuth = _grid_angles(config)
    poses, rest = envelope_points(head, fit)
    centre = head_centre(rest, head)
    scalp = scalp_envelope(poses, centre, polar, azimuth, config.envelope_dilation)
    dirs = directions(polar[:, None], azimuth[None])  # (R, C + 1, 3)

    # The photo's camera in head space; which hair points it sees (first guess: minimum thickness).
    camera_head = -fit.rotation.T @ fit.translation
    face_height = float(np.ptp(fit.project(face_landmarks[1, [10, 152]])[:, 1]))
    hair_mask = filled_mask(mask.mask, (config.max_hole * face_height) ** 2)
    height, width = hair_mask.shape

    def mask_at(points: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(..., 3) head-space points -> (mask value, inside the photo) at their projections."""
        px = fit.project(points.reshape(-1, 3).astype(np.float32))
        inside = (px[:, 0] >= 0) & (px[:, 0] < width) & (px[:, 1] >= 0) & (px[:, 1] < height)
        x = np.clip(px[:, 0], 0, width - 1).astype(int)
        y = np.clip(px[:, 1], 0, height - 1).astype(int)
        return hair_mask[y, x].reshape(points.shape[:-1]), inside.reshape(points.shape[:-1])

    first = np.full(scalp.shape, config.min_thickness_cm, np.float32)
    radius = _surface(centre, polar, azimuth, scalp, first, config)
    points = centre + dirs * radius[..., None]
    normals = outward_normals(dirs, polar[:, None], np.radians(config.drop_polar_deg))
    facing = facing_camera(points, normals, camera_head)
    value, inside = mask_at(centre + dirs * (scalp + config.gap_cm)[..., None])  # hair at the scalp's point?
    seen = (facing > config.facing) & inside
    presence_seen = (value >= 0.5).astype(np.float32)

    # Reach on the silhouette: how far out along the direction the mask goes (cap part only).
    drop_row = int(np.searchsorted(polar, np.radians(config.drop_polar_deg)))
    steps = np.linspace(0.0, config.max_thickness_cm, config.reach_steps)
    base = scalp + config.gap_cm
    along = centre + dirs[..., None, :] * (base[..., None] + steps)[..., None]  # (R, C + 1, S, 3)
    inside_along, in_photo = mask_at(along)
    hair_along = (inside_along >= 0.5) & in_photo
    run = np.cumprod(hair_along, axis=-1)  # mask unbroken from the scalp outward
    reach = steps[np.maximum(run.sum(-1) - 1, 0)]
    near_silhouette = seen & (np.abs(facing) < config.silhouette)
    near_silhouette[drop_row:] = False
    # Hair unbroken up to the photo's border measures the frame, not the hair's outline (a crown cut off by a
    # close crop stood up as a flat-topped block, its top the frame's edge): such a reach is not measured there.
    to_border = (~in_photo & np.concatenate([np.ones_like(run[..., :1]), run[..., :-1]], -1).astype(bool)).any(-1)
    on_silhouette = near_silhouette & (run[..., 0] > 0) & ~to_border
    # Near the silhouette a small misfit of the head's width moves the scalp point's projection across the
    # photo's head outline: onto the background beside a buzz cut (a bare wedge through the hair), or onto the
    # face's edge inside the hair at the temples. There, hair within `silhouette_slack_cm` inward or outward of the
    # scalp point is this direction's hair.
    # (Outward, the samples of the reach above; inward, the same distances.)
    slack = steps <= config.silhouette_slack_cm
    inward, inward_in_photo = mask_at(centre + dirs[..., None, :] * (base[..., None] - steps[slack][1:])[..., None])
    hair_near = hair_along[..., slack].any(-1) | ((inward >= 0.5) & inward_in_photo).any(-1)
    presence_seen = np.maximum(presence_seen, near_silhouette & hair_near)
    # The two sides of the head hold hair alike above the ears: where one side shows hair and the mirrored
    # direction on the other does not, or is not seen, the photo lost it there -- dark hair against a dark
    # backdrop, a side turned away -- and that side came out bald with a strip of hair across it. (A head shaved
    # on one side only would get hair there; the front hairline, within `mirror_from_azimuth_deg` of the nose,
    # keeps its own shape.) Column j mirrors column C - j: the grid's azimuths are symmetric about the nose.
    mirrored = (presence_seen * seen)[:, ::-1]
    sides = (np.abs(np.degrees(azimuth)) >= config.mirror_from_azimuth_deg)[None] & (
        np.arange(config.rows) < drop_row)[:, None]
    # (what the continuation keeps: the photo's view and its mirror; a fringe is the photo's own, below)
    both_sides = np.where(sides, np.maximum(presence_seen, mirrored), presence_seen)
    measured = seen | (sides & (mirrored > 0))

    sigma_cols = config.spread_azimuth_deg / np.degrees(azimuth[1] - azimuth[0])
    sigma_rows = config.spread_polar_deg / np.degrees(polar[1] - polar[0])
    # Far from anything the photo shows (the back of the head, a crown cut off by the frame), the scalp of a
    # person with hair is taken to hold hair; nothing is assumed to hang below it.
    scalp_prior = (np.arange(config.rows) < drop_row)[:, None].astype(np.float32)  # (R, 1): hair above the ears
    presence = _continue(both_sides, measured.astype(np.float32), sigma_rows, sigma_cols, scalp_prior,
                         config.unseen_scalp_prior)  # fmt: skip
    # Continued values hover around one half far from any seen direction: sharpened, the soft edge (the strand
    # comb of the texture's alpha) stays a narrow rim instead of a wide zone of see-through streaks.
    presence = np.clip((presence - config.min_presence) * config.presence_gain + 0.5, 0.0, 1.0)
    measured_reach = reach[on_silhouette]
    typical = float(np.median(measured_reach)) if measured_reach.size else config.min_thickness_cm
    thickness = _continue(reach.astype(np.float32), on_silhouette.astype(np.float32), sigma_rows, sigma_cols, typical,
                          config.unmeasured_thickness_prior)  # fmt: skip
    thickness = np.clip(thickness, config.min_thickness_cm, config.max_thickness_cm)

    # Behind the ears, hair reaches at least the nape.
    lm = head.topology.landmarks_68
    nape_y = float(rest[lm[[2, 14]], 1].mean()) - config.nape_drop_cm
    radius = _surface(centre, polar, azimuth, scalp, thickness, config)
    behind = np.clip((np.abs(np.degrees(azimuth)) - config.nape_azimuth_deg + 15.0) / 30.0, 0, 1)[None]
    # ... lower at the middle of the back than beside the ears: a nape line curves down, it is not level.
    middle = np.clip((np.abs(np.degrees(azimuth)) - config.nape_azimuth_deg) / (180.0 - config.nape_azimuth_deg),
                     0, 1)[None]  # fmt: skip
    nape_y = nape_y - config.nape_dip_cm * np.sin(middle * np.pi / 2) ** 2
    # Long hair hangs as a curtain as far down as the photo shows it beside the neck (`hanging_rows`).
    # It ends above the shoulders where they come out under it (the shell would be pushed out over them).
    horizontal = radius * np.sin(polar)[:, None]
    body = horizontal > horizontal[drop_row - 1][None] + 0.05
    body[:drop_row] = False
    hanging_shell = centre + dirs[drop_row:] * radius[drop_row:, :, None]
    hang = hanging_rows(hanging_shell, dirs[drop_row:], azimuth, camera_head, mask_at, config)
    # (two rows above the body: the row below the hair's last, the one-cell soft edge `_mesh` draws, is not pushed)
    hang = np.minimum(hang, np.where(body.any(0), np.maximum(body.argmax(0) - drop_row - 2, 0), config.rows))
    presence[drop_row:] = (np.arange(config.rows - drop_row)[:, None] < hang[None]).astype(np.float32)
    # Only a curtain falls vertically. Where nothing hangs (short hair, hair tied back), the hair below the drop row
    # lies on the nape as it lies on the scalp above, thinning to its edge: hanging straight down from the back of
    # the skull, it stood off the neck as a helmet's rim. (From a column where hair hangs to one where none does,
    # the shell passes from one to the other over a few columns.)
    falls = blur_around(np.clip(hang[None, :-1] / config.fall_rows, 0.0, 1.0), 0.0, config.fall_blend_columns)[0]
    falls = np.clip(np.concatenate([falls, falls[:1]]), 0.0, 1.0)  # (the blur of ones is 1 + 1e-7)
    below_drop = np.arange(1, config.rows - drop_row + 1)[:, None]
    thinning = np.clip(1.0 - below_drop / config.nape_thinning_rows, 0.0, 1.0)  # (hair on the nape is short)
    lying = config.min_thickness_cm + (thickness[drop_row - 1] - config.min_thickness_cm) * thinning
    # (below the drop row a curtain keeps the drop row's thickness; hair lying on the nape thins)
    thickness[drop_row:] = thickness[drop_row - 1] * falls + lying * (1.0 - falls)
    y = centre[1] + dirs[..., 1] * _surface(centre, polar, azimuth, scalp, thickness, config, falls)
    crown_has_hair = float(presence[: max(1, config.rows // 6)].mean()) >= config.min_presence
    if crown_has_hair:
        presence = np.maximum(presence, behind * (y >= nape_y))

    # Exclusions by construction: the face oval but a fringe the photo shows; below the drop row, in front of
    # the curtain azimuth.
    face = _face_exclusion(face_landmarks[:, list(FACE_OVAL)], centre, polar, azimuth, config.face_margin_deg)
    fringe = face & _above_brows(face_landmarks[1, list(BROWS)], centre, polar, azimuth, config.fringe_clearance_deg)
    front = np.abs(np.degrees(azimuth))[None] < config.curtain_azimuth_deg
    below = (np.arange(config.rows) >= drop_row)[:, None]
    presence = np.where(fringe, presence_seen * seen, presence)
    face &= ~fringe
    presence = np.where(face | (front & below), 0.0, np.clip(presence, 0.0, 1.0)).astype(np.float32)
    thickness[fringe] = config.min_thickness_cm  # a fringe lies on the forehead
    # Hair hangs from the cap: a hanging piece not joined to it (a ponytail's end or a lock over the shoulder,
    # seen beside the neck below a gap) floated in the air as a streaked ribbon.
    hanging = presence[drop_row:, :-1]  # a view
    hanging[detached_hair(presence[:, :-1] >= config.min_presence, drop_row)[drop_row:]] = 0.0
    # ... and it reaches the hanging part: in a column where hair hangs from the drop row, the cap holds hair from
    # its first covered row down to the drop row. (An uncertain band at the ear's height, where the mask meets
    # the face oval's margin, left a window through long hair beside the ear.)
    hangs = presence[drop_row] >= config.min_presence
    cap = presence[:drop_row] >= config.min_presence
    first = np.where(cap.any(0), cap.argmax(0), drop_row)
    joined = hangs[None] & (np.arange(drop_row)[:, None] >= first[None]) & ~face[:drop_row]
    presence[:drop_row] = np.where(joined, np.maximum(presence[:drop_row], 1.0), presence[:drop_row])
    # One piece of hair: an island apart from the rest (hair the mask shows beside the face at the ear's height,
    # cut off from the cap by the face oval's margin) stood off the head as a dark block in front of the ear.
    presence[:, :-1][detached_hair(presence[:, :-1] >= config.min_presence)] = 0.0
    presence[:, -1] = presence[:, 0]

    # The hair's thickness tapers to the clearance at its edge (the hairline, the nape): a volume's rim
    # standing off the skin is what makes a helmet.
    inside_cells = (presence >= config.min_presence).astype(np.uint8)[:, :-1]
    wide = np.concatenate([inside_cells] * 3, 1)
    distance = cv2.distanceTransform(np.pad(wide, 1, constant_values=1), cv2.DIST_L2, 3)[1:-1, 1:-1]
    distance = distance[:, inside_cells.shape[1] : 2 * inside_cells.shape[1]]
    distance = np.concatenate([distance, distance[:, :1]], 1)
    taper = np.clip(distance / config.edge_taper_cells, 0.0, 1.0) ** 0.5
    thickness = thickness * taper
    # (a curtain keeps its width down to its end; on the nape the thickness tapers like the cap's)
    thickness[drop_row:] = thickness[drop_row - 1] * falls + thickness[drop_row:] * (1.0 - falls)
    radius = _surface(centre, polar, azimuth, scalp, thickness, config, falls)

    grid = HairGrid(centre, polar, azimuth, scalp, radius.astype(np.float32), presence, thickness, seen,
                    float(np.radians(config.drop_polar_deg)))
    covered = presence >= config.min_presence
    if covered.mean() < config.min_hair_fraction:
        return None
    return _mesh(grid, config)


def facing_camera(points: np.ndarray, normals: np.ndarray, camera: np.ndarray) -> np.ndarray:
    """(...,) cosine between the normals (..., 3) at `points` (..., 3) and the direction to `camera` (3,)."""
    to_camera = camera - points
    return (normals * to_camera).sum(-1) / np.linalg.norm(to_camera, axis=-1)


def hanging_rows(points: np.ndarray, dirs: np.ndarray, azimuth: np.ndarray, camera: np.ndarray,
                 mask_at: Callable[[np.ndarray], tuple[np.ndarray, np.ndarray]], config: HairConfig
                 ) -> np.ndarray:  # fmt: skip
    """(C + 1,) how many rows the hair hangs below the drop row in each column. `points` (H, C + 1, 3): the
    hanging shell from the drop row down (head space), `dirs` their directions, `azimuth` (C + 1,) radians;
    `mask_at`: points -> (hair mask, inside the photo).

    On each side of the head, where the photo sees the shell edge-on (beside the neck): as far down as hair at
    least `min_hanging_width_cm` wide (an unbroken run along the horizontal outward normal, from
    `silhouette_slack_cm` inside the shell) lies beside it, from the first row seen on, bridging up to
    `hanging_gap_rows` rows without; a side seen nowhere there hangs as the other. Around the back each side's
    length passes smoothly to the shorter one's (curls beside one ear make no curtain across the back). Columns in
    front of `curtain_azimuth_deg` get a length too: `hair_geometry`'s exclusions keep hair out of them."""
    rows = points.shape[0]
    degrees = np.degrees(azimuth)
    normals = outward_normals(dirs, np.full(dirs.shape[:2], np.pi), 0.0)  # horizontal
    step = config.max_thickness_cm / (config.reach_steps - 1)
    offsets = np.arange(-config.silhouette_slack_cm, config.max_thickness_cm + step / 2, step)
    value, inside = mask_at(points[..., None, :] + normals[..., None, :] * offsets[:, None])
    hair = (value >= 0.5) & inside
    # the longest unbroken run of hair samples along each ray
    run = np.zeros(hair.shape[:-1], np.int64)
    longest = np.zeros_like(run)
    for k in range(len(offsets)):
        run = np.where(hair[..., k], run + 1, 0)
        longest = np.maximum(longest, run)
    wide = longest * step >= config.min_hanging_width_cm
    at_shell = int(np.argmin(np.abs(offsets)))
    # Where the photo sees the shell edge-on, whatever the azimuth (turned away, the far side's edge lies in front
    # of the neck): the hair beside it in the photo is what hangs on that side.
    band = (np.abs(facing_camera(points, normals, camera)) < config.silhouette) & inside[..., at_shell]
    length = {}
    for name, on_side in (("left", degrees > 0), ("right", degrees < 0)):
        seen = band[:, on_side].any(1)
        hanging = (wide & band)[:, on_side].any(1)
        if not seen[: config.hanging_gap_rows + 1].any():
            continue  # this side is not seen edge-on just below the drop row
        reach, gap = 0, 0
        for row in range(int(np.argmax(seen)), rows):
            if not seen[row]:
                break  # below, the photo does not show it: as long as it was seen
            if hanging[row]:
                reach, gap = row + 1, 0
            else:
                gap += 1
                if gap > config.hanging_gap_rows:
                    break
        length[name] = reach
    if not length:
        return np.zeros(len(azimuth), np.int64)
    left, right = length.get("left", length.get("right")), length.get("right", length.get("left"))
    towards_back = np.clip((np.abs(degrees) - 90.0) / 90.0, 0.0, 1.0)  # 0 at either side, 1 at the middle of the back
    blend = towards_back**2 * (3 - 2 * towards_back)
    own = np.where(degrees >= 0, left, right)
    return np.round(own * (1 - blend) + min(left, right) * blend).astype(np.int64)


def detached_hair(covered: np.ndarray, drop_row: int | None = None, reach: int = 2) -> np.ndarray:
    """(R, C) bool: what to clear of `covered` (R, C: rows down from the crown, columns around the head,
    wrapping) -- its pieces not joined (8-neighbours) to a covered cell above `drop_row` (None: to its largest
    piece), whole, and the cells within `reach` of them but not of a joined piece (their soft edge)."""
    columns = covered.shape[1]
    wide = np.concatenate([covered] * 3, 1).astype(np.uint8)  # a piece across the seam stays one
    _, labels = cv2.connectedComponents(wide, connectivity=8)
    if drop_row is None:
        middle = labels[:, columns : 2 * columns]
        largest = middle == np.bincount(middle[covered]).argmax() if covered.any() else np.zeros_like(covered)
        # a piece that does not cross the seam has another label in each copy: all three are the largest
        anchors = np.unique(np.concatenate([labels[:, k * columns : (k + 1) * columns][largest] for k in range(3)]))
    else:
        anchors = np.unique(labels[:drop_row][wide[:drop_row] > 0])
    joined = np.isin(labels, anchors) & (wide > 0)
    kernel = np.ones((2 * reach + 1, 2 * reach + 1), np.uint8)
    near_joined, near_detached = (cv2.dilate(m.astype(np.uint8), kernel) > 0 for m in (joined, (wide > 0) & ~joined))
    return (((wide > 0) & ~joined) | (near_detached & ~near_joined))[:, columns : 2 * columns]


def filled_mask(mask: np.ndarray, max_hole_px2: float) -> np.ndarray:
    """(H, W) float32: the hair mask made binary (>= 0.5) with its small holes (highlights on hair read as
    not-hair) filled; holes larger than `max_hole_px2` square pixels (the face inside an up-do) stay."""
    binary = (mask >= 0.5).astype(np.uint8)
    contours, hierarchy = cv2.findContours(binary, cv2.RETR_CCOMP, cv2.CHAIN_APPROX_SIMPLE)
    if hierarchy is not None:
        holes = [c for c, h in zip(contours, hierarchy[0], strict=True)
                 if h[3] >= 0 and cv2.contourArea(c) < max_hole_px2]
        cv2.drawContours(binary, holes, -1, 1, thickness=cv2.FILLED)
    return binary.astype(np.float32)


def outward_normals(dirs: np.ndarray, polar: np.ndarray, drop_polar: float) -> np.ndarray:
    """(..., 3) approximate outward normals of the shell in directions `dirs` (polar angles `polar`, radians,
    broadcastable): radial on the cap, horizontal where it hangs (below `drop_polar`)."""
    dirs, polar = np.broadcast_arrays(dirs, np.asarray(polar)[..., None])
    polar = polar[..., 0]
    normals = dirs.copy()
    hanging = polar >= drop_polar
    flat = dirs[hanging].copy()
    flat[..., 1] = 0.0
    normals[hanging] = flat / (np.linalg.norm(flat, axis=-1, keepdims=True) + 1e-9)
    return normals


def _mesh(grid: HairGrid, config: HairConfig) -> HairMesh:
    """Triangles of every grid cell with a corner holding hair, plus a fan closing the crown (and only their
    vertices)."""
    rows, cols = grid.radius.shape
    verts = grid.centre + directions(grid.polar[:, None], grid.azimuth[None]) * grid.radius[..., None]
    u = np.linspace(0.0, 1.0, cols)
    v = 1.0 - (np.arange(rows) + 0.5) / rows
    uvs = np.stack(np.broadcast_arrays(u[None], v[:, None]), -1).reshape(-1, 2)
    ids = np.arange(rows * cols).reshape(rows, cols)
    hair = grid.presence >= config.min_presence
    near = cv2.dilate(hair.astype(np.uint8), np.ones((3, 3), np.uint8)) > 0  # one ring for the soft edge
    cell = near[:-1, :-1] | near[1:, :-1] | near[:-1, 1:] | near[1:, 1:]
    r, c = np.nonzero(cell)
    a, b, d, e = ids[r, c], ids[r, c + 1], ids[r + 1, c], ids[r + 1, c + 1]
    # Seen from outside, rows go down (+polar) and columns around to the subject's left (+azimuth): (a, d, b)
    # and (b, d, e) are counter-clockwise.
    faces = np.concatenate([np.stack([a, d, b], 1), np.stack([b, d, e], 1)])
    # The crown: a pole vertex joined to the first row.
    pole = len(verts.reshape(-1, 3))
    top = np.nonzero(near[0, :-1])[0]
    fan = np.stack([np.full(len(top), pole), ids[0, top], ids[0, top + 1]], 1)
    pole_radius = float(grid.radius[0].mean())
    all_verts = np.concatenate([verts.reshape(-1, 3), (grid.centre + np.array([0, pole_radius, 0]))[None]])
    all_uvs = np.concatenate([uvs, [[0.5, 1.0]]])
    presence = np.concatenate([grid.presence.reshape(-1), [float(grid.presence[0].mean())]])
    faces = np.concatenate([faces, fan])
    used, faces = np.unique(faces, return_inverse=True)  # only the vertices of these triangles, renumbered
    return HairMesh(all_verts[used].astype(np.float32), faces.reshape(-1, 3).astype(np.int64),
                    all_uvs[used].astype(np.float32), presence[used].astype(np.float32), grid)  # fmt: skip
