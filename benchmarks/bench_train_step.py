#!/usr/bin/env python
"""Benchmark of memlib's training step against the bare forward + backward it needs.

One step of :func:`memlib.training.train` (SimCLR) indexes a batch of uint8
images, augments it on the device, runs the encoder, projector and NT-Xent,
checks the loss is finite, and takes an AdamW step and a scheduler step. This
script times, in the same process and interleaved (one repetition = one run of
every measurement, in a rotating order; medians over the repetitions):

- ``step``   ``train(...)`` for ``--steps`` steps (its own wall time, which
             leaves out building the optimiser), divided by the steps;
- ``fb``     the pure model work of one step: forward (encoder, projector,
             NT-Xent) and backward on views made in advance, already on the
             device, with the same autocast and memory format as ``train``;
- ``fbo``    ``fb`` plus the AdamW step (the optimiser is part of any step).

It prints ``step / fb`` (the goal is ≤ 1.15 on a GPU) and ``step / fbo``.
Each ratio is computed within one repetition; absolute seconds are printed for
reference only (see benchmarks/README.md).

Usage::

    python benchmarks/bench_train_step.py --threads 1                 # resnet_narrow, B=256, CPU
    python benchmarks/bench_train_step.py --device cuda --arch resnet18 --batch-size 512
"""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import os
import statistics
import sys
from pathlib import Path

import torch

import memlib
from memlib.device import resolve_device
from memlib.losses.ntxent import nt_xent
from memlib.methods import build_method
from memlib.models import ENCODERS, build_encoder
from memlib.provenance import git_commit, hardware
from memlib.training import TrainConfig, train

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_sslmem import sync, timed  # noqa: E402  (same timing helpers as the SSLMem benchmark)


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.ArgumentDefaultsHelpFormatter
    )
    p.add_argument("--device", default="cpu", help="cpu, cuda, cuda:N or auto")
    p.add_argument("--arch", default="resnet_narrow", choices=sorted(ENCODERS))
    p.add_argument("--batch-size", type=int, default=256, help="images per step (SimCLR runs 2 views of each)")
    p.add_argument("--steps", type=int, default=10, help="steps per timed measurement")
    p.add_argument("--repeats", type=int, default=5, help="interleaved repetitions (medians are taken over them)")
    p.add_argument("--warmup", type=int, default=1, help="untimed repetitions first")
    p.add_argument("--threads", type=int, default=None, help="torch.set_num_threads; None: torch's choice")
    p.add_argument("--img-size", type=int, default=28)
    p.add_argument("--channels", type=int, default=1)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", type=Path, default=None, metavar="PATH", help="write the figures to this JSON file")
    args = p.parse_args(argv)
    for name in ("batch_size", "steps", "repeats"):
        if getattr(args, name) < 1:
            p.error(f"--{name.replace('_', '-')} must be ≥ 1")
    return args


class Bench:
    """One SimCLR method, its images and pre-made views; one method per measurement."""

    def __init__(self, args: argparse.Namespace, device: torch.device):
        self.args, self.device = args, device
        self.cfg = TrainConfig(epochs=1, batch_size=args.batch_size, warmup_epochs=0, seed=args.seed)
        self.cuda = device.type == "cuda"
        torch.manual_seed(args.seed)
        self.method = build_method("simclr", build_encoder(args.arch, args.channels, args.img_size)).to(device)
        if self.cfg.channels_last:
            self.method.to(memory_format=torch.channels_last)
        gen = torch.Generator().manual_seed(args.seed)
        n = args.batch_size * args.steps  # one epoch = --steps steps
        s = args.img_size
        self.images = torch.randint(0, 256, (n, args.channels, s, s), dtype=torch.uint8, generator=gen).to(device)
        self.opt = torch.optim.AdamW(self.method.parameters(), lr=self.cfg.lr, weight_decay=self.cfg.weight_decay)
        gen_d = torch.Generator(device=device).manual_seed(args.seed)
        with torch.no_grad():  # the floor's views, made in advance
            self.views = []
            for i in range(args.steps):
                x = self.images[i * args.batch_size : (i + 1) * args.batch_size]
                v = self.method.augmentation(torch.cat([x, x]), gen_d)
                self.views.append(v.contiguous(memory_format=torch.channels_last) if self.cfg.channels_last else v)

    def step(self) -> float:
        res = train(self.method, self.images, None, self.cfg, device=self.device, progress=False)
        return res.wall_time_s / self.args.steps

    def _fb(self, optimise: bool) -> None:
        m, b = self.method, self.args.batch_size
        m.train()
        for v in self.views:
            with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.cuda and self.cfg.amp):
                z = m.projector(m.encoder.pooled(v))
                loss = nt_xent(z[:b], z[b:], m.temperature)
            self.opt.zero_grad(set_to_none=True)
            loss.backward()
            if optimise:
                self.opt.step()

    def fb(self) -> float:
        return timed(lambda: self._fb(False), self.device) / self.args.steps

    def fbo(self) -> float:
        return timed(lambda: self._fb(True), self.device) / self.args.steps


def main(argv=None) -> dict:
    args = parse_args(argv)
    device = resolve_device(args.device)
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    bench = Bench(args, device)
    names = ["step", "fb", "fbo"]
    for _ in range(args.warmup):
        for name in names:
            getattr(bench, name)()
    times = {name: [] for name in names}
    for r in range(args.repeats):
        for name in names[r % 3 :] + names[: r % 3]:  # rotate, so no measurement always runs first
            sync(device)
            times[name].append(getattr(bench, name)())
    per_rep = {
        "step/fb": [s / f for s, f in zip(times["step"], times["fb"])],
        "step/fbo": [s / f for s, f in zip(times["step"], times["fbo"])],
    }
    ratios = {k: {"median": statistics.median(v), "min": min(v), "max": max(v)} for k, v in per_rep.items()}
    header = {
        "benchmark": "bench_train_step",
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
        "batch_size": args.batch_size,
        "steps": args.steps,
        "repeats": args.repeats,
        "threads": torch.get_num_threads(),
        "image": [args.channels, args.img_size, args.img_size],
        "amp": bench.cuda and bench.cfg.amp,
        "channels_last": bench.cfg.channels_last,
    }
    w = sys.stdout.write
    w("bench_train_step: memlib.train step vs the bare forward + backward (SimCLR)\n")
    for k in ("machine", "torch", "commit", "date_utc", "device", "load_avg_1_5_15"):
        w(f"  {k:<15} {header[k]}\n")
    w(f"  config          {config}\n\n")
    desc = {
        "step": "T_step  memlib.train, per step",
        "fb": "T_fb    forward + backward, per step",
        "fbo": "T_fbo   forward + backward + AdamW, per step",
    }
    w(f"  {'measurement':<46}{'median s':>10}{'min s':>9}{'max s':>9}\n")
    for name in names:
        t = times[name]
        w(f"  {desc[name]:<46}{statistics.median(t):>10.4f}{min(t):>9.4f}{max(t):>9.4f}\n")
    w(f"\n  {'ratio (per repetition)':<46}{'median':>10}  range\n")
    for key, lab in (("step/fb", "T_step / T_fb   (goal <= 1.15 on GPU)"), ("step/fbo", "T_step / T_fbo")):
        r = ratios[key]
        w(f"  {lab:<46}{r['median']:>10.3f}  [{r['min']:.3f} - {r['max']:.3f}]\n")
    result = {**header, "config": config, "times_s": times, "ratios": ratios, "per_repetition_ratios": per_rep}
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, indent=2) + "\n")
        w(f"  figures written to {args.json}\n")
    return result


if __name__ == "__main__":
    main()
