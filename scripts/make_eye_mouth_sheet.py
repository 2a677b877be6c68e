"""Before/after close-ups of the eyes and the mouth (the README's figure for eyes, eyelashes and mouth).

    .venv/bin/python scripts/make_eye_mouth_sheet.py [FACES_DIR] [OUT]

For a few people of different ages and skin tones (London Set, CC BY 4.0, and Grace Hopper, public domain),
each row pair shows the same fit rendered frontally with the earlier textures (`PLAIN_TEXTURES`: procedural
eyes, no eyelashes, generic mouth) and with this slice's (`TextureConfig(eyes="photo", lashes=True,
mouth="detailed")`): a whole face, then the eyes and the mouth cropped and enlarged 2x, for the neutral face
and the happy, surprise and anger prototypes. Writes docs/gallery/eyes_mouth.jpg (by default) and its
ATTRIBUTION_eyes_mouth.md beside it.
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch
from PIL import Image, ImageDraw, ImageFont

from sie3d.avatar import Models, ReconstructConfig, reconstruct, render_views, retextured
from sie3d.eval.harness import _turntable_cameras
from sie3d.expressions import on_top_of_rest, prototype
from sie3d.head.texture import PLAIN_TEXTURES, TextureConfig
from sie3d.photo import load_photo
from sie3d.render import project

PEOPLE = ("london_025_neutral.jpg", "london_024_neutral.jpg", "london_003_neutral.jpg", "london_042_neutral.jpg",
          "london_038_neutral.jpg", "mpl_grace_hopper.jpg")  # fmt: skip
EMOTIONS = ("neutral", "happy", "surprise", "anger")
AFTER = TextureConfig(eyes="photo", lashes=True, mouth="detailed")
RENDER = 400  # px of the frontal render the crops are cut from
FACE, EYES, MOUTH = 200, (400, 100), (200, 100)  # cell sizes: face thumbnail; eye and mouth crops (after 2x)
REPO = Path(__file__).resolve().parents[1]
ATTRIBUTION = """# Attribution of eyes_mouth.jpg

`eyes_mouth.jpg` shows renders of avatars that `scripts/make_eye_mouth_sheet.py` made from photos of the Face
Research Lab London Set: DeBruine, L. & Jones, B. (2017), figshare, doi:10.6084/m9.figshare.5047666.v5,
licensed CC BY 4.0 (photographed with signed consent for research use and illustration) -- {london} -- and
from the portrait of Grace Hopper (US Navy, public domain) that ships with matplotlib. The renders are derived
from those photos (their face and eye textures) and are shared under the same terms. The photos themselves
are not copied.
"""


def cells(person, models, emotion: str) -> tuple[Image.Image, Image.Image, Image.Image]:
    """(face thumbnail, eyes 2x, mouth 2x) of `person` wearing the emotion's prototype, frontal."""
    rest = person.rest_expression
    expression = rest if emotion == "neutral" else on_top_of_rest(rest, prototype(emotion, 1.0))
    cams = _turntable_cameras(models.fitter.landmarks_3d(person.fit, rest), [0.0], RENDER)
    image = Image.fromarray(render_views(person, models, expression, cams)[0])
    lm = project(torch.from_numpy(models.fitter.landmarks_3d(person.fit, expression)), cams)[0][0].numpy()
    eye_x, eye_y = lm[[33, 263], 0].mean(), lm[[33, 263, 159, 386], 1].mean()
    mouth_x, mouth_y = lm[[61, 291], 0].mean(), lm[[13, 14], 1].mean()
    w, h = EYES[0] // 4, EYES[1] // 4  # half the source crop: half the cell, enlarged 2x
    eyes = image.crop((int(eye_x - w), int(eye_y - h), int(eye_x + w), int(eye_y + h)))
    w, h = MOUTH[0] // 4, MOUTH[1] // 4
    mouth = image.crop((int(mouth_x - w), int(mouth_y - h), int(mouth_x + w), int(mouth_y + h)))
    return (image.resize((FACE, FACE), Image.LANCZOS), eyes.resize(EYES, Image.LANCZOS),
            mouth.resize(MOUTH, Image.LANCZOS))  # fmt: skip


def main() -> None:
    faces = Path(sys.argv[1]) if len(sys.argv) > 1 else REPO.parent / "shared" / "faces"
    out = Path(sys.argv[2]) if len(sys.argv) > 2 else REPO / "docs" / "gallery" / "eyes_mouth.jpg"
    torch.set_num_threads(1)
    cell_w = FACE + EYES[0] + 6
    label_w, row_h = 70, FACE
    sheet = Image.new("RGB", (label_w + len(EMOTIONS) * cell_w, 20 + 2 * len(PEOPLE) * row_h), (255, 255, 255))
    draw = ImageDraw.Draw(sheet)
    font = ImageFont.load_default(size=13)
    for k, emotion in enumerate(EMOTIONS):
        draw.text((label_w + k * cell_w + 4, 3), emotion, fill=(0, 0, 0), font=font)
    with Models.load() as models:
        for p, name in enumerate(PEOPLE):
            person = reconstruct(load_photo(faces / name), models, ReconstructConfig(texture=PLAIN_TEXTURES))
            for r, (label, look) in enumerate((("before", PLAIN_TEXTURES), ("after", AFTER))):
                top = 20 + (2 * p + r) * row_h
                draw.text((4, top + 4), f"{name.split('_')[1] if name.startswith('london') else 'hopper'}\n{label}",
                          fill=(0, 0, 0), font=font)  # fmt: skip
                posed = retextured(person, models, look)
                for k, emotion in enumerate(EMOTIONS):
                    face, eyes, mouth = cells(posed, models, emotion)
                    left = label_w + k * cell_w
                    sheet.paste(face, (left, top))
                    sheet.paste(eyes, (left + FACE, top))
                    sheet.paste(mouth, (left + FACE, top + EYES[1]))
    out.parent.mkdir(parents=True, exist_ok=True)
    sheet.save(out, quality=90)
    london = ", ".join(p for p in PEOPLE if p.startswith("london_"))
    (out.parent / "ATTRIBUTION_eyes_mouth.md").write_text(ATTRIBUTION.format(london=london))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
