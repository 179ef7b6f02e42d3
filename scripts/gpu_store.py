"""Encoders for the evidence store, trained and scored on a GPU: one registered experiment's missing runs.

    python scripts/gpu_store.py EXPERIMENT [--preset cpu] [--store DIR] [--out DIR] [--budget-s S]

Design by design (each one batch of the store, so what finishes lands): the encoders it trains
(``design.members``) train in one pool of ``$MEMLIB_GPU_WORKERS`` processes sharing the GPU, then its run is
filled into the store (scored, probed, appended), as ``memlib-evidence add`` does. A design that would not
finish inside ``--budget-s`` (judged by the last one) is left out. Then the batch files this call added are
packed into ``OUT/store_batches.tar`` (``memlib-evidence verify`` checks them here after unpacking into
``results/``), with ``OUT/gpu_store.json``: timings per phase.

Run it on a copy of the store (a copy of the repository holds ``results/``), so rows already stored are
recognised; a key stored with other values stops the append with :class:`~memlib.evidence.store.StoreConflict`
(trained elsewhere, on other hardware): such designs belong to the machine that trained them.
"""

from __future__ import annotations

import argparse
import json
import os
import tarfile
import time
from pathlib import Path


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("experiment")
    ap.add_argument("--preset", default="cpu")
    ap.add_argument("--store", type=Path, default=Path("results"))
    ap.add_argument("--out", type=Path, default=Path(os.environ.get("OUT", "runs/gpu_store")))
    ap.add_argument("--budget-s", type=float, default=300.0)
    ap.add_argument("--device", default="cuda")
    args = ap.parse_args()
    t0 = time.perf_counter()

    import torch

    from memlib.data.datasets import load_dataset
    from memlib.evidence import open_store
    from memlib.experiments.artifacts import default_cache_dir
    from memlib.experiments.encoders import fit
    from memlib.experiments.registry import get_experiment

    args.out.mkdir(parents=True, exist_ok=True)
    exp = get_experiment(args.experiment)
    cfg = exp.config(args.preset)
    store = open_store(args.store, args.preset)
    before = {p for p in store.path.rglob("*.parquet")}
    designs = exp.design(cfg)
    todo = [d for d in designs if exp.missing(store, d)] if exp.missing else designs
    specs = {d.name: [s for ss in getattr(d, "members", {}).values() for s in ss] for d in todo}
    log = {
        "experiment": exp.name,
        "preset": args.preset,
        "device": torch.cuda.get_device_name(0) if torch.cuda.is_available() else "cpu",
        "gpu_workers": os.environ.get("MEMLIB_GPU_WORKERS", "1"),
        "designs": [d.name for d in designs],
        "todo": [d.name for d in todo],
        "encoders_to_train": len({s.key() for ss in specs.values() for s in ss}),
    }
    print(json.dumps(log, indent=1), flush=True)
    train_set = load_dataset(cfg.preset.dataset, "train") if any(specs.values()) else None
    log["filled"], log["train_s"], log["fill_s"] = [], [], []
    for d in todo:
        left = args.budget_s - (time.perf_counter() - t0)
        last = max((a + b for a, b in zip(log["train_s"], log["fill_s"])), default=0.0)
        if left < 1.5 * last:
            print(f"stop before {d.name}: {left:.0f} s left, the last design took {last:.0f} s", flush=True)
            break
        t = time.perf_counter()
        if specs[d.name]:
            fit(specs[d.name], train_set, default_cache_dir(), args.device, progress=False)
        log["train_s"].append(round(time.perf_counter() - t, 1))
        t = time.perf_counter()
        exp.fill(d, store=store, device=args.device, progress=False)
        log["filled"].append(d.name)
        log["fill_s"].append(round(time.perf_counter() - t, 1))
        print(f"{d.name}: trained in {log['train_s'][-1]} s, filled in {log['fill_s'][-1]} s", flush=True)
    new = sorted(p for p in store.path.rglob("*.parquet") if p not in before)
    with tarfile.open(args.out / "store_batches.tar", "w") as tar:
        for p in new:
            tar.add(p, arcname=str(p.relative_to(store.path)))
    log["new_files"] = [str(p.relative_to(store.path)) for p in new]
    log["total_s"] = round(time.perf_counter() - t0, 1)
    (args.out / "gpu_store.json").write_text(json.dumps(log, indent=1))
    print(f"{len(new)} new store files packed into {args.out / 'store_batches.tar'}; {log['total_s']} s", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
