"""What every memorisation metric does the same way: device, precision, eval mode, forward passes, distances.

Precision. Forward passes run in float32 on every device by default; the
alignment distances and their normalisation are computed in float64.
Measured on trained ``cpu``-preset encoders (``benchmarks/bench_precision.py``,
``benchmarks/RESULTS.md``): float32 distances err by up to 7e-6 in an
alignment loss on 2k–12k-dimensional taps and 6e-5 after range
normalisation, while float64 costs 1.7 % of the scoring time. ``amp=True``
opts into bf16 autocast for the forward passes; it moved normalised scores
by up to 1.6e-2 (mean 3e-3), as much as the effects the chapters test, so use
it only where speed matters more than those digits. On CUDA, PyTorch lets
cuDNN convolutions use TF32 by default (``torch.backends.cudnn.allow_tf32``);
memlib leaves that as it is (set it to ``False`` for strict float32).
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..device import resolve_device
from ..models.encoder import tapped


def as_list(models) -> list[nn.Module]:
    """One module or a non-empty sequence of modules, as a list."""
    if isinstance(models, nn.Module):
        return [models]
    if isinstance(models, (str, bytes)) or not hasattr(models, "__iter__"):
        raise TypeError(
            f"encoders must be an nn.Module or a non-empty sequence of nn.Modules, got "
            f"{type(models).__name__} (load a checkpoint into a module first)"
        )
    models = list(models)
    if not models or not all(isinstance(m, nn.Module) for m in models):
        raise TypeError(
            f"encoders must be an nn.Module or a non-empty sequence of nn.Modules, got "
            f"{[type(m).__name__ for m in models]}"
        )
    return models


def family_names(fs: Sequence[nn.Module], gs: Sequence[nn.Module]) -> list[str]:
    """Names of f's and g's encoders in scoring order: ``f[0] … g[0] …``, for error messages."""
    return [f"f[{i}]" for i in range(len(fs))] + [f"g[{i}]" for i in range(len(gs))]


def scoring_device(models: Sequence[nn.Module], device=None) -> torch.device:
    """The computation's device: ``device`` if given (checked), else the first model's."""
    if device is None:
        p = next(iter(models[0].parameters()), None)
        return p.device if p is not None else torch.device("cpu")
    return torch.device(resolve_device(device))  # e.g. "cuda" without a GPU: a clear error, not torch's


def scoring_dtype(device: torch.device, amp: bool = False) -> torch.dtype:
    """The forward passes' compute dtype: float32 on every device unless ``amp=True`` (bf16)."""
    if not isinstance(amp, bool):
        raise TypeError(f"amp={amp!r} must be True (bf16 autocast) or False (float32, the default)")
    return torch.bfloat16 if amp else torch.float32


def autocast(device: torch.device, amp: bool = False):
    """The autocast context of a scoring forward pass; with ``amp=False`` it also switches off an outer autocast."""
    dtype = scoring_dtype(device, amp)
    return torch.autocast(device.type, dtype=torch.bfloat16, enabled=dtype == torch.bfloat16)


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


def forward(
    model: nn.Module,
    v: torch.Tensor,
    batch_size: int,
    device: torch.device,
    amp: bool = False,
    taps: Sequence[str] | None = None,
) -> torch.Tensor | dict[str, torch.Tensor]:
    """``model(v)`` in passes of at most ``batch_size`` images; with ``taps``, each tap's output instead.

    In eval mode every image's output depends on that image only, so the
    chunking changes nothing but the memory a pass needs.
    """
    chunks = v.split(batch_size)
    if taps is None:
        outs = []
        for c in chunks:
            with autocast(device, amp):
                outs.append(model(c))
        return outs[0] if len(outs) == 1 else torch.cat(outs)
    per_tap: dict[str, list[torch.Tensor]] = {t: [] for t in taps}
    for c in chunks:
        with tapped(model, taps) as acts, autocast(device, amp):
            model(c)  # one forward fills every tap
        for t in taps:
            per_tap[t].append(acts[t])
    return {t: a[0] if len(a) == 1 else torch.cat(a) for t, a in per_tap.items()}


def view_distances(r: torch.Tensor, b: int, views: int, mode: str) -> torch.Tensor:
    """Per-point alignment loss (paper eq. 1) from the representations ``r`` of a view batch, in float64.

    ``r`` has one row per image of the batch (:func:`~memlib.memorization.views.view_batches`);
    it is flattened and L2-normalised here. Returns shape (b,): the mean
    Euclidean distance over the K(K−1)/2 view pairs (``"pairwise"``) or
    between the clean image and each view (``"clean"``).
    """
    r = F.normalize(r.flatten(1).double(), dim=1)
    if mode == "pairwise":
        r = r.view(b, views, -1)
        iu = torch.triu_indices(views, views, offset=1, device=r.device)
        # the direct difference, not ‖a‖² + ‖b‖² − 2a·b, which loses digits when views are close
        d = torch.cdist(r, r, compute_mode="donot_use_mm_for_euclid_dist")
        return d[:, iu[0], iu[1]].mean(1)
    clean, rv = r[:b], r[b:].view(b, views, -1)
    return (rv - clean[:, None]).norm(dim=-1).mean(1)


def require_finite(values: np.ndarray, names: Sequence[str], what: str, ids=None) -> np.ndarray:
    """Raise if any value is NaN or inf, naming the encoder (first axis) and the points (last axis).

    A NaN is never turned into a score: a non-finite alignment or activation
    means the encoder itself is broken (non-finite weights or outputs).
    """
    bad = ~np.isfinite(values)
    if bad.any():
        j = int(np.argwhere(bad.reshape(len(values), -1).any(1))[0, 0])
        pts = np.flatnonzero(bad[j].reshape(-1, values.shape[-1]).any(0))
        named = pts if ids is None else np.asarray(ids)[pts]
        raise FloatingPointError(
            f"encoder {names[j]} gave a NaN or inf {what} for {len(pts)} point(s) "
            f"({'ids' if ids is not None else 'positions'} {named[:10].tolist()}{' …' if len(pts) > 10 else ''}); "
            f"its weights or outputs are not finite. Check that encoder (memlib's training stops on non-finite "
            f"weights); no score is computed from NaN."
        )
    return values
