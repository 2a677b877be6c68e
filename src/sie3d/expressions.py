"""The expression space: ICT/ARKit blendshape coefficients, and prototypes of the seven basic emotions.

The prototypes are built from the facial action units (FACS) that characterise each emotion (Ekman &
Friesen's EMFACS prototypes), translated into ICT shapes with ICT-FaceKit's own AU table (see its README):
AU1 browInnerUp, AU2 browOuterUp, AU4 browDown, AU5 eyeWide, AU6 cheekSquint, AU7 eyeSquint,
AU9 noseSneer, AU10 mouthUpperUp, AU12 mouthSmile, AU15 mouthFrown, AU16 mouthLowerDown, AU20
mouthStretch, AU23/24 mouthPress, AU26/27 jawOpen. Weights are this project's choice of a clear,
unexaggerated expression at intensity 1.0; they are what the text conditioning will later start from.
"""

from __future__ import annotations

import numpy as np

from sie3d.errors import UsageError
from sie3d.head.names import ICT_NAMES

EMOTIONS: tuple[str, ...] = ("anger", "disgust", "fear", "happy", "neutral", "sadness", "surprise")
NEUTRAL_EMOTION = np.eye(len(EMOTIONS), dtype=np.float32)[EMOTIONS.index("neutral")]  # (7,) no expression's reading
# Spellings of the seven emotions in manifests, prompt files and judge outputs -> `EMOTIONS` names.
EMOTION_ALIASES: dict[str, str] = {
    **{e: e for e in EMOTIONS},
    "angry": "anger", "disgusted": "disgust", "fearful": "fear", "afraid": "fear", "scared": "fear",
    "happiness": "happy", "sad": "sadness", "surprised": "surprise",
}  # fmt: skip


def canonical_emotion(word: str) -> str | None:
    """'Angry' -> 'anger', 'surprised' -> 'surprise'; None if `word` is not one of the seven emotions."""
    return EMOTION_ALIASES.get(word.strip().lower())


def _both(shape: str, value: float) -> dict[str, float]:
    return {f"{shape}_L": value, f"{shape}_R": value}


PROTOTYPES: dict[str, dict[str, float]] = {
    # AU4 + AU7 + AU23/24: lowered, drawn-together brows, tightened lids, pressed lips. FACS's anger also raises
    # the upper lid (AU5), but on this rig eyeWide bares the white above the iris under a brow that does not
    # press down on the lid: with it (0.25) the face stared in alarm, close up on every person looked at. (No
    # AU9/10: a sneer of 0.2 lifted the upper lip off the teeth, which showed between the pressed lips.)
    "anger": {**_both("browDown", 0.9), **_both("eyeSquint", 0.45), **_both("mouthPress", 0.7),
              "mouthRollUpper": 0.1},
    # AU9 + AU10 + AU15 + AU16 (+AU4): wrinkled nose, raised upper lip, lip corners down.
    "disgust": {**_both("noseSneer", 0.85), **_both("mouthUpperUp", 0.6), **_both("mouthFrown", 0.4),
                **_both("browDown", 0.4), **_both("cheekSquint", 0.3), **_both("mouthLowerDown", 0.2),
                "mouthShrugUpper": 0.3},
    # AU1 + AU2 + AU4 + AU5 + AU7 + AU20 + AU26: raised yet knitted brows, wide eyes, stretched lips.
    "fear": {**_both("browInnerUp", 0.9), **_both("browOuterUp", 0.4), **_both("browDown", 0.3),
             **_both("eyeWide", 0.8), **_both("mouthStretch", 0.7), "jawOpen": 0.2,
             **_both("mouthLowerDown", 0.3)},
    # AU6 + AU12 (+AU25): the Duchenne smile, lips parted.
    "happy": {**_both("mouthSmile", 0.85), **_both("cheekSquint", 0.6), **_both("eyeSquint", 0.2),
              "jawOpen": 0.12, **_both("mouthUpperUp", 0.2), **_both("mouthDimple", 0.2)},
    "neutral": {},
    # AU1 + AU4 + AU15 (+AU17): inner brows up and together, lip corners down, chin raised.
    "sadness": {**_both("browInnerUp", 0.9), **_both("browDown", 0.35), **_both("mouthFrown", 0.75),
                "mouthShrugLower": 0.45, **_both("eyeSquint", 0.15), **_both("eyeLookDown", 0.15)},
    # AU1 + AU2 + AU5 + AU26: brows up, eyes wide, jaw dropped.
    "surprise": {**_both("browInnerUp", 0.9), **_both("browOuterUp", 0.85), **_both("eyeWide", 0.8),
                 "jawOpen": 0.45, "mouthFunnel": 0.15},
}  # fmt: skip


def coefficients(weights: dict[str, float]) -> np.ndarray:
    """{ICT name: value} -> (53,) float32 coefficients."""
    unknown = set(weights) - set(ICT_NAMES)
    if unknown:
        raise ValueError(f"unknown ICT expression names: {sorted(unknown)}")
    vector = np.zeros(len(ICT_NAMES), np.float32)
    for name, value in weights.items():
        vector[ICT_NAMES.index(name)] = value
    return vector


def prototype(emotion: str, intensity: float = 1.0) -> np.ndarray:
    """(53,) coefficients of a basic emotion at `intensity` (1.0 = clear; values are clipped to [0, 1])."""
    if emotion not in PROTOTYPES:
        raise ValueError(f"unknown emotion {emotion!r}; choose one of {', '.join(EMOTIONS)}")
    return np.clip(coefficients(PROTOTYPES[emotion]) * intensity, 0.0, 1.0)


# The shapes that move the mouth or jaw, other than the rest's lip seal (`head.fit.REST_LIP_SEAL`).
MOUTH_SHAPES: tuple[str, ...] = tuple(n for n in ICT_NAMES if n.startswith(("mouth", "jaw", "cheekPuff"))
                                      and n != "mouthClose")  # fmt: skip
# Each eye's gaze shapes (they turn the eyeball: `head.model.EYE_TURNS`), by ICT's side suffix.
EYE_GAZE: dict[str, list[int]] = {side: [k for k, n in enumerate(ICT_NAMES) if n.startswith("eyeLook") and
                                         n.endswith(side)] for side in ("_L", "_R")}  # fmt: skip


GAZES = ("ahead", "photo")  # where a person's neutral face looks (`sie3d.avatar.ReconstructConfig.gaze`)
TURNS_AN_EYE = 0.05  # a gaze shape at least this strong (1.5° at most) is an expression turning that eye


def check_gaze(gaze: str, name: str = "gaze") -> None:
    """UsageError unless `gaze` is one of `GAZES`; `name` is what the user set it as (an option, a form field)."""
    if gaze not in GAZES:
        raise UsageError(f"{name} {gaze!r} is not a gaze", f"use one of: {', '.join(GAZES)}")


def with_gaze(expression: np.ndarray, gaze: np.ndarray) -> np.ndarray:
    """(53,) `expression` looking where `gaze` (53,; only its gaze shapes are read) looks: each eye the
    expression does not turn itself (no gaze shape of it at `TURNS_AN_EYE` or more: a text network's output
    carries traces) takes `gaze`'s turn; an eye it turns keeps its own."""
    out = np.array(expression, np.float32)
    for shapes in EYE_GAZE.values():
        if out[shapes].max() < TURNS_AN_EYE:
            out[shapes] = np.asarray(gaze, np.float32)[shapes]
    return out


def on_top_of_rest(rest: np.ndarray, expression: np.ndarray) -> np.ndarray:
    """Pose an emotional expression (53,) on the person's rest coefficients (53,): added and clipped to
    [0, 1] -- the expression acts as a change from the person's neutral face -- except that where the
    expression drives one member of an exclusive pair (`head.fit.EXCLUSIVE_PAIRS`), the rest's other
    member is released (a surprise's eyeWide is not fought by a resting squint), the rest's lip seal
    gives way to any movement of the mouth or jaw (a smile parts the lips), and where the expression lowers
    a brow without raising its inner end itself (anger's AU4 without AU1), the rest's inner-brow raise is
    released: kept, it would bend the lowered brow into the oblique AU1+4 of grief and fear (on the London
    photos the rest holds 0.1-0.4 of browInnerUp for a third of the people, 0.77 for one). An eye the expression
    turns drops the rest's gaze (a rest that keeps the photo's, `ReconstructConfig.gaze`): it looks where the
    expression says, not at the sum of both."""
    from sie3d.head.fit import EXCLUSIVE_PAIRS, REST_LIP_SEAL

    rest = np.array(rest, np.float32)
    expression = np.asarray(expression, np.float32)
    if expression[[ICT_NAMES.index(n) for n in MOUTH_SHAPES]].any():
        rest[ICT_NAMES.index(REST_LIP_SEAL[0])] = 0.0
    for side in ("_L", "_R"):
        down, inner = ICT_NAMES.index(f"browDown{side}"), ICT_NAMES.index(f"browInnerUp{side}")
        if expression[down] > 0 and expression[inner] == 0:
            rest[inner] = 0.0
    for shapes in EYE_GAZE.values():
        if expression[shapes].max() >= TURNS_AN_EYE:
            rest[shapes] = 0.0
    for first, second in EXCLUSIVE_PAIRS:
        a, b = ICT_NAMES.index(first), ICT_NAMES.index(second)
        if expression[a] > 0:
            rest[b] = 0.0
        if expression[b] > 0:
            rest[a] = 0.0
    return np.clip(rest + expression, 0.0, 1.0)
