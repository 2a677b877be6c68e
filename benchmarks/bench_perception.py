"""Perception-net timings on a real photo: prints figures, asserts nothing.

    PYTHONPATH=src .venv/bin/python benchmarks/bench_perception.py [--views 4] [--runs 5] [--threads 1]
    PYTHONPATH=src .venv/bin/python benchmarks/bench_perception.py --accuracy [--faces ../shared/faces]

B copies of a shared photo (``london_001_happy.jpg``, 768^2, as a render of B views would be) read by
1. `FaceMeshReader` (landmark ROI crop -> 478 landmarks -> 52 blendshapes) and
2. `ExpressionReader` (fer face box -> mini-Xception),
each forward only (no_grad) and forward + backward to the images. Median of `--runs`; model loading
once, separately. With ``--accuracy``: mini-Xception's top-1 (through its landmark-placed crop) on every
shared photo with an expression label, per label.
"""

from __future__ import annotations

import argparse
import csv
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from bench_render import _median_time  # the benchmarks' one timing helper (this folder is on sys.path)

from sie3d.face.landmarker import FaceObserver
from sie3d.perception.face_mesh import load_face_mesh_reader
from sie3d.perception.mini_xception import load_expression_reader
from sie3d.photo import load_photo


def _median_seconds(fn: Callable[[], None], runs: int) -> float:
    return _median_time(fn, runs)[0]


def accuracy(faces: Path) -> None:
    """Print mini-Xception's top-1 per expression label of the shared photos' manifest."""
    from sie3d.expressions import EMOTIONS

    reader = load_expression_reader()
    with open(faces / "manifest.csv", newline="") as stream:
        labelled = [r for r in csv.DictReader(stream) if r["expression"]]
    hits: dict[str, list[str]] = {}
    with FaceObserver() as observer:
        for row in labelled:
            photo = load_photo(faces / row["filename"])
            found = observer.observe_all(photo)
            if not found:
                continue
            image = torch.from_numpy(np.array(photo.rgb)).permute(2, 0, 1)[None].float() / 255
            with torch.no_grad():
                emotions = reader(image, torch.from_numpy(found[0].landmarks_px)[None]).emotions[0]
            hits.setdefault(row["expression"], []).append(EMOTIONS[int(emotions.argmax())])
    for label, predicted in sorted(hits.items()):
        right = sum(p[:3] == label[:3] for p in predicted)  # "angry" / "anger", "sad" / "sadness" ...
        print(f"{label}: {right}/{len(predicted)} read as {label}; all readings: "
              f"{dict(sorted((p, predicted.count(p)) for p in set(predicted)))}")  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--photo", default="../shared/faces/london_001_happy.jpg")
    parser.add_argument("--views", type=int, default=4)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--accuracy", action="store_true", help="mini-Xception on the labelled shared photos")
    parser.add_argument("--faces", type=Path, default=Path("../shared/faces"))
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    if args.accuracy:
        accuracy(args.faces)
        return

    photo = load_photo(args.photo)
    with FaceObserver() as observer:
        obs = observer.observe(photo)[0]
    start = time.perf_counter()
    mesh = load_face_mesh_reader()
    middle = time.perf_counter()
    expression = load_expression_reader()
    loaded = time.perf_counter()
    images = (torch.from_numpy(np.array(photo.rgb)).permute(2, 0, 1)[None].float() / 255).repeat(args.views, 1, 1, 1)
    landmarks = torch.from_numpy(obs.landmarks_px)[None].repeat(args.views, 1, 1)

    def forward(reader) -> Callable[[], None]:
        def run() -> None:
            with torch.no_grad():
                reader(images, landmarks)
        return run

    def backward(reader, score) -> Callable[[], None]:
        def run() -> None:
            x = images.clone().requires_grad_(True)
            score(reader(x, landmarks)).backward()
        return run

    print(f"photo {args.photo} ({photo.width}x{photo.height}), {args.views} views, {args.threads} threads, "
          f"median of {args.runs}")  # fmt: skip
    print(f"load: face mesh nets {middle - start:.2f} s, mini-Xception {loaded - middle:.2f} s")
    rows = (
        ("FaceMeshReader (crop 256 + landmarks + blendshapes)", mesh, lambda r: r.blendshapes.sum()),
        ("ExpressionReader (crop 64 + mini-Xception)", expression, lambda r: r.logits[:, 3].sum()),
    )
    for name, reader, score in rows:
        print(f"{name}: forward {_median_seconds(forward(reader), args.runs) * 1000:.0f} ms, "
              f"forward + backward {_median_seconds(backward(reader, score), args.runs) * 1000:.0f} ms")  # fmt: skip


if __name__ == "__main__":
    main()
