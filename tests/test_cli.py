"""The CLI as a user meets it: outputs on success; one message, a distinct exit code and nothing
written on failure."""

from __future__ import annotations

import json

from PIL import Image

from sie3d.errors import AssetError, BatchError, NoFaceError, PersonError, PhotoError, UsageError

from conftest import run_cli


def test_inspect_writes_observation_and_annotated_image(tmp_path, faces):
    out = tmp_path / "out"
    result = run_cli("inspect", str(faces / "london_003_happy.jpg"), "-o", str(out))
    assert result.returncode == 0, result.stderr
    assert "1 face(s)" in result.stdout and "mouthSmile" in result.stdout
    report = json.loads((out / "observation.json").read_text())
    assert report["faces_found"] == 1 and len(report["chosen"]["landmarks_px"]) == 478
    assert len(report["chosen"]["blendshapes"]) == 52
    identity = report["chosen"]["identity_sface"]
    assert len(identity) == 128 and abs(sum(v * v for v in identity) - 1) < 1e-3
    assert Image.open(out / "annotated.png").size == (768, 768)
    assert sorted(p.name for p in out.iterdir()) == ["annotated.png", "observation.json"]


def test_inspect_json_to_stdout(tmp_path, faces):
    result = run_cli("inspect", str(faces / "max_group.jpeg"), "--json", "--face", "1", "-o", str(tmp_path / "o"))
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["chosen"]["index"] == 1 and report["faces_found"] == len(report["faces"]) >= 2


def _assert_clean_failure(result, code: int, *phrases: str) -> None:
    assert result.returncode == code, (result.returncode, result.stderr)
    assert "Traceback" not in result.stderr and result.stderr.startswith("sie3d: error:")
    for phrase in phrases:
        assert phrase in result.stderr


def test_bad_inputs_exit_codes_and_no_partial_output(tmp_path, faces):
    out = tmp_path / "out"
    (tmp_path / "notes.jpg").write_text("not a photo")
    Image.open(faces / "london_001_neutral.jpg").crop((0, 0, 200, 200)).save(tmp_path / "wall.png")
    cases = [
        (("inspect", str(tmp_path / "notes.jpg")), PhotoError.exit_code, ["not an image", "fix:"]),
        (("inspect", str(tmp_path / "absent.jpg")), PhotoError.exit_code, ["no such file"]),
        (("inspect", str(tmp_path / "wall.png")), NoFaceError.exit_code, ["no face found", "fix:"]),
        (("inspect", str(faces / "london_001_neutral.jpg"), "--face", "3"), UsageError.exit_code, ["--face 3"]),
    ]
    for args, code, phrases in cases:
        _assert_clean_failure(run_cli(*args, "-o", str(out)), code, *phrases)
        assert not out.exists() and not [p for p in tmp_path.iterdir() if p.name.startswith(".out")]


def test_missing_model_offline_is_asset_error(tmp_path, faces):
    result = run_cli("inspect", str(faces / "london_001_neutral.jpg"), "-o", str(tmp_path / "o"),
                     env={"SIE3D_CACHE": str(tmp_path / "empty-cache"), "SIE3D_OFFLINE": "1"})
    _assert_clean_failure(result, AssetError.exit_code, "face_landmarker", "sie3d assets fetch")
    assert not (tmp_path / "o").exists()


def test_distinct_exit_codes():
    codes = [UsageError.exit_code, AssetError.exit_code, PhotoError.exit_code, NoFaceError.exit_code,
             PersonError.exit_code, BatchError.exit_code]
    assert len(set(codes)) == len(codes) and 0 not in codes and 1 not in codes
