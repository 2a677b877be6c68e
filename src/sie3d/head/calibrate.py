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
   of the landmark set) and the part ICT's identity space explains at the landmarks, and repeat;
4. **render rounds**: fit every photo as `sie3d` fits it, render the avatar into the photo (its camera and
   texture, the photo's expression), run MediaPipe on that render, and move each landmark's offset so the
   render reads where the photo reads (the same linearised 2D step, in the head frame's x and y).

Why step 4: steps 1-3 put each model point where MediaPipe reads the photo, but a model point is a surface
point plus its offset, and MediaPipe reading our render does not find the landmark at the model point. On
the lids it differs most: learned from photos alone, the upper-lid offsets reached 3 mm and the rendered
avatars' upper lids came out ~2.3 % of the eye distance above the photos' (lower lids 0.4 % below): eyes
17 % more open than the photo's in the frontal view, round and staring. Two render rounds bring the
upper lids to within ~0.5 % on average (the fit's `lid_weight` lets the lids follow).

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
UPPER_LIDS = (159, 386)  # the middle of each upper lid: the figure the render rounds print


@dataclass(frozen=True)
class CalibrationSettings:
    rounds: int = 3  # alternations of (fit every photo, update the offsets); converged after 2
    render_rounds: int = 2  # then (fit, render into the photo, read the render, update the offsets), step 4
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


def _image_jacobian(fit, points: np.ndarray, scale: float) -> tuple[np.ndarray, np.ndarray]:
    """(N, 2, 3) d pixel / d head-frame offset of `points` (N, 3) under `fit`'s camera, in eye distances
    (`scale` pixels), and the points in the camera frame (N, 3)."""
    rotation = fit.rotation.astype(np.float64)
    cam = points.astype(np.float64) @ rotation.T + fit.translation
    x, y, z = cam.T
    zeros = np.zeros_like(z)
    d_pixel = fit.focal_px * np.stack([np.stack([1 / z, zeros, -x / z**2], -1),
                                       np.stack([zeros, 1 / z, -y / z**2], -1)], 1)  # (N, 2, 3)
    return d_pixel @ rotation / scale, cam


def learn(observations: list[FaceObservation], settings: CalibrationSettings | None = None,
          head: HeadModel | None = None, log=print, photos: list[np.ndarray] | None = None,
          observer=None) -> tuple[np.ndarray, dict]:
    """(468, 3) offsets (cm, ICT head frame) from neutral `observations`, and per-round figures.

    The render rounds (`CalibrationSettings.render_rounds`) need the `photos` (H, W, 3) uint8 the
    observations were made from, and read the renders with `observer` (a `FaceObserver`; one is opened if
    none is given)."""
    settings = settings or CalibrationSettings()
    head = head or HeadModel()
    if settings.render_rounds and (photos is None or len(photos) != len(observations)):
        raise ValueError("the render rounds need the photos the observations were made from")
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
            scale = obs.interocular_px
            jac, cam = _image_jacobian(fit, fitter.landmarks_3d(fit), scale)
            pixels = project(torch.from_numpy(cam), fit.focal_px, fit.principal_px).numpy()
            residual_2d = (obs.landmarks_px[:n, :2] - pixels) / scale  # (N, 2) eye distances
            depth = cam[:, 2] * fit.focal_px / cam[:, 2].mean()
            target_depth = obs.landmarks_px[:n, 2] - obs.landmarks_px[:n, 2].mean()
            residual_depth = (target_depth - (depth - depth.mean())) / scale
            # (3,): d relative depth / d offset, the centring neglected
            jac_depth = fit.focal_px / cam[:, 2].mean() * fit.rotation[2].astype(np.float64) / scale
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
    if settings.render_rounds:
        offsets = _render_rounds(offsets, observations, photos, settings, head, movable, history, log, observer)
    return offsets.astype(np.float32), {"rounds": history}


def _render_rounds(offsets: np.ndarray, observations: list[FaceObservation], photos: list[np.ndarray],
                   settings: CalibrationSettings, head: HeadModel, movable: np.ndarray, history: list[dict],
                   log, observer) -> np.ndarray:
    """Step 4 of the module doc: `offsets` (N, 3) moved, round after round, so that MediaPipe reads each
    photo's avatar rendered into it where it reads the photo. Appends one figure row per round."""
    from sie3d.face.landmarker import FaceObserver
    from sie3d.head.texture import build_textures, render_layout
    from sie3d.photo import photo_from_array
    from sie3d.previews import TexturedHead, in_photo

    own = observer is None
    observer = observer or FaceObserver()
    layout = render_layout(head)
    n = len(offsets)
    try:
        for round_ in range(settings.render_rounds + 1):
            fitter = HeadFitter(head, FitSettings(), LandmarkCalibration(offsets.astype(np.float32)))
            normal = np.zeros((n, 2, 2))
            rhs = np.zeros((n, 2))
            gaps = []
            for obs, rgb in zip(observations, photos, strict=True):
                fit = fitter.fit(obs)
                points = fitter.landmarks_3d(fit)
                textures = build_textures(rgb, obs, fit, head, size=512)
                outline = fit.project(points[list(FACE_OVAL)])
                render = in_photo(TexturedHead.build(head, layout, textures), rgb, fit, textures, fit.expression,
                                  outline)
                read = observer.observe(photo_from_array(render))[0].landmarks_px
                scale = obs.interocular_px
                gap = (read[:n, :2] - obs.landmarks_px[:n, :2]) / scale  # (N, 2) eye distances, render - photo
                gaps.append(gap)
                # The fit moves the surface by minus an offset's change, and the render's reading with it: the
                # change d that makes the reading move by -gap solves J d = gap (head-frame x and y only:
                # the renders are near-frontal, and depth is what steps 1-3 read).
                jac = _image_jacobian(fit, points, scale)[0][..., :2]
                normal += np.einsum("nij,nik->njk", jac, jac)
                rhs += np.einsum("nij,ni->nj", jac, gap)
            mean_gap = np.mean(gaps, 0)
            upper_lid = 100 * np.mean([mean_gap[i, 1] for i in UPPER_LIDS])
            history.append({"render_round": round_,
                            "render_gap_iod_mean": round(float(np.linalg.norm(mean_gap[movable], axis=1).mean()), 5),
                            "upper_lid_gap_iod": round(float(upper_lid) / 100, 5),
                            "offset_rms_cm": round(float(np.sqrt((offsets**2).sum(1).mean())), 4)})
            log(f"render round {round_}: MediaPipe reads the render {100 * history[-1]['render_gap_iod_mean']:.3f}% "
                f"of the eye distance from the photo on average (upper lids {upper_lid:+.2f}%, + is lower)")
            if round_ == settings.render_rounds:
                break
            step = np.zeros_like(offsets)
            ridge = settings.ridge * len(observations)
            step[:, :2] = np.linalg.solve(normal + ridge * np.eye(2), rhs[..., None])[..., 0]
            step[~movable] = 0.0
            offsets = offsets + step
    finally:
        if own:
            observer.close()
    return offsets


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


def observe(paths: list[Path]) -> tuple[list[FaceObservation], list[np.ndarray]]:
    """The first face's observation of each photo, and the photos (H, W, 3) uint8 as observed."""
    from sie3d.face.landmarker import FaceObserver
    from sie3d.photo import load_photo

    photos = [load_photo(path) for path in paths]
    with FaceObserver() as observer:
        return [observer.observe(photo)[0] for photo in photos], [photo.rgb for photo in photos]


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
    observations, photos = observe(paths)
    offsets, figures = learn(observations, settings, photos=photos)
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
