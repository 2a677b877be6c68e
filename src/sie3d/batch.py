"""`sie3d batch`: many photos x many texts, resumable, on a local process pool or on Ray actors.

A batch is a list of `BatchItem`s (one avatar each: a photo, a text or the photo's own expression, an
intensity), read from a folder of photos or a CSV manifest, times the prompts of a ``--prompts`` file.
Items are grouped by photo into `PhotoJob`s: a worker reconstructs the person once (or loads it from an
earlier run) and writes every item of that photo through the avatar API (`sie3d.avatar`), the same
path as `sie3d generate`. Workers load their models once: a process of a local pool (default) or a
Ray actor (``engine="ray"``), mapped over the jobs by `concurrent.futures` or by `ray.util.ActorPool`.

Layout of the output folder::

    OUT/<item id>/          one finished avatar: avatar.glb, avatar.obj (+ .mtl, textures), preview.png,
                            in_photo.png (as the output options say), report.json, item.json
    OUT/people/<photo key>/ the person of each photo (`Person.save`), reused by its items and by reruns
    OUT/summary.csv         one row per item: done or failed, why, how long, the emotion read
    OUT/summary.md          counts, throughput, failures
    OUT/.partial/           work in progress: each job writes here and renames every item into place
                            when it is complete, so a finished ``OUT/<item id>/`` is always whole

A rerun of the same command skips the items whose folder exists and retries the rest (failures
included); ``.partial/`` leftovers of a killed run are removed first.
"""

from __future__ import annotations

import csv
import dataclasses
import json
import logging
import os
import re
import shutil
import tempfile
import time
import traceback
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from sie3d.errors import Sie3dError, UsageError

if TYPE_CHECKING:
    from sie3d.avatar import Models, OutputConfig, Person, ReconstructConfig, Variant

log = logging.getLogger(__name__)

Engine = Literal["local", "ray"]
ENGINES = ("local", "ray")
PEOPLE, PARTIAL = "people", ".partial"
ITEM_JSON, SUMMARY_CSV, SUMMARY_MD = "item.json", "summary.csv", "summary.md"
MANIFEST_COLUMNS = ("photo", "text", "intensity", "id")
_ITEM_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")  # a plain folder name, as `Variant` names
_RESERVED_IDS = (PEOPLE, "person", "report.json", SUMMARY_CSV, SUMMARY_MD)


# -- what to make ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class BatchItem:
    """One avatar of the batch: `photo` wearing `text` (None: the photo's own expression) at `intensity`
    (0..1), written to ``OUT/<id>/``. `source` says where it was asked for (``manifest.csv:12``)."""

    id: str
    photo: Path
    text: str | None = None
    intensity: float = 1.0
    source: str = ""


@dataclass(frozen=True)
class PhotoJob:
    """The unit a worker runs: one photo (resolved path), its person folder name (``people/<key>``) and its
    items."""

    photo: Path
    key: str
    items: tuple[BatchItem, ...]


@dataclass(frozen=True)
class ItemResult:
    """What became of one item in this run."""

    id: str
    status: Literal["done", "failed"]
    seconds: float = 0.0  # the item's share of its job's wall time
    error_type: str = ""  # the `Sie3dError` class, or "internal" for a bug (traceback in the log)
    exit_code: int = 0  # what `sie3d generate` would have exited with
    error: str = ""  # message and fix
    info: dict = field(default_factory=dict)  # item.json of a finished item


@dataclass(frozen=True)
class BatchConfig:
    """How every job of a batch runs (the same on every worker; recorded in the summary)."""

    output: OutputConfig
    reconstruct: ReconstructConfig
    save_people: bool = True  # keep people/<key>/: reruns and new prompts reuse the fit
    threads: int = 1  # torch threads per worker (1 per worker and one worker per core is fastest)


def _fail(where: str, message: str, hint: str) -> UsageError:
    return UsageError(f"{where}: {message}", hint)


def _intensity(value: str, where: str) -> float:
    try:
        intensity = float(value)
    except ValueError:
        intensity = float("nan")
    if not 0.0 <= intensity <= 1.0:
        raise _fail(where, f"intensity {value!r} is not a number in [0, 1]", "write e.g. 0.5, or leave it empty for 1")
    return intensity


def read_manifest(path: Path) -> list[BatchItem]:
    """The items of a CSV manifest: a header with ``photo`` and optionally ``text``, ``intensity`` and ``id``
    (other columns are ignored); photo paths relative to the manifest's folder. An empty text means the
    photo's own expression, an empty intensity 1. Every bad row raises a `UsageError` naming its line."""
    from sie3d.semantics.prompts import check_prompt

    path = Path(path)
    fix = "each row: photo,text,intensity,id (only photo is required), e.g. faces/ann.jpg,a warm smile,0.8,ann-smile"
    try:
        with path.open(newline="", encoding="utf-8-sig") as stream:
            reader = csv.DictReader(stream)
            header = [(name or "").strip().lower() for name in (reader.fieldnames or [])]
            if "photo" not in header:
                raise _fail(f"{path}:1", f"the header {','.join(header) or '(empty)'} has no 'photo' column", fix)
            reader.fieldnames = header
            items = []
            for row in reader:
                where = f"{path}:{reader.line_num}"
                if None in row:
                    raise _fail(where, f"{len(header) + len(row[None])} fields for {len(header)} columns",
                                "quote texts that contain commas")  # fmt: skip
                values = {k: (row.get(k) or "").strip() for k in MANIFEST_COLUMNS}
                if not any(values.values()):
                    continue  # a blank line
                if not values["photo"]:
                    raise _fail(where, "the photo is empty", fix)
                text = check_prompt(values["text"], where) if values["text"] else None
                intensity = _intensity(values["intensity"], where) if values["intensity"] else 1.0
                if values["id"] and (not _ITEM_ID.fullmatch(values["id"]) or values["id"] in _RESERVED_IDS):
                    raise _fail(where, f"id {values['id']!r} is not a plain folder name",
                                "use letters, digits, . _ - (at most 64, not starting with . _ -)")  # fmt: skip
                items.append(BatchItem(values["id"], path.parent / values["photo"], text, intensity, where))
    except UnicodeDecodeError as exc:
        raise _fail(str(path), f"not UTF-8 text ({exc.reason})", "save the manifest as UTF-8 CSV") from None
    except csv.Error as exc:
        raise _fail(str(path), f"not a CSV file ({exc})", fix) from None
    except OSError as exc:
        raise _fail(str(path), f"cannot be read ({exc.strerror})", "check the path") from None
    if not items:
        raise _fail(str(path), "lists no photos", fix)
    return items


def read_prompts(path: Path) -> list[str]:
    """One prompt per line; blank lines and ``#`` comments skipped; a prompt that cannot be used raises a
    `UsageError` naming its line."""
    from sie3d.semantics.prompts import check_prompt

    path = Path(path)
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise _fail(str(path), f"cannot be read as UTF-8 text ({exc})",
                    "pass a text file, one prompt per line") from None  # fmt: skip
    prompts = [check_prompt(line.strip(), f"{path}:{number}") for number, line in enumerate(lines, 1)
               if line.strip() and not line.lstrip().startswith("#")]  # fmt: skip
    if not prompts:
        raise _fail(str(path), "holds no prompt", "write one prompt per line")
    return prompts


def plan(source: Path, prompts: Sequence[str] = (), intensity: float = 1.0) -> list[BatchItem]:
    """The items of a batch: `source` is a folder of photos or a CSV manifest (`read_manifest`); each
    prompt applies to each distinct photo at `intensity`. A folder without prompts gives one item per
    photo with its own expression. Items without an id get ``<photo stem>-<text words>`` (unique)."""
    from sie3d.photo import PHOTO_SUFFIXES

    source = Path(source)
    if source.is_dir():
        photos = sorted(p for p in source.iterdir() if p.suffix.lower() in PHOTO_SUFFIXES)
        if not photos:
            raise UsageError(f"no photos in {source}", f"put {', '.join(sorted(PHOTO_SUFFIXES))} files in it")
        items = [] if prompts else [BatchItem("", p, None, 1.0, str(p)) for p in photos]
    elif source.is_file():
        items = read_manifest(source)
        photos = list(dict.fromkeys(item.photo for item in items))
    else:
        raise UsageError(f"{source}: no such folder or manifest", "pass a folder of photos or a manifest.csv")
    items += [BatchItem("", photo, text, intensity, f"prompt {text!r}") for photo in photos for text in prompts]
    return _name_items(items)


def _name_items(items: list[BatchItem]) -> list[BatchItem]:
    """Give every item without an id a unique readable one; refuse two items with one id, and two items
    that would make the same avatar."""
    from sie3d.semantics.interpret import clipped, variant_names

    seen: dict[tuple, str] = {}
    for item in items:
        key = (item.photo.resolve(), item.text, item.intensity)
        if key in seen:
            raise UsageError(f"{item.source}: the same photo, text and intensity as {seen[key]}",
                             "remove one of the two rows (or the prompt that repeats a manifest text)")  # fmt: skip
        seen[key] = item.source
    taken: dict[str, str] = {}
    for item in items:
        if item.id:
            taken.setdefault(item.id, item.source)
    named = []
    for item in items:
        if item.id:
            if taken[item.id] != item.source:
                raise UsageError(f"{item.source}: id {item.id!r} is already used by {taken[item.id]}",
                                 "give every row its own id (or leave the id column empty)")  # fmt: skip
            named.append(item)
            continue
        stem = re.sub(r"[^A-Za-z0-9._-]+", "-", item.photo.stem).strip("-._") or "photo"
        words = variant_names([item.text])[0] if item.text else "expression"
        strength = "" if item.intensity == 1.0 else f"-i{item.intensity:g}"
        base = f"{stem[:32]}-{clipped(words, 24)}".strip("-") + strength
        name, count = base, 1
        while name in taken:
            count += 1
            name = f"{base}-{count}"
        taken[name] = item.source
        named.append(dataclasses.replace(item, id=name))
    return named


def jobs_of(items: Iterable[BatchItem]) -> list[PhotoJob]:
    """Items grouped by photo (in order of first appearance), each photo with a unique person key."""
    groups: dict[Path, list[BatchItem]] = {}
    for item in items:
        groups.setdefault(item.photo.resolve(), []).append(item)
    keys: set[str] = set()
    jobs = []
    for photo, group in groups.items():
        base = re.sub(r"[^A-Za-z0-9._-]+", "-", photo.stem).strip("-._")[:48] or "photo"
        key, count = base, 1
        while key in keys:
            count += 1
            key = f"{base}-{count}"
        keys.add(key)
        jobs.append(PhotoJob(photo, key, tuple(group)))  # the resolved path: reruns from elsewhere match
    return jobs


def finished(item: BatchItem, out: Path) -> dict | None:
    """The ``item.json`` of `item` when ``OUT/<id>/`` holds it finished -- from the same photo, text and
    intensity (an earlier batch into the same folder may have used the id for another avatar) -- else None."""
    path = out / item.id / ITEM_JSON
    if not path.is_file():
        return None
    try:
        info = json.loads(path.read_text())
    except ValueError:
        return None
    wanted = (str(item.photo.resolve()), item.text, item.intensity)
    same = (info.get("photo"), info.get("text"), info.get("intensity")) == wanted
    return info if same else None


def pending(jobs: Iterable[PhotoJob], out: Path) -> list[PhotoJob]:
    """The jobs with their `finished` items left out; jobs left empty dropped."""
    left = []
    for job in jobs:
        items = tuple(item for item in job.items if finished(item, out) is None)
        if items:
            left.append(dataclasses.replace(job, items=items))
    return left


# -- one job, on any worker ----------------------------------------------------------------------------


def run_job(job: PhotoJob, out: Path, config: BatchConfig, models: Models) -> list[ItemResult]:
    """Make every item of `job` into ``OUT/<id>/``: the person from ``OUT/people/<key>/`` when an earlier
    run saved it, else reconstructed (and saved); then `write_outputs` for all items at once into a
    private folder under ``OUT/.partial/``, each item renamed into place when complete. A `Sie3dError`
    (no face, corrupt photo ...) or a bug fails the job's items, recorded in the results; never raises."""
    from sie3d.avatar import Person, reconstruct, with_hair_as_asked, write_outputs
    from sie3d.photo import load_photo

    start = time.perf_counter()
    out = Path(out)
    (out / PARTIAL).mkdir(parents=True, exist_ok=True)
    stage = Path(tempfile.mkdtemp(prefix=f"{job.key}-", dir=out / PARTIAL))
    try:
        saved = out / PEOPLE / job.key
        reused = _saved_person_of(saved, job.photo)
        person = Person.load(saved) if reused else reconstruct(load_photo(job.photo), models, config.reconstruct)
        if reused:
            person = with_hair_as_asked(person, models, config.reconstruct.hair)  # made if missing, or off
        variants = item_variants(person, models, job.items)
        write_outputs(person, models, variants, stage, config.output, save_person=config.save_people and not reused)
        report = json.loads((stage / "report.json").read_text())
        if config.save_people and not reused:
            (out / PEOPLE).mkdir(exist_ok=True)
            _replace(stage / "person", saved)
        share = (time.perf_counter() - start) / len(job.items)
        results = []
        for item, variant in zip(job.items, variants, strict=True):
            folder = stage / variant.name
            info = {"id": item.id, "photo": str(job.photo), "text": item.text, "intensity": item.intensity,
                    "source": item.source, "person": f"{PEOPLE}/{job.key}" if config.save_people else None,
                    "person_reused": reused, "seconds": round(share, 3), **_reading(variant)}  # fmt: skip
            item_report = {**report, "variants": {variant.name: report["variants"][variant.name]}, "batch": info}
            (folder / "report.json").write_text(json.dumps(item_report, indent=1))
            (folder / ITEM_JSON).write_text(json.dumps(info, indent=1))
            _replace(folder, out / item.id)
            results.append(ItemResult(item.id, "done", share, info=info))
        return results
    except Sie3dError as exc:
        message = f"{exc.message} (fix: {exc.hint})" if exc.hint else exc.message
        return _failed(job, start, type(exc).__name__, exc.exit_code, message)
    except Exception as exc:  # a bug must not stop a batch of hundreds; the traceback goes to the log
        log.error("%s failed:\n%s", job.photo, traceback.format_exc())
        return _failed(job, start, "internal", 1, f"{type(exc).__name__}: {exc}")
    finally:
        shutil.rmtree(stage, ignore_errors=True)


def item_variants(person: Person, models: Models, items: Sequence[BatchItem]) -> list[Variant]:
    """One `Variant` per item, named by its id: `text_variants` for texts (one call per intensity),
    `photo_variants` (the photo's own expression, scaled from the rest by the intensity) otherwise."""
    from sie3d.avatar import Variant, photo_variants, text_variants

    made: dict[str, Variant] = {}
    for intensity in dict.fromkeys(item.intensity for item in items):
        group = [item for item in items if item.intensity == intensity and item.text is not None]
        if group:
            readings = text_variants(person, models, [item.text for item in group], intensity)
            made.update({item.id: dataclasses.replace(variant, name=item.id)
                         for item, variant in zip(group, readings, strict=True)})  # fmt: skip
    for item in items:
        if item.text is None:
            own = photo_variants(person, ["expression"])[0]
            rest = person.rest_expression
            made[item.id] = Variant(item.id, rest + item.intensity * (own.coefficients - rest), own.info)
    return [made[item.id] for item in items]


def _reading(variant: Variant) -> dict:
    reading = variant.info.get("text")
    if not reading:
        return {"emotion": "", "confidence": None}
    emotion = max(reading["emotions"].items(), key=lambda kv: kv[1])[0]
    return {"emotion": emotion, "confidence": round(float(reading["confidence"]), 3)}


def _saved_person_of(folder: Path, photo: Path) -> bool:
    """Whether `folder` holds a saved person reconstructed from `photo` (not another photo of that name)."""
    from sie3d.avatar import read_person_json

    try:
        return read_person_json(folder)["photo"]["path"] == str(photo)
    except (Sie3dError, KeyError, TypeError):
        return False


def _replace(source: Path, target: Path) -> None:
    """Move a finished folder into place (an existing one is replaced as a whole)."""
    if target.exists():
        shutil.rmtree(target)
    os.replace(source, target)


def _failed(job: PhotoJob, start: float, error_type: str, exit_code: int, message: str) -> list[ItemResult]:
    share = (time.perf_counter() - start) / len(job.items)
    return [ItemResult(item.id, "failed", share, error_type, exit_code, message) for item in job.items]


# -- engines -----------------------------------------------------------------------------------------


class Worker:
    """Models loaded once, jobs run one after another: the body of a pool process or of a Ray actor."""

    def __init__(self, config: BatchConfig) -> None:
        import torch

        from sie3d.avatar import Models

        torch.set_num_threads(config.threads)
        self.config = config
        self.models = Models.load()

    def run(self, job: PhotoJob, out: str) -> list[ItemResult]:
        return run_job(job, Path(out), self.config, self.models)


_worker: Worker | None = None  # the worker of this pool process (set by its initializer)


def _start_pool_worker(config: BatchConfig) -> None:
    global _worker
    _worker = Worker(config)


def _run_in_pool(job: PhotoJob, out: str) -> list[ItemResult]:
    assert _worker is not None, "the pool's initializer did not run"
    return _worker.run(job, out)


def run_local(jobs: Sequence[PhotoJob], out: Path, config: BatchConfig, workers: int) -> Iterator[list[ItemResult]]:
    """Results of every job, as they finish, from a pool of `workers` processes (spawned: MediaPipe and
    torch threads do not survive a fork); each loads the models once."""
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor, as_completed

    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(workers, mp_context=context, initializer=_start_pool_worker,
                             initargs=(config,)) as pool:  # fmt: skip
        futures = [pool.submit(_run_in_pool, job, str(out)) for job in jobs]
        try:
            for future in as_completed(futures):
                yield future.result()
        finally:
            for future in futures:
                future.cancel()


def run_ray(jobs: Sequence[PhotoJob], out: Path, config: BatchConfig, workers: int | None,
            address: str | None = None) -> Iterator[list[ItemResult]]:  # fmt: skip
    """Results of every job, as they finish, from Ray actors (`Worker`, one CPU each) mapped over the jobs
    by `ray.util.ActorPool`. Without `address` a local Ray instance with `workers` CPUs is started (and
    stopped at the end); with one (``ray://host:10001`` or ``auto``) the job joins that cluster and
    starts `workers` actors (default: one per CPU of the cluster). `out` and the photos must be on a
    file system every node sees."""
    try:
        import ray
        from ray.util import ActorPool
    except ImportError:
        raise UsageError("--engine ray needs Ray, which is not installed", "pip install 'ray==2.60.0'") from None
    started = not ray.is_initialized()
    if started:
        options = {"address": address} if address else {"num_cpus": workers}
        ray.init(**options, include_dashboard=False, log_to_driver=False, logging_level=logging.WARNING)
    try:
        count = workers or max(1, int(ray.cluster_resources().get("CPU", 1)))
        actor = ray.remote(num_cpus=1)(Worker)
        actors = [actor.remote(config) for _ in range(min(count, len(jobs)))]
        yield from ActorPool(actors).map_unordered(lambda actor, job: actor.run.remote(job, str(out)), jobs)
    finally:
        if started:
            ray.shutdown()


# -- the whole batch ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class BatchSummary:
    """A run of a batch: every planned item's latest state and the run's own figures."""

    rows: list[dict]  # one per planned item (SUMMARY_CSV's columns)
    made: int  # avatars made in this run
    failed: int  # items that failed in this run
    skipped: int  # items finished by an earlier run
    seconds: float  # wall time of this run (workers' start included)
    engine: str
    workers: int

    @property
    def per_minute(self) -> float:
        return 60.0 * self.made / self.seconds if self.seconds > 0 else 0.0


SUMMARY_COLUMNS = ("id", "status", "photo", "text", "intensity", "folder", "person", "emotion", "confidence",
                   "seconds", "error_type", "exit_code", "error")  # fmt: skip


def run_batch(items: Sequence[BatchItem], out: Path, config: BatchConfig, engine: Engine = "local",
              workers: int | None = None, address: str | None = None,
              progress: Callable[[int, int], Callable[[int], None]] | None = None) -> BatchSummary:  # fmt: skip
    """Make every item not finished yet into ``OUT/<id>/`` and write ``summary.csv`` and ``summary.md``
    (also when interrupted: what finished is recorded). `progress(total, skipped)` returns a callback
    called with the number of items of each finished job."""
    if engine not in ENGINES:
        raise UsageError(f"--engine {engine!r} is not one of {', '.join(ENGINES)}", "use --engine local or ray")
    if workers is not None and workers < 1:
        raise UsageError(f"--workers {workers} must be at least 1", "e.g. --workers 2 (one per CPU core)")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    shutil.rmtree(out / PARTIAL, ignore_errors=True)  # a killed run's leftovers
    jobs = jobs_of(items)
    todo = pending(jobs, out)
    n_todo = sum(len(job.items) for job in todo)
    count = workers
    if count is None and (engine == "local" or address is None):
        count = os.cpu_count() or 1  # one per core here; on a cluster, `run_ray` asks Ray
    if todo and count:
        count = min(count, len(todo))
    step = progress(len(items), len(items) - n_todo) if progress else None
    results: dict[str, ItemResult] = {}
    start = time.perf_counter()
    try:
        if todo:
            runs = run_local(todo, out, config, count) if engine == "local" else run_ray(todo, out, config, count,
                                                                                      address)  # fmt: skip
            for job_results in runs:
                results.update((r.id, r) for r in job_results)
                if step:
                    step(len(job_results))
    finally:
        summary = _summarise(jobs, out, results, time.perf_counter() - start, engine, count or 0, n_todo)
        write_summary(summary, out, config)
    return summary


def _summarise(jobs: Sequence[PhotoJob], out: Path, results: dict[str, ItemResult], seconds: float, engine: str,
               workers: int, n_todo: int) -> BatchSummary:  # fmt: skip
    rows = []
    for job in jobs:
        for item in job.items:
            result = results.get(item.id)
            info = finished(item, out) or {}
            row = {"id": item.id, "photo": str(item.photo), "text": item.text or "", "intensity": item.intensity,
                   "folder": "", "person": "", "emotion": "", "confidence": "", "seconds": "", "error_type": "",
                   "exit_code": "", "error": ""}  # fmt: skip
            if info:
                row.update(status="done" if result else "done earlier", folder=f"{item.id}/",
                           person=info.get("person") or "", emotion=info.get("emotion", ""),
                           confidence=info.get("confidence") if info.get("confidence") is not None else "",
                           seconds=info.get("seconds", ""))  # fmt: skip
            elif result is not None:
                row.update(status="failed", seconds=round(result.seconds, 3), error_type=result.error_type,
                           exit_code=result.exit_code, error=result.error)  # fmt: skip
            else:
                row["status"] = "not run"  # the run was interrupted before this item's job finished
            rows.append(row)
    made = sum(r.status == "done" for r in results.values())
    failed = sum(r.status == "failed" for r in results.values())
    total = sum(len(job.items) for job in jobs)
    return BatchSummary(rows, made, failed, total - n_todo, seconds, engine, workers)


def write_summary(summary: BatchSummary, out: Path, config: BatchConfig) -> None:
    """``summary.csv`` (every item) and ``summary.md`` (counts, throughput, failures) in `out`."""
    with (out / SUMMARY_CSV).open("w", newline="", encoding="utf-8") as stream:
        writer = csv.DictWriter(stream, SUMMARY_COLUMNS)
        writer.writeheader()
        writer.writerows(summary.rows)
    states: dict[str, int] = {}
    for row in summary.rows:
        states[row["status"]] = states.get(row["status"], 0) + 1
    failures = [row for row in summary.rows if row["status"] == "failed"]
    lines = [
        "# sie3d batch",
        "",
        f"{len(summary.rows)} items: " + ", ".join(f"{n} {state}" for state, n in sorted(states.items())) + ".",
        "",
        f"This run: {summary.made} avatars made, {summary.failed} failed, {summary.skipped} finished earlier "
        f"(skipped), in {summary.seconds:.1f} s on {summary.workers} {summary.engine} worker(s): "
        f"**{summary.per_minute:.1f} avatars/min** (worker start-up included).",
        "",
        f"Outputs per item: {', '.join(config.output.formats) or 'no mesh'}"
        f"{', preview' if config.output.previews else ''}{', in-photo composite' if config.output.in_photo else ''};"
        f" texture {config.reconstruct.texture_size} px; people saved: {'yes' if config.save_people else 'no'}.",
    ]
    if failures:
        lines += ["", "## Failures", "", "| id | photo | error | exit code | message |", "|---|---|---|---|---|"]
        lines += [f"| {r['id']} | {r['photo']} | {r['error_type']} | {r['exit_code']} | "
                  f"{str(r['error']).replace('|', '/')} |" for r in failures]  # fmt: skip
        lines += ["", "Fix or remove these photos and run the same command again: finished items are skipped."]
    (out / SUMMARY_MD).write_text("\n".join(lines) + "\n", encoding="utf-8")
