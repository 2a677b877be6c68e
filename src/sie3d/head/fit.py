"""Fit ICT-FaceKit to a `FaceObservation`: camera, head pose, identity and the photo's expression.

Regularised least squares over all 468 MediaPipe face landmarks (2D reprojection plus MediaPipe's
relative depth), solved by Levenberg-Marquardt on the CPU: pose first, then everything but the gaze, which
the two iris centres set alone (`PUPILS`: the gaze shapes turn the eyeballs, `sie3d.head.model.EYE_TURNS`;
after the pose and again after the identity, everything else held, the other shapes then fitted around
it). Three things keep the expression honest -- identity explains the person's shape, expression only what
the photo shows:

- **a calibrated correspondence**: each landmark's model point is its surface point plus a small offset
  in the ICT head frame (`calibration.py`), learned on neutral photos so that a neutral face fits at
  MediaPipe's own reading of it and MediaPipe reads the avatar rendered into the photo where it reads the
  photo (the lid margins, weighted up by `FitSettings.lid_weight`, most of all). Without it the fit met the
  eye landmarks with contradictory shapes (eyeWide ~0.8 with eyeSquint ~0.3 on neutral photos, jawLeft with
  jawRight);
- **MediaPipe's blendshape scores as a prior** (`expression_prior`): a data term pulls every coefficient
  towards the score MediaPipe reads off the photo (mapped to ICT names). It decides what landmarks alone
  cannot: whether an eye opens wider because of the person's shape (identity) or a stare (eyeWide).
  Clear geometric evidence still wins over it -- a wide-eyed stare MediaPipe scores at 0.07-0.2 fits at
  ~0.3 -- and it is also what the calibration holds the expression at;
- **exclusive pairs** (`EXCLUSIVE_PAIRS`): shapes that cannot act together (a jaw pushed both left and
  right, an upper lid both raised and lowered). A penalty on their product during the solve, then a
  projection keeping the larger minus the smaller (they are antagonists, so that is their net effect)
  and a short refit of the other shapes with every zero member frozen: after a fit at most one of each
  pair is non-zero, exactly. The penalty does most of the work, the projection guarantees it.

`HeadFit.rest_expression` (53,) is what stays in the person's neutral face: the fitted lid and brow
coefficients (`REST_SHAPES`), each capped at the most MediaPipe reads of it on the neutral calibration
photos (`LandmarkCalibration.rest_ceiling`), and the lip seal below; zero elsewhere. A rest is still
needed because a neutral face is not ICT's zero: on the neutral London photos MediaPipe reads a lower-lid
squint of ~0.26 and brows of ~0.1 (some people's brows rest high: 0.87 on one), and the calibration keeps
that reading, so dropping it would change the person's lids and brows. The cap keeps out what no neutral
face shows: a surprised photo's stare (eyeWide is at most 0.04 on neutral faces) stays in that photo's
expression, not in the person. Everything else is the emotional part (`HeadFit.emotional_expression`).

The rest also seals the lips (`REST_LIP_SEAL`): ICT's zero expression leaves them about 2 mm apart, and
the neutral avatars of every shared photo tried showed a strip of teeth between them (about 100 pixels of
teeth in a 512-px frontal render), where a neutral face's lips meet. ``mouthClose`` at 0.1 closes them on
every face tried (no tooth pixel left) without pressing or pursing them (0.3 starts to purse).
"""

from __future__ import annotations

import dataclasses
import math
import time
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import Tensor

from sie3d.face.observation import FaceObservation
from sie3d.head import correspondence
from sie3d.head.calibration import LandmarkCalibration
from sie3d.head.eyes import eye_open, pupil_points
from sie3d.head.model import N_EXPRESSION, N_IDENTITY, HeadModel, SurfacePointModel
from sie3d.head.names import ICT_NAMES, ict_from_mediapipe

FOCAL_FACTOR = 1.2  # focal length = 1.2 x the longer image side (~45° field of view): typical portraits
# MediaPipe's face-oval landmarks sit on the silhouette, which slides over the head as it turns.
FACE_OVAL = (
    10, 338, 297, 332, 284, 251, 389, 356, 454, 323, 361, 288, 397, 365, 379, 378, 400, 377, 152, 148, 176,
    149, 150, 136, 172, 58, 132, 93, 234, 127, 162, 21, 54, 103, 67, 109,
)  # fmt: skip
BROWS = (70, 63, 105, 66, 107, 336, 296, 334, 293, 300)  # MediaPipe's upper outline of both eyebrows
# MediaPipe's contours of the eye openings: the lid margins, where the eyeball shows between the lids.
RIGHT_EYE_OPENING = (33, 7, 163, 144, 145, 153, 154, 155, 133, 173, 157, 158, 159, 160, 161, 246)
LEFT_EYE_OPENING = (263, 249, 390, 373, 374, 380, 381, 382, 362, 398, 384, 385, 386, 387, 388, 466)
# The eye and brow coefficients a person's rest may hold (see module doc). Not the gaze (eyeLook*): where
# the photo's eyes look is not part of the person; the neutral face looks straight ahead.
REST_SHAPES = tuple(
    n for n in ICT_NAMES if n.startswith(("eyeWide", "eyeSquint", "eyeBlink", "browInnerUp", "browOuterUp",
                                          "browDown"))
)  # fmt: skip

# MediaPipe's iris centres, the subject's right eye first, fitted to the poles of ICT's turned eyeballs.
PUPILS = {"right": 468, "left": 473}
REST_LIP_SEAL = ("mouthClose", 0.1)  # (shape, value) that makes the rest's lips meet (module doc)


def _sides(left: str, right: str) -> tuple[tuple[str, str], ...]:
    return tuple((f"{left}_{s}", f"{right}_{s}") for s in ("L", "R"))


# Shapes that cannot both act in one face, chosen from ICT's shape semantics and checked against the data:
# each is an antagonist pair -- the same vertices moved in opposite directions (cosine of the two
# displacement fields -0.97 for jaw and gaze in/out, -0.93 gaze up/down, -0.81 lid raise vs blink, -0.80
# mouth sides, -0.67 brow lowerer vs outer raiser) -- except eyeWide/eyeSquint (cosine 0: upper vs lower
# lid), where co-activation raises both lids at once, which on a still photo is a shifted eye, i.e. the
# person's shape. MediaPipe's own scores never have both members above 0.1 on the 79 shared photos.
# browDown/browOuterUp is a judgement call: FACS fear (AU1+2+4) has both, but in ICT they move the outer
# brow in opposite directions, so in a fit they only cancel (the fear prototype still uses both, and
# `expressions.on_top_of_rest` allows it). Not pairs: browDown/browInnerUp (AU1+4 in sadness and fear;
# cosine -0.34), mouthSmile/mouthFrown (cosine -0.23).
EXCLUSIVE_PAIRS: tuple[tuple[str, str], ...] = (
    *_sides("eyeWide", "eyeSquint"),
    *_sides("eyeWide", "eyeBlink"),
    *_sides("eyeLookUp", "eyeLookDown"),
    *_sides("eyeLookIn", "eyeLookOut"),
    *_sides("browDown", "browOuterUp"),
    ("jawLeft", "jawRight"),
    ("mouthLeft", "mouthRight"),
)
_OPENGL_TO_OPENCV = np.diag([1.0, -1.0, -1.0])


@dataclass(frozen=True)
class FitSettings:
    """Weights are relative to the 2D term, whose residuals are in units of the eye distance: a weight w
    on a coefficient equals one landmark off by sqrt(w) eye distances per unit of that coefficient."""

    pose_steps: int = 8  # Levenberg-Marquardt iterations with only the pose free
    steps: int = 20  # then with everything free (stops earlier once converged)
    gaze_steps: int = 6  # the open eyes' gaze alone, to the irises (after the pose, and after the identity)
    refit_steps: int = 4  # then the rest of the expression around that gaze; again after the exclusive-pair
    # projection, with the zeroed members frozen
    focal_factor: float = FOCAL_FACTOR
    oval_weight: float = 0.3  # silhouette landmarks slide over the head: they count less
    # The lid margins count more: a sharp edge MediaPipe finds precisely, and what shows of the eyeball; the
    # rings of landmarks around the eyes sit on smooth skin that ICT's shapes move together with the margins
    # (eyeWide lifts the skin below the brow as well as the lid) -- at 1 the fit kept the upper lids ~2 % of
    # the eye distance above the photo's to meet those rings.
    lid_weight: float = 10.0
    pupil_weight: float = 10.0  # each open eye's iris centre (MediaPipe 468/473) against the turned eyeball's pole
    depth_weight: float = 0.05  # MediaPipe's relative depth is a shape cue, noisier than x, y
    identity_prior: float = 2e-4  # identity RMS ~0.9 on the studio photos; weaker priors overfit 2D noise
    blendshape_prior: float = 1e-2  # pull of each coefficient towards MediaPipe's score for the photo
    exclusive_penalty: float = 5.0  # on the product of the two members of each exclusive pair
    calibrated: bool = True  # add the learned per-landmark offsets (calibration.py) to the model points


@dataclass(frozen=True)
class HeadFit:
    """A fitted head. Camera: OpenCV convention (x right, y down, z forward), pixels of the photo."""

    identity: np.ndarray  # (100,)
    expression: np.ndarray  # (53,) the photo's full expression (rest + emotional)
    rest_expression: np.ndarray  # (53,) the person's resting eye/brow shape and lip seal, zero elsewhere
    rotation: np.ndarray  # (3, 3) head (ICT, cm) -> camera
    translation: np.ndarray  # (3,) cm
    focal_px: float
    principal_px: tuple[float, float]
    image_size: tuple[int, int]
    landmark_error_px: float  # mean 2D distance over the 468 landmarks
    landmark_error_iod: float  # the same, as a fraction of the inter-ocular distance
    seconds: float
    extras: dict = field(default_factory=dict, compare=False)

    @property
    def emotional_expression(self) -> np.ndarray:
        return self.expression - self.rest_expression

    @property
    def intrinsics(self) -> np.ndarray:
        cx, cy = self.principal_px
        return np.array([[self.focal_px, 0, cx], [0, self.focal_px, cy], [0, 0, 1]], np.float32)

    @property
    def world_to_camera(self) -> np.ndarray:
        matrix = np.eye(4, dtype=np.float32)
        matrix[:3, :3], matrix[:3, 3] = self.rotation, self.translation
        return matrix

    def to_camera(self, points_head: np.ndarray) -> np.ndarray:
        """(N, 3) head-space points (cm) -> (N, 3) camera-space points (cm)."""
        return points_head @ self.rotation.T + self.translation

    def project_camera(self, points_camera: np.ndarray) -> np.ndarray:
        """(N, 3) camera-space points (cm) -> (N, 2) pixels of the photo."""
        return points_camera[:, :2] / points_camera[:, 2:3] * self.focal_px + np.asarray(self.principal_px, np.float32)

    def project(self, points_head: np.ndarray) -> np.ndarray:
        """(N, 3) head-space points (cm) -> (N, 2) pixels of the photo."""
        return self.project_camera(self.to_camera(points_head))

    def crop(self, left: float, top: float, size: tuple[int, int], scale: float = 1.0) -> HeadFit:
        """This fit seen through a window of the photo: the window's top-left corner is at (`left`, `top`)
        photo pixels and it is resampled by `scale` to `size` (width, height) px. Same head and pose; the
        principal point moves and the focal length scales, so `project` gives window pixels."""
        px, py = self.principal_px
        return dataclasses.replace(self, focal_px=self.focal_px * scale, image_size=(int(size[0]), int(size[1])),
                                   principal_px=((px - left) * scale, (py - top) * scale))  # fmt: skip

    def to_json(self) -> dict:
        return {
            "landmark_error_px": round(self.landmark_error_px, 3),
            "landmark_error_iod": round(self.landmark_error_iod, 5),
            "focal_px": round(self.focal_px, 2),
            "rotation": np.round(self.rotation, 6).tolist(),
            "translation_cm": np.round(self.translation, 4).tolist(),
            "identity": np.round(self.identity, 5).tolist(),
            "expression": {n: round(float(v), 4) for n, v in zip(ICT_NAMES, self.expression, strict=True)},
            "rest_expression": {n: round(float(v), 4) for n, v in zip(ICT_NAMES, self.rest_expression, strict=True)
                                if n in REST_SHAPES},
            "seconds": round(self.seconds, 4),
        }


def _axis_angle_to_matrix(omega: Tensor) -> Tensor:
    """Rodrigues' formula; differentiable (also under torch.func transforms) and safe at zero."""
    theta = torch.sqrt((omega * omega).sum() + 1e-12)
    k = omega / theta
    zero = torch.zeros_like(k[0])
    kx = torch.stack([
        torch.stack([zero, -k[2], k[1]]), torch.stack([k[2], zero, -k[0]]), torch.stack([-k[1], k[0], zero]),
    ])  # fmt: skip
    return torch.eye(3, dtype=omega.dtype) + torch.sin(theta) * kx + (1 - torch.cos(theta)) * (kx @ kx)


def project(points_cam: Tensor, focal: float, principal: tuple[float, float]) -> Tensor:
    """(…, N, 3) camera-space points -> (…, N, 2) pixels."""
    z = points_cam[..., 2:3].clamp_min(1e-3)
    return points_cam[..., :2] / z * focal + points_cam.new_tensor(principal)


def _levenberg_marquardt(residuals, jacobian, retract, x: Tensor, free: Tensor, iterations: int,
                         tolerance: float = 1e-6) -> Tensor:
    """Minimise ||residuals(x)||² over the `free` entries of x; expression entries stay in [0, 1].

    Bounds by an active set: an entry at a bound whose gradient points outwards sits out the iteration
    (clamping its step instead would stall the solver on the many coefficients resting at zero)."""
    lam = 1e-3
    lower = x.new_full(x.shape, -math.inf)
    upper = x.new_full(x.shape, math.inf)
    lower[-N_EXPRESSION:], upper[-N_EXPRESSION:] = 0.0, 1.0
    r = residuals(x)
    cost = float(r @ r)
    for _ in range(iterations):
        j = jacobian(x)
        gradient = j.T @ r
        active = free & ~(((x <= lower) & (gradient > 0)) | ((x >= upper) & (gradient < 0)))
        jtj, jtr = (j.T @ j)[active][:, active], gradient[active]
        damping = torch.diag(jtj).clamp_min(1e-9)
        while True:
            step = torch.linalg.solve(jtj + lam * torch.diag(damping), -jtr)
            candidate = x.clone()
            candidate[active] = torch.minimum(torch.maximum(x[active] + step, lower[active]), upper[active])
            r_new = residuals(candidate)
            cost_new = float(r_new @ r_new)
            if cost_new < cost:
                x, r, lam = retract(candidate), r_new, max(lam / 3.0, 1e-7)
                converged = cost - cost_new < tolerance * cost
                cost = cost_new
                break
            lam *= 4.0
            if lam > 1e6:
                return x
        if converged:
            break
    return x


def exclusive_projection(expression: np.ndarray) -> tuple[np.ndarray, np.ndarray, bool]:
    """(53,) coefficients -> (projected (53,), frozen (53,) bool, changed): in each `EXCLUSIVE_PAIRS` pair
    where both act, the larger keeps the difference and the smaller becomes zero (antagonists: that is
    their net effect). `frozen` marks every member that is zero in some pair after the projection: held
    at zero, a refit cannot make a pair co-active again."""
    projected = np.array(expression, dtype=np.float64)
    changed = False
    for first, second in EXCLUSIVE_PAIRS:
        a, b = ICT_NAMES.index(first), ICT_NAMES.index(second)
        if projected[a] > 0 and projected[b] > 0:
            big, small = (a, b) if projected[a] >= projected[b] else (b, a)
            projected[big] -= projected[small]
            projected[small] = 0.0
            changed = True
    frozen = np.zeros(len(projected), bool)
    for first, second in EXCLUSIVE_PAIRS:
        a, b = ICT_NAMES.index(first), ICT_NAMES.index(second)
        frozen[[a, b]] |= projected[[a, b]] == 0
    return projected.astype(np.asarray(expression).dtype), frozen, changed


def expression_prior(obs: FaceObservation) -> np.ndarray:
    """(53,) what MediaPipe reads of the expression in `obs`, in ICT shapes: its blendshape scores mapped
    to ICT names, with the exclusive pairs projected (MediaPipe co-activates antagonists a little, e.g.
    gaze up and down at 0.1 each: the net effect is what counts)."""
    return exclusive_projection(np.clip(ict_from_mediapipe(obs.blendshapes), 0.0, 1.0))[0]


_PAIR_INDEX = np.array([[ICT_NAMES.index(a), ICT_NAMES.index(b)] for a, b in EXCLUSIVE_PAIRS])


class HeadFitter:
    """Reusable fitter: holds the head model evaluated at the (calibrated) MediaPipe correspondence points."""

    def __init__(self, head: HeadModel | None = None, settings: FitSettings | None = None,
                 calibration: LandmarkCalibration | None = None) -> None:
        self.head = head or HeadModel()
        self.settings = settings or FitSettings()
        corr = correspondence.load()
        self.surface_points: SurfacePointModel = self.head.surface_points(
            torch.from_numpy(corr.tri), torch.from_numpy(corr.bary)
        )
        self._corners, self._bary = self.head.topology.faces[corr.tri], corr.bary  # (N, 3) each
        if calibration is None:
            calibration = LandmarkCalibration.load() if self.settings.calibrated else LandmarkCalibration.zero()
        self.calibration = calibration
        # Where MediaPipe puts each landmark on the ICT head: its surface point plus the learned offset.
        self.points = SurfacePointModel(
            neutral=self.surface_points.neutral + torch.from_numpy(calibration.offsets_cm),
            identity_basis=self.surface_points.identity_basis,
            expression_basis=self.surface_points.expression_basis,
        )
        weights = np.ones(len(corr.tri), np.float32)
        weights[list(FACE_OVAL)] = self.settings.oval_weight
        weights[list(RIGHT_EYE_OPENING + LEFT_EYE_OPENING)] = self.settings.lid_weight
        self.weights = torch.from_numpy(weights)
        self.pupils = pupil_points(self.head)
        self.rest_mask = np.array([n in REST_SHAPES for n in ICT_NAMES])

    def initial_pose(self, obs: FaceObservation, focal: float, principal: tuple[float, float],
                     points_head: Tensor) -> tuple[np.ndarray, np.ndarray]:
        """Rotation from MediaPipe's head pose; translation that matches the landmarks' position and size."""
        rotation = _OPENGL_TO_OPENCV @ obs.head_pose[:3, :3].astype(np.float64)
        rotated = points_head.numpy().astype(np.float64) @ rotation.T
        target = obs.landmarks_px[: len(rotated), :2].astype(np.float64)
        spread_2d = np.linalg.norm(target - target.mean(0), axis=1).mean()
        spread_3d = np.linalg.norm(rotated[:, :2] - rotated[:, :2].mean(0), axis=1).mean()
        tz = focal * spread_3d / max(spread_2d, 1e-6) - rotated[:, 2].mean()
        depth = tz + rotated[:, 2].mean()
        txy = (target.mean(0) - np.asarray(principal)) * depth / focal - rotated[:, :2].mean(0)
        return rotation, np.array([txy[0], txy[1], tz])

    def fit(self, obs: FaceObservation, fixed_expression: np.ndarray | None = None) -> HeadFit:
        """Fit camera, pose, identity and expression to `obs`.

        `fixed_expression` (53,): solve only pose and identity with the expression held there (what the
        calibration does with MediaPipe's scores); the irises are not read.
        """
        start = time.perf_counter()
        settings = self.settings
        width, height = obs.image_size
        focal = settings.focal_factor * max(width, height)
        principal = (width / 2.0, height / 2.0)
        n = self.points.neutral.shape[0]  # the landmarks; then the two pupils (2D only)
        dtype = torch.float64  # the normal equations want the precision; the problem is tiny
        target = torch.from_numpy(obs.landmarks_px[[*range(n), *PUPILS.values()], :2]).to(dtype)
        target_depth = torch.from_numpy(obs.landmarks_px[:n, 2]).to(dtype)
        target_depth = target_depth - target_depth.mean()
        scale = float(obs.interocular_px)
        points = SurfacePointModel.cat(self.points, self.pupils)
        neutral, identity_basis, expression_basis = (t.to(dtype) for t in (points.neutral, points.identity_basis,
                                                                           points.expression_basis))  # fmt: skip
        seen = {eye: eye_open(obs, eye) for eye in PUPILS}
        pupil_weights = [settings.pupil_weight * seen[eye] for eye in PUPILS]
        weights = torch.cat([self.weights.to(dtype), torch.tensor(pupil_weights, dtype=dtype)])
        with_irises = (weights.sqrt() / scale)[:, None]
        w_2d = torch.cat([with_irises[:n], torch.zeros(len(PUPILS), 1, dtype=dtype)])  # the irises: the gaze's alone
        w_depth = (self.weights.to(dtype) * settings.depth_weight).sqrt() / scale
        m = len(neutral)

        scores = expression_prior(obs)
        prior_target = torch.from_numpy(scores if fixed_expression is None else fixed_expression).to(dtype)
        rotation0_np, translation0 = self.initial_pose(obs, focal, principal, self.points.neutral)
        rotation0 = torch.from_numpy(rotation0_np).to(dtype)
        # Parameter vector: [omega (3), translation (3), identity (100), expression (53)].
        sections = (3, 3, N_IDENTITY, N_EXPRESSION)
        n_coefficients = N_IDENTITY + N_EXPRESSION
        params = torch.cat([torch.zeros(3, dtype=dtype), torch.from_numpy(translation0).to(dtype),
                            torch.zeros(N_IDENTITY, dtype=dtype), prior_target.clone()])
        pair_a, pair_b = torch.from_numpy(_PAIR_INDEX[:, 0]), torch.from_numpy(_PAIR_INDEX[:, 1])
        sqrt_exclusive = math.sqrt(settings.exclusive_penalty)
        sqrt_blendshape_prior = torch.full((N_EXPRESSION,), math.sqrt(settings.blendshape_prior), dtype=dtype)

        def camera_points(x: Tensor) -> Tensor:
            omega, translation, identity, expression = torch.split(x, sections)
            points = neutral + (identity @ identity_basis + expression @ expression_basis).reshape(-1, 3)
            return points @ (_axis_angle_to_matrix(omega) @ rotation0).T + translation

        def residuals(x: Tensor) -> Tensor:
            cam = camera_points(x)
            pixels = project(cam, focal, principal)
            depth_px = cam[:n, 2] * focal / cam[:n, 2].mean()
            _, _, identity, expression = torch.split(x, sections)
            return torch.cat([
                ((pixels - target) * w_2d).reshape(-1),
                (depth_px - depth_px.mean() - target_depth) * w_depth,
                math.sqrt(settings.identity_prior) * identity,
                sqrt_blendshape_prior * (expression - prior_target),
                sqrt_exclusive * expression[pair_a] * expression[pair_b],
            ])  # fmt: skip

        coefficient_basis = torch.cat([identity_basis, expression_basis]).reshape(n_coefficients, m, 3)
        prior_diagonal = torch.cat([torch.full((N_IDENTITY,), math.sqrt(settings.identity_prior), dtype=dtype),
                                    sqrt_blendshape_prior])
        pair_rows = torch.arange(len(_PAIR_INDEX))

        def jacobian(x: Tensor) -> Tensor:
            """d residuals / d x at a point whose rotation increment is zero (see `retract`): the points
            are linear in the coefficients and a small rotation w moves a point p by w x p."""
            cam = camera_points(x)
            x_c, y_c, z_c = cam.unbind(-1)
            zeros = torch.zeros_like(z_c)
            d_pixel = focal * torch.stack([
                torch.stack([1 / z_c, zeros, -x_c / z_c**2], -1), torch.stack([zeros, 1 / z_c, -y_c / z_c**2], -1),
            ], 1)  # (M, 2, 3)  # fmt: skip
            rotated = cam - x[3:6]  # R p, the points before translation
            d_rotation = torch.stack([torch.linalg.cross(axis.expand_as(rotated), rotated)
                                      for axis in torch.eye(3, dtype=dtype)])  # (3, M, 3)
            d_translation = torch.eye(3, dtype=dtype)[:, None, :].expand(3, m, 3)
            d_cam = torch.cat([d_rotation, d_translation, coefficient_basis @ rotation0.T])  # (P, M, 3)
            block_2d = torch.einsum("nij,pnj->nip", d_pixel, d_cam) * w_2d[:, :, None]  # (M, 2, P)
            mean_z = z_c[:n].mean()
            d_z = d_cam[:, :n, 2].T  # (N, P): the depth term reads the landmarks only
            d_depth = focal / mean_z * d_z - (focal * z_c[:n] / mean_z**2)[:, None] * d_z.mean(0)
            block_depth = (d_depth - d_depth.mean(0)) * w_depth[:, None]
            pose_zeros = torch.zeros(n_coefficients, 6, dtype=dtype)
            block_prior = torch.cat([pose_zeros, torch.diag(prior_diagonal)], 1)
            expression = x[-N_EXPRESSION:]
            block_pairs = torch.zeros(len(_PAIR_INDEX), len(x), dtype=dtype)
            offset = len(x) - N_EXPRESSION
            block_pairs[pair_rows, offset + pair_a] = sqrt_exclusive * expression[pair_b]
            block_pairs[pair_rows, offset + pair_b] = sqrt_exclusive * expression[pair_a]
            return torch.cat([block_2d.reshape(2 * m, -1), block_depth, block_prior, block_pairs])

        def retract(x: Tensor) -> Tensor:
            """Fold the rotation increment into the base rotation, so the next linearisation is at zero."""
            nonlocal rotation0
            rotation0 = _axis_angle_to_matrix(x[:3]) @ rotation0
            x = x.clone()
            x[:3] = 0.0
            return x

        # The gaze: the irises alone turn the open eyes (pose, identity and every other shape held), once the pose
        # is known and again once the identity is; everything else fits around that gaze (the gaze shapes move
        # the lids too). So where a person looks neither reshapes their head nor is pulled along by their lids.
        gaze = np.array([n.startswith("eyeLook") and seen["left" if n.endswith("_L") else "right"] for n in ICT_NAMES])
        by_irises = torch.cat([torch.zeros_like(with_irises[:n]), with_irises[n:]]), torch.zeros_like(w_depth)
        by_landmarks = w_2d, w_depth

        def solve(x: Tensor, pose: bool, identity: bool, expression: np.ndarray, steps: int,
                  irises: bool = False) -> Tensor:  # fmt: skip
            nonlocal w_2d, w_depth
            w_2d, w_depth = by_irises if irises else by_landmarks
            free = torch.zeros(len(x), dtype=torch.bool)
            free[:6], free[6 : 6 + N_IDENTITY], free[-N_EXPRESSION:] = pose, identity, torch.from_numpy(expression)
            return _levenberg_marquardt(residuals, jacobian, retract, x, free, steps)

        params = solve(params, True, False, np.zeros(N_EXPRESSION, bool), settings.pose_steps)
        if fixed_expression is not None:  # pose and identity only
            params = solve(params, True, True, np.zeros(N_EXPRESSION, bool), settings.steps)
        else:
            params = solve(params, False, False, gaze, settings.gaze_steps, irises=True)
            params = solve(params, True, True, ~gaze, settings.steps)
            # the person's own eyeballs turn about their own centres (as `HeadModel.forward` turns them)
            own = pupil_points(self.head, params[6 : 6 + N_IDENTITY].float()).expression_basis.to(dtype)
            expression_basis = torch.cat([expression_basis.reshape(N_EXPRESSION, m, 3)[:, :n],
                                          own.reshape(N_EXPRESSION, -1, 3)], 1).reshape(N_EXPRESSION, -1)  # fmt: skip
            coefficient_basis = torch.cat([identity_basis, expression_basis]).reshape(n_coefficients, m, 3)
            params = solve(params, False, False, gaze, settings.gaze_steps, irises=True)
            params = solve(params, False, False, ~gaze, settings.refit_steps)
            projected, frozen, changed = exclusive_projection(params[-N_EXPRESSION:].numpy())
            if changed:
                params[-N_EXPRESSION:] = torch.from_numpy(projected)
                params = solve(params, False, False, ~gaze & ~frozen, settings.refit_steps)

        with torch.no_grad():
            pixels = project(camera_points(params), focal, principal)
            distances = (pixels - target)[:n].norm(dim=-1)  # the landmarks' (the pupils are not among them)
        omega, translation, identity, expression = (t.numpy() for t in torch.split(params, sections))
        rotation = (_axis_angle_to_matrix(torch.from_numpy(omega)) @ rotation0).numpy()
        expression = expression.astype(np.float32)
        rest = np.where(self.rest_mask, np.minimum(expression, self.calibration.rest_ceiling), 0.0).astype(np.float32)
        rest[ICT_NAMES.index(REST_LIP_SEAL[0])] = REST_LIP_SEAL[1]
        if fixed_expression is None:  # both in the plain shapes' units until here (the rest's ceiling is)
            expression = self.blinks_for_own_lids(identity, expression)
            rest = self.blinks_for_own_lids(identity, rest)
        mean_px = float(distances.mean())
        return HeadFit(
            identity=identity.astype(np.float32),
            expression=expression,
            rest_expression=rest,
            rotation=rotation.astype(np.float32),
            translation=translation.astype(np.float32),
            focal_px=float(focal),
            principal_px=principal,
            image_size=(width, height),
            landmark_error_px=mean_px,
            landmark_error_iod=mean_px / scale,
            seconds=time.perf_counter() - start,
            extras={"fov_deg": math.degrees(2 * math.atan(max(width, height) / 2 / focal))},
        )

    def blinks_for_own_lids(self, identity: np.ndarray, expression: np.ndarray) -> np.ndarray:
        """`expression` (53,) with each eyeBlink re-chosen for the person's own blink shapes (`HeadModel.lids`).

        The fit reads ICT's plain, linear eyeBlink shapes; the renders pose the person's, which close a wide-eyed
        person's lid further at the same weight. Without this, a half-closed eye in the photo came out more
        closed than the photo shows it. Per eye, the weight in [0, 1] whose landmarks on the eye's contour come
        nearest (least squares, on a 0.005 grid) to where the plain shape put them."""
        from sie3d.head.eyelids import inbetween_weights
        from sie3d.head.model import BLINKS

        out = np.asarray(expression, np.float32).copy()
        if not (out[BLINKS] > 0).any():
            return out
        shapes = self.head.lids.shapes(identity)
        plain = self.surface_points.expression_basis.reshape(N_EXPRESSION, -1, 3).numpy()
        weights = np.linspace(0.0, 1.0, 201)
        tents = inbetween_weights(torch.from_numpy(weights)).numpy()  # (201, J)
        for k, index in enumerate(BLINKS):
            if out[index] <= 0:
                continue
            ids = list(LEFT_EYE_OPENING if k == 0 else RIGHT_EYE_OPENING)  # eyeBlink_L: the subject's left (+x)
            corners, bary = self._corners[ids], self._bary[ids][..., None]
            full = (shapes.full[k][corners] * bary).sum(1)  # (P, 3) at the landmarks
            inbetween = (shapes.inbetween[k][:, corners] * bary).sum(2)  # (J, P, 3)
            posed = weights[:, None, None] * (plain[index, ids] + full)[None]
            posed = posed + np.einsum("wj,jpc->wpc", tents, inbetween)
            error = ((posed - out[index] * plain[index, ids][None]) ** 2).sum((1, 2))
            out[index] = weights[int(error.argmin())]
        return out

    def landmarks_3d(self, fit: HeadFit, expression: np.ndarray | None = None) -> np.ndarray:
        """(468, 3) head-space positions of the MediaPipe landmarks for `fit` (optionally another expression), through
        ICT's plain shapes (the fit's own model: with a blink, the eye's contour a little more open than the
        person's own lids pose it, `blinks_for_own_lids`)."""
        expression = fit.expression if expression is None else expression
        with torch.no_grad():
            return self.points(torch.from_numpy(fit.identity)[None],
                               torch.from_numpy(np.asarray(expression, np.float32))[None])[0].numpy()
