"""The training loop shared by all methods.

Data stay on the device as uint8; each step indexes a batch, the method
augments it on the device and returns its loss. Cosine learning-rate schedule
with linear warm-up (per step), bf16 autocast and channels_last on CUDA,
seeded data order and augmentation draws, a tqdm progress bar, a per-epoch
log (loss, learning rate, optional evaluation such as kNN accuracy) and
atomic checkpoints from which a run resumes bit-identically on the CPU.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import torch
from tqdm import tqdm

from ..methods.base import SSLMethod
from ..provenance import git_commit


class CheckpointMismatch(RuntimeError):
    """A checkpoint on disk belongs to another configuration or is corrupt."""


@dataclass
class TrainConfig:
    """Optimisation settings of one training run.

    Parameters
    ----------
    epochs
        Passes over the training set.
    batch_size
        Images per step (capped at the training-set size; incomplete last
        batches are dropped so BatchNorm never sees a batch of one).
    lr, weight_decay
        AdamW learning rate (peak, after warm-up) and weight decay.
    warmup_epochs
        Linear warm-up length; the rest follows a cosine decay to 0.
    seed
        Seeds the data order and the augmentation draws.
    amp
        bf16 autocast; only takes effect on CUDA.
    channels_last
        channels_last memory format (measured 3× faster convolutions on the
        CPU as well as on CUDA).
    eval_every
        Call ``eval_fn`` every this many epochs (and after the last); 0 = only after the last.
    checkpoint_every
        Save a checkpoint every this many epochs (and after the last).
    """

    epochs: int
    batch_size: int
    lr: float = 1e-3
    weight_decay: float = 1e-4
    warmup_epochs: int = 10
    seed: int = 0
    amp: bool = True
    channels_last: bool = True
    eval_every: int = 0
    checkpoint_every: int = 10

    def __post_init__(self):
        for name in ("epochs", "batch_size"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v <= 0:
                raise ValueError(f"TrainConfig: {name}={v!r} must be a positive int")
        if not self.lr > 0:
            raise ValueError(f"TrainConfig: lr={self.lr!r} must be > 0")
        for name in ("warmup_epochs", "eval_every"):
            if getattr(self, name) < 0:
                raise ValueError(f"TrainConfig: {name}={getattr(self, name)!r} must be ≥ 0")
        if self.checkpoint_every <= 0:
            raise ValueError(f"TrainConfig: checkpoint_every={self.checkpoint_every!r} must be ≥ 1")

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


@dataclass
class TrainResult:
    """What a run leaves: the per-epoch log and wall time."""

    history: list[dict] = field(default_factory=list)
    wall_time_s: float = 0.0
    resumed_from_epoch: int = 0
    commits: list[str] = field(default_factory=list)  # memlib commit(s) that trained these weights


def _lr_lambda(warmup_steps: int, total_steps: int):
    def f(step: int) -> float:
        if step < warmup_steps:
            return (step + 1) / warmup_steps
        progress = (step - warmup_steps) / max(1, total_steps - warmup_steps)
        return 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))

    return f


def fingerprint(obj) -> str:
    """Short stable hash of a JSON-serialisable configuration."""
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()[:16]


def atomic_save(obj, path: Path) -> None:
    """``torch.save`` to a temporary file, then rename: a crash never leaves half a checkpoint."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + f".tmp{os.getpid()}")
    torch.save(obj, tmp)
    os.replace(tmp, path)


def load_checkpoint(path: Path, expected_fingerprint: str) -> dict:
    """Load a checkpoint and refuse it if it is corrupt or from another configuration."""
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as e:  # torch raises several types for truncated/corrupt files
        raise CheckpointMismatch(
            f"checkpoint {path} is unreadable ({type(e).__name__}: {e}); delete it to retrain"
        ) from e
    if not isinstance(ckpt, dict) or ckpt.get("fingerprint") != expected_fingerprint:
        got = ckpt.get("fingerprint") if isinstance(ckpt, dict) else None
        raise CheckpointMismatch(
            f"checkpoint {path} was written by another configuration (fingerprint {got}, "
            f"expected {expected_fingerprint}); use another checkpoint path or delete it"
        )
    return ckpt


def train(
    method: SSLMethod,
    images: torch.Tensor,
    labels: torch.Tensor | None,
    config: TrainConfig,
    device: str | torch.device = "cpu",
    checkpoint_path: str | Path | None = None,
    run_config: dict | None = None,
    eval_fn: Callable[[SSLMethod], dict] | None = None,
    progress: bool = True,
    desc: str = "train",
) -> TrainResult:
    """Train ``method`` on ``images`` (uint8, (N, C, H, W)).

    Parameters
    ----------
    method
        The method (encoder + heads + loss), already initialised (seed it
        before building it for reproducible weights).
    images, labels
        Training images as uint8 and their labels (labels are passed to the
        method; SSL methods ignore them). Moved to ``device`` once.
    config
        :class:`TrainConfig`.
    device
        Where to train.
    checkpoint_path
        If given, checkpoints are written there atomically, and an existing
        checkpoint of the same configuration is resumed from. A checkpoint of
        another configuration raises :class:`CheckpointMismatch` and is left
        untouched.
    run_config
        Extra description of the run (dataset, split, architecture, …) that is
        part of the checkpoint's fingerprint.
    eval_fn
        Called as ``eval_fn(method)`` (in eval mode, no grad) at evaluation
        epochs; its dict is merged into that epoch's log entry.
    progress
        Show a progress bar.

    Returns
    -------
    TrainResult
        Per-epoch log and wall time. ``method`` is trained in place.

    Raises
    ------
    FloatingPointError
        If the loss becomes NaN or inf; the last good checkpoint is kept.
    """
    if images.dtype != torch.uint8 or images.ndim != 4:
        raise TypeError(f"train: images must be uint8 (N, C, H, W), got {images.dtype} {tuple(images.shape)}")
    device = torch.device(device)
    n = images.shape[0]
    bs = min(config.batch_size, n)
    steps_per_epoch = n // bs
    total_steps = steps_per_epoch * config.epochs
    cuda = device.type == "cuda"
    fp = fingerprint({"train": config.to_dict(), "run": run_config or {}, "n": n, "method": method.name})

    images = images.to(device)
    labels = (labels if labels is not None else torch.full((n,), -1, dtype=torch.long)).to(device)
    method.to(device)
    if config.channels_last:
        method.to(memory_format=torch.channels_last)
    opt = torch.optim.AdamW(method.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, _lr_lambda(config.warmup_epochs * steps_per_epoch, total_steps)
    )
    data_gen = torch.Generator().manual_seed(config.seed)
    aug_gen = torch.Generator(device=device).manual_seed(config.seed + 1)
    result = TrainResult(commits=[git_commit()])
    start_epoch = 0
    path = Path(checkpoint_path) if checkpoint_path is not None else None
    if path is not None and path.exists():
        ckpt = load_checkpoint(path, fp)
        method.load_state_dict(ckpt["method"])
        opt.load_state_dict(ckpt["optimizer"])
        sched.load_state_dict(ckpt["scheduler"])
        data_gen.set_state(ckpt["data_gen"])
        aug_gen.set_state(ckpt["aug_gen"].to(aug_gen.get_state().device))
        result.history = ckpt["history"]
        start_epoch = result.resumed_from_epoch = ckpt["epoch"]
        # List every commit that trained these weights; loading a finished run adds none.
        done_by = ckpt.get("commits", ["unknown"])
        result.commits = list(dict.fromkeys(done_by + (result.commits if start_epoch < config.epochs else [])))

    def save(epoch: int) -> None:
        if path is None:
            return
        atomic_save(
            {
                "fingerprint": fp, "epoch": epoch, "method": method.state_dict(), "optimizer": opt.state_dict(),
                "scheduler": sched.state_dict(), "data_gen": data_gen.get_state(), "aug_gen": aug_gen.get_state(),
                "history": result.history, "train_config": config.to_dict(), "run_config": run_config or {},
                "commits": result.commits,
            },
            path,
        )

    t0 = time.perf_counter()
    bar = tqdm(range(start_epoch, config.epochs), desc=desc, disable=not progress, initial=start_epoch,
               total=config.epochs, leave=False)
    for epoch in bar:
        method.train()
        perm = torch.randperm(n, generator=data_gen)
        losses = torch.zeros((), device=device)
        for s in range(steps_per_epoch):
            idx = perm[s * bs : (s + 1) * bs].to(device)
            x = images[idx]
            if config.channels_last:
                x = x.contiguous(memory_format=torch.channels_last)
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=cuda and config.amp):
                out = method.training_step(x, idx, labels[idx], aug_gen)
            loss = out["loss"]
            if not torch.isfinite(loss):
                raise FloatingPointError(
                    f"train: loss is {loss.item()} at epoch {epoch + 1}, step {s + 1}; "
                    f"the last good checkpoint ({path}) is kept. Lower lr or check the data."
                )
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            losses += loss.detach()
        entry = {"epoch": epoch + 1, "loss": (losses / steps_per_epoch).item(), "lr": sched.get_last_lr()[0]}
        last = epoch + 1 == config.epochs
        if eval_fn is not None and (last or (config.eval_every and (epoch + 1) % config.eval_every == 0)):
            method.eval()
            with torch.no_grad():
                entry.update(eval_fn(method))
        result.history.append(entry)
        bar.set_postfix({k: round(v, 4) for k, v in entry.items() if k not in ("epoch", "lr")})
        if last or (epoch + 1) % config.checkpoint_every == 0:
            save(epoch + 1)
    method.eval()
    result.wall_time_s = time.perf_counter() - t0
    return result
