"""A TensorFlow Lite model (.tflite flatbuffer) rebuilt as a frozen, differentiable PyTorch module.

The flatbuffer is read with the pure-Python `tflite` schema package (no TensorFlow, no LiteRT). Every
constant becomes a frozen tensor -- float16 weights behind a ``DEQUANTIZE`` node are widened to float32
once, which is exact -- and every other operator is executed in file order (TFLite stores operators
topologically sorted) by a few lines of torch, with the operator's own options (padding, strides,
fused activation, axes ...). Nothing is fused or approximated, so a layer can be compared with LiteRT
tensor by tensor (``experimental_preserve_all_tensors``; tests/test_perception.py does).

Batching: TFLite graphs are converted with batch 1. Here dim 0 of every activation is the batch, of any
size B: reshapes keep B in front, constants of batch 1 are broadcast, and an operator that would mix
samples (a reduction, transpose, slice or concatenation across dim 0) is refused at load time.

Layout: TFLite activations are NHWC. Spatial operators run in torch's NCHW; a 4-D activation stays in
NCHW between consecutive convolutions, poolings, pads and element-wise operators and is only permuted
back where an operator's semantics depend on the axis order (reshape, transpose, slice, reduction,
concatenation) and at the graph outputs, which are always returned in TFLite's own layout.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import tflite
import torch
import torch.nn.functional as F
from torch import Tensor, nn

_OP_NAMES = {v: k for k, v in vars(tflite.BuiltinOperator).items() if not k.startswith("_")}
_ACTIVATIONS: dict[int, Callable[[Tensor], Tensor]] = {
    0: lambda x: x,  # NONE
    1: F.relu,  # RELU
    2: lambda x: x.clamp(-1.0, 1.0),  # RELU_N1_TO_1
    3: lambda x: x.clamp(0.0, 6.0),  # RELU6
    4: torch.tanh,  # TANH
}
_NUMPY_TYPES = {
    tflite.TensorType.FLOAT32: np.float32, tflite.TensorType.FLOAT16: np.float16,
    tflite.TensorType.INT32: np.int32, tflite.TensorType.INT64: np.int64, tflite.TensorType.INT8: np.int8,
    tflite.TensorType.UINT8: np.uint8,
}  # fmt: skip
_ELEMENTWISE = {"ADD", "SUB", "MUL", "DIV", "SQUARED_DIFFERENCE", "PRELU", "LOGISTIC", "NEG", "RSQRT", "SQRT",
                "RELU", "TANH", "HARD_SWISH"}  # fmt: skip
# MediaPipe's custom transposed convolution with bias (mediapipe/util/tflite/operations/transpose_conv_bias.cc),
# which its segmentation models use for the last 2x upsampling; LiteRT's XNNPACK delegate runs it too.
TRANSPOSE_CONV_BIAS = "Convolution2DTransposeBias"
_SPATIAL = {"CONV_2D", "DEPTHWISE_CONV_2D", "MAX_POOL_2D", "AVERAGE_POOL_2D", "PAD", "RESIZE_BILINEAR",
            TRANSPOSE_CONV_BIAS}  # fmt: skip
# The option fields each supported operator reads: (flatbuffer table class, field accessors).
_CONV = ("Padding", "StrideW", "StrideH", "FusedActivationFunction", "DilationWFactor", "DilationHFactor")
_POOL = ("Padding", "StrideW", "StrideH", "FilterWidth", "FilterHeight", "FusedActivationFunction")
_OPTIONS = {
    "CONV_2D": (tflite.Conv2DOptions, _CONV), "DEPTHWISE_CONV_2D": (tflite.DepthwiseConv2DOptions, _CONV),
    "MAX_POOL_2D": (tflite.Pool2DOptions, _POOL), "AVERAGE_POOL_2D": (tflite.Pool2DOptions, _POOL),
    "ADD": (tflite.AddOptions, ("FusedActivationFunction",)), "SUB": (tflite.SubOptions, ("FusedActivationFunction",)),
    "MUL": (tflite.MulOptions, ("FusedActivationFunction",)), "DIV": (tflite.DivOptions, ("FusedActivationFunction",)),
    "RESIZE_BILINEAR": (tflite.ResizeBilinearOptions, ("AlignCorners", "HalfPixelCenters")),
    "MEAN": (tflite.ReducerOptions, ("KeepDims",)), "SUM": (tflite.ReducerOptions, ("KeepDims",)),
    "CONCATENATION": (tflite.ConcatenationOptions, ("Axis", "FusedActivationFunction")),
    "STRIDED_SLICE": (tflite.StridedSliceOptions, ("BeginMask", "EndMask", "EllipsisMask", "NewAxisMask",
                                                   "ShrinkAxisMask", "Offset")),
    "FULLY_CONNECTED": (tflite.FullyConnectedOptions, ("FusedActivationFunction", "WeightsFormat", "KeepNumDims")),
}  # fmt: skip


class TFLiteFormatError(ValueError):
    """The file is not a .tflite model this converter supports (the message says what and where)."""


@dataclass(frozen=True)
class TensorInfo:
    """One tensor of the graph: its name and its static NHWC shape with batch 1."""

    name: str
    shape: tuple[int, ...]


@dataclass(frozen=True)
class _Op:
    name: str  # builtin operator name, e.g. "CONV_2D"
    inputs: tuple[int, ...]  # tensor indices, -1 for an omitted optional input
    outputs: tuple[int, ...]
    options: dict


def _options(op: tflite.Operator, name: str) -> dict:
    """{field: value} of the operator's builtin options that this converter reads (empty if none).

    MediaPipe's custom transposed convolution keeps its options as raw bytes: a C struct
    ``TfLiteTransposeConvParams {TfLitePadding padding; int stride_width; int stride_height;}`` of three
    little-endian int32, where TfLitePadding is 1 for SAME and 2 for VALID (0 unknown); they are returned
    with the builtin names (``Padding`` as `tflite.Padding`, ``StrideW``, ``StrideH``)."""
    if name == TRANSPOSE_CONV_BIAS:
        raw = op.CustomOptionsAsNumpy() if op.CustomOptionsLength() >= 12 else None
        if raw is None:
            return {}
        padding, stride_w, stride_h = (int(v) for v in np.frombuffer(raw.tobytes()[:12], "<i4"))
        padding_enum = {1: tflite.Padding.SAME, 2: tflite.Padding.VALID}.get(padding, -1)
        return {"Padding": padding_enum, "StrideW": stride_w, "StrideH": stride_h}
    cls, fields = _OPTIONS.get(name, (None, ()))
    table = op.BuiltinOptions()
    if cls is None or table is None:
        return {}
    opts = cls()
    opts.Init(table.Bytes, table.Pos)
    return {field: getattr(opts, field)() for field in fields}


def same_padding(size: int, kernel: int, stride: int, dilation: int = 1) -> tuple[int, int]:
    """TensorFlow's SAME padding (before, after) of one spatial axis; the odd pixel goes after."""
    out = math.ceil(size / stride)
    total = max((out - 1) * stride + (kernel - 1) * dilation + 1 - size, 0)
    return total // 2, total - total // 2


def pad_same(x: Tensor, kernel: tuple[int, int], stride: tuple[int, int], dilation: tuple[int, int] = (1, 1),
             value: float = 0.0) -> Tensor:
    """Pad an NCHW tensor as TensorFlow's SAME padding does before a convolution or pooling
    (`value` -inf for max pooling, whose padded cells TensorFlow ignores)."""
    top, bottom = same_padding(x.shape[2], kernel[0], stride[0], dilation[0])
    left, right = same_padding(x.shape[3], kernel[1], stride[1], dilation[1])
    return F.pad(x, (left, right, top, bottom), value=value) if top or bottom or left or right else x


def _to_nchw(x: Tensor) -> Tensor:
    return x.permute(0, 3, 1, 2)


def _to_nhwc(x: Tensor) -> Tensor:
    return x.permute(0, 2, 3, 1)


class TFLiteGraph(nn.Module):
    """The first subgraph of a .tflite model as a torch module.

    ``forward(*inputs)`` takes the graph inputs in their TFLite layout with any batch size B in dim 0
    (e.g. (B, 256, 256, 3) NHWC float32) and returns the tuple of graph outputs, batch B in dim 0.
    All weights are frozen (``requires_grad=False``) and the module is in eval mode; gradients flow to
    the inputs. ``outputs_of(...)`` also returns any intermediate tensor by its TFLite index.
    """

    def __init__(self, model_bytes: bytes, source: str = "model") -> None:
        super().__init__()
        try:
            model = tflite.Model.GetRootAs(model_bytes, 0)
            graph = model.Subgraphs(0)
        except Exception as exc:  # flatbuffers raises assorted errors on garbage
            raise TFLiteFormatError(f"{source} is not a readable .tflite flatbuffer ({exc})") from None
        if graph is None:
            raise TFLiteFormatError(f"{source} has no subgraph")
        self.source = source
        self.tensors = [self._tensor_info(graph.Tensors(i)) for i in range(graph.TensorsLength())]
        self.input_ids = tuple(int(i) for i in graph.InputsAsNumpy())
        self.output_ids = tuple(int(i) for i in graph.OutputsAsNumpy())
        constants: dict[int, np.ndarray] = {}
        for i in range(graph.TensorsLength()):
            tensor = graph.Tensors(i)
            data = model.Buffers(tensor.Buffer()).DataAsNumpy()
            if not isinstance(data, int) and data.size:
                if tensor.Type() not in _NUMPY_TYPES:
                    raise TFLiteFormatError(f"{source}: tensor {self.tensors[i].name} has type {tensor.Type()}, "
                                            "which is not supported")  # fmt: skip
                dtype = _NUMPY_TYPES[tensor.Type()]
                constants[i] = np.frombuffer(data.tobytes(), dtype).reshape(self.tensors[i].shape)
        self.ops: list[_Op] = []
        for k in range(graph.OperatorsLength()):
            op = graph.Operators(k)
            code = model.OperatorCodes(op.OpcodeIndex())
            name = _OP_NAMES.get(max(code.BuiltinCode(), code.DeprecatedBuiltinCode()), "CUSTOM")
            if name == "CUSTOM" and code.CustomCode():
                name = code.CustomCode().decode()  # e.g. MediaPipe's "Convolution2DTransposeBias"
            entry = _Op(name, tuple(int(i) for i in op.InputsAsNumpy()), tuple(int(i) for i in op.OutputsAsNumpy()),
                        _options(op, name))  # fmt: skip
            if name == "DEQUANTIZE" and entry.inputs[0] in constants:
                source_array = constants[entry.inputs[0]]
                if source_array.dtype != np.float16:
                    raise TFLiteFormatError(f"{source}: DEQUANTIZE of {source_array.dtype} weights is not supported "
                                            "(only float16 -> float32)")  # fmt: skip
                constants[entry.outputs[0]] = source_array.astype(np.float32)  # exact widening
                continue
            self._check(entry, constants)
            self.ops.append(entry)
        # Float constants are frozen parameters (weights); integer ones (shapes, axes) stay numpy.
        self.int_constants = {i: a for i, a in constants.items() if a.dtype.kind in "iu"}
        self.weights = nn.ParameterDict({
            str(i): nn.Parameter(torch.from_numpy(np.array(a, np.float32)), requires_grad=False)
            for i, a in constants.items() if a.dtype.kind == "f"
        })  # fmt: skip
        self._prepared: dict[tuple[int, str], Tensor] = {}
        self.eval()

    def _tensor_info(self, tensor: tflite.Tensor) -> TensorInfo:
        shape = tuple(int(s) for s in tensor.ShapeAsNumpy()) if tensor.ShapeLength() else ()
        return TensorInfo(tensor.Name().decode(), shape)

    def _check(self, op: _Op, constants: dict[int, np.ndarray]) -> None:
        """Refuse, at load time, operators this converter does not implement or that would mix the batch."""
        supported = _ELEMENTWISE | _SPATIAL | {"RESHAPE", "TRANSPOSE", "MEAN", "SUM", "STRIDED_SLICE", "CONCATENATION",
                                               "FULLY_CONNECTED"}  # fmt: skip
        where = f"{self.source}: {op.name} -> {self.tensors[op.outputs[0]].name}"
        if op.name not in supported:
            raise TFLiteFormatError(f"{where}: operator {op.name} is not supported")
        if op.name in ("MEAN", "SUM"):
            axes = np.atleast_1d(constants[op.inputs[1]])
            rank = len(self.tensors[op.inputs[0]].shape)
            if any(a % rank == 0 for a in axes):
                raise TFLiteFormatError(f"{where}: reduction over the batch axis")
        if op.name == "TRANSPOSE" and int(constants[op.inputs[1]][0]) != 0:
            raise TFLiteFormatError(f"{where}: transpose moves the batch axis")
        if op.name == "CONCATENATION" and op.options["Axis"] % len(self.tensors[op.outputs[0]].shape) == 0:
            raise TFLiteFormatError(f"{where}: concatenation along the batch axis")
        if op.name == "STRIDED_SLICE" and (op.options.get("EllipsisMask") or op.options.get("NewAxisMask")
                                           or op.options.get("Offset")):
            raise TFLiteFormatError(f"{where}: ellipsis, new-axis and offset strided slices are not supported")
        if op.name == "FULLY_CONNECTED" and (op.inputs[1] not in constants or op.options.get("WeightsFormat", 0)
                                             or op.options.get("KeepNumDims")):  # fmt: skip
            raise TFLiteFormatError(f"{where}: a dynamic or shuffled weight matrix, or kept dimensions")
        fused = op.options.get("FusedActivationFunction", 0)
        if op.name in ("ADD", "SUB", "MUL", "DIV", "CONV_2D", "DEPTHWISE_CONV_2D", "MAX_POOL_2D", "AVERAGE_POOL_2D",
                       "CONCATENATION", "FULLY_CONNECTED") and fused not in _ACTIVATIONS:
            raise TFLiteFormatError(f"{where}: fused activation {fused}")
        if op.name in ("CONV_2D", "DEPTHWISE_CONV_2D", TRANSPOSE_CONV_BIAS) and op.inputs[1] not in constants:
            raise TFLiteFormatError(f"{where}: convolution with a dynamic filter")
        if op.name == TRANSPOSE_CONV_BIAS and (op.options.get("Padding", -1) < 0 or len(op.inputs) < 3
                                               or op.inputs[2] not in constants):  # fmt: skip
            raise TFLiteFormatError(f"{where}: missing or unknown options, or no constant bias")
        if op.name == "RESIZE_BILINEAR" and op.inputs[1] not in constants:
            raise TFLiteFormatError(f"{where}: resize to a dynamic size")

    # -- constants in the layout an operator wants ------------------------------------------------

    def _const(self, index: int, layout: str = "nhwc") -> Tensor:
        weight = self.weights[str(index)]
        if layout == "nhwc":
            return weight
        key = (index, layout)
        cached = self._prepared.get(key)
        if cached is None or cached.device != weight.device:
            if layout == "nchw":  # broadcastable NHWC constant -> the same values for an NCHW activation
                cached = _to_nchw(weight.reshape((1,) * (4 - weight.ndim) + tuple(weight.shape)))
            elif layout == "conv":  # (O, kh, kw, I) -> (O, I, kh, kw)
                cached = weight.permute(0, 3, 1, 2).contiguous()
            elif layout == "depthwise":  # (1, kh, kw, C * m) -> (C * m, 1, kh, kw)
                cached = weight[0].permute(2, 0, 1).unsqueeze(1).contiguous()
            elif layout == "transpose":  # (O, kh, kw, I) -> torch's transposed-convolution (I, O, kh, kw)
                cached = weight.permute(3, 0, 1, 2).contiguous()
            else:
                raise ValueError(layout)
            self._prepared[key] = cached
        return cached

    def _apply(self, fn: Callable[..., nn.Module], *args, **kwargs) -> TFLiteGraph:
        self._prepared.clear()  # device or dtype moves invalidate the cached layouts
        return super()._apply(fn, *args, **kwargs)

    # -- execution ----------------------------------------------------------------------------------

    def forward(self, *inputs: Tensor) -> tuple[Tensor, ...]:
        values = self.outputs_of(*inputs, keep=self.output_ids)
        return tuple(values[i] for i in self.output_ids)

    def outputs_of(self, *inputs: Tensor, keep: tuple[int, ...] | None = None) -> dict[int, Tensor]:
        """Run the graph; {tensor index: value in TFLite layout, batch in dim 0} for the indices in
        `keep` (every activation when None)."""
        if len(inputs) != len(self.input_ids):
            raise ValueError(f"{self.source} takes {len(self.input_ids)} input(s), got {len(inputs)}")
        values: dict[int, tuple[Tensor, bool]] = {}  # index -> (tensor, stored as NCHW)
        for index, x in zip(self.input_ids, inputs, strict=True):
            expected = self.tensors[index].shape[1:]
            if tuple(x.shape[1:]) != expected:
                raise ValueError(f"{self.source} input {self.tensors[index].name} must be (B, "
                                 f"{', '.join(map(str, expected))}), got {tuple(x.shape)}")  # fmt: skip
            values[index] = (x.float(), False)
        for op in self.ops:
            values[op.outputs[0]] = self._run(op, values)
        wanted = values.keys() if keep is None else keep
        return {i: self._layout(values[i], False) for i in wanted}

    @staticmethod
    def _layout(value: tuple[Tensor, bool], nchw: bool) -> Tensor:
        x, stored_nchw = value
        if stored_nchw == nchw or x.ndim != 4:
            return x
        return _to_nchw(x) if nchw else _to_nhwc(x)

    def _run(self, op: _Op, values: dict[int, tuple[Tensor, bool]]) -> tuple[Tensor, bool]:
        name, opts = op.name, op.options
        dynamic = [i for i in op.inputs if i >= 0 and i in values]
        if name in _SPATIAL:
            x = self._layout(values[op.inputs[0]], True)
            return self._spatial(op, x), True
        if name in _ELEMENTWISE:
            nchw = all(values[i][0].ndim == 4 for i in dynamic) and any(values[i][1] for i in dynamic)
            args = [self._layout(values[i], nchw) if i in values else self._const(i, "nchw" if nchw else "nhwc")
                    for i in op.inputs]  # fmt: skip
            activation = _ACTIVATIONS[opts.get("FusedActivationFunction", 0)]
            return activation(self._elementwise(name, args)), nchw
        x = self._layout(values[dynamic[0]], False)
        if name == "RESHAPE":
            shape = self.tensors[op.outputs[0]].shape
            return x.reshape(x.shape[0], *shape[1:]) if shape and shape[0] == 1 else x.reshape(shape), False
        if name == "TRANSPOSE":
            return x.permute(*[int(p) for p in self.int_constants[op.inputs[1]]]), False
        if name in ("MEAN", "SUM"):
            axes = [int(a) % x.ndim for a in np.atleast_1d(self.int_constants[op.inputs[1]])]
            reduce = torch.mean if name == "MEAN" else torch.sum
            return reduce(x, dim=axes, keepdim=bool(opts.get("KeepDims", False))), False
        if name == "CONCATENATION":
            parts = [self._layout(values[i], False) if i in values else self._const(i) for i in op.inputs]
            batch = x.shape[0]
            parts = [p.expand(batch, *p.shape[1:]) if p.shape[0] != batch else p for p in parts]
            axis = opts["Axis"] % x.ndim
            return _ACTIVATIONS[opts.get("FusedActivationFunction", 0)](torch.cat(parts, dim=axis)), False
        if name == "STRIDED_SLICE":
            return self._strided_slice(op, x), False
        if name == "FULLY_CONNECTED":  # (B, ..., I) flattened to (B, I) times the (O, I) weights, plus the bias
            weight = self._const(op.inputs[1])
            bias = self._const(op.inputs[2]) if len(op.inputs) > 2 and op.inputs[2] >= 0 else None
            y = F.linear(x.reshape(x.shape[0], weight.shape[1]), weight, bias)
            return _ACTIVATIONS[opts.get("FusedActivationFunction", 0)](y), False
        raise TFLiteFormatError(f"{self.source}: operator {name} is not supported")  # unreachable after _check

    def _spatial(self, op: _Op, x: Tensor) -> Tensor:
        opts = op.options
        if op.name == "PAD":
            pads = self.int_constants[op.inputs[1]]  # (4, 2) NHWC (before, after)
            if pads[0].any():
                raise TFLiteFormatError(f"{self.source}: PAD of the batch axis")
            # F.pad lists the last axis first: W, H, C for an NCHW tensor.
            return F.pad(x, (int(pads[2, 0]), int(pads[2, 1]), int(pads[1, 0]), int(pads[1, 1]),
                             int(pads[3, 0]), int(pads[3, 1])))  # fmt: skip
        if op.name == "RESIZE_BILINEAR":
            height, width = (int(v) for v in self.int_constants[op.inputs[1]])
            return resize_bilinear(x, (height, width), align_corners=bool(opts.get("AlignCorners")),
                                   half_pixel_centers=bool(opts.get("HalfPixelCenters")))  # fmt: skip
        stride = (opts["StrideH"], opts["StrideW"])
        if op.name == TRANSPOSE_CONV_BIAS:
            out_h, out_w = self.tensors[op.outputs[0]].shape[1:3]
            return transpose_conv_same_or_valid(x, self._const(op.inputs[1], "transpose"), self._const(op.inputs[2]),
                                                stride, (out_h, out_w))  # fmt: skip
        activation = _ACTIVATIONS[opts.get("FusedActivationFunction", 0)]
        if op.name in ("MAX_POOL_2D", "AVERAGE_POOL_2D"):
            kernel = (opts["FilterHeight"], opts["FilterWidth"])
            if op.name == "MAX_POOL_2D":
                if opts["Padding"] == tflite.Padding.SAME:
                    x = pad_same(x, kernel, stride, value=-math.inf)
                return activation(F.max_pool2d(x, kernel, stride))
            if opts["Padding"] != tflite.Padding.VALID:  # TFLite averages over the valid pixels only
                raise TFLiteFormatError(f"{self.source}: SAME average pooling is not supported")
            return activation(F.avg_pool2d(x, kernel, stride))
        dilation = (opts.get("DilationHFactor", 1) or 1, opts.get("DilationWFactor", 1) or 1)
        depthwise = op.name == "DEPTHWISE_CONV_2D"
        weight = self._const(op.inputs[1], "depthwise" if depthwise else "conv")
        bias = self._const(op.inputs[2]) if len(op.inputs) > 2 and op.inputs[2] >= 0 else None
        if opts["Padding"] == tflite.Padding.SAME:
            x = pad_same(x, tuple(weight.shape[2:]), stride, dilation)
        groups = x.shape[1] if depthwise else x.shape[1] // weight.shape[1]
        return activation(F.conv2d(x, weight, bias, stride, 0, dilation, groups))

    @staticmethod
    def _elementwise(name: str, args: list[Tensor]) -> Tensor:
        if name == "ADD":
            return args[0] + args[1]
        if name == "SUB":
            return args[0] - args[1]
        if name == "MUL":
            return args[0] * args[1]
        if name == "DIV":
            return args[0] / args[1]
        if name == "SQUARED_DIFFERENCE":
            return (args[0] - args[1]).square()
        if name == "PRELU":
            x, slope = args
            if x.ndim == 4 and slope.ndim == 4 and slope.shape[0] == slope.shape[2] == slope.shape[3] == 1:
                return F.prelu(x, slope.reshape(-1))  # one slope per channel of an NCHW tensor: the fast kernel
            return torch.where(x >= 0, x, x * slope)
        unary = {"LOGISTIC": torch.sigmoid, "NEG": torch.neg, "RSQRT": torch.rsqrt, "SQRT": torch.sqrt,
                 "RELU": F.relu, "TANH": torch.tanh, "HARD_SWISH": hard_swish}  # fmt: skip
        return unary[name](args[0])

    def _strided_slice(self, op: _Op, x: Tensor) -> Tensor:
        begin, end, strides = (self.int_constants[i] for i in op.inputs[1:4])
        opts = op.options
        index: list[slice | int] = [slice(None)]  # dim 0 is the batch: always kept whole
        shrink = []
        for axis in range(1, len(begin)):
            b = None if opts.get("BeginMask", 0) >> axis & 1 else int(begin[axis])
            e = None if opts.get("EndMask", 0) >> axis & 1 else int(end[axis])
            if opts.get("ShrinkAxisMask", 0) >> axis & 1:
                shrink.append(axis)
                e = None if b == -1 else b + 1
            index.append(slice(b, e, int(strides[axis])))
        out = x[tuple(index)]
        return out.squeeze(shrink) if shrink else out


def hard_swish(x: Tensor) -> Tensor:
    """TFLite's HARD_SWISH, elementwise: ``x * relu6(x + 3) / 6`` (MobileNetV3's h-swish)."""
    return x * (x + 3.0).clamp(0.0, 6.0) / 6.0


def _bilinear_axis(size_in: int, size_out: int, align_corners: bool,
                   half_pixel_centers: bool) -> tuple[Tensor, Tensor, Tensor]:  # fmt: skip
    """Source indices (lower, upper) and the upper weight of one axis of TFLite's RESIZE_BILINEAR.

    TFLite's reference kernel: ``scale = (in - 1) / (out - 1)`` with align_corners (else ``in / out``);
    source ``y = (i + 0.5) * scale - 0.5`` with half-pixel centres (else ``i * scale``);
    lower ``max(floor(y), 0)``, upper ``min(ceil(y), in - 1)``, upper weight ``y - floor(y)``."""
    scale = (size_in - 1) / (size_out - 1) if align_corners and size_out > 1 else size_in / size_out
    i = torch.arange(size_out, dtype=torch.float64)
    y = (i + 0.5) * scale - 0.5 if half_pixel_centers else i * scale
    floor = torch.floor(y)
    lower = floor.clamp(min=0).long()
    upper = torch.ceil(y).clamp(max=size_in - 1).long()
    return lower, upper, (y - floor).float()


def resize_bilinear(x: Tensor, size: tuple[int, int], *, align_corners: bool = False,
                    half_pixel_centers: bool = False) -> Tensor:  # fmt: skip
    """TFLite's RESIZE_BILINEAR of an NCHW tensor to ``size`` (height, width), with its two flags.

    Written out (rows, then columns) rather than with `F.interpolate`, which has no mode for TFLite's
    legacy corner rule (neither flag set); with half-pixel centres the two agree."""
    rows = _bilinear_axis(x.shape[2], size[0], align_corners, half_pixel_centers)
    cols = _bilinear_axis(x.shape[3], size[1], align_corners, half_pixel_centers)
    top, bottom, wy = rows
    x = x[:, :, top] + (x[:, :, bottom] - x[:, :, top]) * wy.to(x)[:, None]
    left, right, wx = cols
    return x[..., left] + (x[..., right] - x[..., left]) * wx.to(x)


def transpose_conv_same_or_valid(x: Tensor, weight: Tensor, bias: Tensor, stride: tuple[int, int],
                                 out_size: tuple[int, int]) -> Tensor:  # fmt: skip
    """A TFLite transposed convolution (NCHW) cropped to the output size the graph declares.

    `weight` is torch's (I, O, kh, kw); `bias` (O,). TFLite places the full transposed output,
    ``(in - 1) * stride + k`` pixels per axis, and drops ``max(full - out, 0) // 2`` pixels before (the
    SAME rule, nothing for VALID where ``out == full``); the odd pixel is dropped after."""
    full = F.conv_transpose2d(x, weight, bias.reshape(-1), stride=stride)
    top = max(full.shape[2] - out_size[0], 0) // 2
    left = max(full.shape[3] - out_size[1], 0) // 2
    return full[:, :, top:top + out_size[0], left:left + out_size[1]]


def read_tflite(path_or_bytes: str | Path | bytes, source: str | None = None) -> TFLiteGraph:
    """A `TFLiteGraph` from a .tflite file or its bytes."""
    if isinstance(path_or_bytes, bytes):
        return TFLiteGraph(path_or_bytes, source or "model")
    path = Path(path_or_bytes)
    return TFLiteGraph(path.read_bytes(), source or str(path))
