"""`FaceObservation`: everything the later stages know about a face in a photo."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

# The 52 outputs of MediaPipe's face_blendshapes model, in its order: a "_neutral" score followed by
# 51 ARKit blendshapes (ARKit's 52nd, tongueOut, is not predicted by MediaPipe).
BLENDSHAPE_NAMES: tuple[str, ...] = (
    "_neutral", "browDownLeft", "browDownRight", "browInnerUp", "browOuterUpLeft", "browOuterUpRight", "cheekPuff",
    "cheekSquintLeft", "cheekSquintRight", "eyeBlinkLeft", "eyeBlinkRight", "eyeLookDownLeft",
    "eyeLookDownRight", "eyeLookInLeft", "eyeLookInRight", "eyeLookOutLeft", "eyeLookOutRight",
    "eyeLookUpLeft", "eyeLookUpRight", "eyeSquintLeft", "eyeSquintRight", "eyeWideLeft", "eyeWideRight",
    "jawForward", "jawLeft", "jawOpen", "jawRight", "mouthClose", "mouthDimpleLeft", "mouthDimpleRight",
    "mouthFrownLeft", "mouthFrownRight", "mouthFunnel", "mouthLeft", "mouthLowerDownLeft",
    "mouthLowerDownRight", "mouthPressLeft", "mouthPressRight", "mouthPucker", "mouthRight",
    "mouthRollLower", "mouthRollUpper", "mouthShrugLower", "mouthShrugUpper", "mouthSmileLeft",
    "mouthSmileRight", "mouthStretchLeft", "mouthStretchRight", "mouthUpperUpLeft", "mouthUpperUpRight",
    "noseSneerLeft", "noseSneerRight",
)  # fmt: skip

N_LANDMARKS = 478  # 468 face mesh points + 2 x 5 iris points

# Landmark ids used across the project ("left"/"right" are the subject's own sides).
LANDMARK_IDS = {
    "nose_tip": 1,
    "left_iris": 473,
    "right_iris": 468,
    "left_eye_outer": 263,
    "left_eye_inner": 362,
    "right_eye_outer": 33,
    "right_eye_inner": 133,
    "mouth_left": 291,
    "mouth_right": 61,
    "upper_lip": 13,
    "lower_lip": 14,
    "chin": 152,
    "forehead": 10,
}


@dataclass(frozen=True)
class FaceObservation:
    """One detected face.

    Coordinates are in pixels of the (possibly downscaled) photo, x right, y down. ``landmarks_px[:, 2]``
    is MediaPipe's relative depth scaled to pixels (same scale as x; smaller = closer to the camera;
    zero near the face centre) -- a shape cue, not a metric distance.
    """

    landmarks_px: np.ndarray  # (478, 3) float32
    blendshapes: np.ndarray  # (52,) float32 sigmoid scores in [0, 1], order of BLENDSHAPE_NAMES
    head_pose: np.ndarray  # (4, 4) float32: MediaPipe canonical face (cm) -> camera space
    box: tuple[float, float, float, float]  # (x0, y0, x1, y1) landmark extent, pixels
    confidence: float  # face detector score of the matching detection (nan if none matched)
    image_size: tuple[int, int]  # (width, height) of the photo the coordinates refer to
    index: int = 0  # rank among the faces of the photo, 0 = largest
    identity: np.ndarray | None = None  # (128,) unit SFace embedding of the aligned face, when computed
    extras: dict = field(default_factory=dict, compare=False)  # free-form diagnostics, JSON-safe

    @property
    def blendshape_dict(self) -> dict[str, float]:
        return {n: float(s) for n, s in zip(BLENDSHAPE_NAMES, self.blendshapes, strict=True)}

    @property
    def box_area(self) -> float:
        x0, y0, x1, y1 = self.box
        return max(0.0, x1 - x0) * max(0.0, y1 - y0)

    def point(self, name: str) -> np.ndarray:
        """(x, y) pixels of a named landmark (see LANDMARK_IDS)."""
        return self.landmarks_px[LANDMARK_IDS[name], :2]

    @property
    def interocular_px(self) -> float:
        """Distance between the two outer eye corners, the usual normaliser for landmark errors."""
        return float(np.linalg.norm(self.point("left_eye_outer") - self.point("right_eye_outer")))

    @property
    def yaw_pitch_roll_degrees(self) -> tuple[float, float, float]:
        """Head rotation read off `head_pose` (yaw: turn left/right, pitch: nod, roll: tilt)."""
        r = self.head_pose[:3, :3].astype(np.float64)
        yaw = np.degrees(np.arcsin(np.clip(-r[2, 0], -1.0, 1.0)))
        pitch = np.degrees(np.arctan2(r[2, 1], r[2, 2]))
        roll = np.degrees(np.arctan2(r[1, 0], r[0, 0]))
        return float(yaw), float(pitch), float(roll)

    def to_json(self) -> dict:
        yaw, pitch, roll = self.yaw_pitch_roll_degrees
        return {
            "index": self.index,
            "confidence": None if np.isnan(self.confidence) else round(float(self.confidence), 4),
            "box": [round(float(v), 2) for v in self.box],
            "image_size": list(self.image_size),
            "interocular_px": round(self.interocular_px, 2),
            "head_pose": {"yaw_deg": round(yaw, 2), "pitch_deg": round(pitch, 2), "roll_deg": round(roll, 2),
                          "matrix": np.round(self.head_pose, 5).tolist()},
            "blendshapes": {n: round(v, 5) for n, v in self.blendshape_dict.items()},
            "landmarks_px": np.round(self.landmarks_px, 3).tolist(),
            **({"identity_sface": np.round(self.identity, 6).tolist()} if self.identity is not None else {}),
            **({"extras": self.extras} if self.extras else {}),
        }
