"""Hands in a photo (`HandDetector`), so that a hand over the face is not painted into the face's texture.

A hand on the chin or over the mouth is a common pose, and the face landmarker places the face's landmarks under
it all the same: without this, the texture took the hand's skin for the face's. The hands are found as MediaPipe's
hand landmarker finds them, with its two models (asset ``hand_landmarker``: ``palm_detection_full.tflite`` and
``hand_landmark_full.tflite`` from the ``mediapipe==0.10.21`` wheel, Google, Apache-2.0), rebuilt by sie3d's own
.tflite -> torch converter (`sie3d.perception.tflite_graph`; tests/test_hands.py compares them with LiteRT):

1. **Palm detection** on the photo letterboxed into 192 x 192 (RGB in [0, 1]): 2016 SSD anchors (a 24 x 24 grid
   of 2 at stride 8 and a 12 x 12 grid of 6 at stride 16, all of unit size), each with a box and 7 palm keypoints
   as offsets in input pixels and a logit; kept above `HandConfig.palm_score`, merged by weighted non-maximum
   suppression (IoU above `HandConfig.palm_overlap`).
2. **The hand's region** from each palm: rotated so that the wrist (keypoint 0) lies below the middle finger's
   knuckle (keypoint 2), moved half the palm box's height towards the fingers and widened to a square 2.6 times
   the box's longer side -- MediaPipe's own rule for where the whole hand lies.
3. **Hand landmarks** on that square, resampled to 224 x 224: 21 points in the square's pixels and a presence
   score; a hand counts above `HandConfig.presence`.

`hand_mask` turns the hands' points into the photo's pixels they cover: each hand's convex hull, widened by
`HandConfig.margin` of the hand's size (the points lie on the bones; the fingers' flesh and the palm's edge lie
beyond them).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import cv2
import numpy as np
import torch

from sie3d.assets.registry import asset_file
from sie3d.errors import AssetError
from sie3d.perception.tflite_graph import TFLiteFormatError, read_tflite

__all__ = ["HAND_ASSET", "Hand", "HandConfig", "HandDetector", "hand_mask", "palm_anchors"]

HAND_ASSET = "hand_landmarker"
PALM_FILE = "mediapipe/modules/palm_detection/palm_detection_full.tflite"
LANDMARK_FILE = "mediapipe/modules/hand_landmark/hand_landmark_full.tflite"
PALM_SIZE = 192  # palm detection's input side
LANDMARK_SIZE = 224  # hand landmarks' input side


@dataclass(frozen=True)
class HandConfig:
    """MediaPipe's own settings for its hand landmarker, but `margin`: chosen by looking at hands over faces."""

    palm_score: float = 0.5  # a palm counts above this (sigmoid of the logit)
    palm_overlap: float = 0.3  # palms overlapping more than this (IoU) are one
    region_scale: float = 2.6  # the hand's square: this many times the palm box's longer side ...
    region_shift: float = 0.5  # ... moved this many palm-box heights towards the fingers
    presence: float = 0.5  # a hand counts when its landmark model's presence score is above this
    margin: float = 0.15  # the hull of the 21 points is widened by this fraction of the hand's size
    max_hands: int = 4


@dataclass(frozen=True)
class Hand:
    """A hand in the photo: ``landmarks`` (21, 2) pixels (MediaPipe's order: wrist, then thumb to little finger,
    base to tip), ``score`` its presence, ``palm_score`` the palm detector's."""

    landmarks: np.ndarray
    score: float
    palm_score: float


def palm_anchors() -> np.ndarray:
    """(2016, 2) the palm detector's anchor centres in [0, 1] (x, y): per layer grid cell, row by row."""
    centres = []
    for stride, per_cell in ((8, 2), (16, 6)):
        cells = PALM_SIZE // stride
        y, x = np.meshgrid((np.arange(cells) + 0.5) / cells, (np.arange(cells) + 0.5) / cells, indexing="ij")
        grid = np.stack([x.ravel(), y.ravel()], -1)
        centres.append(np.repeat(grid, per_cell, axis=0))
    return np.concatenate(centres).astype(np.float32)


class HandDetector:
    """The two frozen hand models (`TFLiteGraph`s ``.palm`` and ``.landmarks``); ``detector(rgb)`` gives the hands
    of an (H, W, 3) uint8 RGB photo, most present first."""

    def __init__(self, folder: str | Path | None = None, config: HandConfig = HandConfig()) -> None:
        self.config = config
        graphs = []
        for file, size in ((PALM_FILE, PALM_SIZE), (LANDMARK_FILE, LANDMARK_SIZE)):
            path = Path(folder) / Path(file).name if folder is not None else asset_file(HAND_ASSET, file)
            try:
                graph = read_tflite(path)
            except (OSError, TFLiteFormatError) as exc:
                raise AssetError(f"cannot read the hand model {path}: {exc}",
                                 f"run `sie3d assets fetch {HAND_ASSET}` to restore it") from None  # fmt: skip
            if graph.tensors[graph.input_ids[0]].shape != (1, size, size, 3):
                raise AssetError(f"{path} does not take a (1, {size}, {size}, 3) image",
                                 f"run `sie3d assets fetch {HAND_ASSET}` to restore it")  # fmt: skip
            graphs.append(graph)
        self.palm, self.landmarks = graphs

    @cached_property
    def anchors(self) -> np.ndarray:
        return palm_anchors()

    @staticmethod
    def palm_input(rgb: np.ndarray) -> tuple[np.ndarray, float, np.ndarray]:
        """(1, 192, 192, 3) float32 RGB in [0, 1]: `rgb` (H, W, 3) uint8 letterboxed (scaled to fit, centred, black
        around), with the scale and the (x, y) offset of the photo's corner in it."""
        height, width = rgb.shape[:2]
        scale = PALM_SIZE / max(height, width)
        small = cv2.resize(rgb, (max(1, round(width * scale)), max(1, round(height * scale))),
                           interpolation=cv2.INTER_AREA)  # fmt: skip
        left, top = (PALM_SIZE - small.shape[1]) // 2, (PALM_SIZE - small.shape[0]) // 2
        boxed = np.zeros((1, PALM_SIZE, PALM_SIZE, 3), np.float32)
        boxed[0, top : top + small.shape[0], left : left + small.shape[1]] = small / 255.0
        return boxed, scale, np.array([left, top], np.float32)

    @staticmethod
    def landmark_input(rgb: np.ndarray, centre: np.ndarray, side: float, rotation: float
                       ) -> tuple[np.ndarray, np.ndarray]:  # fmt: skip
        """(1, 224, 224, 3) float32 RGB in [0, 1]: the square of `rgb` around `centre` (photo pixels), `side` pixels
        wide, turned by `rotation` (radians; its axes x (cos, sin) and y (-sin, cos), image y down); and the (2, 3)
        affine map from its pixels to the photo's."""
        cos, sin = math.cos(rotation), math.sin(rotation)
        to_photo = np.array([[cos * side / LANDMARK_SIZE, -sin * side / LANDMARK_SIZE, 0.0],
                             [sin * side / LANDMARK_SIZE, cos * side / LANDMARK_SIZE, 0.0]])  # fmt: skip
        to_photo[:, 2] = centre - to_photo[:, :2] @ np.array([LANDMARK_SIZE / 2, LANDMARK_SIZE / 2])
        crop = cv2.warpAffine(rgb, to_photo, (LANDMARK_SIZE, LANDMARK_SIZE),
                              flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP, borderMode=cv2.BORDER_CONSTANT)
        return (crop.astype(np.float32) / 255.0)[None], to_photo

    def palms(self, rgb: np.ndarray) -> list[tuple[np.ndarray, np.ndarray, float]]:
        """The palms of `rgb`: (box (4,) x0 y0 x1 y1, keypoints (7, 2), score) in photo pixels, best first."""
        boxed, scale, offset = self.palm_input(rgb)
        with torch.no_grad():
            raw, logits = (t[0].numpy() for t in self.palm(torch.from_numpy(boxed)))
        scores = 1.0 / (1.0 + np.exp(-np.clip(logits[:, 0], -100.0, 100.0)))
        keep = np.flatnonzero(scores > self.config.palm_score)
        if len(keep) == 0:
            return []
        anchors = self.anchors[keep]
        values = raw[keep] / PALM_SIZE  # offsets in the letterbox's unit square
        centre, size = values[:, :2] + anchors, values[:, 2:4]
        boxes = np.concatenate([centre - size / 2, centre + size / 2], 1)
        points = values[:, 4:18].reshape(-1, 7, 2) + anchors[:, None]
        palms = []
        for members, score in _weighted_nms(boxes, scores[keep], self.config.palm_overlap):
            weights = scores[keep][members, None]
            box = (boxes[members] * weights).sum(0) / weights.sum()
            keypoints = (points[members] * weights[..., None]).sum(0) / weights.sum()
            palms.append(((box.reshape(2, 2) * PALM_SIZE - offset).reshape(4) / scale,
                          (keypoints * PALM_SIZE - offset) / scale, score))  # fmt: skip
        return palms[: self.config.max_hands]

    def region(self, box: np.ndarray, keypoints: np.ndarray) -> tuple[np.ndarray, float, float]:
        """The square where a palm's hand lies: (centre (2,), side, rotation in radians), photo pixels."""
        wrist, knuckle = keypoints[0], keypoints[2]
        rotation = math.pi / 2 - math.atan2(-(knuckle[1] - wrist[1]), knuckle[0] - wrist[0])
        rotation = (rotation + math.pi) % (2 * math.pi) - math.pi
        width, height = float(box[2] - box[0]), float(box[3] - box[1])
        shift = -self.config.region_shift * height  # along the square's own y axis (towards the fingers)
        centre = (box[:2] + box[2:]) / 2 + np.array([-shift * math.sin(rotation), shift * math.cos(rotation)])
        return centre.astype(np.float32), max(width, height) * self.config.region_scale, rotation

    def __call__(self, rgb: np.ndarray) -> list[Hand]:
        hands = []
        for box, keypoints, palm_score in self.palms(rgb):
            crop, to_photo = self.landmark_input(rgb, *self.region(box, keypoints))
            with torch.no_grad():
                points, presence, _, _ = self.landmarks(torch.from_numpy(crop))
            score = float(presence[0, 0])
            if score <= self.config.presence:
                continue
            uv = points[0].numpy().reshape(21, 3)[:, :2]
            landmarks = uv @ to_photo[:, :2].T + to_photo[:, 2]
            hands.append(Hand(landmarks.astype(np.float32), score, float(palm_score)))
        return sorted(hands, key=lambda h: -h.score)


def _weighted_nms(boxes: np.ndarray, scores: np.ndarray, overlap: float) -> list[tuple[np.ndarray, float]]:
    """Clusters of `boxes` (N, 4) x0 y0 x1 y1: the best remaining box and every remaining box overlapping it by
    more than `overlap` (IoU), best first; (member indices, the best's score)."""
    order = list(np.argsort(-scores))
    area = np.prod(np.maximum(boxes[:, 2:] - boxes[:, :2], 0), 1)
    clusters = []
    while order:
        best, rest = order[0], np.array(order)
        low, high = np.maximum(boxes[best, :2], boxes[rest, :2]), np.minimum(boxes[best, 2:], boxes[rest, 2:])
        inter = np.prod(np.maximum(high - low, 0), 1)
        iou = inter / np.maximum(area[best] + area[rest] - inter, 1e-9)
        members = rest[(iou > overlap) | (rest == best)]  # the best is its own (a degenerate box overlaps nothing)
        clusters.append((members, float(scores[best])))
        merged = set(members.tolist())
        order = [i for i in order if i not in merged]
    return clusters


def hand_mask(landmarks_px: np.ndarray, shape: tuple[int, int], margin: float = HandConfig.margin) -> np.ndarray:
    """(H, W) bool of `shape`: the pixels the hands whose points are `landmarks_px` (K, 21, 2) cover -- each
    hand's convex hull, widened by `margin` of its size (the diagonal of its points' box)."""
    mask = np.zeros(shape, np.uint8)
    for points in np.asarray(landmarks_px, np.float32).reshape(-1, 21, 2):
        hull = cv2.convexHull(points)[:, 0]
        away = hull - hull.mean(0)
        size = float(np.linalg.norm(np.ptp(points, axis=0)))
        grown = hull + away / np.maximum(np.linalg.norm(away, axis=1, keepdims=True), 1e-6) * margin * size
        cv2.fillConvexPoly(mask, np.round(grown).astype(np.int32), 1)
    return mask.astype(bool)
