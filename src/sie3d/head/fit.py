"""Fit ICT-FaceKit to a `FaceObservation`: camera, head pose, identity and the photo's expression.

Regularised least squares over all 468 MediaPipe face landmarks (2D reprojection plus MediaPipe's
relative depth), solved by Levenberg-Marquardt on the CPU in two stages: pose first, then everything. The
expression starts from MediaPipe's own blendshape scores (mapped to ICT names).

The result separates the person's *rest* expression -- eye and brow coefficients that a 2D landmark
fit uses to explain the person's own eye and brow shape -- from the *emotional* expression. The rest
stays in every output; the user's expression goes on top of it.
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
from sie3d.head.model import N_EXPRESSION, N_IDENTITY, HeadModel, SurfacePointModel
from sie3d.head.names import ICT_NAMES, ict_from_mediapipe

FOCAL_FACTOR = 1.2  # focal length = 1.2 x the longer image side (~45° field of view): typical portraits
# MediaPipe's face-oval landmarks sit on the silhouette, which slides over the head as it turns.
FACE_OVAL = (
    10, 338, 297, 332, 284, 251, 389, 356, 454, 323, 361, 288, 397, 365, 379, 378, 400, 377, 152, 148, 176,
    149, 150, 136, 172, 58, 132, 93, 234, 127, 162, 21, 54, 103, 67, 109,
)  # fmt: skip
OVAL_WEIGHT = 0.3
DEPTH_WEIGHT = 0.05
IDENTITY_PRIOR = 2e-4  # identity RMS ~0.75 on the studio photos; weaker priors overfit 2D noise (RMS 1.8)
EXPRESSION_PRIOR = 2e-4
# Coefficients that shape the resting eyes and brows: kept as part of the person (see module doc).
REST_SHAPES = tuple(
    n for n in ICT_NAMES if n.startswith(("eyeWide", "eyeLookUp", "eyeLookDown", "eyeLookIn", "eyeLookOut",
                                          "browInnerUp", "browOuterUp", "browDown", "eyeSquint"))
)  # fmt: skip
_OPENGL_TO_OPENCV = np.diag([1.0, -1.0, -1.0])


@dataclass(frozen=True)
class FitSettings:
    pose_steps: int = 8  # Levenberg-Marquardt iterations with only the pose free
    steps: int = 20  # then with everything free (stops earlier once converged)
    focal_factor: float = FOCAL_FACTOR


@dataclass(frozen=True)
class HeadFit:
    """A fitted head. Camera: OpenCV convention (x right, y down, z forward), pixels of the photo."""

    identity: np.ndarray  # (100,)
    expression: np.ndarray  # (53,) the photo's full expression (rest + emotional)
    rest_expression: np.ndarray  # (53,) the person's resting eye/brow shape, zero elsewhere
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


def _levenberg_marquardt(residuals, jacobian, retract, x: Tensor, free: Tensor, iterations: int) -> Tensor:
    """Minimise ||residuals(x)||² over the `free` entries of x; expression entries stay in [0, 1]."""
    lam = 1e-3
    lower = x.new_full(x.shape, -math.inf)
    upper = x.new_full(x.shape, math.inf)
    lower[-N_EXPRESSION:], upper[-N_EXPRESSION:] = 0.0, 1.0
    r = residuals(x)
    cost = float(r @ r)
    for _ in range(iterations):
        j = jacobian(x)[:, free]
        jtj, jtr = j.T @ j, j.T @ r
        damping = torch.diag(jtj).clamp_min(1e-9)
        while True:
            step = torch.linalg.solve(jtj + lam * torch.diag(damping), -jtr)
            candidate = x.clone()
            candidate[free] = torch.minimum(torch.maximum(x[free] + step, lower[free]), upper[free])
            r_new = residuals(candidate)
            cost_new = float(r_new @ r_new)
            if cost_new < cost:
                x, r, lam = retract(candidate), r_new, max(lam / 3.0, 1e-7)
                converged = cost - cost_new < 1e-6 * cost
                cost = cost_new
                break
            lam *= 4.0
            if lam > 1e6:
                return x
        if converged:
            break
    return x


class HeadFitter:
    """Reusable fitter: holds the head model evaluated at the MediaPipe correspondence points."""

    def __init__(self, head: HeadModel | None = None, settings: FitSettings | None = None) -> None:
        self.head = head or HeadModel()
        self.settings = settings or FitSettings()
        corr = correspondence.load()
        self.points: SurfacePointModel = self.head.surface_points(
            torch.from_numpy(corr.tri), torch.from_numpy(corr.bary)
        )
        weights = np.ones(len(corr.tri), np.float32)
        weights[list(FACE_OVAL)] = OVAL_WEIGHT
        self.weights = torch.from_numpy(weights)
        self.rest_mask = torch.tensor([n in REST_SHAPES for n in ICT_NAMES], dtype=torch.float32)

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

    def fit(self, obs: FaceObservation) -> HeadFit:
        start = time.perf_counter()
        settings = self.settings
        width, height = obs.image_size
        focal = settings.focal_factor * max(width, height)
        principal = (width / 2.0, height / 2.0)
        n = self.points.neutral.shape[0]
        dtype = torch.float64  # the normal equations want the precision; the problem is tiny
        target = torch.from_numpy(obs.landmarks_px[:n, :2]).to(dtype)
        target_depth = torch.from_numpy(obs.landmarks_px[:n, 2]).to(dtype)
        target_depth = target_depth - target_depth.mean()
        scale = float(obs.interocular_px)
        neutral = self.points.neutral.to(dtype)
        identity_basis = self.points.identity_basis.to(dtype)
        expression_basis = self.points.expression_basis.to(dtype)
        w_2d = (self.weights.to(dtype).sqrt() / scale)[:, None]
        w_depth = (self.weights.to(dtype) * DEPTH_WEIGHT).sqrt() / scale

        expression_init = torch.from_numpy(ict_from_mediapipe(obs.blendshapes)).to(dtype).clamp(0, 1)
        rotation0_np, translation0 = self.initial_pose(obs, focal, principal, self.points.neutral)
        rotation0 = torch.from_numpy(rotation0_np).to(dtype)
        # Parameter vector: [omega (3), translation (3), identity (100), expression (53)].
        sections = (3, 3, N_IDENTITY, N_EXPRESSION)
        params = torch.cat([torch.zeros(3, dtype=dtype), torch.from_numpy(translation0).to(dtype),
                            torch.zeros(N_IDENTITY, dtype=dtype), expression_init])

        def camera_points(x: Tensor) -> Tensor:
            omega, translation, identity, expression = torch.split(x, sections)
            points = neutral + (identity @ identity_basis + expression @ expression_basis).reshape(-1, 3)
            return points @ (_axis_angle_to_matrix(omega) @ rotation0).T + translation

        def residuals(x: Tensor) -> Tensor:
            cam = camera_points(x)
            pixels = project(cam, focal, principal)
            depth_px = cam[:, 2] * focal / cam[:, 2].mean()
            _, _, identity, expression = torch.split(x, sections)
            return torch.cat([
                ((pixels - target) * w_2d).reshape(-1),
                (depth_px - depth_px.mean() - target_depth) * w_depth,
                math.sqrt(IDENTITY_PRIOR) * identity,
                math.sqrt(EXPRESSION_PRIOR) * (expression - expression_init),
            ])  # fmt: skip

        coefficient_basis = torch.cat([identity_basis, expression_basis]).reshape(N_IDENTITY + N_EXPRESSION, n, 3)
        prior_diagonal = torch.cat([torch.full((N_IDENTITY,), math.sqrt(IDENTITY_PRIOR), dtype=dtype),
                                    torch.full((N_EXPRESSION,), math.sqrt(EXPRESSION_PRIOR), dtype=dtype)])

        def jacobian(x: Tensor) -> Tensor:
            """d residuals / d x at a point whose rotation increment is zero (see `retract`): the points
            are linear in the coefficients and a small rotation w moves a point p by w x p."""
            cam = camera_points(x)
            x_c, y_c, z_c = cam.unbind(-1)
            zeros = torch.zeros_like(z_c)
            d_pixel = focal * torch.stack([
                torch.stack([1 / z_c, zeros, -x_c / z_c**2], -1), torch.stack([zeros, 1 / z_c, -y_c / z_c**2], -1),
            ], 1)  # (N, 2, 3)  # fmt: skip
            rotated = cam - x[3:6]  # R p, the points before translation
            d_rotation = torch.stack([torch.linalg.cross(axis.expand_as(rotated), rotated)
                                      for axis in torch.eye(3, dtype=dtype)])  # (3, N, 3)
            d_translation = torch.eye(3, dtype=dtype)[:, None, :].expand(3, n, 3)
            d_cam = torch.cat([d_rotation, d_translation, coefficient_basis @ rotation0.T])  # (P, N, 3)
            block_2d = torch.einsum("nij,pnj->nip", d_pixel, d_cam) * w_2d[:, :, None]  # (N, 2, P)
            mean_z = z_c.mean()
            d_z = d_cam[:, :, 2].T  # (N, P)
            d_depth = focal / mean_z * d_z - (focal * z_c / mean_z**2)[:, None] * d_z.mean(0)
            block_depth = (d_depth - d_depth.mean(0)) * w_depth[:, None]
            pose_zeros = torch.zeros(N_IDENTITY + N_EXPRESSION, 6, dtype=dtype)
            block_prior = torch.cat([pose_zeros, torch.diag(prior_diagonal)], 1)
            return torch.cat([block_2d.reshape(2 * n, -1), block_depth, block_prior])

        def retract(x: Tensor) -> Tensor:
            """Fold the rotation increment into the base rotation, so the next linearisation is at zero."""
            nonlocal rotation0
            rotation0 = _axis_angle_to_matrix(x[:3]) @ rotation0
            x = x.clone()
            x[:3] = 0.0
            return x

        pose_only = torch.zeros(len(params), dtype=torch.bool)
        pose_only[:6] = True
        params = _levenberg_marquardt(residuals, jacobian, retract, params, pose_only, settings.pose_steps)
        params = _levenberg_marquardt(residuals, jacobian, retract, params, torch.ones_like(pose_only), settings.steps)

        with torch.no_grad():
            pixels = project(camera_points(params), focal, principal)
            distances = (pixels - target).norm(dim=-1)
        omega, translation, identity, expression = (t.numpy() for t in torch.split(params, sections))
        rotation = (_axis_angle_to_matrix(torch.from_numpy(omega)) @ rotation0).numpy()
        expression = expression.astype(np.float32)
        mean_px = float(distances.mean())
        return HeadFit(
            identity=identity.astype(np.float32),
            expression=expression,
            rest_expression=expression * self.rest_mask.numpy(),
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

    def landmarks_3d(self, fit: HeadFit, expression: np.ndarray | None = None) -> np.ndarray:
        """(468, 3) head-space positions of the MediaPipe landmarks for `fit` (optionally another expression)."""
        expression = fit.expression if expression is None else expression
        with torch.no_grad():
            return self.points(torch.from_numpy(fit.identity)[None],
                               torch.from_numpy(np.asarray(expression, np.float32))[None])[0].numpy()
