"""`sie3d bench`: cold start, per-photo observation time and peak memory, measured on this machine.

Cold start runs in a fresh Python process (interpreter, imports, model loading, first photo), so it
is what a user waits for on the first `sie3d inspect`. Warm times are the median over photos of the
median over `runs` repetitions.
"""

from __future__ import annotations

import contextlib
import csv
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from sie3d.errors import UsageError
from sie3d.photo import PHOTO_SUFFIXES


def default_photos() -> Path:
    """The shared photo set (as `sie3d eval` finds it), else matplotlib's sample photo's folder."""
    from sie3d.photo import shared_faces_dir

    shared = shared_faces_dir()
    if shared is not None:
        return shared
    import matplotlib.cbook

    return Path(matplotlib.cbook.get_sample_data("grace_hopper.jpg", asfileobj=False)).parent


def _photos_in(folder: Path) -> list[Path]:
    photos = sorted(p for p in folder.iterdir() if p.suffix.lower() in PHOTO_SUFFIXES)
    if not photos:
        raise UsageError(f"no photos in {folder}", "pass --photos with a folder of JPEG/PNG photos")
    return photos


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # Linux reports KiB


def _observe(photo_path: Path, observer, embedder) -> None:
    from sie3d.errors import NoFaceError
    from sie3d.face import observe_photo
    from sie3d.photo import load_photo

    with contextlib.suppress(NoFaceError):  # still timed: a photo without a face costs the detector's time
        observe_photo(load_photo(photo_path), observer, embedder)


def _make_stack():
    """The observation stage's models: MediaPipe landmarker/detector and the SFace identity net."""
    from sie3d.face.landmarker import FaceObserver
    from sie3d.face.sface import IdentityEmbedder

    return FaceObserver(), IdentityEmbedder()


def cold_start_child(photo: str) -> dict:
    """Runs inside the fresh process started by `measure_cold_start`."""
    t0 = time.perf_counter()
    import torch  # noqa: F401 -- part of what every start pays

    import sie3d.face.landmarker  # noqa: F401
    import sie3d.face.sface  # noqa: F401

    t1 = time.perf_counter()
    observer, embedder = _make_stack()
    t2 = time.perf_counter()
    _observe(Path(photo), observer, embedder)
    t3 = time.perf_counter()
    observer.close()
    return {"imports_s": t1 - t0, "model_load_s": t2 - t1, "first_photo_s": t3 - t2, "peak_rss_mb": _peak_rss_mb()}


def measure_cold_start(photo: Path) -> dict:
    start = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, "-m", "sie3d.eval.bench", str(photo)], capture_output=True, text=True, check=False
    )
    wall = time.perf_counter() - start
    if proc.returncode != 0:
        raise RuntimeError(f"cold-start child failed: {proc.stderr.strip()[-500:]}")
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    result["process_wall_s"] = wall  # includes the interpreter's own start-up
    return result


def run_observation_benchmark(photos: str | os.PathLike | None = None, *, runs: int = 3,
                              threads: int | None = None) -> dict:
    import torch

    if threads:
        torch.set_num_threads(threads)
    folder = Path(photos) if photos else default_photos()
    if not folder.is_dir():
        raise UsageError(f"{folder} is not a folder", "pass --photos with a folder of photos")
    paths = _photos_in(folder)
    cold = measure_cold_start(paths[0])

    from tqdm import tqdm

    observer, embedder = _make_stack()
    per_photo = []
    with observer:
        _observe(paths[0], observer, embedder)  # warm-up
        for path in tqdm(paths, desc="observing", unit="photo"):
            times = []
            for _ in range(runs):
                t = time.perf_counter()
                _observe(path, observer, embedder)
                times.append(time.perf_counter() - t)
            per_photo.append(statistics.median(times))
    result = {
        "machine": {"cpu_count": os.cpu_count(), "torch_threads": torch.get_num_threads(),
                    "python": platform.python_version(), "torch": torch.__version__},
        "photos": len(paths),
        "runs_per_photo": runs,
        "cold_start": {k: round(v, 3) for k, v in cold.items()},
        "observation_ms": {
            "median": round(1000 * statistics.median(per_photo), 1),
            "p90": round(1000 * sorted(per_photo)[int(0.9 * (len(per_photo) - 1))], 1),
            "max": round(1000 * max(per_photo), 1),
        },
        "peak_rss_mb": round(_peak_rss_mb(), 1),
    }
    result["markdown"] = to_markdown(result)
    return result


def run_reconstruction_benchmark(photos: str | os.PathLike | None = None, *, full_runs: int = 3,
                                 threads: int | None = None) -> dict:
    """Fit error and per-stage wall time of `sie3d reconstruct`.

    Every photo is observed and fitted (fit error over all of them); the first `full_runs` photos also
    go through texture, render and export, whose times are reported as medians.
    """
    import tempfile

    import torch
    from tqdm import tqdm

    from sie3d.avatar import Models, photo_variants, reconstruct, write_outputs
    from sie3d.errors import NoFaceError
    from sie3d.photo import load_photo

    if threads:
        torch.set_num_threads(threads)
    folder = Path(photos) if photos else default_photos()
    paths = _photos_in(folder)
    start = time.perf_counter()
    models = Models.load().preload()
    load_s = time.perf_counter() - start
    errors, stage_times, skipped = {}, {}, []
    try:
        for k, path in enumerate(tqdm(paths, desc="reconstructing", unit="photo")):
            try:
                photo = load_photo(path)
                if k < full_runs:
                    result = reconstruct(photo, models)
                    with tempfile.TemporaryDirectory() as tmp:
                        write_outputs(result, models, photo_variants(result), Path(tmp))
                        report = json.loads((Path(tmp) / "report.json").read_text())
                    for stage, seconds in report["timings_s"].items():
                        if stage != "load_models":  # loaded above, timed as model_load_s
                            stage_times.setdefault(stage, []).append(seconds)
                    fit = result.fit
                else:
                    obs, _ = models.observer.observe(photo)
                    fit = models.fitter.fit(obs)
                    stage_times.setdefault("fit", []).append(fit.seconds)
                errors[path.name] = fit.landmark_error_iod
            except NoFaceError:
                skipped.append(path.name)
    finally:
        models.close()
    values = np.array(list(errors.values()))
    frontal = np.array([v for name, v in errors.items() if name.startswith("london_")])
    result = {
        "machine": {"cpu_count": os.cpu_count(), "torch_threads": torch.get_num_threads(), "torch": torch.__version__},
        "photos": len(paths), "fitted": len(errors), "no_face": skipped,
        "model_load_s": round(load_s, 3),
        "fit_error_iod": {"mean": round(float(values.mean()), 5), "median": round(float(np.median(values)), 5),
                          "max": round(float(values.max()), 5)},
        "fit_error_iod_frontal_studio": ({"n": int(len(frontal)), "mean": round(float(frontal.mean()), 5),
                                          "max": round(float(frontal.max()), 5)} if len(frontal) else None),
        "stage_median_s": {k: round(statistics.median(v), 3) for k, v in stage_times.items()},
        "stage_runs": {k: len(v) for k, v in stage_times.items()},
        "peak_rss_mb": round(_peak_rss_mb(), 1),
    }
    result["markdown"] = reconstruction_markdown(result)
    return result


# A frontal studio photo (0.6 MP), a phone photo (1.8 MP) and a large portrait (2.5 MP).
CLI_PHOTOS = ("london_004_happy.jpg", "zoom_30cm.jpg", "max_angry.jpg")


def _cli_photos(photos: str | os.PathLike | None) -> list[Path]:
    """A photo file; or the `CLI_PHOTOS` of a folder (default: the shared faces) when it holds them all,
    else every photo of that folder."""
    path = Path(photos) if photos else default_photos()
    if path.is_file():
        return [path]
    if not path.is_dir():
        raise UsageError(f"{path} is neither a photo nor a folder", "pass --photos with a photo or a folder")
    named = [path / name for name in CLI_PHOTOS]
    return named if all(p.is_file() for p in named) else _photos_in(path)


def _timed_process(args: list[str], peak: list[float] | None = None, cpu: list[float] | None = None) -> float:
    """Wall time of one `sie3d ...` process, as a user runs it (interpreter start included); its peak resident
    memory in MB is appended to `peak` when given, and the CPU seconds it used (user + system, all its threads)
    to `cpu` (the child's own rusage, Linux: ``os.wait4``)."""
    start = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "-m", "sie3d.cli", *args, "-q"], stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True)  # fmt: skip
    stderr = proc.stderr.read()
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    proc.stderr.close()
    wall = time.perf_counter() - start
    if proc.returncode != 0:
        raise RuntimeError(f"`sie3d {' '.join(args)}` failed ({proc.returncode}): {stderr.strip()[-500:]}")
    if peak is not None:
        peak.append(usage.ru_maxrss / 1024)
    if cpu is not None:
        cpu.append(usage.ru_utime + usage.ru_stime)
    return wall


BENCH_TEXT = "a warm smile with raised eyebrows"


def run_cli_benchmark(photos: str | os.PathLike | None = None, *, runs: int = 3) -> dict:
    """Whole processes on the same photos, alternated, `runs` times each: `sie3d inspect`, `sie3d reconstruct`,
    `sie3d generate PHOTO --text ...`, `sie3d generate OUT/person --text ...` (a new text on the person the
    reconstruct saved) and `sie3d generate PHOTO --text ... --refine` (with the perceptual refinement),
    default options; medians, their ratios, the refined run's peak memory and the reconstruct's stage times
    (from its report.json) per photo."""
    import tempfile

    from PIL import Image

    paths = _cli_photos(photos)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for path in paths:
            walls: dict[str, list[float]] = {"inspect": [], "reconstruct": [], "generate": [], "generate_saved": [],
                                             "generate_refined": []}  # fmt: skip
            peaks: list[float] = []
            stages: dict[str, list[float]] = {}
            for run in range(runs):
                for command in walls:
                    out = Path(tmp) / f"{command}-{run}"
                    source = Path(tmp) / f"reconstruct-{run}" / "person" if command == "generate_saved" else path
                    text = ["--text", BENCH_TEXT] if command.startswith("generate") else []
                    refine = ["--refine"] if command == "generate_refined" else []
                    walls[command].append(_timed_process([command.split("_")[0], str(source), *text, *refine, "-o",
                                                          str(out)], peaks if refine else None))  # fmt: skip
                report = json.loads((Path(tmp) / f"reconstruct-{run}" / "report.json").read_text())
                for stage, seconds in report["timings_s"].items():
                    stages.setdefault(stage, []).append(seconds)
            with Image.open(path) as image:
                width, height = image.size
            inspect_s, reconstruct_s, generate_s, saved_s, refined_s = (statistics.median(walls[c]) for c in walls)
            rows.append({"photo": path.name, "size": [width, height], "inspect_s": round(inspect_s, 2),
                         "reconstruct_s": round(reconstruct_s, 2), "ratio": round(reconstruct_s / inspect_s, 2),
                         "generate_s": round(generate_s, 2), "generate_saved_s": round(saved_s, 2),
                         "generate_over_reconstruct": round(generate_s / reconstruct_s, 2),
                         "saved_over_reconstruct": round(saved_s / reconstruct_s, 2),
                         "generate_refined_s": round(refined_s, 2), "refined_peak_rss_mb": round(max(peaks)),
                         "walls_s": {c: [round(w, 2) for w in v] for c, v in walls.items()},
                         "reconstruct_stages_s": {k: round(statistics.median(v), 3) for k, v in stages.items()}})
    result = {"machine": {"cpu_count": os.cpu_count(), "python": platform.python_version()}, "runs": runs,
              "photos": rows}  # fmt: skip
    result["markdown"] = cli_markdown(result)
    return result


# The hair benchmark's photos: short hair, a curly up-do, a ponytail (studio) and a phone photo.
HAIR_PHOTOS = ("london_004_happy.jpg", "london_001_neutral.jpg", "london_025_neutral.jpg", "zoom_30cm.jpg")


def run_hair_benchmark(photos: str | os.PathLike | None = None, *, runs: int = 3) -> dict:
    """Whole processes on the same photos, alternated, `runs` times each: `sie3d reconstruct PHOTO --no-hair` and
    `sie3d reconstruct PHOTO` (with the hair, the default; default options otherwise); per photo the medians of
    wall and CPU time (CPU time moves less with the machine's load), their ratios and the hair stage's own times
    (from the hair run's report.json); overall the medians of the ratios."""
    import tempfile

    path = Path(photos) if photos else default_photos()
    named = [path / name for name in HAIR_PHOTOS] if path.is_dir() else []
    paths = named if named and all(p.is_file() for p in named) else _cli_photos(photos)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for photo in paths:
            walls: dict[str, list[float]] = {"reconstruct": [], "reconstruct_hair": []}
            cpus: dict[str, list[float]] = {"reconstruct": [], "reconstruct_hair": []}
            stages: dict[str, list[float]] = {}
            for run in range(runs):
                for command in walls:
                    out = Path(tmp) / f"{command}-{run}"
                    bare = [] if command == "reconstruct_hair" else ["--no-hair"]
                    walls[command].append(_timed_process(["reconstruct", str(photo), *bare, "-o", str(out)],
                                                         cpu=cpus[command]))  # fmt: skip
                report = json.loads((Path(tmp) / f"reconstruct_hair-{run}" / "report.json").read_text())
                hair_timings = (report.get("hair") or {}).get("timings", {})
                for stage, seconds in {"hair": report["timings_s"].get("hair", 0.0), **hair_timings}.items():
                    stages.setdefault(stage, []).append(seconds)
            plain_s, hair_s = (statistics.median(walls[c]) for c in walls)
            plain_cpu, hair_cpu = (statistics.median(cpus[c]) for c in cpus)
            rows.append({"photo": photo.name, "reconstruct_s": round(plain_s, 2),
                         "reconstruct_hair_s": round(hair_s, 2), "ratio": round(hair_s / plain_s, 3),
                         "reconstruct_cpu_s": round(plain_cpu, 2), "reconstruct_hair_cpu_s": round(hair_cpu, 2),
                         "cpu_ratio": round(hair_cpu / plain_cpu, 3),
                         "walls_s": {c: [round(w, 2) for w in v] for c, v in walls.items()},
                         "hair_stages_s": {k: round(statistics.median(v), 3) for k, v in stages.items()}})
    result = {"machine": {"cpu_count": os.cpu_count(), "python": platform.python_version(),
                          "load_average_1min": round(os.getloadavg()[0], 2)},
              "runs": runs, "photos": rows, "median_ratio": round(statistics.median(r["ratio"] for r in rows), 3),
              "median_cpu_ratio": round(statistics.median(r["cpu_ratio"] for r in rows), 3)}
    lines = [f"| photo | `reconstruct --no-hair` | `reconstruct` | ratio | CPU time | CPU time with hair | ratio | "
             f"hair stage (s) | (medians of {runs} runs) |", "|---|---|---|---|---|---|---|---|---|"]
    for row in rows:
        stages = ", ".join(f"{k} {v:.2f}" for k, v in row["hair_stages_s"].items())
        lines.append(f"| {row['photo']} | {row['reconstruct_s']:.2f} s | {row['reconstruct_hair_s']:.2f} s | "
                     f"{row['ratio']:.2f} | {row['reconstruct_cpu_s']:.2f} s | {row['reconstruct_hair_cpu_s']:.2f} s | "
                     f"{row['cpu_ratio']:.2f} | {stages} | |")
    lines.append(f"\nmedian ratio {result['median_ratio']:.2f} (wall), {result['median_cpu_ratio']:.2f} (CPU); "
                 f"load average (1 min) at the end {result['machine']['load_average_1min']}")
    result["markdown"] = "\n".join(lines)
    return result


BATCH_PROMPTS = (BENCH_TEXT, "quietly furious", "surprised but happy")


def run_batch_benchmark(photos: str | os.PathLike | None = None, *, workers: int = 2, sequential: int | None = None,
                        engine: str = "local") -> dict:  # fmt: skip
    """`sie3d batch` on the photos x `BATCH_PROMPTS` (default: the 24 London neutral photos x 3 = 72 avatars)
    with `workers` workers, against `sie3d generate PHOTO --text T` run once per (photo, prompt) in a row
    (the first `sequential` of them, default all): whole processes, default outputs (GLB, OBJ, preview,
    in-photo composite) for both. Throughput in avatars per minute, their ratio, and the load average."""
    import tempfile

    from sie3d.eval.harness import resolve_photos

    paths = list(resolve_photos(str(photos) if photos else None)[0])
    pairs = [(photo, text) for photo in paths for text in BATCH_PROMPTS]
    sequential = len(pairs) if sequential is None else max(1, min(sequential, len(pairs)))
    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory() as tmp:
        manifest = Path(tmp) / "manifest.csv"
        with manifest.open("w", newline="") as stream:
            csv.writer(stream).writerows([("photo", "text"), *pairs])
        batch_s = _timed_process(["batch", str(manifest), "-o", str(Path(tmp) / "batch"), "--workers", str(workers),
                                  "--engine", engine])  # fmt: skip
        load_between = os.getloadavg()
        walls = [_timed_process(["generate", str(photo), "--text", text, "-o", str(Path(tmp) / f"generate-{k}")])
                 for k, (photo, text) in enumerate(pairs[:sequential])]  # fmt: skip
    batch_rate = 60.0 * len(pairs) / batch_s
    generate_rate = 60.0 * len(walls) / sum(walls)
    result = {"machine": {"cpu_count": os.cpu_count(), "python": platform.python_version()},
              "photos": len(paths), "prompts": list(BATCH_PROMPTS), "avatars": len(pairs), "workers": workers,
              "engine": engine, "batch_s": round(batch_s, 1), "batch_per_min": round(batch_rate, 2),
              "generate_runs": len(walls), "generate_s": round(sum(walls), 1),
              "generate_median_s": round(statistics.median(walls), 2), "generate_per_min": round(generate_rate, 2),
              "ratio": round(batch_rate / generate_rate, 2),
              "load_average_1min": [round(load_before[0], 2), round(load_between[0], 2), round(os.getloadavg()[0], 2)]}
    result["markdown"] = "\n".join([
        f"| {len(pairs)} avatars ({len(paths)} photos x {len(BATCH_PROMPTS)} prompts) | wall | avatars/min |",
        "|---|---|---|",
        f"| `sie3d batch` ({engine}, {workers} workers) | {batch_s:.0f} s | {batch_rate:.1f} |",
        f"| `sie3d generate` x {len(walls)} in a row (median {result['generate_median_s']:.1f} s each) | "
        f"{sum(walls):.0f} s | {generate_rate:.1f} |",
        f"| ratio (batch / generate) | | **{result['ratio']:.2f}** |",
        "",
        f"load average (1 min) before, between, after: {', '.join(map(str, result['load_average_1min']))}",
    ])  # fmt: skip
    return result


def cli_markdown(result: dict) -> str:
    lines = [f"| photo | size | `inspect` | `reconstruct` | ratio | `generate PHOTO` | ratio to reconstruct | "
             f"`generate PERSON` (new text) | ratio to reconstruct | `generate PHOTO --refine` | its peak RSS | "
             f"(medians of {result['runs']} runs) |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for row in result["photos"]:
        width, height = row["size"]
        lines.append(f"| {row['photo']} | {width}x{height} ({width * height / 1e6:.1f} MP) | {row['inspect_s']:.1f} s "
                     f"| {row['reconstruct_s']:.1f} s | {row['ratio']:.2f} | {row['generate_s']:.1f} s | "
                     f"{row['generate_over_reconstruct']:.2f} | {row['generate_saved_s']:.1f} s | "
                     f"{row['saved_over_reconstruct']:.2f} | {row['generate_refined_s']:.1f} s | "
                     f"{row['refined_peak_rss_mb'] / 1024:.2f} GB | |")
    for row in result["photos"]:
        stages = ", ".join(f"{k} {v:.2f}" for k, v in row["reconstruct_stages_s"].items())
        lines.append(f"\n{row['photo']}, reconstruct stages (s): {stages}")
    return "\n".join(lines)


def reconstruction_markdown(result: dict) -> str:
    machine, err, frontal = result["machine"], result["fit_error_iod"], result["fit_error_iod_frontal_studio"]
    lines = [
        f"| measure ({machine['cpu_count']} CPU cores, {machine['torch_threads']} torch threads) | value |",
        "|---|---|",
        f"| landmark fit error, all {result['fitted']} photos with a face (mean / median / max, "
        f"% of eye distance) | {100 * err['mean']:.2f} / {100 * err['median']:.2f} / {100 * err['max']:.2f} |",
    ]
    if frontal:
        lines.append(f"| landmark fit error, {frontal['n']} frontal studio photos (mean / max) | "
                     f"{100 * frontal['mean']:.2f} / {100 * frontal['max']:.2f} |")
    lines.append(f"| model loading (once per process) | {result['model_load_s']:.2f} s |")
    for stage, seconds in result["stage_median_s"].items():
        lines.append(f"| {stage} (median of {result['stage_runs'][stage]}) | {seconds:.3f} s |")
    lines.append(f"| peak memory (RSS) | {result['peak_rss_mb']:.0f} MB |")
    lines.append("\nsave_person, write_* (PNG files) and export_* run in the writer thread while the next images "
                 "render; wait_for_writer is what is left of them when the renders are done.")
    return "\n".join(lines)


def to_markdown(result: dict) -> str:
    cold, obs, machine = result["cold_start"], result["observation_ms"], result["machine"]
    return "\n".join([
        f"| measure ({machine['cpu_count']} CPU cores, torch {machine['torch']}, "
        f"{machine['torch_threads']} threads) | value |",
        "|---|---|",
        f"| cold start: new process to first observation | {cold['process_wall_s']:.2f} s |",
        f"| &nbsp; imports (torch, mediapipe, sie3d) | {cold['imports_s']:.2f} s |",
        f"| &nbsp; model loading (landmarker, detector, SFace) | {cold['model_load_s']:.2f} s |",
        f"| &nbsp; first photo | {cold['first_photo_s']:.2f} s |",
        f"| observation per photo, warm (load + landmarks + blendshapes + identity), median of "
        f"{result['photos']} photos | {obs['median']:.0f} ms (p90 {obs['p90']:.0f}, max {obs['max']:.0f}) |",
        f"| peak memory (RSS), benchmark process | {result['peak_rss_mb']:.0f} MB |",
        f"| peak memory (RSS), cold-start process | {cold['peak_rss_mb']:.0f} MB |",
    ])


if __name__ == "__main__":
    print(json.dumps(cold_start_child(sys.argv[1])))


def web_photos(photos: str | os.PathLike | None, count: int) -> list[Path]:
    """`count` photos of different people for the web load test: the London studio photos of the shared faces
    (neutral ones) when present, else the photos of the folder."""
    folder = Path(photos) if photos else default_photos()
    london = sorted(folder.glob("london_*_neutral.jpg"))
    return (london or _photos_in(folder))[:count]


def run_web_benchmark(photos: str | os.PathLike | None = None, *, clients: int = 8, workers: int | None = None,
                      max_queued: int = 16) -> dict:  # fmt: skip
    """`sie3d web` under load on loopback (`sie3d.web.loadtest.run_load_test`): `clients` generations submitted
    at once, the bad uploads, a photo without a face (a corner of a studio photo), peak memory."""
    import tempfile

    from PIL import Image

    from sie3d.web.loadtest import run_load_test

    chosen = web_photos(photos, clients)
    with tempfile.TemporaryDirectory() as tmp:
        wall = Path(tmp) / "wall.png"
        with Image.open(chosen[0]) as image:
            image.crop((0, 0, 200, 200)).save(wall)
        return run_load_test(chosen, clients=clients, workers=workers or max(1, os.cpu_count() or 1),
                             max_queued=max_queued, no_face=wall)  # fmt: skip
