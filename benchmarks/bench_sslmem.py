#!/usr/bin/env python
"""Benchmark of memlib's SSLMem scoring against its forward-pass floor.

SSLMem in ``pairwise`` mode needs 2·N·K forward passes (N points, K views,
encoders f and g). This script times, in the same process and interleaved
(one repetition = one run of every measurement, in a rotating order; medians
over the repetitions), so that background load hits all of them alike:

- ``score``  ``memlib.sslmem(f, g, images, SimCLRAugment(size), views=K,
             mode="pairwise", batch_size=B)`` on uint8 images;
- ``floor``  exactly the forward passes it needs and nothing else: ``f(x)``
             and ``g(x)`` on pre-made float views already on the device,
             batched as ``sslmem`` batches them (``B // K`` points, i.e.
             ``(B // K)·K`` views, per forward), models in eval mode, under
             ``torch.inference_mode`` (float32, as ``sslmem`` by default;
             ``--amp on`` gives both bf16 autocast);
- ``aug``    the augmentation alone, as ``sslmem`` runs it (per-point keyed
             draws on the CPU, ``repeat_interleave``, ``SimCLRAugment``);
- ``post``   the rest of ``sslmem``'s per-batch work on ready representations:
             float64 L2 normalisation and distances over the K views, the
             upper-triangle mean and the copy to a numpy array;
- ``loop``   the authors' way: a per-point loop with batch size 1 (for each
             point and each view, augment one image and run f and g on it),
             timed on ``--subset`` points and extrapolated to N.

It prints the ratios ``score / floor`` (the overhead of memlib over the bare
forwards; the goal is ≤ 1.15), the shares of ``aug`` and ``post`` in
``score``, and the speed-up of ``score`` over the extrapolated ``loop``. Each
ratio is computed within one repetition and the median over repetitions is
reported with its range, so timings are comparable on a loaded machine; the
absolute seconds are printed for reference only.

Usage (see benchmarks/README.md)::

    python benchmarks/bench_sslmem.py                           # resnet_narrow, N=512, CPU
    python benchmarks/bench_sslmem.py --arch resnet18 --n 64
    python benchmarks/bench_sslmem.py --device cuda --arch resnet18 --n 10000 --json out.json
"""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import os
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

import memlib
from memlib.data.augment import SimCLRAugment
from memlib.device import resolve_device
from memlib.memorization.scoring import view_distances
from memlib.memorization.views import AugmentedViews
from memlib.models import ENCODERS, build_encoder
from memlib.provenance import git_commit, hardware

# --------------------------------------------------------------------------- setup


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.ArgumentDefaultsHelpFormatter
    )
    p.add_argument("--device", default="cpu", help="cpu, cuda, cuda:N or auto")
    p.add_argument("--arch", default="resnet_narrow", choices=sorted(ENCODERS))
    p.add_argument("--n", type=int, default=None, help="points scored; None: 512 on CPU, 10000 on CUDA")
    p.add_argument("--views", type=int, default=5, help="K, views per point")
    p.add_argument("--batch-size", type=int, default=512, help="images per forward pass, views included")
    p.add_argument("--repeats", type=int, default=5, help="interleaved repetitions (medians are taken over them)")
    p.add_argument("--warmup", type=int, default=1, help="untimed repetitions first")
    p.add_argument("--threads", type=int, default=None, help="torch.set_num_threads; None: torch's choice (all cores)")
    p.add_argument(
        "--loop-threads",
        type=int,
        default=None,
        help="torch threads while the batch-1 loop runs; None: as --threads. 1 is its fair setting "
        "on a loaded machine, where tiny multi-threaded ops stall at OpenMP barriers",
    )
    p.add_argument("--subset", type=int, default=32, help="points for the batch-size-1 loop (extrapolated to N)")
    p.add_argument("--no-loop", action="store_true", help="skip the batch-size-1 loop")
    p.add_argument("--img-size", type=int, default=32, help="image side (CIFAR-like 32; Fashion-MNIST 28)")
    p.add_argument("--channels", type=int, default=3)
    p.add_argument(
        "--amp",
        choices=("on", "off"),
        default="off",
        help="bf16 autocast, for sslmem and the floor alike (off: float32, sslmem's default)",
    )
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", type=Path, default=None, metavar="PATH", help="write the figures to this JSON file")
    args = p.parse_args(argv)
    if args.views < 2:
        p.error("--views must be ≥ 2 (pairwise mode)")
    if args.repeats < 1:
        p.error("--repeats must be ≥ 1")
    return args


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(fn, device: torch.device) -> float:
    sync(device)
    t0 = time.perf_counter()
    fn()
    sync(device)
    return time.perf_counter() - t0


def _median(xs):
    return statistics.median(xs)


# --------------------------------------------------------------------------- the measured things


class Bench:
    """Holds the models, data and pre-made views; one method per measurement."""

    def __init__(self, args: argparse.Namespace, device: torch.device):
        self.args, self.device = args, device
        self.n, self.k, self.bs = args.n, args.views, args.batch_size
        self.amp = args.amp == "on"
        c, s = args.channels, args.img_size
        torch.manual_seed(args.seed)
        self.f = build_encoder(args.arch, c, s).to(device).eval()
        torch.manual_seed(args.seed + 1)
        self.g = build_encoder(args.arch, c, s).to(device).eval()
        gen = torch.Generator().manual_seed(args.seed)
        # uint8 images on the device, as a user would pass them
        self.images = torch.randint(0, 256, (self.n, c, s, s), dtype=torch.uint8, generator=gen).to(device)
        self.aug = SimCLRAugment(size=s)
        # sslmem's batch layout: B // K points per forward, the last batch partial
        self.per_batch = max(1, self.bs // self.k)
        self.starts = list(range(0, self.n, self.per_batch))
        self.source = AugmentedViews(self.images, self.aug, self.k, args.seed)
        # pre-made float views for the floor, and representations for `post`
        self.views_batches = []
        with torch.inference_mode():
            for start in self.starts:
                end = min(start + self.per_batch, self.n)
                self.views_batches.append(self.source.point_views(start, end, device).contiguous())
            self.reps = [[self._forward(m, v) for v in self.views_batches] for m in (self.f, self.g)]
        self.forwards = 2 * sum(v.shape[0] for v in self.views_batches)
        assert self.forwards == 2 * self.n * self.k
        self.rep_dim = self.reps[0][0].shape[1]

    def _forward(self, m, v):
        with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.amp):
            return m(v)

    # T_score: the library call
    def score(self):
        return memlib.sslmem(
            self.f,
            self.g,
            self.images,
            self.aug,
            views=self.k,
            mode="pairwise",
            batch_size=self.bs,
            seed=self.args.seed,
            device=self.device,
            amp=self.amp,
        )

    # T_floor: the 2·N·K forwards, nothing else
    def floor(self):
        with torch.inference_mode():
            for v in self.views_batches:
                self._forward(self.f, v)
                self._forward(self.g, v)

    # the augmentation, as sslmem runs it
    def augment(self):
        with torch.inference_mode():
            for start in self.starts:
                self.source.point_views(start, min(start + self.per_batch, self.n), self.device)

    # sslmem's work after the forwards: normalise, cdist, triangle mean, copy out
    def post(self):
        out = np.empty((2, self.n), dtype=np.float64)
        with torch.inference_mode():
            for j in range(2):
                for start, r in zip(self.starts, self.reps[j]):
                    b = r.shape[0] // self.k
                    out[j, start : start + b] = view_distances(r, b, self.k, "pairwise").cpu().numpy()
        return out

    # the authors' way: one point, one view, one image per forward
    def loop(self):
        threads = torch.get_num_threads()
        if self.args.loop_threads is not None:
            torch.set_num_threads(self.args.loop_threads)
        try:
            return self._loop()
        finally:
            torch.set_num_threads(threads)

    def _loop(self):
        n_sub = min(self.args.subset, self.n)
        gen = torch.Generator(device=self.device).manual_seed(self.args.seed)
        raw = np.empty(n_sub)
        with torch.inference_mode():
            for i in range(n_sub):
                x = self.images[i : i + 1]
                rf, rg = [], []
                for _ in range(self.k):
                    v = self.aug(x, gen)
                    rf.append(F.normalize(self._forward(self.f, v).flatten(1).float(), dim=1))
                    rg.append(F.normalize(self._forward(self.g, v).flatten(1).float(), dim=1))
                raw[i] = (torch.pdist(torch.cat(rg)).mean() - torch.pdist(torch.cat(rf)).mean()).item()
        return raw


# --------------------------------------------------------------------------- main


def main(argv=None) -> dict:
    args = parse_args(argv)
    device = resolve_device(args.device)
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    if args.n is None:
        args.n = 10_000 if device.type == "cuda" else 512
    t_setup = time.perf_counter()
    bench = Bench(args, device)
    t_setup = time.perf_counter() - t_setup

    names = ["score", "floor", "aug", "post"] + ([] if args.no_loop else ["loop"])
    fns = {name: getattr(bench, "augment" if name == "aug" else name) for name in names}
    for _ in range(args.warmup):
        for name in names:
            fns[name]()
    times = {name: [] for name in names}
    for r in range(args.repeats):
        order = names[r % len(names) :] + names[: r % len(names)]  # rotate, so no measurement always runs first
        for name in order:
            times[name].append(timed(fns[name], device))

    n_sub = min(args.subset, args.n)
    per_rep = {
        "score/floor": [s / f for s, f in zip(times["score"], times["floor"])],
        "aug/score": [a / s for a, s in zip(times["aug"], times["score"])],
        "post/score": [p / s for p, s in zip(times["post"], times["score"])],
        "floor/score": [f / s for f, s in zip(times["floor"], times["score"])],
        "rest/score": [
            (s - f - a - p) / s for s, f, a, p in zip(times["score"], times["floor"], times["aug"], times["post"])
        ],
        "(floor+aug+post)/floor": [(f + a + p) / f for f, a, p in zip(times["floor"], times["aug"], times["post"])],
    }
    if "loop" in times:
        per_rep["loop(N)/score"] = [lp / n_sub * args.n / s for lp, s in zip(times["loop"], times["score"])]
    med = {k: _median(v) for k, v in times.items()}
    ratios = {k: {"median": _median(v), "min": min(v), "max": max(v)} for k, v in per_rep.items()}

    header = {
        "benchmark": "bench_sslmem",
        "machine": hardware(device),
        "torch": torch.__version__,
        "memlib": memlib.__version__,
        "commit": git_commit(),
        "date_utc": _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "device": str(device),
        "load_avg_1_5_15": [round(x, 2) for x in os.getloadavg()] if hasattr(os, "getloadavg") else None,
    }
    config = {
        "arch": args.arch,
        "n": args.n,
        "views": args.views,
        "batch_size": args.batch_size,
        "points_per_batch": bench.per_batch,
        "batches": len(bench.starts),
        "forwards": bench.forwards,
        "image": [args.channels, args.img_size, args.img_size],
        "rep_dim": bench.rep_dim,
        "amp": bench.amp,
        "repeats": args.repeats,
        "warmup": args.warmup,
        "threads": torch.get_num_threads(),
        "loop_subset": None if args.no_loop else n_sub,
        "seed": args.seed,
        "loop_threads": None if args.no_loop else (args.loop_threads or torch.get_num_threads()),
    }

    w = sys.stdout.write
    w("bench_sslmem: memlib.sslmem (pairwise) vs its forward-pass floor\n")
    for k in ("machine", "torch", "commit", "date_utc", "device"):
        w(f"  {k:<9} {header[k]}\n")
    if header["load_avg_1_5_15"] is not None:
        load = header["load_avg_1_5_15"]
        w(f"  load avg  {load[0]:.2f} {load[1]:.2f} {load[2]:.2f} (1/5/15 min, at the end of the run)\n")
        if device.type == "cpu" and load[0] > (os.cpu_count() or 1) + 0.5 and torch.get_num_threads() > 1:
            w(
                "  WARNING   the CPU is oversubscribed: with >1 torch thread, small ops stall at OpenMP barriers\n"
                "            and every time (the batch-1 loop most) is inflated; compare with --threads 1\n"
            )
    w(
        f"  config    arch={args.arch} N={args.n} K={args.views} B={args.batch_size} "
        f"({bench.per_batch} points = {bench.per_batch * args.views} views per forward, {len(bench.starts)} batches, "
        f"{bench.forwards} forwards), image {args.channels}x{args.img_size}x{args.img_size}, rep dim {bench.rep_dim}, "
        f"amp={bench.amp}, threads={torch.get_num_threads()}, repeats={args.repeats} (+{args.warmup} warm-up), "
        f"setup {t_setup:.1f} s\n\n"
    )
    w(f"  {'measurement':<44}{'median s':>10}{'min s':>9}{'max s':>9}\n")
    desc = {
        "score": "T_score  sslmem(f, g, uint8, SimCLRAugment)",
        "floor": f"T_floor  {bench.forwards} bare forwards",
        "aug": "T_aug    augmentation alone",
        "post": "T_post   float64 normalise + dist + copy",
        "loop": f"T_loop   batch-1 loop, {n_sub} points, {config['loop_threads']} thr",
    }
    for name in names:
        w(f"  {desc[name]:<44}{med[name]:>10.3f}{min(times[name]):>9.3f}{max(times[name]):>9.3f}\n")
    if "loop" in med:
        w(
            f"  {'  -> per point (extrapolated to N)':<44}{med['loop'] / n_sub:>10.4f}"
            f"{'':>9}{med['loop'] / n_sub * args.n:>8.1f}s\n"
        )
    w(f"\n  {'ratio (per repetition, median [min-max])':<44}{'median':>10}  range\n")
    labels = {
        "score/floor": "T_score / T_floor         (goal <= 1.15)",
        "(floor+aug+post)/floor": "(T_floor+T_aug+T_post) / T_floor",
        "floor/score": "share of score: forwards",
        "aug/score": "share of score: augmentation",
        "post/score": "share of score: normalise+cdist+copy",
        "rest/score": "share of score: rest (python, seeding, ...)",
        "loop(N)/score": "speed-up over batch-1 loop (T_loop(N)/T_score)",
    }
    for key, lab in labels.items():
        if key in ratios:
            r = ratios[key]
            w(f"  {lab:<44}{r['median']:>10.3f}  [{r['min']:.3f} - {r['max']:.3f}]\n")
    verdict = "meets" if ratios["score/floor"]["median"] <= 1.15 else "EXCEEDS"
    w(
        f"\n  overhead of sslmem over the bare forwards: {100 * (ratios['score/floor']['median'] - 1):+.1f}% "
        f"({verdict} the 1.15 goal)\n"
    )

    result = {
        **header,
        "config": config,
        "setup_s": t_setup,
        "times_s": times,
        "median_s": med,
        "ratios": ratios,
        "per_repetition_ratios": per_rep,
    }
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, indent=2) + "\n")
        w(f"  figures written to {args.json}\n")
    return result


if __name__ == "__main__":
    main()
