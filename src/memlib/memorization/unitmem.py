"""UnitMem and ClassMem (Wang et al., NeurIPS 2024): how selective single units are.

For a unit u (a conv channel, or a hidden neuron of a ViT MLP) and N
training points, μ_{i,u} is the activation of u on point i, averaged over
the spatial positions (conv) or the tokens (ViT) and over K augmented views
of the point. Then (the book's Methods page)::

    UnitMem(u) = (μ_max,u − μ_−max,u) / (μ_max,u + μ_−max,u)

with μ_max,u the largest μ_{i,u} over the points and μ_−max,u the mean of the
other points (``reduce="mean"``, the default) or their median
(``reduce="median"``, the official code). A unit that responds to a single
point has UnitMem 1, a unit that responds equally to all points 0.
ClassMem(u) is the same index over the class means of μ (class selectivity,
Morcos et al. 2018).

Negative activations. The index lies in [0, 1] only for μ ≥ 0. ResNet taps
are after a ReLU (μ ≥ 0 already). A ViT's MLP hidden units
(``vit.blocks.i.mlp.act``) are GELU outputs, which reach down to about −0.17:
μ is **clamped at 0** after averaging, i.e. a unit whose mean response to a
point is negative counts as silent on that point, as it would behind a ReLU.
Shifting μ by its minimum instead would make the index depend on an
arbitrary offset (a constant added to every point changes UnitMem), so
clamping is the choice that keeps "responds to nothing but this point" at 1.
The share of clamped μ per layer is reported (:attr:`UnitMemResult.clamped`).
A unit silent on every point (μ_max = 0) gets UnitMem 0.

Views: view k of a point is the view SSLMem and LayerMem score with the same
``seed`` and ``ids`` (:mod:`memlib.memorization.views`), whatever the batch
size. Means are accumulated in float64.

Streaming: one forward pass per view of a batch of points computes every
tap; each tap's output is reduced to (points, units) at once and summed into
a per-point accumulator of shape (N, units), so views' activations are never
stored and peak memory does not grow with K. Encoders run in eval mode.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

import numpy as np
import pandas as pd
import torch
from torch import nn
from tqdm import tqdm

from ..data.augment import Augmentation
from ..models.encoder import tapped
from ..training.distributed import rank_and_world, shard_bounds
from .scoring import autocast, eval_mode, require_finite, scoring_device
from .views import AugmentedViews, FixedViews, ViewSource, check_batch_size, gather_points

REDUCTIONS = ("mean", "median")


def unit_taps(encoder: nn.Module) -> list[str]:
    """Default layers for UnitMem: a ViT's MLP hidden activations, else every tap of the encoder."""
    names = list(getattr(encoder, "tap_names", ()))
    act = [n for n in names if n.endswith(".mlp.act")]
    return act or names


def _per_unit(a: torch.Tensor) -> torch.Tensor:
    """(B, units): conv maps averaged over positions, token sequences over tokens."""
    if a.ndim == 4:
        return a.double().mean(dim=(2, 3))
    if a.ndim == 3:
        return a.double().mean(dim=1)
    if a.ndim == 2:
        return a.double()
    raise ValueError(f"cannot read units from an activation of shape {tuple(a.shape)}")


def selectivity(mu: np.ndarray, reduce: str = "mean") -> np.ndarray:
    """The index ``(μ_max − μ_rest) / (μ_max + μ_rest)`` along axis 0 of ``mu`` (rows: points or classes).

    Parameters
    ----------
    mu
        Non-negative means, shape (rows, units), at least 2 rows.
    reduce
        ``"mean"`` or ``"median"`` of the rows other than the maximum.

    Returns
    -------
    numpy.ndarray
        Shape (units,), in [0, 1]; 0 where a unit is 0 on every row.
    """
    if reduce not in REDUCTIONS:
        raise ValueError(f"reduce={reduce!r} is unknown; choose one of {REDUCTIONS}")
    mu = np.asarray(mu, dtype=np.float64)
    if mu.ndim != 2 or mu.shape[0] < 2:
        raise ValueError(f"mu must have shape (rows ≥ 2, units), got {mu.shape}")
    if (mu < 0).any():
        raise ValueError("mu must be non-negative (clamp activations first; see the module docstring)")
    srt = np.sort(mu, axis=0)
    top, rest = srt[-1], srt[:-1]
    other = rest.mean(0) if reduce == "mean" else np.median(rest, axis=0)
    den = top + other
    return np.divide(top - other, den, out=np.zeros_like(top), where=den > 0)


def point_selectivity(mu: np.ndarray) -> np.ndarray:
    """Per point, its largest UnitMem-style index over units: how strongly some unit singles it out.

    For point i and unit u the index is ``(μ_iu − μ_rest) / (μ_iu + μ_rest)``
    with μ_rest the mean of the other points (clamped at 0, so a point no unit
    prefers scores 0); the maximum over units is returned. For the point a
    unit prefers most this is that unit's UnitMem (``reduce="mean"``), so the
    value pairs points with UnitMem without tying a point to a single unit.

    Parameters
    ----------
    mu
        Non-negative means, shape (N ≥ 2, units).

    Returns
    -------
    numpy.ndarray
        Shape (N,), in [0, 1].
    """
    mu = np.asarray(mu, dtype=np.float64)
    if mu.ndim != 2 or mu.shape[0] < 2 or (mu < 0).any():
        raise ValueError(f"mu must be non-negative with shape (N ≥ 2, units), got {mu.shape}")
    rest = (mu.sum(0, keepdims=True) - mu) / (mu.shape[0] - 1)
    den = mu + rest
    s = np.divide(mu - rest, den, out=np.zeros_like(mu), where=den > 0)
    return np.clip(s, 0.0, 1.0).max(1)


@dataclass
class UnitMemResult:
    """UnitMem of every unit of every tapped layer.

    Attributes
    ----------
    taps
        Layer names.
    mu
        Per tap, the clamped per-point means μ, shape (N, units), float64.
    unitmem
        Per tap, UnitMem of each unit, shape (units,).
    argmax
        Per tap, the index of the point with the largest μ for each unit.
    clamped
        Per tap, the share of μ that were negative and set to 0.
    views, reduce
        K and the reduction of the non-max points.
    """

    taps: list[str]
    mu: dict[str, np.ndarray]
    unitmem: dict[str, np.ndarray]
    argmax: dict[str, np.ndarray]
    clamped: dict[str, float]
    views: int
    reduce: str
    n_points: int = field(default=0)

    def classmem(self, labels) -> dict[str, np.ndarray]:
        """ClassMem of every unit: the same index over the class means of μ."""
        labels = np.asarray(labels)
        if labels.shape != (self.n_points,):
            raise ValueError(f"labels must have shape ({self.n_points},), got {labels.shape}")
        classes = np.unique(labels)
        if len(classes) < 2:
            raise ValueError("ClassMem needs points of at least 2 classes")
        return {
            t: selectivity(np.stack([m[labels == c].mean(0) for c in classes]), self.reduce) for t, m in self.mu.items()
        }

    def point_selectivity(self) -> np.ndarray:
        """:func:`point_selectivity` over the units of all taps together, shape (N,)."""
        return point_selectivity(np.concatenate([self.mu[t] for t in self.taps], axis=1))

    def table(self) -> pd.DataFrame:
        """One row per unit: ``tap``, ``layer`` (depth index), ``unit``, ``unitmem``, ``argmax``."""
        return pd.concat(
            [
                pd.DataFrame(
                    {
                        "tap": t,
                        "layer": i,
                        "unit": np.arange(len(self.unitmem[t])),
                        "unitmem": self.unitmem[t],
                        "argmax": self.argmax[t],
                    }
                )
                for i, t in enumerate(self.taps)
            ],
            ignore_index=True,
        )


def source_unit_means(
    encoder: nn.Module,
    source: ViewSource,
    taps: Sequence[str] | None = None,
    *,
    batch_size: int = 256,
    device: str | torch.device | None = None,
    amp: bool = False,
    progress: bool = False,
) -> dict[str, np.ndarray]:
    """Per-point, per-unit mean activation over positions/tokens and the source's K views (not clamped)."""
    if not isinstance(encoder, nn.Module):
        raise TypeError(f"encoder must be an nn.Module, got {type(encoder).__name__}")
    taps = list(unit_taps(encoder) if taps is None else taps)
    if not taps:
        raise ValueError("taps is empty and the encoder has no tap_names; pass the module names to read")
    batch_size = check_batch_size(batch_size)
    n, views = source.n_points, source.views
    if n < 2:
        raise ValueError(f"UnitMem needs at least 2 points, got {n}")
    with tapped(encoder, taps):  # unknown names fail here, before any compute
        pass
    device = scoring_device([encoder], device)
    _, world = rank_and_world()
    if any(a == b for a, b in (shard_bounds(n, r, world, batch_size) for r in range(world))):
        # every rank checks the same condition, so all raise together instead of one hanging in the gather
        raise ValueError(
            f"batch_size={batch_size} leaves a rank without points ({n} points, {world} ranks); "
            f"pass batch_size ≤ {max(1, n // world)}"
        )
    acc: dict[str, torch.Tensor] = {}
    with eval_mode([encoder]), torch.inference_mode(), tapped(encoder, taps) as acts:
        assert not encoder.training, "UnitMem must run in eval mode"
        lo, hi = shard_bounds(n, unit=batch_size)  # under torchrun: this rank's share of whole batches
        for start in tqdm(range(lo, hi, batch_size), desc="unitmem", disable=not progress, leave=False):
            end = min(start + batch_size, hi)
            for k in range(views):
                with autocast(device, amp):
                    encoder(source.view(start, end, k, device))
                for t in taps:
                    u = _per_unit(acts[t])
                    if t not in acc:
                        acc[t] = torch.zeros((n, u.shape[1]), dtype=torch.float64, device=device)
                    acc[t][start:end] += u
                acts.clear()  # drop this view's activations before the next forward
    means = {t: gather_points((a / views).T, batch_size).T.cpu().numpy() for t, a in acc.items()}
    for t, m in means.items():
        require_finite(
            m.T[None], [f"{type(encoder).__name__} (tap {t!r})"], "mean activation", getattr(source, "ids", None)
        )
    return means


def unit_means(
    encoder: nn.Module,
    images: torch.Tensor,
    augmentation: Augmentation,
    taps: Sequence[str] | None = None,
    *,
    views: int = 10,
    ids=None,
    batch_size: int = 256,
    seed: int = 0,
    device: str | torch.device | None = None,
    amp: bool = False,
    progress: bool = False,
) -> dict[str, np.ndarray]:
    """Per-point, per-unit mean activation over positions/tokens and K views (not clamped).

    Parameters
    ----------
    encoder
        The encoder (put in eval mode for the call).
    images
        uint8 images (N, C, H, W).
    augmentation
        ``(uint8 images, generator) → float views``, e.g. the training augmentation.
    taps
        Layers to read; default :func:`unit_taps`.
    views
        K augmentations per point.
    ids
        Point ids for the view draws, as in :func:`~memlib.memorization.sslmem.alignment_loss`.
    batch_size
        Points per forward pass; each forward holds one view of each, so the
        memory of a pass does not depend on K. It never changes a result.
    seed
        Seeds the view draws: view k of point i is the view SSLMem scores with the same seed and ids.
    device, amp, progress
        As in :func:`~memlib.memorization.sslmem.alignment_loss`.

    Returns
    -------
    dict
        Tap name → array (N, units), float64.
    """
    return source_unit_means(
        encoder,
        AugmentedViews(images, augmentation, views, seed, ids),
        taps,
        batch_size=batch_size,
        device=device,
        amp=amp,
        progress=progress,
    )


def unitmem(
    encoder: nn.Module,
    images: torch.Tensor,
    augmentation: Augmentation,
    taps: Sequence[str] | None = None,
    *,
    views: int = 10,
    reduce: str = "mean",
    ids=None,
    batch_size: int = 256,
    seed: int = 0,
    device: str | torch.device | None = None,
    amp: bool = False,
    progress: bool = False,
) -> UnitMemResult:
    """UnitMem of every unit of the tapped layers over the points ``images``.

    Parameters
    ----------
    reduce
        ``"mean"`` (default) or ``"median"`` of the non-max points' μ.
    encoder, images, augmentation, taps, views, ids, batch_size, seed, device, amp, progress
        As in :func:`unit_means`.

    Returns
    -------
    UnitMemResult
        Per-unit UnitMem in [0, 1], the point each unit prefers, and the
        clamped means (for :meth:`UnitMemResult.classmem`).

    Examples
    --------
    >>> res = unitmem(encoder, train_images_uint8, SimCLRAugment(size=28), views=10)  # doctest: +SKIP
    >>> res.table().sort_values("unitmem").tail()  # doctest: +SKIP
    """
    if reduce not in REDUCTIONS:
        raise ValueError(f"reduce={reduce!r} is unknown; choose one of {REDUCTIONS}")
    raw = unit_means(
        encoder,
        images,
        augmentation,
        taps,
        views=views,
        ids=ids,
        batch_size=batch_size,
        seed=seed,
        device=device,
        amp=amp,
        progress=progress,
    )
    return unitmem_from_means(raw, reduce, views)


def unitmem_from_views(
    encoder: nn.Module,
    views: torch.Tensor,
    taps: Sequence[str] | None = None,
    *,
    reduce: str = "mean",
    batch_size: int = 256,
    device: str | torch.device | None = None,
    amp: bool = False,
    progress: bool = False,
) -> UnitMemResult:
    """UnitMem over views you made yourself, (N, K, C, H, W); other parameters as in :func:`unitmem`."""
    if reduce not in REDUCTIONS:
        raise ValueError(f"reduce={reduce!r} is unknown; choose one of {REDUCTIONS}")
    src = FixedViews(views)
    raw = source_unit_means(encoder, src, taps, batch_size=batch_size, device=device, amp=amp, progress=progress)
    return unitmem_from_means(raw, reduce, src.views)


def unitmem_from_means(raw: dict[str, np.ndarray], reduce: str, views: int) -> UnitMemResult:
    """A :class:`UnitMemResult` from unclamped per-point unit means (:func:`unit_means`)."""
    mu = {t: np.maximum(m, 0.0) for t, m in raw.items()}
    n = next(iter(raw.values())).shape[0]
    return UnitMemResult(
        taps=list(raw),
        mu=mu,
        unitmem={t: selectivity(m, reduce) for t, m in mu.items()},
        argmax={t: m.argmax(0) for t, m in mu.items()},
        clamped={t: float((m < 0).mean()) for t, m in raw.items()},
        views=views,
        reduce=reduce,
        n_points=n,
    )
