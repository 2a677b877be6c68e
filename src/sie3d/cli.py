"""The `sie3d` command line: one verb per stage.

Every user-caused failure is a `Sie3dError`: printed as one message plus its fix, with a distinct exit
code (see `sie3d.errors`), never a traceback; outputs are written only when the command succeeds.
"""

from __future__ import annotations

import argparse
import errno
import gc
import json
import logging
import os
import shutil
import sys
import tempfile
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from sie3d import __version__
from sie3d.errors import AssetError, OutputError, Sie3dError, UsageError
from sie3d.logs import native_logs_filtered

if TYPE_CHECKING:
    from sie3d.avatar import Models, Person, Variant

log = logging.getLogger("sie3d")


# -- assets ---------------------------------------------------------------------------------------


def _cmd_assets(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from sie3d.assets import ict, registry

    names = list(registry.manifest())
    wanted = args.names or ["all"]
    if args.action == "list":
        print(f"cache: {registry.cache_dir()}")
        for asset in registry.manifest().values():
            state = _summarise(registry.check(asset, full_hash=False))
            print(f"  {asset.name:15s} {state:8s} {asset.requirement:28s} {asset.license}")
            print(f"  {'':15s} {'':8s} {asset.role}")
        state, detail = ict.verify()
        source = ict.locate_source()
        print(f"  {'ict':15s} {state:8s} {'ICT-FaceKit @' + ict.ICT_COMMIT[:8]:28s} MIT (USC ICT)")
        print(f"  {'':15s} {'':8s} head model; source: {source or ict.ICT_UPSTREAM_ZIP}")
        return 0
    if "all" in wanted:
        wanted = [*names, "ict"]
    unknown = [n for n in wanted if n not in names and n != "ict"]
    if unknown:
        raise UsageError(f"unknown asset(s): {', '.join(unknown)}", f"choose from: {', '.join(names)}, ict, all")
    failures = 0
    for name in tqdm(wanted, desc=f"{args.action} assets", unit="asset", disable=_no_bar(args)):
        if name == "ict":
            if args.action == "fetch":
                from sie3d.head import correspondence

                ict.convert(force=args.force)
                correspondence.load(rebuild=args.force)  # MediaPipe -> ICT landmark map, built once
            state, detail = ict.verify()
            statuses = [(state, detail)]
        else:
            asset = registry.spec(name)
            if args.action == "fetch":
                registry.fetch(asset, force=args.force)
            statuses = [(s.state, f"{s.path} {s.detail}".strip()) for s in registry.check(asset)]
        for state, detail in statuses:
            failures += state != "ok"
            if state != "ok" or not args.quiet:
                tqdm.write(f"{name:15s} {state:8s} {detail}")
    if failures:
        raise AssetError(f"{failures} asset file(s) missing or corrupt", "run `sie3d assets fetch --force`")
    return 0


def _summarise(statuses: list) -> str:
    states = {s.state for s in statuses}
    return "ok" if states == {"ok"} else "missing" if "missing" in states else "corrupt"


# -- inspect --------------------------------------------------------------------------------------


def _cmd_inspect(args: argparse.Namespace) -> int:
    from sie3d.face import observe_photo
    from sie3d.face.annotate import annotate
    from sie3d.face.landmarker import FaceObserver
    from sie3d.face.sface import IdentityEmbedder
    from sie3d.photo import load_photo

    out = Path(args.output) if args.output else Path("sie3d-out") / Path(args.photo).stem
    _staged_output.check(out)
    photo = load_photo(args.photo)
    with FaceObserver() as observer:
        chosen, faces = observe_photo(photo, observer, IdentityEmbedder(), face=args.face)
    report = {
        "photo": str(args.photo),
        "photo_size": list(photo.original_size),
        "scale": photo.scale,
        "faces_found": len(faces),
        "faces": [{k: v for k, v in f.to_json().items() if k in ("index", "confidence", "box")} for f in faces],
        "chosen": chosen.to_json(),
    }
    with _staged_output(out) as stage:
        (stage / "observation.json").write_text(json.dumps(report, indent=1))
        annotate(photo.rgb, faces, chosen.index).save(stage / "annotated.png")
    if args.json:
        print(json.dumps(report, indent=1))
        return 0
    yaw, pitch, roll = chosen.yaw_pitch_roll_degrees
    top = sorted(chosen.blendshape_dict.items(), key=lambda kv: -kv[1])[:6]
    print(f"{args.photo}: {photo.original_size[0]}x{photo.original_size[1]} px, {len(faces)} face(s)")
    for face in faces:
        mark = "*" if face.index == chosen.index else " "
        conf = "n/a" if face.confidence != face.confidence else f"{face.confidence:.2f}"
        box = ", ".join(f"{v:.0f}" for v in face.box)
        print(f" {mark} face #{face.index}: box ({box}) confidence {conf}")
    print(f"face #{chosen.index}: yaw {yaw:+.1f}°, pitch {pitch:+.1f}°, roll {roll:+.1f}°, "
          f"inter-ocular {chosen.interocular_px:.0f} px")
    print("strongest blendshapes: " + ", ".join(f"{n} {v:.2f}" for n, v in top))
    print(f"wrote {out / 'observation.json'} and {out / 'annotated.png'}")
    return 0


# Failures to write that the user fixes (space, size limit, permissions), not bugs: an OutputError.
_OUTPUT_ERRNOS = {errno.ENOSPC: "the disk is full", errno.EDQUOT: "the disk quota is exceeded",
                  errno.EFBIG: "the file size limit is reached", errno.EROFS: "the file system is read-only",
                  errno.EACCES: "permission denied", errno.EPERM: "permission denied",
                  errno.ENOTDIR: "a part of the path is a file, not a folder"}  # fmt: skip


def _output_error(out: Path, exc: OSError) -> OutputError:
    reason = _OUTPUT_ERRNOS.get(exc.errno or 0, exc.strerror or str(exc))
    return OutputError(f"cannot write the outputs to {out}: {reason}; nothing was written",
                       "free some space or choose another folder with -o")  # fmt: skip


class _staged_output:  # noqa: N801 -- used as a context manager, reads like a function
    """Write into a temporary folder beside `out`; move the files into `out` only on success, so a
    failed run leaves nothing behind. `out` must be a folder (or not exist yet); writing failures the user
    can fix (a full disk, a file size limit, permissions) become one `OutputError`."""

    def __init__(self, out: Path) -> None:
        self.out = out

    @staticmethod
    def check(out: Path) -> None:
        """An `OutputError` now, before any work, when `out` or a folder above it is an existing file."""
        for path in (out, *out.parents):
            if path.exists() and not path.is_dir():
                raise OutputError(f"-o {out}: {path} is an existing file, not a folder",
                                  "pass a folder (new or existing) to -o, e.g. -o out/")  # fmt: skip

    def __enter__(self) -> Path:
        self.check(self.out)
        try:
            self.out.parent.mkdir(parents=True, exist_ok=True)
            self.stage = Path(tempfile.mkdtemp(prefix=f".{self.out.name}-", dir=self.out.parent))
        except OSError as exc:
            raise _output_error(self.out, exc) from None
        return self.stage

    def __exit__(self, exc_type: type | None, exc: BaseException | None, *rest: object) -> None:
        try:
            if exc_type is None:
                self.out.mkdir(parents=True, exist_ok=True)
                for item in self.stage.iterdir():
                    target = self.out / item.name
                    if target.is_dir():  # a previous run's folder: replaced as a whole
                        shutil.rmtree(target)
                    os.replace(item, target)
        except OSError as move_error:
            exc = move_error
        finally:
            shutil.rmtree(self.stage, ignore_errors=True)
        if isinstance(exc, OSError) and exc.errno in _OUTPUT_ERRNOS:
            raise _output_error(self.out, exc) from None
        if exc is not None and exc_type is None:
            raise exc


# -- reconstruct ----------------------------------------------------------------------------------


def _cmd_reconstruct(args: argparse.Namespace) -> int:
    from sie3d.avatar import PHOTO_VARIANTS, photo_variants

    names = _split(args.variants)
    if not names or not set(names) <= set(PHOTO_VARIANTS):
        raise UsageError(f"--variants {args.variants!r}: choose among {', '.join(PHOTO_VARIANTS)}",
                         "e.g. --variants neutral, or --variants expression,neutral (the default)")  # fmt: skip
    return make_avatar(args, lambda person, models: photo_variants(person, names))


# -- generate and explain -------------------------------------------------------------------------------


def _intensity(args: argparse.Namespace) -> float:
    if not 0.0 <= args.intensity <= 1.0:
        raise UsageError(f"--intensity {args.intensity:g} is outside [0, 1]",
                         "use e.g. --intensity 0.5 for a milder face (1 = as the text says, the default)")  # fmt: skip
    return args.intensity


def _cmd_generate(args: argparse.Namespace) -> int:
    from sie3d.avatar import text_variants
    from sie3d.semantics.text import check_text

    intensity = _intensity(args)
    for text in args.text:  # a text that cannot be used fails before any photo is read or model loaded
        check_text(text)
    made: list = []

    def variants(person, models):
        from tqdm import tqdm

        from sie3d.refine import RefineConfig

        refine = RefineConfig(wrinkles=bool(args.wrinkles)) if args.refine else None
        steps = len(args.text) * refine.steps if refine else 0
        with tqdm(total=steps, desc="refine (perceptual loss)", unit="step", leave=False,
                  disable=True if refine is None else _no_bar(args)) as bar:  # fmt: skip
            made.extend(text_variants(person, models, args.text, intensity, refine,
                                      lambda step, steps: bar.update(step - bar.n)))
        return made

    code = make_avatar(args, variants)
    for variant in made:
        reading = variant.info["text"]
        top = sorted(reading["emotions"].items(), key=lambda kv: -kv[1])[:3]
        blend = f" (a blend of {' and '.join(reading['blend'])})" if reading["blend"] else ""
        print(f"{variant.name}/: {reading['text']!r} -> " + ", ".join(f"{k} {v:.2f}" for k, v in top) +
              f"{blend}; confidence {reading['confidence']:.2f}")  # fmt: skip
        if "refinement" in variant.info:
            refined = variant.info["refinement"]
            before, after = refined["loss_before"], refined["loss_after"]
            if refined["chosen_step"] == 0:
                print(f"  refinement: {refined['steps']} steps ({refined['seconds']:.1f} s) found nothing that reads "
                      f"better; kept the text's expression (loss {before['total']:.3f})")  # fmt: skip
            else:
                print(f"  refined in {refined['steps']} steps ({refined['seconds']:.1f} s): loss "
                      f"{before['total']:.3f} -> {after['total']:.3f} (emotion {before['emotion']:.3f} -> "
                      f"{after['emotion']:.3f})")  # fmt: skip
        for warning in reading["warnings"]:
            print(f"warning: {warning}", file=sys.stderr)
    return code


def _cmd_explain(args: argparse.Namespace) -> int:
    from sie3d.semantics.interpret import TextModel, format_reading

    readings = TextModel().interpret_many(args.text, None, _intensity(args))
    if args.json:
        payload = [r.to_json() for r in readings]
        print(json.dumps(payload[0] if len(payload) == 1 else payload, indent=1))
    else:
        print("\n\n".join(format_reading(r) for r in readings))
    return 0


def _no_bar(args: argparse.Namespace) -> bool | None:
    """tqdm's `disable`: off with --quiet; otherwise None, tqdm's own rule -- a bar on a terminal, nothing
    when stderr is a file or a pipe (logs of CI and batch jobs get no carriage-return noise)."""
    return True if args.quiet else None


def _split(spec: str) -> list[str]:
    return [item.strip() for item in spec.split(",") if item.strip()]


def make_avatar(args: argparse.Namespace, variants: Callable[[Person, Models], Sequence[Variant]],
                report_extra: dict | None = None,
                extra: Callable[[Person, Models, Path], Sequence[str]] | None = None) -> int:  # fmt: skip
    """The body of every command that makes an avatar: `args.photo` (a photo, or a saved person folder)
    -> the person (reconstructed or loaded) -> `variants(person, models)` -> `write_outputs` into
    `args.output`, staged so that a failure leaves nothing behind; then a summary on stdout. `extra(person,
    models, folder)` writes more files into the staged folder and returns their names.

    Reads the arguments `add_avatar_arguments` defines."""
    from tqdm import tqdm

    from sie3d.avatar import Models, Person, reconstruct, with_hair_as_asked, write_outputs
    from sie3d.photo import load_photo

    output = output_config(args)
    source = Path(args.photo)
    saved = source.is_dir() and (source / "person.json").exists()
    config = None if saved else reconstruct_config(args)
    photo = None if saved else load_photo(source)
    # A saved person is OUT/person: name the default output after OUT, not after "person".
    out = Path(args.output) if args.output else Path("sie3d-out") / (source.resolve().parent.name if saved
                                                                      else source.stem)
    _staged_output.check(out)
    steps = tqdm(total=2, desc="load person" if saved else "observe, fit, texture", unit="stage",
                 disable=_no_bar(args), bar_format="{desc:<28} {bar} {n_fmt}/{total_fmt} [{elapsed}]")  # fmt: skip
    models = Models.load()
    try:
        person = Person.load(source) if saved else reconstruct(photo, models, config)
        loaded = person
        if saved:  # --hair adds the hair if it was never made, --no-hair takes it off, neither keeps it as saved
            person = with_hair_as_asked(person, models, args.hair).looking(args.gaze)
        chosen = variants(person, models)
        steps.set_description("render and export")
        steps.update()
        with _staged_output(out) as stage:
            write_outputs(person, models, chosen, stage, output, report_extra=report_extra,
                          saved_copy=source if saved and person is loaded else None)
            more = list(extra(person, models, stage)) if extra else []
        steps.set_description("done")
        steps.update()
    finally:
        steps.close()
        models.close()
    fit = person.fit
    print(f"{args.photo}: face #{person.observation.index} of {len(person.faces)}, landmark error "
          f"{100 * fit.landmark_error_iod:.1f}% of the eye distance, {100 * person.textures.coverage:.0f}% of the "
          f"face texture from the photo{f', {person.hair_note}' if person.hair_note else ''}")
    for warning in person.warnings:
        print(f"warning: {warning}", file=sys.stderr)
    files = [*(f"avatar.{f}" for f in output.formats), *(["preview.png"] if output.previews else []),
             *(["in_photo.png"] if output.in_photo else [])]  # fmt: skip
    folders = ", ".join(f"{out}/{v.name}/" for v in chosen)
    written = [f"{folders} ({', '.join(files) or 'report only'})"] if chosen else []
    written += [f"{out}/{name}" for name in more]
    print(f"wrote {', '.join(written)}, {out}/person/ and {out}/report.json")
    return 0


def reconstruct_config(args: argparse.Namespace):
    """The `ReconstructConfig` of the arguments `add_output_arguments` defines (face, texture size, hair, gaze)."""
    from sie3d.avatar import ReconstructConfig
    from sie3d.hair.config import HairConfig

    return ReconstructConfig(face=args.face, texture_size=args.texture_size,
                             hair=HairConfig() if args.hair is None else HairConfig(enabled=args.hair),
                             gaze=args.gaze or ReconstructConfig.gaze)


def output_config(args: argparse.Namespace):
    """The `OutputConfig` of the arguments `add_output_arguments` defines."""
    from sie3d.avatar import OutputConfig

    formats = _split(args.formats)
    if not formats:
        raise UsageError(f"--formats {args.formats!r} names no format",
                         "use glb, obj, ply (Gaussian splats) or several, e.g. glb,obj,ply")  # fmt: skip
    wrinkles = {} if args.wrinkles is None else {"wrinkles": args.wrinkles}  # None: OutputConfig's default
    return OutputConfig(formats=tuple(formats), previews=args.previews, in_photo=args.in_photo, light=args.light,
                        **wrinkles)  # fmt: skip


def add_avatar_arguments(parser: argparse.ArgumentParser, *, variants: bool = True) -> None:
    """The arguments `make_avatar` reads: the source, the output folder and what to write per variant
    (`variants=False` for a command that writes no variant folders)."""
    parser.add_argument("photo", help="a JPEG/PNG/WebP/BMP/TIFF photo, or a saved person folder (OUT/person) to "
                        "pose again without reconstructing")
    parser.add_argument("-o", "--output", help="output folder (default: sie3d-out/<photo name>)")
    add_output_arguments(parser, variants=variants)


def add_output_arguments(parser: argparse.ArgumentParser, *, variants: bool = True) -> None:
    """Which face of a photo, the texture size and what to write per avatar (`output_config`)."""
    parser.add_argument("--face", type=int, default=0, help="which face of a photo, 0 = largest (default)")
    parser.add_argument("--texture-size", type=int, default=1024,
                        help="texture tile size in texels, for a photo (default 1024)")
    parser.add_argument("--hair", action=argparse.BooleanOptionalAction, default=None,
                        help="a hair volume shaped by the photo's hair, in the previews and the mesh files "
                        "(default: on for a photo, as saved for a person folder; --no-hair: a bare scalp; see the "
                        "README's \"Hair volume\")")
    parser.add_argument("--gaze", metavar="{ahead,photo}", default=None,
                        help="where the neutral face, and every expression that does not turn the eyes itself, "
                        "looks: ahead (default for a photo) or where the photo looks (at the photographer); a "
                        "person folder keeps its own unless given")
    parser.add_argument("--light", default="studio",
                        help="how the turntable pictures (preview.png, animate's video) are lit: studio (a key light "
                        "above the face, to its left; default) or photo (the photo's own light as estimated with "
                        "the texture: closer to the photo when it is evenly lit)")
    if not variants:
        parser.set_defaults(formats="glb", previews=False, in_photo=False, wrinkles=None)
        return
    parser.add_argument("--formats", default="glb,obj",
                        help="formats, comma-separated: glb, obj, ply (3D Gaussian splats); default glb,obj")
    parser.add_argument("--no-previews", dest="previews", action="store_false",
                        help="skip preview.png (the turntable sheet)")
    parser.add_argument("--no-in-photo", dest="in_photo", action="store_false",
                        help="skip in_photo.png (the avatar composited into the photo)")
    parser.add_argument("--wrinkles", action=argparse.BooleanOptionalAction, default=None,
                        help="show the wrinkles and folds the expression adds to the photo's (forehead lines, "
                        "furrows, crow's feet ...) in the pictures and, as a normal map, in the GLB "
                        "(default: off; see the README's results)")


# -- animate --------------------------------------------------------------------------------------


def _cmd_animate(args: argparse.Namespace) -> int:
    from sie3d import animation

    keys = animation.parse_script(args.script)  # a bad script fails before any photo is read
    intensity = _intensity(args)
    if not 1 <= args.fps <= 120:
        raise UsageError(f"--fps {args.fps:g} is outside [1, 120]", "use e.g. --fps 25 (the default) or 30")
    if not 64 <= args.size <= 2048 or args.size % 2:
        raise UsageError(f"--size {args.size} is not an even number of pixels in [64, 2048]", "use e.g. 512")
    if len(keys) < 2 and not args.turntable:
        raise UsageError(f"--script has one key ({keys[0].label!r}): nothing moves",
                         'give two keys or more, e.g. "neutral 0s; happy 1s", or add --turntable')  # fmt: skip

    def write(person, models, folder: Path) -> list[str]:
        import json

        from sie3d.export.video import write_mp4

        line = animation.timeline(person, models, keys, intensity)
        names = []
        if line.duration > 0:
            count = write_mp4(animation.frames(person, models, line, args.fps, args.size, args.turntable, args.light),
                              folder / "animation.mp4", args.fps)  # fmt: skip
            names.append(f"animation.mp4 ({count} frames, {line.duration:g} s)")
        (folder / "avatar.glb").write_bytes(animation.animated_glb(person, models, line))
        (folder / "timeline.json").write_text(json.dumps({**line.to_json(), "fps": args.fps, "size": args.size,
                                                          "turntable": args.turntable}, indent=1))  # fmt: skip
        return [*names, "avatar.glb (animated)", "timeline.json"]

    return make_avatar(args, lambda person, models: [], extra=write)


# -- batch ----------------------------------------------------------------------------------------


def _cmd_batch(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from sie3d import batch
    from sie3d.errors import BatchError
    from sie3d.semantics.prompts import check_prompt

    if args.address and args.engine != "ray":
        raise UsageError("--address needs --engine ray", "add --engine ray, or drop --address")
    if not 1 <= args.threads <= 64:
        raise UsageError(f"--threads {args.threads} is outside [1, 64]", "use 1 (default) per worker")
    prompts = list(batch.read_prompts(Path(args.prompts)) if args.prompts else [])
    prompts += [check_prompt(text, "--text") for text in args.text or []]
    config = batch.BatchConfig(output_config(args), reconstruct_config(args),
                               save_people=args.people, threads=args.threads)  # fmt: skip
    items = batch.plan(Path(args.input), prompts, _intensity(args))
    out = Path(args.output)
    bar = None

    def progress(total: int, skipped: int):
        nonlocal bar
        bar = tqdm(total=total, initial=skipped, desc="batch", unit="avatar", disable=_no_bar(args), smoothing=0.1)
        return bar.update

    try:
        summary = batch.run_batch(items, out, config, args.engine, args.workers, args.address, progress)
    finally:
        if bar is not None:
            bar.close()
    print(f"{summary.made} avatars made, {summary.failed} failed, {summary.skipped} finished earlier, in "
          f"{summary.seconds:.0f} s ({summary.per_minute:.1f}/min on {summary.workers} {summary.engine} "
          f"worker(s)); wrote {out}/{batch.SUMMARY_CSV} and {out}/{batch.SUMMARY_MD}")  # fmt: skip
    if summary.failed:
        raise BatchError(f"{summary.failed} of {len(items)} items failed (listed in {out}/{batch.SUMMARY_CSV})",
                         "fix or remove those photos and run the same command again: finished items are skipped")
    return 0


# -- bench ----------------------------------------------------------------------------------------


def _cmd_bench(args: argparse.Namespace) -> int:
    from sie3d.eval import bench

    if args.stage == "observe":
        result = bench.run_observation_benchmark(args.photos, runs=args.runs, threads=args.threads)
    elif args.stage == "cli":
        result = bench.run_cli_benchmark(args.photos, runs=args.runs)
    elif args.stage == "hair":
        result = bench.run_hair_benchmark(args.photos, runs=args.runs)
    elif args.stage == "web":
        result = bench.run_web_benchmark(args.photos, clients=args.clients, workers=args.workers)
    elif args.stage == "batch":
        result = bench.run_batch_benchmark(args.photos, workers=args.workers or 2, sequential=args.sequential,
                                           engine=args.engine)  # fmt: skip
    else:
        result = bench.run_reconstruction_benchmark(args.photos, full_runs=args.full_runs, threads=args.threads)
    print(json.dumps(result, indent=1) if args.json else result["markdown"])
    return 0


# -- eval -----------------------------------------------------------------------------------------


def _cmd_eval(args: argparse.Namespace) -> int:
    import time

    import torch

    from sie3d.eval import ablations, harness, report

    torch.set_num_threads(args.threads)
    if args.limit is not None and args.limit < 1:
        raise UsageError(f"--limit {args.limit} must be at least 1", "pass the number of photos to evaluate")
    photos, manifest = harness.resolve_photos(args.photos)
    targets = harness.read_prompts(Path(args.prompts)) if args.prompts else harness.prototype_targets()
    views = args.views or ",".join(harness.DEFAULT_VIEWS)
    names = ",".join(a.name for a in ablations.parse(args.ablations or ",".join(harness.DEFAULT_ABLATIONS)))
    intensities = args.intensities or ",".join(f"{v:g}" for v in harness.DEFAULT_INTENSITIES)
    references = Path(args.references) if args.references else manifest
    size = args.size or harness.RENDER_SIZE
    # The command as run, every default spelled out, so the report says how to reproduce it.
    command = " ".join(["sie3d eval", *(["--photos", args.photos] if args.photos else []),
                        *(["--prompts", args.prompts] if args.prompts else ["--prototypes"]), "--views", views,
                        "--ablations", names, "--intensities", intensities, "--size", str(size),
                        *(["--limit", str(args.limit)] if args.limit else []),
                        *(["--redact-photos"] if args.redact_photos else []), *(["--hair"] if args.hair else []),
                        "--light", args.light, "--seed", str(args.seed),
                        "--threads", str(args.threads), "-o", args.output])  # fmt: skip
    config = harness.EvalConfig(
        photos=photos[: args.limit] if args.limit else photos, targets=targets, ablations=tuple(names.split(",")),
        views=harness.parse_views(views), intensities=harness.parse_intensities(intensities), size=size,
        references=references, seed=args.seed, command=command, redact_photos=args.redact_photos, hair=args.hair,
        light=args.light,
    )  # fmt: skip
    out = Path(args.output)
    start = time.perf_counter()
    with _staged_output(out) as stage:
        result = harness.run_eval(config, stage, progress=not args.quiet)
    print(report.digest(out))
    print(f"{len(result.rows)} rows from {len(config.photos) - len(result.skipped)} photos in "
          f"{time.perf_counter() - start:.0f} s; wrote {out}/ (summary.md, rows.csv, rows.json, references.json, "
          "accuracy.png, identity.png, contact/)")
    return 0


# -- web ------------------------------------------------------------------------------------------


def _cmd_web(args: argparse.Namespace) -> int:
    from sie3d.web.jobs import WebConfig
    from sie3d.web.server import serve

    if args.max_upload_mb <= 0 or args.keep_minutes <= 0 or args.max_queued < 0:
        raise UsageError("--max-upload-mb and --keep-minutes must be positive, --max-queued not negative",
                         "e.g. --max-upload-mb 15 --keep-minutes 60 --max-queued 16")  # fmt: skip
    config = WebConfig(host=args.host, port=args.port, workers=args.workers, max_queued=args.max_queued,
                       max_upload_bytes=int(args.max_upload_mb * 1024 * 1024), keep_seconds=args.keep_minutes * 60,
                       root=Path(args.root) if args.root else None)  # fmt: skip
    serve(config)
    return 0


# -- entry point ----------------------------------------------------------------------------------


def batch_engines() -> tuple[str, ...]:
    from sie3d.batch import ENGINES

    return ENGINES


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="sie3d", description="One face photo + a sentence -> an expressive, rigged 3D head avatar."
    )
    parser.add_argument("--version", action="version", version=f"sie3d {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="log details (and native library output)")
    parser.add_argument("-q", "--quiet", action="store_true", help="no progress bars")
    # The same two flags after the command (`sie3d reconstruct x.jpg -q`); SUPPRESS keeps the global value.
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("-v", "--verbose", action="store_true", default=argparse.SUPPRESS, help=argparse.SUPPRESS)
    common.add_argument("-q", "--quiet", action="store_true", default=argparse.SUPPRESS, help=argparse.SUPPRESS)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    assets = sub.add_parser("assets", parents=[common], help="list, fetch or verify the model files")
    assets.add_argument("action", choices=["list", "fetch", "verify"])
    assets.add_argument("names", nargs="*", help="asset names (default: all); 'ict' is the head model")
    assets.add_argument("--force", action="store_true", help="fetch/convert again even if present")
    assets.set_defaults(run=_cmd_assets)

    inspect = sub.add_parser(
        "inspect", parents=[common], help="show what sie3d sees in a photo (landmarks, blendshapes, pose)"
    )
    inspect.add_argument("photo", help="a JPEG/PNG/WebP/BMP/TIFF photo")
    inspect.add_argument("--face", type=int, default=0, help="which face, 0 = largest (default)")
    inspect.add_argument("--json", action="store_true", help="print the full observation as JSON")
    inspect.add_argument("-o", "--output", help="output folder (default: sie3d-out/<photo name>)")
    inspect.set_defaults(run=_cmd_inspect)

    rec = sub.add_parser(
        "reconstruct", parents=[common], help="photo -> textured, rigged 3D head (GLB, OBJ, previews, report)"
    )
    add_avatar_arguments(rec)
    rec.add_argument("--variants", default="expression,neutral",
                     help="which faces to write, comma-separated: expression (the photo's own), neutral (the "
                     "person's rest face); default both")
    rec.set_defaults(run=_cmd_reconstruct)

    gen = sub.add_parser(
        "generate", parents=[common], help="photo + sentence -> the person wearing that expression (GLB, OBJ, previews)"
    )
    add_avatar_arguments(gen)
    gen.add_argument("--text", "-t", action="append", required=True,
                     help='the expression in words, e.g. "a gleeful grin with raised eyebrows"; repeat for several '
                     "variants from one fit (each in its own folder)")
    gen.add_argument("--intensity", type=float, default=1.0,
                     help="0..1: how strongly the face moves from the person's rest (default 1 = as the text says)")
    gen.add_argument("--refine", action="store_true",
                     help="refine each expression with the perceptual loss (frozen expression and face-mesh networks "
                     "read renders; about 10 s per text); off by default: see the README for what it measurably does")
    gen.set_defaults(run=_cmd_generate)

    explain = sub.add_parser("explain", parents=[common],
                             help="show the emotions and blendshapes a sentence maps to (no photo needed)")
    explain.add_argument("--text", "-t", action="append", required=True, help="the sentence (repeatable)")
    explain.add_argument("--intensity", type=float, default=1.0, help="0..1 (default 1)")
    explain.add_argument("--json", action="store_true", help="print one JSON object (a list for several texts)")
    explain.set_defaults(run=_cmd_explain)

    anim = sub.add_parser("animate", parents=[common],
                          help="photo or person + a timeline of expressions -> MP4 video and an animated GLB")
    add_avatar_arguments(anim, variants=False)
    anim.add_argument("--script", required=True,
                      help='keys and times, e.g. "neutral 0s; happy 1s; surprised 2.5s; neutral 4s"; a key is neutral '
                      "(the rest face), photo (the photo's expression) or any text prompt")
    anim.add_argument("--turntable", action="store_true", help="turn the camera once around the head")
    anim.add_argument("--fps", type=float, default=25.0, help="frames per second of the video (default 25)")
    anim.add_argument("--size", type=int, default=512, help="video width and height in px (default 512)")
    anim.add_argument("--intensity", type=float, default=1.0, help="0..1 for the text keys (default 1)")
    anim.set_defaults(run=_cmd_animate)

    bat = sub.add_parser("batch", parents=[common],
                         help="many photos x many texts -> one avatar each; resumable, local process pool or Ray")
    bat.add_argument("input", help="a folder of photos, or a CSV manifest with columns photo,text,intensity,id "
                     "(only photo required; paths relative to the manifest)")
    bat.add_argument("-o", "--output", required=True, help="output folder: OUT/<item id>/ per avatar, OUT/people/, "
                     "OUT/summary.csv, OUT/summary.md; a rerun finishes only what is missing")
    bat.add_argument("--prompts", help="text file, one prompt per line: each applies to each photo")
    bat.add_argument("--text", "-t", action="append", help="a prompt for each photo (repeatable)")
    bat.add_argument("--intensity", type=float, default=1.0, help="0..1 for --prompts/--text (default 1)")
    bat.add_argument("--engine", choices=batch_engines(), default="local",
                     help="local: a process pool on this machine (default); ray: Ray actors")
    bat.add_argument("--address", help="with --engine ray: the cluster to join (ray://HEAD:10001 or auto); "
                     "default: start a local Ray instance")
    bat.add_argument("--workers", type=int, default=None, help="worker processes or actors, each loading the "
                     "models once (default: one per CPU core of this machine or of the Ray cluster)")
    bat.add_argument("--threads", type=int, default=1, help="torch threads per worker (default 1)")
    bat.add_argument("--no-people", dest="people", action="store_false",
                     help="do not keep OUT/people/<photo>/ (the fitted person a rerun or a new prompt reuses)")
    add_output_arguments(bat)
    bat.set_defaults(run=_cmd_batch)

    bench = sub.add_parser("bench", parents=[common], help="measure cold start, per-photo time and peak memory")
    bench.add_argument("--photos", help="folder of photos (default: the shared faces or a sample photo); for "
                       "cli also one photo")
    bench.add_argument("stage", nargs="?", choices=["observe", "reconstruct", "cli", "hair", "web", "batch"],
                       default="observe",
                       help="observe: cold start, observation time, memory; reconstruct: fit error and "
                       "per-stage times; cli: whole `sie3d inspect` vs `sie3d reconstruct` processes on the same "
                       "photos, and their ratio; hair: whole `sie3d reconstruct --no-hair` vs `sie3d reconstruct` "
                       "processes, alternated, and their ratio; web: a load test of `sie3d web` on loopback (N clients "
                       "at once, bad uploads, peak memory); batch: `sie3d batch` on photos x 3 prompts vs "
                       "`sie3d generate` once per avatar, in avatars/min (default: observe)")
    bench.add_argument("--engine", choices=batch_engines(), default="local", help="batch: engine (default local)")
    bench.add_argument("--sequential", type=int, default=None,
                       help="batch: time only the first N `sie3d generate` runs (default: one per avatar)")
    bench.add_argument("--runs", type=int, default=3, help="observe, cli, hair: repetitions per photo; the median is "
                       "reported")
    bench.add_argument("--full-runs", type=int, default=3,
                       help="reconstruct: photos that also go through texture, render and export")
    bench.add_argument("--threads", type=int, default=None, help="torch threads (default: all cores)")
    bench.add_argument("--clients", type=int, default=8, help="web: clients submitting at once (default 8)")
    bench.add_argument("--workers", type=int, default=None,
                       help="web: server workers (default: the CPU cores); batch: workers (default 2)")
    bench.add_argument("--json", action="store_true", help="print JSON instead of Markdown")
    bench.set_defaults(run=_cmd_bench)

    ev = sub.add_parser("eval", parents=[common],
                        help="judge avatars of real photos with held-out networks (expression, identity)")
    ev.add_argument("--photos", help="folder of photos or a manifest.csv (default: the London Set's neutral "
                    "photos of the shared faces)")
    what = ev.add_mutually_exclusive_group()
    what.add_argument("--prompts", help="text file, one prompt per line, optionally prompt<TAB>expected_emotion")
    what.add_argument("--prototypes", action="store_true", help="the 7 emotion prototypes (default)")
    ev.add_argument("--views", help="yaws in degrees and/or 'photo' (the avatar composited into the photo); "
                    "default 0,30,-30,photo")
    ev.add_argument("--ablations", help="registered ablations, comma-separated (default photo,rest,prototype)")
    ev.add_argument("--intensities", help="intensities for ablations that use one (default 0.5,1,1.5)")
    ev.add_argument("--references", help="manifest.csv of labelled real photos for the judges' references "
                    "(default: the manifest of the photos)")
    ev.add_argument("--limit", type=int, default=None, help="evaluate only the first N photos")
    ev.add_argument("--size", type=int, default=None, help="render size in px (default 320)")
    ev.add_argument("--seed", type=int, default=0, help="bootstrap seed (default 0)")
    ev.add_argument("--redact-photos", action="store_true",
                    help="leave the source photos out of the contact sheets (for sheets you publish)")
    ev.add_argument("--hair", action="store_true",
                    help="every series wears the hair volume, as the avatars sie3d makes by default (default: the "
                    "bare head, as the README's tables were measured; the hair ablation adds it to the rest)")
    ev.add_argument("--light", default="studio",
                    help="how the turntable views are lit: studio (the previews' light; default) or photo (the "
                    "photo's own light, estimated with the texture); the in-photo view is always lit as the photo")
    ev.add_argument("--threads", type=int, default=1, choices=range(1, 65), metavar="N",
                    help="torch threads (default 1: on a busy or shared CPU more threads spin against each other "
                    "and run many times slower)")
    ev.add_argument("-o", "--output", default="sie3d-out/eval", help="output folder (default %(default)s)")
    ev.set_defaults(run=_cmd_eval)

    from sie3d.web.jobs import WebConfig

    defaults = WebConfig()
    web = sub.add_parser("web", parents=[common], help="the web page: photo + sentence in the browser, a live 3D "
                         "viewer, webcam puppeteering, and its HTTP API")
    web.add_argument("--host", default=defaults.host, help="address to listen on (default %(default)s: this "
                     "machine only; 0.0.0.0 opens it to the network)")
    web.add_argument("--port", type=int, default=defaults.port, help="TCP port (default %(default)s)")
    web.add_argument("--workers", type=int, default=defaults.workers,
                     help="generations at once, one process each (default: the CPU cores, %(default)s)")
    web.add_argument("--max-queued", type=int, default=defaults.max_queued,
                     help="jobs that may wait beyond the running ones; more are refused (default %(default)s)")
    web.add_argument("--max-upload-mb", type=float, default=defaults.max_upload_bytes / 1024 / 1024,
                     help="largest photo upload in MB (default %(default)g)")
    web.add_argument("--keep-minutes", type=float, default=defaults.keep_seconds / 60,
                     help="finished jobs' files are deleted after this (default %(default)g)")
    web.add_argument("--root", help="folder for the jobs' files (default: a temporary folder, removed at exit)")
    web.set_defaults(run=_cmd_web)
    return parser


# The process settings `main` makes before torch and numpy load (values the user set win):
PROCESS_DEFAULTS = {"OMP_WAIT_POLICY": "PASSIVE", "OPENBLAS_NUM_THREADS": "1", "NUMPY_MADVISE_HUGEPAGE": "0"}


def set_process_defaults() -> None:
    """`PROCESS_DEFAULTS` into the environment where unset; read when torch and numpy load, so call it first
    (`main` does; the test suite's conftest too, so that tests run as the command does)."""
    for name, value in PROCESS_DEFAULTS.items():
        os.environ.setdefault(name, value)


def main(argv: Sequence[str] | None = None) -> int:
    # Thread pools that spin while they wait fight other processes on a busy or shared CPU. Idle OpenMP
    # threads (torch's) sleep instead: the landmark fit measured 0.17 s passive, 1.1 s spinning, with 2
    # threads on 2 loaded cores. numpy's OpenBLAS runs on one thread: sie3d's matrices are skinny
    # ((N, 3) @ (3, 3)), where its threads only cost (0.8 ms on one thread, 50-100 ms on two, loaded).
    # numpy asks the kernel for transparent huge pages on every array of 4 MB or more; each new one is a 2 MB
    # page compacted and zeroed at first touch, which on virtual machines that hand freed memory back to
    # their host costs more than it saves: `reconstruct` took 0.77-0.84x the time without them on three photos
    # (system time 2.2-2.6 s -> 0.8 s by the end of the reconstruction; docs/RESULTS.md, "Huge pages").
    # Read when torch and numpy load, which the commands do later; values the user set win.
    set_process_defaults()
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "run", None):
        parser.print_help()
        return UsageError.exit_code
    # This program's own choices for its own process, made here rather than at import: MediaPipe's native
    # log lines are filtered out of stderr (unless --verbose), and Pillow's decompression-bomb warning is
    # not shown (sie3d checks every photo's size itself before decoding: sie3d.photo.MAX_PIXELS).
    from PIL import Image

    warnings.filterwarnings("ignore", category=Image.DecompressionBombWarning)
    with native_logs_filtered(enabled=not args.verbose):
        logging.basicConfig(
            level=logging.DEBUG if args.verbose else logging.WARNING if args.quiet else logging.INFO,
            format="%(levelname)s %(name)s: %(message)s",
        )
        return _run(args)


def _run(args: argparse.Namespace) -> int:
    try:
        return args.run(args)
    except Sie3dError as exc:
        print(f"sie3d: error: {exc.message}", file=sys.stderr)
        if exc.hint:
            print(f"  fix: {exc.hint}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("sie3d: interrupted", file=sys.stderr)
        return 130


def console() -> None:
    """The `sie3d` command: `main`, then an exit that skips the interpreter's last garbage collection.

    Torch's import alone leaves some 170,000 objects that Python walks through once more as it shuts down:
    about 0.2 s of every command's time after the last file was written (docs/RESULTS.md, "A quicker exit").
    Freezing them (`gc.freeze`) leaves them to the operating system; exit handlers still run. Only here, at the
    process's end: in a process that goes on (the tests, an embedding program) they would never be collected.
    """
    code = main()
    gc.freeze()
    sys.exit(code)


if __name__ == "__main__":
    console()
