"""SSLMem (Wang et al., ICLR 2024): per-point memorisation from alignment.

Alignment loss of an encoder f on a point x, over K augmented views::

    L_align(f, x) = E_{x', x'' ~ Aug(x)} d(f(x'), f(x''))       (paper eq. 1)
    m(x)          = E_g L_align(g, x) − E_f L_align(f, x)         (paper eq. 2)

with f trained on x and g not. Representations are the encoder's whole
output, flattened and L2-normalised; d is the Euclidean distance.

Two forms of L_align:

- ``"pairwise"`` (default, the paper's definition): the mean distance over
  all K(K−1)/2 pairs of K views, i.e. N·K forward passes per encoder;
- ``"clean"`` (the official code): the mean distance between the clean image
  and each of K views, N·(K+1) forward passes per encoder.

Every encoder, in f's family and g's, sees exactly the same views: each batch
of points is augmented once and the views go through all encoders. Scoring is
batched over points and views (no per-point loop) and runs in eval mode
(BatchNorm uses its running statistics), restoring each module's mode after.
"""

from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass
from typing import Iterator, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from tqdm import tqdm

from ..data.augment import Augmentation, to_float
from ..device import resolve_device
from ..training.distributed import gather_rows, shard_bounds

MODES = ("pairwise", "clean")


@dataclass
class SSLMemResult:
    """Per-point SSLMem of one scored set.

    Attributes
    ----------
    align_f, align_g
        Alignment loss of each point, averaged over f's (g's) family, shape (N,).
    raw
        ``align_g − align_f``: the unnormalised memorisation score.
    score
        ``raw`` divided by its range (max − min) over the scored set; in [-1, 1].
    align_f_models, align_g_models
        Alignment loss per model of each family, shape (n_models, N).
    """

    align_f: np.ndarray
    align_g: np.ndarray
    raw: np.ndarray
    score: np.ndarray
    align_f_models: np.ndarray
    align_g_models: np.ndarray
    views: int
    mode: str

    def __len__(self) -> int:
        return len(self.raw)

    def subset(self, idx) -> "SSLMemResult":
        """The rows ``idx``, keeping the normalisation of the whole scored set."""
        idx = np.asarray(idx)
        return SSLMemResult(
            self.align_f[idx], self.align_g[idx], self.raw[idx], self.score[idx],
            self.align_f_models[:, idx], self.align_g_models[:, idx], self.views, self.mode,
        )


def as_list(models) -> list[nn.Module]:
    """One module or a non-empty sequence of modules, as a list."""
    if isinstance(models, nn.Module):
        return [models]
    models = list(models)
    if not models or not all(isinstance(m, nn.Module) for m in models):
        raise TypeError(f"encoders must be an nn.Module or a non-empty sequence of nn.Modules, got "
                        f"{[type(m).__name__ for m in models]}")
    return models


def check_view_args(images: torch.Tensor, views: int, mode: str, batch_size: int) -> None:
    """Raise a clear error for scoring arguments :func:`alignment_loss` cannot take."""
    if mode not in MODES:
        raise ValueError(f"mode={mode!r} is unknown; choose one of {MODES}")
    if isinstance(views, bool) or not isinstance(views, int) or views < (2 if mode == "pairwise" else 1):
        raise ValueError(f"views={views!r} must be an int ≥ {2 if mode == 'pairwise' else 1} for mode={mode!r}")
    if images.ndim != 4 or images.dtype != torch.uint8:
        raise TypeError(f"images must be uint8 of shape (N, C, H, W), got {images.dtype} {tuple(images.shape)}")
    if batch_size < views:
        raise ValueError(f"batch_size={batch_size} must be ≥ views={views}")


def resolve_scoring_device(models: Sequence[nn.Module], device, amp) -> tuple[torch.device, bool]:
    """The computation's device (default: the first model's) and whether bf16 autocast is on (default: CUDA)."""
    if device is None:
        p = next(iter(models[0].parameters()), None)
        device = p.device if p is not None else torch.device("cpu")
    else:
        device = resolve_device(device)  # e.g. "cuda" on a machine without a GPU: a clear error, not torch's
    device = torch.device(device)
    return device, device.type == "cuda" if amp is None else amp


@contextmanager
def eval_mode(models: Sequence[nn.Module]):
    """Put every model in eval mode (BatchNorm uses running statistics), restoring each one's mode after."""
    was_training = [m.training for m in models]
    try:
        for m in models:
            m.eval()
        yield
    finally:
        for m, t in zip(models, was_training):
            m.train(t)


def points_per_batch(batch_size: int, views: int, mode: str) -> int:
    """Points per forward pass of :func:`view_batches`: ``batch_size`` images hold their K views (and clean copy)."""
    return max(1, batch_size // (views + (mode == "clean")))


def view_batches(
    images: torch.Tensor,
    augmentation: Augmentation,
    views: int,
    mode: str,
    batch_size: int,
    seed: int,
    device: torch.device,
    progress: bool = False,
    desc: str = "alignment",
) -> Iterator[tuple[int, int, torch.Tensor]]:
    """Yield ``(start, b, v)``: batches of ``b`` points and their augmented views.

    ``v`` holds the K views of each point, point-major (``b·K`` images), with
    the ``b`` clean images in front for ``mode="clean"``. View draws depend
    on ``(seed, start)`` only, so every caller with the same ``batch_size``
    sees the same views. Under ``torchrun`` each rank takes its
    :func:`~memlib.training.distributed.shard_bounds` share of whole batches
    (``start`` stays the global position); :func:`gather_points` collects them.
    """
    per_batch = points_per_batch(batch_size, views, mode)
    lo, hi = shard_bounds(images.shape[0], unit=per_batch)
    images = images.to(device)
    gen = torch.Generator(device=device)
    for start in tqdm(range(lo, hi, per_batch), desc=desc, disable=not progress, leave=False):
        x = images[start : min(start + per_batch, hi)]
        gen.manual_seed(seed * 1_000_003 + start)  # draws depend on (seed, position) only
        v = augmentation(x.repeat_interleave(views, dim=0), gen)
        if mode == "clean":
            v = torch.cat([to_float(x), v])
        yield start, x.shape[0], v


def gather_points(out: torch.Tensor, unit: int) -> torch.Tensor:
    """``out`` (…, N) with this rank's shard of the last axis filled, completed from every rank.

    Without a process group (one process) ``out`` is returned as is.
    """
    n = out.shape[-1]
    lo, hi = shard_bounds(n, unit=unit)
    if (lo, hi) == (0, n):
        return out
    mine = out[..., lo:hi].movedim(-1, 0).contiguous()
    return gather_rows(mine, n, unit=unit).movedim(0, -1)


def view_distances(r: torch.Tensor, b: int, views: int, mode: str) -> torch.Tensor:
    """Per-point alignment loss from the representations ``r`` of a :func:`view_batches` batch.

    ``r`` has one row per image of ``v``; it is flattened and L2-normalised
    here. Returns shape (b,): the mean Euclidean distance over the K(K−1)/2
    view pairs (``"pairwise"``) or between the clean image and each view
    (``"clean"``).
    """
    r = F.normalize(r.flatten(1).float(), dim=1)
    if mode == "pairwise":
        r = r.view(b, views, -1)
        iu = torch.triu_indices(views, views, offset=1, device=r.device)
        return torch.cdist(r, r)[:, iu[0], iu[1]].mean(1)
    clean, rv = r[:b], r[b:].view(b, views, -1)
    return (rv - clean[:, None]).norm(dim=-1).mean(1)


def alignment_loss(
    encoders: nn.Module | Sequence[nn.Module],
    images: torch.Tensor,
    augmentation: Augmentation,
    views: int = 5,
    mode: str = "pairwise",
    batch_size: int = 512,
    seed: int = 0,
    device: str | torch.device | None = None,
    amp: bool | None = None,
    progress: bool = False,
) -> np.ndarray:
    """Alignment loss of each encoder on each image.

    Parameters
    ----------
    encoders
        One encoder or a list. Each maps float images in [0, 1] of shape
        (B, C, H, W) to a representation (any shape; flattened).
    images
        uint8 images (N, C, H, W) on any device.
    augmentation
        Callable ``(uint8 images, generator) → float views``; e.g.
        :class:`~memlib.data.augment.SimCLRAugment`.
    views
        K, the number of augmented views per point (≥ 2 for ``"pairwise"``).
    mode
        ``"pairwise"`` or ``"clean"`` (see the module docstring).
    batch_size
        Images per forward pass (views included); points per batch =
        ``batch_size // views``.
    seed
        Seeds the view draws; the same seed gives the same views.
    device
        Device of the computation; default: the first encoder's.
    amp
        bf16 autocast for the forward passes; default on CUDA only.

    Returns
    -------
    numpy.ndarray
        Shape (n_encoders, N).
    """
    models = as_list(encoders)
    check_view_args(images, views, mode, batch_size)
    device, amp = resolve_scoring_device(models, device, amp)
    # Results stay on the device until the end: a .cpu() per batch would sync the GPU each time.
    out = torch.empty((len(models), images.shape[0]), dtype=torch.float64, device=device)
    with eval_mode(models), torch.inference_mode():
        for start, b, v in view_batches(images, augmentation, views, mode, batch_size, seed, device, progress):
            for j, m in enumerate(models):
                with torch.autocast(device.type, dtype=torch.bfloat16, enabled=amp):
                    r = m(v)
                out[j, start : start + b] = view_distances(r, b, views, mode)
    return gather_points(out, points_per_batch(batch_size, views, mode)).cpu().numpy()


def normalize_scores(raw: np.ndarray) -> np.ndarray:
    """Divide by the range (max − min) over the set, so scores lie in [-1, 1]."""
    raw = np.asarray(raw, dtype=np.float64)
    span = raw.max() - raw.min() if raw.size else 0.0
    return raw / span if span > 0 else np.zeros_like(raw)


def sslmem(
    f: nn.Module | Sequence[nn.Module],
    g: nn.Module | Sequence[nn.Module],
    images: torch.Tensor,
    augmentation: Augmentation,
    views: int = 5,
    mode: str = "pairwise",
    batch_size: int = 512,
    seed: int = 0,
    device: str | torch.device | None = None,
    amp: bool | None = None,
    progress: bool = False,
) -> SSLMemResult:
    """SSLMem scores of ``images`` for encoders f (trained on them) and g (not).

    ``f`` and ``g`` may each be one encoder or a family (list) of encoders
    trained with different seeds; alignment losses are averaged within each
    family (the expectations of paper eq. 2). All encoders see the same views.
    Pass every point to be compared in one call (e.g. S_C, S_S, S_E and S_I
    together): the normalised ``score`` uses the range over the whole set.
    Other parameters as in :func:`alignment_loss`.

    Returns
    -------
    SSLMemResult
        Per-point alignments, raw differences and normalised scores.

    Examples
    --------
    >>> res = sslmem(f, g, images_uint8, SimCLRAugment(size=28), views=5)  # doctest: +SKIP
    >>> res.score.argsort()[::-1][:10]  # the ten most memorised points  # doctest: +SKIP
    """
    fs, gs = as_list(f), as_list(g)
    a = alignment_loss(fs + gs, images, augmentation, views, mode, batch_size, seed, device, amp, progress)
    af, ag = a[: len(fs)], a[len(fs) :]
    raw = ag.mean(0) - af.mean(0)
    return SSLMemResult(af.mean(0), ag.mean(0), raw, normalize_scores(raw), af, ag, views, mode)
