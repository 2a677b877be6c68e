"""The web server's jobs: a bounded queue in front of a pool of worker processes, one generation per core.

- At most `WebConfig.workers` generations run at once (one worker process each, one torch thread each);
  the next `WebConfig.max_queued` wait in order and know their position; beyond that a submission is
  refused (`QueueFull`), so memory stays bounded by the worker count.
- A worker that dies (killed, out of memory) fails its job only: the pool is rebuilt and the queue goes on.
- Job ids are 128-bit random tokens; a job's files live in its own folder under `WebConfig.root`, and
  finished jobs are deleted after `WebConfig.keep_seconds` or when more than `WebConfig.keep_jobs` are kept.
- A photo seen before (same bytes) reuses that job's saved person: a new text costs seconds, not a refit.
"""

from __future__ import annotations

import hashlib
import logging
import multiprocessing
import os
import queue
import re
import secrets
import shutil
import tempfile
import threading
import time
from collections import deque
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from pathlib import Path

from sie3d.web.worker import JobSpec, init_worker, run_job, warm_up

log = logging.getLogger(__name__)

JOB_ID = re.compile(r"[A-Za-z0-9_-]{22}")  # secrets.token_urlsafe(16)
STAGES = ("queued", "read photo", "load person", "observe", "fit", "texture", "hair", "text", "preview", "in_photo",
          "export", "write", "package", "done")  # fmt: skip


@dataclass(frozen=True)
class WebConfig:
    """The server's limits and places (`sie3d web` flags)."""

    host: str = "127.0.0.1"  # loopback only unless told otherwise
    port: int = 7860
    workers: int = max(1, os.cpu_count() or 1)  # generations at once: one per core
    max_queued: int = 16  # waiting jobs beyond the running ones; more are refused (HTTP 503)
    max_upload_bytes: int = 15 * 1024 * 1024
    max_pixels: int = 40_000_000  # per photo, checked from its header before decoding
    keep_seconds: float = 3600.0  # finished jobs' files are deleted after this
    keep_jobs: int = 64  # and beyond this many finished jobs, the oldest go first
    root: Path | None = None  # job folders; default: a temporary folder removed at shutdown
    texture_size: int = 1024
    preview_size: int = 384
    modules: Path | None = None  # the front end's node_modules (default: web/node_modules of the checkout)

    def __post_init__(self) -> None:
        from sie3d.errors import UsageError

        if not 1 <= self.workers <= 64:
            raise UsageError(f"--workers {self.workers} is outside [1, 64]", "use the number of CPU cores")
        if not 0 <= self.port <= 65535:
            raise UsageError(f"--port {self.port} is not a TCP port", "use e.g. --port 7860")


class QueueFull(Exception):
    """More jobs are waiting than `WebConfig.max_queued`."""


@dataclass
class Job:
    """One generation request and what became of it."""

    id: str
    folder: Path
    spec: JobSpec
    created: float = field(default_factory=time.time)
    status: str = "queued"  # queued | running | done | failed
    stage: str = "queued"
    stages_seen: list[str] = field(default_factory=list)
    started: float | None = None
    finished: float | None = None
    result: dict | None = None
    error: dict | None = None
    photo_sha256: str | None = None

    @property
    def person_folder(self) -> Path:
        return self.folder / "out" / "person"


class JobQueue:
    """Submit, track and clean up jobs; see the module docstring."""

    def __init__(self, config: WebConfig) -> None:
        self.config = config
        self._own_root = config.root is None
        self.root = Path(tempfile.mkdtemp(prefix="sie3d-web-")) if config.root is None else Path(config.root)
        self.root.mkdir(parents=True, exist_ok=True)
        self._lock = threading.RLock()  # a done callback may run inside submit()
        self._jobs: dict[str, Job] = {}
        self._waiting: deque[str] = deque()
        self._running: dict[str, tuple[Future, ProcessPoolExecutor]] = {}
        self._people: dict[str, str] = {}  # photo sha256 -> job id whose person/ it can reuse
        self._context = multiprocessing.get_context("spawn")  # no fork of a threaded server
        self._closed = threading.Event()
        self._threads = [threading.Thread(target=self._clean_periodically, name="sie3d-cleanup", daemon=True)]
        self._threads[0].start()
        self._pool = self._new_pool()

    # -- the pool -------------------------------------------------------------------------------------

    def _new_pool(self) -> ProcessPoolExecutor:
        """Workers, and a progress queue of their own with its own reader: a worker killed while writing
        to a queue can leave that queue's lock taken or half a message in its pipe, so a new pool never
        inherits its predecessor's."""
        self._events = events = self._context.Queue()
        reader = threading.Thread(target=self._read_events, args=(events,), name="sie3d-progress", daemon=True)
        reader.start()
        self._threads = [*(t for t in self._threads if t.is_alive()), reader]
        pool = ProcessPoolExecutor(self.config.workers, mp_context=self._context, initializer=init_worker,
                                   initargs=(events,))  # fmt: skip
        for _ in range(self.config.workers):
            pool.submit(warm_up)  # start every worker and load its models now
        return pool

    def _dispatch(self) -> None:
        """Start waiting jobs while a worker is free (called with the lock held)."""
        while self._waiting and len(self._running) < self.config.workers:
            job = self._jobs[self._waiting.popleft()]
            job.status, job.started = "running", time.time()
            try:
                future = self._pool.submit(run_job, job.spec)
            except (BrokenProcessPool, RuntimeError):
                self._pool = self._new_pool()
                future = self._pool.submit(run_job, job.spec)
            self._running[job.id] = (future, self._pool)
            future.add_done_callback(lambda f, job_id=job.id: self._finished(job_id, f))

    def _finished(self, job_id: str, future: Future) -> None:
        with self._lock:
            job = self._jobs.get(job_id)
            _, pool = self._running.pop(job_id, (None, None))
            if job is not None:
                try:
                    outcome = future.result()
                except BrokenProcessPool:
                    outcome = {"error": {"message": "the worker process running this job died (out of memory?)",
                                         "fix": "try again; if it repeats, use a smaller photo",
                                         "kind": "WorkerDied", "exit_code": 1}}  # fmt: skip
                    if pool is self._pool and not self._closed.is_set():  # every job of a broken pool fails;
                        # rebuild it once (not while closing: close() breaks the pool itself)
                        self._pool = self._new_pool()
                except Exception as exc:  # noqa: BLE001 -- reported on the job, never crashes the server
                    outcome = {"error": {"message": f"internal error: {exc}", "fix": "report this bug",
                                         "kind": "InternalError", "exit_code": 1}}  # fmt: skip
                job.finished = time.time()
                if "result" in outcome:
                    job.status, job.stage, job.result = "done", "done", outcome["result"]
                    if job.photo_sha256 and job.person_folder.is_dir():
                        self._people[job.photo_sha256] = job.id
                else:
                    job.status, job.error = "failed", outcome["error"]
                    log.warning("job %s failed: %s", job_id, outcome["error"]["message"])
            if not self._closed.is_set():
                self._dispatch()

    def _read_events(self, events: multiprocessing.Queue) -> None:
        """Record the stages one pool's workers report, until the server closes or that pool is replaced."""
        while not self._closed.is_set() and events is self._events:
            try:
                job_id, stage = events.get(timeout=0.5)
            except queue.Empty:
                continue
            except Exception:  # noqa: BLE001 -- a pipe broken or garbled by a killed worker: progress only
                return
            with self._lock:
                job = self._jobs.get(job_id)
                if job is not None and job.status == "running":
                    job.stage = stage
                    job.stages_seen.append(stage)

    # -- jobs -----------------------------------------------------------------------------------------

    def new_job_folder(self) -> tuple[str, Path]:
        """A fresh job id (unguessable) and its empty folder, for the upload to be saved into."""
        job_id = secrets.token_urlsafe(16)
        folder = self.root / job_id
        folder.mkdir()
        return job_id, folder

    def reusable_person(self, photo_sha256: str | None = None, job_id: str | None = None) -> Path | None:
        """The saved person of an earlier finished job: by the photo's sha256, or by that job's id."""
        with self._lock:
            source = self._people.get(photo_sha256) if photo_sha256 else job_id
            job = self._jobs.get(source) if source else None
            if job is not None and job.status == "done" and job.person_folder.is_dir():
                return job.person_folder
        return None

    def submit(self, job_id: str, folder: Path, text: str, intensity: float, photo: Path | None = None,
               person: Path | None = None, photo_sha256: str | None = None, photo_name: str = "the photo",
               hair: bool = True, gaze: str = "ahead", light: str = "studio") -> Job:  # fmt: skip
        """Queue a job (its folder from `new_job_folder`); `QueueFull` when too many are waiting."""
        spec = JobSpec(job_id, str(folder), text, intensity, str(photo) if photo else None, photo_name,
                       str(person) if person else None, self.config.max_pixels, self.config.texture_size,
                       self.config.preview_size, hair, gaze, light)  # fmt: skip
        with self._lock:
            if len(self._waiting) >= self.config.max_queued:
                raise QueueFull(f"{len(self._waiting)} jobs are already waiting")
            job = Job(job_id, folder, spec, photo_sha256=photo_sha256)
            self._jobs[job_id] = job
            self._waiting.append(job_id)
            self._dispatch()
            return job

    def get(self, job_id: str) -> Job | None:
        return self._jobs.get(job_id) if JOB_ID.fullmatch(job_id) else None

    def position(self, job: Job) -> int | None:
        """1 for the next job to start, ...; None unless waiting."""
        with self._lock:
            return self._waiting.index(job.id) + 1 if job.id in self._waiting else None

    def counts(self) -> dict[str, int]:
        with self._lock:
            return {"running": len(self._running), "waiting": len(self._waiting), "workers": self.config.workers,
                    "jobs": len(self._jobs)}  # fmt: skip

    # -- cleaning up ----------------------------------------------------------------------------------

    def clean(self, now: float | None = None) -> list[str]:
        """Delete finished jobs older than `keep_seconds`, then the oldest beyond `keep_jobs`, except those
        whose saved person a waiting or running job is using. Returns the deleted ids."""
        now = time.time() if now is None else now
        with self._lock:
            in_use = {Path(self._jobs[j].spec.person).parent.parent.name
                      for j in (*self._waiting, *self._running) if self._jobs[j].spec.person}  # fmt: skip
            finished = sorted((j for j in self._jobs.values() if j.finished is not None and j.id not in in_use),
                              key=lambda j: j.finished or 0.0)  # fmt: skip
            expired = [j for j in finished if now - (j.finished or now) > self.config.keep_seconds]
            extra = finished[: max(0, len(finished) - self.config.keep_jobs)]
            gone = {j.id: j for j in (*expired, *extra)}
            for job in gone.values():
                del self._jobs[job.id]
                if job.photo_sha256 and self._people.get(job.photo_sha256) == job.id:
                    del self._people[job.photo_sha256]
        for job in gone.values():
            shutil.rmtree(job.folder, ignore_errors=True)
        return list(gone)

    def _clean_periodically(self) -> None:
        while not self._closed.wait(timeout=min(60.0, max(1.0, self.config.keep_seconds / 4))):
            self.clean()

    def close(self) -> None:
        """Stop the workers (running jobs are abandoned) and delete the job folders if they are ours."""
        with self._lock:  # no pool is rebuilt from here on (`_finished` checks `_closed`)
            self._closed.set()
            pool, threads = self._pool, list(self._threads)
        processes = list((getattr(pool, "_processes", None) or {}).values())
        pool.shutdown(wait=False, cancel_futures=True)
        for process in processes:
            process.terminate()
        for process in processes:
            process.join(timeout=5.0)
        deadline = time.monotonic() + 2.0  # one wait for all readers (one may be stuck on a killed worker's pipe)
        for thread in threads:
            thread.join(timeout=max(0.0, deadline - time.monotonic()))
        if self._own_root:
            shutil.rmtree(self.root, ignore_errors=True)


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as stream:
        while block := stream.read(1 << 20):
            digest.update(block)
    return digest.hexdigest()
