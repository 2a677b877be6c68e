"""Draw what the face stage saw: landmarks, box, index and confidence of every face."""

from __future__ import annotations

import numpy as np
from PIL import Image, ImageDraw

from sie3d.face.observation import FaceObservation

CHOSEN_COLOUR = (40, 220, 90)
OTHER_COLOUR = (250, 170, 40)
IRIS_COLOUR = (60, 160, 255)


def annotate(rgb: np.ndarray, faces: list[FaceObservation], chosen: int = 0) -> Image.Image:
    """The photo with each face's 478 landmarks and box; the chosen face in green, others in orange."""
    image = Image.fromarray(rgb).convert("RGB")
    draw = ImageDraw.Draw(image)
    for face in faces:
        colour = CHOSEN_COLOUR if face.index == chosen else OTHER_COLOUR
        radius = max(1.0, face.interocular_px / 90.0)
        for k, (x, y, _) in enumerate(face.landmarks_px):
            fill = IRIS_COLOUR if k >= 468 else colour
            draw.ellipse((x - radius, y - radius, x + radius, y + radius), fill=fill)
        x0, y0, x1, y1 = face.box
        draw.rectangle((x0, y0, x1, y1), outline=colour, width=max(1, round(radius)))
        label = f"#{face.index}" + ("" if np.isnan(face.confidence) else f" {face.confidence:.2f}")
        draw.text((x0 + 2, max(0.0, y0 - 12)), label, fill=colour)
    return image
