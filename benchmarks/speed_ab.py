"""One `sie3d` command timed for two source trees in one interleaved run (whole processes).

    PYTHONPATH=src .venv/bin/python benchmarks/speed_ab.py --before OLD/src [--runs 5] -- reconstruct PHOTO -o OUT

Each run starts the command once from each tree, one after the other, so that the machine's other jobs weigh
on both alike; prints the medians of wall and CPU time (user + system) per tree and after/before ratios.
OLD/src is any checkout's ``src`` folder (e.g. ``git worktree add /tmp/old HEAD~1``). ``-q`` is added.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time


def timed(src: str, args: list[str]) -> tuple[float, float]:
    """(wall, CPU) seconds of one ``python -m sie3d.cli ARGS`` process run from the tree `src`."""
    command = [sys.executable, "-m", "sie3d.cli", *args]
    start = time.perf_counter()
    proc = subprocess.Popen(command, env={**os.environ, "PYTHONPATH": src}, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)  # fmt: skip
    _, status, usage = os.wait4(proc.pid, 0)
    if os.waitstatus_to_exitcode(status) != 0:
        raise RuntimeError(f"{' '.join(command)} failed (PYTHONPATH={src})")
    return time.perf_counter() - start, usage.ru_utime + usage.ru_stime


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--before", required=True, help="the old tree's src folder")
    parser.add_argument("--after", default="src", help="the new tree's src folder (default: src)")
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("command", nargs=argparse.REMAINDER, help="-- then the sie3d command and its arguments")
    args = parser.parse_args()
    command = [a for a in args.command if a != "--"] + ["-q"]
    trees = {"before": os.path.abspath(args.before), "after": os.path.abspath(args.after)}
    times: dict[str, list[tuple[float, float]]] = {tree: [] for tree in trees}
    for _ in range(args.runs):
        for tree, src in trees.items():
            times[tree].append(timed(src, command))
    medians = {tree: [statistics.median(t[k] for t in values) for k in (0, 1)] for tree, values in times.items()}
    for tree, (wall, cpu) in medians.items():
        print(f"{tree:6s} wall {wall:.2f} s, CPU {cpu:.2f} s (median of {args.runs})")
    (wall_b, cpu_b), (wall_a, cpu_a) = medians["before"], medians["after"]
    print(f"after/before: wall {wall_a / wall_b:.3f}, CPU {cpu_a / cpu_b:.3f}; "
          f"load average (1 min) at the end {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
