"""Binary glTF 2.0 (.glb) writer: plain numpy + struct + json, no glTF library.

Layout: one scene, one node, one mesh, one primitive per material. glTF attributes are per vertex,
so every primitive gets its own vertices, one per distinct (vertex, uv) corner; morph targets go
through the same split. Units are metres (the AvatarMesh is in centimetres), axes as ICT (+y up,
+z forward). The base POSITION is the rest shape (all morph weights 0) and ``mesh.weights`` holds
the current expression, so viewers show ``AvatarMesh.verts`` by default and can animate from there.

Morph targets store POSITION deltas only (no NORMAL deltas: viewers keep the base normals while
animating). Each (primitive, target) accessor is the smallest of:

- no storage at all: an accessor without bufferView, which the spec defines as all zeros (the teeth
  do not move for ``browInnerUp``), and which three.js, Blender and trimesh read as such;
- a sparse accessor (indices + values of the moved vertices) when few vertices move;
- a dense array otherwise.

Deltas under ``min_delta_m`` (1 micrometre by default; ICT's float16 deltas carry a lot of such noise)
count as zero.
"""

from __future__ import annotations

import json
import logging
import struct
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from sie3d.export.mesh import AvatarMesh, Material, vertex_normals, vertex_tangents

log = logging.getLogger(__name__)

CM_TO_M = 0.01
GLB_MAGIC = 0x46546C67  # b"glTF"
CHUNK_JSON = 0x4E4F534A
CHUNK_BIN = 0x004E4942
ARRAY_BUFFER, ELEMENT_ARRAY_BUFFER = 34962, 34963
UNSIGNED_SHORT, UNSIGNED_INT, FLOAT = 5123, 5125, 5126
TRIANGLES = 4
LINEAR, LINEAR_MIPMAP_LINEAR, CLAMP_TO_EDGE = 9729, 9987, 33071
_TYPES = {1: "SCALAR", 2: "VEC2", 3: "VEC3", 4: "VEC4"}


@dataclass
class _Builder:
    """Accumulates the binary chunk and the bufferView / accessor lists of the JSON."""

    blobs: list[bytes] = field(default_factory=list)
    length: int = 0
    views: list[dict[str, Any]] = field(default_factory=list)
    accessors: list[dict[str, Any]] = field(default_factory=list)

    def view(self, data: bytes, target: int | None = None) -> int:
        """Append `data` 4-byte aligned (enough for every component type here); return its bufferView."""
        entry: dict[str, Any] = {"buffer": 0, "byteOffset": self.length, "byteLength": len(data)}
        if target is not None:
            entry["target"] = target
        pad = -len(data) % 4
        self.blobs.append(data + b"\0" * pad)
        self.length += len(data) + pad
        self.views.append(entry)
        return len(self.views) - 1

    def accessor(self, entry: dict[str, Any]) -> int:
        self.accessors.append(entry)
        return len(self.accessors) - 1

    def array(self, values: np.ndarray, target: int | None, with_bounds: bool = False) -> int:
        """Accessor over a dense (N,) or (N, C) array of float32 / uint16 / uint32."""
        component = {np.float32: FLOAT, np.uint16: UNSIGNED_SHORT, np.uint32: UNSIGNED_INT}[values.dtype.type]
        entry: dict[str, Any] = {
            "bufferView": self.view(np.ascontiguousarray(values).tobytes(), target),
            "componentType": component,
            "count": len(values),
            "type": _TYPES[1 if values.ndim == 1 else values.shape[1]],
        }
        if with_bounds:
            entry.update(_bounds(values))
        return self.accessor(entry)


def _bounds(values: np.ndarray) -> dict[str, list[float]]:
    """min/max as JSON floats; float32 -> float is exact, so validators find the same values."""
    return {"min": [float(x) for x in values.min(axis=0)], "max": [float(x) for x in values.max(axis=0)]}


def _index_dtype(n_vertices: int) -> type:
    # the spec forbids the type's maximum value as an index (primitive restart): 65535 needs uint32
    return np.uint16 if n_vertices <= 65535 else np.uint32


def _morph_deltas(deltas_m: np.ndarray, min_delta_m: float) -> tuple[np.ndarray, np.ndarray]:
    """(K, N, 3) POSITION deltas of every target -> (deltas with the unmoved vertices zeroed, (K, N) moved),
    for all targets at once (per-target numpy calls cost more than the arithmetic)."""
    size = np.abs(deltas_m)
    moved = np.maximum(np.maximum(size[..., 0], size[..., 1]), size[..., 2]) > min_delta_m
    return np.where(moved[..., None], deltas_m, np.float32(0.0)).astype(np.float32), moved


def _morph_accessor(b: _Builder, written: np.ndarray, moved: np.ndarray, bounds: dict[str, list[float]],
                    sparse: bool) -> tuple[int, str]:
    """Accessor for one target's (N, 3) float32 POSITION deltas (zero where not `moved`), whose min/max
    are `bounds`; returns (index, layout)."""
    n = len(written)
    n_moved = int(moved.sum())
    base: dict[str, Any] = {"componentType": FLOAT, "count": n, "type": "VEC3", **bounds}
    if n_moved == 0 and sparse:
        return b.accessor(base), "zero"  # no bufferView: defined as zeros
    index_dtype = _index_dtype(n)
    sparse_bytes = n_moved * (np.dtype(index_dtype).itemsize + 12) + 4  # + alignment padding
    if not sparse or sparse_bytes >= n * 12:
        base["bufferView"] = b.view(written.tobytes(), ARRAY_BUFFER)
        return b.accessor(base), "dense"
    rows = np.flatnonzero(moved)  # strictly increasing, as the spec requires
    base["sparse"] = {
        "count": n_moved,
        "indices": {"bufferView": b.view(rows.astype(index_dtype).tobytes()),
                    "componentType": UNSIGNED_SHORT if index_dtype is np.uint16 else UNSIGNED_INT},
        "values": {"bufferView": b.view(written[rows].tobytes())},
    }  # fmt: skip
    return b.accessor(base), "sparse"


def _material_json(material: Material, texture_index: int | None, normal_index: int | None = None,
                   roughness_index: int | None = None) -> dict[str, Any]:  # fmt: skip
    pbr: dict[str, Any] = {
        "baseColorFactor": list(material.base_color),
        "metallicFactor": float(material.metallic),
        "roughnessFactor": 1.0 if roughness_index is not None else float(material.roughness),
    }
    if texture_index is not None:
        pbr["baseColorTexture"] = {"index": texture_index}
    if roughness_index is not None:  # roughness in the grey image's green channel (times the factor, 1)
        pbr["metallicRoughnessTexture"] = {"index": roughness_index}
    entry: dict[str, Any] = {"name": material.name, "pbrMetallicRoughness": pbr, "doubleSided": material.double_sided}
    if normal_index is not None:
        entry["normalTexture"] = {"index": normal_index}
    if material.alpha_mode != "OPAQUE":
        entry["alphaMode"] = material.alpha_mode
    if material.alpha_mode == "MASK":
        entry["alphaCutoff"] = float(material.alpha_cutoff)
    return entry


@dataclass(frozen=True)
class MorphAnimation:
    """A glTF animation of the mesh's morph weights: at ``times`` (K,) seconds, increasing, the weights
    ``weights`` (K, number of morph targets of the mesh, in their order). ``CUBICSPLINE`` with zero
    tangents eases in and out of every key (smoothstep, C1) and never leaves the keys' range; ``LINEAR``
    and ``STEP`` are glTF's own."""

    name: str
    times: np.ndarray
    weights: np.ndarray
    interpolation: str = "CUBICSPLINE"

    def __post_init__(self) -> None:
        times = np.asarray(self.times, np.float32)
        weights = np.asarray(self.weights, np.float32)
        if times.ndim != 1 or len(times) < 1 or (len(times) > 1 and not (np.diff(times) > 0).all()) or times[0] < 0:
            raise ValueError(f"animation {self.name!r}: times must be (K,) increasing from >= 0, got {times}")
        if weights.ndim != 2 or len(weights) != len(times) or not np.isfinite(weights).all():
            raise ValueError(f"animation {self.name!r}: weights must be finite (K, targets), got {weights.shape}")
        if self.interpolation not in ("CUBICSPLINE", "LINEAR", "STEP"):
            raise ValueError(f"animation {self.name!r}: unknown interpolation {self.interpolation!r}")
        object.__setattr__(self, "times", times)
        object.__setattr__(self, "weights", weights)


def _animation_json(b: _Builder, animation: MorphAnimation, node: int, n_targets: int) -> dict[str, Any]:
    """The glTF animation of `animation` on the morph weights of `node`; its data go into `b`."""
    if animation.weights.shape[1] != n_targets:
        raise ValueError(f"animation {animation.name!r} has {animation.weights.shape[1]} weights per key; the mesh "
                         f"has {n_targets} morph targets")  # fmt: skip
    values = animation.weights
    if animation.interpolation == "CUBICSPLINE":  # per key: in-tangents, values, out-tangents (zero: ease)
        zeros = np.zeros_like(values)
        values = np.stack([zeros, values, zeros], axis=1).reshape(-1, n_targets)
    times = b.array(animation.times, None, with_bounds=False)
    b.accessors[times].update(min=[float(animation.times.min())], max=[float(animation.times.max())])
    output = b.array(values.reshape(-1).astype(np.float32), None)
    return {"name": animation.name,
            "samplers": [{"input": times, "output": output, "interpolation": animation.interpolation}],
            "channels": [{"sampler": 0, "target": {"node": node, "path": "weights"}}]}  # fmt: skip


def to_glb(mesh: AvatarMesh, *, sparse: bool = True, min_delta_m: float = 1e-6,
           animations: tuple[MorphAnimation, ...] = ()) -> bytes:  # fmt: skip
    """Serialize `mesh` as a binary glTF 2.0 file (bytes), morph targets included, and `animations` of its
    morph weights.

    ``sparse=False`` writes every target as a plain dense array (bigger, about 17 MB of morph data for
    ICT), for importers that support neither sparse nor bufferView-less accessors.
    """
    b = _Builder()
    rest_m = mesh.rest_verts * np.float32(CM_TO_M)
    normals = vertex_normals(mesh.verts, mesh.faces)  # of the pose shown by default
    deltas_m = mesh.morph_deltas * np.float32(CM_TO_M)
    # split on UV values, not UV indices: ICT repeats identical UVs under different indices
    uv_values, uv_canonical = np.unique(mesh.uvs, axis=0, return_inverse=True)
    uv_faces = uv_canonical.reshape(-1)[mesh.uv_faces]
    n_uvs = len(uv_values)

    images: list[dict[str, Any]] = []
    textures: list[dict[str, Any]] = []
    texture_of_array: dict[int, int] = {}  # id(array) -> texture index: a shared image is stored once
    tangents = None  # (V, 4), computed for the first material with a normal map

    def texture_of(array: np.ndarray, png: bytes) -> int:
        if id(array) not in texture_of_array:
            images.append({"bufferView": b.view(png), "mimeType": "image/png"})
            textures.append({"sampler": 0, "source": len(images) - 1})
            texture_of_array[id(array)] = len(textures) - 1
        return texture_of_array[id(array)]

    materials_json, primitives = [], []
    layouts = {"zero": 0, "sparse": 0, "dense": 0}
    for m, material in enumerate(mesh.materials):
        tris = np.flatnonzero(mesh.face_material == m)
        if len(tris) == 0:
            continue  # glTF primitives must not be empty; the material is left out too
        texture_index = None if material.texture is None else texture_of(material.texture, material.png)
        normal_index = None
        if material.normal_texture is not None:
            normal_index = texture_of(material.normal_texture, material.normal_png)
            tangents = vertex_tangents(mesh.verts, mesh.faces, mesh.uvs, mesh.uv_faces) if tangents is None \
                else tangents  # fmt: skip
        roughness_index = None
        if material.roughness_texture is not None:
            roughness_index = texture_of(material.roughness_texture, material.roughness_png)
        materials_json.append(_material_json(material, texture_index, normal_index, roughness_index))

        # split: one glTF vertex per distinct (vertex, uv) corner of this primitive's triangles
        corner_key = mesh.faces[tris].ravel() * n_uvs + uv_faces[tris].ravel()
        unique_key, local = np.unique(corner_key, return_inverse=True)
        vertex, uv = np.divmod(unique_key, n_uvs)
        texcoord = uv_values[uv] * np.float32([1, -1]) + np.float32([0, 1])  # glTF: origin top-left
        attributes = {
            "POSITION": b.array(rest_m[vertex], ARRAY_BUFFER, with_bounds=True),
            "NORMAL": b.array(normals[vertex], ARRAY_BUFFER),
            "TEXCOORD_0": b.array(texcoord.astype(np.float32), ARRAY_BUFFER),
        }
        if normal_index is not None:
            attributes["TANGENT"] = b.array(tangents[vertex], ARRAY_BUFFER)
        primitive: dict[str, Any] = {
            "attributes": attributes,
            "indices": b.array(local.astype(_index_dtype(len(vertex))), ELEMENT_ARRAY_BUFFER),
            "material": len(materials_json) - 1,
            "mode": TRIANGLES,
        }
        if len(mesh.morph_names):
            targets = []
            written, moved = _morph_deltas(deltas_m[:, vertex], min_delta_m)
            low, high = written.min(axis=1).tolist(), written.max(axis=1).tolist()  # (K, 3): exact float32
            for k in range(len(mesh.morph_names)):
                bounds = {"min": low[k], "max": high[k]}
                index, layout = _morph_accessor(b, written[k], moved[k], bounds, sparse)
                targets.append({"POSITION": index})
                layouts[layout] += 1
            primitive["targets"] = targets
        primitives.append(primitive)
    if not primitives:
        raise ValueError(f"AvatarMesh {mesh.name!r} has no triangles to export")

    animations_json = [_animation_json(b, a, 0, len(mesh.morph_names)) for a in animations]  # before the buffer
    mesh_json: dict[str, Any] = {"name": mesh.name, "primitives": primitives}
    if len(mesh.morph_names):
        mesh_json["weights"] = [float(w) for w in mesh.morph_weights]
        mesh_json["extras"] = {"targetNames": list(mesh.morph_names)}  # read by three.js, Blender, Babylon
    gltf: dict[str, Any] = {
        "asset": {"version": "2.0", "generator": "sie3d"},
        "scene": 0,
        "scenes": [{"name": mesh.name, "nodes": [0]}],
        "nodes": [{"name": mesh.name, "mesh": 0}],
        "meshes": [mesh_json],
        "materials": materials_json,
        "buffers": [{"byteLength": b.length}],
        "bufferViews": b.views,
        "accessors": b.accessors,
    }
    if animations:
        gltf["animations"] = animations_json
    if images:
        gltf["samplers"] = [{"magFilter": LINEAR, "minFilter": LINEAR_MIPMAP_LINEAR,
                             "wrapS": CLAMP_TO_EDGE, "wrapT": CLAMP_TO_EDGE}]  # fmt: skip
        gltf.update(images=images, textures=textures)
    log.debug("glb morph accessors: %s", layouts)
    return _pack(gltf, b"".join(b.blobs))


def _pack(gltf: dict[str, Any], binary: bytes) -> bytes:
    """GLB container: 12-byte header, JSON chunk (space padded), BIN chunk (zero padded)."""
    text = json.dumps(gltf, separators=(",", ":"), allow_nan=False).encode("utf-8")
    text += b" " * (-len(text) % 4)
    binary += b"\0" * (-len(binary) % 4)
    total = 12 + 8 + len(text) + 8 + len(binary)
    return b"".join([
        struct.pack("<III", GLB_MAGIC, 2, total),
        struct.pack("<II", len(text), CHUNK_JSON), text,
        struct.pack("<II", len(binary), CHUNK_BIN), binary,
    ])  # fmt: skip
