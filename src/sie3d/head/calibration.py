"""The landmark calibration: where MediaPipe puts each of its 468 landmarks relative to the ICT surface.

The correspondence (`correspondence.py`) puts every landmark on a point of the ICT surface by geometry
alone -- registering MediaPipe's canonical mesh to ICT's neutral head. On real faces MediaPipe draws some
contours elsewhere (the ring of landmarks above each upper lid ~4 mm off those surface points); unexplained,
the fit bent the eyes with expression shapes to meet them. The calibration is a small offset per
landmark, in the ICT head frame (centimetres, +x the subject's left, +y up, +z out of the face), learned on
neutral photos by ``python -m sie3d.head.calibrate`` and committed as `landmark_calibration.json` next to
this module, with the command, date, photo list and settings. It is learned in two parts: from the photos,
with the expression held at MediaPipe's reading of them; then from renders of the fitted avatars into the
photos, so that MediaPipe reads each render where it reads the photo. Learned from the photos alone, the
upper-lid offsets reached 3 mm and the avatars' lids opened wider than the photos' (ICT's lids at a neutral
face's reading sit higher than people's: the offset had hidden that); with the render rounds they are
~0.2 mm and the fit closes the lids (see calibrate.py).

Why offsets in the head frame rather than new surface points: on the near-frontal calibration photos the
offsets are learned in the image plane, where a head-frame offset and a slide along the surface agree to
first order; a fixed offset keeps the model points linear in the coefficients (the fit's Jacobian does
not change) and leaves the rendered mesh alone. Its limit: it does not follow the skin under a strong
expression.

The file also carries `rest_ceiling`: how much of each shape MediaPipe reads on those neutral faces at
most, which caps what a fit may keep as the person's rest (see fit.py).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from sie3d.head.canonical import N_CANONICAL
from sie3d.head.correspondence import CORRESPONDENCE_VERSION
from sie3d.head.names import ICT_NAMES

CALIBRATION_PATH = Path(__file__).with_name("landmark_calibration.json")
CALIBRATION_FORMAT = 1


@dataclass(frozen=True)
class LandmarkCalibration:
    offsets_cm: np.ndarray  # (468, 3) float32, ICT head frame
    # (53,) float32: the most MediaPipe reads of each ICT shape on the neutral calibration photos -- how
    # much of a shape a neutral face shows; the fit's rest expression is capped there (see fit.py).
    rest_ceiling: np.ndarray = field(default_factory=lambda: np.ones(len(ICT_NAMES), np.float32))
    meta: dict = field(default_factory=dict, compare=False)  # command, date, photos, settings, figures

    def __post_init__(self) -> None:
        if self.offsets_cm.shape != (N_CANONICAL, 3):
            raise ValueError(f"calibration offsets must have shape ({N_CANONICAL}, 3), got {self.offsets_cm.shape}")
        if self.rest_ceiling.shape != (len(ICT_NAMES),):
            raise ValueError(f"rest ceiling must have shape ({len(ICT_NAMES)},), got {self.rest_ceiling.shape}")

    @staticmethod
    def zero() -> LandmarkCalibration:
        """No calibration: every landmark on its geometric surface point, no cap on the rest."""
        return LandmarkCalibration(np.zeros((N_CANONICAL, 3), np.float32), meta={"source": "none"})

    @staticmethod
    def load(path: Path = CALIBRATION_PATH) -> LandmarkCalibration:
        data = json.loads(Path(path).read_text())
        if data.get("format") != CALIBRATION_FORMAT or data.get("correspondence_version") != CORRESPONDENCE_VERSION:
            raise ValueError(
                f"{path} was learned for correspondence v{data.get('correspondence_version')} (format "
                f"{data.get('format')}); this sie3d uses v{CORRESPONDENCE_VERSION}: re-run "
                "python -m sie3d.head.calibrate"
            )
        offsets = np.asarray(data["offsets_cm"], np.float32)
        ceiling = np.array([data["rest_ceiling"][name] for name in ICT_NAMES], np.float32)
        meta = {k: v for k, v in data.items() if k not in ("offsets_cm", "rest_ceiling")}
        return LandmarkCalibration(offsets, ceiling, meta)

    def save(self, path: Path = CALIBRATION_PATH) -> None:
        """Write JSON: metadata first, then one line per landmark (offsets rounded to 1 µm), diff-friendly."""
        meta = {"format": CALIBRATION_FORMAT, "correspondence_version": CORRESPONDENCE_VERSION, **self.meta,
                "rest_ceiling": {n: round(float(v), 4) for n, v in zip(ICT_NAMES, self.rest_ceiling, strict=True)}}
        head = json.dumps(meta, indent=1)[:-2]  # drop the closing "\n}"
        rows = ",\n".join("  " + json.dumps([round(float(v), 4) for v in row]) for row in self.offsets_cm)
        Path(path).write_text(f'{head},\n "offsets_cm": [\n{rows}\n ]\n}}\n')
