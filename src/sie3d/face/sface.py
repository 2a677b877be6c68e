"""SFace identity embedding (OpenCV Zoo, 128-d) as a frozen, differentiable PyTorch module.

The network is rebuilt from the ONNX graph itself with the `onnx` package: the block-int8 weights
are dequantized to float32 exactly as ONNX ``DequantizeLinear`` defines it, and every remaining node
(Sub, Mul, Conv, BatchNormalization, PRelu, Dropout, Flatten, Gemm -- a plain chain, no branches)
becomes one torch layer with the node's own attributes. Nothing is fused, so each layer can be checked
against the graph; tests/test_sface.py compares the port with onnxruntime on real photos.

Input contract (what OpenCV's ``FaceRecognizerSF.feature`` feeds the network): an aligned 112x112
crop, RGB channel order (OpenCV swaps its BGR image with ``swapRB=True``), float values in [0, 255];
the graph itself subtracts 127.5 and multiplies by 1/128.

The converted network is kept in sie3d's cache folder (`load_sface`): later processes read its arrays there
instead of importing `onnx` (0.65 s) and converting the graph again (0.35 s).
"""

from __future__ import annotations

import copy
import json
import logging
import math
import time
from collections import OrderedDict
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from sie3d.assets.registry import asset_file, cache_dir, cached_arrays, spec
from sie3d.errors import AssetError
from sie3d.face.align import EyeCentre, align_face
from sie3d.face.observation import FaceObservation

if TYPE_CHECKING:
    import onnx

log = logging.getLogger(__name__)

CROP_SIZE = 112
EMBEDDING_DIM = 128
SFACE_CACHE_VERSION = 1  # bump when the conversion or `layer_arrays`' layout changes what the cache holds


# -- ONNX constant folding (weights only) -----------------------------------------------------------


def dequantize_linear(q: np.ndarray, scale: np.ndarray, zero_point: np.ndarray | None, axis: int = 1,
                      block_size: int = 0) -> np.ndarray:
    """ONNX DequantizeLinear (opset 21): ``(q - zero_point) * scale`` as float32.

    Per-tensor (scalar `scale`), per-axis (1-D `scale` along `axis`) and blocked quantization
    (`block_size` > 0: `scale` has q's rank, its `axis` dimension is ``ceil(q.shape[axis] / block_size)``
    and each scale covers `block_size` consecutive elements along `axis`).
    """
    q = np.asarray(q)
    scale = np.asarray(scale, dtype=np.float32)
    zp = np.zeros((), np.int64) if zero_point is None else np.asarray(zero_point).astype(np.int64)
    axis = axis % max(q.ndim, 1)
    if block_size > 0:
        expected = list(q.shape)
        expected[axis] = math.ceil(q.shape[axis] / block_size)
        if list(scale.shape) != expected or (zero_point is not None and zp.shape != scale.shape):
            raise ValueError(f"blocked DequantizeLinear: scale {scale.shape} / zero point {zp.shape} do not "
                             f"match input {q.shape} with axis={axis}, block_size={block_size}")
        take = np.arange(q.shape[axis])
        scale = np.repeat(scale, block_size, axis=axis).take(take, axis=axis)
        if zp.ndim:
            zp = np.repeat(zp, block_size, axis=axis).take(take, axis=axis)
    elif scale.size > 1:
        shape = [1] * q.ndim
        shape[axis] = -1
        scale, zp = scale.reshape(shape), zp.reshape(shape) if zp.ndim else zp
    # (q - zp) is an exact integer and one float32 product follows: bit-identical to onnxruntime
    # (checked node by node in tests/test_sface.py).
    return ((q.astype(np.int64) - zp).astype(np.float32) * scale).astype(np.float32)


def _attrs(node: onnx.NodeProto) -> dict:
    import onnx

    return {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}


def _fold_constants(graph: onnx.GraphProto) -> dict[str, np.ndarray]:
    """Initializers plus the outputs of the weight-only nodes (DequantizeLinear, Reshape, Constant)."""
    from onnx import numpy_helper

    consts = {t.name: numpy_helper.to_array(t) for t in graph.initializer}
    for node in graph.node:
        inputs = [i for i in node.input if i]
        if not all(i in consts for i in inputs):
            continue
        attrs = _attrs(node)
        if node.op_type == "Constant":
            if "value" not in attrs:
                raise ValueError(f"Constant node {node.name!r} without a tensor 'value' is not supported")
            consts[node.output[0]] = numpy_helper.to_array(attrs["value"])
        elif node.op_type == "DequantizeLinear":
            zero_point = consts[node.input[2]] if len(node.input) > 2 and node.input[2] else None
            consts[node.output[0]] = dequantize_linear(
                consts[node.input[0]], consts[node.input[1]], zero_point,
                axis=attrs.get("axis", 1), block_size=attrs.get("block_size", 0),
            )  # fmt: skip
        elif node.op_type == "Reshape":
            if attrs.get("allowzero", 0):
                raise ValueError(f"Reshape {node.name!r} with allowzero=1 is not supported")
            shape = [int(s) for s in consts[node.input[1]]]
            source = consts[node.input[0]]
            shape = [source.shape[k] if s == 0 else s for k, s in enumerate(shape)]  # ONNX: 0 copies the dim
            consts[node.output[0]] = source.reshape(shape)
        else:
            raise ValueError(f"constant {node.op_type} node {node.name!r} is not supported")
    return consts


# -- layers -----------------------------------------------------------------------------------------


def _frozen(array: np.ndarray) -> nn.Parameter:
    # Copy: arrays from onnx.numpy_helper may be read-only views of the protobuf.
    return nn.Parameter(torch.from_numpy(np.array(array, dtype=np.float32, order="C")), requires_grad=False)


class _ScalarOp(nn.Module):
    """ONNX Sub/Mul of the running tensor with a constant (here: the input normalisation)."""

    def __init__(self, op: str, value: np.ndarray) -> None:
        super().__init__()
        self.op = op
        self.register_buffer("value", torch.from_numpy(np.asarray(value, np.float32).copy()))

    def forward(self, x: Tensor) -> Tensor:
        return x - self.value if self.op == "Sub" else x * self.value

    def extra_repr(self) -> str:
        return f"{self.op} {self.value.flatten()[:4].tolist()}"


class _BatchNorm(nn.Module):
    """Inference BatchNormalization over dim 1 of an (N, C, ...) tensor, running statistics frozen."""

    def __init__(self, gamma: np.ndarray, beta: np.ndarray, mean: np.ndarray, var: np.ndarray,
                 eps: float) -> None:
        super().__init__()
        self.weight, self.bias = _frozen(gamma), _frozen(beta)
        self.register_buffer("running_mean", torch.from_numpy(np.asarray(mean, np.float32).copy()))
        self.register_buffer("running_var", torch.from_numpy(np.asarray(var, np.float32).copy()))
        self.eps = float(eps)

    def forward(self, x: Tensor) -> Tensor:
        return F.batch_norm(x, self.running_mean, self.running_var, self.weight, self.bias, False, 0.0, self.eps)

    def extra_repr(self) -> str:
        return f"{self.weight.shape[0]}, eps={self.eps:g}"


class _PRelu(nn.Module):
    """ONNX PRelu with one slope per channel (slope shaped (C, 1, ..., 1) or (C,) in the graph)."""

    def __init__(self, slope: np.ndarray) -> None:
        super().__init__()
        self.weight = _frozen(np.asarray(slope).reshape(-1))

    def forward(self, x: Tensor) -> Tensor:
        return F.prelu(x, self.weight)


class _Flatten(nn.Module):
    """ONNX Flatten: (d0, ..., dn) -> (d0 * ... * d{axis-1}, d{axis} * ... * dn)."""

    def __init__(self, axis: int) -> None:
        super().__init__()
        self.axis = axis

    def forward(self, x: Tensor) -> Tensor:
        return x.reshape(math.prod(x.shape[: self.axis]), -1)


def _conv(attrs: dict, weight: np.ndarray, bias: np.ndarray | None) -> nn.Conv2d:
    if attrs.get("auto_pad", b"NOTSET") not in (b"NOTSET", "NOTSET") or weight.ndim != 4:
        raise ValueError("only 2-D Conv with explicit pads is supported")
    pads = list(attrs.get("pads", [0, 0, 0, 0]))
    if pads[:2] != pads[2:]:
        raise ValueError(f"asymmetric Conv pads {pads} are not supported")
    out_ch, in_per_group, kh, kw = weight.shape
    groups = int(attrs.get("group", 1))
    if tuple(attrs.get("kernel_shape", (kh, kw))) != (kh, kw):
        raise ValueError(f"Conv kernel_shape {attrs['kernel_shape']} disagrees with weight {weight.shape}")
    conv = nn.Conv2d(
        in_per_group * groups, out_ch, (kh, kw), stride=tuple(attrs.get("strides", (1, 1))),
        padding=tuple(pads[:2]), dilation=tuple(attrs.get("dilations", (1, 1))), groups=groups,
        bias=bias is not None,
    )  # fmt: skip
    conv.weight = _frozen(weight)
    if bias is not None:
        conv.bias = _frozen(bias)
    return conv


def _gemm(attrs: dict, b: np.ndarray, c: np.ndarray | None) -> nn.Linear:
    if attrs.get("transA", 0):
        raise ValueError("Gemm with transA=1 is not supported")
    weight = b if attrs.get("transB", 0) else b.T  # nn.Linear wants (out, in)
    weight = weight * np.float32(attrs.get("alpha", 1.0))
    linear = nn.Linear(weight.shape[1], weight.shape[0], bias=c is not None)
    linear.weight = _frozen(weight)
    if c is not None:
        linear.bias = _frozen(np.broadcast_to(c * np.float32(attrs.get("beta", 1.0)), (weight.shape[0],)))
    return linear


def layers_from_onnx(model: onnx.ModelProto) -> nn.Sequential:
    """The chain of torch layers equivalent to a single-input, single-output, branch-free ONNX graph."""
    graph = model.graph
    consts = _fold_constants(graph)
    data_inputs = [i.name for i in graph.input if i.name not in consts and any(i.name in n.input for n in graph.node)]
    if len(data_inputs) != 1 or len(graph.output) != 1:
        raise ValueError(f"expected one data input and one output, got inputs {data_inputs}")
    current = data_inputs[0]
    used = {i for n in graph.node for i in n.input} | {o.name for o in graph.output}
    layers: dict[str, nn.Module] = {}
    for node in graph.node:
        if node.output[0] in consts:
            continue  # weight-only node, already folded
        dynamic = [i for i in node.input if i and i not in consts]
        if dynamic != [current] or node.input[0] != current:
            raise ValueError(f"node {node.name or node.output[0]!r} ({node.op_type}) breaks the simple chain "
                             f"this port supports: inputs {list(node.input)}, running tensor {current!r}")
        attrs = _attrs(node)
        arg = [consts.get(i) if i else None for i in node.input[1:]]
        op = node.op_type
        if op in ("Sub", "Mul"):
            layer: nn.Module = _ScalarOp(op, arg[0])
        elif op == "Conv":
            layer = _conv(attrs, arg[0], arg[1] if len(arg) > 1 else None)
        elif op == "BatchNormalization":
            if attrs.get("training_mode", 0):
                raise ValueError("BatchNormalization in training mode is not supported")
            layer = _BatchNorm(*arg[:4], eps=attrs.get("epsilon", 1e-5))
        elif op == "PRelu":
            slope = np.asarray(arg[0])
            if slope.ndim > 1 and any(s != 1 for s in slope.shape[1:]):
                raise ValueError(f"PRelu slope {slope.shape} is not per-channel")
            layer = _PRelu(slope)
        elif op == "Dropout":
            # Inference: identity unless the graph asks for training mode through its third input.
            if len(arg) > 1 and arg[1] is not None and bool(np.asarray(arg[1])):
                raise ValueError("Dropout with training_mode=True is not supported")
            layer = nn.Identity()
        elif op == "Flatten":
            layer = _Flatten(int(attrs.get("axis", 1)))
        elif op == "Gemm":
            layer = _gemm(attrs, arg[0], arg[1] if len(arg) > 1 else None)
        else:
            raise ValueError(f"ONNX op {op} (node {node.name or node.output[0]!r}) is not supported")
        if any(o in used for o in node.output[1:]):
            raise ValueError(f"secondary output of {op} node {node.output[0]!r} is used; not supported")
        layers[node.output[0].replace(".", "_")] = layer
        current = node.output[0]
    if current != graph.output[0].name:
        raise ValueError(f"chain ends at {current!r}, but the graph output is {graph.output[0].name!r}")
    return nn.Sequential(OrderedDict(layers))


def fold_batchnorm(layers: nn.Sequential) -> nn.Sequential:
    """Copy of `layers` with every BatchNormalization that directly follows a Conv2d or Linear folded
    into that layer's weight and bias (in float64, rounded once to float32).

    Exact algebra, ~20 % faster on 2 cores; tests/test_sface.py checks the folded network against onnxruntime.
    A BatchNormalization after any other layer (SFace's ``bn1`` follows a PReLU) is kept as it is.
    """
    folded: list[tuple[str, nn.Module]] = []
    for name, layer in layers.named_children():
        previous = folded[-1][1] if folded else None
        if isinstance(layer, _BatchNorm) and isinstance(previous, (nn.Conv2d, nn.Linear)):
            gain = layer.weight.double() / torch.sqrt(layer.running_var.double() + layer.eps)  # (C,)
            shift = layer.bias.double() - layer.running_mean.double() * gain
            weight = previous.weight.double() * gain.view(-1, *[1] * (previous.weight.ndim - 1))
            bias = shift if previous.bias is None else previous.bias.double() * gain + shift
            merged = copy.deepcopy(previous)
            merged.weight = _frozen(weight.numpy())
            merged.bias = _frozen(bias.numpy())
            folded[-1] = (f"{folded[-1][0]}_bn", merged)
        else:
            folded.append((name, copy.deepcopy(layer)))
    return nn.Sequential(OrderedDict(folded))


# -- public module ----------------------------------------------------------------------------------


class SFace(nn.Module):
    """Frozen SFace network. ``forward(crops)`` maps (B, 3, 112, 112) float RGB in [0, 255] to the raw
    (B, 128) feature; `embed` L2-normalises it. Differentiable with respect to the crops."""

    def __init__(self, layers: nn.Sequential) -> None:
        super().__init__()
        self.layers = layers

    @classmethod
    def from_onnx(cls, path: str | Path) -> SFace:
        import onnx

        path = Path(path)
        try:
            model = onnx.load(str(path))
        except Exception as exc:  # protobuf raises several unrelated types for a damaged file
            raise AssetError(f"{path} is not a readable ONNX model ({exc})",
                             "delete it and run `sie3d assets fetch sface`") from None
        return cls(layers_from_onnx(model))

    def forward(self, crops: Tensor) -> Tensor:
        """(B, 3, 112, 112) float RGB in [0, 255] -> (B, 128) raw feature."""
        if crops.ndim != 4 or tuple(crops.shape[1:]) != (3, CROP_SIZE, CROP_SIZE):
            raise ValueError(f"SFace expects crops shaped (B, 3, {CROP_SIZE}, {CROP_SIZE}), got {tuple(crops.shape)}")
        return self.layers(crops.float())

    def embed(self, crops: Tensor) -> Tensor:
        """(B, 3, 112, 112) float RGB in [0, 255] -> (B, 128) unit-length embedding."""
        return F.normalize(self(crops), dim=1)


def load_sface(path: str | Path | None = None, *, fold_bn: bool = True) -> SFace:
    """SFace converted from the registry's ONNX file (or `path`), in eval mode, all weights frozen.

    The registry's file, folded, is converted once and then read from the cache folder (``sface/`` in
    `sie3d.assets.registry.cache_dir`, named after the sha256 the asset manifest gives the file and
    `SFACE_CACHE_VERSION`; the same float32 weights). A cached file that does not rebuild into a network giving
    (1, 128) features is converted again and replaced. ``fold_bn=False`` keeps one torch layer per ONNX node
    (slower; for checking the conversion).
    """
    start = time.perf_counter()
    if path is None and fold_bn:
        source = asset_file("sface")
        cache = cache_dir() / "sface" / f"sface_{spec('sface').files[0].sha256[:16]}_v{SFACE_CACHE_VERSION}.npz"
        try:
            model = _from_cache(cache, source)
        except (KeyError, ValueError, TypeError, RuntimeError) as exc:
            log.warning("rebuilding the unusable cache file %s (%s)", cache, exc)
            cache.unlink(missing_ok=True)
            model = _from_cache(cache, source)
    else:
        model = _converted(path or asset_file("sface"), fold_bn)
    model.eval()
    for parameter in model.parameters():
        parameter.requires_grad_(False)
    log.debug("SFace loaded in %.2f s", time.perf_counter() - start)
    return model


def _from_cache(cache: Path, source: Path) -> SFace:
    """The folded network from `cache` (converted from `source` and written there when missing); ValueError
    unless it maps a crop to EMBEDDING_DIM features."""
    model = SFace(layers_from_arrays(cached_arrays(cache, lambda: layer_arrays(_converted(source, True).layers))))
    with torch.no_grad():
        shape = tuple(model.eval()(torch.zeros(1, 3, CROP_SIZE, CROP_SIZE)).shape)
    if shape != (1, EMBEDDING_DIM):
        raise ValueError(f"the cached network gives features of shape {shape}")
    return model


def _converted(path: str | Path, fold_bn: bool) -> SFace:
    model = SFace.from_onnx(path)
    return SFace(fold_batchnorm(model.layers)) if fold_bn else model


def layer_arrays(layers: nn.Sequential) -> dict[str, np.ndarray]:
    """A converted chain (`layers_from_onnx`, folded or not) as arrays, for `cached_arrays`: "spec" holds a JSON
    list of each layer's name, kind and settings, "<index>.<tensor>" each layer's parameters and buffers."""
    layout, arrays = [], {}
    for k, (name, layer) in enumerate(layers.named_children()):
        if isinstance(layer, nn.Conv2d):
            pads = [int(p) for p in layer.padding]
            entry = {"kind": "Conv", "attrs": {"pads": pads + pads, "strides": list(layer.stride),
                                               "dilations": list(layer.dilation), "group": layer.groups}}
        elif isinstance(layer, nn.Linear):
            entry = {"kind": "Gemm"}
        elif isinstance(layer, _ScalarOp):
            entry = {"kind": layer.op}
        elif isinstance(layer, _BatchNorm):
            entry = {"kind": "BatchNormalization", "eps": layer.eps}
        elif isinstance(layer, _PRelu):
            entry = {"kind": "PRelu"}
        elif isinstance(layer, _Flatten):
            entry = {"kind": "Flatten", "axis": layer.axis}
        elif isinstance(layer, nn.Identity):
            entry = {"kind": "Identity"}
        else:
            raise TypeError(f"layer {name!r} ({type(layer).__name__}) is not one the SFace port makes")
        layout.append({"name": name, **entry})
        arrays.update({f"{k}.{tensor}": value.numpy() for tensor, value in layer.state_dict().items()})
    arrays["spec"] = np.array(json.dumps(layout))
    return arrays


def layers_from_arrays(arrays: dict[str, np.ndarray]) -> nn.Sequential:
    """The chain `layer_arrays` wrote: the same layers with the same float32 tensors."""
    layers: dict[str, nn.Module] = {}
    for k, entry in enumerate(json.loads(str(arrays["spec"]))):
        own = {name.split(".", 1)[1]: value for name, value in arrays.items() if name.startswith(f"{k}.")}
        kind = entry["kind"]
        if kind == "Conv":
            layer: nn.Module = _conv(entry["attrs"], own["weight"], own.get("bias"))
        elif kind == "Gemm":
            layer = _gemm({"transB": 1}, own["weight"], own.get("bias"))
        elif kind in ("Sub", "Mul"):
            layer = _ScalarOp(kind, own["value"])
        elif kind == "BatchNormalization":
            layer = _BatchNorm(own["weight"], own["bias"], own["running_mean"], own["running_var"], entry["eps"])
        elif kind == "PRelu":
            layer = _PRelu(own["weight"])
        elif kind == "Flatten":
            layer = _Flatten(entry["axis"])
        else:
            layer = nn.Identity()
        layers[entry["name"]] = layer
    return nn.Sequential(OrderedDict(layers))


def crops_to_tensor(crops_rgb: np.ndarray) -> Tensor:
    """(B, 112, 112, 3) or (112, 112, 3) uint8 RGB crops -> (B, 3, 112, 112) float32 in [0, 255]."""
    crops_rgb = np.asarray(crops_rgb)
    if crops_rgb.ndim == 3:
        crops_rgb = crops_rgb[None]
    if crops_rgb.ndim != 4 or crops_rgb.shape[1:] != (CROP_SIZE, CROP_SIZE, 3):
        raise ValueError(f"expected (B, {CROP_SIZE}, {CROP_SIZE}, 3) RGB crops, got {crops_rgb.shape}")
    return torch.from_numpy(np.ascontiguousarray(crops_rgb.transpose(0, 3, 1, 2), dtype=np.float32))


def cosine(a: np.ndarray, b: np.ndarray) -> float:
    """Cosine similarity of two embeddings (any length, normalised or not)."""
    a = np.asarray(a, np.float64).ravel()
    b = np.asarray(b, np.float64).ravel()
    return float(a @ b / max(np.linalg.norm(a) * np.linalg.norm(b), 1e-12))


class IdentityEmbedder:
    """Photo + observation -> SFace identity embedding, with OpenCV-style 5-point alignment.

    >>> embedder = IdentityEmbedder()
    >>> e = embedder(photo.rgb, obs)  # (128,) float32, unit length
    """

    cosine = staticmethod(cosine)

    def __init__(self, model: SFace | None = None, eyes: EyeCentre = "corners") -> None:
        self.model = model or load_sface()
        self.eyes = eyes

    def crop(self, photo_rgb: np.ndarray, obs: FaceObservation) -> np.ndarray:
        """(112, 112, 3) uint8 aligned RGB crop."""
        return align_face(photo_rgb, obs, CROP_SIZE, self.eyes)

    def embed_crops(self, crops_rgb: np.ndarray) -> np.ndarray:
        """(B, 112, 112, 3) uint8 RGB crops -> (B, 128) float32 unit embeddings."""
        with torch.no_grad():
            return self.model.embed(crops_to_tensor(crops_rgb)).numpy().astype(np.float32)

    def __call__(self, photo_rgb: np.ndarray, obs: FaceObservation) -> np.ndarray:
        """(H, W, 3) uint8 RGB photo + its observation -> (128,) float32 unit embedding."""
        return self.embed_crops(self.crop(photo_rgb, obs)[None])[0]
