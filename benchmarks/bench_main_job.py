#!/usr/bin/env python
"""Wall time of the main job, ``memlib-run-notebooks --preset smoke --build``.

The goal is ≤ 15 minutes on 2 CPU cores. The script only times the command
(run from the repository root, as README.md says) and prints a header
(machine, commit, date, load average) and the minutes; ``--json PATH`` also
writes them. Like the command, it leaves ``book/chapters`` alone (the smoke
book goes to ``_build/scratch/smoke``). Run it on an otherwise idle machine:
it measures the whole job, not a ratio, so background load inflates it.

Usage::

    python benchmarks/bench_main_job.py
    python benchmarks/bench_main_job.py --json runs/bench_main_job.json -- --only 01
"""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

from memlib.provenance import git_commit, hardware

ROOT = Path(__file__).resolve().parents[1]
GOAL_MIN = 15.0


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--preset", default="smoke")
    p.add_argument("--json", type=Path, default=None, metavar="PATH", help="write the figures to this JSON file")
    p.add_argument("extra", nargs="*", help="more arguments for memlib-run-notebooks (after --)")
    args = p.parse_args(argv)
    exe = shutil.which("memlib-run-notebooks")
    if exe is None:
        p.error("memlib-run-notebooks is not on PATH; run `pip install -e .` first")
    cmd = [exe, "--preset", args.preset, "--build", *args.extra]
    load0 = os.getloadavg()
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, cwd=ROOT)
    wall = time.perf_counter() - t0
    out = {
        "benchmark": "bench_main_job",
        "command": " ".join(["memlib-run-notebooks", *cmd[1:]]),
        "returncode": proc.returncode,
        "wall_s": round(wall, 1),
        "wall_min": round(wall / 60, 2),
        "goal_min": GOAL_MIN,
        "machine": hardware(),
        "cpu_count": os.cpu_count(),
        "commit": git_commit(),
        "date_utc": _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "load_avg_before": [round(x, 2) for x in load0],
        "load_avg_after": [round(x, 2) for x in os.getloadavg()],
    }
    w = sys.stdout.write
    w("bench_main_job: wall time of the main job\n")
    for k in ("command", "machine", "commit", "date_utc", "load_avg_before", "load_avg_after", "returncode"):
        w(f"  {k:<16} {out[k]}\n")
    verdict = "meets" if proc.returncode == 0 and wall / 60 <= GOAL_MIN else "MISSES"
    w(f"  wall time        {wall / 60:.2f} min ({verdict} the {GOAL_MIN:.0f}-minute goal)\n")
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(out, indent=2) + "\n")
    return out


if __name__ == "__main__":
    sys.exit(0 if main()["returncode"] == 0 else 1)
