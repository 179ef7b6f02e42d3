"""UnitMem over every tap of an encoder, against its forward-pass floor, and its peak memory.

``memlib.memorization.unitmem`` needs N·K forward passes (N points, K views,
every tap read by hooks in the same pass) and keeps one (N, units) accumulator
per tap. This script times it against those N·K bare forwards on views made in
advance, and measures its peak memory against the accumulators (units × N
floats) plus the peak of one bare forward batch, at K and at 2K views: the
peak must not grow with K.

Peak memory on CPU is Linux's VmHWM (peak resident set) after resetting it
through ``/proc/self/clear_refs``: tracemalloc does not see torch's tensor
allocations. On CUDA it is ``torch.cuda.max_memory_allocated``.

Usage::

    python benchmarks/bench_unitmem.py --threads 1                      # resnet18, N=256, K=10, CPU
    python benchmarks/bench_unitmem.py --threads 1 --arch resnet_narrow --n 1024
    python benchmarks/bench_unitmem.py --device cuda --n 10000
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

from memlib.data.augment import SimCLRAugment
from memlib.device import resolve_device
from memlib.memorization import unitmem
from memlib.models import ENCODERS, build_encoder
from memlib.provenance import git_commit, hardware

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_sslmem import sync, timed  # noqa: E402  (same timing helpers as the SSLMem benchmark)


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.ArgumentDefaultsHelpFormatter
    )
    p.add_argument("--device", default="cpu", help="cpu, cuda, cuda:N or auto")
    p.add_argument("--arch", default="resnet18", choices=sorted(ENCODERS))
    p.add_argument("--n", type=int, default=256, help="points")
    p.add_argument("--views", type=int, default=10, help="K, augmentations per point (the memory check also runs 2K)")
    p.add_argument("--batch-size", type=int, default=128, help="points (= images) per forward pass")
    p.add_argument("--repeats", type=int, default=3, help="interleaved repetitions (medians are taken over them)")
    p.add_argument("--threads", type=int, default=None, help="torch.set_num_threads; None: torch's choice")
    p.add_argument("--img-size", type=int, default=32)
    p.add_argument("--channels", type=int, default=3)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", type=Path, default=None, metavar="PATH", help="write the figures to this JSON file")
    args = p.parse_args(argv)
    for name in ("n", "views", "batch_size", "repeats"):
        if getattr(args, name) < 1:
            p.error(f"--{name.replace('_', '-')} must be ≥ 1")
    return args


def peak_bytes(fn, device: torch.device) -> int:
    """Memory ``fn()`` adds at its peak, over what was in use before it."""
    sync(device)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
        base = torch.cuda.memory_allocated(device)
        fn()
        sync(device)
        return torch.cuda.max_memory_allocated(device) - base
    with open("/proc/self/clear_refs", "w") as fh:
        fh.write("5")  # VmHWM := current RSS
    status = lambda key: int(next(ln for ln in open("/proc/self/status") if ln.startswith(key)).split()[1])  # noqa: E731
    base = status("VmRSS")
    fn()
    return (status("VmHWM") - base) * 1024


def main(argv=None) -> dict:
    args = parse_args(argv)
    device = resolve_device(args.device)
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    c, s, n, k, b = args.channels, args.img_size, args.n, args.views, args.batch_size
    torch.manual_seed(args.seed)
    enc = build_encoder(args.arch, c, s).to(device).eval()
    taps = list(enc.tap_names)
    gen = torch.Generator().manual_seed(args.seed)
    images = torch.randint(0, 256, (n, c, s, s), dtype=torch.uint8, generator=gen).to(device)
    aug = SimCLRAugment(size=s)
    views = [aug(images[i : i + b], torch.Generator(device=device).manual_seed(i)) for i in range(0, n, b)]

    def score(kk=k):
        return unitmem(enc, images, aug, taps=taps, views=kk, batch_size=b, seed=args.seed, device=device)

    def floor():
        with torch.inference_mode():
            for _ in range(k):
                for v in views:
                    enc(v)

    res = score(1)  # warm-up, and the unit counts
    units = sum(len(u) for u in res.unitmem.values())
    floor()
    times = {"score": [], "floor": []}
    for r in range(args.repeats):
        for name in ("score", "floor") if r % 2 == 0 else ("floor", "score"):
            times[name].append(timed(score if name == "score" else floor, device))
    ratio = [a / f for a, f in zip(times["score"], times["floor"])]

    def one_batch():
        with torch.inference_mode():
            enc(views[0])

    mem = {
        "forward_batch": peak_bytes(one_batch, device),
        "score_K": peak_bytes(lambda: score(k), device),
        "score_2K": peak_bytes(lambda: score(2 * k), device),
    }
    acc_bytes = units * n * 4  # float32 accumulators, one (N, units) per tap
    mem["accumulators"] = acc_bytes

    header = {
        "benchmark": "bench_unitmem",
        "machine": hardware(device),
        "torch": torch.__version__,
        "commit": git_commit(),
        "date_utc": _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "device": str(device),
        "load_avg_1_5_15": [round(x, 2) for x in os.getloadavg()] if hasattr(os, "getloadavg") else None,
    }
    w = sys.stdout.write
    w("bench_unitmem: memlib unitmem over every tap vs its N·K forward passes, and its peak memory\n")
    for key in ("machine", "torch", "commit", "date_utc", "device", "load_avg_1_5_15"):
        w(f"  {key:<16} {header[key]}\n")
    w(
        f"  config           arch={args.arch} ({len(taps)} taps, {units} units) N={n} K={k} B={b} "
        f"image {c}x{s}x{s}, threads={torch.get_num_threads()}, repeats={args.repeats}\n\n"
    )
    med = {key: statistics.median(v) for key, v in times.items()}
    w(f"  T_unit  unitmem, all taps         {med['score']:8.3f} s (median)\n")
    w(f"  T_floor {n * k} bare forwards     {med['floor']:8.3f} s (median)\n")
    w(f"  T_unit / T_floor                  {statistics.median(ratio):8.3f}  [{min(ratio):.3f} - {max(ratio):.3f}]\n\n")
    mb = lambda x: x / 2**20  # noqa: E731
    w(f"  peak, one bare forward batch      {mb(mem['forward_batch']):8.1f} MiB\n")
    w(f"  accumulators units×N×4 B          {mb(acc_bytes):8.1f} MiB\n")
    w(f"  peak, unitmem at K={k:<3}            {mb(mem['score_K']):8.1f} MiB\n")
    w(f"  peak, unitmem at K={2 * k:<3}            {mb(mem['score_2K']):8.1f} MiB\n")
    floor_mem = mem["forward_batch"] + acc_bytes
    w(f"  peak(K) / (forward batch + accumulators)   {mem['score_K'] / max(floor_mem, 1):6.2f}\n")
    w(
        f"  peak(2K) / peak(K)                         {mem['score_2K'] / max(mem['score_K'], 1):6.2f}  "
        "(1.0: memory does not grow with K)\n"
    )
    result = {
        **header,
        "config": vars(args) | {"json": None, "taps": taps, "units": units},
        "times_s": times,
        "ratio_per_repetition": ratio,
        "memory_bytes": mem,
    }
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, indent=2) + "\n")
        w(f"  figures written to {args.json}\n")
    return result


if __name__ == "__main__":
    main()
