"""Does keeping the person's rest eye/brow shape make the neutral avatar look more like them?

    .venv/bin/python benchmarks/rest_pose_identity.py [FACES_DIR]

For each London Set neutral photo: reconstruct, render the avatar into the photo (`composite`) once with
the fitted rest expression (what sie3d outputs as "neutral") and once with an all-zero expression, and
measure the held-out FaceNet cosine to the photo (crop by the judges' landmark rule on MediaPipe's
landmarks of each image). Prints mean, bootstrap 95% interval and per-photo wins.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

from sie3d.avatar import Models, ReconstructConfig, composite, reconstruct
from sie3d.eval.judges.identity import FacenetJudge
from sie3d.photo import load_photo, photo_from_array


def bootstrap_mean(values: np.ndarray, runs: int = 2000, seed: int = 0) -> tuple[float, float]:
    rng = np.random.default_rng(seed)
    means = rng.choice(values, size=(runs, len(values)), replace=True).mean(1)
    return float(np.percentile(means, 2.5)), float(np.percentile(means, 97.5))


def main() -> None:
    faces = Path(sys.argv[1]) if len(sys.argv) > 1 else Path(__file__).resolve().parents[2] / "shared" / "faces"
    photos = sorted(faces.glob("london_*_neutral.jpg"))
    judge, models = FacenetJudge(), Models.load()
    scores = {"rest kept (sie3d's neutral)": [], "all-zero expression": []}
    try:
        for path in photos:
            photo = load_photo(path)
            person = reconstruct(photo, models, ReconstructConfig(texture_size=512))
            reference = judge(photo.rgb, person.observation)
            for name, expression in zip(scores, (person.rest_expression, np.zeros(53, np.float32)), strict=True):
                image = composite(person, models, expression)
                obs, _ = models.observer.observe(photo_from_array(image))
                scores[name].append(float(judge(image, obs) @ reference))
    finally:
        models.close()
    for name, values in scores.items():
        values = np.asarray(values)
        low, high = bootstrap_mean(values)
        print(f"{name:28s} FaceNet cosine to the photo: mean {values.mean():.3f} [95% CI {low:.3f}, {high:.3f}], "
              f"n={len(values)}")
    wins = np.sum(np.asarray(scores["rest kept (sie3d's neutral)"]) > np.asarray(scores["all-zero expression"]))
    print(f"rest kept scores higher on {wins}/{len(photos)} photos")


if __name__ == "__main__":
    main()
