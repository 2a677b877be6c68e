"""The CLI as a user meets it: outputs on success; one message, a distinct exit code and nothing
written on failure."""

from __future__ import annotations

import json
import os
import resource
import shutil
import subprocess
import sys

import pytest
from PIL import Image

from sie3d.errors import AssetError, BatchError, NoFaceError, OutputError, PersonError, PhotoError, UsageError

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
        (("reconstruct", str(faces / "london_001_neutral.jpg"), "--light", "sun"), UsageError.exit_code,
         ["unknown light 'sun'", "studio, photo"]),
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
             PersonError.exit_code, OutputError.exit_code, BatchError.exit_code]
    assert len(set(codes)) == len(codes) and 0 not in codes and 1 not in codes


def test_output_that_is_an_existing_file_fails_before_any_work(tmp_path, faces):
    target = tmp_path / "taken.txt"
    target.write_text("mine")
    for args, out in ((("inspect", str(faces / "london_001_neutral.jpg")), target),
                      (("generate", str(faces / "london_001_neutral.jpg"), "-t", "happy"), target),
                      (("reconstruct", str(faces / "london_001_neutral.jpg")), target / "sub")):  # fmt: skip
        result = run_cli(*args, "-o", str(out))
        _assert_clean_failure(result, OutputError.exit_code, "is an existing file", "fix:")
    assert target.read_text() == "mine" and sorted(p.name for p in tmp_path.iterdir()) == ["taken.txt"]


def _small_tmpfs(folder) -> bool:
    """Mount a 2 MB tmpfs on `folder` (a real full disk); False when this user may not mount."""
    if shutil.which("mount") is None or os.geteuid() != 0:
        return False
    folder.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(folder)], capture_output=True)
    return done.returncode == 0


@pytest.mark.parametrize("limit", ["file_size_limit", "full_disk"])
def test_full_disk_or_file_size_limit_is_one_message_and_no_partial_output(tmp_path, faces, limit):
    """Real OS limits, no mocks: RLIMIT_FSIZE (`ulimit -f`: writes fail with EFBIG) or a 2 MB tmpfs (ENOSPC)."""
    disk = tmp_path / "disk"
    args = ["-q", "reconstruct", str(faces / "london_004_happy.jpg"), "--variants", "neutral", "--no-in-photo",
            "-o", str(disk / "out")]  # fmt: skip
    if limit == "full_disk":
        if not _small_tmpfs(disk):
            pytest.skip("cannot mount a small tmpfs here (needs root); the file size limit case covers it")
        try:
            result = run_cli(*args)
            left = sorted(p.name for p in disk.iterdir())
        finally:
            subprocess.run(["umount", str(disk)], check=False)
        reason = "the disk is full"
    else:
        disk.mkdir()

        def one_megabyte() -> None:
            resource.setrlimit(resource.RLIMIT_FSIZE, (1 << 20, 1 << 20))

        result = subprocess.run([sys.executable, "-m", "sie3d.cli", *args], capture_output=True, text=True,
                                preexec_fn=one_megabyte)  # fmt: skip
        left = sorted(p.name for p in disk.iterdir())
        reason = "the file size limit is reached"
    _assert_clean_failure(result, OutputError.exit_code, reason, "nothing was written", "fix:")
    assert left == [], f"partial output left behind: {left}"
