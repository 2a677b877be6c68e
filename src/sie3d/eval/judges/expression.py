"""Held-out expression judge: facex's MobileNetV2 (7 classes), run by its own runtime.

The model is ``facex/assets/model_optimized.tflite`` (facex 1.1.0): a TFLite MobileNetV2 with int8
weights dequantized at load and XNNPACK kernels. It is run with LiteRT (``ai-edge-litert``, the
TensorFlow Lite interpreter without TensorFlow), i.e. the original runtime: there is no port to drift
from the original. The judge never sits inside a loss, so it needs no gradients.

Input contract, as facex prepares it (``EmotionClassifier.predict``): the Haar-cascade face box of the
grayscale frame, resized to 200x200 by scikit-image's ``resize`` (Gaussian anti-aliasing, bilinear),
values in [0, 1], the gray plane repeated in 3 channels. Here the box comes from the landmark rule
``facex`` of `sie3d.eval.judges.crops`, calibrated against those Haar boxes, so photos and renders
get the same crop; the resize follows scikit-image's (see `crops.crop_box`).

This module is a judge: it measures, it is never imported by the generation path.
"""

from __future__ import annotations

import logging
from pathlib import Path

import cv2
import numpy as np

from sie3d.assets.registry import asset_file
from sie3d.errors import AssetError
from sie3d.eval.judges.crops import Box, CropRule, crop_box, judge_crop_box, load_rule
from sie3d.face.observation import FaceObservation

log = logging.getLogger(__name__)

CLASSES: tuple[str, ...] = ("anger", "disgust", "fear", "happy", "neutral", "sadness", "surprised")
CROP_SIZE = 200
RUNTIME_REQUIREMENT = "ai-edge-litert==2.3.0"


def _interpreter_class() -> type:
    try:
        from ai_edge_litert.interpreter import Interpreter
    except ImportError:
        raise AssetError(
            "the facex expression judge needs the LiteRT runtime, which is not installed",
            f"pip install {RUNTIME_REQUIREMENT}",
        ) from None
    return Interpreter


def gray_image(rgb: np.ndarray) -> np.ndarray:
    """(H, W) uint8 luma of an (H, W, 3) uint8 RGB image (OpenCV's weights, as facex converts frames)."""
    if rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.dtype != np.uint8:
        raise ValueError(f"expected an (H, W, 3) uint8 RGB image, got {rgb.shape} {rgb.dtype}")
    return cv2.cvtColor(np.ascontiguousarray(rgb), cv2.COLOR_RGB2GRAY)


def facex_input(gray: np.ndarray, box: Box) -> np.ndarray:
    """(200, 200, 3) float32 in [0, 1]: the `box` of an (H, W) uint8 gray image as facex feeds its model."""
    crop = crop_box(gray.astype(np.float32) / 255.0, box, CROP_SIZE, antialias=True)
    return np.repeat(np.clip(crop, 0.0, 1.0)[:, :, None], 3, axis=2)


class FacexJudge:
    """facex MobileNetV2: face in a photo or render -> (7,) class probabilities in `CLASSES` order.

    >>> judge = FacexJudge()
    >>> probs = judge(rgb, obs)            # (7,), sums to 1
    >>> CLASSES[int(probs.argmax())]
    'happy'
    """

    def __init__(self, model_path: Path | None = None, rule: CropRule | None = None, num_threads: int = 1) -> None:
        interpreter_class = _interpreter_class()
        self.model_path = Path(model_path) if model_path else asset_file("facex")
        self.rule = rule or load_rule("facex")
        self._interpreter = interpreter_class(model_path=str(self.model_path), num_threads=num_threads)
        self._input = self._interpreter.get_input_details()[0]["index"]
        self._output = self._interpreter.get_output_details()[0]["index"]
        self._batch = 0
        self._resize(1)

    def _resize(self, batch: int) -> None:
        if batch != self._batch:
            self._interpreter.resize_tensor_input(self._input, [batch, CROP_SIZE, CROP_SIZE, 3])
            self._interpreter.allocate_tensors()
            self._batch = batch

    def box(self, obs: FaceObservation | np.ndarray) -> Box:
        """(x0, y0, x1, y1) pixels: the Haar-like box of the `facex` rule."""
        return judge_crop_box(obs, self.rule)

    def crop(self, rgb: np.ndarray, obs: FaceObservation | np.ndarray) -> np.ndarray:
        """(200, 200, 3) float32 in [0, 1]: gray face crop of the (H, W, 3) uint8 RGB image `rgb`."""
        return facex_input(gray_image(rgb), self.box(obs))

    def predict_batch(self, crops: np.ndarray, max_batch: int = 16) -> np.ndarray:
        """(N, 200, 200, 3) (or (N, 200, 200) gray) float crops in [0, 1] -> (N, 7) float32 probabilities."""
        crops = np.asarray(crops, dtype=np.float32)
        if crops.ndim == 3:
            crops = np.repeat(crops[..., None], 3, axis=3)
        if crops.ndim != 4 or crops.shape[1:] != (CROP_SIZE, CROP_SIZE, 3):
            raise ValueError(f"expected (N, {CROP_SIZE}, {CROP_SIZE}, 3) crops in [0, 1], got {crops.shape}")
        if crops.size and (crops.min() < -1e-3 or crops.max() > 1.0 + 1e-3):
            raise ValueError(f"crops must be in [0, 1], got [{crops.min():.3f}, {crops.max():.3f}] (divide by 255?)")
        out = []
        for start in range(0, len(crops), max_batch):
            chunk = np.ascontiguousarray(crops[start : start + max_batch])
            self._resize(len(chunk))
            self._interpreter.set_tensor(self._input, chunk)
            self._interpreter.invoke()
            out.append(np.array(self._interpreter.get_tensor(self._output), np.float32))
        return np.concatenate(out) if out else np.zeros((0, len(CLASSES)), np.float32)

    def __call__(self, rgb: np.ndarray, obs: FaceObservation | np.ndarray) -> np.ndarray:
        """(7,) float32 probabilities (order `CLASSES`) for the face `obs` in the (H, W, 3) uint8 image `rgb`."""
        return self.predict_batch(self.crop(rgb, obs)[None])[0]
