"""Load test of `sie3d web` on loopback (`sie3d bench web`): a real server process, N clients at once.

`start_server` runs ``sie3d web`` in its own process on a free port and waits until it answers; the client
helpers speak plain HTTP (stdlib only); `run_load_test` makes `clients` clients submit real generations
at the same moment (each a different photo), follows every job to its end, sends the bad uploads a server
meets (a text file named .jpg, a 100 MB body, a 20000x20000 PNG bomb, a photo without a face, a file name
with a path, a path-traversal file URL), and reports what happened: finished / refused / failed jobs,
latencies, queue positions seen, whether the server survived, and the peak memory (RSS) of the server
and of its workers. Bounded in count and time: every wait has a deadline.
"""

from __future__ import annotations

import http.client
import io
import json
import os
import signal
import socket
import statistics
import struct
import subprocess
import sys
import threading
import time
import uuid
import zlib
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Server:
    """A running `sie3d web` process."""

    host: str
    port: int
    process: subprocess.Popen
    log: Path | None = None  # where its stdout and stderr go, if anywhere

    def log_tail(self, chars: int = 3000) -> str:
        """The end of the server's log (empty without one), for a failing test's message."""
        return self.log.read_text(errors="replace")[-chars:] if self.log and self.log.exists() else ""

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@contextmanager
def start_server(*args: str, timeout: float = 180.0, env: dict | None = None, log: Path | None = None
                 ) -> Iterator[Server]:  # fmt: skip
    """``sie3d web --port <free> *args`` in a new process; yields once /api/health answers (workers started);
    stopped with SIGINT (graceful: workers stopped, job folders removed), killed if it hangs."""
    import sie3d

    port = free_port()
    output = open(log, "wb") if log else subprocess.DEVNULL  # noqa: SIM115 -- closed below
    # the server of this very sie3d, whatever the interpreter's site-packages hold
    source = str(Path(sie3d.__file__).resolve().parents[1])
    path = os.pathsep.join([source, *filter(None, [os.environ.get("PYTHONPATH")])])
    process = subprocess.Popen([sys.executable, "-m", "sie3d.cli", "-q", "web", "--port", str(port), *args],
                               stdout=output, stderr=output,
                               env={**os.environ, "PYTHONPATH": path, **(env or {})})  # fmt: skip
    try:
        server = Server("127.0.0.1", port, process, log)
        deadline = time.monotonic() + timeout
        while True:
            if process.poll() is not None:
                raise RuntimeError(f"sie3d web exited with code {process.returncode}")
            try:
                if request(server, "GET", "/api/health", timeout=2)[0] == 200:
                    break
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise TimeoutError(f"sie3d web did not answer within {timeout:.0f} s")
            time.sleep(0.3)
        yield server
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGINT)
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        if log:
            output.close()


def request(server: Server, method: str, path: str, body: bytes | None = None, headers: dict | None = None,
            timeout: float = 60.0) -> tuple[int, dict, bytes]:  # fmt: skip
    """(status, headers, body) of one HTTP request; `path` is sent exactly as given (no normalisation)."""
    connection = http.client.HTTPConnection(server.host, server.port, timeout=timeout)
    try:
        connection.request(method, path, body=body, headers=headers or {})
        response = connection.getresponse()
        return response.status, dict(response.getheaders()), response.read()
    finally:
        connection.close()


def multipart(fields: dict[str, str], files: dict[str, tuple[str, bytes]]) -> tuple[bytes, str]:
    """A multipart/form-data body and its content type."""
    boundary = uuid.uuid4().hex
    parts = []
    for name, value in fields.items():
        parts.append(f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n{value}\r\n'.encode())
    for name, (filename, data) in files.items():
        head = (f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"; filename="{filename}"\r\n'
                "Content-Type: application/octet-stream\r\n\r\n")
        parts.append(head.encode() + data + b"\r\n")
    return b"".join(parts) + f"--{boundary}--\r\n".encode(), f"multipart/form-data; boundary={boundary}"


def submit(server: Server, text: str, photo: tuple[str, bytes] | None = None, person: str | None = None,
           intensity: float = 1.0, timeout: float = 120.0, hair: bool = True,
           gaze: str = "ahead", light: str = "studio") -> tuple[int, dict]:  # fmt: skip
    """POST /api/generate; (status, JSON answer)."""
    fields = {"text": text, "intensity": str(intensity), "hair": str(hair).lower(), "gaze": gaze, "light": light}
    if person:
        fields["person"] = person
    body, kind = multipart(fields, {"photo": photo} if photo else {})
    status, _, answer = request(server, "POST", "/api/generate", body, {"Content-Type": kind}, timeout)
    return status, json.loads(answer)


def wait_for_job(server: Server, job_id: str, timeout: float) -> tuple[dict, list[int]]:
    """Poll a job until it is done or failed (or `timeout` passes: TimeoutError); returns its last status and
    the queue positions seen on the way."""
    deadline = time.monotonic() + timeout
    positions = []
    while True:
        status, _, body = request(server, "GET", f"/api/jobs/{job_id}")
        job = json.loads(body)
        if status != 200:
            raise RuntimeError(f"job {job_id}: HTTP {status} {job}")
        if job.get("position"):
            positions.append(job["position"])
        if job["status"] in ("done", "failed"):
            return job, positions
        if time.monotonic() > deadline:
            raise TimeoutError(f"job {job_id} still {job['status']} after {timeout:.0f} s")
        time.sleep(0.25)


def png_bomb(side: int = 20_000) -> bytes:
    """A valid 1-bit PNG of side x side pixels, a few tens of KB: a decompression bomb."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    row = b"\0" * (1 + (side + 7) // 8)
    packer = zlib.compressobj(9)
    body = b"".join(packer.compress(row) for _ in range(side)) + packer.flush()
    header = struct.pack(">IIBBBBB", side, side, 1, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", body) + chunk(b"IEND", b"")


def _tree_pids(pid: int) -> list[int]:
    """`pid` and its descendants (Linux /proc)."""
    found, todo = [], [pid]
    while todo:
        current = todo.pop()
        found.append(current)
        for task in Path(f"/proc/{current}/task").glob("*"):
            with suppress(OSError):
                todo += [int(c) for c in (task / "children").read_text().split()]
    return found


def _rss_mb(pid: int) -> tuple[float, float]:
    """(current, peak) resident memory of a process in MB (VmRSS, VmHWM); zeros if it is gone."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return 0.0, 0.0
    values = {line.split(":")[0]: float(line.split()[1]) / 1024 for line in status.splitlines()
              if line.startswith(("VmRSS", "VmHWM"))}  # fmt: skip
    return values.get("VmRSS", 0.0), values.get("VmHWM", 0.0)


class MemoryWatch:
    """Samples the RSS of a process tree every 0.2 s: the peak of the sum and each process's own peak."""

    def __init__(self, pid: int) -> None:
        self.pid, self.peak_total, self.peaks = pid, 0.0, {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(0.2):
            total = 0.0
            for pid in _tree_pids(self.pid):
                current, peak = _rss_mb(pid)
                total += current
                self.peaks[pid] = max(self.peaks.get(pid, 0.0), peak)
            self.peak_total = max(self.peak_total, total)

    def stop(self) -> dict:
        self._stop.set()
        self._thread.join()
        server = self.peaks.get(self.pid, 0.0)
        workers = [v for k, v in self.peaks.items() if k != self.pid]
        return {"peak_total_mb": round(self.peak_total), "server_peak_mb": round(server),
                "worker_peak_mb": round(max(workers, default=0.0)), "processes": len(self.peaks)}


BAD_UPLOADS = ("text file named .jpg", "100 MB file", "20000x20000 PNG bomb", "path in the file name",
               "GIF, not a photo", "empty text")  # fmt: skip


def bad_uploads(server: Server, photo: bytes) -> dict[str, dict]:
    """Each bad request the server must refuse clearly: {case: {"status", "error", "fix"}}."""
    from PIL import Image

    gif = io.BytesIO()
    Image.new("RGB", (200, 200), (90, 120, 150)).save(gif, "GIF")
    cases = {
        "text file named .jpg": ({"text": "happy"}, ("photo.jpg", b"this is not a photo\n" * 20)),
        "100 MB file": ({"text": "happy"}, ("big.jpg", b"\xff\xd8\xff" + bytes(100 * 1024 * 1024))),
        "20000x20000 PNG bomb": ({"text": "happy"}, ("bomb.png", png_bomb())),
        "path in the file name": ({"text": "happy"}, ("../../etc/passwd.jpg", photo)),
        "GIF, not a photo": ({"text": "happy"}, ("face.jpg", gif.getvalue())),
        "empty text": ({"text": "   "}, ("face.jpg", photo)),
    }
    answers = {}
    for case, (fields, upload) in cases.items():
        body, kind = multipart(fields, {"photo": upload})
        status, _, answer = request(server, "POST", "/api/generate", body, {"Content-Type": kind}, timeout=120)
        answers[case] = {"status": status, **json.loads(answer)}
    # file URLs that try to leave a job's folder, sent verbatim
    for case, path in (("path traversal in a file URL", "/files/AAAAAAAAAAAAAAAAAAAAAA/../../../etc/passwd"),
                       ("encoded path traversal", "/files/AAAAAAAAAAAAAAAAAAAAAA/..%2F..%2Fetc%2Fpasswd")):  # fmt: skip
        status, _, answer = request(server, "GET", path)
        answers[case] = {"status": status, **(json.loads(answer) if answer.startswith(b"{") else {})}
    return answers


DEFAULT_TEXTS = ("a gleeful grin with raised eyebrows", "quietly furious", "surprised but happy", "close to tears",
                 "a smirk", "disgusted", "terrified", "calm and neutral")  # fmt: skip


def run_load_test(photos: list[Path], *, clients: int = 8, workers: int = 2, max_queued: int = 16,
                  no_face: Path | None = None, job_timeout: float = 600.0, log: Path | None = None,
                  server_args: tuple[str, ...] = (), linger_s: float = 0.0) -> dict:
    """`clients` clients submit at once (client k: photos[k % len(photos)], a text of `DEFAULT_TEXTS`) to a
    fresh server with `workers` workers; every job is followed to its end. Then the bad uploads, a photo
    without a face (`no_face`) and a check that the server still answers (`server_args`: more `sie3d web`
    flags). The server stays up until `linger_s` seconds after the first job finished (so that its cleaner can
be seen at work). Returns the figures (see the module docstring) and a Markdown table under "markdown"."""
    photo_bytes = [p.read_bytes() for p in photos]
    with start_server("--workers", str(workers), "--max-queued", str(max_queued), *server_args, log=log) as server:
        watch = MemoryWatch(server.process.pid)
        barrier = threading.Barrier(clients)
        rows: list[dict] = [{} for _ in range(clients)]

        def client(k: int) -> None:
            row = rows[k]
            barrier.wait()
            start = time.monotonic()
            try:
                status, answer = submit(server, DEFAULT_TEXTS[k % len(DEFAULT_TEXTS)],
                                        (photos[k % len(photos)].name, photo_bytes[k % len(photos)]))  # fmt: skip
                row.update(submit_status=status, first_position=answer.get("position"), id=answer.get("id"))
                if status != 202:
                    row.update(outcome="refused", error=answer.get("error"))
                    return
                job, positions = wait_for_job(server, answer["id"], job_timeout)
                row.update(outcome=job["status"], seconds=round(time.monotonic() - start, 2), positions=positions,
                           finished_at=time.monotonic(),
                           job_seconds=(job.get("result") or {}).get("seconds"), error=job.get("error"))  # fmt: skip
            except Exception as exc:  # noqa: BLE001 -- a client's failure is a figure, not a crash of the test
                row.update(outcome="client error", error=f"{type(exc).__name__}: {exc}")

        threads = [threading.Thread(target=client, args=(k,)) for k in range(clients)]
        start = time.monotonic()
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(job_timeout + 60)
        wall = time.monotonic() - start
        memory = watch.stop()
        bad = bad_uploads(server, photo_bytes[0])
        if no_face is not None:
            status, answer = submit(server, "happy", (no_face.name, no_face.read_bytes()))
            job = wait_for_job(server, answer["id"], job_timeout)[0] if status == 202 else {"error": answer}
            bad["photo without a face"] = {"status": status, "job": job.get("status"), **(job.get("error") or {})}
        first_done = min((r["finished_at"] for r in rows if "finished_at" in r), default=None)
        if first_done is not None:
            time.sleep(max(0.0, first_done + linger_s - time.monotonic()))
        alive = server.process.poll() is None and request(server, "GET", "/api/health")[0] == 200
        ended_at = time.monotonic()
    done = [r for r in rows if r.get("outcome") == "done"]
    latencies = [r["seconds"] for r in done]
    result = {
        "clients": clients, "workers": workers, "max_queued": max_queued, "cpu_count": os.cpu_count(),
        "wall_s": round(wall, 1), "done": len(done), "refused": sum(r.get("outcome") == "refused" for r in rows),
        "failed": sum(r.get("outcome") == "failed" for r in rows),
        "client_errors": sum(r.get("outcome") == "client error" for r in rows),
        "latency_median_s": round(statistics.median(latencies), 1) if latencies else None,
        "latency_max_s": max(latencies, default=None),
        "job_seconds_median": round(statistics.median([r["job_seconds"] for r in done]), 1) if done else None,
        "max_position_seen": max((p for r in rows for p in r.get("positions", [])), default=0),
        "server_alive": alive, **memory, "rows": rows, "bad_uploads": bad,
        "ended_at": ended_at,
    }  # fmt: skip
    result["markdown"] = _markdown(result)
    return result


def _markdown(r: dict) -> str:
    lines = [
        f"{r['clients']} clients at once, {r['workers']} workers on {r['cpu_count']} cores, up to {r['max_queued']} "
        "waiting",
        "",
        "| measure | value |",
        "|---|---|",
        f"| finished / refused (queue full) / failed / client errors | {r['done']} / {r['refused']} / {r['failed']} / "
        f"{r['client_errors']} |",
        f"| wall time for all | {r['wall_s']} s |",
        f"| latency per client, submit to result (median / max) | {r['latency_median_s']} / {r['latency_max_s']} s |",
        f"| one generation in its worker (median) | {r['job_seconds_median']} s |",
        f"| deepest queue position seen | {r['max_position_seen']} |",
        f"| peak RSS: all processes together / server / one worker | {r['peak_total_mb']} / {r['server_peak_mb']} / "
        f"{r['worker_peak_mb']} MB |",
        f"| server still answering afterwards | {'yes' if r['server_alive'] else 'NO'} |",
        "",
        "| bad request | HTTP status | error |",
        "|---|---|---|",
    ]  # fmt: skip
    for case, answer in r["bad_uploads"].items():
        message = answer.get("error") or answer.get("message") or ""
        if isinstance(message, dict):
            message = message.get("message", "")
        lines.append(f"| {case} | {answer.get('status')}{' (job ' + answer['job'] + ')' if answer.get('job') else ''}"
                     f" | {message} |")  # fmt: skip
    return "\n".join(lines)
