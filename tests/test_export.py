"""Export: the ICT avatar as GLB (read back with pygltflib, trimesh and the Khronos validator) and OBJ."""

from __future__ import annotations

import dataclasses
import io
import json
import os
import struct

import numpy as np
import pygltflib
import pytest
import trimesh
from PIL import Image

from sie3d.assets import ict
from sie3d.errors import UsageError
from sie3d.export import AvatarMesh, Material, avatar_mesh_from_ict, export, to_glb, to_obj, vertex_normals, write
from sie3d.export.mesh import ict_tile_owners, ict_triangle_tiles
from sie3d.export.rig import ARKIT_NAMES, rig_names

from conftest import glb_json, load_in_three, validate_gltf

WEIGHTS = {"jawOpen": 0.4, "mouthSmile_L": 0.7, "browInnerUp_R": 0.25}
TEXTURE_SIZE = 64  # small: encoding cost is the benchmark's business, not the tests'


@pytest.fixture(scope="session")
def model() -> ict.IctArrays:
    return ict.load()


def _textures(rgba_tile: int | None = None) -> dict[int, np.ndarray]:
    rng = np.random.default_rng(7)
    return {
        tile: rng.integers(0, 256, (TEXTURE_SIZE, TEXTURE_SIZE, 4 if tile == rgba_tile else 3), dtype=np.uint8)
        for tile in range(7)
    }


def _weights(model: ict.IctArrays) -> np.ndarray:
    weights = np.zeros(len(model.expression_names), np.float32)
    for name, value in WEIGHTS.items():
        weights[model.expression_names.index(name)] = value
    return weights


@pytest.fixture(scope="session")
def avatar(model) -> AvatarMesh:
    return avatar_mesh_from_ict(model, textures_per_tile=_textures(), weights=_weights(model))


@pytest.fixture(scope="session")
def glb(avatar) -> bytes:
    return to_glb(avatar)


@pytest.fixture(scope="session")
def gltf(glb) -> pygltflib.GLTF2:
    return pygltflib.GLTF2.load_from_bytes(glb)


# -- helpers that read the file independently of the writer ---------------------------------------

_DTYPES = {5121: np.uint8, 5123: np.uint16, 5125: np.uint32, 5126: np.float32}
_WIDTHS = {"SCALAR": 1, "VEC2": 2, "VEC3": 3, "VEC4": 4}


def _view_bytes(gltf: pygltflib.GLTF2, blob: bytes, index: int) -> bytes:
    view = gltf.bufferViews[index]
    start = view.byteOffset or 0
    assert start + view.byteLength <= len(blob), f"bufferView {index} runs past the binary chunk"
    return blob[start : start + view.byteLength]


def read_accessor(gltf: pygltflib.GLTF2, blob: bytes, index: int) -> np.ndarray:
    """(count, width) array of an accessor: dense, bufferView-less (zeros) and/or sparse."""
    acc = gltf.accessors[index]
    dtype, width = np.dtype(_DTYPES[acc.componentType]), _WIDTHS[acc.type]
    if acc.bufferView is None:
        out = np.zeros((acc.count, width), dtype)
    else:
        offset = acc.byteOffset or 0
        assert offset % dtype.itemsize == 0 and (gltf.bufferViews[acc.bufferView].byteOffset or 0) % 4 == 0
        data = _view_bytes(gltf, blob, acc.bufferView)
        out = np.frombuffer(data, dtype, acc.count * width, offset).reshape(acc.count, width).copy()
    if acc.sparse is not None:
        s = acc.sparse
        index_dtype = _DTYPES[s.indices.componentType]
        rows = np.frombuffer(_view_bytes(gltf, blob, s.indices.bufferView), index_dtype, s.count)
        assert (np.diff(rows.astype(np.int64)) > 0).all() and rows.max() < acc.count, "sparse indices not increasing"
        values = np.frombuffer(_view_bytes(gltf, blob, s.values.bufferView), dtype, s.count * width)
        out[rows] = values.reshape(-1, width)
    return out


def nearest(queries: np.ndarray, points: np.ndarray, tol: float = 1e-5) -> tuple[np.ndarray, np.ndarray]:
    """(index, distance) of each query's nearest point among those within `tol` on the first axis.

    A sweep over the points sorted by their first coordinate (no scipy here); queries with no point
    that close get distance inf.
    """
    q, p = queries.astype(np.float64), points.astype(np.float64)
    order = np.argsort(p[:, 0], kind="stable")
    first = p[order, 0]
    lo = np.searchsorted(first, q[:, 0] - tol, "left")
    hi = np.searchsorted(first, q[:, 0] + tol, "right")
    counts = hi - lo
    query = np.repeat(np.arange(len(q)), counts)
    candidate = order[np.repeat(lo - np.cumsum(counts) + counts, counts) + np.arange(counts.sum())]
    distance = np.linalg.norm(q[query] - p[candidate], axis=1)
    best_distance = np.full(len(q), np.inf)
    np.minimum.at(best_distance, query, distance)
    best = np.full(len(q), -1)
    is_best = distance == best_distance[query]
    best[query[is_best]] = candidate[is_best]
    return best, best_distance


def primitive_corners(avatar: AvatarMesh, material_name: str) -> tuple[np.ndarray, np.ndarray]:
    """(vertex id, (u, v)) of every distinct corner of a material's triangles in the AvatarMesh."""
    m = [mat.name for mat in avatar.materials].index(material_name)
    tris = avatar.face_material == m
    corners = np.c_[avatar.faces[tris].ravel(), avatar.uvs[avatar.uv_faces[tris].ravel()]]
    pairs = np.unique(corners, axis=0)
    return pairs[:, 0].astype(np.int64), pairs[:, 1:]


def match_primitive(avatar, gltf, blob, primitive) -> np.ndarray:
    """AvatarMesh vertex id of each glTF vertex of `primitive`, by position (metres) and glTF texcoord."""
    vertex, uv = primitive_corners(avatar, gltf.materials[primitive.material].name)
    expected = np.hstack([avatar.rest_verts[vertex] * 0.01, np.c_[uv[:, 0], 1 - uv[:, 1]]])
    got = np.hstack([read_accessor(gltf, blob, primitive.attributes.POSITION),
                     read_accessor(gltf, blob, primitive.attributes.TEXCOORD_0)])  # fmt: skip
    assert len(got) == len(expected), "one glTF vertex per distinct (vertex, uv) corner"
    index, distance = nearest(got, expected)
    assert distance.max() < 1e-6 and len(np.unique(index)) == len(index), "glTF vertices do not match the input"
    return vertex[index]


# -- AvatarMesh from ICT ----------------------------------------------------------------------------


def test_ict_material_tiles_match_the_documented_table(model):
    tiles = ict_triangle_tiles(model)
    material = model.polygon_material[model.face_polygon]
    found = {name: sorted({int(t) for t in tiles[material == m]}) for m, name in enumerate(model.material_names)}
    assert found == {
        "M_Face": [0], "M_BackHead": [1], "M_GumsTongue": [2], "M_Teeth": [3],
        "M_ScleraLeft": [0], "M_IrisLeft": [0], "M_ScleraRight": [0], "M_IrisRight": [0],
        "M_LacrimalFluid": [4, 5], "M_EyeBlend": [0], "M_EyeOcclusion": [0], "M_EyeLashes": [6],
    }  # fmt: skip
    counts = dict(zip(model.material_names, np.bincount(material, minlength=len(model.material_names)), strict=True))
    assert counts == {
        "M_Face": 18460, "M_BackHead": 9608, "M_GumsTongue": 5808, "M_Teeth": 8696,
        "M_ScleraLeft": 1536, "M_IrisLeft": 1596, "M_ScleraRight": 1536, "M_IrisRight": 1596,
        "M_LacrimalFluid": 652, "M_EyeBlend": 60, "M_EyeOcclusion": 512, "M_EyeLashes": 2160,
    }  # fmt: skip
    left_lacrimal = ict.REGIONS["lacrimal_fluid_left"]
    assert np.all((model.faces[tiles == 4] >= left_lacrimal[0]) & (model.faces[tiles == 4] < left_lacrimal[1]))
    assert ict_tile_owners(model) == {
        0: "M_Face", 1: "M_BackHead", 2: "M_GumsTongue", 3: "M_Teeth",
        4: "M_LacrimalFluid", 5: "M_LacrimalFluid", 6: "M_EyeLashes",
    }  # fmt: skip


def test_avatar_mesh_from_ict_drops_helpers_and_maps_tiles(model, avatar):
    names = [m.name for m in avatar.materials]
    assert names == ["M_Face", "M_BackHead", "M_GumsTongue", "M_Teeth", "M_ScleraLeft", "M_IrisLeft",
                     "M_ScleraRight", "M_IrisRight", "M_EyeLashes"]  # fmt: skip
    textures = _textures()
    by_name = {m.name: m for m in avatar.materials}
    assert by_name["M_Face"].texture is not None and np.array_equal(by_name["M_Face"].texture, textures[0])
    assert np.array_equal(by_name["M_EyeLashes"].texture, textures[6])
    assert by_name["M_IrisLeft"].texture is None, "eyes share tile 0's coordinates, not the face texture"
    iris, sclera = by_name["M_IrisLeft"].base_color, by_name["M_ScleraLeft"].base_color
    assert iris[0] > iris[2] and sum(sclera[:3]) > 2.4 and sum(iris[:3]) < 1.0  # brownish iris, white sclera
    assert avatar.uvs.min() >= 0 and avatar.uvs.max() <= 1, "UVs shifted out of their UDIM tile"
    assert avatar.morph_deltas.shape == (len(rig_names()), ict.N_VERTICES, 3)
    kept = len(model.faces) - len(avatar.faces)
    helper_ids = [model.material_names.index(n) for n in ("M_EyeOcclusion", "M_EyeBlend", "M_LacrimalFluid")]
    helpers = np.isin(model.polygon_material[model.face_polygon], helper_ids)
    assert kept == helpers.sum() == 60 + 512 + 652
    # default pose = neutral + weights @ basis; rest_verts takes the expression off again
    np.testing.assert_allclose(avatar.rest_verts, model.neutral, atol=1e-5)
    assert np.abs(avatar.verts - model.neutral).max() > 0.3  # the jaw really is open (cm)


def test_avatar_mesh_keeps_helpers_on_request_with_one_material_per_tile(model):
    full = avatar_mesh_from_ict(model, drop_materials=())
    names = {m.name: m for m in full.materials}
    assert {"M_LacrimalFluid_1005", "M_LacrimalFluid_1006", "M_EyeBlend", "M_EyeOcclusion"} <= set(names)
    assert names["M_EyeOcclusion"].alpha_mode == "BLEND" and len(full.faces) == len(model.faces)
    assert full.uvs.min() >= 0 and full.uvs.max() <= 1


def test_bad_inputs_raise_readable_errors(model, avatar):
    with pytest.raises(ValueError, match="weights must be"):
        avatar_mesh_from_ict(model, weights=np.zeros(52))
    with pytest.raises(ValueError, match="unknown ICT materials"):
        avatar_mesh_from_ict(model, drop_materials=("M_Nose",))
    with pytest.raises(ValueError, match="tiles"):
        avatar_mesh_from_ict(model, textures_per_tile={9: np.zeros((4, 4, 3), np.uint8)})
    with pytest.raises(ValueError, match="texture must be"):
        Material("M_Bad", texture=np.zeros((4, 4), np.uint8))
    with pytest.raises(ValueError, match="roughness_texture must be"):  # glTF reads metallic from the same image
        Material("M_Bad", roughness_texture=np.zeros((4, 4), np.uint8), metallic=0.5)
    with pytest.raises(ValueError, match="roughness_texture must be"):
        Material("M_Bad", roughness_texture=np.zeros((0, 4), np.uint8))
    with pytest.raises(ValueError, match="morph_deltas must be"):
        AvatarMesh(**{**avatar.__dict__, "morph_deltas": avatar.morph_deltas[:, :10]})
    with pytest.raises(ValueError, match="faces index past"):
        AvatarMesh(**{**avatar.__dict__, "faces": avatar.faces + len(avatar.verts)})
    with pytest.raises(UsageError, match="unknown export format"):
        export(avatar, "fbx")  # type: ignore[arg-type]
    with pytest.raises(UsageError, match="stem"):
        export(avatar, "obj", stem="../evil")


def test_vertex_normals_known_values():
    # a unit cube's corner normals point along the diagonals; an unused vertex gets +z, not NaN
    corners = np.array([[x, y, z] for x in (0, 1) for y in (0, 1) for z in (0, 1)], np.float32)
    quads = [(0, 1, 3, 2), (4, 6, 7, 5), (0, 4, 5, 1), (2, 3, 7, 6), (0, 2, 6, 4), (1, 5, 7, 3)]
    faces = np.array([t for a, b, c, d in quads for t in ((a, b, c), (a, c, d))])
    normals = vertex_normals(np.vstack([corners, [[5, 5, 5]]]), faces)
    expected = (corners - 0.5) / np.linalg.norm(corners - 0.5, axis=1, keepdims=True)
    np.testing.assert_allclose(normals[:8], expected, atol=1e-6)
    assert np.array_equal(normals[8], [0, 0, 1])


# -- GLB ------------------------------------------------------------------------------------------


def test_glb_container_and_scene(glb, gltf):
    magic, version, length = struct.unpack_from("<III", glb)
    assert (magic, version, length) == (0x46546C67, 2, len(glb))
    json_length, json_type = struct.unpack_from("<II", glb, 12)
    assert json_type == 0x4E4F534A and json_length % 4 == 0
    json.loads(glb[20 : 20 + json_length])
    bin_length, bin_type = struct.unpack_from("<II", glb, 20 + json_length)
    assert bin_type == 0x004E4942 and bin_length % 4 == 0 and 28 + json_length + bin_length == len(glb)
    assert gltf.buffers[0].byteLength <= bin_length and gltf.buffers[0].uri is None
    assert len(gltf.scenes) == 1 and gltf.scenes[gltf.scene].nodes == [0]
    assert len(gltf.nodes) == 1 and gltf.nodes[0].mesh == 0 and len(gltf.meshes) == 1


def test_glb_morph_targets_names_and_default_weights(avatar, gltf):
    mesh = gltf.meshes[0]
    names = mesh.extras["targetNames"]
    assert names == list(avatar.morph_names) == list(rig_names()) and names[:52] == list(ARKIT_NAMES)
    np.testing.assert_array_equal(np.float32(mesh.weights), avatar.morph_weights)
    assert [gltf.materials[p.material].name for p in mesh.primitives] == [m.name for m in avatar.materials]
    for primitive in mesh.primitives:
        assert len(primitive.targets) == len(names), "every primitive needs the same number of targets"


def test_glb_accessor_counts_bounds_and_indices(avatar, gltf):
    blob = gltf.binary_blob()
    triangles = 0
    for primitive in gltf.meshes[0].primitives:
        attributes = primitive.attributes
        count = gltf.accessors[attributes.POSITION].count
        for index in (attributes.NORMAL, attributes.TEXCOORD_0, *(t["POSITION"] for t in primitive.targets)):
            assert gltf.accessors[index].count == count
        normals = read_accessor(gltf, blob, attributes.NORMAL)
        np.testing.assert_allclose(np.linalg.norm(normals, axis=1), 1, atol=1e-5)
        indices = read_accessor(gltf, blob, primitive.indices).ravel()
        assert len(indices) % 3 == 0 and indices.max() == count - 1 and len(np.unique(indices)) == count
        assert gltf.accessors[primitive.indices].componentType == (5123 if count <= 65535 else 5125)
        triangles += len(indices) // 3
        for index in (attributes.POSITION, *(t["POSITION"] for t in primitive.targets)):
            values, acc = read_accessor(gltf, blob, index), gltf.accessors[index]
            assert acc.min == values.min(0).tolist() and acc.max == values.max(0).tolist(), f"bounds of {index}"
    assert triangles == len(avatar.faces)
    layouts = {("sparse" if a.sparse else "dense" if a.bufferView is not None else "zero") for a in gltf.accessors}
    assert layouts == {"sparse", "dense", "zero"}, "all three morph layouts exercised"


def test_glb_texture_is_an_embedded_png(avatar, gltf):
    blob = gltf.binary_blob()
    face = next(m for m in gltf.materials if m.name == "M_Face")
    texture = gltf.textures[face.pbrMetallicRoughness.baseColorTexture.index]
    image = gltf.images[texture.source]
    assert image.mimeType == "image/png" and image.uri is None
    decoded = np.asarray(Image.open(io.BytesIO(_view_bytes(gltf, blob, image.bufferView))))
    np.testing.assert_array_equal(decoded, _textures()[0])
    assert len(gltf.images) == 5, "tiles 4 and 5 belong to the dropped lacrimal fluid"
    assert face.pbrMetallicRoughness.metallicFactor == 0 and 0.5 <= face.pbrMetallicRoughness.roughnessFactor <= 0.7


def test_glb_default_weights_show_the_pose_and_jaw_open_target(model, avatar, gltf):
    blob = gltf.binary_blob()
    jaw = avatar.morph_names.index("jawOpen")
    moved = 0.0
    for primitive in gltf.meshes[0].primitives:
        vertex = match_primitive(avatar, gltf, blob, primitive)
        base = read_accessor(gltf, blob, primitive.attributes.POSITION).astype(np.float64)
        targets = np.stack([read_accessor(gltf, blob, t["POSITION"]) for t in primitive.targets])
        # weight 1 on jawOpen alone: the ICT jawOpen shape (deltas under 1 micrometre are dropped)
        ict_jaw = model.expression_names.index("jawOpen")
        expected = (model.neutral[vertex] + model.expression_basis[ict_jaw, vertex].astype(np.float32)) * 0.01
        np.testing.assert_allclose(base + targets[jaw], expected, atol=1.2e-6, rtol=0)
        moved = max(moved, float(np.abs(targets[jaw]).max()))
        # the default weights reproduce the input pose
        shown = base + np.tensordot(np.float32(gltf.meshes[0].weights), targets, axes=1)
        np.testing.assert_allclose(shown, avatar.verts[vertex] * 0.01, atol=3e-6, rtol=0)
    assert moved > 0.005, "jawOpen moves the chin by centimetres"


def test_glb_loads_in_trimesh_at_the_input_pose(avatar, glb):
    scene = trimesh.load(io.BytesIO(glb), file_type="glb", force="scene")
    geometries = list(scene.geometry.values())
    assert len(geometries) == len(avatar.materials)
    assert sum(len(g.faces) for g in geometries) == len(avatar.faces)
    got = np.vstack([g.vertices for g in geometries])
    used = np.unique(avatar.faces)
    # trimesh ignores morph targets: it shows the rest shape, i.e. the pose minus the expression
    reference = avatar.rest_verts[used] * 0.01
    _, distance = nearest(got, reference)
    assert distance.max() < 1e-6
    _, back = nearest(reference, got)
    assert back.max() < 1e-6, "every input vertex appears in the file"
    assert scene.geometry[next(iter(scene.geometry))].visual.material.baseColorTexture is not None


def test_glb_without_sparse_is_equivalent(model, avatar, gltf):
    dense = pygltflib.GLTF2.load_from_bytes(to_glb(avatar, sparse=False))
    assert all(a.sparse is None and a.bufferView is not None for a in dense.accessors)
    jaw = avatar.morph_names.index("jawOpen")
    for p_sparse, p_dense in zip(gltf.meshes[0].primitives, dense.meshes[0].primitives, strict=True):
        a = read_accessor(gltf, gltf.binary_blob(), p_sparse.targets[jaw]["POSITION"])
        b = read_accessor(dense, dense.binary_blob(), p_dense.targets[jaw]["POSITION"])
        np.testing.assert_allclose(a, b, atol=1e-6, rtol=0)


# -- Khronos glTF validator and three.js (node) ---------------------------------------------------------------


def _with_face_normal_map(avatar: AvatarMesh) -> AvatarMesh:
    """`avatar` with a bumpy tangent-space normal map on M_Face (as a wrinkled expression bakes it)."""
    rng = np.random.default_rng(3)
    slopes = rng.normal(0.0, 0.3, (TEXTURE_SIZE, TEXTURE_SIZE, 2))
    normal = np.concatenate([-slopes, np.ones((TEXTURE_SIZE, TEXTURE_SIZE, 1))], -1)
    normal /= np.linalg.norm(normal, axis=-1, keepdims=True)
    image = ((normal + 1.0) * 127.5 + 0.5).astype(np.uint8)
    materials = tuple(m.with_normal_texture(image) if m.name == "M_Face" else m for m in avatar.materials)
    return dataclasses.replace(avatar, materials=materials)


@pytest.mark.parametrize("variant", ["default", "helpers_rgba_dense", "face_normal_map"])
def test_khronos_validator_reports_no_errors(gltf_validator, model, glb, avatar, tmp_path, variant):
    if variant == "default":
        data = glb
    elif variant == "face_normal_map":
        data = to_glb(_with_face_normal_map(avatar))
    else:  # the Unreal helpers kept (BLEND materials), RGBA eyelashes (MASK), no sparse accessors
        full = avatar_mesh_from_ict(model, textures_per_tile=_textures(rgba_tile=6), drop_materials=())
        assert {m.alpha_mode for m in full.materials} == {"OPAQUE", "BLEND", "MASK"}
        data = to_glb(full, sparse=False)
    report = validate_gltf(gltf_validator, data, tmp_path)
    issues = report["issues"]
    problems = [m for m in issues["messages"] if m["severity"] <= 1]
    assert issues["numErrors"] == 0 and issues["numWarnings"] == 0, problems[:10]
    document = glb_json(data)
    info = report["info"]
    assert info["hasMorphTargets"] and info["hasTextures"] and info["hasDefaultScene"]
    assert info["drawCallCount"] == len(document["meshes"][0]["primitives"])


def test_glb_normal_map_has_unit_tangents_with_handedness(avatar):
    data = to_glb(_with_face_normal_map(avatar))
    gltf = pygltflib.GLTF2.load_from_bytes(data)
    blob = gltf.binary_blob()
    face = [m.name for m in gltf.materials].index("M_Face")
    assert gltf.materials[face].normalTexture is not None
    for primitive in gltf.meshes[0].primitives:
        has_tangents = primitive.attributes.TANGENT is not None
        assert has_tangents == (primitive.material == face)
        if has_tangents:
            tangents = read_accessor(gltf, blob, primitive.attributes.TANGENT)
            normals = read_accessor(gltf, blob, primitive.attributes.NORMAL)
            assert np.allclose(np.linalg.norm(tangents[:, :3], axis=1), 1.0, atol=1e-5)
            assert set(np.unique(tangents[:, 3])) <= {-1.0, 1.0}
            assert np.abs((tangents[:, :3] * normals).sum(1)).max() < 1e-4
            # ICT's face UVs: +u runs to the subject's left (+x) on the front of the face, +v up (right-handed)
            assert (tangents[:, 3] == 1.0).mean() > 0.95


def test_khronos_validator_catches_a_broken_file(gltf_validator, glb, tmp_path):
    """The check can fail: a POSITION max that lies about the data is an error."""
    json_length = struct.unpack_from("<I", glb, 12)[0]
    document = glb_json(glb)
    document["accessors"][document["meshes"][0]["primitives"][0]["attributes"]["POSITION"]]["max"][0] += 1.0
    text = json.dumps(document, separators=(",", ":")).encode()
    text += b" " * (-len(text) % 4)
    binary = glb[20 + json_length :]
    header = struct.pack("<III", 0x46546C67, 2, 20 + len(text) + len(binary))
    broken = header + struct.pack("<II", len(text), 0x4E4F534A) + text + binary
    report = validate_gltf(gltf_validator, broken, tmp_path)
    assert report["issues"]["numErrors"] > 0


def test_glb_loads_in_three_js_with_named_morph_targets(node_packages, avatar, gltf, glb, tmp_path):
    loaded = load_in_three(node_packages, glb, tmp_path, "avatar.glb")
    assert loaded["warnings"] == []
    blob = gltf.binary_blob()
    primitives = gltf.meshes[0].primitives
    assert [m["material"] for m in loaded["meshes"]] == [m.name for m in avatar.materials]
    jaw = avatar.morph_names.index("jawOpen")
    for three_mesh, primitive in zip(loaded["meshes"], primitives, strict=True):
        dictionary = three_mesh["morphTargetDictionary"]
        assert sorted(dictionary, key=dictionary.get) == list(avatar.morph_names)
        assert all(dictionary[name] == k for k, name in enumerate(ARKIT_NAMES)), "ARKit names first, in order"
        np.testing.assert_allclose(three_mesh["morphTargetInfluences"], avatar.morph_weights, atol=1e-7)
        assert three_mesh["hasNormal"] and three_mesh["hasUv"] and three_mesh["morphRelative"]
        position = read_accessor(gltf, blob, primitive.attributes.POSITION)
        np.testing.assert_array_equal(np.float32(three_mesh["position"]).reshape(-1, 3), position)
        # three.js decodes the sparse / bufferView-less accessors to the same deltas as our reader
        jaw_delta = read_accessor(gltf, blob, primitive.targets[jaw]["POSITION"])
        np.testing.assert_array_equal(np.float32(three_mesh["jawOpen"]).reshape(-1, 3), jaw_delta)
        material = avatar.materials[[m.name for m in avatar.materials].index(three_mesh["material"])]
        assert (three_mesh["texture"] is not None) == (material.texture is not None)
    assert max(np.abs(m["jawOpen"]).max() for m in loaded["meshes"]) > 0.005


def test_glb_with_a_face_normal_map_loads_in_three_js(node_packages, avatar, tmp_path):
    loaded = load_in_three(node_packages, to_glb(_with_face_normal_map(avatar)), tmp_path, "avatar.glb")
    assert loaded["warnings"] == []
    assert [m["material"] for m in loaded["meshes"]] == [m.name for m in avatar.materials]


# -- OBJ ------------------------------------------------------------------------------------------


def test_obj_files_reference_each_other(avatar):
    files = to_obj(avatar, "head")
    obj, mtl = files["head.obj"].decode(), files["head.mtl"].decode()
    assert "mtllib head.mtl" in obj and "morph" in obj.splitlines()[0]
    declared = {line.split()[1] for line in mtl.splitlines() if line.startswith("newmtl ")}
    used = {line.split()[1] for line in obj.splitlines() if line.startswith("usemtl ")}
    assert used == declared == {m.name for m in avatar.materials}
    maps = {line.split()[1] for line in mtl.splitlines() if line.startswith("map_Kd ")}
    assert maps and maps == set(files) - {"head.obj", "head.mtl"}
    for name in maps:
        assert Image.open(io.BytesIO(files[name])).size == (TEXTURE_SIZE, TEXTURE_SIZE)


def test_a_roughness_map_is_the_roughness_in_glb_and_obj(avatar):
    """A material's roughness map: glTF's metallicRoughnessTexture (factor 1, so the map is the roughness; a grey
    image whose green channel holds it) and OBJ's map_Pr (with Pr 1 for readers that multiply)."""
    rough = np.full((8, 8), 153, np.uint8)
    rough[:4] = 255
    materials = tuple(dataclasses.replace(m, roughness_texture=rough) if m.name == "M_Face" else m
                      for m in avatar.materials)  # fmt: skip
    mesh = dataclasses.replace(avatar, materials=materials)
    document = glb_json(to_glb(mesh))
    face = next(m for m in document["materials"] if m["name"] == "M_Face")["pbrMetallicRoughness"]
    assert face["roughnessFactor"] == 1.0 and face["metallicFactor"] == 0.0
    image = document["images"][document["textures"][face["metallicRoughnessTexture"]["index"]]["source"]]
    assert image["mimeType"] == "image/png"
    others = [m["pbrMetallicRoughness"] for m in document["materials"] if m["name"] != "M_Face"]
    assert others and all("metallicRoughnessTexture" not in m for m in others)
    files = to_obj(mesh, "head")
    entry = files["head.mtl"].decode().split("newmtl M_Face\n")[1].split("newmtl")[0]
    assert "map_Pr head_M_Face_roughness.png" in entry and "Pr 1.0000" in entry
    green = np.asarray(Image.open(io.BytesIO(files["head_M_Face_roughness.png"])).convert("RGB"))[..., 1]
    assert np.array_equal(green, rough)


def test_obj_round_trip_with_trimesh(avatar, tmp_path):
    write(avatar, tmp_path, formats=("obj",), stem="head")
    scene = trimesh.load(tmp_path / "head.obj", force="scene")
    geometries = list(scene.geometry.values())
    assert sum(len(g.faces) for g in geometries) == len(avatar.faces)
    merged = trimesh.util.concatenate(geometries)
    merged.merge_vertices(merge_tex=True, merge_norm=True)
    used = np.unique(avatar.faces)
    expected = np.unique(np.round(avatar.verts[used].astype(np.float64) * 0.01, 6), axis=0)
    assert len(merged.vertices) == len(expected)  # coincident ICT vertices (eyelid/lash seams) merge too
    _, distance = nearest(merged.vertices, expected)
    assert distance.max() < 2e-6, "the OBJ holds the current pose, in metres"
    textured = [g for g in geometries if getattr(g.visual, "uv", None) is not None and g.visual.material.image]
    assert len(textured) == 5 and all(g.visual.material.image.size == (TEXTURE_SIZE, TEXTURE_SIZE) for g in textured)


# -- registry and atomic writes ---------------------------------------------------------------------


def test_write_is_atomic_and_matches_export(avatar, tmp_path):
    folder = tmp_path / "out" / "nested"
    paths = write(avatar, folder, stem="avatar")
    names = sorted(p.name for p in paths)
    assert names == sorted(os.listdir(folder)), "no temporary files left behind"
    assert "avatar.glb" in names and "avatar.obj" in names and "avatar.mtl" in names
    assert (folder / "avatar.obj").read_bytes() == export(avatar, "obj")["avatar.obj"]
    assert (folder / "avatar.glb").read_bytes()[:4] == b"glTF"
    with pytest.raises(UsageError):
        write(avatar, tmp_path / "bad", formats=("glb", "fbx"))  # type: ignore[arg-type]
    assert not (tmp_path / "bad").exists(), "nothing written when a format is unknown"
