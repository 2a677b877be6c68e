"""`sie3d reconstruct` vs `sie3d reconstruct --hair`, whole processes, for two source trees in one interleaved run.

    PYTHONPATH=src .venv/bin/python benchmarks/hair_speed_ab.py --before OLD/src --after src [--runs 3] [PHOTO ...]

Each run times, per photo, the four processes (before/after x without/with hair) one after the other, so that
the machine's other jobs weigh on all four alike; prints the medians of wall and CPU time (user + system) and
the with/without-hair ratio per photo and tree, then each tree's median ratio. Default photos: those of
`sie3d bench hair`. OLD/src is any checkout's ``src`` folder (e.g. ``git worktree add /tmp/old main``).
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
from pathlib import Path

import speed_ab

from sie3d.eval.bench import HAIR_PHOTOS, default_photos


def timed(src: str, photo: Path, hair: bool, out: Path) -> tuple[float, float]:
    """(wall, CPU) seconds of one `sie3d reconstruct` process run from the tree `src`."""
    return speed_ab.timed(src, ["reconstruct", str(photo), "--hair" if hair else "--no-hair", "-o", str(out), "-q"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("photos", nargs="*")
    parser.add_argument("--before", required=True, help="the old tree's src folder")
    parser.add_argument("--after", default="src", help="the new tree's src folder (default: src)")
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    photos = [Path(p) for p in args.photos] or [default_photos() / name for name in HAIR_PHOTOS]
    trees = {"before": str(Path(args.before).resolve()), "after": str(Path(args.after).resolve())}
    times: dict[tuple[str, str, bool], list[tuple[float, float]]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "out"
        for _ in range(args.runs):
            for photo in photos:
                for tree, src in trees.items():
                    for hair in (False, True):
                        times.setdefault((photo.name, tree, hair), []).append(timed(src, photo, hair, out))
    ratios: dict[str, list[float]] = {}
    for photo in photos:
        for tree in trees:
            (plain, plain_cpu), (hair, hair_cpu) = (
                [statistics.median(t[k] for t in times[(photo.name, tree, h)]) for k in (0, 1)] for h in (False, True))
            ratios.setdefault(tree, []).append(hair / plain)
            print(f"{photo.name:24s} {tree:6s} reconstruct {plain:.2f} s, --hair {hair:.2f} s, ratio {hair / plain:.3f}"
                  f" | CPU {plain_cpu:.2f} s, {hair_cpu:.2f} s, ratio {hair_cpu / plain_cpu:.3f}")
    for tree, values in ratios.items():
        print(f"{tree}: median ratio {statistics.median(values):.3f} ({', '.join(f'{v:.3f}' for v in values)})")
    print(f"load average (1 min) at the end {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
