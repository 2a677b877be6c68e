"""What a web job does, in a worker process: the avatar API, as the CLI's `generate` calls it.

A worker process holds one `Models` (loaded once, in `init_worker`) and runs one job at a time on one
torch thread. A job is: the person (reconstructed from the uploaded photo, or loaded from an earlier
job's ``person/`` folder: seconds instead of a refit) -> `text_variants` for the text -> `write_outputs`
into a staging folder, renamed to ``out/`` when complete. Results and errors come back as plain dicts
(they cross a process boundary); progress goes through the queue given to `init_worker`.
"""

from __future__ import annotations

import dataclasses
import errno
import logging
import os
import shutil
import time
import traceback
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

_STATE: dict[str, Any] = {}  # this worker process's models and progress queue (set by init_worker)


def init_worker(events: Any, preload: bool = True) -> None:
    """Process initializer: one torch thread, the models loaded now (not on the first job), and the queue
    that progress events go to as ``(job id, stage)``."""
    import torch

    from sie3d.avatar import Models

    torch.set_num_threads(1)
    models = Models.load()
    if preload:
        models.preload()
    _STATE.update(models=models, events=events)


def warm_up() -> int:
    """A no-op job: makes the pool start a worker (and load its models) before the first real job."""
    return os.getpid()


@dataclass(frozen=True)
class JobSpec:
    """One generation: where to work, the source (a photo file or a saved person folder) and the text."""

    job_id: str
    folder: str  # the job's folder; outputs go to folder/out
    text: str
    intensity: float
    photo: str | None = None  # the uploaded photo file (already checked by its header)
    photo_name: str = "the photo"  # what the user called it (messages and the report name it so)
    person: str | None = None  # or a saved person folder of an earlier job
    max_pixels: int = 40_000_000
    texture_size: int = 1024
    preview_size: int = 384
    hair: bool = True  # the hair volume (`sie3d.hair`): made for this job if the person has none yet; False: off
    gaze: str = "ahead"  # where the face looks unless the text turns the eyes (`ReconstructConfig.gaze`)
    light: str = "studio"  # how preview.png is lit (`sie3d.lighting`)


def run_job(spec: JobSpec) -> dict:
    """Generate the avatar for `spec`; returns ``{"result": {...}}`` or ``{"error": {...}}``."""
    from sie3d.errors import OutputError, Sie3dError

    events = _STATE["events"]

    def progress(stage: str) -> None:
        events.put((spec.job_id, stage))

    start = time.perf_counter()
    try:
        result = _generate(spec, _STATE["models"], progress)
    except Sie3dError as exc:
        return {"error": {"message": exc.message, "fix": exc.hint, "kind": type(exc).__name__,
                          "exit_code": exc.exit_code}}  # fmt: skip
    except Exception as exc:
        if isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG):
            return {"error": {"message": f"the server cannot write the outputs: {exc.strerror}",
                              "fix": "try again later (the server's administrator must free disk space)",
                              "kind": OutputError.__name__, "exit_code": OutputError.exit_code}}  # fmt: skip
        log.error("job %s failed:\n%s", spec.job_id, traceback.format_exc())  # a bug: logged in full
        return {"error": {"message": f"internal error: {type(exc).__name__}: {exc}", "fix": "report this bug",
                          "kind": "InternalError", "exit_code": 1}}  # fmt: skip
    finally:
        shutil.rmtree(Path(spec.folder) / "out.partial", ignore_errors=True)  # a failed job leaves no half output
    result["seconds"] = round(time.perf_counter() - start, 2)
    return {"result": result}


def _generate(spec: JobSpec, models: Any, progress: Any) -> dict:
    from sie3d.avatar import (
        OutputConfig,
        Person,
        ReconstructConfig,
        reconstruct,
        text_variants,
        with_hair_as_asked,
        write_outputs,
    )
    from sie3d.errors import PhotoError
    from sie3d.hair.config import HairConfig
    from sie3d.photo import load_photo

    folder = Path(spec.folder)
    if spec.person is not None:
        progress("load person")
        loaded = Person.load(spec.person)
        # as the boxes say: the hair made or taken off, the eyes looking ahead or as in the photo
        person = with_hair_as_asked(loaded, models, spec.hair, progress).looking(spec.gaze)
        saved = Path(spec.person) if person is loaded else None  # hair or gaze changed: saved anew
    else:
        progress("read photo")
        try:
            photo = dataclasses.replace(load_photo(spec.photo, max_pixels=spec.max_pixels), path=Path(spec.photo_name))
        except PhotoError as exc:  # name the user's file, not the server's copy of it
            raise PhotoError(exc.message.replace(str(spec.photo), spec.photo_name), exc.hint) from None
        config = ReconstructConfig(texture_size=spec.texture_size, hair=HairConfig(enabled=spec.hair), gaze=spec.gaze)
        person, saved = reconstruct(photo, models, config, progress), None
    progress("text")
    variant = text_variants(person, models, [spec.text], spec.intensity)[0]
    stage = folder / "out.partial"
    shutil.rmtree(stage, ignore_errors=True)
    config = OutputConfig(preview_size=spec.preview_size, light=spec.light)
    write_outputs(person, models, [variant], stage, config, saved_copy=saved, progress=progress)
    progress("package")
    obj_files = sorted((stage / variant.name).glob("avatar*"))
    with zipfile.ZipFile(stage / variant.name / "avatar_obj.zip", "w", zipfile.ZIP_DEFLATED) as archive:
        for path in obj_files:
            if path.suffix != ".glb":
                archive.write(path, path.name)
    os.replace(stage, folder / "out")
    return summarise(person, variant)


def summarise(person: Any, variant: Any) -> dict:
    """What the page shows: fit error, the text's reading, warnings, and the rig weights of the variant, of
    each emotion preset (on this person's rest face) and of the rest (`sie3d.export.rig` names)."""
    from sie3d.export.rig import rig_names, rig_weights
    from sie3d.expressions import EMOTIONS, on_top_of_rest, prototype

    names = rig_names()

    def weights(coefficients: Any) -> dict[str, float]:
        return {n: round(float(v), 4) for n, v in zip(names, rig_weights(coefficients), strict=True)}

    reading = variant.info["text"]
    presets = {e: weights(on_top_of_rest(person.rest_expression, prototype(e))) for e in EMOTIONS}
    presets["text"] = weights(variant.coefficients)
    fit = person.fit
    return {
        "variant": variant.name,
        "text": reading["text"],
        "emotions": reading["emotions"],
        "top_emotion": reading["top_emotion"],
        "confidence": reading["confidence"],
        "warnings": [*person.warnings, *reading["warnings"]],
        "fit_error_percent_of_eye_distance": round(100 * fit.landmark_error_iod, 2),
        "texture_from_photo_percent": round(100 * person.textures.coverage, 1),
        "faces_found": len(person.faces),
        "hair_note": person.hair_note,
        "presets": presets,
        "files": {"glb": f"{variant.name}/avatar.glb", "obj_zip": f"{variant.name}/avatar_obj.zip",
                  "preview": f"{variant.name}/preview.png", "in_photo": f"{variant.name}/in_photo.png",
                  "report": "report.json"},
    }  # fmt: skip
