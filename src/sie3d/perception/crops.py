"""Differentiable face crops for the perception nets, placed from (projected) MediaPipe landmarks.

Images are batched (B, C, H, W) float tensors. Pixel coordinates are *continuous*: pixel i covers
[i, i + 1), x right, y down -- the convention of MediaPipe's landmarks (normalised x times the width)
and of `sie3d.face.observation.FaceObservation.landmarks_px`.

A crop is a square `CropBox` (centre, side, rotation) resampled bilinearly with ``grid_sample``: output
pixel (j, i) (row, column) of an S x S crop samples the image at
``centre + side * R(angle) @ ((i + 0.5) / S - 0.5, (j + 0.5) / S - 0.5)``, R the rotation taking the
crop's x axis to ``(cos angle, sin angle)`` in the image. Outside the image the crop is black (zeros).
Gradients reach the image, and -- unless the box is detached, which the callers here do by default --
the box itself.

Where each net's crop comes from (the conventions the nets were trained and are run with):

- MediaPipe face landmark model (256 x 256): `mediapipe_roi`, MediaPipe's own rule for the next frame
  in tracking mode (``face_landmarks_detector_graph``: LandmarksToDetection -> DetectionsToRects
  rotated by the vector from landmark 33 to landmark 263, target angle 0 -> RectTransformation
  scale 1.5 x 1.5, square_long): the axis-aligned box of all landmarks, centred, its longer side
  times 1.5, rotated so that the eye line is horizontal in the crop. (On a still photo MediaPipe
  places the first crop from its face detector instead, by the same 1.5x square rule around the
  detection box; the landmark rule is the one it converges to and the one a render can use.)
  MediaPipe's CPU path resamples with OpenCV's bilinear ``warpPerspective``, mapping the ROI's corners
  onto the crop's corners as pixel indices; that differs from the pixel-centre mapping here by
  0.5 * (1 - side / 256) image pixels, under a pixel, which tests/test_perception.py bounds through
  the landmarks (the chain given MediaPipe's own detector crop reproduces MediaPipe's output).
- mini-Xception (64 x 64 gray): `haar_box`. fer runs it on an OpenCV Haar-cascade box grown by
  ``offsets=(10, 10)`` pixels per side, resized by ``cv2.resize`` (bilinear, no anti-aliasing). The
  Haar box is placed from landmarks by the rule the project calibrated against Haar boxes on the shared
  photos (square side 2.648 d, centre 0.24 d below the eye midpoint along the eye -> mouth axis, d
  the distance from the eye midpoint to the mouth-corner midpoint; EVALUATION.md, "Crops"; its
  sideways offset of -0.004 d is left out). The judges keep their own copy of that calibration, which
  this package may not import. fer's
  fixed 10 px are taken at a 200 px box, a typical webcam face: 5 % per side, i.e. side 1.1 x 2.648 d.
- SFace (112 x 112 RGB, `sie3d.face.sface`): `sface_box`, the project's own alignment
  (`sie3d.face.align`: least-squares similarity of five landmark points onto the ArcFace template,
  as OpenCV's ``FaceRecognizerSF.alignCrop`` does), as a rotated square box.
- MediaPipe blendshape model: no image crop; its input is 146 of the 478 landmarks in image pixels,
  which it centres and scales itself (`sie3d.perception.face_mesh.BLENDSHAPE_LANDMARKS`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from sie3d.face.align import align_matrix
from sie3d.face.observation import LANDMARK_IDS
from sie3d.face.sface import CROP_SIZE

RIGHT_EYE_CORNERS = (LANDMARK_IDS["right_eye_outer"], LANDMARK_IDS["right_eye_inner"])
LEFT_EYE_CORNERS = (LANDMARK_IDS["left_eye_outer"], LANDMARK_IDS["left_eye_inner"])
MOUTH_CORNERS = (LANDMARK_IDS["mouth_right"], LANDMARK_IDS["mouth_left"])
# MediaPipe's rotation vector for the landmark ROI: landmark 33 -> landmark 263 (the eye line).
ROI_ROTATION_FROM, ROI_ROTATION_TO = LANDMARK_IDS["right_eye_outer"], LANDMARK_IDS["left_eye_outer"]
ROI_SCALE = 1.5  # MediaPipe's RectTransformation scale for the face landmark ROI
HAAR_SIDE, HAAR_DOWN = 2.648, 0.24  # Haar-cascade box in units of d (calibrated on the shared photos)
FER_MARGIN = 0.05  # fer's 10 px per side on a 200 px box
SFACE_SIZE = CROP_SIZE  # SFace's aligned crop

# OpenCV's RGB -> gray weights (cv2.COLOR_RGB2GRAY), which fer uses.
GRAY_WEIGHTS = (0.299, 0.587, 0.114)


@dataclass(frozen=True)
class CropBox:
    """B square crop regions in image pixels: centre (B, 2) (x, y), side (B,), angle (B,) radians
    (the image direction of the crop's x axis is (cos angle, sin angle); 0 = upright)."""

    centre: Tensor
    side: Tensor
    angle: Tensor

    def detach(self) -> CropBox:
        return CropBox(self.centre.detach(), self.side.detach(), self.angle.detach())

    def rotation(self) -> Tensor:
        """(B, 2, 2): crop axes -> image axes."""
        cos, sin = torch.cos(self.angle), torch.sin(self.angle)
        return torch.stack([torch.stack([cos, -sin], -1), torch.stack([sin, cos], -1)], -2)

    def to_image(self, points_crop: Tensor, size: int) -> Tensor:
        """(B, N, 2) points in crop pixels of an S x S crop (S = `size`, continuous) -> (B, N, 2) image pixels."""
        unit = points_crop / size - 0.5
        return self.centre[:, None] + self.side[:, None, None] * unit @ self.rotation().transpose(1, 2)

    def to_crop(self, points_image: Tensor, size: int) -> Tensor:
        """Inverse of `to_image`: (B, N, 2) image pixels -> (B, N, 2) crop pixels."""
        unit = (points_image - self.centre[:, None]) @ self.rotation() / self.side[:, None, None]
        return (unit + 0.5) * size


def _landmarks(landmarks_px: Tensor) -> Tensor:
    if landmarks_px.ndim != 3 or landmarks_px.shape[1] < 468 or landmarks_px.shape[2] < 2:
        raise ValueError("expected MediaPipe landmarks (B, 468 or 478, 2 or 3) in pixels, "
                         f"got {tuple(landmarks_px.shape)}")
    return landmarks_px[..., :2]


def mediapipe_roi(landmarks_px: Tensor, scale: float = ROI_SCALE) -> CropBox:
    """MediaPipe's face-landmark ROI from (B, 468|478, 2|3) landmarks in pixels (see module doc)."""
    xy = _landmarks(landmarks_px)
    low, high = xy.min(1).values, xy.max(1).values  # (B, 2)
    eye_line = xy[:, ROI_ROTATION_TO] - xy[:, ROI_ROTATION_FROM]
    angle = torch.atan2(eye_line[:, 1], eye_line[:, 0])
    return CropBox((low + high) / 2, scale * (high - low).max(1).values, angle)


def mediapipe_detection_roi(box_px: Tensor, right_eye_px: Tensor, left_eye_px: Tensor,
                            scale: float = ROI_SCALE) -> CropBox:
    """MediaPipe's first crop on a still image, from its face detector (``face_landmarker_graph``:
    DetectionsToRects rotated by the detector's keypoint 0 -> 1, i.e. the subject's right eye -> left
    eye, then scale 1.5 x 1.5, square_long): box_px (B, 4) (x0, y0, x1, y1), eyes (B, 2) pixels."""
    size = box_px[:, 2:] - box_px[:, :2]
    eye_line = left_eye_px - right_eye_px
    angle = torch.atan2(eye_line[:, 1], eye_line[:, 0])
    return CropBox((box_px[:, :2] + box_px[:, 2:]) / 2, scale * size.max(1).values, angle)


def face_frame(landmarks_px: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """(eye midpoint (B, 2), unit eye -> mouth axis (B, 2), d (B,)): the frame of `haar_box`."""
    xy = _landmarks(landmarks_px)
    eye_mid = (xy[:, list(RIGHT_EYE_CORNERS)].mean(1) + xy[:, list(LEFT_EYE_CORNERS)].mean(1)) / 2
    mouth_mid = xy[:, list(MOUTH_CORNERS)].mean(1)
    d = (mouth_mid - eye_mid).norm(dim=1)
    return eye_mid, (mouth_mid - eye_mid) / d.clamp_min(1e-6)[:, None], d


def haar_box(landmarks_px: Tensor, margin: float = FER_MARGIN) -> CropBox:
    """The upright square face box fer gives mini-Xception (Haar box + `margin` per side), from landmarks."""
    eye_mid, axis, d = face_frame(landmarks_px)
    return CropBox(eye_mid + HAAR_DOWN * d[:, None] * axis, HAAR_SIDE * (1 + 2 * margin) * d, torch.zeros_like(d))


def similarity_box(matrix: np.ndarray, size: int) -> CropBox:
    """The rotated square box of an OpenCV-style (2, 3) similarity `matrix` (image pixel indices -> crop
    pixel indices, as ``cv2.warpAffine`` takes it) for a `size` x `size` crop: cropping that box equals
    ``cv2.warpAffine(image, matrix, (size, size))`` up to interpolation rounding."""
    matrix = np.asarray(matrix, np.float64)
    linear = matrix[:, :2]
    scale = float(np.sqrt(abs(np.linalg.det(linear))))
    # Continuous coordinates (pixel centres at +0.5): crop = linear @ image + shift.
    shift = matrix[:, 2] + 0.5 - linear @ np.array([0.5, 0.5])
    centre = np.linalg.solve(linear, np.array([size / 2, size / 2]) - shift)
    angle = -np.arctan2(linear[1, 0], linear[0, 0])  # the box rotation is the inverse of the image -> crop one
    return CropBox(torch.tensor(centre[None], dtype=torch.float32), torch.tensor([size / scale], dtype=torch.float32),
                   torch.tensor([angle], dtype=torch.float32))  # fmt: skip


def sface_box(landmarks_px: Tensor, size: int = SFACE_SIZE) -> CropBox:
    """SFace's aligned crop of each face as a box (placement computed in float64, not differentiable)."""
    points = _landmarks(landmarks_px).detach().cpu().double().numpy()
    boxes = [similarity_box(align_matrix(lm, size), size) for lm in points]
    return CropBox(*(torch.cat([getattr(b, f) for b in boxes]).to(landmarks_px.device)
                     for f in ("centre", "side", "angle")))  # fmt: skip


def sface_input(images: Tensor, landmarks_px: Tensor, color: str = "srgb") -> Tensor:
    """(B, 3, H, W) images in [0, 1] (``color`` "srgb" or "linear") -> (B, 3, 112, 112) aligned RGB crops
    in [0, 255]: what `sie3d.face.sface.SFace` takes. Differentiable with respect to the images."""
    return crop(as_srgb(images, color), sface_box(landmarks_px), SFACE_SIZE) * 255.0


def crop(images: Tensor, box: CropBox, size: int) -> Tensor:
    """(B, C, H, W) images -> (B, C, size, size) bilinear crops of `box` (zeros outside the image)."""
    if images.ndim != 4:
        raise ValueError(f"expected images (B, C, H, W), got {tuple(images.shape)}")
    batch, _, height, width = images.shape
    if box.centre.shape != (batch, 2):
        raise ValueError(f"crop box for {tuple(box.centre.shape)} centres, images have batch {batch}")
    scale = torch.tensor([2.0 / width, 2.0 / height], dtype=images.dtype, device=images.device)
    # Crop coordinates in [-1, 1] (grid_sample, align_corners=False) -> image coordinates in [-1, 1].
    linear = scale[None, :, None] * box.rotation().to(images.dtype) * (box.side.to(images.dtype) / 2)[:, None, None]
    shift = box.centre.to(images.dtype) * scale - 1
    theta = torch.cat([linear, shift[:, :, None]], dim=2)
    grid = F.affine_grid(theta, [batch, images.shape[1], size, size], align_corners=False)
    return F.grid_sample(images, grid, mode="bilinear", padding_mode="zeros", align_corners=False)


def linear_to_srgb(linear: Tensor) -> Tensor:
    """Linear RGB in [0, 1] -> sRGB-encoded in [0, 1], differentiable (clamped; finite gradient at 0)."""
    x = linear.clamp(0.0, 1.0)
    return torch.where(x <= 0.0031308, 12.92 * x, 1.055 * x.clamp_min(0.0031308) ** (1 / 2.4) - 0.055)


def to_gray(rgb: Tensor) -> Tensor:
    """(B, 3, H, W) RGB -> (B, 1, H, W) luma with OpenCV's weights."""
    weights = torch.tensor(GRAY_WEIGHTS, dtype=rgb.dtype, device=rgb.device)
    return (rgb * weights[None, :, None, None]).sum(1, keepdim=True)


def as_srgb(images: Tensor, color: str) -> Tensor:
    """(B, 3, H, W) float images in [0, 1], ``color`` "srgb" (photos, encoded) or "linear" (renders)
    -> sRGB-encoded, which is what every perception net was trained on."""
    if images.ndim != 4 or images.shape[1] != 3:
        raise ValueError(f"expected (B, 3, H, W) RGB images in [0, 1], got {tuple(images.shape)}")
    if color == "srgb":
        return images
    if color == "linear":
        return linear_to_srgb(images)
    raise ValueError(f"color must be 'srgb' or 'linear', got {color!r}")
