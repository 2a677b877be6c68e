"""Avatar export: a registry of file formats (a new format is one entry in ``EXPORTERS``).

Every exporter takes an :class:`AvatarMesh` and a file stem and returns ``{file name: bytes}``, so
exporting is pure (easy to test, to zip, to serve over HTTP) and only :func:`write` touches the disk.
"""

from __future__ import annotations

import logging
import os
import tempfile
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Literal

from sie3d.errors import UsageError
from sie3d.export.glb import to_glb
from sie3d.export.mesh import AvatarMesh, Material, avatar_mesh_from_ict, vertex_normals
from sie3d.export.obj import to_obj
from sie3d.export.splats import ply_files

log = logging.getLogger(__name__)

Format = Literal["glb", "obj", "ply"]
Exporter = Callable[[AvatarMesh, str], dict[str, bytes]]


def _glb_files(mesh: AvatarMesh, stem: str) -> dict[str, bytes]:
    return {f"{stem}.glb": to_glb(mesh)}


EXPORTERS: dict[str, Exporter] = {
    "glb": _glb_files,
    "obj": to_obj,
    "ply": ply_files,  # 3D Gaussian splats, INRIA layout (`sie3d.export.splats`)
}


def _check_stem(stem: str) -> None:
    if not stem or stem in (".", "..") or any(c in stem for c in '/\\:*?"<>|') or stem.strip() != stem:
        raise UsageError(
            f"invalid output file stem {stem!r}",
            'use a plain file name without folders, spaces at the ends or any of / \\ : * ? " < > |',
        )


def export(mesh: AvatarMesh, fmt: Format, stem: str = "avatar") -> dict[str, bytes]:
    """{file name: bytes} of `mesh` in format `fmt` (one of ``EXPORTERS``)."""
    _check_stem(stem)
    if fmt not in EXPORTERS:
        raise UsageError(f"unknown export format {fmt!r}", f"choose one of {', '.join(sorted(EXPORTERS))}")
    return EXPORTERS[fmt](mesh, stem)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _write_atomic(path: Path, data: bytes) -> None:
    """Write via a temporary file in the same folder and os.replace, so readers never see half a file."""
    handle, temp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(handle, "wb") as stream:
            stream.write(data)
        os.chmod(temp, 0o666 & ~_umask())  # mkstemp makes 0600 files; outputs are ordinary user files
        os.replace(temp, path)
    except BaseException:
        Path(temp).unlink(missing_ok=True)
        raise


def write(
    mesh: AvatarMesh, folder: str | os.PathLike[str], formats: Iterable[Format] = ("glb", "obj"), stem: str = "avatar"
) -> list[Path]:
    """Export `mesh` in every format into `folder` (created if needed); returns the written paths.

    Everything is encoded before the first file is written, so an unknown format or a bad mesh leaves
    the folder untouched.
    """
    files: dict[str, bytes] = {}
    for fmt in dict.fromkeys(formats):
        for name, data in export(mesh, fmt, stem).items():
            if name in files and files[name] != data:
                raise ValueError(f"two export formats both produce {name} with different content")
            files[name] = data
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for name, data in files.items():
        path = folder / name
        _write_atomic(path, data)
        paths.append(path)
        log.debug("wrote %s (%.2f MB)", path, len(data) / 1e6)
    return paths


__all__ = [
    "EXPORTERS",
    "AvatarMesh",
    "Exporter",
    "Format",
    "Material",
    "avatar_mesh_from_ict",
    "export",
    "to_glb",
    "to_obj",
    "vertex_normals",
    "write",
]
