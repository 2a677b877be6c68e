"""Before/after figure of the expression wrinkles (or occlusion): close-ups of London Set avatars (CC BY 4.0).

    .venv/bin/python scripts/wrinkle_figure.py [--occlusion] [FACES_DIR]

For a few people of different ages and skin tones (the London Set's own metadata), renders each emotion
prototype frontally without and with its wrinkles and writes the upper face (forehead, glabella, eyes)
and the whole face at 2x to docs/results/wrinkles_before_after.jpg; with ``--occlusion``, without and
with the expression's occlusion (`sie3d.render.occlusion`, no wrinkles) to
docs/results/occlusion_before_after.jpg. The photos themselves are not copied.
"""

from __future__ import annotations

import dataclasses
import sys
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageDraw, ImageFont

from sie3d.avatar import Models, ReconstructConfig, reconstruct, render_preview, retextured
from sie3d.expressions import on_top_of_rest, prototype
from sie3d.photo import load_photo

PEOPLE = (("london_021_neutral", "48, man"), ("london_025_neutral", "21, woman"), ("london_024_neutral", "47, man"),
          ("london_038_neutral", "40, woman"))  # fmt: skip
EMOTIONS = ("anger", "sadness", "surprise", "disgust", "happy")
SIZE = 400  # px per frontal render
CROP = (105, 95, 295, 285)  # x0, y0, x1, y1 of the face in a SIZE render: forehead to mouth
ZOOM = 2
REPO = Path(__file__).resolve().parents[1]


def main() -> None:
    torch.set_num_threads(1)
    args = sys.argv[1:]
    feature = "occlusion" if "--occlusion" in args else "wrinkles"
    args = [a for a in args if a != "--occlusion"]
    faces = Path(args[0]) if args else REPO.parent / "shared" / "faces"
    font = ImageFont.load_default(size=22)
    x0, y0, x1, y1 = CROP
    cell_w, cell_h = (x1 - x0) * ZOOM, (y1 - y0) * ZOOM
    label_w, header_h = 150, 34
    rows = []
    with Models.load() as models:
        for stem, caption in PEOPLE:
            person = reconstruct(load_photo(faces / f"{stem}.jpg"), models, ReconstructConfig(texture_size=1024))
            for on in (False, True):
                shown = person if feature == "wrinkles" else \
                    retextured(person, models, dataclasses.replace(person.config.texture, occlusion=on))
                cells = []
                for emotion in EMOTIONS:
                    coefficients = on_top_of_rest(person.rest_expression, prototype(emotion))
                    image = render_preview(shown, models, coefficients, SIZE, yaws=(0.0,),
                                           wrinkles=on and feature == "wrinkles")  # fmt: skip
                    cells.append(Image.fromarray(image[y0:y1, x0:x1]).resize((cell_w, cell_h), Image.LANCZOS))
                rows.append((f"{stem[7:10]} ({caption})\n{'with' if on else 'without'} {feature}", cells))
    sheet = Image.new("RGB", (label_w + len(EMOTIONS) * cell_w, header_h + len(rows) * cell_h), (255, 255, 255))
    draw = ImageDraw.Draw(sheet)
    for k, emotion in enumerate(EMOTIONS):
        draw.text((label_w + k * cell_w + 8, 6), emotion, fill=(0, 0, 0), font=font)
    for r, (label, cells) in enumerate(rows):
        top = header_h + r * cell_h
        draw.multiline_text((6, top + cell_h // 2 - 24), label, fill=(0, 0, 0), font=ImageFont.load_default(size=15))
        for k, cell in enumerate(cells):
            sheet.paste(cell, (label_w + k * cell_w, top))
    out = REPO / "docs" / "results" / f"{feature}_before_after.jpg"
    sheet.save(out, quality=88)
    print(f"wrote {out} ({sheet.size[0]}x{sheet.size[1]}, {np.mean([len(c) for _, c in rows]):.0f} cells a row)")


if __name__ == "__main__":
    main()
