"""The landmark calibration: where MediaPipe puts each of its 468 landmarks relative to the ICT surface.

The correspondence (`correspondence.py`) puts every landmark on a point of the ICT surface by geometry
alone -- registering MediaPipe's canonical mesh to ICT's neutral head. MediaPipe places some landmarks
elsewhere on real faces: its upper-lid points sit above ICT's lid margin, for example, and a fit then
opens the lids (``eyeWide``) to meet them. The calibration is a small offset per landmark, in the ICT
head frame (centimetres, +x the subject's left, +y up, +z out of the face), learned on neutral photos by
``python -m sie3d.head.calibrate`` and committed as `landmark_calibration.json` next to this module.

Why offsets in the head frame rather than new points on the surface: the bias is a property of the
detector (where it draws a lid or a brow), not of the skin, so it should not stretch with the expression
the way a surface point does; on the calibration photos' near-frontal views the offsets lie in the image
plane, where a head-frame offset and a slide along the surface are the same to first order; and a fixed
offset keeps the model points linear in the coefficients (the fit's Jacobian does not change).
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
