"""The expression vocabulary: ICT-FaceKit's 53 blendshapes and MediaPipe's 52 outputs.

Both follow ARKit. ICT writes sides as ``_L``/``_R`` (the subject's own left/right: +x in ICT space)
and splits two ARKit shapes into halves (``browInnerUp``, ``cheekPuff``); MediaPipe writes
``Left``/``Right``, adds a ``_neutral`` score and does not predict ``tongueOut``.

MediaPipe's ``Left`` is the subject's left as well (measured: fitting ICT to the landmarks of 56 shared
photos without any blendshape prior, the left-minus-right difference of the fitted ICT coefficients
correlates positively with MediaPipe's Left-minus-Right scores for 9 of 11 paired shapes).
"""

from __future__ import annotations

import numpy as np

from sie3d.face.observation import BLENDSHAPE_NAMES as MEDIAPIPE_NAMES

ICT_NAMES: tuple[str, ...] = (
    "browDown_L", "browDown_R", "browInnerUp_L", "browInnerUp_R", "browOuterUp_L", "browOuterUp_R",
    "cheekPuff_L", "cheekPuff_R", "cheekSquint_L", "cheekSquint_R", "eyeBlink_L", "eyeBlink_R",
    "eyeLookDown_L", "eyeLookDown_R", "eyeLookIn_L", "eyeLookIn_R", "eyeLookOut_L", "eyeLookOut_R",
    "eyeLookUp_L", "eyeLookUp_R", "eyeSquint_L", "eyeSquint_R", "eyeWide_L", "eyeWide_R", "jawForward",
    "jawLeft", "jawOpen", "jawRight", "mouthClose", "mouthDimple_L", "mouthDimple_R", "mouthFrown_L",
    "mouthFrown_R", "mouthFunnel", "mouthLeft", "mouthLowerDown_L", "mouthLowerDown_R", "mouthPress_L",
    "mouthPress_R", "mouthPucker", "mouthRight", "mouthRollLower", "mouthRollUpper", "mouthShrugLower",
    "mouthShrugUpper", "mouthSmile_L", "mouthSmile_R", "mouthStretch_L", "mouthStretch_R", "mouthUpperUp_L",
    "mouthUpperUp_R", "noseSneer_L", "noseSneer_R",
)  # fmt: skip


def _ict_names_for(mediapipe_name: str) -> tuple[str, ...]:
    if mediapipe_name in ("browInnerUp", "cheekPuff"):
        return (f"{mediapipe_name}_L", f"{mediapipe_name}_R")
    for side, suffix in (("Left", "_L"), ("Right", "_R")):
        if mediapipe_name.endswith(side) and not mediapipe_name.startswith(("mouthLeft", "mouthRight", "jaw")):
            return (mediapipe_name[: -len(side)] + suffix,)
    return (mediapipe_name,)


# MediaPipe name -> the ICT shapes it drives ("_neutral" drives none).
MEDIAPIPE_TO_ICT: dict[str, tuple[str, ...]] = {
    name: () if name == "_neutral" else _ict_names_for(name) for name in MEDIAPIPE_NAMES
}

# (52 MediaPipe, 53 ICT) 0/1 matrix: ict = scores @ M. Built once; used in both directions.
_MAP = np.zeros((len(MEDIAPIPE_NAMES), len(ICT_NAMES)), np.float32)
for _i, _name in enumerate(MEDIAPIPE_NAMES):
    for _target in MEDIAPIPE_TO_ICT[_name]:
        _MAP[_i, ICT_NAMES.index(_target)] = 1.0


def ict_from_mediapipe(scores: np.ndarray) -> np.ndarray:
    """(…, 52) MediaPipe scores -> (…, 53) ICT coefficients (split shapes get the shared score)."""
    return np.asarray(scores, np.float32) @ _MAP


def mediapipe_from_ict(coefficients: np.ndarray) -> np.ndarray:
    """(…, 53) ICT coefficients -> (…, 52) MediaPipe-style scores (split halves averaged; _neutral = 0)."""
    counts = np.maximum(_MAP.sum(axis=1), 1.0)
    return (np.asarray(coefficients, np.float32) @ _MAP.T) / counts
