"""Perception-net timings on a real photo: prints figures, asserts nothing.

    PYTHONPATH=src .venv/bin/python benchmarks/bench_perception.py [--views 4] [--runs 5] [--threads 1]

B copies of a shared photo (``london_001_happy.jpg``, 768^2, as a render of B views would be) read by
1. `FaceMeshReader` (landmark ROI crop -> 478 landmarks -> 52 blendshapes) and
2. `ExpressionReader` (fer face box -> mini-Xception),
each forward only (no_grad) and forward + backward to the images. Median of `--runs`; model loading
once, separately.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable

import numpy as np
import torch
from bench_render import _median_time  # the benchmarks' one timing helper (this folder is on sys.path)

from sie3d.face.landmarker import FaceObserver
from sie3d.perception.face_mesh import load_face_mesh_reader
from sie3d.perception.mini_xception import load_expression_reader
from sie3d.photo import load_photo


def _median_seconds(fn: Callable[[], None], runs: int) -> float:
    return _median_time(fn, runs)[0]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--photo", default="../shared/faces/london_001_happy.jpg")
    parser.add_argument("--views", type=int, default=4)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

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
