"""Before/after figure of the inside of the mouth lit through the lips (`sie3d.render.occlusion.MouthInterior`).

    .venv/bin/python scripts/mouth_light_figure.py [FACES_DIR]

For two London people (London Set, CC BY 4.0), the mouth of the surprise, fear and happy prototypes and of an
open-mouthed shout (jaw and lips wide open), rendered frontally at 1024 px: "before" without the mouth's depth
light (the teeth, gums and tongue with only their baked depth darkening and the lips' opening dimming, as before
December 3's seventh session), "after" with it (the default). Writes the mouth regions to
docs/results/mouth_light.jpg: per person a row of before | after pairs. The photos themselves are not copied.
"""

from __future__ import annotations

import dataclasses
import sys
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from sie3d.avatar import Models, ReconstructConfig, _textured, reconstruct
from sie3d.expressions import on_top_of_rest, prototype
from sie3d.hair.config import HairConfig
from sie3d.head.names import ICT_NAMES
from sie3d.photo import load_photo
from sie3d.previews import preview_cameras, to_image
from sie3d.render import project

PEOPLE = ("london_003_neutral", "london_025_neutral")
SHOUT = {"jawOpen": 0.7, "mouthFunnel": 0.2, **{f"mouthLowerDown_{s}": 0.4 for s in "LR"},
         **{f"mouthUpperUp_{s}": 0.3 for s in "LR"}}  # fmt: skip
SIZE = 1024  # px per frontal render
HALF = (150, 90)  # half the crop around the mouth's centre, px
REPO = Path(__file__).resolve().parents[1]


def poses(rest: np.ndarray) -> list[np.ndarray]:
    shout = np.zeros(len(ICT_NAMES), np.float32)
    for name, value in SHOUT.items():
        shout[ICT_NAMES.index(name)] = value
    return [on_top_of_rest(rest, prototype(e)) for e in ("surprise", "fear", "happy")] + [on_top_of_rest(rest, shout)]


def main() -> None:
    faces = Path(sys.argv[1]) if len(sys.argv) > 1 else REPO.parent / "shared" / "faces"
    rows = []
    with Models.load() as models:
        head = models.head
        inner_lips = head.topology.landmarks_68[60:68]
        for name in PEOPLE:
            person = reconstruct(load_photo(faces / f"{name}.jpg"), models,
                                 ReconstructConfig(texture_size=1024, hair=HairConfig(enabled=False)))  # fmt: skip
            after = _textured(person, models)
            before = dataclasses.replace(after, occlusion=dataclasses.replace(after.occlusion, mouth=None))
            cells = []
            for expression in poses(person.rest_expression):
                verts = after.verts(person.fit.identity, expression)
                cams = preview_cameras(head, verts, (0.0,), SIZE)
                cx, cy = (int(v) for v in project(verts[inner_lips], cams)[0][0].mean(0))
                for textured in (before, after):
                    image = to_image(textured.render(verts, cams).rgb[0])
                    cells.append(image[cy - HALF[1] : cy + HALF[1], cx - HALF[0] : cx + HALF[0]])
                cells.append(np.full((2 * HALF[1], 12, 3), 255, np.uint8))
            rows.append(np.concatenate(cells[:-1], 1))
    figure = np.concatenate([np.pad(r, ((0, 8), (0, 0), (0, 0)), constant_values=255) for r in rows])
    out = REPO / "docs" / "results" / "mouth_light.jpg"
    Image.fromarray(figure).resize((figure.shape[1] // 2, figure.shape[0] // 2), Image.LANCZOS).save(out, quality=88)
    print(f"wrote {out}")


if __name__ == "__main__":
    torch.set_num_threads(2)
    main()
