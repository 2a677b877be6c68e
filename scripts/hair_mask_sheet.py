"""Contact sheet of hair masks: each photo's head with its hair mask overlaid, to look at.

    .venv/bin/python scripts/hair_mask_sheet.py [PHOTO_OR_FOLDER ...] [-o OUT.png] [--debug] [--cell 256]

Without photos it takes every photo of the shared set (``$SIE3D_FACES`` or ../shared/faces). Each cell is the
head crop the mask is computed on, hair tinted red (its outline in yellow), the face's landmark oval in
green, labelled with the file name, the mask's kind, confidence and time. ``--debug`` adds, per photo, the
person probability and the seeds of the colour model (skin blue, hair red, clothes green). Also writes
OUT.csv with one line per photo (kind, confidence, coverage, seconds, notes).

The sheet shows other people's photos: keep it out of the repository (the default is under /tmp).
"""

from __future__ import annotations

import argparse
import csv
import logging
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import torch
from PIL import Image, ImageDraw

from sie3d.errors import Sie3dError
from sie3d.face.landmarker import FaceObserver
from sie3d.hair.mask import HairMaskConfig, PersonSegmenter, hair_mask_debug
from sie3d.head.fit import FACE_OVAL
from sie3d.photo import PHOTO_SUFFIXES, load_photo, shared_faces_dir

log = logging.getLogger("hair_mask_sheet")


def photo_list(args: list[str]) -> list[Path]:
    """Paths of the photos named, or of every photo in the folders named (or in the shared set)."""
    sources = [Path(a) for a in args] or [shared_faces_dir() or Path("../shared/faces")]
    photos = []
    for source in sources:
        if source.is_dir():
            photos += sorted(p for p in source.iterdir() if p.suffix.lower() in PHOTO_SUFFIXES)
        else:
            photos.append(source)
    return photos


def overlay(crop: np.ndarray, mask: np.ndarray, oval: np.ndarray) -> np.ndarray:
    """(S, S, 3) uint8 crop with the (S, S) mask in [0, 1] tinted red, its 0.5 outline yellow, oval green."""
    out = crop.astype(np.float32)
    tint = np.array([255.0, 30.0, 30.0])
    out = out * (1 - 0.55 * mask[..., None]) + tint * 0.55 * mask[..., None]
    out = out.astype(np.uint8)
    contours, _ = cv2.findContours((mask > 0.5).astype(np.uint8), cv2.RETR_LIST, cv2.CHAIN_APPROX_NONE)
    cv2.drawContours(out, contours, -1, (255, 230, 0), 1)
    cv2.polylines(out, [np.round(oval).astype(np.int32)], True, (0, 200, 0), 1)
    return out


def seeds_image(crop: np.ndarray, seeds: dict[str, np.ndarray]) -> np.ndarray:
    out = (crop.astype(np.float32) * 0.4).astype(np.uint8)
    colours = {"skin": (60, 120, 255), "hair": (255, 40, 40), "clothes": (40, 220, 40)}
    for name, mask in seeds.items():
        out[mask] = colours[name]
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("photos", nargs="*")
    parser.add_argument("-o", "--out", default="/tmp/hair_mask_sheet.png")
    parser.add_argument("--debug", action="store_true")
    parser.add_argument("--cell", type=int, default=256)
    parser.add_argument("--columns", type=int, default=6, help="cells per row (--debug puts 3 cells per photo)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    torch.set_num_threads(1)
    config = HairMaskConfig()
    segmenter = PersonSegmenter()
    cells, rows = [], []
    with FaceObserver() as observer:
        for path in photo_list(args.photos):
            try:
                photo = load_photo(path)
                observation, faces = observer.observe(photo)
            except Sie3dError as exc:
                log.info("%s: skipped (%s)", path.name, exc.message)
                continue
            start = time.perf_counter()
            hair, debug = hair_mask_debug(photo.rgb, observation, segmenter, config,
                                           [f for f in faces if f.index != observation.index])
            seconds = time.perf_counter() - start
            crop_hair = debug["crop_hair"]
            oval = debug["head_crop"].to_crop(observation.landmarks_px)[list(FACE_OVAL)]
            images = [overlay(debug["crop"], crop_hair.mask, oval)]
            if args.debug:
                person = (np.clip(debug["person"], 0, 1)[..., None] * debug["crop"]).astype(np.uint8)
                images += [person, seeds_image(debug["crop"], crop_hair.seeds)]
            label = f"{path.stem[:24]}  {hair.kind}  c={hair.confidence:.2f}  {seconds * 1000:.0f}ms"
            for k, image in enumerate(images):
                cell = Image.fromarray(image).resize((args.cell, args.cell), Image.Resampling.BILINEAR)
                if k == 0:
                    draw = ImageDraw.Draw(cell)
                    draw.rectangle((0, 0, args.cell, 13), fill=(0, 0, 0))
                    draw.text((2, 1), label, fill=(255, 255, 255))
                cells.append(cell)
            rows.append({"photo": path.name, "kind": hair.kind, "confidence": f"{hair.confidence:.3f}",
                         "coverage": f"{hair.coverage:.4f}", "seconds": f"{seconds:.3f}",
                         **{f"t_{k}": f"{v:.3f}" for k, v in hair.timings.items()},
                         "notes": " | ".join(hair.notes)})  # fmt: skip
            log.info("%-40s %-16s conf %.2f  %.0f ms  %s", path.name, hair.kind, hair.confidence, seconds * 1000,
                     " | ".join(hair.notes))  # fmt: skip
    if not cells:
        log.error("no photo with a face")
        return 1
    columns = max(1, args.columns)
    n_rows = -(-len(cells) // columns)
    sheet = Image.new("RGB", (columns * args.cell, n_rows * args.cell), (40, 40, 40))
    for i, cell in enumerate(cells):
        sheet.paste(cell, ((i % columns) * args.cell, (i // columns) * args.cell))
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    sheet.save(out)
    with open(out.with_suffix(".csv"), "w", newline="") as stream:
        writer = csv.DictWriter(stream, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    log.info("wrote %s (%d photos) and %s", out, len(rows), out.with_suffix(".csv"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
