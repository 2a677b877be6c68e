"""No process-wide side effects: importing sie3d changes neither Pillow's limits nor the environment, and
observing a face leaves stderr alone (other threads' output is never lost); the CLI's native-log filter
drops MediaPipe's lines and nothing else."""

from __future__ import annotations

import re
import subprocess
import sys
import textwrap

import pytest

from sie3d.errors import PhotoError
from sie3d.photo import image_header, load_photo

from conftest import png_bomb


def _python(code: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True, timeout=300)


def test_importing_sie3d_changes_no_global_state():
    done = _python("""
        import os, PIL.Image as Image
        limit, env = Image.MAX_IMAGE_PIXELS, dict(os.environ)
        import sie3d.cli, sie3d.photo, sie3d.avatar, sie3d.face.landmarker, sie3d.export, sie3d.web.server
        assert Image.MAX_IMAGE_PIXELS == limit, Image.MAX_IMAGE_PIXELS
        assert dict(os.environ) == env, set(os.environ.items()) ^ set(env.items())
        print("ok")
    """)
    assert done.returncode == 0 and done.stdout.strip() == "ok", done.stderr[-2000:]


def test_observing_a_face_leaves_other_threads_stderr_alone(faces):
    """While MediaPipe starts, detects and closes in one thread, every line another thread writes to fd 2
    arrives (the previous landmarker redirected fd 2 to /dev/null around those calls)."""
    done = _python(f"""
        import os, threading, time
        from sie3d.face.landmarker import FaceObserver
        from sie3d.photo import load_photo
        photo = load_photo({str(faces / "london_004_happy.jpg")!r})
        stop = threading.Event()
        def work():
            for _ in range(2):
                with FaceObserver() as observer:
                    for _ in range(3):
                        observer.observe(photo)
            stop.set()
        worker = threading.Thread(target=work)
        worker.start()
        sent = 0
        while not stop.is_set():
            os.write(2, b"<mark %d>\\n" % sent)
            sent += 1
            time.sleep(0.002)
        worker.join()
        print(sent)
    """)
    assert done.returncode == 0, done.stderr[-2000:]
    sent = int(done.stdout)
    received = [int(k) for k in re.findall(r"<mark (\d+)>", done.stderr)]  # native lines may interleave
    assert sent > 10 and received == list(range(sent))


def test_native_log_filter_drops_native_lines_only():
    done = _python("""
        import os, sys, threading
        from sie3d.logs import native_logs_filtered
        with native_logs_filtered():
            def native():
                os.write(2, b"W0000 00:00:1796198189.093896   13763 face_landmarker_graph.cc:181] noise\\n")
                os.write(2, b"INFO: Created TensorFlow Lite XNNPACK delegate for CPU.\\n")
                os.write(2, b"kept native line\\n")
            thread = threading.Thread(target=native)
            thread.start(); thread.join()
            print("python line", file=sys.stderr)
        print("after", file=sys.stderr)
    """)
    assert done.returncode == 0
    assert "noise" not in done.stderr and "XNNPACK" not in done.stderr
    for line in ("kept native line", "python line", "after"):
        assert line in done.stderr


def test_photo_size_is_checked_per_image_before_decoding(tmp_path, faces):
    bomb = png_bomb(tmp_path / "bomb.png")
    assert bomb.stat().st_size < 200_000
    for check in (load_photo, image_header):
        with pytest.raises(PhotoError, match="MP|too large"):
            check(bomb)
    with pytest.raises(PhotoError, match="more than the 0 MP"):
        load_photo(faces / "london_004_happy.jpg", max_pixels=100_000)
    assert image_header(faces / "london_004_happy.jpg") == ("JPEG", (768, 768))
    (tmp_path / "notes.jpg").write_text("not a photo")
    with pytest.raises(PhotoError, match="not an image"):
        image_header(tmp_path / "notes.jpg")
    from PIL import Image

    Image.new("RGB", (80, 80)).save(tmp_path / "anim.gif")
    with pytest.raises(PhotoError, match="GIF image, not a photo format"):
        image_header(tmp_path / "anim.gif")
