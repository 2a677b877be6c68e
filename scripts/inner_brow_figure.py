"""Before/after figure of the inner-brow release: anger on London Set avatars (CC BY 4.0).

    .venv/bin/python scripts/inner_brow_figure.py [FACES_DIR]

For the three London people whose rest holds the most inner-brow raise (browInnerUp), renders frontally:
the rest face, the anger prototype added to the whole rest (as before the release: the rest's inner raise
kept under the lowered brow) and anger as `on_top_of_rest` poses it now, and writes the upper faces side by
side to docs/results/inner_brow_release.jpg (one row a person). The photos themselves are not copied.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from sie3d.avatar import Models, reconstruct, render_preview
from sie3d.expressions import on_top_of_rest, prototype
from sie3d.head.names import ICT_NAMES
from sie3d.photo import load_photo

PEOPLE = ("london_042_neutral", "london_010_neutral", "london_005_neutral")  # rest browInnerUp 0.77, 0.37, 0.31
SIZE = 512  # px per frontal render
CROP = (126, 90, 386, 350)  # x0, y0, x1, y1 in a SIZE render: forehead to mouth
REPO = Path(__file__).resolve().parents[1]


def main() -> None:
    torch.set_num_threads(1)
    faces = Path(sys.argv[1]) if len(sys.argv) > 1 else REPO.parent / "shared" / "faces"
    inner = [ICT_NAMES.index(n) for n in ("browInnerUp_L", "browInnerUp_R")]
    x0, y0, x1, y1 = CROP
    rows = []
    with Models.load() as models:
        for stem in PEOPLE:
            person = reconstruct(load_photo(faces / f"{stem}.jpg"), models)
            now = on_top_of_rest(person.rest_expression, prototype("anger"))
            kept = now.copy()
            kept[inner] = np.clip(person.rest_expression[inner] + prototype("anger")[inner], 0, 1)
            cells = [render_preview(person, models, c, SIZE, yaws=(0.0,))[y0:y1, x0:x1]
                     for c in (person.rest_expression, kept, now)]  # fmt: skip
            rows.append(np.concatenate(cells, 1))
    out = REPO / "docs" / "results" / "inner_brow_release.jpg"
    Image.fromarray(np.concatenate(rows, 0)).save(out, quality=88)
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
