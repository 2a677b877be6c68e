"""MediaPipe's face landmark and blendshape networks as frozen PyTorch modules, and their chain.

Both come from the ``face_landmarker`` asset (MediaPipe Face Landmarker v2 ``.task`` bundle, a zip):
``face_landmarks_detector.tflite`` (256 x 256 RGB crop -> 478 landmarks) and
``face_blendshapes.tflite`` (146 landmarks -> 52 ARKit-style scores). Each is rebuilt from its
flatbuffer by `sie3d.perception.tflite_graph` and compared with LiteRT (the TFLite runtime MediaPipe
itself uses) in tests/test_perception.py.

`FaceMeshReader` chains them the way MediaPipe does, differentiably: image -> landmark ROI crop ->
478 landmarks in crop pixels -> projected back to image pixels -> the 146-landmark subset -> 52 scores.
"""

from __future__ import annotations

import zipfile
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor, nn

from sie3d.assets.registry import asset_file
from sie3d.errors import AssetError
from sie3d.face.observation import BLENDSHAPE_NAMES, N_LANDMARKS
from sie3d.perception.crops import CropBox, as_srgb, crop, mediapipe_roi
from sie3d.perception.tflite_graph import TFLiteGraph

LANDMARK_MODEL = "face_landmarks_detector.tflite"
BLENDSHAPE_MODEL = "face_blendshapes.tflite"
LANDMARK_INPUT_SIZE = 256

# The 146 landmarks the blendshape model reads, in its input order (MediaPipe,
# mediapipe/tasks/cc/vision/face_landmarker/face_blendshapes_graph.cc, kLandmarksSubsetIdxs); its input
# is their (x, y) in image pixels. tests/test_perception.py checks that feeding MediaPipe's own
# landmarks through this list reproduces MediaPipe's own blendshape scores.
BLENDSHAPE_LANDMARKS: tuple[int, ...] = (
    0, 1, 4, 5, 6, 7, 8, 10, 13, 14, 17, 21, 33, 37, 39, 40, 46, 52, 53, 54, 55, 58, 61, 63, 65, 66, 67, 70, 78, 80,
    81, 82, 84, 87, 88, 91, 93, 95, 103, 105, 107, 109, 127, 132, 133, 136, 144, 145, 146, 148, 149, 150, 152, 153,
    154, 155, 157, 158, 159, 160, 161, 162, 163, 168, 172, 173, 176, 178, 181, 185, 191, 195, 197, 234, 246, 249,
    251, 263, 267, 269, 270, 276, 282, 283, 284, 285, 288, 291, 293, 295, 296, 297, 300, 308, 310, 311, 312, 314,
    317, 318, 321, 323, 324, 332, 334, 336, 338, 356, 361, 362, 365, 373, 374, 375, 377, 378, 379, 380, 381, 382,
    384, 385, 386, 387, 388, 389, 390, 397, 398, 400, 402, 405, 409, 415, 454, 466, 468, 469, 470, 471, 472, 473,
    474, 475, 476, 477,
)  # fmt: skip


def read_bundle_model(name: str, task_file: str | Path | None = None) -> TFLiteGraph:
    """One .tflite model of the face landmarker bundle (the registry's ``face_landmarker`` or `task_file`)."""
    task_file = Path(task_file) if task_file else asset_file("face_landmarker")
    try:
        with zipfile.ZipFile(task_file) as bundle:
            data = bundle.read(name)
    except (zipfile.BadZipFile, KeyError, OSError) as exc:
        raise AssetError(f"{task_file} has no readable {name} ({exc})",
                         "delete it and run `sie3d assets fetch face_landmarker`") from None
    return TFLiteGraph(data, f"{task_file.name}:{name}")


@dataclass(frozen=True)
class LandmarkNetOutput:
    """What the landmark network says about B crops.

    landmarks: (B, 478, 3) in crop pixels of the 256 x 256 input (x right, y down, continuous), z the
        relative depth in the same units (smaller = closer to the camera), as MediaPipe's model emits them.
    presence: (B,) face-presence probability (MediaPipe rejects a face below 0.5).
    """

    landmarks: Tensor
    presence: Tensor


class FaceLandmarkNet(nn.Module):
    """MediaPipe's face landmark network. ``forward(crops)``: (B, 3, 256, 256) sRGB float in [0, 1]
    (MediaPipe's ImageToTensor range) -> `LandmarkNetOutput`. Frozen, eval mode, differentiable."""

    def __init__(self, graph: TFLiteGraph) -> None:
        super().__init__()
        self.graph = graph
        names = [graph.tensors[i].name for i in graph.output_ids]
        shapes = [graph.tensors[i].shape for i in graph.output_ids]
        if shapes[0] != (1, 1, 1, N_LANDMARKS * 3) or len(shapes) != 3:
            raise ValueError(f"unexpected face landmark model outputs {list(zip(names, shapes, strict=True))}")
        self.eval()

    def forward(self, crops: Tensor) -> LandmarkNetOutput:
        size = LANDMARK_INPUT_SIZE
        if crops.ndim != 4 or tuple(crops.shape[1:]) != (3, size, size):
            raise ValueError(f"the face landmark net expects (B, 3, {size}, {size}) crops, got {tuple(crops.shape)}")
        # Outputs: 1434 landmark coordinates, the face-presence logit (MediaPipe applies a sigmoid), and a
        # third score MediaPipe's face landmarker graph does not use.
        # channels_last memory makes the graph's NCHW convolutions take oneDNN's faster path (~25 %).
        nhwc = crops.contiguous(memory_format=torch.channels_last).permute(0, 2, 3, 1)
        landmarks, presence_logit, _ = self.graph(nhwc)
        return LandmarkNetOutput(landmarks.reshape(-1, N_LANDMARKS, 3), torch.sigmoid(presence_logit.reshape(-1)))


class BlendshapeNet(nn.Module):
    """MediaPipe's blendshape network. ``forward(points)``: (B, 146, 2) (x, y) pixels of the
    `BLENDSHAPE_LANDMARKS` -> (B, 52) scores in [0, 1], order `sie3d.face.observation.BLENDSHAPE_NAMES`.
    The network centres and scales its input itself, so any pixel frame works. Frozen, differentiable."""

    def __init__(self, graph: TFLiteGraph) -> None:
        super().__init__()
        self.graph = graph
        if graph.tensors[graph.input_ids[0]].shape != (1, len(BLENDSHAPE_LANDMARKS), 2):
            raise ValueError(f"unexpected blendshape model input {graph.tensors[graph.input_ids[0]]}")
        self.register_buffer("subset", torch.tensor(BLENDSHAPE_LANDMARKS), persistent=False)
        self.eval()

    def forward(self, points: Tensor) -> Tensor:
        (scores,) = self.graph(points)
        return scores.reshape(points.shape[0], len(BLENDSHAPE_NAMES))

    def from_landmarks(self, landmarks_px: Tensor) -> Tensor:
        """(B, 478, 2|3) landmarks in image pixels -> (B, 52) scores."""
        if landmarks_px.ndim != 3 or landmarks_px.shape[1] != N_LANDMARKS:
            raise ValueError(f"expected (B, {N_LANDMARKS}, 2|3) landmarks, got {tuple(landmarks_px.shape)}")
        return self(landmarks_px[:, self.subset, :2])


@dataclass(frozen=True)
class FaceMeshReading:
    """The landmark -> blendshape chain on B images.

    landmarks_px: (B, 478, 3) detected landmarks in image pixels (z: relative depth, pixel scale).
    blendshapes: (B, 52) scores, order `BLENDSHAPE_NAMES`.
    presence: (B,) face-presence probability.
    roi: the crop each image was read through (256 x 256).
    """

    landmarks_px: Tensor
    blendshapes: Tensor
    presence: Tensor
    roi: CropBox


class FaceMeshReader(nn.Module):
    """image + where the face is -> 478 landmarks -> 52 blendshapes, differentiable end to end.

    ``forward(images, landmarks_px, color="srgb")``: images (B, 3, H, W) float in [0, 1], sRGB-encoded
    (photos) or linear (renders, ``color="linear"``; converted to sRGB first); landmarks_px (B, 468|478,
    2|3) in image pixels say where to crop (for a render: the head model's projected landmarks), by
    MediaPipe's own landmark ROI rule (`sie3d.perception.crops.mediapipe_roi`). The ROI is detached by
    default (``differentiable_roi=False``): the gradient then only flows through what the networks
    see. No ``torch.no_grad`` is imposed; wrap calls in it when no gradient is needed.
    """

    def __init__(self, landmark_net: FaceLandmarkNet, blendshape_net: BlendshapeNet) -> None:
        super().__init__()
        self.landmark_net, self.blendshape_net = landmark_net, blendshape_net
        self.eval()

    def forward(self, images: Tensor, landmarks_px: Tensor, color: str = "srgb",
                differentiable_roi: bool = False) -> FaceMeshReading:
        roi = mediapipe_roi(landmarks_px)
        roi = roi if differentiable_roi else roi.detach()
        crops = crop(as_srgb(images, color), roi, LANDMARK_INPUT_SIZE)
        out = self.landmark_net(crops)
        xy = roi.to_image(out.landmarks[..., :2], LANDMARK_INPUT_SIZE)
        z = out.landmarks[..., 2:] * (roi.side / LANDMARK_INPUT_SIZE)[:, None, None]
        landmarks = torch.cat([xy, z], dim=-1)
        return FaceMeshReading(landmarks, self.blendshape_net.from_landmarks(landmarks), out.presence, roi)


def load_face_landmark_net(task_file: str | Path | None = None) -> FaceLandmarkNet:
    """MediaPipe's face landmark network from the ``face_landmarker`` asset, frozen, eval mode."""
    return FaceLandmarkNet(read_bundle_model(LANDMARK_MODEL, task_file))


def load_blendshape_net(task_file: str | Path | None = None) -> BlendshapeNet:
    """MediaPipe's blendshape network from the ``face_landmarker`` asset, frozen, eval mode."""
    return BlendshapeNet(read_bundle_model(BLENDSHAPE_MODEL, task_file))


def load_face_mesh_reader(task_file: str | Path | None = None) -> FaceMeshReader:
    """`FaceMeshReader` with both networks from the ``face_landmarker`` asset."""
    return FaceMeshReader(load_face_landmark_net(task_file), load_blendshape_net(task_file))
