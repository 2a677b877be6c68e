"""MediaPipe selfie segmentation as a frozen torch module: RGB image -> person probability.

The model (asset ``selfie_segmentation``: ``mediapipe/modules/selfie_segmentation/selfie_segmentation.tflite``
from the ``mediapipe==0.10.21`` wheel, Google, Apache-2.0; 1x256x256x3 RGB in [0, 1] -> 1x256x256x1 sigmoid)
is rebuilt by sie3d's own .tflite -> torch converter (`sie3d.perception.tflite_graph`), so no TFLite runtime is
needed; tests/test_hair_mask.py compares it with LiteRT on real photos, output and every intermediate tensor.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import torch

from sie3d.assets.registry import asset_file
from sie3d.errors import AssetError, UsageError
from sie3d.perception.tflite_graph import TFLiteFormatError, TFLiteGraph, read_tflite

SEGMENTATION_ASSET = "selfie_segmentation"
SEGMENTATION_SIZE = 256  # the model's input and output side (1x256x256x3 RGB in [0, 1] -> 256x256 probability)


class PersonSegmenter:
    """MediaPipe selfie segmentation (a frozen `TFLiteGraph`, ``.graph``): RGB image -> person probability.

    ``segmenter(rgb)`` takes an (H, W, 3) uint8 RGB image (any size; it is resized to 256x256 with area
    averaging, as MediaPipe stretches its input without keeping the aspect ratio) and returns the (256, 256)
    float32 person probability in [0, 1] of the model's sigmoid output.
    """

    def __init__(self, model_file: str | Path | None = None) -> None:
        path = Path(model_file) if model_file is not None else asset_file(SEGMENTATION_ASSET)
        try:
            self.graph: TFLiteGraph = read_tflite(path)
        except (OSError, TFLiteFormatError) as exc:
            raise AssetError(f"cannot read the person segmentation model {path}: {exc}",
                             f"run `sie3d assets fetch {SEGMENTATION_ASSET}` to restore it") from None  # fmt: skip
        shape = self.graph.tensors[self.graph.input_ids[0]].shape
        if shape != (1, SEGMENTATION_SIZE, SEGMENTATION_SIZE, 3):
            raise AssetError(f"{path} takes input {shape}, not (1, 256, 256, 3)",
                             f"run `sie3d assets fetch {SEGMENTATION_ASSET}` to restore it")  # fmt: skip

    def model_input(self, rgb: np.ndarray) -> np.ndarray:
        """(H, W, 3) uint8 -> (1, 256, 256, 3) float32 RGB in [0, 1]."""
        if rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.dtype != np.uint8:
            raise UsageError(f"person segmentation needs an (H, W, 3) uint8 RGB image, got {rgb.shape} {rgb.dtype}")
        size = (SEGMENTATION_SIZE, SEGMENTATION_SIZE)
        small = cv2.resize(rgb, size, interpolation=cv2.INTER_AREA) if rgb.shape[:2] != size else rgb
        return (small.astype(np.float32) / 255.0)[None]

    def __call__(self, rgb: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            out = self.graph(torch.from_numpy(self.model_input(rgb)))[0]
        return out[0, :, :, 0].numpy()
