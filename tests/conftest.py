"""Shared fixtures: the real photos in ../shared/faces and one MediaPipe observer per session."""

from __future__ import annotations

import csv
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def faces_dir() -> Path:
    """The shared photo set: $SIE3D_FACES, else ../shared/faces beside the checkout."""
    path = Path(os.environ.get("SIE3D_FACES") or REPO.parent / "shared" / "faces")
    if not (path / "manifest.csv").is_file():
        raise FileNotFoundError(f"shared photos not found at {path}; set SIE3D_FACES to the faces folder")
    return path


def london_people() -> list[str]:
    with open(faces_dir() / "manifest.csv", newline="") as stream:
        rows = list(csv.DictReader(stream))
    return sorted({r["person_id"] for r in rows if r["filename"].startswith("london_")})


@pytest.fixture(scope="session")
def faces() -> Path:
    return faces_dir()


@pytest.fixture(scope="session")
def observer():
    from sie3d.face.landmarker import FaceObserver

    with FaceObserver() as obs:
        yield obs


@pytest.fixture(scope="session")
def london_observations(observer) -> dict[str, object]:
    """{"london_001_neutral": FaceObservation, ...} for all 48 studio photos, observed once."""
    from sie3d.photo import load_photo

    result = {}
    for person in london_people():
        for expression in ("neutral", "happy"):
            name = f"{person}_{expression}"
            result[name] = observer.observe(load_photo(faces_dir() / f"{name}.jpg"))[0]
    return result


def run_cli(*args: str, env: dict | None = None, cwd: Path | None = None) -> subprocess.CompletedProcess:
    """Run the installed `sie3d` entry point in a fresh process, as a user would."""
    full_env = {**os.environ, **(env or {})}
    return subprocess.run(
        [sys.executable, "-m", "sie3d.cli", *args], capture_output=True, text=True, env=full_env, cwd=cwd
    )


@pytest.fixture(scope="session")
def text_encoder():
    """The real all-MiniLM-L6-v2 text encoder, loaded once per session (about 5 s cold)."""
    from sie3d.semantics.encoder import TextEncoder

    return TextEncoder()
