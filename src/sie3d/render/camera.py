"""Batched pinhole cameras and the coordinate conventions of the renderer.

Conventions (every function in `sie3d.render` follows them):

* **World**: right-handed, metres or whatever unit the mesh uses (ICT-FaceKit: centimetres),
  ``+y`` up, ``+z`` toward the viewer -- the head looks toward ``+z`` and a camera at yaw 0 sits on the
  ``+z`` axis looking back at it; ``+x`` is then on the viewer's right (the subject's left). This is the
  convention of ICT-FaceKit and glTF.
* **Camera**: OpenCV. ``world_to_cam`` maps world points to camera space where the camera looks down
  ``+z``, ``+x`` points right and ``+y`` points down in the image. Depth is the camera-space ``z``.
* **Pixels**: ``K`` maps camera space to pixels, ``u = fx * x / z + cx``, ``v = fy * y / z + cy``.
  Pixel ``(row i, column j)`` covers ``[j, j+1) x [i, i+1)`` and its centre is ``(j + 0.5, i + 0.5)``;
  ``v`` grows downward. ``perspective_K`` puts the principal point at the image centre
  ``(width / 2, height / 2)``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

__all__ = ["Cameras", "look_at", "orbit_cameras", "perspective_K", "project", "to_camera"]


# --- input checks shared by the render modules (kornia style: fail early with a readable message) ---


def _check_tensor(name: str, x: object, *, floating: bool = False, integer: bool = False) -> Tensor:
    if not isinstance(x, Tensor):
        raise ValueError(f"{name} must be a torch.Tensor, got {type(x).__name__}")
    if floating and not x.is_floating_point():
        raise ValueError(f"{name} must be a floating-point tensor, got dtype {x.dtype}")
    if integer and (x.is_floating_point() or x.is_complex() or x.dtype == torch.bool):
        raise ValueError(f"{name} must be an integer tensor (e.g. torch.long), got dtype {x.dtype}")
    return x


def _check_shape(name: str, x: Tensor, expected: str, ok: bool) -> None:
    if not ok:
        raise ValueError(f"{name} must have shape {expected}, got {tuple(x.shape)}")


def _check_faces(faces: object, num_verts: int | None = None, name: str = "faces") -> Tensor:
    faces = _check_tensor(name, faces, integer=True)
    _check_shape(name, faces, "(F, 3)", faces.ndim == 2 and faces.shape[1] == 3)
    if num_verts is not None and faces.numel() > 0:
        lo, hi = int(faces.min()), int(faces.max())
        if lo < 0 or hi >= num_verts:
            raise ValueError(
                f"{name} index vertices in [{lo}, {hi}] but there are only {num_verts} vertices; "
                "faces must be 0-based indices into the vertex array"
            )
    return faces.long()


# --- cameras ---


@dataclass(frozen=True)
class Cameras:
    """A batch of B pinhole cameras sharing one image size.

    Attributes:
        K: (B, 3, 3) pixel intrinsics ``[[fx, s, cx], [0, fy, cy], [0, 0, 1]]`` (see module docstring).
        world_to_cam: (B, 4, 4) rigid transforms, world -> OpenCV camera space.
        width, height: image size in pixels.
    """

    K: Tensor
    world_to_cam: Tensor
    width: int
    height: int

    def __post_init__(self) -> None:
        _check_tensor("Cameras.K", self.K, floating=True)
        _check_tensor("Cameras.world_to_cam", self.world_to_cam, floating=True)
        _check_shape("Cameras.K", self.K, "(B, 3, 3)", self.K.ndim == 3 and self.K.shape[1:] == (3, 3))
        w2c = self.world_to_cam
        _check_shape("Cameras.world_to_cam", w2c, "(B, 4, 4)", w2c.ndim == 3 and w2c.shape[1:] == (4, 4))
        if self.K.shape[0] != w2c.shape[0]:
            raise ValueError(
                f"Cameras.K has {self.K.shape[0]} cameras but world_to_cam has {w2c.shape[0]}; "
                "give one intrinsics matrix per extrinsics matrix"
            )
        if self.K.shape[0] == 0:
            raise ValueError("Cameras needs at least one camera")
        last_row = torch.tensor([0.0, 0.0, 1.0], dtype=self.K.dtype, device=self.K.device)
        if not bool((self.K[:, 2] == last_row).all()):
            raise ValueError("Cameras.K must have last row [0, 0, 1] (pixel intrinsics; depth is camera z)")
        if self.K.device != w2c.device or self.K.dtype != w2c.dtype:
            raise ValueError(
                f"Cameras.K ({self.K.dtype}, {self.K.device}) and world_to_cam ({w2c.dtype}, {w2c.device}) "
                "must share dtype and device"
            )
        for name in ("width", "height"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
                raise ValueError(f"Cameras.{name} must be a positive int, got {value!r}")

    @property
    def batch_size(self) -> int:
        return self.K.shape[0]

    @property
    def device(self) -> torch.device:
        return self.K.device

    @property
    def dtype(self) -> torch.dtype:
        return self.K.dtype

    @property
    def rotation(self) -> Tensor:
        """(B, 3, 3) world -> camera rotation."""
        return self.world_to_cam[:, :3, :3]

    @property
    def translation(self) -> Tensor:
        """(B, 3) world -> camera translation."""
        return self.world_to_cam[:, :3, 3]

    @property
    def centers_world(self) -> Tensor:
        """(B, 3) camera centres in world space (``-R^T t``)."""
        return -(self.rotation.transpose(1, 2) @ self.translation.unsqueeze(-1)).squeeze(-1)

    def to(self, device: torch.device | str | None = None, dtype: torch.dtype | None = None) -> Cameras:
        return Cameras(
            self.K.to(device=device, dtype=dtype),
            self.world_to_cam.to(device=device, dtype=dtype),
            self.width,
            self.height,
        )

    def window(self, left: Sequence[int], top: Sequence[int], width: int, height: int) -> Cameras:
        """The same cameras seeing only a width x height window of their image, camera b's starting at pixel
        (left[b], top[b]): pixel (x, y) of the window is pixel (x + left[b], y + top[b]) of the image."""
        if len(left) != self.batch_size or len(top) != self.batch_size:
            raise ValueError(f"window needs one left and one top per camera ({self.batch_size}), "
                             f"got {len(left)} and {len(top)}")  # fmt: skip
        shift = torch.zeros_like(self.K)
        shift[:, 0, 2] = torch.as_tensor(left, dtype=self.K.dtype, device=self.device)
        shift[:, 1, 2] = torch.as_tensor(top, dtype=self.K.dtype, device=self.device)
        # K's last row is (0, 0, 1), so subtracting the shift from (cx, cy) moves every pixel by it
        return Cameras(self.K - shift, self.world_to_cam, width, height)

    def __getitem__(self, index: int | slice | Sequence[int] | Tensor) -> Cameras:
        """Select cameras; the batch dimension is kept (``cams[0]`` has batch size 1)."""
        if isinstance(index, int):
            index = slice(index, index + 1 if index != -1 else None)
        return Cameras(self.K[index], self.world_to_cam[index], self.width, self.height)


def perspective_K(
    focal_px: float,
    width: int,
    height: int,
    *,
    dtype: torch.dtype = torch.float32,
    device: torch.device | str | None = None,
) -> Tensor:
    """(3, 3) intrinsics with square pixels, focal length ``focal_px`` and the principal point at the
    image centre ``(width / 2, height / 2)``."""
    if focal_px <= 0:
        raise ValueError(f"focal_px must be positive, got {focal_px}")
    return torch.tensor(
        [[focal_px, 0.0, width / 2.0], [0.0, focal_px, height / 2.0], [0.0, 0.0, 1.0]],
        dtype=dtype,
        device=device,
    )


def _as_vec3(name: str, x: Tensor | Sequence[float], like: Tensor | None) -> Tensor:
    if not isinstance(x, Tensor):
        kwargs = (
            {"dtype": like.dtype, "device": like.device} if like is not None else {"dtype": torch.float32}
        )
        x = torch.as_tensor(x, **kwargs)
    _check_shape(name, x, "(3,) or (B, 3)", x.ndim in (1, 2) and x.shape[-1] == 3)
    return x


def look_at(
    eye: Tensor | Sequence[float],
    target: Tensor | Sequence[float] = (0.0, 0.0, 0.0),
    up: Tensor | Sequence[float] = (0.0, 1.0, 0.0),
) -> Tensor:
    """OpenCV-convention ``world_to_cam`` of a camera at ``eye`` looking at ``target``.

    Args:
        eye, target, up: (3,) or (B, 3) world points / direction; ``up`` is the world direction that
            should appear upward in the image (default world ``+y``).

    Returns:
        (4, 4) if every input is (3,), else (B, 4, 4). Differentiable with respect to eye and target.
    """
    first = next((v for v in (eye, target, up) if isinstance(v, Tensor)), None)
    if first is not None and not first.is_floating_point():
        raise ValueError(f"look_at needs floating-point tensors, got {first.dtype}")
    eye_t = _as_vec3("eye", eye, first)
    target_t = _as_vec3("target", target, first).to(eye_t)
    up_t = _as_vec3("up", up, first).to(eye_t)
    batched = max(eye_t.ndim, target_t.ndim, up_t.ndim) == 2
    eye_t, target_t, up_t = torch.broadcast_tensors(eye_t, target_t, up_t)

    forward = target_t - eye_t  # camera +z
    f_norm = forward.norm(dim=-1, keepdim=True)
    if bool((f_norm <= 0).any()):
        raise ValueError("look_at: eye and target coincide; the viewing direction is undefined")
    forward = forward / f_norm
    # OpenCV camera: x = right = forward x up, y = down = forward x right (right-handed, y down).
    right = torch.linalg.cross(forward, up_t)
    r_norm = right.norm(dim=-1, keepdim=True)
    if bool((r_norm <= 1e-8 * up_t.norm(dim=-1, keepdim=True)).any()):
        raise ValueError("look_at: the viewing direction is parallel to `up`; pass a different `up` vector")
    right = right / r_norm
    down = torch.linalg.cross(forward, right)
    rot = torch.stack([right, down, forward], dim=-2)  # rows: camera axes in world coordinates
    trans = -(rot @ eye_t.unsqueeze(-1)).squeeze(-1)
    w2c = torch.zeros(*rot.shape[:-2], 4, 4, dtype=rot.dtype, device=rot.device)
    w2c[..., :3, :3] = rot
    w2c[..., :3, 3] = trans
    w2c[..., 3, 3] = 1.0
    return w2c if batched else w2c.reshape(4, 4)


def orbit_cameras(
    yaw_degrees: Sequence[float],
    distance: float,
    target: Sequence[float] | Tensor = (0.0, 0.0, 0.0),
    focal_px: float = 500.0,
    width: int = 256,
    height: int = 256,
    *,
    pitch_degrees: float = 0.0,
    dtype: torch.dtype = torch.float32,
    device: torch.device | str | None = None,
) -> Cameras:
    """Turntable views around a head that looks toward world ``+z`` (world: right-handed, ``+y`` up).

    Yaw 0 puts the camera on the ``+z`` side of ``target`` (a frontal view); positive yaw moves the camera
    toward ``+x`` (the subject's left, the viewer's right), i.e. a counter-clockwise turn seen from above.
    Positive pitch raises the camera above the target. Every camera keeps world ``+y`` up in the image.
    """
    if len(yaw_degrees) == 0:
        raise ValueError("orbit_cameras needs at least one yaw angle")
    if distance <= 0:
        raise ValueError(f"orbit_cameras: distance must be positive, got {distance}")
    tgt = torch.as_tensor(target, dtype=dtype, device=device).reshape(3)
    yaw = torch.tensor([math.radians(a) for a in yaw_degrees], dtype=dtype, device=device)
    pitch = math.radians(pitch_degrees)
    if abs(math.cos(pitch)) < 1e-6:
        raise ValueError("orbit_cameras: pitch of +-90 degrees looks along `up`; use a smaller pitch")
    direction = torch.stack(
        [
            torch.sin(yaw) * math.cos(pitch),
            torch.full_like(yaw, math.sin(pitch)),
            torch.cos(yaw) * math.cos(pitch),
        ],
        dim=-1,
    )
    eye = tgt + distance * direction
    w2c = look_at(eye, tgt.expand_as(eye), torch.tensor([0.0, 1.0, 0.0], dtype=dtype, device=device))
    K = perspective_K(focal_px, width, height, dtype=dtype, device=device).expand(len(yaw_degrees), 3, 3)
    return Cameras(K.contiguous(), w2c, width, height)


def _check_points(points_world: object, cams: Cameras, name: str = "points_world") -> Tensor:
    pts = _check_tensor(name, points_world, floating=True)
    _check_shape(name, pts, "(N, 3) or (B, N, 3)", pts.ndim in (2, 3) and pts.shape[-1] == 3)
    if pts.ndim == 3 and pts.shape[0] not in (1, cams.batch_size):
        raise ValueError(
            f"{name} has batch size {pts.shape[0]} but there are {cams.batch_size} cameras; "
            "give one point set per camera, or a single (N, 3) set shared by all cameras"
        )
    if pts.device != cams.device:
        raise ValueError(f"{name} is on {pts.device} but the cameras are on {cams.device}")
    return pts


def to_camera(points_world: Tensor, cams: Cameras) -> Tensor:
    """(N, 3) or (B, N, 3) world points -> (B, N, 3) OpenCV camera-space points. Differentiable."""
    pts = _check_points(points_world, cams)
    rot = cams.rotation.to(pts.dtype)
    trans = cams.translation.to(pts.dtype)
    return pts @ rot.transpose(1, 2) + trans.unsqueeze(1)


def _to_pixel_homogeneous(points_world: Tensor, cams: Cameras) -> Tensor:
    """(N, 3) or (B, N, 3) world points -> (B, N, 3) ``K (R p + t)``: pixel coordinates times depth, and
    the depth itself in the last component. One small matmul; differentiable."""
    pts = _check_points(points_world, cams)
    K = cams.K.to(pts.dtype)
    proj = K @ cams.world_to_cam[:, :3, :].to(pts.dtype)  # (B, 3, 4)
    return pts @ proj[:, :, :3].transpose(1, 2) + proj[:, :, 3].unsqueeze(1)


def project(points_world: Tensor, cams: Cameras) -> tuple[Tensor, Tensor]:
    """Project world points to pixels.

    Args:
        points_world: (N, 3) shared by all cameras, or (B, N, 3) one set per camera.
        cams: B cameras.

    Returns:
        uv_pixels: (B, N, 2) pixel coordinates (pixel centres at +0.5, v down).
        depth: (B, N) camera-space z. Points with depth <= 0 are behind the camera and their pixel
        coordinates are meaningless (infinite at depth 0). Differentiable.
    """
    hom = _to_pixel_homogeneous(points_world, cams)
    depth = hom[..., 2]
    return hom[..., :2] / depth.unsqueeze(-1), depth
