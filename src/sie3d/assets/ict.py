"""ICT-FaceKit head model: locate the upstream files, convert them once into sie3d's compact cache.

ICT-FaceKit (USC ICT, MIT licence) is not on PyPI. Its ``FaceXModel/`` folder holds ~160 OBJ files
(neutral mesh, 100 identity modes, 53 ARKit-named expressions) of 26,719 vertices each -- 390 MB of
text. We read them once and store one ``.npz`` (~35 MB): float32 neutral, float16 deltas, triangles,
UVs, per-polygon materials, landmark ids. Sources, in order of preference:

1. ``$SIE3D_ICT_FACEKIT``: a folder (the repository or its ``FaceXModel/``), a ``.tar.xz`` or a ``.zip``;
2. ``../shared/assets/ict-facekit.tar.xz`` beside the checkout (an offline mirror);
3. the upstream GitHub archive at a pinned commit, checked file by file against known digests.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import tarfile
import tempfile
import urllib.request
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from sie3d.assets.registry import cache_dir
from sie3d.errors import AssetError

log = logging.getLogger(__name__)

ICT_COMMIT = "da5f95a607f5e6b37755b38d3385d7f2853732e5"
ICT_UPSTREAM_ZIP = f"https://github.com/ICT-VGL/ICT-FaceKit/archive/{ICT_COMMIT}.zip"
# sha256 over the sorted "name sha256\n" lines of every FaceXModel file we read (computed from the
# mirror at ICT_COMMIT). Any source -- folder, tarball or zip -- must reproduce it.
ICT_CONTENT_DIGEST = "752ec7b7c7886df8fbd19f32d95831f93669d0f2f99269f91a633121279baa65"
CACHE_FORMAT_VERSION = 1
CONVERT_COMMAND = "sie3d assets fetch ict"

N_VERTICES = 26719
N_POLYGONS = 26384
N_IDENTITY = 100

# Geometry regions from ICT-FaceKit's README: name -> (first vertex, last vertex + 1, first polygon,
# last polygon + 1). Polygon ranges index the original quads/triangles, before triangulation.
REGIONS: dict[str, tuple[int, int, int, int]] = {
    "face": (0, 9409, 0, 9230),
    "head_and_neck": (9409, 11248, 9230, 11144),
    "mouth_socket": (11248, 13294, 11144, 13226),
    "eye_socket_left": (13294, 13678, 13226, 13630),
    "eye_socket_right": (13678, 14062, 13630, 14034),
    "gums_and_tongue": (14062, 17039, 14034, 17006),
    "teeth": (17039, 21451, 17006, 21496),
    "eyeball_left": (21451, 23021, 21496, 23094),
    "eyeball_right": (23021, 24591, 23094, 24692),
    "lacrimal_fluid_left": (24591, 24795, 24692, 24855),
    "lacrimal_fluid_right": (24795, 24999, 24855, 25018),
    "eye_blend_left": (24999, 25023, 25018, 25033),
    "eye_blend_right": (25023, 25047, 25033, 25048),
    "eye_occlusion_left": (25047, 25199, 25048, 25176),
    "eye_occlusion_right": (25199, 25351, 25176, 25304),
    "eyelashes_left": (25351, 26035, 25304, 25844),
    "eyelashes_right": (26035, 26719, 25844, 26384),
}
NARROW_FACE_VERTICES = 6706  # vertices [0, 6706) form the "narrow face area"

# Multi-PIE 68-point landmark vertex ids (ICT-FaceKit README), 0-indexed.
LANDMARKS_68 = (
    1225, 1888, 1052, 367, 1719, 1722, 2199, 1447, 966, 3661, 4390, 3927, 3924, 2608, 3272, 4088, 3443,
    268, 493, 1914, 2044, 1401, 3615, 4240, 4114, 2734, 2509, 978, 4527, 4942, 4857, 1140, 2075, 1147,
    4269, 3360, 1507, 1542, 1537, 1528, 1518, 1511, 3742, 3751, 3756, 3721, 3725, 3732, 5708, 5695,
    2081, 0, 4275, 6200, 6213, 6346, 6461, 5518, 5957, 5841, 5702, 5711, 5533, 6216, 6207, 6470, 5517,
    5966,
)  # fmt: skip


@dataclass(frozen=True)
class IctArrays:
    """The converted model as plain arrays (what the cache file holds)."""

    neutral: np.ndarray  # (V, 3) float32, centimetres, +y up, +z forward (out of the face)
    identity_basis: np.ndarray  # (100, V, 3) float16 deltas from neutral
    expression_basis: np.ndarray  # (53, V, 3) float16 deltas from neutral
    expression_names: tuple[str, ...]  # ARKit-style names with _L/_R, ICT order
    faces: np.ndarray  # (F, 3) int32 triangles (quads split along their first diagonal)
    uvs: np.ndarray  # (T, 2) float32, UDIM: integer part of u is the texture tile
    uv_faces: np.ndarray  # (F, 3) int32 indices into uvs per triangle corner
    face_polygon: np.ndarray  # (F,) int32 source polygon of each triangle
    polygon_material: np.ndarray  # (P,) int16 index into material_names
    material_names: tuple[str, ...]
    landmarks_68: np.ndarray  # (68,) int32 vertex ids


# -- locating a source ----------------------------------------------------------------------------


def _shared_mirror_candidates() -> Iterator[Path]:
    """``../shared/assets/ict-facekit.tar.xz`` beside the working directory or the source checkout."""
    roots = [Path.cwd(), *Path.cwd().parents[:2], Path(__file__).resolve().parents[3]]
    for root in roots:
        yield root.parent / "shared" / "assets" / "ict-facekit.tar.xz"


def locate_source() -> Path | None:
    env = os.environ.get("SIE3D_ICT_FACEKIT")
    if env:
        path = Path(env).expanduser()
        if not path.exists():
            raise AssetError(
                f"SIE3D_ICT_FACEKIT points to {path}, which does not exist",
                "set it to the ICT-FaceKit folder, its .tar.xz mirror or the upstream .zip",
            )
        return path
    return next((p for p in _shared_mirror_candidates() if p.is_file()), None)


# -- reading the files ----------------------------------------------------------------------------


def _iter_model_files(source: Path) -> Iterator[tuple[str, bytes]]:
    """Yield (file name, bytes) of every file inside a ``FaceXModel/`` folder of `source`."""
    if source.is_dir():
        folder = source if (source / "generic_neutral_mesh.obj").exists() else source / "FaceXModel"
        for path in sorted(folder.glob("*")):
            if path.is_file():
                yield path.name, path.read_bytes()
    elif source.name.endswith(".zip"):
        with zipfile.ZipFile(source) as archive:
            for name in sorted(archive.namelist()):
                if "/FaceXModel/" in f"/{name}" and not name.endswith("/"):
                    yield name.rsplit("/", 1)[-1], archive.read(name)
    else:
        with tarfile.open(source) as archive:
            for member in archive:
                if member.isfile() and "/FaceXModel/" in f"/{member.name}":
                    yield member.name.rsplit("/", 1)[-1], archive.extractfile(member).read()
    return


def _parse_obj_vertices(data: bytes) -> np.ndarray:
    rows = [line[2:] for line in data.split(b"\n") if line.startswith(b"v ")]
    return np.array(b" ".join(rows).split(), dtype=np.float32).reshape(-1, 3)


def _parse_obj_topology(data: bytes) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray, list]:
    """Triangles, UV triangles, source polygon per triangle, material per polygon, UVs, materials."""
    uvs, tris, uv_tris, tri_polygon, polygon_material, materials = [], [], [], [], [], []
    current = -1
    for line in data.split(b"\n"):
        if line.startswith(b"vt "):
            uvs.append(line[3:].split()[:2])
        elif line.startswith(b"usemtl "):
            materials.append(line[7:].strip().decode())
            current = len(materials) - 1
        elif line.startswith(b"f "):
            corners = [c.split(b"/") for c in line[2:].split()]
            v = [int(c[0]) - 1 for c in corners]
            t = [int(c[1]) - 1 for c in corners]
            polygon = len(polygon_material)
            polygon_material.append(current)
            for k in range(1, len(v) - 1):  # fan triangulation; ICT polygons are convex quads/tris
                tris.append((v[0], v[k], v[k + 1]))
                uv_tris.append((t[0], t[k], t[k + 1]))
                tri_polygon.append(polygon)
    return (
        np.asarray(tris, np.int32),
        np.asarray(uv_tris, np.int32),
        np.asarray(tri_polygon, np.int32),
        np.asarray(polygon_material, np.int16),
        np.asarray(uvs, np.float32),
        materials,
    )


def read_source(source: Path) -> IctArrays:
    """Parse the upstream OBJ/JSON files from `source` and check their content digest."""
    files = dict(_iter_model_files(source))
    if "generic_neutral_mesh.obj" not in files or "vertex_indices.json" not in files:
        raise AssetError(
            f"{source} does not contain ICT-FaceKit's FaceXModel/ files",
            "point SIE3D_ICT_FACEKIT to the repository folder, the .tar.xz mirror or the upstream zip",
        )
    used = {n: b for n, b in files.items() if n.endswith((".obj", ".json"))}
    digest = hashlib.sha256(
        "".join(f"{n} {hashlib.sha256(b).hexdigest()}\n" for n, b in sorted(used.items())).encode()
    ).hexdigest()
    if digest != ICT_CONTENT_DIGEST:
        raise AssetError(
            f"the ICT-FaceKit files in {source} differ from the pinned release (content digest {digest[:12]}…)",
            f"use the files of commit {ICT_COMMIT} (the upstream archive {ICT_UPSTREAM_ZIP})",
        )
    names = tuple(json.loads(used["vertex_indices.json"])["expressions"])
    neutral = _parse_obj_vertices(used["generic_neutral_mesh.obj"])
    faces, uv_faces, face_polygon, polygon_material, uvs, materials = _parse_obj_topology(
        used["generic_neutral_mesh.obj"]
    )
    identity = np.stack([_parse_obj_vertices(used[f"identity{i:03d}.obj"]) for i in range(N_IDENTITY)])
    expression = np.stack([_parse_obj_vertices(used[f"{n}.obj"]) for n in names])
    return IctArrays(
        neutral=neutral,
        identity_basis=(identity - neutral).astype(np.float16),
        expression_basis=(expression - neutral).astype(np.float16),
        expression_names=names,
        faces=faces,
        uvs=uvs,
        uv_faces=uv_faces,
        face_polygon=face_polygon,
        polygon_material=polygon_material,
        material_names=tuple(materials),
        landmarks_68=np.asarray(LANDMARKS_68, np.int32),
    )


# -- the cache ------------------------------------------------------------------------------------


def cache_path() -> Path:
    return cache_dir() / "ict_facekit" / f"ict_facekit_v{CACHE_FORMAT_VERSION}.npz"


def save(arrays: IctArrays, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.name + ".partial.npz")
    fields = {k: np.asarray(v) for k, v in arrays.__dict__.items()}
    np.savez(partial, **fields, content_digest=np.asarray(ICT_CONTENT_DIGEST))
    os.replace(partial, path)


def load(path: Path | None = None) -> IctArrays:
    """Load the converted model, converting it first when the cache is empty."""
    path = path or cache_path()
    if not path.is_file():
        convert()
    try:
        with np.load(path) as data:
            if str(data["content_digest"]) != ICT_CONTENT_DIGEST:
                raise ValueError("stale cache")
            fields = {k: data[k] for k in IctArrays.__dataclass_fields__}
    except Exception as exc:  # noqa: BLE001 -- any unreadable cache gets the same remedy
        raise AssetError(
            f"the converted ICT-FaceKit cache {path} is unreadable ({exc})",
            f"delete it and run `{CONVERT_COMMAND}`",
        ) from None
    fields["expression_names"] = tuple(str(n) for n in fields["expression_names"])
    fields["material_names"] = tuple(str(n) for n in fields["material_names"])
    return IctArrays(**fields)


def _download_upstream(into: Path) -> Path:
    target = into / "ict-facekit.zip"
    log.info("downloading ICT-FaceKit from %s", ICT_UPSTREAM_ZIP)
    try:
        with urllib.request.urlopen(ICT_UPSTREAM_ZIP, timeout=60) as response:
            target.write_bytes(response.read())
    except OSError as exc:
        raise AssetError(
            f"ICT-FaceKit head model not found locally and the download failed ({exc})",
            f"download {ICT_UPSTREAM_ZIP} yourself and set SIE3D_ICT_FACEKIT=/path/to/it.zip "
            f"(or a folder / .tar.xz), then run `{CONVERT_COMMAND}`",
        ) from None
    return target


def convert(source: Path | None = None, *, force: bool = False) -> Path:
    """Convert ICT-FaceKit into the cache once; returns the cache file. Idempotent."""
    path = cache_path()
    if path.is_file() and not force:
        return path
    source = source or locate_source()
    with tempfile.TemporaryDirectory(prefix="sie3d-ict-") as tmp:
        if source is None:
            source = _download_upstream(Path(tmp))
        log.info("converting ICT-FaceKit from %s (once)", source)
        save(read_source(source), path)
    return path


def verify() -> tuple[str, str]:
    """(state, detail) of the converted cache: 'ok', 'missing' or 'corrupt'."""
    path = cache_path()
    if not path.is_file():
        return "missing", str(path)
    try:
        arrays = load(path)
    except AssetError as exc:
        return "corrupt", exc.message
    if arrays.neutral.shape != (N_VERTICES, 3) or arrays.identity_basis.shape[0] != N_IDENTITY:
        return "corrupt", f"unexpected shapes in {path}"
    return "ok", str(path)

