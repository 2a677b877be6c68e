"""Shared fixtures: the real photos in ../shared/faces, one set of models and one reconstructed person per session."""

from __future__ import annotations

import csv
import json
import os
import shutil
import struct
import subprocess
import sys
from pathlib import Path

import pytest

from sie3d.cli import set_process_defaults

# As `sie3d` itself runs (cli.main): idle thread pools sleep rather than spin, and numpy's arrays take no
# transparent huge pages. Set before the test modules import torch and numpy (`sie3d.cli` imports neither); on
# the shared 2-core machine spinning threads made renders several times slower.
set_process_defaults()

REPO = Path(__file__).resolve().parents[1]
JS_DIR = REPO / "tests" / "js"


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


@pytest.fixture(scope="module")
def one_torch_thread():
    """Torch on one thread for a module (``pytestmark = pytest.mark.usefixtures("one_torch_thread")``): the 2
    cores are shared, and the results checked there do not depend on the thread count."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="session")
def faces() -> Path:
    return faces_dir()


@pytest.fixture(scope="session")
def models():
    """One `sie3d.avatar.Models` per session (each model loads on first use)."""
    from sie3d.avatar import Models

    with Models.load() as loaded:
        yield loaded


@pytest.fixture(scope="session")
def observer(models):
    return models.observer


@pytest.fixture(scope="session")
def happy(models, faces):
    """The session's reconstructed person: a smiling London studio photo, 512 px texture tiles."""
    from sie3d.avatar import ReconstructConfig, reconstruct
    from sie3d.photo import load_photo

    return reconstruct(load_photo(faces / "london_004_happy.jpg"), models, ReconstructConfig(texture_size=512))


@pytest.fixture(scope="session")
def written(happy, models, tmp_path_factory) -> Path:
    """`write_outputs` of `happy` with both photo variants, 256 px previews."""
    from sie3d.avatar import OutputConfig, photo_variants, write_outputs

    out = tmp_path_factory.mktemp("avatar")
    write_outputs(happy, models, photo_variants(happy), out, OutputConfig(preview_size=256))
    return out


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


# What `write_outputs` writes for a variant of a person with hair (the default) in OBJ format with a preview
# (no GLB, no in-photo composite).
OBJ_FILES = ("avatar.obj", "avatar.mtl", "avatar_M_Face.png", "avatar_M_BackHead.png", "avatar_M_GumsTongue.png",
             "avatar_M_Teeth.png", "avatar_M_ScleraLeft.png", "avatar_M_EyeOcclusion.png", "avatar_M_EyeLashes.png",
             "avatar_M_Hair.png", "avatar_M_Face_roughness.png", "avatar_M_BackHead_roughness.png",
             "preview.png")  # fmt: skip
PERSON_FILES = ("person/person.json", "person/arrays.npz", "person/photo.png")


def files_under(folder: Path) -> set[str]:
    """Every file below `folder`, as paths relative to it."""
    return {str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file()}


def run_cli(*args: str, env: dict | None = None, cwd: Path | None = None,
            timeout: float | None = None) -> subprocess.CompletedProcess:  # fmt: skip
    """Run the installed `sie3d` entry point in a fresh process, as a user would (killed after `timeout` s)."""
    full_env = {**os.environ, **(env or {})}
    return subprocess.run(
        [sys.executable, "-m", "sie3d.cli", *args], capture_output=True, text=True, env=full_env, cwd=cwd,
        timeout=timeout,
    )


@pytest.fixture(scope="session")
def text_encoder():
    """The real all-MiniLM-L6-v2 text encoder, loaded once per session (about 5 s cold)."""
    from sie3d.semantics.encoder import TextEncoder

    return TextEncoder()



def png_bomb(path: Path, side: int = 20_000) -> Path:
    """A real, valid 1-bit PNG of side x side pixels (a few tens of KB: a decompression bomb)."""
    from sie3d.web.loadtest import png_bomb as bomb_bytes

    path.write_bytes(bomb_bytes(side))
    return path


@pytest.fixture(scope="session")
def web_root(tmp_path_factory) -> Path:
    """Where the session's `web_server` keeps its jobs."""
    return tmp_path_factory.mktemp("web-jobs")


@pytest.fixture(scope="session")
def web_server(web_root, tmp_path_factory):
    """A real `sie3d web` process (1 worker, its job folders in `web_root`), for the session."""
    from sie3d.web.loadtest import start_server

    log = tmp_path_factory.mktemp("web-log") / "server.log"
    with start_server("--workers", "1", "--root", str(web_root), log=log) as server:
        yield server


# -- Khronos glTF validator, three.js, the splat viewer and playwright (node) ------------------------------


@pytest.fixture(scope="session")
def node_packages() -> Path:
    """tests/js with its npm packages (package.json: gltf-validator, three, the splat viewer, playwright-core)
    installed; skip without node/npm."""
    if shutil.which("node") is None:
        pytest.skip("node is not on PATH: the Khronos glTF validator, three.js and the browser tests cannot run")
    names = json.loads((JS_DIR / "package.json").read_text())["dependencies"]
    if not all((JS_DIR / "node_modules" / name).is_dir() for name in names):
        npm = shutil.which("npm")
        if npm is None:
            pytest.skip("npm is not on PATH: cannot install tests/js/package.json")
        done = subprocess.run([npm, "ci", "--prefix", str(JS_DIR), "--no-audit", "--no-fund"],
                              capture_output=True, text=True, timeout=300)  # fmt: skip
        if done.returncode != 0:
            pytest.skip(f"npm could not install tests/js/package.json: {done.stderr[-500:]}")
    return JS_DIR


@pytest.fixture(scope="session")
def chromium() -> Path:
    """Debian's chromium (driven by playwright-core from tests/js); skip when it is not installed."""
    path = Path(shutil.which("chromium") or "/usr/bin/chromium")
    if not path.exists():
        pytest.skip("Debian's chromium is not installed (apt-get install chromium; .ci/run does it)")
    return path


@pytest.fixture(scope="session")
def gltf_validator(node_packages) -> Path:
    return node_packages / "validate.js"


def glb_json(data: bytes) -> dict:
    return json.loads(data[20 : 20 + struct.unpack_from("<I", data, 12)[0]])


def load_in_three(node_packages: Path, data: bytes, tmp_path: Path, name: str = "avatar.glb") -> dict:
    """What three.js's GLTFLoader makes of a GLB (tests/js/load_three.mjs, run by node): meshes, materials,
    morph targets and the loader's warnings; the process must succeed."""
    path = tmp_path / name
    path.write_bytes(data)
    done = subprocess.run(["node", str(node_packages / "load_three.mjs"), str(path)], capture_output=True, text=True,
                          timeout=120)  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    return json.loads(done.stdout)


def validate_gltf(validator: Path, data: bytes, tmp_path: Path) -> dict:
    path = tmp_path / "avatar.glb"
    path.write_bytes(data)
    done = subprocess.run(["node", str(validator), str(path)], capture_output=True, text=True, timeout=120)
    assert done.returncode in (0, 1), done.stderr
    return json.loads(done.stdout)
