"""Before/after figure of each person's own blink shapes (`sie3d.head.eyelids`) on London Set avatars (CC BY 4.0).

    .venv/bin/python scripts/eyelids_figure.py [FACES_DIR]

For three London people, the eyes at rest with both eyes half closed (blink 0.5) and shut (blink 1), rendered
frontally at 1024 px: "before" poses ICT's plain eyeBlink shapes added linearly (as sie3d did before the
person's own shapes), "after" the person's own. Writes the eye regions to docs/results/eyelids/shut_eyes.jpg:
per person a row, before | after for each blink. The photos themselves are not copied.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from sie3d.avatar import Models, ReconstructConfig, _textured, reconstruct
from sie3d.hair.config import HairConfig
from sie3d.head.model import BLINKS
from sie3d.photo import load_photo
from sie3d.previews import preview_cameras, to_image

PEOPLE = ("london_001_neutral", "london_007_neutral", "london_024_neutral")  # the 1st, 2nd and 14th most open
BLINK_WEIGHTS = (0.5, 1.0)
SIZE = 1024  # px per frontal render
CROP = (230, 330, 794, 530)  # x0, y0, x1, y1 in a SIZE render: both eyes
REPO = Path(__file__).resolve().parents[1]


def main() -> None:
    faces = Path(sys.argv[1]) if len(sys.argv) > 1 else REPO.parent / "shared" / "faces"
    x0, y0, x1, y1 = CROP
    rows = []
    with Models.load() as models:
        head = models.head
        for name in PEOPLE:
            person = reconstruct(load_photo(faces / f"{name}.jpg"), models,
                                 ReconstructConfig(texture_size=1024, hair=HairConfig(enabled=False)))  # fmt: skip
            textured = _textured(person, models)
            identity = torch.from_numpy(person.fit.identity)[None]
            rest = person.rest_expression.astype(np.float32)
            cells = []
            for weight in BLINK_WEIGHTS:
                posed = rest.copy()
                posed[BLINKS] = weight
                with torch.no_grad():
                    before = head(identity, torch.from_numpy(posed)[None], own_lids=False)[0]
                    after = head(identity, torch.from_numpy(posed)[None])[0]
                for verts in (before, after):
                    cams = preview_cameras(head, after, (0.0,), SIZE)  # one framing for both
                    cells.append(to_image(textured.render(verts, cams).rgb[0])[y0:y1, x0:x1])
                cells.append(np.full((y1 - y0, 12, 3), 255, np.uint8))
            rows.append(np.concatenate(cells[:-1], 1))
    figure = np.concatenate([np.pad(r, ((0, 8), (0, 0), (0, 0)), constant_values=255) for r in rows])
    out = REPO / "docs" / "results" / "eyelids" / "shut_eyes.jpg"
    out.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(figure).resize((figure.shape[1] // 2, figure.shape[0] // 2), Image.LANCZOS).save(out, quality=88)
    print(f"wrote {out.relative_to(REPO)}")


if __name__ == "__main__":
    main()
