"""Learn the landmark calibration (`calibration.py`) from neutral photos.

    python -m sie3d.head.calibrate [--faces DIR] [--out FILE]   # learn and write the calibration
    python -m sie3d.head.calibrate --check                       # re-learn, compare with the committed file

Photos: the London Set's neutral photos of the shared faces folder (``manifest.csv``: filename
``london_*``, expression ``neutral``; $SIE3D_FACES or ``../shared/faces`` beside the checkout).

Alternating least squares, deterministic (no randomness; fixed photo order; one torch thread):

1. fit every photo with its expression held at MediaPipe's own blendshape scores for it -- what a neutral
   face shows -- solving only camera pose and identity;
2. for each landmark, the offset step that best explains its residuals over all photos: a 3x3 ridge
   solve of the linearised reprojection (and relative-depth) residuals, mapped into the head frame by
   each photo's rotation;
3. remove the part of the offsets that a change of pose or scale would explain (a similarity transform
   of the landmark set) and the part ICT's identity space explains at the landmarks, and repeat.

Keeping the offsets out of the identity space means identity, not the calibration, explains face shape
(the calibration people's average face stays in their identity coefficients, where the render sees it),
and it makes the split unique. Kept out of only the first 20 identity modes, the offsets went on absorbing
that average round after round (RMS 0.115 -> 0.146 cm over 8 rounds, still growing; likewise with no
projection at all); kept out of all 100, they settle after one round (RMS 0.103 cm).

Face-oval landmarks keep a zero offset: they are silhouette points that slide over the head as it turns,
so an offset learned on frontal photos would be wrong on turned ones.
"""

from __future__ import annotations

import argparse
import csv
import datetime
import sys
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch

from sie3d.face.observation import FaceObservation
from sie3d.head.calibration import CALIBRATION_PATH, LandmarkCalibration
from sie3d.head.fit import FACE_OVAL, FitSettings, HeadFitter, expression_prior, project
from sie3d.head.model import HeadModel
from sie3d.photo import shared_faces_dir

COMMAND = "python -m sie3d.head.calibrate"
# A re-run reproduces the committed file within these (it is deterministic; threads and BLAS builds may
# still round differently). The offsets themselves reach ~3 mm.
OFFSET_TOLERANCE_CM = 2e-3
CEILING_TOLERANCE = 1e-3


@dataclass(frozen=True)
class CalibrationSettings:
    rounds: int = 3  # alternations of (fit every photo, update the offsets); converged after 2
    ridge: float = 2e-4  # per-landmark prior on the offset, in (eye distances)² per cm² summed over photos
    identity_orthogonal: bool = True  # keep the offsets out of the identity space (see module doc)


def calibration_photos(faces: Path) -> list[Path]:
    """The London Set's neutral photos listed in `faces/manifest.csv`, sorted by file name."""
    with open(faces / "manifest.csv", newline="") as stream:
        rows = list(csv.DictReader(stream))
    names = sorted(r["filename"] for r in rows if r["filename"].startswith("london_") and r["expression"] == "neutral")
    return [faces / name for name in names]


def _similarity_and_identity_free(offsets: np.ndarray, points: np.ndarray, identity_basis: np.ndarray | None,
                                  movable: np.ndarray) -> np.ndarray:
    """Offsets (N, 3) minus their least-squares explanation by an infinitesimal similarity of `points`
    (translation, rotation, scale: 7 directions) and, if given, by `identity_basis` (K, N*3)."""
    centred = points - points.mean(0)
    directions = [np.tile(axis, (len(points), 1)) for axis in np.eye(3)]
    directions += [np.cross(axis, centred) for axis in np.eye(3)]
    directions.append(centred)
    basis = np.stack([d.reshape(-1) for d in directions])
    if identity_basis is not None:
        basis = np.concatenate([basis, identity_basis])
    mask = np.repeat(movable, 3)
    basis = basis[:, mask]
    flat = offsets.reshape(-1)[mask]
    coefficients, *_ = np.linalg.lstsq(basis.T, flat, rcond=None)
    result = np.zeros_like(offsets.reshape(-1))
    result[mask] = flat - basis.T @ coefficients
    return result.reshape(-1, 3)


def learn(observations: list[FaceObservation], settings: CalibrationSettings | None = None,
          head: HeadModel | None = None, log=print) -> tuple[np.ndarray, dict]:
    """(468, 3) offsets (cm, ICT head frame) from neutral `observations`, and per-round figures."""
    settings = settings or CalibrationSettings()
    head = head or HeadModel()
    fit_settings = FitSettings()
    base = HeadFitter(head, fit_settings, LandmarkCalibration.zero())
    n = base.points.neutral.shape[0]
    movable = np.ones(n, bool)
    movable[list(FACE_OVAL)] = False
    surface = base.surface_points
    identity_basis = surface.identity_basis.double().numpy() if settings.identity_orthogonal else None
    offsets = np.zeros((n, 3))
    history = []
    for round_ in range(settings.rounds + 1):
        fitter = HeadFitter(head, fit_settings, LandmarkCalibration(offsets.astype(np.float32)))
        normal = np.zeros((n, 3, 3))
        rhs = np.zeros((n, 3))
        errors = []
        for obs in observations:
            fit = fitter.fit(obs, fixed_expression=expression_prior(obs))
            errors.append(fit.landmark_error_iod)
            points = fitter.landmarks_3d(fit).astype(np.float64)
            rotation = fit.rotation.astype(np.float64)
            cam = points @ rotation.T + fit.translation
            scale = obs.interocular_px
            pixels = project(torch.from_numpy(cam), fit.focal_px, fit.principal_px).numpy()
            residual_2d = (obs.landmarks_px[:n, :2] - pixels) / scale  # (N, 2) eye distances
            x, y, z = cam.T
            zeros = np.zeros_like(z)
            d_pixel = fit.focal_px * np.stack([np.stack([1 / z, zeros, -x / z**2], -1),
                                               np.stack([zeros, 1 / z, -y / z**2], -1)], 1)  # (N, 2, 3)
            jac = d_pixel @ rotation / scale  # (N, 2, 3): d residual / d offset (head frame)
            depth = cam[:, 2] * fit.focal_px / cam[:, 2].mean()
            target_depth = obs.landmarks_px[:n, 2] - obs.landmarks_px[:n, 2].mean()
            residual_depth = (target_depth - (depth - depth.mean())) / scale
            jac_depth = fit.focal_px / cam[:, 2].mean() * rotation[2] / scale  # (3,), the centring neglected
            w_depth = fit_settings.depth_weight
            normal += np.einsum("nij,nik->njk", jac, jac) + w_depth * np.outer(jac_depth, jac_depth)[None]
            rhs += np.einsum("nij,ni->nj", jac, residual_2d) + w_depth * residual_depth[:, None] * jac_depth
        history.append({"round": round_, "fit_error_iod_mean": round(float(np.mean(errors)), 5),
                        "offset_rms_cm": round(float(np.sqrt((offsets**2).sum(1).mean())), 4)})
        log(f"calibration round {round_}: fit error {100 * np.mean(errors):.3f}% of the eye distance (expression "
            f"held at MediaPipe's scores), offsets RMS {history[-1]['offset_rms_cm']:.3f} cm")
        if round_ == settings.rounds:
            break
        # Ridge on the new total offset (o + step), summed over the photos like the data term.
        ridge = settings.ridge * len(observations)
        step = np.linalg.solve(normal + ridge * np.eye(3), (rhs - ridge * offsets)[..., None])[..., 0]
        offsets = offsets + step
        offsets[~movable] = 0.0
        offsets = _similarity_and_identity_free(offsets, surface.neutral.double().numpy(), identity_basis, movable)
    return offsets.astype(np.float32), {"rounds": history}


def rest_ceiling(observations: list[FaceObservation]) -> np.ndarray:
    """(53,) the most MediaPipe reads of each ICT shape (`expression_prior`) on the neutral `observations`."""
    return np.max([expression_prior(obs) for obs in observations], axis=0).astype(np.float32)


def compare(committed: LandmarkCalibration, photos: list[str], offsets: np.ndarray,
            ceiling: np.ndarray) -> tuple[bool, str]:
    """Does a re-run (photo names, (468, 3) offsets, (53,) ceiling) reproduce `committed`? And a one-line summary."""
    offset_diff = float(np.abs(offsets - committed.offsets_cm).max())
    ceiling_diff = float(np.abs(ceiling - committed.rest_ceiling).max())
    same = (committed.meta.get("photos") == photos and offset_diff < OFFSET_TOLERANCE_CM
            and ceiling_diff < CEILING_TOLERANCE)
    return same, (f"{'same as' if same else 'DIFFERS from'} the committed calibration: offsets differ by at most "
                  f"{offset_diff:.2e} cm, rest ceiling by {ceiling_diff:.2e}")


def observe(paths: list[Path]) -> list[FaceObservation]:
    from sie3d.face.landmarker import FaceObserver
    from sie3d.photo import load_photo

    with FaceObserver() as observer:
        return [observer.observe(load_photo(path))[0] for path in paths]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog=COMMAND, description=__doc__.splitlines()[0])
    parser.add_argument("--faces", type=Path, default=shared_faces_dir(), help="the shared faces folder")
    parser.add_argument("--out", type=Path, default=CALIBRATION_PATH, help="where to write the calibration")
    parser.add_argument("--check", action="store_true",
                        help=f"write nothing; compare with {CALIBRATION_PATH.name} (exit 1 if it differs)")
    args = parser.parse_args(argv)
    if args.faces is None or not (args.faces / "manifest.csv").is_file():
        print(f"error: no manifest.csv in {args.faces}\n  fix: pass --faces with the shared faces folder "
              "(or set SIE3D_FACES)", file=sys.stderr)
        return 2
    torch.set_num_threads(1)
    paths = calibration_photos(args.faces)
    if not paths:
        print(f"error: no London neutral photos listed in {args.faces / 'manifest.csv'}", file=sys.stderr)
        return 2
    settings = CalibrationSettings()
    observations = observe(paths)
    offsets, figures = learn(observations, settings)
    ceiling = rest_ceiling(observations)
    if args.check:
        same, summary = compare(LandmarkCalibration.load(), [p.name for p in paths], offsets, ceiling)
        print(summary)
        return 0 if same else 1
    meta = {
        "command": COMMAND,
        "date": datetime.date.today().isoformat(),
        "photos": [p.name for p in paths],
        "settings": asdict(settings),
        **figures,
    }
    LandmarkCalibration(offsets, ceiling, meta).save(args.out)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
