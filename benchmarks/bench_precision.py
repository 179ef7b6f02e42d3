#!/usr/bin/env python
"""How much float32 distances and bf16 forward passes move SSLMem and LayerMem scores.

memlib scores in float32 forward passes with float64 normalisation and
distances (``memlib.memorization.scoring``). This script measures, on real
trained encoders (one f and one g trained with memlib at ``--preset``, taken
from the cache when they are there), what the two cheaper choices would cost:

- ``float32 distances``: L2 normalisation and view distances in float32 (what
  memlib did before), against float64, on the same float32 representations;
- ``bf16 forward``: ``amp=True`` (bf16 autocast on the forward passes), against
  float32 forwards, both with float64 distances.

For every tap of the encoder and its final output it prints the largest and
mean absolute error of the per-point alignment loss and of the
range-normalised score (the paper's normalisation over the scored set), next
to the range of the raw score and the spread of the normalised scores (the
size of a signal). Points are the run's S_C, S_S, S_E and S_I, with the
runners' point ids, so the views are the ones the chapters score.

Usage::

    python benchmarks/bench_precision.py --preset cpu --json runs/bench_precision.json
"""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import os
import sys
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

import memlib
from memlib.data.augment import build_augmentation
from memlib.data.datasets import test_point_ids
from memlib.device import resolve_device
from memlib.experiments import get_preset
from memlib.experiments.artifacts import default_cache_dir
from memlib.experiments.encoders import family_specs, fit
from memlib.experiments.inputs import load_with_splits
from memlib.memorization.scoring import eval_mode, forward, view_distances
from memlib.memorization.sslmem import normalize_scores
from memlib.memorization.views import AugmentedViews, view_batches
from memlib.provenance import git_commit, hardware

OUTPUT = "(output)"


def float32_distances(r: torch.Tensor, b: int, k: int) -> torch.Tensor:
    """The float32 computation memlib used before: normalise and cdist in float32 (pairwise mode)."""
    r = F.normalize(r.flatten(1).float(), dim=1).view(b, k, -1)
    iu = torch.triu_indices(k, k, offset=1, device=r.device)
    return torch.cdist(r, r)[:, iu[0], iu[1]].mean(1).double()


def alignments(model, source, taps, batch_size, device):
    """Per tap (and the output): alignment with float64 distances, float32 distances, and bf16 forwards."""
    n, k = source.n_points, source.views
    names = list(taps) + [OUTPUT]
    out = {kind: {t: np.empty(n) for t in names} for kind in ("f64", "f32", "bf16")}
    dims = {}
    with eval_mode([model]), torch.inference_mode():
        for start, b, v in view_batches(source, "pairwise", batch_size, device):
            for amp, kinds in ((False, ("f64", "f32")), (True, ("bf16",))):
                acts = forward(model, v, batch_size, device, amp, taps=taps)
                acts[OUTPUT] = forward(model, v, batch_size, device, amp)
                for t in names:
                    dims[t] = int(acts[t][0].numel())
                    for kind in kinds:
                        d = (
                            float32_distances(acts[t], b, k)
                            if kind == "f32"
                            else view_distances(acts[t], b, k, "pairwise")
                        )
                        out[kind][t][start : start + b] = d.cpu().numpy()
    return out, dims


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--preset", default="cpu")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    dev = resolve_device(args.device)
    p = get_preset(args.preset, models_per_family=1)
    train_set, test_set, splits = load_with_splits(p, args.seed)
    specs = family_specs(p, splits, args.seed)
    f, g = (x.encoder.to(dev) for x in fit([specs["f"][0], specs["g"][0]], train_set, default_cache_dir(), dev))
    images = torch.cat(
        [
            train_set.images[splits.candidate],
            train_set.images[splits.shared],
            test_set.images[splits.extra],
            train_set.images[splits.independent],
        ]
    )
    ids = np.concatenate([splits.candidate, splits.shared, test_point_ids(splits.extra, train_set), splits.independent])
    source = AugmentedViews(images, build_augmentation(p.augmentation, train_set.image_size), p.views, args.seed, ids)
    taps = list(f.tap_names)
    af, dims = alignments(f, source, taps, p.score_batch_size, dev)
    ag, _ = alignments(g, source, taps, p.score_batch_size, dev)

    rows = []
    for t in taps + [OUTPUT]:
        raw = {k: ag[k][t] - af[k][t] for k in af}
        norm = {k: normalize_scores(r) for k, r in raw.items()}
        row = {"tap": t, "dim": dims[t], "raw_range": float(np.ptp(raw["f64"])), "score_std": float(norm["f64"].std())}
        for k in ("f32", "bf16"):
            row[f"{k}_align_max"] = float(
                max(np.abs(af[k][t] - af["f64"][t]).max(), np.abs(ag[k][t] - ag["f64"][t]).max())
            )
            row[f"{k}_score_max"] = float(np.abs(norm[k] - norm["f64"]).max())
            row[f"{k}_score_mean"] = float(np.abs(norm[k] - norm["f64"]).mean())
        rows.append(row)

    w = sys.stdout.write
    w(
        f"bench_precision: preset={p.name} seed={args.seed} N={source.n_points} K={p.views} arch={p.arch} "
        f"device={dev} commit={git_commit()}\n"
    )
    w(
        f"  {'tap':<10}{'dim':>7}{'raw range':>11}{'score sd':>10} | {'f32 align':>10}{'f32 score':>10}"
        f"{'(mean)':>9} | {'bf16 align':>11}{'bf16 score':>11}{'(mean)':>9}\n"
    )
    for r in rows:
        w(
            f"  {r['tap']:<10}{r['dim']:>7}{r['raw_range']:>11.4f}{r['score_std']:>10.4f} | {r['f32_align_max']:>10.1e}"
            f"{r['f32_score_max']:>10.1e}{r['f32_score_mean']:>9.1e} | {r['bf16_align_max']:>11.1e}"
            f"{r['bf16_score_max']:>11.1e}{r['bf16_score_mean']:>9.1e}\n"
        )
    w("  align: largest |error| of a per-point alignment loss; score: of a range-normalised score (max, mean)\n")
    result = {
        "benchmark": "bench_precision",
        "machine": hardware(dev),
        "torch": torch.__version__,
        "memlib": memlib.__version__,
        "commit": git_commit(),
        "preset": p.name,
        "seed": args.seed,
        "n_points": source.n_points,
        "views": p.views,
        "date_utc": _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "load_avg_1_5_15": list(os.getloadavg()),
        "rows": rows,
    }
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, indent=2) + "\n")
    return result


if __name__ == "__main__":
    main()
