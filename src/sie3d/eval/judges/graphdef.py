"""Read a TensorFlow frozen graph (``GraphDef`` protobuf) without TensorFlow.

Only the part of ``tensorflow/core/framework/{graph,node_def,attr_value,tensor,tensor_shape}.proto``
that a frozen inference graph uses is declared here, as a ``FileDescriptorProto`` built in code, so
the ``protobuf`` package decodes the file with its fast native parser. Field numbers are those of the
TensorFlow schema; fields we do not declare (versions, function library, debug info) are skipped by
the parser as unknown fields.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import numpy as np
from google.protobuf import descriptor_pb2, descriptor_pool, message_factory

# TensorFlow DataType enum values (types.proto) -> numpy dtype, for the types a frozen graph holds.
TF_DTYPES: dict[int, np.dtype] = {
    1: np.dtype(np.float32),
    2: np.dtype(np.float64),
    3: np.dtype(np.int32),
    4: np.dtype(np.uint8),
    5: np.dtype(np.int16),
    6: np.dtype(np.int8),
    9: np.dtype(np.int64),
    10: np.dtype(np.bool_),
    19: np.dtype(np.float16),
}

_F = descriptor_pb2.FieldDescriptorProto
_PACKAGE = "sie3d_tf"


def _message(file: descriptor_pb2.FileDescriptorProto, name: str,
             fields: list[tuple[str, int, int, int, str | None]], oneof: str | None = None) -> None:
    """Add message `name` with fields (name, number, type, label, message type name or None); with
    `oneof`, all fields belong to that oneof (so the parser records which one was set)."""
    msg = file.message_type.add(name=name)
    if oneof:
        msg.oneof_decl.add(name=oneof)
    for field_name, number, ftype, label, type_name in fields:
        field = msg.field.add(name=field_name, number=number, type=ftype, label=label)
        if type_name:
            field.type_name = f".{_PACKAGE}.{type_name}"
        if oneof:
            field.oneof_index = 0


@cache
def _classes() -> dict[str, type]:
    opt, rep = _F.LABEL_OPTIONAL, _F.LABEL_REPEATED
    file = descriptor_pb2.FileDescriptorProto(name="sie3d_tf_graph.proto", package=_PACKAGE, syntax="proto3")
    _message(file, "Dim", [("size", 1, _F.TYPE_INT64, opt, None), ("name", 2, _F.TYPE_STRING, opt, None)])
    _message(file, "TensorShapeProto", [("dim", 2, _F.TYPE_MESSAGE, rep, "Dim"),
                                        ("unknown_rank", 3, _F.TYPE_BOOL, opt, None)])
    _message(file, "TensorProto", [
        ("dtype", 1, _F.TYPE_INT32, opt, None),  # an enum on the wire is a varint, like int32
        ("tensor_shape", 2, _F.TYPE_MESSAGE, opt, "TensorShapeProto"),
        ("tensor_content", 4, _F.TYPE_BYTES, opt, None),
        ("float_val", 5, _F.TYPE_FLOAT, rep, None),
        ("double_val", 6, _F.TYPE_DOUBLE, rep, None),
        ("int_val", 7, _F.TYPE_INT32, rep, None),
        ("string_val", 8, _F.TYPE_BYTES, rep, None),
        ("int64_val", 10, _F.TYPE_INT64, rep, None),
        ("bool_val", 11, _F.TYPE_BOOL, rep, None),
        ("half_val", 13, _F.TYPE_INT32, rep, None),
    ])  # fmt: skip
    _message(file, "ListValue", [
        ("s", 2, _F.TYPE_BYTES, rep, None),
        ("i", 3, _F.TYPE_INT64, rep, None),
        ("f", 4, _F.TYPE_FLOAT, rep, None),
        ("b", 5, _F.TYPE_BOOL, rep, None),
        ("type", 6, _F.TYPE_INT32, rep, None),
        ("shape", 7, _F.TYPE_MESSAGE, rep, "TensorShapeProto"),
        ("tensor", 8, _F.TYPE_MESSAGE, rep, "TensorProto"),
    ])  # fmt: skip
    _message(file, "AttrValue", [
        ("list", 1, _F.TYPE_MESSAGE, opt, "ListValue"),
        ("s", 2, _F.TYPE_BYTES, opt, None),
        ("i", 3, _F.TYPE_INT64, opt, None),
        ("f", 4, _F.TYPE_FLOAT, opt, None),
        ("b", 5, _F.TYPE_BOOL, opt, None),
        ("type", 6, _F.TYPE_INT32, opt, None),
        ("shape", 7, _F.TYPE_MESSAGE, opt, "TensorShapeProto"),
        ("tensor", 8, _F.TYPE_MESSAGE, opt, "TensorProto"),
    ], oneof="value")  # fmt: skip
    # map<string, AttrValue> is, on the wire, a repeated (key = 1, value = 2) entry message.
    _message(file, "AttrEntry", [("key", 1, _F.TYPE_STRING, opt, None),
                                 ("value", 2, _F.TYPE_MESSAGE, opt, "AttrValue")])
    _message(file, "NodeDef", [
        ("name", 1, _F.TYPE_STRING, opt, None),
        ("op", 2, _F.TYPE_STRING, opt, None),
        ("input", 3, _F.TYPE_STRING, rep, None),
        ("device", 4, _F.TYPE_STRING, opt, None),
        ("attr", 5, _F.TYPE_MESSAGE, rep, "AttrEntry"),
    ])  # fmt: skip
    _message(file, "GraphDef", [("node", 1, _F.TYPE_MESSAGE, rep, "NodeDef")])
    pool = descriptor_pool.DescriptorPool()
    pool.Add(file)
    return {name: message_factory.GetMessageClass(pool.FindMessageTypeByName(f"{_PACKAGE}.{name}"))
            for name in ("GraphDef", "TensorProto")}  # fmt: skip


def tensor_to_array(tensor: Any) -> np.ndarray:
    """A decoded ``TensorProto`` -> numpy array of its dtype and shape."""
    if tensor.dtype not in TF_DTYPES:
        raise ValueError(f"unsupported TensorFlow dtype enum {tensor.dtype}")
    dtype = TF_DTYPES[tensor.dtype]
    shape = tuple(int(d.size) for d in tensor.tensor_shape.dim)
    count = int(np.prod(shape)) if shape else 1
    if tensor.tensor_content:
        return np.frombuffer(tensor.tensor_content, dtype=dtype).reshape(shape).copy()
    if dtype == np.float16:
        values = np.array(tensor.half_val, np.uint16).view(np.float16)
    else:
        source = {np.dtype(np.float32): tensor.float_val, np.dtype(np.float64): tensor.double_val,
                  np.dtype(np.int64): tensor.int64_val, np.dtype(np.bool_): tensor.bool_val}.get(dtype, tensor.int_val)
        values = np.array(source, dtype=dtype)
    if values.size == count:
        return values.reshape(shape)
    if values.size == 1:  # TensorFlow stores a splat constant as its single value
        return np.full(shape, values[0], dtype=dtype)
    if values.size == 0:
        return np.zeros(shape, dtype=dtype)
    raise ValueError(f"tensor holds {values.size} values for shape {shape}")


def _attr_value(value: Any) -> Any:
    """AttrValue -> int / float / bool / str / tuple (shape) / list / numpy array (tensor)."""
    kind = value.WhichOneof("value")
    if kind == "tensor":
        return tensor_to_array(value.tensor)
    if kind == "shape":
        return tuple(int(d.size) for d in value.shape.dim)
    if kind == "s":
        return value.s.decode(errors="replace")
    if kind == "list":
        for name in ("i", "f", "s", "b", "type"):
            items = list(getattr(value.list, name))
            if items:
                return [v.decode(errors="replace") if isinstance(v, bytes) else v for v in items]
        return []
    return getattr(value, kind) if kind else None


@dataclass(frozen=True)
class Node:
    """One GraphDef node with its attributes decoded to Python/numpy values."""

    name: str
    op: str
    inputs: tuple[str, ...]  # producer names, ":k" output suffixes kept, "^control" inputs dropped
    attrs: dict[str, Any]


def read_graphdef(path: Path | str) -> list[Node]:
    """Decode a frozen ``GraphDef`` file into its nodes, in file order."""
    graph = _classes()["GraphDef"]()
    graph.ParseFromString(Path(path).read_bytes())
    nodes = []
    for node in graph.node:
        attrs = {entry.key: _attr_value(entry.value) for entry in node.attr}
        inputs = tuple(name for name in node.input if not name.startswith("^"))
        nodes.append(Node(node.name, node.op, inputs, attrs))
    return nodes
