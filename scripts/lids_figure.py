"""Before/after figure of the lids fitted to the render (`sie3d.head.calibrate`, render rounds) on London Set
avatars (CC BY 4.0).

    .venv/bin/python scripts/lids_figure.py [FACES_DIR]

For six London people, the neutral avatar's eyes, rendered frontally at 1024 px: "before" fits with a calibration
learned from the photos alone (`CalibrationSettings(render_rounds=0)`, learned here on the 24 neutral photos) and
the lid margins weighted like every landmark (`FitSettings(lid_weight=1)`), as sie3d fitted before December 4;
"after" with the committed calibration and today's fit. MediaPipe's eye opening of each render over the photo's
is printed. Writes docs/results/lids_render/eye_bands.jpg: per person a row, before | after. The photos
themselves are not copied.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from sie3d.avatar import Models
from sie3d.head.calibrate import CalibrationSettings, calibration_photos, learn, observe, rest_ceiling
from sie3d.head.calibration import LandmarkCalibration
from sie3d.head.eyes import eye_opening
from sie3d.head.fit import FitSettings, HeadFitter
from sie3d.head.texture import build_textures, render_layout
from sie3d.photo import photo_from_array
from sie3d.previews import TexturedHead, preview_sheet

PEOPLE = ("london_003", "london_010", "london_025", "london_034", "london_042", "london_062")
SIZE = 1024  # px per frontal render
CROP = (230, 330, 794, 530)  # x0, y0, x1, y1 in a SIZE render: both eyes
REPO = Path(__file__).resolve().parents[1]
OUT = REPO / "docs" / "results" / "lids_render" / "eye_bands.jpg"


def main() -> None:
    faces = Path(sys.argv[1]) if len(sys.argv) > 1 else REPO.parent / "shared" / "faces"
    torch.set_num_threads(1)
    paths = calibration_photos(faces)
    observations, photos = observe(paths)
    by_name = {path.stem.removesuffix("_neutral"): k for k, path in enumerate(paths)}
    x0, y0, x1, y1 = CROP
    with Models.load() as models:
        head, observer = models.head, models.observer
        offsets, _ = learn(observations, CalibrationSettings(render_rounds=0), head=head, log=lambda *_: None)
        fitters = {
            "before": HeadFitter(head, FitSettings(lid_weight=1.0),
                                 LandmarkCalibration(offsets, rest_ceiling(observations))),
            "after": models.fitter,
        }  # fmt: skip
        layout = render_layout(head)
        rows = []
        for name in PEOPLE:
            obs, rgb = observations[by_name[name]], photos[by_name[name]]
            row, ratios = [], []
            for fitter in fitters.values():
                fit = fitter.fit(obs)
                textures = build_textures(rgb, obs, fit, head, size=1024)
                front = preview_sheet(TexturedHead.build(head, layout, textures), fit.identity, fit.rest_expression,
                                      SIZE, yaws=(0.0,))  # fmt: skip
                read = observer.observe(photo_from_array(front))[0].landmarks_px
                ratios.append(eye_opening(read) / eye_opening(obs.landmarks_px))
                row.append(front[y0:y1, x0:x1])
            print(f"{name}: eye opening over the photo's, before {ratios[0]:.2f}, after {ratios[1]:.2f}")
            gap = np.full((y1 - y0, 8, 3), 255, np.uint8)
            rows.append(np.concatenate([row[0], gap, row[1]], 1))
    sheet = np.concatenate([np.concatenate([r, np.full((8, r.shape[1], 3), 255, np.uint8)]) for r in rows])
    OUT.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(sheet).resize((sheet.shape[1] // 2, sheet.shape[0] // 2), Image.LANCZOS).save(OUT, quality=88)
    print(f"wrote {OUT}")


if __name__ == "__main__":
    main()
