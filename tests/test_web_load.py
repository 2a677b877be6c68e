"""The load test, bounded: 8 clients submit real generations at once to a 2-worker server on loopback with a
short queue; every job finishes or is refused cleanly, none crashes the server, bad uploads get clear
errors, old jobs' files are deleted. The figures (latency, peak memory) are `sie3d bench web`'s business:
printed here, never asserted."""

from __future__ import annotations

from PIL import Image

from sie3d.eval.bench import web_photos
from sie3d.web.loadtest import run_load_test

KEEP_SECONDS = 6.0


def test_eight_clients_at_once(faces, tmp_path):
    photos = web_photos(faces, 8)
    assert len(photos) == 8
    wall = tmp_path / "wall.png"
    Image.open(photos[0]).crop((0, 0, 200, 200)).save(wall)
    root = tmp_path / "jobs"
    result = run_load_test(photos, clients=8, workers=2, max_queued=3, no_face=wall, job_timeout=600,
                           server_args=("--root", str(root), "--keep-minutes", str(KEEP_SECONDS / 60)),
                           linger_s=KEEP_SECONDS + 4)  # fmt: skip
    print(result["markdown"])
    assert result["client_errors"] == 0 and result["failed"] == 0, result["rows"]
    assert result["done"] + result["refused"] == 8
    assert result["done"] >= 5 and result["refused"] >= 1, "2 running + 3 waiting accepted, the rest refused"
    assert all(r["submit_status"] == 503 for r in result["rows"] if r["outcome"] == "refused")
    assert result["max_position_seen"] >= 1 and result["server_alive"]
    statuses = {case: answer["status"] for case, answer in result["bad_uploads"].items()}
    assert statuses == {"text file named .jpg": 400, "100 MB file": 413, "20000x20000 PNG bomb": 400,
                        "path in the file name": 400, "GIF, not a photo": 400, "empty text": 400,
                        "path traversal in a file URL": 404, "encoded path traversal": 404,
                        "photo without a face": 202}  # fmt: skip
    assert result["bad_uploads"]["photo without a face"]["kind"] == "NoFaceError"
    # finished jobs' folders go after KEEP_SECONDS (the cleaner looks every 1.5 s)
    old = [r["id"] for r in result["rows"] if r["outcome"] == "done"
           and result["ended_at"] - r["finished_at"] > KEEP_SECONDS + 3]  # fmt: skip
    assert old, "no job finished long enough before the end to be cleaned"
    assert not [job for job in old if (root / job).exists()]
