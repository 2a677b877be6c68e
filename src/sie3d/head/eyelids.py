"""Closed lids for every identity: the person's own eyeBlink shapes.

ICT's ``eyeBlink_L/R`` are one vertex offset for every identity, made on the mean head. On a person whose
identity opens the eye taller or sets the eyeball further forward, the full blink stops short of the lower
lid and the cornea pokes through the closed upper lid: at rest + full blink, 7 of the 24 London people of
the shared photos left more than 400 eyeball pixels visible in a 512-px frontal preview
(`benchmarks/closed_eyes.py`). `EyelidRig.shapes` computes, once per identity, what is added to each
eyeBlink shape:

1. **The lid goes on to the lower lid.** Along the lid margin (the eyelash roots), the upper margin's gap
   to the lower margin at full blink is measured for the person and for the mean head; the upper lid goes
   on along ICT's own path (a gain per column of the margin, interpolated across the lid) until the
   person's gap is the mean head's. Narrower eyes get a negative gain: the lid stops where it meets.
2. **The lid skin clears the eyeball.** Where the outer lid skin of the closed lid lies inside the eyeball
   (cornea included) or within `LidConfig.clearance` of it, it is pushed out radially from the eyeball's
   centre; the push spreads to the neighbouring lid vertices (relaxed: never less than a vertex needs, and
   no step between neighbours), so the closed lid shows the cornea's bulge as a real one does. A blend
   shape moves the lid along a straight line, which cuts through the round eyeball half-way (1.5 mm deep
   at half a blink on a wide-eyed person): the same clearing at blink weights 0.25, 0.5 and 0.75 gives
   in-between shapes, blended in by tent weights.
3. **Everything riding on the lid follows it.** The correction moves the eyelash cards with their roots (a
   translation, not ICT's rotation scaled: scaled, the upper lashes crossed the lower ones), the lid's inner
   surface, its shade shell and the tear line with the nearest lid-skin vertex. And the lashes turn down
   only half as far as ICT's blink turns them (`LidConfig.lash_swing`): turned all the way, the upper cards
   hung face-on in front of a half-closed eye as an opaque black band, and crossed the lower lashes in a
   bow-tie on the shut one; half-way, a half-closed eye shows its iris under a fringe and a shut one a
   curved lash line.

The full blink's correction is linear in the weight: it is the exported GLB's eyeBlink targets, so a
closed eye in an engine is the closed eye of the previews. glTF has no in-between shapes: they are exported as
morph targets of their own (`sie3d.avatar.lid_target_names`), which the GLB's default weights and sie3d's web
page drive by the tent weights; an engine that drives only the ARKit names moves the lid along the full-blink
target alone. It depends on the identity only (not on the expression the blink is added to) and
carries no gradient to the identity: the fit, which moves the identity, reads landmarks through ICT's plain
shapes, then chooses each eye's blink weight again for the person's own (`HeadFitter.blinks_for_own_lids`).
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from functools import cached_property

import numpy as np
import torch

from sie3d.assets.ict import REGIONS
from sie3d.head.names import ICT_NAMES

__all__ = ["INBETWEENS", "LidConfig", "LidShapes", "EyelidRig", "inbetween_weights"]

FACE_END = REGIONS["face"][1]  # vertices [0, FACE_END) are the face's skin
ROOT_DISTANCE = 0.01  # cm: an eyelash vertex this close to a skin vertex is a root (they coincide in ICT)
INBETWEENS = (0.25, 0.5, 0.75)  # blink weights with their own clearing (in-between shapes)


@dataclass(frozen=True)
class LidConfig:
    clearance: float = 0.07  # cm the closed lid's outer skin keeps from the eyeball (the lid's thickness)
    cone_degrees: float = 6.0  # the eyeball's radius under a lid vertex: its largest within this cone
    outer_cos: float = 0.3  # lid skin whose normal faces away from the eyeball centre this much is outer
    moved: float = 0.01  # cm: the vertices ICT's blink moves more than this are the lid (corrected)
    relax_steps: int = 60  # spreading of the push over the lid, to zero where the lid meets still skin
    gain_range: tuple[float, float] = (-0.5, 1.0)  # the per-column gain on ICT's blink, clipped
    lash_swing: float = 0.5  # the share of ICT's turn of the lashes kept (the rest: they move with their root)


@dataclass(frozen=True)
class LidShapes:
    """One person's eyeBlink_L/R corrections (cm, head space): at blink weights w = (w_L, w_R) each eye adds
    ``w * full + sum_j hat_j(w) * inbetween[j]`` (`inbetween_weights`)."""

    full: np.ndarray  # (2, V, 3) float32: linear in the weight; the full blink's (the exported morph targets)
    inbetween: np.ndarray  # (2, len(INBETWEENS), V, 3) float32: 0 at weights 0 and 1


def inbetween_weights(blink: torch.Tensor) -> torch.Tensor:
    """(..., len(INBETWEENS)) the tent weight of each in-between shape at blink weights `blink` (...)."""
    knots = torch.tensor(INBETWEENS, dtype=blink.dtype, device=blink.device)
    step = INBETWEENS[0]
    return (1.0 - (blink[..., None] - knots).abs() / step).clamp(min=0.0)


@dataclass(frozen=True)
class _Eye:
    """One eye's fixed topology (vertex ids into the head)."""

    blink: int  # index of its eyeBlink shape
    upper: np.ndarray  # (U,) upper-lid margin skin vertices, by x
    lower: np.ndarray  # (L,) lower-lid margin skin vertices, by x
    skin: np.ndarray  # (S,) skin vertices the blink moves
    edges: np.ndarray  # (E, 2) positions into `skin`: the mesh edges between them
    still: np.ndarray  # (S,) bool: next to skin the blink leaves still
    lid_verts: np.ndarray  # (W,) the vertices of the triangles touching `skin` (for its normals) ...
    lid_faces: np.ndarray  # (T, 3) ... and those triangles, as positions into `lid_verts`
    skin_in_lid: np.ndarray  # (S,) positions of `skin` in `lid_verts`
    followers: np.ndarray  # (N,) other vertices the blink moves: the lashes first, then inner lid and shells
    leaders: np.ndarray  # (N,) the skin vertex each follows (a lash: the root of its card nearest to it)
    n_lashes: int  # how many of `followers` are eyelash vertices
    eyeball: tuple[int, int]  # vertex range


class EyelidRig:
    """The per-identity eyeBlink corrections of one head model (`HeadModel.lids`)."""

    def __init__(self, neutral: np.ndarray, identity_basis: np.ndarray, deltas: np.ndarray, faces: np.ndarray,
                 lash_cards: np.ndarray, config: LidConfig = LidConfig()) -> None:  # fmt: skip
        """`neutral` (V, 3) cm, `identity_basis` (100, V*3), `deltas` (53, V, 3) the rig's expression offsets,
        `faces` (F, 3), `lash_cards` (V,) the eyelash card of each vertex (-1: none)."""
        self.neutral = neutral.astype(np.float64)
        self.identity_basis = identity_basis
        self.deltas = deltas
        self.faces = faces
        self.lash_cards = lash_cards
        self.config = config
        self._cache: dict[bytes, LidShapes] = {}
        self._lock = threading.Lock()  # the writer thread and the renders may pose the same person at once

    @cached_property
    def eyes(self) -> tuple[_Eye, _Eye]:
        return self._eye("L"), self._eye("R")

    def _eye(self, side: str) -> _Eye:
        blink = ICT_NAMES.index(f"eyeBlink_{side}")
        delta = self.deltas[blink].astype(np.float64)
        moved = np.flatnonzero(np.abs(delta).max(1) > self.config.moved)
        skin, other = moved[moved < FACE_END], moved[moved >= FACE_END]
        closed = self.neutral + delta
        # This eye's lash cards: those the blink moves. Their roots sit on skin vertices: the lid margins.
        cards = np.setdiff1d(np.unique(self.lash_cards[moved]), [-1])
        lashes = np.flatnonzero(np.isin(self.lash_cards, cards))
        nearest, distance = _nearest(self.neutral[lashes], self.neutral[skin])
        is_root = distance < ROOT_DISTANCE
        root_skin = skin[nearest]
        margin = np.unique(root_skin[is_root])
        drop = -delta[margin, 1]  # how far the blink lowers each margin vertex
        upper, lower = margin[drop > 0.25 * drop.max()], margin[drop <= 0.25 * drop.max()]
        by_x = lambda ids: ids[np.argsort(self.neutral[ids, 0])]  # noqa: E731
        # Leaders: a lash vertex follows the root of its card nearest to it along the lid (x); every other
        # moved vertex the skin vertex nearest to it on the mean head's closed lid.
        lash_leader = np.empty(len(lashes), np.int64)
        for card in cards:
            members = np.flatnonzero(self.lash_cards[lashes] == card)
            roots = members[is_root[members]]
            along = np.abs(self.neutral[lashes[members], 0][:, None] - self.neutral[lashes[roots], 0][None])
            lash_leader[members] = root_skin[roots[along.argmin(1)]]
        rest = np.setdiff1d(other, lashes)
        followers = np.concatenate([lashes, rest])
        leaders = np.concatenate([lash_leader, skin[_nearest(closed[rest], closed[skin])[0]]])
        position = np.full(len(self.neutral), -1)
        position[skin] = np.arange(len(skin))
        sides = np.concatenate([self.faces[:, [0, 1]], self.faces[:, [1, 2]], self.faces[:, [2, 0]]])
        still = np.zeros(len(skin), bool)  # lid vertices next to skin the blink leaves still: no spreading there
        here, there = position[sides[:, 0]], sides[:, 1]
        still[here[(here >= 0) & (there < FACE_END) & (position[there] < 0)]] = True
        sides = position[sides]
        sides = np.sort(sides[(sides >= 0).all(1)], 1)
        edges = np.unique(sides[:, 0] * len(skin) + sides[:, 1])  # each edge once (no axis=: numpy.ma)
        edges = np.stack([edges // len(skin), edges % len(skin)], 1)
        lid_verts, lid_faces = np.unique(self.faces[(position[self.faces] >= 0).any(1)], return_inverse=True)
        lid_faces = lid_faces.reshape(-1, 3)
        eyeball = REGIONS[f"eyeball_{'left' if side == 'L' else 'right'}"][:2]
        return _Eye(blink, by_x(upper), by_x(lower), skin, edges, still, lid_verts, lid_faces,
                    np.searchsorted(lid_verts, skin), followers, leaders, len(lashes), eyeball)  # fmt: skip

    def shapes(self, identity: np.ndarray) -> LidShapes:
        """The corrections of the person with `identity` (100,) (cached per identity)."""
        key = np.asarray(identity, np.float32).tobytes()
        with self._lock:
            if key not in self._cache:
                if len(self._cache) >= 8:
                    self._cache.pop(next(iter(self._cache)))
                self._cache[key] = self._shapes(np.asarray(identity, np.float64))
            return self._cache[key]

    def _shapes(self, identity: np.ndarray) -> LidShapes:
        config = self.config
        shape = self.neutral + (identity.astype(np.float32) @ self.identity_basis).reshape(-1, 3)
        full = np.zeros((2, *shape.shape))
        inbetween = np.zeros((2, len(INBETWEENS), *shape.shape))
        for k, eye in enumerate(self.eyes):
            delta = self.deltas[eye.blink].astype(np.float64)
            # 1. On to the lower lid: the gain per column that gives the person the mean head's gap.
            residual = self._gap(shape, delta, eye) - self._gap(self.neutral, delta, eye)
            gain = np.clip(residual / -delta[eye.upper, 1], *config.gain_range)
            full[k, eye.skin] = delta[eye.skin] * np.interp(self.neutral[eye.skin, 0], self.neutral[eye.upper, 0],
                                                            gain)[:, None]  # fmt: skip
            # 2. Clear of the eyeball: at the full blink (linear), then what the straight path still lacks on
            # the way (the lid moves along a chord, the eyeball is round).
            full[k, eye.skin] += self._clearing(shape + delta + full[k], eye)
            for j, weight in enumerate(INBETWEENS):
                inbetween[k, j, eye.skin] = self._clearing(shape + weight * (delta + full[k]), eye)
            # 3. Lashes, inner lid and shells with their lid vertex.
            full[k, eye.followers] = full[k, eye.leaders]
            inbetween[k, :, eye.followers] = inbetween[k, :, eye.leaders]
            # ... and the lashes swing down only part of the way ICT's blink turns them.
            lashes, roots = eye.followers[: eye.n_lashes], eye.leaders[: eye.n_lashes]
            full[k, lashes] += (1.0 - config.lash_swing) * (delta[roots] - delta[lashes])
        return LidShapes(full.astype(np.float32), inbetween.astype(np.float32))

    def _clearing(self, verts: np.ndarray, eye: _Eye) -> np.ndarray:
        """(S, 3) cm: the radial push that takes the outer lid skin of `verts` (V, 3) `clearance` out of the
        eyeball, spread over the lid."""
        from sie3d.head.model import vertex_normals

        config = self.config
        ball = verts[eye.eyeball[0]:eye.eyeball[1]]
        # The vertices' mean, about 4 mm in front of the best-fitting sphere's centre (the cornea's vertices are
        # dense): so "radial" leans toward the lid's own travel. Pushed from the sphere's centre, the margin went
        # 2 mm further forward and a dark slit opened between the shut lids (looked at close up).
        centre = ball.mean(0)
        ball_dirs = ball - centre
        ball_radius = np.linalg.norm(ball_dirs, axis=1)
        ball_dirs /= ball_radius[:, None]
        lid = verts[eye.skin] - centre
        lid_radius = np.linalg.norm(lid, axis=1)
        radial = lid / lid_radius[:, None]
        normals = vertex_normals(verts[eye.lid_verts], eye.lid_faces)[eye.skin_in_lid]
        outer = (normals * radial).sum(1) > config.outer_cos
        front = ball_dirs @ radial[outer].mean(0) > 0.0  # the eyeball's half under the lid
        in_cone = radial[outer] @ ball_dirs[front].T > np.cos(np.radians(config.cone_degrees))
        under = np.where(in_cone, ball_radius[front][None], 0.0).max(1)
        need = np.zeros(len(lid))
        need[outer] = np.maximum(under + config.clearance - lid_radius[outer], 0.0)
        push = need.copy()
        count = np.bincount(eye.edges.ravel(), minlength=len(push)).clip(min=1)
        for _ in range(config.relax_steps):
            total = np.bincount(eye.edges[:, 0], push[eye.edges[:, 1]], len(push))
            total += np.bincount(eye.edges[:, 1], push[eye.edges[:, 0]], len(push))
            push = np.where(eye.still, need, np.maximum(need, total / count))
        return radial * push[:, None]

    @staticmethod
    def _gap(shape: np.ndarray, delta: np.ndarray, eye: _Eye) -> np.ndarray:
        """(U,) cm: how far above the lower margin each upper margin vertex stops at ICT's full blink."""
        closed = shape + delta
        lower = eye.lower[np.argsort(closed[eye.lower, 0])]  # np.interp needs increasing x
        lower_y = np.interp(closed[eye.upper, 0], closed[lower, 0], closed[lower, 1])
        return closed[eye.upper, 1] - lower_y


def _nearest(points: np.ndarray, candidates: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """For each of `points` (N, 3): the index of the nearest of `candidates` (M, 3) and its distance."""
    squared = (points**2).sum(1)[:, None] + (candidates**2).sum(1)[None] - 2.0 * points @ candidates.T
    index = squared.argmin(1)
    return index, np.sqrt(np.maximum(squared[np.arange(len(points)), index], 0.0))

