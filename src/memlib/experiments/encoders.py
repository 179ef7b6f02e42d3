"""One way to specify, train and cache an encoder: :class:`EncoderSpec` and :func:`fit`.

An :class:`EncoderSpec` holds everything that determines one trained
encoder: the training points (data set and indices), architecture, method
and its arguments, augmentation, training settings (the seed and the CPU
thread count included), the alignment regulariser's λ and, for DP-SGD, the
privacy settings. Its :meth:`~EncoderSpec.key` is the one cache key
function: a fingerprint of all of that and of :data:`CACHE_SCHEMA`, so two
experiments asking for the same encoder share one checkpoint, and a change
of what a key covers is one explicit version bump instead of special cases.

:func:`fit` trains (or loads) a list of specs. On the CPU the specs that
still need training run on a small pool of worker processes, one torch
thread each, never more workers than cores (measured on 2 cores: two
one-thread workers train 1.15× [1.10–1.28] faster than one process with two
threads); each worker trains through the same loop with the same
checkpoints, so a killed run resumes bit-identically wherever it trained.
"""

from __future__ import annotations

import dataclasses
import os
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import torch

from ..data.augment import build_augmentation
from ..data.datasets import ImageDataset
from ..methods import METHODS, SSLMethod, build_method, check_method
from ..methods.regularizer import AlignmentRegularized
from ..models import build_encoder, channel_stats, vit_counterpart
from ..training import TrainConfig, train
from ..training.dp import DPConfig, DPResult, dp_train
from ..training.loop import TrainResult, fingerprint
from .artifacts import DP_ENCODERS, DYNAMICS, ENCODERS, ArtifactKind
from .presets import Preset

#: Version of what :meth:`EncoderSpec.key` covers; bump it when that changes (old checkpoints are then
#: simply not found, never misread). 2: keys cover the CPU thread count and the regulariser's λ explicitly.
CACHE_SCHEMA = 2


def model_seed(seed: int, family: str, i: int, paired: bool = False) -> int:
    """Seed of member ``i`` of family ``"f"``, ``"g"`` or ``"f'"`` (the null family) in a run seeded with ``seed``.

    ``paired=True`` gives g_i the seed of f_i (same initial weights, same data order and augmentation draws):
    each family's distribution is unchanged, only the pairing of f_i with g_i differs (chapter 01 measures
    whether it shrinks the pair-to-pair spread).
    """
    if family == "f'":  # f's data, seeds no f or g member (i < 100) and no retraining (500 + s) uses
        return seed * 1000 + 700 + i
    # f and g members get distinct seeds, as independent draws from A(S) and A(S \ x).
    return seed * 1000 + 2 * i + (family == "g" and not paired)


def train_config(p: Preset, threads: int = 1) -> TrainConfig:
    """The training settings of a preset's encoders (seed set per encoder); one CPU thread by default.

    See :func:`fit` for why one thread.
    """
    return TrainConfig(
        epochs=p.epochs,
        batch_size=p.batch_size,
        lr=p.lr,
        warmup_epochs=min(p.warmup_epochs, p.epochs),
        eval_every=p.eval_every,
        checkpoint_every=max(1, p.epochs // 10),
        threads=threads,
    )


def vit_arch(p: Preset) -> str:
    """The ViT of preset ``p``: its own arch if a ViT, ``vit_tiny`` beside a full ResNet, else ``vit_micro``."""
    return vit_counterpart(p.arch)


def method_setup(p: Preset, method: str) -> tuple[str, str]:
    """Architecture and training augmentation of ``method`` at preset ``p``, as the method decides
    (:meth:`~memlib.methods.base.SSLMethod.recipe`: MAE needs a ViT and trains with crop + flip; other
    methods use the preset's architecture and augmentation)."""
    check_method(method)
    return METHODS[method].recipe(p.arch, p.augmentation)


@dataclass(frozen=True)
class EncoderSpec:
    """Everything that determines one trained encoder.

    Attributes
    ----------
    dataset
        Name of the data set whose training split holds the points.
    indices
        Positions of the training points in that split.
    arch, method, augmentation
        Registry names (``memlib.models.ENCODERS``, ``memlib.methods.METHODS``,
        :data:`~memlib.data.augment.AUGMENTATIONS`).
    train
        Training settings; its ``seed`` seeds the weights, data order and augmentation draws.
    method_kwargs
        Keyword arguments of the method, as sorted (name, value) pairs.
    lam
        Weight of the alignment regulariser (0: the plain method).
    dp
        DP-SGD settings (``None``: ordinary training).
    snapshots
        Keep the weights at every checkpoint epoch (chapter 06's Fig. 2b);
        such encoders live in a cache of their own (the kind ``DYNAMICS`` of :mod:`memlib.experiments.artifacts`).
        Not part of the key: snapshots do not change the encoder.
    """

    dataset: str
    indices: tuple[int, ...]
    arch: str
    method: str
    augmentation: str
    train: TrainConfig
    method_kwargs: tuple[tuple[str, object], ...] = ()
    lam: float = 0.0
    dp: DPConfig | None = None
    snapshots: bool = field(default=False, compare=False)

    @classmethod
    def from_preset(
        cls,
        p: Preset,
        indices,
        seed: int,
        *,
        arch: str | None = None,
        method: str | None = None,
        augmentation: str | None = None,
        lam: float = 0.0,
        dp: DPConfig | None = None,
        snapshots: bool = False,
        threads: int = 1,
    ) -> "EncoderSpec":
        """The spec of an encoder trained at preset ``p`` on ``indices`` with model seed ``seed``."""
        return cls(
            dataset=p.dataset,
            indices=tuple(int(i) for i in np.asarray(indices)),
            arch=arch or p.arch,
            method=method or p.method,
            augmentation=augmentation or p.augmentation,
            train=dataclasses.replace(train_config(p, threads), seed=seed),
            method_kwargs=tuple(sorted(p.method_kwargs.items())) if method in (None, p.method) else (),
            lam=float(lam),
            dp=dp,
            snapshots=snapshots,
        )

    def run_config(self) -> dict:
        """What identifies the run besides its training settings (stored in the checkpoint and its fingerprint)."""
        rc = {
            "schema": CACHE_SCHEMA,
            "dataset": self.dataset,
            "train_indices": fingerprint(list(self.indices)),
            "arch": self.arch,
            "method": self.method,
            "augmentation": self.augmentation,
            "method_kwargs": dict(self.method_kwargs),
            "lam": self.lam,
        }
        if self.dp is not None:
            rc["dp"] = self.dp.to_dict()
        return rc

    def key(self) -> str:
        """The cache key: a fingerprint of everything that determines the encoder."""
        return fingerprint({"train": self.train.to_dict(), "run": self.run_config()})

    @property
    def kind(self) -> ArtifactKind:
        """Which cache folder kind holds the checkpoint."""
        return DP_ENCODERS if self.dp is not None else DYNAMICS if self.snapshots else ENCODERS

    def checkpoint(self, cache: str | Path) -> Path:
        """The checkpoint file of this encoder under ``cache``."""
        return self.kind.folder(cache, self.key()) / "checkpoint.pt"

    def build(self, train_set: ImageDataset) -> SSLMethod:
        """The untrained method, seeded by the spec; input statistics from the whole training split."""
        mean, std = channel_stats(train_set.images)
        torch.manual_seed(self.train.seed)
        enc = build_encoder(self.arch, train_set.channels, train_set.image_size, mean, std)
        method = build_method(
            self.method,
            enc,
            augmentation=build_augmentation(self.augmentation, train_set.image_size),
            **dict(self.method_kwargs),
        )
        return AlignmentRegularized(method, self.lam) if self.lam else method


@dataclass
class Fitted:
    """One trained (or loaded) encoder: its method (``.encoder`` is the encoder) and what training left."""

    spec: EncoderSpec
    method: SSLMethod
    result: TrainResult | DPResult

    @property
    def encoder(self) -> torch.nn.Module:
        return self.method.encoder

    @property
    def history(self) -> list[dict]:
        return self.result.history

    @property
    def commits(self) -> list[str]:
        return self.result.commits


def family_specs(
    p: Preset, splits, seed: int, families: Sequence[str] = ("f", "g"), **spec_kw
) -> dict[str, list[EncoderSpec]]:
    """The specs of f's family (trained on ``splits.f_train``), g's (``splits.g_train``) and the null
    family f′ (f's points, ``p.null_models`` other seeds), each member from its own :func:`model_seed`
    (g_i shares f_i's seed when ``p.paired_seeds``);
    ``spec_kw`` as in :meth:`EncoderSpec.from_preset`."""
    bad = sorted(set(families) - {"f", "g", "f'"})
    if bad or not families:
        raise ValueError(f"families={tuple(families)!r} must be a non-empty subset of ('f', 'g', \"f'\")")
    idx = {"f": splits.f_train, "g": splits.g_train, "f'": splits.f_train}
    size = {"f": p.models_per_family, "g": p.models_per_family, "f'": p.null_models}
    return {
        fam: [
            EncoderSpec.from_preset(p, idx[fam], model_seed(seed, fam, i, p.paired_seeds), **spec_kw)
            for i in range(size[fam])
        ]
        for fam in families
    }


def _train_spec(
    spec: EncoderSpec, train_set: ImageDataset, cache: Path, device, eval_fn, progress: bool, desc: str
) -> Fitted:
    method = spec.build(train_set)
    idx = list(spec.indices)
    ckpt = spec.checkpoint(cache)
    kw = dict(device=device, checkpoint_path=ckpt, run_config=spec.run_config(), progress=progress, desc=desc)
    if spec.dp is not None:
        res = dp_train(method, train_set.images[idx], spec.train, spec.dp, **kw)
    else:
        snapshots = ckpt.parent / "snapshots" if spec.snapshots else None
        res = train(
            method,
            train_set.images[idx],
            train_set.labels[idx],
            spec.train,
            eval_fn=eval_fn,
            snapshot_dir=snapshots,
            **kw,
        )
    return Fitted(spec, method, res)


def _done(spec: EncoderSpec, cache: Path) -> bool:
    """Whether ``spec`` has a finished checkpoint (read cheaply: only its epoch)."""
    path = spec.checkpoint(cache)
    if not path.exists():
        return False
    try:
        return torch.load(path, map_location="cpu", weights_only=False, mmap=True).get("epoch") == spec.train.epochs
    except Exception:  # unreadable: train() reports it with the fix
        return False


def _exit_with_parent(parent: int) -> None:
    """In a worker: end this process when the parent dies (a kill -9 must not leave trainers running)."""
    import threading
    import time

    def watch():
        while os.getppid() == parent:
            time.sleep(0.5)
        os._exit(1)

    threading.Thread(target=watch, daemon=True).start()


def _worker(args) -> None:
    spec, train_set, cache, eval_fn, parent, device = args
    _exit_with_parent(parent)
    torch.set_num_threads(spec.train.threads)
    _train_spec(spec, train_set, cache, device, eval_fn, False, "")


def default_workers() -> int:
    """Worker processes for CPU training: ``$MEMLIB_WORKERS``, else the number of cores available."""
    env = os.environ.get("MEMLIB_WORKERS")
    if env:
        if not env.isdigit() or int(env) < 1:
            raise ValueError(f"MEMLIB_WORKERS={env!r} must be an int ≥ 1 (worker processes for CPU training)")
        return int(env)
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def gpu_workers() -> int:
    """Processes that train side by side on one GPU: ``$MEMLIB_GPU_WORKERS``, else 1 (one after the other).

    Each process holds its own CUDA context. Measured on an H200 (benchmarks/RESULTS.md §8): 16 processes
    trained 16 ``resnet_narrow`` encoders of the ``cpu`` preset in 140 s (one process alone was not timed).
    """
    env = os.environ.get("MEMLIB_GPU_WORKERS", "1")
    if not env.isdigit() or int(env) < 1:
        raise ValueError(f"MEMLIB_GPU_WORKERS={env!r} must be an int ≥ 1 (training processes sharing the GPU)")
    return int(env)


def fit(
    specs: Sequence[EncoderSpec],
    train_set: ImageDataset,
    cache: str | Path,
    device,
    *,
    eval_fn: Callable | None = None,
    progress: bool = True,
    labels: Sequence[str] | None = None,
    workers: int | None = None,
) -> list[Fitted]:
    """Train (or load from the cache) every spec; return them in order.

    Parameters
    ----------
    specs
        What to train.
    train_set
        The data set's training split (``spec.indices`` index into it).
    cache
        The cache folder.
    device
        Where to train. On the CPU, specs without a finished checkpoint train
        on a pool of ``workers`` processes first (each at its spec's thread
        count); on a GPU they train one after the other in this process, or
        on :func:`gpu_workers` processes sharing it.
    eval_fn
        Optional ``method → dict`` evaluated during training (must be
        picklable for the pool, e.g. :class:`~memlib.experiments.probes.KnnEval`).
    progress
        Show progress bars (in-process training only).
    labels
        A label per spec for the progress bars (default ``enc0``, ``enc1``, …).
    workers
        Worker processes (default :func:`default_workers` on the CPU, :func:`gpu_workers` on a GPU);
        1 trains in this process.
    """
    cache = Path(cache)
    device = torch.device(device)
    labels = list(labels) if labels is not None else [f"enc{i}" for i in range(len(specs))]
    if workers is None:
        workers = default_workers() if device.type == "cpu" else gpu_workers()
    todo = list({s.key(): s for s in specs if not _done(s, cache)}.values())  # each encoder once
    if device.type in ("cpu", "cuda") and workers > 1 and len(todo) > 1:
        import multiprocessing as mp

        n = min(workers, len(todo))
        # fork, where there is one: a user's script without an `if __name__ == "__main__"` guard works
        # (spawn would re-run it); each worker sets its thread count before any torch op. CUDA cannot
        # be used in a forked child, so GPU workers are spawned.
        method = "fork" if "fork" in mp.get_all_start_methods() and device.type == "cpu" else "spawn"
        args = [(s, train_set, cache, eval_fn, os.getpid(), str(device)) for s in todo]
        with ProcessPoolExecutor(n, mp_context=mp.get_context(method)) as pool:
            for _ in pool.map(_worker, args):
                pass
    # Everything is trained now (or trains here: one spec, one worker, or a GPU); load in order.
    return [_train_spec(s, train_set, cache, device, eval_fn, progress, lab) for s, lab in zip(specs, labels)]
