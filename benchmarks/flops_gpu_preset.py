#!/usr/bin/env python
"""FLOPs of the ``gpu`` preset (ResNet-18 SimCLR on 28×28 Fashion-MNIST): a computed expectation.

Counts, with :class:`torch.utils.flop_counter.FlopCounterMode` on the CPU
(convolutions and matrix products; element-wise ops are not counted), the
FLOPs of one SimCLR training step's forward + backward and of one scoring
forward, and scales them by the preset's sizes (read from
:func:`memlib.experiments.get_preset`): training steps per epoch, epochs,
encoders, and the 2·N·K forwards of SSLMem. It also prints the time these
FLOPs take at an assumed sustained throughput (``--tflops``). Nothing is
timed: every figure it prints is arithmetic, not a measurement.

Usage::

    python benchmarks/flops_gpu_preset.py                 # gpu preset, 300 TFLOP/s assumed
    python benchmarks/flops_gpu_preset.py --preset paper --tflops 400
"""

from __future__ import annotations

import argparse
import json
import sys

import torch
from torch.utils.flop_counter import FlopCounterMode

from memlib.experiments import get_preset
from memlib.methods import build_method
from memlib.models import build_encoder

# Image shape of each dataset a preset may name (channels, side).
SHAPES = {"fashion_mnist": (1, 28), "mnist": (1, 28), "cifar10": (3, 32), "svhn": (3, 32)}


def count(fn) -> int:
    with FlopCounterMode(display=False) as fc:
        fn()
    return fc.get_total_flops()


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--preset", default="gpu")
    p.add_argument(
        "--tflops",
        type=float,
        default=300.0,
        help="assumed sustained TFLOP/s for the time estimate (H100 bf16 dense peak is ~990)",
    )
    p.add_argument("--probe-batch", type=int, default=8, help="images per counted batch (FLOPs scale linearly)")
    args = p.parse_args(argv)
    pr = get_preset(args.preset)
    if pr.dataset not in SHAPES:
        p.error(f"--preset {args.preset}: dataset {pr.dataset!r} has no known image shape; add it to SHAPES")
    c, s = SHAPES[pr.dataset]
    b = args.probe_batch
    torch.manual_seed(0)
    method = build_method(pr.method, build_encoder(pr.arch, c, s)).train()
    x = torch.randint(0, 256, (b, c, s, s), dtype=torch.uint8)

    def step():
        method.training_step(x, torch.arange(b), torch.zeros(b, dtype=torch.long))["loss"].backward()

    step_per_image = count(step) / b  # forward + backward of every view of one image
    enc = method.encoder.eval()
    with torch.no_grad():
        fwd_per_image = count(lambda: enc(torch.rand(b, c, s, s))) / b

    train_points = pr.shared + pr.candidate  # f trains on S_S ∪ S_C, g on S_S ∪ S_I (same size)
    steps_per_epoch = train_points // pr.batch_size
    encoders = 2 * pr.models_per_family
    train_total = step_per_image * pr.batch_size * steps_per_epoch * pr.epochs * encoders
    scored = pr.shared + pr.candidate + (pr.extra or pr.candidate) + pr.candidate  # S_S, S_C, S_E, S_I
    score_total = fwd_per_image * scored * pr.views * encoders
    out = {
        "preset": pr.name,
        "arch": pr.arch,
        "method": pr.method,
        "image": [c, s, s],
        "train_step_flops_per_image": step_per_image,
        "forward_flops_per_image": fwd_per_image,
        "train_points_per_encoder": train_points,
        "batch_size": pr.batch_size,
        "steps_per_epoch": steps_per_epoch,
        "flops_per_epoch_per_encoder": step_per_image * pr.batch_size * steps_per_epoch,
        "epochs": pr.epochs,
        "encoders": encoders,
        "train_flops_total": train_total,
        "scored_points": scored,
        "views": pr.views,
        "score_flops_total": score_total,
        "assumed_tflops": args.tflops,
        "train_hours_at_assumed": train_total / (args.tflops * 1e12) / 3600,
        "score_minutes_at_assumed": score_total / (args.tflops * 1e12) / 60,
    }
    w = sys.stdout.write
    w(f"flops_gpu_preset: computed expectation for preset {pr.name!r} (NOT a measurement)\n")
    w(json.dumps(out, indent=2) + "\n")
    return out


if __name__ == "__main__":
    main()
