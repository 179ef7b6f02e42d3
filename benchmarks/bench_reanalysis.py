"""How long a registered chapter takes to re-analyse from the evidence store (nothing trains, nothing scores).

    python benchmarks/bench_reanalysis.py --preset cpu [--store results] [--repeats 3] [--json runs/reanalysis.json]

For every registered experiment (``memlib.experiments.registry``), ``run_experiment(name, preset,
train=False)`` is timed from a cold process state each repetition (the store's in-memory table cache is
dropped), then the analysis the chapter shows (claims, tables) is timed on its result. An experiment whose
store rows are missing is reported as such, never trained.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--preset", default="cpu")
    ap.add_argument("--store", type=Path, default=None, help="store folder (default: memlib's default for the preset)")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args(argv)

    import torch

    torch.set_num_threads(args.threads)
    from memlib.evidence import EvidenceStore, open_store
    from memlib.experiments.registry import experiments, run_experiment
    from memlib.provenance import git_commit

    store_path = open_store(args.store, args.preset).path
    print(
        f"# {platform.node()} | {os.cpu_count()} cores | torch {torch.__version__} threads {args.threads} | "
        f"memlib {git_commit()} | load {os.getloadavg()[0]:.2f} | store {store_path}"
    )
    rows = []
    for name, exp in experiments().items():
        times, analyse = [], []
        for _ in range(args.repeats):
            store = EvidenceStore(store_path)  # a fresh object: no table cached in memory
            t0 = time.perf_counter()
            try:
                res = run_experiment(name, args.preset, store=store, train=False, progress=False)
            except LookupError as e:
                print(f"{name}: not in the store ({e})")
                break
            times.append(time.perf_counter() - t0)
            t0 = time.perf_counter()
            for method in ("claims", "contrasts", "reliability_curve", "encoder_power"):
                if hasattr(res, method):
                    getattr(res, method)()
            analyse.append(time.perf_counter() - t0)
        if times:
            times.sort(), analyse.sort()
            row = {
                "experiment": name,
                "chapter": exp.chapter,
                "read from store (s, median)": round(times[len(times) // 2], 2),
                "analysis (s, median)": round(analyse[len(analyse) // 2], 2),
                "range read": [round(times[0], 2), round(times[-1], 2)],
            }
            rows.append(row)
            print(
                f"{name:16} chapter {exp.chapter:4} read {row['read from store (s, median)']:7.2f} s "
                f"[{row['range read'][0]}–{row['range read'][1]}]  analysis {row['analysis (s, median)']:7.2f} s"
            )
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(rows, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
