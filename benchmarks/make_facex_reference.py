"""Reference facex predictions from facex's own pipeline, for tests/test_judges.py.

facex 1.1.0 (``EmotionClassifier.predict``) converts the frame to gray, finds Haar-cascade boxes with
``detectMultiScale(gray, 1.1, 4)``, slices each box and feeds ``skimage.transform.resize(box, (200, 200, 3))``
to its TFLite interpreter. facex imports TensorFlow, which we never install, so this script redoes
exactly those calls with scikit-image and LiteRT (the TFLite interpreter without TensorFlow). It imports
nothing from sie3d and runs in a throwaway venv. The Haar boxes are read from
``tests/fixtures/judge_crop_detections.json`` (written by calibrate_judge_crops.py with the same
``detectMultiScale(gray, 1.1, 4)`` call; OpenCV 5.0's main package has no CascadeClassifier):

    python3 -m venv /tmp/facexref && /tmp/facexref/bin/pip install scikit-image ai-edge-litert==2.3.0 \\
        "opencv-python-headless==5.0.*" pillow numpy
    /tmp/facexref/bin/python benchmarks/make_facex_reference.py tests/fixtures/facex_reference.npz \\
        --model /tmp/sie3d-cache/models/facex-1.1.0/facex/assets/model_optimized.tflite

The fixture holds no pixels: per detected face the photo name, the Haar box (x, y, w, h) and facex's
7 probabilities. Photos are decoded with Pillow as sie3d.photo does (none of these needs EXIF rotation
or downscaling).
"""

from __future__ import annotations

import argparse
import csv
import logging
import sys
from importlib import metadata
from pathlib import Path

import numpy as np

log = logging.getLogger("make_facex_reference")

REPO = Path(__file__).resolve().parents[1]
EXTRA = ("max_angry.jpg", "max_happy-baby.jpeg", "max_neutral.jpeg", "max_sad-baby.jpeg", "max_surprised.jpeg",
         "mpl_grace_hopper.jpg", "skimage_astronaut.png")  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("out", type=Path)
    parser.add_argument("--model", type=Path, required=True, help="facex/assets/model_optimized.tflite")
    parser.add_argument("--faces", type=Path, default=REPO.parent / "shared" / "faces")
    parser.add_argument("--detections", type=Path, default=REPO / "tests" / "fixtures" / "judge_crop_detections.json")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")

    import json

    import cv2
    from ai_edge_litert.interpreter import Interpreter
    from PIL import Image
    from skimage.transform import resize

    with open(args.faces / "manifest.csv", newline="") as stream:
        london = sorted(r["filename"] for r in csv.DictReader(stream) if r["filename"].startswith("london_"))
    detections = json.loads(args.detections.read_text())["photos"]
    interpreter = Interpreter(model_path=str(args.model), num_threads=1)
    interpreter.allocate_tensors()
    index_in = interpreter.get_input_details()[0]["index"]
    index_out = interpreter.get_output_details()[0]["index"]

    names, boxes, probs = [], [], []
    for name in [*london, *EXTRA]:
        rgb = np.asarray(Image.open(args.faces / name).convert("RGB"))
        gray = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)  # facex: BGR2GRAY of a BGR frame, the same luma
        for x0, y0, x1, y1 in detections[name]["haar"]:
            x, y, w, h = round(x0), round(y0), round(x1 - x0), round(y1 - y0)
            face = gray[y : y + h, x : x + w]
            img = resize(face, (200, 200, 3))[None]  # facex utils.input_resize
            if np.max(img) > 1:
                img = img / 255.0
            interpreter.set_tensor(index_in, np.array(img, dtype=np.float32))
            interpreter.invoke()
            names.append(name)
            boxes.append((x, y, w, h))
            probs.append(interpreter.get_tensor(index_out)[0].copy())
    versions = {p: metadata.version(p) for p in ("scikit-image", "ai-edge-litert", "opencv-python-headless")}
    np.savez_compressed(args.out, names=np.array(names), boxes_xywh=np.array(boxes, np.int32),
                        probs=np.array(probs, np.float32), runtime=np.array(repr(versions)))  # fmt: skip
    log.info("wrote %d faces of %d photos to %s (%s)", len(names), len(set(names)), args.out, versions)
    return 0


if __name__ == "__main__":
    sys.exit(main())
