"""MediaPipe's canonical face mesh (468 vertices, 898 triangles), read from the `.task` bundle.

The bundle's `geometry_pipeline_metadata_landmarks.binarypb` is a `GeometryPipelineMetadata`
protobuf. Only three fields matter here, so a ~30-line wire-format reader replaces the proto schema:
message field 1 = canonical_mesh { 3: repeated float vertex_buffer (x, y, z, u, v per vertex),
4: repeated uint32 index_buffer }.
"""

from __future__ import annotations

import struct
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from sie3d.assets.registry import asset_file

METADATA_NAME = "geometry_pipeline_metadata_landmarks.binarypb"
N_CANONICAL = 468


@dataclass(frozen=True)
class CanonicalMesh:
    verts: np.ndarray  # (468, 3) float32, centimetres, +y up, +z out of the face (MediaPipe's model space)
    uvs: np.ndarray  # (468, 2) float32
    faces: np.ndarray  # (898, 3) int32


def _varint(buf: bytes, i: int) -> tuple[int, int]:
    value, shift = 0, 0
    while True:
        byte = buf[i]
        i += 1
        value |= (byte & 0x7F) << shift
        shift += 7
        if byte < 0x80:
            return value, i


def _fields(buf: bytes) -> list[tuple[int, int, object]]:
    """Decode one protobuf message level into (field number, wire type, value)."""
    i, out = 0, []
    while i < len(buf):
        key, i = _varint(buf, i)
        number, wire = key >> 3, key & 7
        if wire == 0:
            value, i = _varint(buf, i)
        elif wire == 1:
            value, i = buf[i : i + 8], i + 8
        elif wire == 2:
            length, i = _varint(buf, i)
            value, i = buf[i : i + length], i + length
        elif wire == 5:
            value, i = buf[i : i + 4], i + 4
        else:
            raise ValueError(f"unsupported protobuf wire type {wire}")
        out.append((number, wire, value))
    return out


def _repeated(fields: list, number: int, fmt: str) -> list:
    """A repeated scalar field, packed (wire 2) or not (wire 0 / 5)."""
    values: list = []
    for n, wire, value in fields:
        if n != number:
            continue
        if wire == 2 and fmt == "f":
            values.extend(struct.unpack(f"<{len(value) // 4}f", value))
        elif wire == 2:
            j = 0
            while j < len(value):
                v, j = _varint(value, j)
                values.append(v)
        elif wire == 5:
            values.append(struct.unpack("<f", value)[0])
        else:
            values.append(value)
    return values


def load_canonical_mesh(task_file: Path | None = None) -> CanonicalMesh:
    with zipfile.ZipFile(task_file or asset_file("face_landmarker")) as bundle:
        metadata = bundle.read(METADATA_NAME)
    mesh_message = next(v for n, w, v in _fields(metadata) if n == 1 and w == 2)
    mesh_fields = _fields(mesh_message)
    vertex_buffer = np.asarray(_repeated(mesh_fields, 3, "f"), np.float32).reshape(-1, 5)
    faces = np.asarray(_repeated(mesh_fields, 4, "I"), np.int32).reshape(-1, 3)
    if vertex_buffer.shape[0] != N_CANONICAL:
        raise ValueError(f"canonical mesh has {vertex_buffer.shape[0]} vertices, expected {N_CANONICAL}")
    return CanonicalMesh(vertex_buffer[:, :3].copy(), vertex_buffer[:, 3:].copy(), faces)
