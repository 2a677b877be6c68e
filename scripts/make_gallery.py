"""Regenerate the README gallery: preview sheets of a few London Set people (CC BY 4.0).

    .venv/bin/python scripts/make_gallery.py [FACES_DIR]

Writes docs/gallery/<photo>_{expression,neutral}.jpg (front, +30°, -30°, profile), docs/gallery/<photo>_text.jpg
(frontal renders of the seven emotion words and eight free-form prompts through `sie3d generate`'s path) and
docs/gallery/ATTRIBUTION.md. The photos themselves are not copied.
"""

from __future__ import annotations

import sys
from pathlib import Path

from PIL import Image, ImageDraw, ImageFont

from sie3d.avatar import Models, photo_variants, reconstruct, render_preview, text_variants
from sie3d.photo import load_photo

# Different ages, sexes and skin tones (ages and descriptions from the London Set's own metadata).
PEOPLE = ("london_025_happy", "london_021_happy", "london_024_happy", "london_038_happy", "london_042_happy",
          "london_003_happy")
TEXT_PEOPLE = ("london_025_neutral", "london_024_neutral", "london_042_neutral")
PROMPTS = ("happy", "sad", "angry", "surprised", "disgusted", "afraid", "neutral",
           "winking with the right eye", "a smirk", "screaming", "a gleeful grin with raised eyebrows",
           "quietly furious", "surprised but happy", "puffing out the cheeks", "sleepy and bored")  # fmt: skip
CELL, COLUMNS, CAPTION = 224, 5, 34
REPO = Path(__file__).resolve().parents[1]
OUT = REPO / "docs" / "gallery"
ATTRIBUTION = """# Gallery attribution

The preview sheets in this folder are renders of avatars that `scripts/make_gallery.py` made from photos
of the Face Research Lab London Set: DeBruine, L. & Jones, B. (2017), figshare,
doi:10.6084/m9.figshare.5047666.v5, licensed CC BY 4.0 (photographed with signed consent for research
use and illustration). The renders are derived from those photos (their face textures) and are shared
under the same licence. Photos used: {photos}.
"""


def text_sheet(person, models) -> Image.Image:
    """A grid of frontal renders, one per prompt, each captioned with the prompt and its top emotion."""
    variants = text_variants(person, models, PROMPTS)
    rows = -(-len(variants) // COLUMNS)
    sheet = Image.new("RGB", (COLUMNS * CELL, rows * (CELL + CAPTION)), (255, 255, 255))
    draw = ImageDraw.Draw(sheet)
    font = ImageFont.load_default(size=13)
    for i, (prompt, variant) in enumerate(zip(PROMPTS, variants, strict=True)):
        render = render_preview(person, models, variant.coefficients, size=CELL, yaws=(0.0,))
        x, y = (i % COLUMNS) * CELL, (i // COLUMNS) * (CELL + CAPTION)
        sheet.paste(Image.fromarray(render), (x, y))
        reading = variant.info["text"]
        draw.text((x + 4, y + CELL + 2), prompt[:34], fill=(0, 0, 0), font=font)
        draw.text((x + 4, y + CELL + 17), f"-> {reading['top_emotion']} {max(reading['emotions'].values()):.2f}",
                  fill=(90, 90, 90), font=font)  # fmt: skip
    return sheet


def main() -> None:
    faces = Path(sys.argv[1]) if len(sys.argv) > 1 else REPO.parent / "shared" / "faces"
    OUT.mkdir(parents=True, exist_ok=True)
    with Models.load() as models:
        for name in PEOPLE:
            person = reconstruct(load_photo(faces / f"{name}.jpg"), models)
            for variant in photo_variants(person):
                sheet = render_preview(person, models, variant.coefficients, size=320)
                Image.fromarray(sheet).save(OUT / f"{name}_{variant.name}.jpg", quality=88)
            print(f"{name}: fit error {100 * person.fit.landmark_error_iod:.2f}% of eye distance")
        for name in TEXT_PEOPLE:
            person = reconstruct(load_photo(faces / f"{name}.jpg"), models)
            text_sheet(person, models).save(OUT / f"{name}_text.jpg", quality=88)
            print(f"{name}: text sheet")
    photos = ", ".join(f"{p}.jpg" for p in (*PEOPLE, *TEXT_PEOPLE))
    (OUT / "ATTRIBUTION.md").write_text(ATTRIBUTION.format(photos=photos))


if __name__ == "__main__":
    main()
