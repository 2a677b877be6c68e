"""The `sie3d` command line: one verb per stage.

Every user-caused failure is a `Sie3dError`: printed as one message plus its fix, with a distinct exit
code (see `sie3d.errors`), never a traceback; outputs are written only when the command succeeds.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import shutil
import sys
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from sie3d import __version__
from sie3d.errors import AssetError, Sie3dError, UsageError

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
    for name in tqdm(wanted, desc=f"{args.action} assets", unit="asset", disable=args.quiet):
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
    out = Path(args.output) if args.output else Path("sie3d-out") / Path(args.photo).stem
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


class _staged_output:  # noqa: N801 -- used as a context manager, reads like a function
    """Write into a temporary folder beside `out`; move the files into `out` only on success, so a
    failed run leaves nothing behind."""

    def __init__(self, out: Path) -> None:
        self.out = out

    def __enter__(self) -> Path:
        self.out.parent.mkdir(parents=True, exist_ok=True)
        self.stage = Path(tempfile.mkdtemp(prefix=f".{self.out.name}-", dir=self.out.parent))
        return self.stage

    def __exit__(self, exc_type: type | None, *exc: object) -> None:
        try:
            if exc_type is None:
                self.out.mkdir(parents=True, exist_ok=True)
                for item in self.stage.iterdir():
                    target = self.out / item.name
                    if target.is_dir():  # a previous run's folder: replaced as a whole
                        shutil.rmtree(target)
                    os.replace(item, target)
        finally:
            shutil.rmtree(self.stage, ignore_errors=True)


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
        made.extend(text_variants(person, models, args.text, intensity))
        return made

    code = make_avatar(args, variants)
    for variant in made:
        reading = variant.info["text"]
        top = sorted(reading["emotions"].items(), key=lambda kv: -kv[1])[:3]
        blend = f" (a blend of {' and '.join(reading['blend'])})" if reading["blend"] else ""
        print(f"{variant.name}/: {reading['text']!r} -> " + ", ".join(f"{k} {v:.2f}" for k, v in top) +
              f"{blend}; confidence {reading['confidence']:.2f}")  # fmt: skip
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


def _split(spec: str) -> list[str]:
    return [item.strip() for item in spec.split(",") if item.strip()]


def make_avatar(args: argparse.Namespace, variants: Callable[[Person, Models], Sequence[Variant]],
                report_extra: dict | None = None) -> int:
    """The body of every command that makes an avatar: `args.photo` (a photo, or a saved person folder)
    -> the person (reconstructed or loaded) -> `variants(person, models)` -> `write_outputs` into
    `args.output`, staged so that a failure leaves nothing behind; then a summary on stdout.

    Reads the arguments `add_avatar_arguments` defines."""
    from tqdm import tqdm

    from sie3d.avatar import Models, OutputConfig, Person, ReconstructConfig, reconstruct, write_outputs
    from sie3d.head.texture import TextureConfig
    from sie3d.photo import load_photo

    formats = _split(args.formats)
    if not formats:
        raise UsageError(f"--formats {args.formats!r} names no format", "use glb, obj or glb,obj")
    output = OutputConfig(formats=tuple(formats), previews=args.previews, in_photo=args.in_photo)
    source = Path(args.photo)
    saved = source.is_dir() and (source / "person.json").exists()
    config = None if saved else ReconstructConfig(face=args.face, texture_size=args.texture_size,
                                                  texture=TextureConfig(gaze=args.gaze))  # fmt: skip
    photo = None if saved else load_photo(source)
    # A saved person is OUT/person: name the default output after OUT, not after "person".
    out = Path(args.output) if args.output else Path("sie3d-out") / (source.resolve().parent.name if saved
                                                                      else source.stem)
    steps = tqdm(total=2, desc="load person" if saved else "observe, fit, texture", unit="stage",
                 disable=args.quiet, bar_format="{desc:<28} {bar} {n_fmt}/{total_fmt} [{elapsed}]")  # fmt: skip
    models = Models.load()
    try:
        person = Person.load(source) if saved else reconstruct(photo, models, config)
        chosen = variants(person, models)
        steps.set_description("render and export")
        steps.update()
        with _staged_output(out) as stage:
            write_outputs(person, models, chosen, stage, output, report_extra=report_extra,
                          saved_copy=source if saved else None)
        steps.set_description("done")
        steps.update()
    finally:
        steps.close()
        models.close()
    fit = person.fit
    print(f"{args.photo}: face #{person.observation.index} of {len(person.faces)}, landmark error "
          f"{100 * fit.landmark_error_iod:.1f}% of the eye distance, {100 * person.textures.coverage:.0f}% of the "
          f"face texture from the photo")
    for warning in person.warnings:
        print(f"warning: {warning}", file=sys.stderr)
    files = [*(f"avatar.{f}" for f in output.formats), *(["preview.png"] if output.previews else []),
             *(["in_photo.png"] if output.in_photo else [])]  # fmt: skip
    folders = ", ".join(f"{out}/{v.name}/" for v in chosen)
    print(f"wrote {folders} ({', '.join(files) or 'report only'}), {out}/person/ and {out}/report.json")
    return 0


def add_avatar_arguments(parser: argparse.ArgumentParser) -> None:
    """The arguments `make_avatar` reads: the source, the output folder and what to write."""
    parser.add_argument("photo", help="a JPEG/PNG/WebP/BMP/TIFF photo, or a saved person folder (OUT/person) to "
                        "pose again without reconstructing")
    parser.add_argument("-o", "--output", help="output folder (default: sie3d-out/<photo name>)")
    parser.add_argument("--face", type=int, default=0, help="which face of a photo, 0 = largest (default)")
    parser.add_argument("--texture-size", type=int, default=1024,
                        help="texture tile size in texels, for a photo (default 1024)")
    parser.add_argument("--gaze", choices=("photo", "ahead"), default="photo",
                        help="where the eyes look, for a photo: as in the photo (default) or straight ahead")
    parser.add_argument("--formats", default="glb,obj", help="mesh formats, comma-separated (default glb,obj)")
    parser.add_argument("--no-previews", dest="previews", action="store_false",
                        help="skip preview.png (the turntable sheet)")
    parser.add_argument("--no-in-photo", dest="in_photo", action="store_false",
                        help="skip in_photo.png (the avatar composited into the photo)")


# -- bench ----------------------------------------------------------------------------------------


def _cmd_bench(args: argparse.Namespace) -> int:
    from sie3d.eval import bench

    if args.stage == "observe":
        result = bench.run_observation_benchmark(args.photos, runs=args.runs, threads=args.threads)
    elif args.stage == "cli":
        result = bench.run_cli_benchmark(args.photos, runs=args.runs)
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
                        *(["--redact-photos"] if args.redact_photos else []), "--seed", str(args.seed),
                        "--threads", str(args.threads), "-o", args.output])  # fmt: skip
    config = harness.EvalConfig(
        photos=photos[: args.limit] if args.limit else photos, targets=targets, ablations=tuple(names.split(",")),
        views=harness.parse_views(views), intensities=harness.parse_intensities(intensities), size=size,
        references=references, seed=args.seed, command=command, redact_photos=args.redact_photos,
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


# -- entry point ----------------------------------------------------------------------------------


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
    gen.set_defaults(run=_cmd_generate)

    explain = sub.add_parser("explain", parents=[common],
                             help="show the emotions and blendshapes a sentence maps to (no photo needed)")
    explain.add_argument("--text", "-t", action="append", required=True, help="the sentence (repeatable)")
    explain.add_argument("--intensity", type=float, default=1.0, help="0..1 (default 1)")
    explain.add_argument("--json", action="store_true", help="print one JSON object (a list for several texts)")
    explain.set_defaults(run=_cmd_explain)

    bench = sub.add_parser("bench", parents=[common], help="measure cold start, per-photo time and peak memory")
    bench.add_argument("--photos", help="folder of photos (default: the shared faces or a sample photo); for "
                       "cli also one photo")
    bench.add_argument("stage", nargs="?", choices=["observe", "reconstruct", "cli"], default="observe",
                       help="observe: cold start, observation time, memory; reconstruct: fit error and "
                       "per-stage times; cli: whole `sie3d inspect` vs `sie3d reconstruct` processes on the same "
                       "photos, and their ratio (default: observe)")
    bench.add_argument("--runs", type=int, default=3, help="observe, cli: repetitions per photo; the median is "
                       "reported")
    bench.add_argument("--full-runs", type=int, default=3,
                       help="reconstruct: photos that also go through texture, render and export")
    bench.add_argument("--threads", type=int, default=None, help="torch threads (default: all cores)")
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
    ev.add_argument("--threads", type=int, default=1, choices=range(1, 65), metavar="N",
                    help="torch threads (default 1: on a busy or shared CPU more threads spin against each other "
                    "and run many times slower)")
    ev.add_argument("-o", "--output", default="sie3d-out/eval", help="output folder (default %(default)s)")
    ev.set_defaults(run=_cmd_eval)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    # Thread pools that spin while they wait fight other processes on a busy or shared CPU. Idle OpenMP
    # threads (torch's) sleep instead: the landmark fit measured 0.17 s passive, 1.1 s spinning, with 2
    # threads on 2 loaded cores. numpy's OpenBLAS runs on one thread: sie3d's matrices are skinny
    # ((N, 3) @ (3, 3)), where its threads only cost (0.8 ms on one thread, 50-100 ms on two, loaded).
    # Read when torch and numpy load, which the commands do later; values the user set win.
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.WARNING if args.quiet else logging.INFO,
        format="%(levelname)s %(name)s: %(message)s",
    )
    if not getattr(args, "run", None):
        parser.print_help()
        return UsageError.exit_code
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


if __name__ == "__main__":
    sys.exit(main())
