"""Data-parallel training and scoring under ``torchrun``.

Launch any script that calls :func:`init_from_env` and then
:func:`~memlib.training.loop.train` with ``torchrun --nproc_per_node W script.py``.
:func:`~memlib.training.loop.train` notices the process group and then

- draws one global data order on every rank (same seed) and gives rank r the
  r-th slice of each global batch;
- seeds each rank's augmentation draws differently (:func:`rank_seed`);
- wraps the step in :class:`~torch.nn.parallel.DistributedDataParallel`, which
  averages the gradients;
- computes BatchNorm statistics over the global batch
  (:func:`convert_batchnorm`: ``nn.SyncBatchNorm`` on CUDA,
  :class:`GlobalBatchNorm` elsewhere, since ``SyncBatchNorm`` refuses CPU
  tensors), and NT-Xent over the gathered embeddings of all ranks
  (:func:`memlib.losses.ntxent.gather_across_ranks`, which keeps gradients).

With these, one step on W ranks matches a single-process step on the same
global batch (up to the order of floating-point sums; tests/test_ddp.py).

Per-point work (SSLMem scoring, UnitMem) shards the same way: each rank takes
:func:`shard_bounds` of the points and :func:`gather_rows` puts the per-point
results back together, in order, on every rank.
"""

from __future__ import annotations

import os

import torch
import torch.distributed as dist
from torch import nn
from torch.distributed.nn.functional import all_reduce as all_reduce_with_grad

from ..losses.ntxent import gather_across_ranks

__all__ = [
    "GlobalBatchNorm",
    "all_gather_object",
    "convert_batchnorm",
    "gather_across_ranks",
    "gather_rows",
    "init_from_env",
    "mean_over_ranks",
    "rank_and_world",
    "rank_seed",
    "shard_bounds",
    "wrap_ddp",
]


def rank_and_world() -> tuple[int, int]:
    """``(rank, world_size)`` of the default process group, ``(0, 1)`` without one."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def init_from_env(backend: str | None = None) -> tuple[int, int, torch.device]:
    """Join the process group ``torchrun`` describes in the environment.

    Parameters
    ----------
    backend
        ``"nccl"`` or ``"gloo"``; default: NCCL when CUDA is available, else gloo.

    Returns
    -------
    tuple
        ``(rank, world_size, device)``: ``cuda:LOCAL_RANK`` with NCCL, else the CPU.
    """
    missing = [k for k in ("RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT") if k not in os.environ]
    if missing:
        raise RuntimeError(
            f"init_from_env: environment variables {missing} are not set; "
            f"launch the script with torchrun --nproc_per_node N script.py"
        )
    backend = backend or ("nccl" if torch.cuda.is_available() else "gloo")
    if backend not in ("nccl", "gloo"):
        raise ValueError(f"init_from_env: backend={backend!r} is unknown; choose 'nccl' or 'gloo'")
    if not dist.is_initialized():
        dist.init_process_group(backend)
    device = torch.device("cpu")
    if backend == "nccl":
        device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", 0)))
        torch.cuda.set_device(device)
    return dist.get_rank(), dist.get_world_size(), device


def rank_seed(seed: int, rank: int) -> int:
    """Seed of one rank's random draws; rank 0 keeps ``seed``, so one process reproduces a non-distributed run."""
    return seed + 1_000_003 * rank


class GlobalBatchNorm(nn.modules.batchnorm._BatchNorm):
    """BatchNorm whose training statistics are over the global batch of all ranks.

    For devices ``nn.SyncBatchNorm`` refuses (the CPU with gloo). Mean and
    variance are summed over ranks with autograd-aware all-reduces (two
    passes, for a variance as accurate as BatchNorm's own). In eval mode, or
    without a process group, it is a plain BatchNorm.
    """

    def _check_input_dim(self, x):
        if x.dim() < 2:
            raise ValueError(f"GlobalBatchNorm: expected at least 2D input, got {x.dim()}D")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        _, world = rank_and_world()
        if not (self.training and world > 1):
            return super().forward(x)
        self._check_input_dim(x)
        dims = [0, *range(2, x.dim())]
        shape = [1, -1] + [1] * (x.dim() - 2)
        count = torch.tensor(float(x.numel() // x.shape[1]), device=x.device)
        dist.all_reduce(count)
        mean = all_reduce_with_grad(x.sum(dims)) / count
        d = x - mean.view(shape)
        var = all_reduce_with_grad((d * d).sum(dims)) / count
        y = d * torch.rsqrt(var + self.eps).view(shape)
        if self.affine:
            y = y * self.weight.view(shape) + self.bias.view(shape)
        if self.track_running_stats:
            with torch.no_grad():  # as nn.BatchNorm: unbiased variance in the running estimate
                self.num_batches_tracked += 1
                m = self.momentum if self.momentum is not None else 1.0 / float(self.num_batches_tracked)
                self.running_mean.lerp_(mean.detach(), m)
                self.running_var.lerp_(var.detach() * count / (count - 1), m)
        return y


def convert_batchnorm(module: nn.Module) -> nn.Module:
    """Replace, in place, every BatchNorm of ``module`` by a global-batch one.

    ``nn.SyncBatchNorm`` when the module is on CUDA, :class:`GlobalBatchNorm`
    otherwise. Parameters and buffers are kept (same tensors, same
    ``state_dict`` keys), so call it before building the optimiser.
    """
    cuda = any(p.is_cuda for p in module.parameters())
    for name, child in list(module.named_children()):
        if isinstance(child, (nn.SyncBatchNorm, GlobalBatchNorm)):
            continue
        if isinstance(child, nn.modules.batchnorm._BatchNorm):
            if cuda:
                new = nn.SyncBatchNorm.convert_sync_batchnorm(child)
            else:
                new = GlobalBatchNorm(
                    child.num_features, child.eps, child.momentum, child.affine, child.track_running_stats
                )
                new.weight, new.bias = child.weight, child.bias  # same Parameter objects
                for b in ("running_mean", "running_var", "num_batches_tracked"):
                    setattr(new, b, getattr(child, b))
                new.train(child.training)
            setattr(module, name, new)
        else:
            convert_batchnorm(child)
    return module


def wrap_ddp(module: nn.Module, device: torch.device) -> nn.Module:
    """``DistributedDataParallel(module)`` on ``device`` (device_ids only for CUDA)."""
    device = torch.device(device)
    ids = [device] if device.type == "cuda" else None
    # broadcast_buffers=False: BatchNorm buffers are already identical (global-batch statistics).
    return nn.parallel.DistributedDataParallel(module, device_ids=ids, broadcast_buffers=False)


def all_gather_object(obj) -> list:
    """``obj`` of every rank, in rank order (``[obj]`` without a process group)."""
    _, world = rank_and_world()
    if world == 1:
        return [obj]
    out = [None] * world
    dist.all_gather_object(out, obj)
    return out


def mean_over_ranks(t: torch.Tensor) -> torch.Tensor:
    """The mean of a tensor over ranks (a copy; no gradient)."""
    t = t.detach().clone()
    _, world = rank_and_world()
    if world > 1:
        dist.all_reduce(t)
        t /= world
    return t


def shard_bounds(n: int, rank: int | None = None, world: int | None = None, unit: int = 1) -> tuple[int, int]:
    """``(start, stop)`` of this rank's contiguous share of ``n`` points.

    Points are dealt in blocks of ``unit`` (shares differ by at most one
    block), so a rank's share starts on a multiple of ``unit``: scoring
    that draws its views per batch of ``unit`` points then sees the same
    batches, and the same views, as a single process.
    """
    r, w = rank_and_world()
    rank, world = r if rank is None else rank, w if world is None else world
    if not 0 <= rank < world:
        raise ValueError(f"shard_bounds: rank={rank} must be in [0, world={world})")
    if isinstance(unit, bool) or not isinstance(unit, int) or unit < 1:
        raise ValueError(f"shard_bounds: unit={unit!r} must be a positive int")
    base, extra = divmod(-(-n // unit), world)
    start = rank * base + min(rank, extra)
    return min(start * unit, n), min((start + base + (rank < extra)) * unit, n)


def gather_rows(x: torch.Tensor, n: int, unit: int = 1) -> torch.Tensor:
    """Concatenate every rank's :func:`shard_bounds` rows of ``n`` points, in rank order.

    ``x`` holds this rank's rows (first dimension); the shards may differ in
    length (by up to ``unit``), so they are padded to the longest for ``all_gather`` and
    trimmed after. Returns ``x`` unchanged without a process group.
    """
    rank, world = rank_and_world()
    if world == 1:
        return x
    lengths = [b - a for a, b in (shard_bounds(n, r, world, unit) for r in range(world))]
    if x.shape[0] != lengths[rank]:
        raise ValueError(f"gather_rows: rank {rank} has {x.shape[0]} rows, expected {lengths[rank]} of n={n}")
    pad = x.new_zeros((max(lengths), *x.shape[1:]))
    pad[: x.shape[0]] = x
    parts = [torch.empty_like(pad) for _ in range(world)]
    dist.all_gather(parts, pad.contiguous())
    return torch.cat([p[:k] for p, k in zip(parts, lengths)])
