"""Contact sheet of hair volumes: rest avatars with their hair, seen from every side, to look at.

    PYTHONPATH=src .venv/bin/python scripts/hair_sheet.py [PHOTO ...] [-o OUT.png] [--cell 256] [--no-hair]
        [--redact-photos]

Without photos it takes the shared set's chosen hair types (`SHEET`: long, curly, short, tied back, bald, a
hat). One row per photo: the photo's head, then the rest avatar at yaw 0, +30, -30, +60, -60 and 180 degrees
(`sie3d.avatar.render_preview`, the hair drawn when the photo has some), labelled with the mask's kind and the
hair stage's seconds. Prints per photo the reconstruct and hair times. ``--no-hair`` renders the same avatars
without hair (the comparison). ``--bench N`` draws nothing: it reconstructs each photo N times without and N
times with hair, interleaved, one torch thread, and prints the median seconds of each and their ratio.

The sheet shows other people's photos: keep it out of the repository (the default is under /tmp);
``--redact-photos`` leaves the photo column out (avatars only, as the evaluation's published sheets).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageDraw

from sie3d.avatar import Models, ReconstructConfig, reconstruct
from sie3d.hair.geometry import HairConfig
from sie3d.photo import load_photo, shared_faces_dir

YAWS = (0.0, 30.0, -30.0, 60.0, -60.0, 180.0)
SHEET = {  # photo -> hair type (picked by looking at the shared photos)
    "london_002_neutral.jpg": "long, tied back",
    "london_003_neutral.jpg": "long bob, fringe",
    "singnet_adele_2016.jpg": "long",
    "london_001_neutral.jpg": "curly up-do, loose curls",
    "london_062_neutral.jpg": "curly up-do",
    "london_007_neutral.jpg": "curly, tied back",
    "london_004_neutral.jpg": "short",
    "london_012_neutral.jpg": "short, quiff",
    "london_025_neutral.jpg": "ponytail",
    "london_021_neutral.jpg": "bald",
    "max_surprised.jpeg": "Santa hat",
}


def head_thumbnail(person, cell: int) -> np.ndarray:
    """The photo cut to a square around the head, cell x cell px."""
    lm = person.observation.landmarks_px[:, :2]
    centre = lm.mean(0)
    side = 2.2 * float(np.ptp(lm[:, 1]))
    x0, y0 = centre - side / 2
    image = Image.fromarray(person.photo.rgb).crop((int(x0), int(y0 - 0.15 * side), int(x0 + side),
                                                     int(y0 + 0.85 * side)))  # fmt: skip
    return np.asarray(image.resize((cell, cell)))


def bench(models: Models, paths: list[Path], repeats: int) -> None:
    """Median `reconstruct` seconds per photo without and with hair (the same process, interleaved)."""
    configs = {"without": ReconstructConfig(hair=HairConfig(enabled=False)), "with": ReconstructConfig()}
    photos = [load_photo(path) for path in paths]
    reconstruct(photos[0], models, configs["with"])  # warm-up: every model loaded, caches filled
    seconds: dict[str, list[float]] = {name: [] for name in configs}
    hair: list[float] = []
    for _ in range(repeats):
        for photo in photos:
            for name, config in configs.items():
                start = time.perf_counter()
                person = reconstruct(photo, models, config)
                seconds[name].append(time.perf_counter() - start)
                if name == "with":
                    hair.append(person.timings["hair"])
    without, with_ = np.median(seconds["without"]), np.median(seconds["with"])
    print(f"reconstruct, {len(photos)} photos x {repeats}: median {without:.2f} s without hair, {with_:.2f} s with "
          f"hair ({with_ / without:.2f}x); the hair stage alone: median {np.median(hair):.2f} s, "
          f"90th percentile {np.percentile(hair, 90):.2f} s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("photos", nargs="*")
    parser.add_argument("-o", "--out", default="/tmp/hair_sheet.png")
    parser.add_argument("--cell", type=int, default=256)
    parser.add_argument("--no-hair", action="store_true")
    parser.add_argument("--bench", type=int, default=0, metavar="N")
    parser.add_argument("--redact-photos", action="store_true", help="leave the photo column out")
    args = parser.parse_args()
    torch.set_num_threads(1)
    faces = shared_faces_dir() or Path("../shared/faces")
    photos = [(Path(p), "") for p in args.photos] or [(faces / name, kind) for name, kind in SHEET.items()]
    with Models.load() as models:  # closed before exit: MediaPipe's tasks complain when torn down at shutdown
        if args.bench:
            bench(models, [path for path, _ in photos], args.bench)
            return
        rows = sheet_rows(models, photos, args)
    Image.fromarray(np.concatenate(rows, 0)).save(args.out)
    print("wrote", args.out)


def sheet_rows(models: Models, photos: list[tuple[Path, str]], args: argparse.Namespace) -> list[np.ndarray]:
    """One image row per photo: its rest avatar at every yaw of `YAWS` (and the photo, unless redacted)."""
    from sie3d.avatar import render_preview

    config = ReconstructConfig(texture_size=1024, hair=HairConfig(enabled=not args.no_hair))
    rows = []
    for path, kind in photos:
        start = time.perf_counter()
        person = reconstruct(load_photo(path), models, config)
        seconds = time.perf_counter() - start
        views = render_preview(person, models, person.rest_expression, args.cell, YAWS)
        row = views if args.redact_photos else np.concatenate([head_thumbnail(person, args.cell), views], 1)
        hair = person.hair
        label = f"{path.name} ({kind})  " + ("no hair mesh" if hair is None else
                                             f"mask {hair.mask_summary['kind']}, seen {hair.texture.seen:.2f}")
        print(f"{path.name}: reconstruct {seconds:.2f} s, hair {person.timings.get('hair', 0.0):.2f} s, "
              f"{'none' if hair is None else hair.summary()}")
        image = Image.fromarray(row)
        ImageDraw.Draw(image).text((4, 4), label, fill=(0, 0, 0))
        rows.append(np.asarray(image))
    return rows


if __name__ == "__main__":
    main()
