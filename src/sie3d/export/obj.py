"""Wavefront OBJ + MTL + PNG textures.

OBJ has no morph targets: the file holds the current pose (``AvatarMesh.verts``, expression included)
only; use the GLB for animation. Coordinates are written in metres like the GLB (OBJ has no unit field
and Blender, Unity and three.js read one unit as one metre), unless ``units="cm"`` (ICT's own files).
Only vertices and UVs used by a triangle are written, so dropped helper meshes leave no loose points.
"""

from __future__ import annotations

import logging
from typing import Literal

import numpy as np

from sie3d.export.mesh import AvatarMesh, Material, vertex_normals

log = logging.getLogger(__name__)

_SCALE = {"m": 0.01, "cm": 1.0}


def _rows(fmt: str, values: np.ndarray) -> bytes:
    """One line per row of `values` (N, C), formatted with `fmt` (C fields), as ``np.savetxt`` writes it
    (but one formatting call for the whole array, several times faster)."""
    if len(values) == 0:
        return b""
    return ((fmt + "\n") * len(values) % tuple(np.asarray(values).ravel().tolist())).encode()


def _mtl_entry(material: Material, texture_file: str | None, roughness_file: str | None = None) -> str:
    r, g, b, alpha = material.base_color
    shininess = (1.0 - material.roughness) ** 2 * 1000.0  # a rough Blinn-Phong stand-in for roughness
    lines = [
        f"newmtl {material.name}",
        "Ka 0.000 0.000 0.000",
        f"Kd {r:.4f} {g:.4f} {b:.4f}",
        "Ks 0.040 0.040 0.040",  # dielectric F0
        f"Ns {shininess:.1f}",
        f"d {alpha:.4f}",
        "illum 2",
        # PBR extension read by Blender's importer; readers without it skip unknown keys. With a roughness map the
        # map is the roughness (some readers multiply Pr by map_Pr, as glTF does its factor by its texture).
        f"Pr {1.0 if roughness_file is not None else material.roughness:.4f}",
        f"Pm {material.metallic:.4f}",
    ]
    if texture_file is not None:
        # Kd multiplies map_Kd in most readers: keep the texture's own colours
        lines[2] = "Kd 1.0000 1.0000 1.0000"
        lines.append(f"map_Kd {texture_file}")
        if material.texture is not None and material.texture.shape[2] == 4:
            lines.append(f"map_d {texture_file}")
    if roughness_file is not None:
        lines.append(f"map_Pr {roughness_file}")  # the PBR extension's roughness map
    return "\n".join(lines) + "\n"


def to_obj(mesh: AvatarMesh, stem: str, *, units: Literal["m", "cm"] = "m") -> dict[str, bytes]:
    """{``stem.obj``, ``stem.mtl``, ``stem_<material>.png`` ...} for `mesh` in its current pose."""
    if units not in _SCALE:
        raise ValueError(f"units must be 'm' or 'cm', not {units!r}")
    used_v, faces_v = np.unique(mesh.faces, return_inverse=True)
    used_t, faces_t = np.unique(mesh.uv_faces, return_inverse=True)
    faces_v = faces_v.reshape(-1, 3) + 1  # OBJ indices are 1-based
    faces_t = faces_t.reshape(-1, 3) + 1
    normals = vertex_normals(mesh.verts, mesh.faces)[used_v]
    positions = mesh.verts[used_v].astype(np.float64) * _SCALE[units]

    files: dict[str, bytes] = {}
    texture_file_of_array: dict[int, str] = {}  # a texture shared by materials is written once
    mtl = [f"# sie3d materials for {stem}.obj\n"]
    obj = [
        f"# sie3d avatar {mesh.name}: current pose only (OBJ has no morph targets; the GLB has them)\n".encode(),
        f"# units: {'metres' if units == 'm' else 'centimetres'}, +y up, +z forward\n".encode(),
        f"mtllib {stem}.mtl\no {mesh.name}\n".encode(),
        _rows("v %.6f %.6f %.6f" if units == "m" else "v %.5f %.5f %.5f", positions),
        _rows("vt %.6f %.6f", mesh.uvs[used_t]),
        _rows("vn %.5f %.5f %.5f", normals),
    ]

    def image_file(material: Material, array: np.ndarray, name: str, encoded: str) -> str:
        """The file of one of `material`'s images, `array` (`encoded`: its PNG property), added once."""
        if id(array) not in texture_file_of_array:
            texture_file_of_array[id(array)] = f"{stem}_{name}.png"
            files[texture_file_of_array[id(array)]] = getattr(material, encoded)
        return texture_file_of_array[id(array)]

    for m, material in enumerate(mesh.materials):
        tris = np.flatnonzero(mesh.face_material == m)
        if len(tris) == 0:
            continue
        texture_file = None if material.texture is None else \
            image_file(material, material.texture, material.name, "png")  # fmt: skip
        roughness_file = None if material.roughness_texture is None else \
            image_file(material, material.roughness_texture, f"{material.name}_roughness", "roughness_png")  # fmt: skip
        mtl.append(_mtl_entry(material, texture_file, roughness_file))
        corners = np.stack([faces_v[tris], faces_t[tris], faces_v[tris]], axis=2).reshape(len(tris), 9)
        obj.append(f"g {material.name}\nusemtl {material.name}\n".encode())
        obj.append(_rows("f %d/%d/%d %d/%d/%d %d/%d/%d", corners))
    files[f"{stem}.obj"] = b"".join(obj)
    files[f"{stem}.mtl"] = "\n".join(mtl).encode()
    log.debug("obj: %d vertices, %d uvs, %d triangles", len(used_v), len(used_t), len(mesh.faces))
    return files
