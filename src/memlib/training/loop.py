"""The training loop shared by all methods.

Data stay on the device as uint8; each step indexes a batch, the method
augments it on the device and returns its loss. Cosine learning-rate schedule
with linear warm-up (per step), bf16 autocast and channels_last on CUDA,
seeded data order and augmentation draws, a tqdm progress bar, a per-epoch
log (loss, learning rate, optional evaluation such as kNN accuracy) and
atomic checkpoints (every few epochs and, optionally, every few steps) from
which a run resumes bit-identically on the CPU, even after a SIGKILL.

A checkpoint carries a fingerprint of the configuration, a SHA-256 of its own
content and the provenance of the run; a checkpoint whose fingerprint or hash
does not match is refused (:class:`CheckpointMismatch`) and left untouched.
Under ``torchrun`` (see :mod:`memlib.training.distributed`) the same loop runs
data-parallel: each rank takes its share of every global batch.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import inspect
import json
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import torch
from tqdm import tqdm

from ..atomic import clean_stale_temps, save_torch
from ..methods.base import SSLMethod
from ..provenance import git_commit, provenance
from . import distributed as dist_utils


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
    checkpoint_every_steps
        Also save one every this many optimiser steps, mid-epoch included;
        0 (default) = epoch checkpoints only. Long epochs on a GPU lose at
        most this many steps to a crash.
    threads
        CPU threads torch uses while this run trains (default: torch's
        current setting when the config is made). Part of the fingerprint:
        on the CPU, the thread count changes how sums are split and so the
        trained weights (measured: scores differ by up to 0.055 between 1
        and 2 threads), so a run is reused or resumed only at its own count.
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
    checkpoint_every_steps: int = 0
    threads: int | None = None

    def __post_init__(self):
        for name in ("epochs", "batch_size"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v <= 0:
                raise ValueError(f"TrainConfig: {name}={v!r} must be a positive int")
        for name in ("lr", "weight_decay"):
            v = getattr(self, name)
            if (
                isinstance(v, bool)
                or not isinstance(v, (int, float))
                or not math.isfinite(v)
                or v < 0
                or (name == "lr" and v == 0)
            ):
                raise ValueError(
                    f"TrainConfig: {name}={v!r} must be a finite number "
                    f"{'> 0' if name == 'lr' else '≥ 0'} (e.g. lr=1e-3)"
                )
        if self.threads is None:
            self.threads = torch.get_num_threads()
        if isinstance(self.threads, bool) or not isinstance(self.threads, int) or self.threads < 1:
            raise ValueError(f"TrainConfig: threads={self.threads!r} must be an int ≥ 1 (CPU threads while training)")
        for name in ("warmup_epochs", "eval_every"):
            if getattr(self, name) < 0:
                raise ValueError(f"TrainConfig: {name}={getattr(self, name)!r} must be ≥ 0")
        if self.checkpoint_every <= 0:
            raise ValueError(f"TrainConfig: checkpoint_every={self.checkpoint_every!r} must be ≥ 1")
        v = self.checkpoint_every_steps
        if isinstance(v, bool) or not isinstance(v, int) or v < 0:
            raise ValueError(
                f"TrainConfig: checkpoint_every_steps={v!r} must be an int ≥ 0 (0 = epoch checkpoints only)"
            )

    def to_dict(self) -> dict:
        """Every setting, as a dict (what fingerprints cover; cache keys are versioned by
        :data:`memlib.experiments.encoders.CACHE_SCHEMA`, not by leaving fields out)."""
        return dataclasses.asdict(self)


@dataclass
class TrainResult:
    """What a run leaves: the per-epoch log and wall time."""

    history: list[dict] = field(default_factory=list)
    wall_time_s: float = 0.0
    resumed_from_epoch: int = 0  # completed epochs in the checkpoint resumed from
    resumed_from_step: int = 0  # optimiser steps in the checkpoint resumed from (mid-epoch ones included)
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


def content_hash(obj) -> str:
    """SHA-256 of a checkpoint's content: every tensor's dtype, shape and bytes and
    every other value's repr, walked in a fixed (sorted-key) order.

    Unlike a hash of the file, it does not depend on how ``torch.save`` lays
    the file out, so it can be stored inside the file it describes.
    """
    h = hashlib.sha256()

    def feed(o):
        if isinstance(o, torch.Tensor):
            t = o.detach().cpu().contiguous()
            h.update(f"T{t.dtype}{tuple(t.shape)}".encode())
            if t.numel():
                h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
        elif isinstance(o, dict):
            h.update(b"D%d" % len(o))
            for k in sorted(o, key=repr):
                h.update(repr(k).encode())
                feed(o[k])
        elif isinstance(o, (list, tuple)):
            h.update(b"L%d" % len(o))
            for x in o:
                feed(x)
        else:
            h.update(f"{type(o).__name__}:{o!r}".encode())

    feed(obj)
    return h.hexdigest()


def atomic_save(obj, path: Path) -> None:
    """``torch.save`` through a temporary file, fsync and rename (:func:`memlib.atomic.save_torch`):
    a crash never leaves half a checkpoint."""
    save_torch(obj, path)


def nonfinite_tensors(state: dict) -> list[str]:
    """Names of the floating-point tensors of a state dict that hold NaN or inf."""
    return [
        k
        for k, v in state.items()
        if isinstance(v, torch.Tensor) and v.is_floating_point() and not bool(torch.isfinite(v).all())
    ]


def load_checkpoint(path: Path, expected_fingerprint: str) -> dict:
    """Load a checkpoint and refuse it if it is corrupt or from another configuration.

    Parameters
    ----------
    path
        The checkpoint file.
    expected_fingerprint
        :func:`fingerprint` of the configuration the caller is about to run.

    Returns
    -------
    dict
        The checkpoint.

    Raises
    ------
    CheckpointMismatch
        If the file is unreadable, its content does not match the SHA-256
        stored in it (checkpoints written before hashes existed have none and
        are accepted), or its fingerprint is not ``expected_fingerprint``.
    """
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as e:  # torch raises several types for truncated/corrupt files
        raise CheckpointMismatch(
            f"checkpoint {path} is unreadable ({type(e).__name__}: {e}); delete it to retrain"
        ) from e
    if isinstance(ckpt, dict) and "content_sha256" in ckpt:
        got = content_hash({k: v for k, v in ckpt.items() if k != "content_sha256"})
        if got != ckpt["content_sha256"]:
            raise CheckpointMismatch(
                f"checkpoint {path} is corrupt: its content hash {got[:16]} does not match the stored "
                f"{str(ckpt['content_sha256'])[:16]}; delete it to retrain or use another cache dir"
            )
    if not isinstance(ckpt, dict) or ckpt.get("fingerprint") != expected_fingerprint:
        got = ckpt.get("fingerprint") if isinstance(ckpt, dict) else None
        raise CheckpointMismatch(
            f"checkpoint {path} was written by another configuration (fingerprint {got}, "
            f"expected {expected_fingerprint}); use another checkpoint path or delete it"
        )
    bad = nonfinite_tensors(ckpt.get("method", {})) if isinstance(ckpt.get("method"), dict) else []
    if bad:  # written by a memlib that checked only the loss: resuming would only fail again
        raise CheckpointMismatch(
            f"checkpoint {path} holds non-finite weights ({len(bad)} tensors, e.g. {bad[0]}); "
            f"delete it to retrain (with a lower lr)"
        )
    return ckpt


def at_config_threads(fn):
    """Run ``fn`` with torch at ``config.threads`` CPU threads (its ``config`` argument), restoring them after."""
    sig = inspect.signature(fn)

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        config = sig.bind(*args, **kwargs).arguments["config"]
        before = torch.get_num_threads()
        torch.set_num_threads(config.threads)  # part of the fingerprint: the thread count changes the weights
        try:
            return fn(*args, **kwargs)
        finally:
            torch.set_num_threads(before)

    return wrapper


@at_config_threads
def train(
    method: SSLMethod,
    images: torch.Tensor,
    labels: torch.Tensor | None,
    config: TrainConfig,
    *,
    device: str | torch.device = "cpu",
    checkpoint_path: str | Path | None = None,
    run_config: dict | None = None,
    eval_fn: Callable[[SSLMethod], dict] | None = None,
    progress: bool = True,
    desc: str = "train",
    snapshot_dir: str | Path | None = None,
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
        checkpoint of the same configuration is resumed from, mid-epoch
        included. A checkpoint of another configuration, or whose content
        hash does not match, raises :class:`CheckpointMismatch` and is left
        untouched.
    run_config
        Extra description of the run (dataset, split, architecture, …) that is
        part of the checkpoint's fingerprint.
    eval_fn
        Called as ``eval_fn(method)`` (in eval mode, no grad) at evaluation
        epochs; its dict is merged into that epoch's log entry.
    progress
        Show a progress bar.
    desc
        Label of the progress bar.
    snapshot_dir
        If given, the encoder's weights are also kept at every checkpoint
        epoch (and before the first step) as ``epoch0000.pt``, ``epoch0040.pt``, …
        there, for measuring how memorisation develops over training. Not part
        of the fingerprint: snapshots do not change the run.

    Returns
    -------
    TrainResult
        Per-epoch log and wall time. ``method`` is trained in place.

    Raises
    ------
    FloatingPointError
        If the loss becomes NaN or inf, or the weights do (checked at every
        epoch end and before every checkpoint is written), naming the step;
        the checkpoint on disk is the last one whose weights were all finite.

    Notes
    -----
    When ``torch.distributed`` is initialised with more than one process (run
    under ``torchrun``, see :mod:`memlib.training.distributed`),
    ``config.batch_size`` is the global batch: every rank draws the same data
    order and trains on its slice of each batch, with its own augmentation
    seed, inside :class:`~torch.nn.parallel.DistributedDataParallel`.
    BatchNorm statistics are taken over the global batch and NT-Xent
    gathers the embeddings of all ranks, so one step matches a
    single-process step on the same global batch. Rank 0 writes the
    checkpoints.
    """
    if images.dtype != torch.uint8 or images.ndim != 4:
        raise TypeError(f"train: images must be uint8 (N, C, H, W), got {images.dtype} {tuple(images.shape)}")
    device = torch.device(device)
    rank, world = dist_utils.rank_and_world()
    n = images.shape[0]
    bs = min(config.batch_size, n)
    if bs % world:
        raise ValueError(
            f"train: batch_size={bs} must be divisible by the number of processes ({world}); "
            f"choose a multiple of {world}"
        )
    local_bs = bs // world
    steps_per_epoch = n // bs
    run_desc = {"train": config.to_dict(), "run": run_config or {}, "n": n, "method": method.name}
    if world > 1:  # per-rank augmentation draws: a run on W ranks is another run (kept out of 1-process keys)
        run_desc["world_size"] = world
    fp = fingerprint(run_desc)
    path = Path(checkpoint_path) if checkpoint_path is not None else None
    # Read (and check) the checkpoint before any compute, so a foreign one costs nothing.
    ckpt = load_checkpoint(path, fp) if path is not None and path.exists() else None
    if path is not None and rank == 0:
        clean_stale_temps(path.parent)  # what a kill mid-save left

    images = images.to(device)
    labels = (labels if labels is not None else torch.full((n,), -1, dtype=torch.long)).to(device)
    method.to(device)
    if world > 1:  # global-batch statistics (SyncBatchNorm on CUDA, so after the move), before the optimiser
        dist_utils.convert_batchnorm(method)
    if config.channels_last:
        method.to(memory_format=torch.channels_last)
    run = _Run(method, config, device, steps_per_epoch, rank, world, path, fp, run_config or {})
    start_epoch, start_step, perm, loss_sum = run.resume(ckpt) if ckpt is not None else (0, 0, None, None)
    run.start(run_desc)
    snaps = Path(snapshot_dir) if snapshot_dir is not None and rank == 0 else None
    if start_epoch == 0 and start_step == 0:
        run.snapshot(snaps, 0)
    # DDP hooks gradients through forward(), so the step is wrapped in a module whose forward is it.
    step_fn = dist_utils.wrap_ddp(_Step(method), device) if world > 1 else _Step(method)
    every = config.checkpoint_every_steps
    bar = tqdm(
        range(start_epoch, config.epochs),
        desc=desc,
        disable=not progress or rank != 0,
        initial=start_epoch,
        total=config.epochs,
        leave=False,
    )
    for epoch in bar:
        method.train()
        if perm is None or epoch > start_epoch:
            perm, first, losses = torch.randperm(n, generator=run.data_gen), 0, torch.zeros((), device=device)
        else:  # resuming mid-epoch: the rest of the saved epoch, in its saved order
            first, losses = start_step, loss_sum
        for s in range(first, steps_per_epoch):
            idx = perm[s * bs + rank * local_bs : s * bs + (rank + 1) * local_bs].to(device)
            losses += run.step(step_fn, images, labels, idx, epoch, s)
            step = epoch * steps_per_epoch + s + 1
            if every and step % every == 0 and s + 1 < steps_per_epoch:  # epoch ends are saved below
                run.save(epoch, s + 1, perm, losses.clone())
        run.check_weights((epoch + 1) * steps_per_epoch)
        epoch_loss = dist_utils.mean_over_ranks(losses) if world > 1 else losses
        entry = {"epoch": epoch + 1, "loss": (epoch_loss / steps_per_epoch).item(), "lr": run.sched.get_last_lr()[0]}
        last = epoch + 1 == config.epochs
        if eval_fn is not None and (last or (config.eval_every and (epoch + 1) % config.eval_every == 0)):
            method.eval()
            with torch.no_grad():
                entry.update(eval_fn(method))
        run.result.history.append(entry)
        bar.set_postfix({k: round(v, 4) for k, v in entry.items() if k not in ("epoch", "lr")})
        step_due = bool(every) and (epoch + 1) * steps_per_epoch % every == 0  # skipped in the loop above
        if last or (epoch + 1) % config.checkpoint_every == 0 or step_due:
            run.save(epoch + 1)
        if last or (epoch + 1) % config.checkpoint_every == 0:
            run.snapshot(snaps, epoch + 1)
    method.eval()
    run.result.wall_time_s = time.perf_counter() - run.t0
    return run.result


class _Run:
    """The state of one training run and its four parts: resume, step, checkpoint (save) and snapshot.

    Optimiser, schedule, data-order and augmentation generators, history and
    commits are saved and restored together, so a resumed run continues
    bit-identically on the CPU.
    """

    def __init__(
        self,
        method,
        config: TrainConfig,
        device,
        steps_per_epoch: int,
        rank: int,
        world: int,
        path: Path | None,
        fp: str,
        run_config: dict,
    ):
        self.method, self.config, self.device = method, config, device
        self.steps_per_epoch, self.rank, self.world = steps_per_epoch, rank, world
        self.path, self.fp, self.run_config = path, fp, run_config
        self.opt = torch.optim.AdamW(method.parameters(), lr=config.lr, weight_decay=config.weight_decay)
        self.sched = torch.optim.lr_scheduler.LambdaLR(
            self.opt, _lr_lambda(config.warmup_epochs * steps_per_epoch, steps_per_epoch * config.epochs)
        )
        self.data_gen = torch.Generator().manual_seed(config.seed)  # same on every rank: one global data order
        self.aug_gen = torch.Generator(device=device).manual_seed(dist_utils.rank_seed(config.seed + 1, rank))
        self.result = TrainResult(commits=[git_commit()])
        self.prov: dict = {}
        self.t0 = time.perf_counter()

    def resume(self, ckpt: dict) -> tuple[int, int, torch.Tensor | None, torch.Tensor | None]:
        """Restore everything from ``ckpt``; return (epoch, step within it, its data order, its loss sum)."""
        self.method.load_state_dict(ckpt["method"])
        self.opt.load_state_dict(ckpt["optimizer"])
        self.sched.load_state_dict(ckpt["scheduler"])
        self.data_gen.set_state(ckpt["data_gen"])
        aug_state = ckpt["aug_gen_ranks"][self.rank] if self.world > 1 else ckpt["aug_gen"]
        self.aug_gen.set_state(aug_state.to(self.aug_gen.get_state().device))
        r = self.result
        r.history = ckpt["history"]
        epoch = r.resumed_from_epoch = ckpt["epoch"]
        epoch_step = ckpt.get("epoch_step", 0)  # > 0: written mid-epoch (checkpoints without it are epoch ends)
        r.resumed_from_step = ckpt.get("step", epoch * self.steps_per_epoch)
        perm, loss_sum = (ckpt["perm"], ckpt["loss_sum"].to(self.device)) if epoch_step else (None, None)
        # List every commit that trained these weights; loading a finished run adds none.
        unfinished = epoch < self.config.epochs
        r.commits = list(dict.fromkeys(ckpt.get("commits", ["unknown"]) + (r.commits if unfinished else [])))
        return epoch, epoch_step, perm, loss_sum

    def start(self, run_desc: dict) -> None:
        """Start the clock and fix the provenance the checkpoints will carry."""
        if self.path is not None:
            self.prov = provenance(
                {**run_desc, "fingerprint": self.fp}, device=self.device, commit=self.result.commits[-1]
            )
        self.t0 = time.perf_counter()

    def step(self, step_fn, images, labels, idx, epoch: int, s: int) -> torch.Tensor:
        """One optimiser step on the batch ``idx``; its loss (detached). A non-finite loss stops the run."""
        x = images[idx]
        if self.config.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        amp = self.device.type == "cuda" and self.config.amp
        with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=amp):
            loss = step_fn(x, idx, labels[idx], self.aug_gen)["loss"]
        if not torch.isfinite(loss):
            raise FloatingPointError(
                f"train: loss is {loss.item()} at step {epoch * self.steps_per_epoch + s + 1} (epoch {epoch + 1}, "
                f"step {s + 1}); the last good checkpoint ({self.path}) is kept. Lower lr or check the data."
            )
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        self.opt.step()
        self.sched.step()
        return loss.detach()

    def check_weights(self, step: int) -> None:
        """Stop the run if any weight is NaN or inf, naming the step."""
        bad = nonfinite_tensors(self.method.state_dict())
        if bad:
            raise FloatingPointError(
                f"train: {len(bad)} weight tensors (e.g. {bad[0]}) are NaN or inf after step {step}; training "
                f"stopped and the checkpoint on disk ({self.path}) is the last one with finite weights. Lower lr."
            )

    def save(self, epoch: int, epoch_step: int = 0, perm=None, loss_sum=None) -> None:
        """Write the checkpoint (rank 0), after checking the weights: a good checkpoint is never replaced."""
        self.check_weights(epoch * self.steps_per_epoch + epoch_step)
        if self.path is None:
            return
        world, gen = self.world, self.aug_gen
        aug_states = dist_utils.all_gather_object(gen.get_state()) if world > 1 else None  # every rank joins
        if self.rank != 0:
            return
        state = {
            "fingerprint": self.fp,
            "epoch": epoch,
            "epoch_step": epoch_step,
            "step": epoch * self.steps_per_epoch + epoch_step,
            "perm": perm,
            "loss_sum": loss_sum,
            "method": self.method.state_dict(),
            "optimizer": self.opt.state_dict(),
            "scheduler": self.sched.state_dict(),
            "data_gen": self.data_gen.get_state(),
            "aug_gen": gen.get_state(),
            "aug_gen_ranks": aug_states,
            "history": self.result.history,
            "train_config": self.config.to_dict(),
            "run_config": self.run_config,
            "commits": self.result.commits,
            "provenance": {**self.prov, "wall_time_s": round(time.perf_counter() - self.t0, 1)},
        }
        state["content_sha256"] = content_hash(state)
        atomic_save(state, self.path)

    def snapshot(self, folder: Path | None, epoch: int) -> None:
        """Keep the encoder's weights at ``epoch`` in ``folder`` (if given), for training dynamics."""
        if folder is not None:
            folder.mkdir(parents=True, exist_ok=True)
            atomic_save({"epoch": epoch, "encoder": self.method.encoder.state_dict()}, folder / f"epoch{epoch:04d}.pt")


class _Step(torch.nn.Module):
    """``forward`` = ``method.training_step``, so DistributedDataParallel can wrap a step."""

    def __init__(self, method: SSLMethod):
        super().__init__()
        self.method = method

    def forward(self, x, idx, labels, generator):
        return self.method.training_step(x, idx, labels, generator)
