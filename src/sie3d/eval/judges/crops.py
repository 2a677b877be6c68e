"""One landmark-based face crop rule per judge, shared by photos and renders.

The judges were trained on crops from face detectors -- facex on OpenCV Haar-cascade boxes, FaceNet
on MTCNN boxes plus a margin -- not on tight landmark boxes. Renders have no detector we trust, and a
detector's box jitters with expression and shading, so both photos and renders are cropped by the
same rule computed from landmarks, calibrated once against the detector boxes on real photos
(``benchmarks/calibrate_judge_crops.py`` writes ``crop_calibration.json`` next to this file).

The rule works in a face frame that survives expressions and yaw: the eye midpoint E (mean of the two
eye centres, each the midpoint of its corners), the mouth midpoint M (mean of the two mouth corners,
which move far less than the lips when the jaw opens) and their distance d = |M - E|. The box centre
is ``E + down * (M - E) + right * d * n`` (n the unit vector perpendicular to M - E, pointing to the
image right for an upright face); its size is ``width * d`` by ``height * d``, axis-aligned in the image
like the detector boxes.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass
from functools import cache
from importlib import resources
from typing import Any

import cv2
import numpy as np

from sie3d.face.observation import FaceObservation

CALIBRATION_FILE = "crop_calibration.json"

# MediaPipe landmark ids (subject's own sides): eye corners and mouth corners.
_RIGHT_EYE_CORNERS, _LEFT_EYE_CORNERS = (33, 133), (263, 362)
_MOUTH_CORNERS = (61, 291)

Box = tuple[float, float, float, float]  # (x0, y0, x1, y1) pixels, continuous edges: pixel i spans [i, i+1)


@dataclass(frozen=True)
class CropRule:
    """A face box from landmarks, in units of the eye-midpoint-to-mouth distance d (see module doc)."""

    name: str
    width: float  # box width / d
    height: float  # box height / d
    down: float  # centre offset from the eye midpoint along eye -> mouth, / d
    right: float = 0.0  # centre offset perpendicular to it (image right for an upright face), / d

    def scaled(self, factor: float, name: str | None = None) -> CropRule:
        """The same centre with the size multiplied by `factor` (e.g. 1 + 2 x a per-side margin)."""
        return CropRule(name or self.name, self.width * factor, self.height * factor, self.down, self.right)


def _landmarks_xy(obs_or_landmarks: FaceObservation | np.ndarray) -> np.ndarray:
    lm = obs_or_landmarks.landmarks_px if isinstance(obs_or_landmarks, FaceObservation) else obs_or_landmarks
    lm = np.asarray(lm, dtype=np.float64)
    if lm.ndim != 2 or lm.shape[0] < 468 or lm.shape[1] < 2:
        raise ValueError(f"expected MediaPipe landmarks of shape (468 or 478, 2 or 3), got {lm.shape}")
    return lm[:, :2]


def face_frame(obs_or_landmarks: FaceObservation | np.ndarray) -> tuple[np.ndarray, np.ndarray, float]:
    """(eye midpoint E (2,), mouth midpoint M (2,), d = |M - E|) in image pixels."""
    lm = _landmarks_xy(obs_or_landmarks)
    eye_mid = (lm[list(_RIGHT_EYE_CORNERS)].mean(0) + lm[list(_LEFT_EYE_CORNERS)].mean(0)) / 2.0
    mouth_mid = lm[list(_MOUTH_CORNERS)].mean(0)
    d = float(np.linalg.norm(mouth_mid - eye_mid))
    if not d > 1e-6:
        raise ValueError("eye and mouth landmarks coincide; no face crop can be derived")
    return eye_mid, mouth_mid, d


def _normal(axis: np.ndarray) -> np.ndarray:
    """Unit vector perpendicular to the eye -> mouth `axis`: (1, 0), the image right, for an upright face."""
    return np.array([axis[1], -axis[0]])


def frame_coordinates(obs_or_landmarks: FaceObservation | np.ndarray, box: Box) -> dict[str, float]:
    """A box expressed in the rule's units: width/d, height/d, down and right offsets of its centre."""
    eye_mid, mouth_mid, d = face_frame(obs_or_landmarks)
    axis = (mouth_mid - eye_mid) / d
    normal = _normal(axis)
    centre = np.array([(box[0] + box[2]) / 2.0, (box[1] + box[3]) / 2.0])
    offset = centre - eye_mid
    return {"width": (box[2] - box[0]) / d, "height": (box[3] - box[1]) / d,
            "down": float(offset @ axis) / d, "right": float(offset @ normal) / d, "d": d}  # fmt: skip


def judge_crop_box(obs_or_landmarks: FaceObservation | np.ndarray, rule: CropRule | str) -> Box:
    """(x0, y0, x1, y1) image pixels of the crop `rule` (or the calibrated rule of that name) for a face
    given by its observation or its (478, 2|3) MediaPipe landmarks in pixels."""
    rule = load_rule(rule) if isinstance(rule, str) else rule
    eye_mid, mouth_mid, d = face_frame(obs_or_landmarks)
    axis = (mouth_mid - eye_mid) / d
    normal = _normal(axis)
    cx, cy = eye_mid + rule.down * d * axis + rule.right * d * normal
    half_w, half_h = rule.width * d / 2.0, rule.height * d / 2.0
    return float(cx - half_w), float(cy - half_h), float(cx + half_w), float(cy + half_h)


def crop_box(image: np.ndarray, box: Box, size: int | tuple[int, int], antialias: bool = True) -> np.ndarray:
    """Resample the `box` region of `image` (H, W) or (H, W, C) to (size, size[, C]) (or (h, w) for a
    tuple `size`), same dtype (float32 for float input). Bilinear, black outside the image.

    Exactly ``cv2.resize(image[y0:y1, x0:x1], size, INTER_LINEAR)`` for an integer box inside the image
    without antialiasing. With `antialias`, a downscale by f first blurs with a Gaussian of sigma
    (f - 1) / 2 per axis, as scikit-image's ``resize`` (which facex uses) does.
    """
    out_h, out_w = (size, size) if isinstance(size, int) else size
    x0, y0, x1, y1 = (float(v) for v in box)
    if not (x1 > x0 and y1 > y0):
        raise ValueError(f"empty crop box {box}")
    fx, fy = (x1 - x0) / out_w, (y1 - y0) / out_h
    height, width = image.shape[:2]
    # Work on the part of the image around the box (plus the blur's reach), clipped to the image.
    sigma_x, sigma_y = (max(0.0, (fx - 1) / 2), max(0.0, (fy - 1) / 2)) if antialias else (0.0, 0.0)
    pad_x, pad_y = int(math.ceil(4 * sigma_x)) + 2, int(math.ceil(4 * sigma_y)) + 2
    left, top = max(0, int(math.floor(x0)) - pad_x), max(0, int(math.floor(y0)) - pad_y)
    right, bottom = min(width, int(math.ceil(x1)) + pad_x), min(height, int(math.ceil(y1)) + pad_y)
    if right <= left or bottom <= top:
        shape = (out_h, out_w) + image.shape[2:]
        return np.zeros(shape, np.float32 if image.dtype.kind == "f" else image.dtype)
    region = np.ascontiguousarray(image[top:bottom, left:right])
    if region.dtype.kind == "f":
        region = region.astype(np.float32)
    if sigma_x > 0 or sigma_y > 0:
        region = cv2.GaussianBlur(region, (0, 0), sigmaX=max(sigma_x, 1e-3), sigmaY=max(sigma_y, 1e-3),
                                  borderType=cv2.BORDER_REFLECT)  # fmt: skip
    # Output pixel centre j + 0.5 maps to the source position x0 + (j + 0.5) * fx, i.e. pixel index
    # x0 + (j + 0.5) * fx - 0.5 (cv2.resize's half-pixel convention); warpAffine takes dst -> src.
    matrix = np.array([[fx, 0.0, x0 - left + 0.5 * fx - 0.5], [0.0, fy, y0 - top + 0.5 * fy - 0.5]])
    return cv2.warpAffine(region, matrix, (out_w, out_h), flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP,
                          borderMode=cv2.BORDER_CONSTANT, borderValue=0)  # fmt: skip


def crop_face(image: np.ndarray, obs_or_landmarks: FaceObservation | np.ndarray, rule: CropRule | str,
              size: int, antialias: bool = True) -> np.ndarray:
    """(size, size[, C]) crop of the face by `rule`, same dtype as `image` (H, W[, C])."""
    return crop_box(image, judge_crop_box(obs_or_landmarks, rule), size, antialias)


# -- calibration file --------------------------------------------------------------------------------


@cache
def calibration() -> dict[str, Any]:
    """The committed calibration record (rules, fit statistics, the command that made it)."""
    return json.loads(resources.files("sie3d.eval.judges").joinpath(CALIBRATION_FILE).read_text())


def load_rule(name: str) -> CropRule:
    """The calibrated crop rule of a judge: ``"facex"`` or ``"facenet"``."""
    rules = calibration()["rules"]
    if name not in rules:
        raise KeyError(f"no crop rule {name!r} in {CALIBRATION_FILE}; known: {sorted(rules)}")
    fields = rules[name]
    return CropRule(name, float(fields["width"]), float(fields["height"]), float(fields["down"]),
                    float(fields.get("right", 0.0)))  # fmt: skip


def rule_to_json(rule: CropRule, digits: int = 4) -> dict[str, float]:
    return {k: round(v, digits) for k, v in asdict(rule).items() if k != "name"}


def box_iou(a: Box, b: Box) -> float:
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def fit_rule(name: str, landmarks: list[np.ndarray], boxes: list[Box], square: bool = False) -> tuple[CropRule, dict]:
    """Rule for detector `boxes` (one per face, matched to the MediaPipe `landmarks` (478, 2|3)).

    Every coefficient is the median over faces of that face's own value (box width / d, centre offset /
    d, ...): each face counts once whatever its size, and a detector's occasional odd box (Haar's
    jitter on tiny or tilted faces) does not pull the rule. With `square`, width and height share one
    coefficient (Haar boxes are square). Returns the rule and statistics: n, relative size residual
    spread (std and median absolute deviation of box / rule - 1), offset spreads (std, units of d), IoU
    of rule and detector boxes (mean, 10th percentile, min).
    """
    if len(landmarks) != len(boxes) or not boxes:
        raise ValueError(f"need matching, non-empty landmark and box lists, got {len(landmarks)} and {len(boxes)}")
    coords = [frame_coordinates(lm, box) for lm, box in zip(landmarks, boxes, strict=True)]
    w, h, down, right = (np.array([c[k] for c in coords]) for k in ("width", "height", "down", "right"))
    if square:
        a_w = a_h = float(np.median((w + h) / 2))
    else:
        a_w, a_h = float(np.median(w)), float(np.median(h))
    rule = CropRule(name, a_w, a_h, float(np.median(down)), float(np.median(right)))
    ious = np.array([box_iou(judge_crop_box(lm, rule), box) for lm, box in zip(landmarks, boxes, strict=True)])
    rel_w, rel_h = w / a_w - 1, h / a_h - 1
    stats = {
        "n": len(boxes),
        "width_rel_residual_std": round(float(rel_w.std()), 4),
        "width_rel_residual_mad": round(float(np.median(np.abs(rel_w))), 4),
        "height_rel_residual_std": round(float(rel_h.std()), 4),
        "height_rel_residual_mad": round(float(np.median(np.abs(rel_h))), 4),
        "down_std": round(float(down.std()), 4),
        "right_std": round(float(right.std()), 4),
        "iou_mean": round(float(ious.mean()), 4),
        "iou_p10": round(float(np.percentile(ious, 10)), 4),
        "iou_min": round(float(ious.min()), 4),
    }
    return rule, stats
