"""The 15 standard visemes as combinations of the ICT/ARKit expression shapes, for lip-sync.

The set and its names are those of the Oculus (Meta) OVR LipSync viseme reference, which lip-sync tools
and avatar pipelines drive (Ready Player Me's ``viseme_*`` morph targets, three.js and Unity lip-sync
plug-ins): ``sil`` (silence), ``PP`` (p b m), ``FF`` (f v), ``TH`` (th), ``DD`` (t d), ``kk`` (k g),
``CH`` (ch j sh), ``SS`` (s z), ``nn`` (n l), ``RR`` (r), ``aa`` (a), ``E`` (e), ``I`` (i), ``O`` (o),
``U`` (u). Each mouth shape below is set by hand from that reference's pictures in ARKit terms (jaw
opening, lip press, roll, funnel, pucker, stretch); ICT has no tongue shape, so TH, DD and nn show only
the jaw and lips. Exports append them as morph targets named `VISEME_NAMES`, after the expression
targets, so a lip-sync tool drives ``viseme_aa`` ... directly.
"""

from __future__ import annotations

import numpy as np

from sie3d.head.names import ICT_NAMES


def _both(shape: str, value: float) -> dict[str, float]:
    return {f"{shape}_L": value, f"{shape}_R": value}


# viseme -> {ICT shape: weight}; symmetric, jaw opening as seen in the reference pictures
VISEMES: dict[str, dict[str, float]] = {
    "sil": {},
    "PP": {**_both("mouthPress", 0.6), "mouthRollLower": 0.25, "mouthRollUpper": 0.2, "mouthClose": 0.1},
    "FF": {"mouthRollLower": 0.7, **_both("mouthUpperUp", 0.25), "jawOpen": 0.08},
    "TH": {"jawOpen": 0.15, **_both("mouthLowerDown", 0.2), **_both("mouthUpperUp", 0.1)},
    "DD": {"jawOpen": 0.15, **_both("mouthStretch", 0.2), **_both("mouthUpperUp", 0.1)},
    "kk": {"jawOpen": 0.22, **_both("mouthStretch", 0.25), **_both("mouthLowerDown", 0.1)},
    "CH": {"mouthFunnel": 0.5, "mouthPucker": 0.2, "jawOpen": 0.1, **_both("mouthUpperUp", 0.2),
           **_both("mouthLowerDown", 0.2)},  # fmt: skip
    "SS": {**_both("mouthStretch", 0.35), "jawOpen": 0.05, **_both("mouthUpperUp", 0.15),
           **_both("mouthLowerDown", 0.15), **_both("mouthSmile", 0.1)},  # fmt: skip
    "nn": {"jawOpen": 0.18, **_both("mouthLowerDown", 0.15), **_both("mouthUpperUp", 0.1)},
    "RR": {"mouthFunnel": 0.3, "mouthPucker": 0.3, "jawOpen": 0.12},
    "aa": {"jawOpen": 0.6, **_both("mouthLowerDown", 0.25), **_both("mouthUpperUp", 0.1)},
    "E": {"jawOpen": 0.3, **_both("mouthStretch", 0.4), **_both("mouthSmile", 0.2), **_both("mouthUpperUp", 0.15)},
    "I": {"jawOpen": 0.15, **_both("mouthStretch", 0.45), **_both("mouthSmile", 0.35)},
    "O": {"jawOpen": 0.4, "mouthFunnel": 0.7, "mouthPucker": 0.2},
    "U": {"jawOpen": 0.12, "mouthPucker": 0.8, "mouthFunnel": 0.4},
}
VISEME_NAMES: tuple[str, ...] = tuple(f"viseme_{name}" for name in VISEMES)  # the exported morph target names


def viseme_coefficients() -> np.ndarray:
    """(15, 53) float32: each viseme as ICT expression coefficients, in the order of `VISEME_NAMES`."""
    table = np.zeros((len(VISEMES), len(ICT_NAMES)), np.float32)
    for row, shapes in enumerate(VISEMES.values()):
        for shape, weight in shapes.items():
            table[row, ICT_NAMES.index(shape)] = weight
    return table


def viseme_deltas(expression_basis: np.ndarray) -> np.ndarray:
    """(15, V, 3) vertex offsets of the visemes from the (53, V, 3) ICT expression offsets."""
    return np.tensordot(viseme_coefficients(), np.asarray(expression_basis, np.float32), axes=1).astype(np.float32)
