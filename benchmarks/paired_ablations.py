"""Paired difference of two ablations of one `sie3d eval` run: the same people, targets and views.

    PYTHONPATH=src .venv/bin/python benchmarks/paired_ablations.py EVAL_DIR/rows.csv prototype wrinkles

(rows.csv or rows.json of the run.)
For every view and expected emotion (and all of them): the mean difference B - A of facex's top-1
correctness and of its probability for the expected emotion, and of FaceNet's cosine to the photo, each
with a 95% bootstrap interval over people (`sie3d.eval.stats.bootstrap_mean`, whole people resampled).
Pairing removes what both ablations share (the person, the texture, the pose), so a feature's effect is
seen more sharply than by comparing the two series' own intervals. Reads rows only: it judges nothing.
"""

from __future__ import annotations

import csv
import json
import sys
from collections import defaultdict
from pathlib import Path

import numpy as np

from sie3d.eval.stats import bootstrap_mean
from sie3d.expressions import EMOTIONS

MEASURES = (("facex_correct", "top-1 correct"), ("facex_p_expected", "p(expected)"), ("identity_facenet", "FaceNet"))


def main() -> None:
    rows_path, first, second = Path(sys.argv[1]), sys.argv[2], sys.argv[3]
    if rows_path.suffix == ".csv":
        with open(rows_path, newline="") as stream:
            rows = [{**r, "facex_correct": r["facex_correct"] == "True"} for r in csv.DictReader(stream)]
    else:
        rows = json.loads(rows_path.read_text())["rows"]
    paired: dict[tuple, dict[str, dict]] = defaultdict(dict)  # (view, person, prompt, intensity) -> ablation -> row
    for row in rows:
        if row["ablation"] in (first, second):
            paired[(row["view"], row["person"], row["prompt"], row["intensity"])][row["ablation"]] = row
    views = sorted({key[0] for key in paired}, key=lambda v: (v == "photo", v))
    print(f"{second} - {first}, paired by person, target and view; mean [95% bootstrap over people] n\n")
    print("| view | expected | " + " | ".join(label for _, label in MEASURES) + " |")
    print("|---|---|" + "---|" * len(MEASURES))
    for view in views:
        for emotion in (*EMOTIONS, "all"):
            pairs = [(k, p) for k, p in paired.items() if k[0] == view and len(p) == 2
                     and (emotion == "all" or p[first]["expected"] == emotion)]  # fmt: skip
            if not pairs:
                continue
            people = [k[1] for k, _ in pairs]
            cells = []
            for column, _ in MEASURES:
                delta = [float(p[second][column]) - float(p[first][column]) for _, p in pairs]
                digits = 3 if column == "identity_facenet" else 2
                cells.append(bootstrap_mean(np.array(delta), people).format(digits))
            name = f"**{emotion}**" if emotion == "all" else emotion
            print(f"| {view} | {name} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
