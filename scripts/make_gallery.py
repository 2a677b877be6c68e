"""Regenerate the README gallery: preview sheets of a few London Set people (CC BY 4.0).

    .venv/bin/python scripts/make_gallery.py [FACES_DIR]

Writes docs/gallery/<photo>_{expression,neutral}.jpg (front, +30°, -30°, profile) and
docs/gallery/ATTRIBUTION.md. The photos themselves are not copied.
"""

from __future__ import annotations

import sys
from pathlib import Path

from PIL import Image

from sie3d.avatar import Models, photo_variants, reconstruct, render_preview
from sie3d.photo import load_photo

# Different ages, sexes and skin tones (ages and descriptions from the London Set's own metadata).
PEOPLE = ("london_025_happy", "london_021_happy", "london_024_happy", "london_038_happy", "london_042_happy",
          "london_003_happy")
REPO = Path(__file__).resolve().parents[1]
OUT = REPO / "docs" / "gallery"
ATTRIBUTION = """# Gallery attribution

The preview sheets in this folder are renders of avatars that `scripts/make_gallery.py` made from photos
of the Face Research Lab London Set: DeBruine, L. & Jones, B. (2017), figshare,
doi:10.6084/m9.figshare.5047666.v5, licensed CC BY 4.0 (photographed with signed consent for research
use and illustration). The renders are derived from those photos (their face textures) and are shared
under the same licence. Photos used: {photos}.
"""


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
    (OUT / "ATTRIBUTION.md").write_text(ATTRIBUTION.format(photos=", ".join(f"{p}.jpg" for p in PEOPLE)))


if __name__ == "__main__":
    main()
