"""`sie3d web`: one page (photo + sentence -> a live 3D avatar, webcam puppeteering) and the HTTP API
behind it, on FastAPI + uvicorn.

    POST /api/generate       multipart: photo (file) or person (an earlier job's id), text, intensity, hair, gaze,
                             light
                             -> 202 {"id", "status", "position", "url"}; 4xx/503 {"error", "fix"}
    GET  /api/jobs/{id}      -> {"status": queued|running|done|failed, "position", "stage", "progress",
                                 "result": {..., "urls": {...}}, "error": {...}}
    GET  /files/{id}/{path}  the job's outputs (avatar.glb, avatar_obj.zip, preview.png, in_photo.png,
                             report.json)
    GET  /api/health         queue counts

Generations run in worker processes through the avatar API (`sie3d.web.worker`, the same calls as
`sie3d generate`); this process only checks requests and serves files. Uploads are limited in size
(checked from Content-Length before the body is read), sniffed by content (never by name) and checked
for their pixel count from the header; job ids are random; file paths cannot leave a job's folder.
The front end's libraries (three, @mediapipe/tasks-vision) come from npm into ``web/node_modules``
(`npm ci --prefix web`, done by the set-up script); the face landmarker model is served from sie3d's
asset cache. A Content-Security-Policy keeps the page on this server (no CDN, no telemetry).
"""

from __future__ import annotations

import base64
import hashlib
import json
import logging
import re
from pathlib import Path
from typing import Annotated, Any

from fastapi import FastAPI, File, Form, Request, UploadFile
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse, Response
from starlette.staticfiles import StaticFiles

from sie3d.errors import AssetError, PhotoError, Sie3dError, UsageError
from sie3d.web.jobs import STAGES, JobQueue, QueueFull, WebConfig, sha256_of

log = logging.getLogger(__name__)

STATIC = Path(__file__).with_name("static")
_FILE_PATH = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,80}(/[A-Za-z0-9][A-Za-z0-9._-]{0,80})?")
_BAD_NAME = re.compile(r"[/\\\x00]|(^|[/\\])\.\.($|[/\\])|^\.\.")
_MEDIA = {".js": "text/javascript", ".mjs": "text/javascript", ".wasm": "application/wasm",
          ".json": "application/json", ".glb": "model/gltf-binary", ".png": "image/png", ".zip": "application/zip",
          ".task": "application/octet-stream", ".html": "text/html; charset=utf-8", ".css": "text/css"}  # fmt: skip


def default_modules() -> Path:
    """``web/node_modules`` of the source checkout (where the set-up script installs the front end)."""
    return Path(__file__).resolve().parents[3] / "web" / "node_modules"


def _error(status: int, message: str, fix: str = "", **extra: Any) -> JSONResponse:
    return JSONResponse({"error": message, "fix": fix, **extra}, status_code=status)


def _content_security_policy(index_html: str) -> str:
    """Only this server: scripts (the import map by its hash), wasm, fetches (MediaPipe's usage logs to
    Google are blocked), images and blobs of the viewer."""
    importmap = re.search(r'<script type="importmap">(.*?)</script>', index_html, re.S)
    digest = base64.b64encode(hashlib.sha256(importmap.group(1).encode()).digest()).decode() if importmap else ""
    return ("default-src 'self'; "
            f"script-src 'self' 'wasm-unsafe-eval' 'sha256-{digest}'; "
            "connect-src 'self' blob: data:; img-src 'self' blob: data:; media-src 'self' blob: mediastream:; "
            "worker-src 'self' blob:; style-src 'self'; object-src 'none'; base-uri 'none'; frame-ancestors 'none'")


class BodyLimit:
    """ASGI wrapper: a request body over `max_bytes` (by its Content-Length; chunked bodies are counted)
    gets 413 before the application sees it. The body is read and dropped (up to `drain_bytes`) so that
    the client can read the answer instead of seeing its upload cut off."""

    def __init__(self, app: Any, max_bytes: int, drain_bytes: int = 512 * 1024 * 1024) -> None:
        self.app, self.max_bytes, self.drain_bytes = app, max_bytes, drain_bytes

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http" or scope["method"] not in ("POST", "PUT", "PATCH"):
            await self.app(scope, receive, send)
            return
        headers = dict(scope.get("headers") or [])
        length = headers.get(b"content-length")
        if length is None:
            await self._refuse(send, 411, "the request has no Content-Length", "send the upload as a normal form")
            return
        if not length.isdigit() or int(length) > self.max_bytes:
            drained, more = 0, True
            while more and drained < self.drain_bytes:
                message = await receive()
                drained += len(message.get("body", b""))
                more = message.get("more_body", False) and message["type"] == "http.request"
            mb = self.max_bytes / 1024 / 1024
            await self._refuse(send, 413, f"the upload is larger than {mb:.0f} MB",
                               "use a smaller photo (a few MB is plenty; 2048 px on the long side)")
            return
        await self.app(scope, receive, send)

    @staticmethod
    async def _refuse(send: Any, status: int, message: str, fix: str) -> None:
        body = json.dumps({"error": message, "fix": fix}).encode()
        await send({"type": "http.response.start", "status": status,
                    "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
                                (b"connection", b"close")]})  # fmt: skip
        await send({"type": "http.response.body", "body": body})


def create_app(config: WebConfig, jobs: JobQueue | None = None) -> Any:
    """The ASGI application (FastAPI inside a `BodyLimit`); `jobs` is created (and closed at shutdown)
    when not given."""
    from contextlib import asynccontextmanager

    from sie3d.assets.registry import asset_file
    from sie3d.expressions import check_gaze
    from sie3d.lighting import check_light
    from sie3d.photo import image_header
    from sie3d.semantics.text import check_text

    modules = Path(config.modules) if config.modules else default_modules()
    needed = [modules / "three" / "build", modules / "@mediapipe" / "tasks-vision" / "wasm"]
    if not all(p.is_dir() for p in needed):
        raise AssetError(f"the web page's libraries are not installed in {modules}",
                         "run `npm ci --prefix web` in the sie3d checkout (scripts/setup.sh does it)")  # fmt: skip
    landmarker = asset_file("face_landmarker")
    index_html = (STATIC / "index.html").read_text()
    policy = _content_security_policy(index_html)
    own_jobs = jobs is None

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        app.state.jobs = JobQueue(config) if own_jobs else jobs
        try:
            yield
        finally:
            if own_jobs:
                app.state.jobs.close()

    app = FastAPI(title="sie3d", docs_url=None, redoc_url=None, openapi_url=None, lifespan=lifespan)

    class Typed(StaticFiles):
        """Static files with the media types browsers insist on (.mjs, .wasm)."""

        def file_response(self, full_path: Any, *args: Any, **kwargs: Any) -> Response:
            response = super().file_response(full_path, *args, **kwargs)
            media = _MEDIA.get(Path(str(full_path)).suffix)
            if media:
                response.headers["content-type"] = media
            return response

    @app.middleware("http")
    async def security_headers(request: Request, call_next: Any) -> Response:
        response = await call_next(request)
        response.headers["Content-Security-Policy"] = policy
        response.headers["X-Content-Type-Options"] = "nosniff"
        response.headers["Referrer-Policy"] = "no-referrer"
        return response

    @app.get("/", response_class=HTMLResponse)
    async def page() -> HTMLResponse:
        return HTMLResponse(index_html)

    @app.get("/models/face_landmarker.task")
    async def model() -> FileResponse:
        return FileResponse(landmarker, media_type="application/octet-stream")

    @app.get("/api/health")
    async def health(request: Request) -> dict:
        return {"ok": True, **request.app.state.jobs.counts()}

    @app.post("/api/generate", status_code=202)
    async def generate(request: Request, text: Annotated[str, Form()], intensity: Annotated[float, Form()] = 1.0,
                       photo: Annotated[UploadFile | None, File()] = None,
                       person: Annotated[str | None, Form()] = None, hair: Annotated[bool, Form()] = True,
                       gaze: Annotated[str, Form()] = "ahead",
                       light: Annotated[str, Form()] = "studio") -> Any:  # fmt: skip
        jobs: JobQueue = request.app.state.jobs
        try:
            if not 0.0 <= intensity <= 1.0:
                raise UsageError(f"intensity {intensity:g} is outside [0, 1]", "use e.g. 0.5 for a milder face")
            check_text(text)
            check_gaze(gaze)
            check_light(light)
            if (photo is None) == (person is None):
                raise UsageError("send either a photo or the id of an earlier job (person), not both or neither",
                                 "upload a photo the first time; then pass person=<job id> for a new text")
            if photo is not None and _BAD_NAME.search(photo.filename or ""):
                raise PhotoError(f"the file name {photo.filename!r} contains a path",
                                 "upload the file itself, named without folders")  # fmt: skip
        except Sie3dError as exc:
            return _error(400, exc.message, exc.hint, kind=type(exc).__name__)
        job_id, folder = jobs.new_job_folder()
        try:
            source_person, sha, upload = None, None, None
            if person is not None:
                source_person = jobs.reusable_person(job_id=person)
                if source_person is None:
                    raise UsageError(f"no finished job {person!r} to take the person from (or it was cleaned up)",
                                     "upload the photo again")  # fmt: skip
            else:
                upload = folder / "upload"
                with open(upload, "wb") as stream:
                    while block := await photo.read(1 << 20):
                        stream.write(block)
                if upload.stat().st_size == 0:
                    raise PhotoError("the uploaded file is empty", "choose a photo file")
                image_header(upload, max_pixels=config.max_pixels, name=photo.filename or "the upload")  # by content
                sha = sha256_of(upload)
                source_person = jobs.reusable_person(photo_sha256=sha)
                if source_person is not None:
                    upload.unlink()
                    upload = None
            job = jobs.submit(job_id, folder, text, intensity, photo=upload, person=source_person, photo_sha256=sha,
                              photo_name=(photo.filename if photo is not None else None) or "the photo", hair=hair,
                              gaze=gaze, light=light)
        except Sie3dError as exc:
            _remove(folder)
            return _error(400, exc.message, exc.hint, kind=type(exc).__name__)
        except QueueFull:
            _remove(folder)
            response = _error(503, "the server is busy: too many jobs are waiting", "try again in a minute")
            response.headers["Retry-After"] = "30"
            return response
        return {"id": job.id, "status": job.status, "position": jobs.position(job), "url": f"/api/jobs/{job.id}",
                "reused_person": source_person is not None}  # fmt: skip

    @app.get("/api/jobs/{job_id}")
    async def job_status(request: Request, job_id: str) -> Any:
        jobs: JobQueue = request.app.state.jobs
        job = jobs.get(job_id)
        if job is None:
            return _error(404, "no such job (or it was cleaned up)", "generate again")
        stage = job.stage if job.stage in STAGES else job.stage.split(" ")[0]  # "preview <variant>" -> "preview"
        progress = 1.0 if job.status == "done" else STAGES.index(stage) / (len(STAGES) - 1) if stage in STAGES else 0
        body: dict[str, Any] = {"id": job.id, "status": job.status, "position": jobs.position(job),
                                "stage": job.stage, "progress": round(progress, 3), "stages": job.stages_seen,
                                "queue": jobs.counts()}  # fmt: skip
        if job.result is not None:
            urls = {k: f"/files/{job.id}/{v}" for k, v in job.result["files"].items()}
            body["result"] = {**job.result, "urls": urls}
        if job.error is not None:
            body["error"] = job.error
        return body

    @app.get("/files/{job_id}/{path:path}")
    async def files(request: Request, job_id: str, path: str) -> Any:
        jobs: JobQueue = request.app.state.jobs
        job = jobs.get(job_id)
        if job is None or job.status != "done" or not _FILE_PATH.fullmatch(path) or path.startswith("person"):
            return _error(404, "no such file", "use the URLs that /api/jobs/{id} lists")
        root = (job.folder / "out").resolve()
        target = (root / path).resolve()
        if not target.is_relative_to(root) or not target.is_file():
            return _error(404, "no such file", "use the URLs that /api/jobs/{id} lists")
        return FileResponse(target, media_type=_MEDIA.get(target.suffix, "application/octet-stream"),
                            filename=target.name if target.suffix in (".glb", ".zip", ".json") else None)  # fmt: skip

    app.mount("/static", Typed(directory=STATIC), name="static")
    app.mount("/vendor/three", Typed(directory=modules / "three"), name="three")
    app.mount("/vendor/mediapipe", Typed(directory=modules / "@mediapipe" / "tasks-vision"), name="mediapipe")
    return BodyLimit(app, config.max_upload_bytes + 64 * 1024)  # + the form's text fields


def _remove(folder: Path) -> None:
    import shutil

    shutil.rmtree(folder, ignore_errors=True)


def serve(config: WebConfig) -> None:
    """Run the server until interrupted (Ctrl-C)."""
    import uvicorn

    if config.host not in ("127.0.0.1", "localhost", "::1"):
        log.warning("listening on %s: anyone who can reach this machine can use the server", config.host)
    app = create_app(config)
    print(f"sie3d web: http://{config.host}:{config.port}/ ({config.workers} worker(s); Ctrl-C stops)", flush=True)
    uvicorn.run(app, host=config.host, port=config.port, log_level="warning", timeout_graceful_shutdown=3)
