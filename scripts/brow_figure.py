"""Figure of a trial not adopted: anger with browDown lowering the brow's inner head most (docs/RESULTS.md, "Brows
that slope down to the nose"), on avatars of shared photos (London Set, CC BY 4.0; Grace Hopper, public domain).

    .venv/bin/python scripts/brow_figure.py [FACES_DIR]

ICT's browDown lowers the middle of the brow most and its inner head half as far. The trial weighted the shape's
downward offsets towards the inner head: x (1 + INNER) at the inner head and inward of it, falling linearly to x 1
at the brow's middle (iBUG landmarks 22 and 24 of ICT's neutral head, by the distance from the midline). For each
person: the rest face, anger with the rig as shipped, anger with the trial's browDown; frontal, upper face; one row
a person, written to docs/results/brow_inner/anger_before_after.jpg. (The trial also re-learned the landmark
calibration for its rig; the figure poses the shipped fit.) The photos themselves are not copied.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from sie3d.avatar import Models, reconstruct, render_preview
from sie3d.expressions import on_top_of_rest, prototype
from sie3d.head.model import HeadModel
from sie3d.head.names import ICT_NAMES
from sie3d.photo import load_photo

PEOPLE = ("london_001_neutral.jpg", "london_012_neutral.jpg", "london_025_neutral.jpg", "mpl_grace_hopper.jpg")
INNER = 1.0  # the trial's extra lowering at the inner head, as a fraction of the shape's own there
SIZE = 512  # px per frontal render
CROP = (96, 80, 416, 300)  # x0, y0, x1, y1 in a SIZE render: forehead to the tip of the nose
REPO = Path(__file__).resolve().parents[1]


def with_inner_brow_lowering(head: HeadModel, inner: float = INNER) -> HeadModel:
    """`head` with browDown_L/R's downward (y) offsets weighted towards the brow's inner head (in place)."""
    neutral = head.neutral.numpy()
    inner_head, middle = (abs(float(neutral[head.topology.landmarks_68[k], 0])) for k in (22, 24))
    toward_inner = np.clip((middle - np.abs(neutral[:, 0])) / (middle - inner_head), 0.0, 1.0)
    basis = head.expression_basis.view(len(ICT_NAMES), head.n_verts, 3)
    for name in ("browDown_L", "browDown_R"):
        basis[ICT_NAMES.index(name), :, 1] *= torch.from_numpy(1.0 + inner * toward_inner).to(basis.dtype)
    return head


def main() -> None:
    torch.set_num_threads(1)
    faces = Path(sys.argv[1]) if len(sys.argv) > 1 else REPO.parent / "shared" / "faces"
    x0, y0, x1, y1 = CROP
    rows = []
    with Models.load() as models, Models.load() as trial:
        with_inner_brow_lowering(trial.head)
        for name in PEOPLE:
            person = reconstruct(load_photo(faces / name), models)
            anger = on_top_of_rest(person.rest_expression, prototype("anger"))
            cells = [render_preview(person, m, c, SIZE, yaws=(0.0,))[y0:y1, x0:x1]
                     for m, c in ((models, person.rest_expression), (models, anger), (trial, anger))]  # fmt: skip
            rows.append(np.concatenate(cells, 1))
    out = REPO / "docs" / "results" / "brow_inner" / "anger_before_after.jpg"
    out.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.concatenate(rows, 0)).save(out, quality=88)
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
