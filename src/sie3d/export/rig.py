"""The exported rig: Apple's 52 ARKit blendshapes, named as ARKit names them, then sie3d's extras.

ICT-FaceKit's 53 expression shapes are internal. Exports carry the ARKit standard, so MediaPipe, ARKit
face tracking, three.js examples and Unity/Unreal Live Link drive an avatar without a mapping:

- the 52 ARKit names (`ARKIT_NAMES`: MediaPipe's 51 blendshape names, which are ARKit's, then
  ``tongueOut``) come first, in that order, on every primitive;
- ICT splits ``browInnerUp`` and ``cheekPuff`` into halves: the ARKit target is the sum of both halves,
  and the halves stay as extra targets after the 52 (`RIG_EXTRAS`), so that a one-sided pose is kept;
- ICT has no ``tongueOut``: it is authored here on ICT's tongue (`tongue_out_delta`).

`rig_names` is the one list of the rig's target names; features that add targets (the visemes) append them
after the rig (`sie3d.export.mesh.with_extra_targets`). `rig_weights` turns (53,) ICT coefficients into
rig weights that reproduce the same surface exactly.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from sie3d.head.names import ICT_NAMES, MEDIAPIPE_NAMES, MEDIAPIPE_TO_ICT

# Apple's 52 ARKit blendshape locations: MediaPipe's scores without "_neutral", plus tongueOut.
ARKIT_NAMES: tuple[str, ...] = (*(n for n in MEDIAPIPE_NAMES if n != "_neutral"), "tongueOut")
# ICT shapes whose ARKit target merges two halves; each half stays an extra target (ICT name).
SPLIT_HALVES: dict[str, tuple[str, str]] = {
    name: ict for name, ict in MEDIAPIPE_TO_ICT.items() if len(ict) == 2
}  # {"browInnerUp": ("browInnerUp_L", "browInnerUp_R"), "cheekPuff": (...)}
RIG_EXTRAS: tuple[str, ...] = tuple(half for halves in SPLIT_HALVES.values() for half in halves)


def rig_names() -> tuple[str, ...]:
    """Every exported morph target name, in file order: the 52 ARKit names, then `RIG_EXTRAS`."""
    return (*ARKIT_NAMES, *RIG_EXTRAS)


def _ict(name: str) -> int:
    return ICT_NAMES.index(name)


def rig_weights(coefficients: np.ndarray) -> np.ndarray:
    """(…, 53) ICT coefficients -> (…, K) rig weights (`rig_names` order) giving the same surface.

    A merged shape takes the smaller half (``browInnerUp = min(L, R)``) and each half target the rest
    (``browInnerUp_L = L - min``), so ``weights @ rig_deltas == coefficients @ ict_basis``."""
    c = np.asarray(coefficients, np.float32)
    if c.shape[-1] != len(ICT_NAMES):
        raise ValueError(f"coefficients must be (..., {len(ICT_NAMES)}) ICT coefficients, got {c.shape}")
    names = rig_names()
    out = np.zeros((*c.shape[:-1], len(names)), np.float32)
    for k, name in enumerate(ARKIT_NAMES):
        ict = MEDIAPIPE_TO_ICT.get(name, ())
        if len(ict) == 1:
            out[..., k] = c[..., _ict(ict[0])]
        elif len(ict) == 2:
            left, right = c[..., _ict(ict[0])], c[..., _ict(ict[1])]
            both = np.minimum(left, right)
            out[..., k] = both
            out[..., names.index(ict[0])] = left - both
            out[..., names.index(ict[1])] = right - both
    return out


def arkit_from_ict(coefficients: np.ndarray) -> dict[str, float]:
    """(53,) ICT coefficients -> {ARKit name: weight} as a live ARKit rig would show them (halves averaged,
    tongueOut 0): what a viewer's 52 sliders start from."""
    from sie3d.head.names import mediapipe_from_ict

    scores = dict(zip(MEDIAPIPE_NAMES, mediapipe_from_ict(coefficients).tolist(), strict=True))
    return {name: round(float(scores.get(name, 0.0)), 4) for name in ARKIT_NAMES}


@dataclass(frozen=True)
class TongueConfig:
    """How ``tongueOut`` is authored on ICT's tongue (centimetres, head space: +y up, +z forward)."""

    reach_cm: float = 2.6  # how far the tip moves forward (from behind the lower teeth to over the lower lip)
    lift_cm: float = 0.9  # and up: the tip rests ~1.4 cm below the teeth's edge and must clear the lower teeth
    root_z_cm: float = 4.0  # vertices behind this stay put
    full_z_cm: float = 8.0  # vertices in front of this move fully (a smooth ramp in between)
    max_half_width_cm: float = 2.2  # the tongue's UV island is the largest one this narrow


def tongue_vertices(faces: np.ndarray, uv_faces: np.ndarray, neutral: np.ndarray, first: int, last: int,
                    config: TongueConfig = TongueConfig()) -> np.ndarray:  # fmt: skip
    """Vertex ids of ICT's tongue inside the ``gums_and_tongue`` region ``[first, last)``: the largest UV
    island of that region whose vertices stay within ``max_half_width_cm`` of the midline (the gums are
    wider; the palate and floor islands are smaller)."""
    inside = ((faces >= first) & (faces < last)).all(axis=1)
    uv = uv_faces[inside]
    # UV islands by union-find over the triangles' UV corners
    parent = np.arange(int(uv.max()) + 1)

    def root(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    for a, b, c in uv:
        ra, rb, rc = root(a), root(b), root(c)
        parent[rb] = ra
        parent[root(rc)] = ra
    island = np.array([root(int(i)) for i in uv[:, 0]])
    best: np.ndarray | None = None
    for label in np.unique(island):
        verts = np.unique(faces[inside][island == label])
        if np.abs(neutral[verts, 0]).max() <= config.max_half_width_cm and (best is None or len(verts) > len(best)):
            best = verts
    if best is None:
        raise ValueError("no UV island of the gums_and_tongue region is narrow enough to be the tongue")
    return best


def tongue_out_delta(faces: np.ndarray, uv_faces: np.ndarray, neutral: np.ndarray, first: int, last: int,
                     config: TongueConfig = TongueConfig()) -> np.ndarray:  # fmt: skip
    """(V, 3) float32 ``tongueOut`` offsets (cm): the tongue slides forward and up, out between the teeth
    and over the lower lip, its tip fully, its root not at all (a smoothstep along z)."""
    verts = tongue_vertices(faces, uv_faces, neutral, first, last, config)
    t = np.clip((neutral[verts, 2] - config.root_z_cm) / (config.full_z_cm - config.root_z_cm), 0.0, 1.0)
    ramp = t * t * (3.0 - 2.0 * t)
    delta = np.zeros_like(neutral, dtype=np.float32)
    delta[verts, 1] = config.lift_cm * ramp
    delta[verts, 2] = config.reach_cm * ramp
    return delta


def rig_deltas(expression_basis: np.ndarray, tongue_out: np.ndarray) -> np.ndarray:
    """(53, V, 3) ICT expression deltas + (V, 3) authored tongueOut -> (K, V, 3) float32 in `rig_names`
    order."""
    basis = np.asarray(expression_basis, np.float32)
    names = rig_names()
    out = np.zeros((len(names), *basis.shape[1:]), np.float32)
    for k, name in enumerate(ARKIT_NAMES):
        if name == "tongueOut":
            out[k] = tongue_out
        else:
            for ict in MEDIAPIPE_TO_ICT[name]:
                out[k] += basis[_ict(ict)]
    for half in RIG_EXTRAS:
        out[names.index(half)] = basis[_ict(half)]
    return out
