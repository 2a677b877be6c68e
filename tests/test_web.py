"""`sie3d web` through its HTTP API, as a script or the page uses it: a real server process with a real
worker (real models, shared photos). Every safety point of the issue has a test here or in
test_web_load.py (the load test) and test_side_effects.py (process-wide state)."""

from __future__ import annotations

import io
import json
import os
import signal
import time
import zipfile
from pathlib import Path

import pytest
from PIL import Image

from sie3d.avatar import lid_target_names
from sie3d.export.rig import ARKIT_NAMES, rig_names
from sie3d.visemes import VISEME_NAMES
from sie3d.web.jobs import JOB_ID, WebConfig
from sie3d.web.loadtest import bad_uploads, request, submit, wait_for_job

from conftest import glb_json

PHOTO = "london_004_happy.jpg"
TIMEOUT = 600  # seconds for one job on a busy shared machine (bounded: the test fails, never hangs)


@pytest.fixture(scope="module")
def first_job(web_server, faces) -> dict:
    status, answer = submit(web_server, "a gleeful grin with raised eyebrows", (PHOTO, (faces / PHOTO).read_bytes()))
    assert status == 202, answer
    job, _ = wait_for_job(web_server, answer["id"], TIMEOUT)
    return {"submitted": answer, "job": job}


def test_generate_through_the_api(web_server, first_job):
    answer, job = first_job["submitted"], first_job["job"]
    assert JOB_ID.fullmatch(answer["id"]) and answer["url"] == f"/api/jobs/{answer['id']}"
    assert job["status"] == "done", job.get("error")
    assert {"observe", "fit", "texture", "text", "export", "write"} <= set(job["stages"])
    result = job["result"]
    assert result["top_emotion"] == "happy" and 0 <= result["confidence"] <= 1
    assert abs(sum(result["emotions"].values()) - 1) < 1e-2
    assert 0 < result["fit_error_percent_of_eye_distance"] < 2 and result["faces_found"] == 1
    assert result["hair_note"] is None  # (a hat made as the hair: the note, and the page says it)
    assert set(result["presets"]) == {"anger", "disgust", "fear", "happy", "neutral", "sadness", "surprise", "text"}
    assert all(list(p) == list(rig_names()) for p in result["presets"].values())
    assert result["presets"]["happy"]["mouthSmileLeft"] > 0.5

    status, headers, glb = request(web_server, "GET", result["urls"]["glb"])
    assert status == 200 and headers["content-type"] == "model/gltf-binary"
    mesh = glb_json(glb)["meshes"][0]
    assert mesh["extras"]["targetNames"][:52] == list(ARKIT_NAMES)
    targets = len(rig_names()) + len(VISEME_NAMES) + len(lid_target_names())
    assert {len(p["targets"]) for p in mesh["primitives"]} == {targets}
    status, _, archive = request(web_server, "GET", result["urls"]["obj_zip"])
    assert status == 200 and "avatar.obj" in zipfile.ZipFile(io.BytesIO(archive)).namelist()
    status, _, report = request(web_server, "GET", result["urls"]["report"])
    assert status == 200 and json.loads(report)["variants"]
    for key in ("preview", "in_photo"):
        status, headers, png = request(web_server, "GET", result["urls"][key])
        assert status == 200 and Image.open(io.BytesIO(png)).size[0] > 300


def test_a_new_text_reuses_the_saved_person(web_server, faces, first_job):
    """Same photo again, or the earlier job's id: the person is loaded, not reconstructed (no observe/fit)."""
    status, again = submit(web_server, "quietly furious", (PHOTO, (faces / PHOTO).read_bytes()))
    assert status == 202 and again["reused_person"]
    status, by_id = submit(web_server, "close to tears", person=first_job["submitted"]["id"], intensity=0.5)
    assert status == 202 and by_id["reused_person"]
    for answer in (again, by_id):
        job, _ = wait_for_job(web_server, answer["id"], TIMEOUT)
        assert job["status"] == "done", job.get("error")
        assert "load person" in job["stages"] and not {"observe", "fit", "texture"} & set(job["stages"])
    assert job["result"]["text"] == "close to tears"


def test_the_gaze_and_light_boxes_make_the_face_look_and_lit_as_in_the_photo(web_server, first_job):
    """The first job (the boxes clear, as by default) looks straight ahead; its person again with the boxes ticked
    (gaze=photo, light=photo): the neutral preset and the text's weights turn the eyes as the photo's, and the
    preview is lit by the photo's light (its report says so); a bad value of either is a 400."""

    def gaze(weights: dict) -> float:
        return max(v for n, v in weights.items() if n.startswith("eyeLook"))

    assert gaze(first_job["job"]["result"]["presets"]["neutral"]) == 0
    status, answer = submit(web_server, "a warm smile", person=first_job["submitted"]["id"], gaze="photo",
                            light="photo")  # fmt: skip
    assert status == 202, answer
    job, _ = wait_for_job(web_server, answer["id"], TIMEOUT)
    assert job["status"] == "done", job.get("error")
    presets = job["result"]["presets"]
    assert gaze(presets["neutral"]) > 0.05 and gaze(presets["text"]) == pytest.approx(gaze(presets["neutral"]))
    for first, then in ((first_job["job"], "studio"), (job, "photo")):
        status, _, report = request(web_server, "GET", first["result"]["urls"]["report"])
        assert status == 200 and json.loads(report)["config"]["output"]["light"] == then
    status, answer = submit(web_server, "a warm smile", person=first_job["submitted"]["id"], gaze="sideways")
    assert status == 400 and "gaze 'sideways' is not a gaze" in answer["error"], answer
    status, answer = submit(web_server, "a warm smile", person=first_job["submitted"]["id"], light="sun")
    assert status == 400 and "unknown light 'sun'" in answer["error"], answer


def test_the_hair_box_takes_off_and_adds_the_hair_volume(web_server, first_job):
    """The first job (the box ticked, as by default) carries the hair mesh; its person again with the box clear:
    no hair stage, no hair in the GLB; that bare person with the box ticked: the hair stage runs again."""

    def materials(job: dict) -> set[str]:
        status, _, glb = request(web_server, "GET", job["result"]["urls"]["glb"])
        assert status == 200
        return {m["name"] for m in glb_json(glb)["materials"]}

    assert "hair" in first_job["job"]["stages"] and "M_Hair" in materials(first_job["job"])
    status, off = submit(web_server, "a warm smile", person=first_job["submitted"]["id"], hair=False)
    assert status == 202, off
    job, _ = wait_for_job(web_server, off["id"], TIMEOUT)
    assert job["status"] == "done", job.get("error")
    assert "hair" not in job["stages"] and "M_Hair" not in materials(job)
    status, on = submit(web_server, "a warm smile", person=off["id"], hair=True)
    assert status == 202, on
    job, _ = wait_for_job(web_server, on["id"], TIMEOUT)
    assert job["status"] == "done", job.get("error")
    assert "hair" in job["stages"] and "M_Hair" in materials(job)


def test_bad_requests_get_one_clear_error_each(web_server, faces, tmp_path):
    answers = bad_uploads(web_server, (faces / PHOTO).read_bytes())
    expected = {
        "text file named .jpg": (400, "is not an image"),
        "100 MB file": (413, "larger than 15 MB"),
        "20000x20000 PNG bomb": (400, "too large to decode safely"),
        "path in the file name": (400, "contains a path"),
        "GIF, not a photo": (400, "GIF image, not a photo format"),
        "empty text": (400, "empty"),
        "path traversal in a file URL": (404, ""),
        "encoded path traversal": (404, ""),
    }
    for case, (status, phrase) in expected.items():
        answer = answers[case]
        assert answer["status"] == status and phrase in answer.get("error", ""), (case, answer)
        assert status == 404 or answer["fix"], f"{case}: no fix given"
    for fields, phrase in (({"text": "happy", "intensity": 3}, "outside [0, 1]"),
                           ({"text": "happy"}, "either a photo or the id")):  # fmt: skip
        status, answer = submit(web_server, **fields)
        assert status == 400 and phrase in answer["error"], answer
    status, answer = submit(web_server, "happy", person="AAAAAAAAAAAAAAAAAAAAAA")
    assert status == 400 and "no finished job" in answer["error"]
    assert request(web_server, "GET", "/api/jobs/AAAAAAAAAAAAAAAAAAAAAA")[0] == 404
    assert request(web_server, "GET", "/api/jobs/..%2F..%2Fetc")[0] == 404


def test_a_photo_without_a_face_fails_its_job_clearly(web_server, faces, tmp_path):
    wall = io.BytesIO()
    Image.open(faces / "london_001_neutral.jpg").crop((0, 0, 200, 200)).save(wall, "PNG")
    status, answer = submit(web_server, "happy", ("wall.png", wall.getvalue()))
    assert status == 202
    job, _ = wait_for_job(web_server, answer["id"], TIMEOUT)
    assert job["status"] == "failed" and job["error"]["kind"] == "NoFaceError"
    assert job["error"]["message"] == "no face found in wall.png" and job["error"]["fix"]


def test_files_stay_inside_their_job(web_server, first_job, web_root):
    job_id = first_job["submitted"]["id"]
    secret = web_root / "secret.txt"
    secret.write_text("not yours")
    for path in (f"/files/{job_id}/../secret.txt", f"/files/{job_id}/..%2F..%2Fsecret.txt",
                 f"/files/{job_id}/%2E%2E/%2E%2E/secret.txt", f"/files/{job_id}/person/photo.png",
                 f"/files/{job_id}/person/arrays.npz", f"/files/{job_id}//etc/passwd",
                 "/files/../../etc/passwd", f"/files/{job_id}/upload"):  # fmt: skip
        status, _, body = request(web_server, "GET", path)
        assert status in (400, 404) and b"not yours" not in body, (path, status)
    assert request(web_server, "GET", f"/files/{job_id}/report.json")[0] == 200


def test_job_ids_are_random_tokens(web_server, first_job):
    """128 random bits, url-safe: a neighbour's id cannot be derived from one's own."""
    job_id = first_job["submitted"]["id"]
    assert JOB_ID.fullmatch(job_id) and len(set(job_id)) > 8
    for k in (0, 10, 21):  # one character changed: another, unknown job
        other = job_id[:k] + ("A" if job_id[k] != "A" else "B") + job_id[k + 1 :]
        assert request(web_server, "GET", f"/api/jobs/{other}")[0] == 404


def test_binds_to_loopback_unless_told(web_server):
    assert WebConfig().host == "127.0.0.1"
    from sie3d.cli import build_parser

    assert build_parser().parse_args(["web"]).host == "127.0.0.1"
    rows = [line.split() for line in Path("/proc/net/tcp").read_text().splitlines()[1:]]
    listening = [row[1] for row in rows if row[3] == "0A"]
    assert f"0100007F:{web_server.port:04X}" in listening, "the server listens on 127.0.0.1 only"


def _worker_pids(server_pid: int) -> list[int]:
    children = []
    for task in Path(f"/proc/{server_pid}/task").glob("*"):
        children += [int(c) for c in (task / "children").read_text().split()]
    return [pid for pid in children if "resource_tracker" not in Path(f"/proc/{pid}/cmdline").read_bytes().decode()]


def test_a_worker_that_dies_fails_its_job_only(web_server, faces):
    """SIGKILL the worker mid-job (as the kernel's OOM killer would): that job fails clearly, the server
    rebuilds its pool and the next job succeeds, its progress reported."""
    status, answer = submit(web_server, "surprised", ("other.jpg", (faces / "london_005_neutral.jpg").read_bytes()))
    assert status == 202
    deadline = time.monotonic() + TIMEOUT
    while json.loads(request(web_server, "GET", answer["url"])[2])["status"] != "running":
        assert time.monotonic() < deadline
        time.sleep(0.2)
    for pid in _worker_pids(web_server.process.pid):
        os.kill(pid, signal.SIGKILL)
    job, _ = wait_for_job(web_server, answer["id"], TIMEOUT)
    assert job["status"] == "failed" and job["error"]["kind"] == "WorkerDied" and job["error"]["fix"]
    status, answer = submit(web_server, "happy", ("again.jpg", (faces / "london_005_neutral.jpg").read_bytes()))
    assert status == 202
    job, _ = wait_for_job(web_server, answer["id"], TIMEOUT)
    assert job["status"] == "done", job.get("error")
    assert {"observe", "fit", "text"} <= set(job["stages"])  # the new pool's progress reaches the server
    assert request(web_server, "GET", "/api/health")[0] == 200


def test_a_full_disk_fails_the_job_clearly(faces, tmp_path):
    """The jobs' folder on a 3 MB tmpfs (a real full disk; needs root to mount): the upload fits, the outputs
    do not; the job fails with one clear message, leaves no partial output, and the server goes on."""
    import subprocess

    from sie3d.web.loadtest import start_server

    disk = tmp_path / "disk"
    disk.mkdir()
    if os.geteuid() != 0 or subprocess.run(["mount", "-t", "tmpfs", "-o", "size=3m", "tmpfs", str(disk)],
                                           capture_output=True).returncode != 0:  # fmt: skip
        pytest.skip("cannot mount a small tmpfs here (needs root)")
    try:
        with start_server("--workers", "1", "--root", str(disk)) as server:
            status, answer = submit(server, "happy", (PHOTO, (faces / PHOTO).read_bytes()))
            assert status == 202, answer
            job, _ = wait_for_job(server, answer["id"], TIMEOUT)
            assert job["status"] == "failed" and job["error"]["kind"] == "OutputError", job
            assert "cannot write the outputs" in job["error"]["message"] and job["error"]["fix"]
            assert not (disk / answer["id"] / "out.partial").exists() and not (disk / answer["id"] / "out").exists()
            assert request(server, "GET", "/api/health")[0] == 200
    finally:
        subprocess.run(["umount", str(disk)], check=False)


def test_missing_page_libraries_say_how_to_install_them(tmp_path):
    from sie3d.errors import AssetError
    from sie3d.web.server import create_app

    with pytest.raises(AssetError, match="not installed") as caught:
        create_app(WebConfig(modules=tmp_path))
    assert "npm ci --prefix web" in caught.value.hint
