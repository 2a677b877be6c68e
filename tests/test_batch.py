"""`sie3d batch` on real photos: the manifest and prompt parsers, failures recorded while the batch goes on,
resumption after a kill, and the Ray engine giving the same files as the local pool."""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from PIL import Image

from sie3d import batch
from sie3d.errors import BatchError, NoFaceError, PhotoError, UsageError

from conftest import glb_json, run_cli

FAST = ("--formats", "glb", "--no-in-photo", "--no-previews", "--texture-size", "256", "-q")


def _error(tmp_path: Path, text: str, prompts: tuple[str, ...] = ()) -> str:
    manifest = tmp_path / "manifest.csv"
    manifest.write_text(text)
    with pytest.raises(UsageError) as caught:
        batch.plan(manifest, prompts)
    return caught.value.message


def test_manifest_rows_become_items(tmp_path, faces):
    (tmp_path / "ann.jpg").write_bytes((faces / "london_001_neutral.jpg").read_bytes())
    manifest = tmp_path / "manifest.csv"
    manifest.write_text('Photo,Text,Intensity,ID,notes\nann.jpg,"a smile, wide",0.5,ann-smile,x\n\nann.jpg,,,\n')
    long = "a gleeful grin with raised eyebrows"
    items = batch.plan(manifest, ["quietly furious", long])
    assert [(i.id, i.text, i.intensity, i.source) for i in items] == [
        ("ann-smile", "a smile, wide", 0.5, f"{manifest}:2"),
        ("ann-expression", None, 1.0, f"{manifest}:4"),
        ("ann-quietly-furious", "quietly furious", 1.0, "prompt 'quietly furious'"),
        ("ann-a-gleeful-grin-with", long, 1.0, f"prompt {long!r}"),  # cut at a word's end
    ]
    assert all(i.photo == tmp_path / "ann.jpg" for i in items)
    assert [len(j.items) for j in batch.jobs_of(items)] == [4]  # one photo: one fit for all four


@pytest.mark.parametrize(("text", "phrase"), [
    ("image,text\na.jpg,happy\n", ":1: the header image,text has no 'photo' column"),
    ("photo,text,intensity\na.jpg,happy,1\nb.jpg,sad,loud\n", ":3: intensity 'loud' is not a number in [0, 1]"),
    ("photo,text,intensity\na.jpg,happy,1.5\n", ":2: intensity '1.5'"),
    ("photo,text\na.jpg,happy\n,sad\n", ":3: the photo is empty"),
    ("photo,text\na.jpg,happy,extra\n", ":2: 3 fields for 2 columns"),
    ("photo,text\na.jpg,\"ha\x07ppy\"\n", ":2: "),
    ("photo,text\na.jpg,\"   \n\"\n", None),  # a blank text is the photo's own expression: no error
    ("photo,text,id\na.jpg,happy,x\nb.jpg,sad,x\n", ":3: id 'x' is already used by"),
    ("photo,text,id\na.jpg,happy,../x\n", ":2: id '../x' is not a plain folder name"),
    ("photo,text\na.jpg,happy\na.jpg,happy\n", ":3: the same photo, text and intensity as"),
    ("photo,text\n", "lists no photos"),
])  # fmt: skip
def test_bad_manifest_rows_name_their_line(tmp_path, text, phrase):
    if phrase is None:
        (tmp_path / "manifest.csv").write_text(text)
        assert batch.plan(tmp_path / "manifest.csv")[0].text is None
        return
    assert phrase in _error(tmp_path, text)


def test_bad_prompts_name_their_line(tmp_path):
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("# prompts\nhappy\n\n" + "x" * 3000 + "\n")
    with pytest.raises(UsageError, match=r"prompts.txt:4: "):
        batch.read_prompts(prompts)
    prompts.write_text("# only a comment\n")
    with pytest.raises(UsageError, match="holds no prompt"):
        batch.read_prompts(prompts)
    assert "the same photo, text and intensity" in _error(tmp_path, "photo,text\na.jpg,happy\n", ("happy",))


@pytest.fixture(scope="module")
def photos(tmp_path_factory, faces) -> Path:
    """Two real photos, a picture without a face and a file that is not a photo."""
    folder = tmp_path_factory.mktemp("photos")
    for name in ("london_005_neutral.jpg", "london_006_happy.jpg"):
        (folder / name).write_bytes((faces / name).read_bytes())
    Image.open(faces / "london_001_neutral.jpg").crop((0, 0, 200, 200)).save(folder / "wall.png")
    (folder / "notes.jpg").write_text("not a photo")
    (folder / "prompts.txt").write_text("a warm smile\na furious scowl\n")
    return folder


@pytest.fixture(scope="module")
def local_run(photos, tmp_path_factory):
    out = tmp_path_factory.mktemp("batch") / "out"
    result = run_cli("batch", str(photos), "--prompts", str(photos / "prompts.txt"), "-o", str(out), "--workers", "2",
                     *FAST)  # fmt: skip
    return out, result


def _rows(out: Path) -> dict[str, dict]:
    with (out / batch.SUMMARY_CSV).open(newline="") as stream:
        return {row["id"]: row for row in csv.DictReader(stream)}


def test_failures_are_recorded_and_the_batch_goes_on(local_run):
    out, result = local_run
    assert result.returncode == BatchError.exit_code, result.stderr
    assert "4 of 8 items failed" in result.stderr and "Traceback" not in result.stderr
    rows = _rows(out)
    assert len(rows) == 8
    for photo, kind in (("wall", NoFaceError), ("notes", PhotoError)):
        for prompt in ("a-warm-smile", "a-furious-scowl"):
            row = rows[f"{photo}-{prompt}"]
            assert (row["status"], row["error_type"], row["exit_code"]) == ("failed", kind.__name__,
                                                                             str(kind.exit_code))  # fmt: skip
            assert "fix:" in row["error"] and not (out / row["id"]).exists()
    done = [row for row in rows.values() if row["status"] == "done"]
    assert len(done) == 4 and {row["emotion"] for row in done} == {"happy", "angry"}
    for row in done:
        folder = out / row["id"]
        assert sorted(p.name for p in folder.iterdir()) == ["avatar.glb", "item.json", "report.json"]
        report = json.loads((folder / "report.json").read_text())
        assert list(report["variants"]) == [row["id"]] and report["batch"]["text"] == row["text"]
    assert sorted(p.name for p in (out / "people").iterdir()) == ["london_005_neutral", "london_006_happy"]
    assert not list((out / ".partial").iterdir())
    markdown = (out / batch.SUMMARY_MD).read_text()
    assert "4 done, 4 failed" in markdown and "| wall-a-warm-smile |" in markdown and "avatars/min" in markdown


def test_ray_engine_gives_the_same_files(local_run, photos, tmp_path):
    pytest.importorskip("ray")
    local, _ = local_run
    out = tmp_path / "ray"
    result = run_cli("batch", str(photos), "--prompts", str(photos / "prompts.txt"), "-o", str(out), "--engine", "ray",
                     "--workers", "2", *FAST, timeout=300)  # a local Ray instance of 2 CPUs, started and stopped
    assert result.returncode == BatchError.exit_code, result.stderr
    assert "on 2 ray worker(s)" in result.stdout
    ray_rows, local_rows = _rows(out), _rows(local)
    assert {k: r["status"] for k, r in ray_rows.items()} == {k: r["status"] for k, r in local_rows.items()}
    for item, row in local_rows.items():
        if row["status"] == "done":
            assert (out / item / "avatar.glb").read_bytes() == (local / item / "avatar.glb").read_bytes()
            variants = [json.loads((root / item / "report.json").read_text())["variants"] for root in (out, local)]
            assert variants[0] == variants[1]


def test_no_hair_takes_the_hair_off_a_saved_person(faces, tmp_path):
    """The hair is on by default; a later batch over the same people with --no-hair reuses them (no refit) and
    leaves their hair out."""
    manifest = tmp_path / "manifest.csv"
    photo = faces / "london_004_neutral.jpg"
    out = tmp_path / "out"
    materials = {}
    for text, hair in (("happy", ()), ("sad", ("--no-hair",))):
        manifest.write_text(f"photo,text\n{photo},{text}\n")
        result = run_cli("batch", str(manifest), "-o", str(out), "--workers", "1", *hair, *FAST)
        assert result.returncode == 0, result.stderr
        (key,) = _rows(out)
        glb = next((out / key).rglob("avatar.glb")).read_bytes()
        materials[text] = {m["name"] for m in glb_json(glb)["materials"]}
    assert "M_Hair" in materials["happy"] and "M_Hair" not in materials["sad"]
    assert json.loads((out / key / "item.json").read_text())["person_reused"]  # no refit


def test_a_killed_batch_finishes_only_what_is_missing(faces, tmp_path):
    photos = [faces / f"london_{k:03d}_neutral.jpg" for k in (7, 8, 9)]
    manifest = tmp_path / "manifest.csv"
    manifest.write_text("photo,text\n" + "".join(f"{p},happy\n{p},sad\n" for p in photos))
    out = tmp_path / "out"
    args = [sys.executable, "-m", "sie3d.cli", "batch", str(manifest), "-o", str(out), "--workers", "1", *FAST]
    process = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        deadline = time.monotonic() + 240
        while not list(out.glob("*/item.json")) and time.monotonic() < deadline and process.poll() is None:
            time.sleep(0.2)
    finally:
        os.killpg(process.pid, signal.SIGKILL)  # the batch and its pool worker, as a power cut would
        process.wait()
    first = {p.parent.name: p.stat().st_mtime_ns for p in out.glob("*/item.json")}
    assert 1 <= len(first) < 6, first
    result = run_cli("batch", str(manifest), "-o", str(out), "--workers", "1", *FAST)
    assert result.returncode == 0, result.stderr
    rows = _rows(out)
    assert len(rows) == 6 and all(row["status"] in ("done", "done earlier") for row in rows.values())
    assert {k for k, row in rows.items() if row["status"] == "done earlier"} == set(first)
    assert all((out / k / "item.json").stat().st_mtime_ns == t for k, t in first.items())  # untouched
    assert f"{6 - len(first)} avatars made" in result.stdout and not list((out / ".partial").iterdir())


def test_an_item_of_another_photo_or_text_is_not_finished(tmp_path):
    photo = tmp_path / "ann.jpg"
    item = batch.BatchItem("ann-happy", photo, "happy", 1.0)
    assert batch.finished(item, tmp_path) is None
    (tmp_path / "ann-happy").mkdir()
    info = {"photo": str(photo.resolve()), "text": "happy", "intensity": 1.0}
    (tmp_path / "ann-happy" / batch.ITEM_JSON).write_text(json.dumps(info))
    assert batch.finished(item, tmp_path) == info
    for changed in ({"text": "sad"}, {"intensity": 0.5}, {"photo": str(tmp_path / "other" / "ann.jpg")}):
        (tmp_path / "ann-happy" / batch.ITEM_JSON).write_text(json.dumps({**info, **changed}))
        assert batch.finished(item, tmp_path) is None  # an earlier batch's avatar under this id: made again
