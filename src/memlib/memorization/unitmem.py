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

Negative activations (the ``activation`` parameter, :data:`ACTIVATIONS`).
The index lies in [0, 1] only for μ ≥ 0. ResNet taps are after a ReLU, so
their activations are ≥ 0 and all three handlings below give the same μ (the
authors' setting: one post-ReLU block of a ResNet-9). A ViT's MLP hidden
units (``vit.blocks.i.mlp.act``) are GELU outputs, which reach down to about
−0.17, so μ must be made non-negative somehow:

- ``"positive_part"`` (default): max(a, 0) of every activation, per position
  (conv) or token (ViT) and view, **before** averaging. A negative output
  counts as silent, as it would behind a ReLU, and μ_{i,u} is the unit's
  positive response to point i, so a unit that fires on one point only keeps
  UnitMem ≈ 1 and a unit that fires alike on every point stays near 0. On
  ReLU taps this is the plain mean.
- ``"shift_min"``: subtract the activation's floor — the smallest value its
  function can take: 0 for ReLU, :data:`GELU_MIN` ≈ −0.170 for GELU — from
  every activation before averaging, so μ ≥ 0 without clamping. The floor is
  read from the tapped module's type (:func:`activation_floor`) or given as
  ``shift``; values below it (float rounding only) are set to it. A silent
  GELU unit then counts as 0.17 active on every point, which pulls UnitMem
  toward 0, and the index moves with the floor: a sensitivity check, not the
  default.
- ``"clamp_mean"``: average the raw activations, then clamp μ at 0 (memlib's
  earlier default). On a GELU tap of Fashion-MNIST most tokens are
  background, each slightly negative, so most μ are clamped and a unit's
  UnitMem turns on the sign of a background-dominated mean: one point whose
  mean creeps above 0 gets UnitMem 1 although it differs little from the rest.

:attr:`UnitMemResult.clamped` is, per tap and under every handling, the share
of the *signed* per-point means (the plain average of the raw activations)
that are negative: the share ``"clamp_mean"`` sets to 0. ``"positive_part"``
and ``"shift_min"`` clamp nothing after averaging; there the number says how
much of the tap is, on average, below 0. A unit silent on every point
(μ_max = 0) gets UnitMem 0.

Views: view k of a point is the view SSLMem and LayerMem score with the same
``seed`` and ``ids`` (:mod:`memlib.memorization.views`), whatever the batch
size. Means are accumulated in float64.

Streaming: one forward pass per view of a batch of points computes every
tap; each tap's output is reduced to (points, units) at once and summed into
a per-point accumulator of shape (N, units), so views' activations are never
stored and peak memory does not grow with K (:func:`unitmem` keeps a second
accumulator of signed sums for :attr:`UnitMemResult.clamped` unless
``activation="clamp_mean"``). Encoders run in eval mode.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Mapping, Sequence

import numpy as np
import pandas as pd
import torch
from torch import nn
from torchvision.models.resnet import BasicBlock, Bottleneck
from tqdm import tqdm

from ..data.augment import Augmentation
from ..models.encoder import tapped
from ..training.distributed import rank_and_world, shard_bounds
from .options import ScoringOptions, accepts_options
from .scoring import autocast, eval_mode, require_finite, scoring_device
from .views import AugmentedViews, FixedViews, ViewSource, check_batch_size, gather_points

REDUCTIONS = ("mean", "median")
#: How negative activations are handled before μ enters the index (see the module docstring).
ACTIVATIONS = ("positive_part", "shift_min", "clamp_mean")

#: The minimum of GELU(x) = x·Φ(x) (at x ≈ −0.7518), rounded down.
GELU_MIN = -0.16997120748
#: The minimum of the tanh approximation of GELU, rounded down.
GELU_TANH_MIN = -0.17004075058
#: Floors of activation functions that are bounded below; a shift of 0 means "already ≥ 0".
_FLOORS: dict[type, float] = {
    nn.ReLU: 0.0,
    nn.ReLU6: 0.0,
    nn.Sigmoid: 0.0,
    nn.Softplus: 0.0,
    nn.Hardsigmoid: 0.0,
    nn.SiLU: -0.27846454277,
    nn.Mish: -0.30884341302,
    nn.Hardswish: -0.375,
    nn.Tanh: -1.0,
    nn.SELU: -1.0507009873554805 * 1.6732632423543772,
    BasicBlock: 0.0,  # torchvision's residual blocks end in a ReLU
    Bottleneck: 0.0,
}


def check_activation(activation: str) -> str:
    """Return ``activation`` if it is one of :data:`ACTIVATIONS`, else raise a ValueError naming the choices."""
    if activation not in ACTIVATIONS:
        raise ValueError(f"activation={activation!r} is unknown; choose one of {ACTIVATIONS}")
    return activation


def activation_floor(module: nn.Module) -> float | None:
    """The smallest value the output of ``module`` can take, from its type; None when unknown or unbounded.

    Known: ReLU-like and sigmoid-like activations and torchvision's residual
    blocks (0), GELU (:data:`GELU_MIN`, or :data:`GELU_TANH_MIN` with
    ``approximate="tanh"``), SiLU, Mish, Hardswish, Tanh, ELU/CELU (−alpha),
    SELU. An ``nn.Sequential`` has the floor of its last module.
    """
    if isinstance(module, nn.GELU):
        return GELU_TANH_MIN if module.approximate == "tanh" else GELU_MIN
    if isinstance(module, (nn.ELU, nn.CELU)):
        return -float(module.alpha)
    if isinstance(module, nn.Sequential) and len(module):
        return activation_floor(module[-1])
    for kind, floor in _FLOORS.items():
        if isinstance(module, kind):
            return floor
    return None


def _floors(encoder: nn.Module, taps: Sequence[str], activation: str, shift) -> dict[str, float]:
    """Per tap, the value ``"shift_min"`` subtracts (empty for the other handlings)."""
    if activation != "shift_min":
        if shift is not None:
            raise ValueError(f"shift is only used with activation='shift_min', got activation={activation!r}")
        return {}
    if shift is not None and not isinstance(shift, Mapping):
        return {t: float(shift) for t in taps}
    given = dict(shift or {})
    modules = dict(encoder.named_modules())
    out = {}
    for t in taps:
        floor = given[t] if t in given else activation_floor(modules[t])
        if floor is None or not np.isfinite(floor):
            raise ValueError(
                f"activation='shift_min' needs the floor of tap {t!r} ({type(modules[t]).__name__}), whose output "
                "is not bounded below by a known activation; pass shift= (a number, or a dict tap → number)"
            )
        out[t] = float(floor)
    return out


def _handle(a: torch.Tensor, activation: str, floor: float | None) -> torch.Tensor:
    """Activations made non-negative per position/token, before averaging (``"clamp_mean"``: unchanged)."""
    if activation == "positive_part":
        return a.double().clamp_min(0.0)
    if activation == "shift_min":
        return (a.double() - floor).clamp_min(0.0)
    return a


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
        Per tap, the non-negative per-point means μ, shape (N, units), float64.
    unitmem
        Per tap, UnitMem of each unit, shape (units,).
    argmax
        Per tap, the index of the point with the largest μ for each unit.
    clamped
        Per tap, the share of the signed per-point means (plain averages of the
        raw activations) that are negative: the share ``"clamp_mean"`` sets to
        0. The other handlings clamp nothing after averaging; NaN when unknown
        (:func:`unitmem_from_means` given handled means and no ``negative``).
    views, reduce
        K and the reduction of the non-max points.
    activation
        How negative activations were handled (:data:`ACTIVATIONS`). Results
        made before the parameter existed load as ``"clamp_mean"``, what they used.
    """

    taps: list[str]
    mu: dict[str, np.ndarray]
    unitmem: dict[str, np.ndarray]
    argmax: dict[str, np.ndarray]
    clamped: dict[str, float]
    views: int
    reduce: str
    n_points: int = field(default=0)
    activation: str = field(default="clamp_mean")

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


def _accumulate(
    encoder: nn.Module,
    source: ViewSource,
    taps: Sequence[str] | None,
    *,
    batch_size: int,
    device,
    amp: bool,
    progress: bool,
    activation: str,
    shift,
    signed: bool,
) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray] | None]:
    """Per-point means of the handled activations and, if ``signed``, of the raw ones (None for clamp_mean)."""
    check_activation(activation)
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
    floors = _floors(encoder, taps, activation, shift)
    signed = signed and activation != "clamp_mean"  # clamp_mean's means are the signed ones
    device = scoring_device([encoder], device)
    _, world = rank_and_world()
    if any(a == b for a, b in (shard_bounds(n, r, world, batch_size) for r in range(world))):
        # every rank checks the same condition, so all raise together instead of one hanging in the gather
        raise ValueError(
            f"batch_size={batch_size} leaves a rank without points ({n} points, {world} ranks); "
            f"pass batch_size ≤ {max(1, n // world)}"
        )
    acc: dict[str, torch.Tensor] = {}
    raw: dict[str, torch.Tensor] = {}
    with eval_mode([encoder]), torch.inference_mode(), tapped(encoder, taps) as acts:
        assert not encoder.training, "UnitMem must run in eval mode"
        lo, hi = shard_bounds(n, unit=batch_size)  # under torchrun: this rank's share of whole batches
        for start in tqdm(range(lo, hi, batch_size), desc="unitmem", disable=not progress, leave=False):
            end = min(start + batch_size, hi)
            for k in range(views):
                with autocast(device, amp):
                    encoder(source.view(start, end, k, device))
                for t in taps:
                    u = _per_unit(_handle(acts[t], activation, floors.get(t)))
                    if t not in acc:
                        acc[t] = torch.zeros((n, u.shape[1]), dtype=torch.float64, device=device)
                        if signed:
                            raw[t] = torch.zeros_like(acc[t])
                    acc[t][start:end] += u
                    if signed:
                        raw[t][start:end] += _per_unit(acts[t])
                acts.clear()  # drop this view's activations before the next forward
    means = {t: gather_points((a / views).T, batch_size).T.cpu().numpy() for t, a in acc.items()}
    for t, m in means.items():
        require_finite(
            m.T[None], [f"{type(encoder).__name__} (tap {t!r})"], "mean activation", getattr(source, "ids", None)
        )
    if not signed:
        return means, None
    return means, {t: gather_points((a / views).T, batch_size).T.cpu().numpy() for t, a in raw.items()}


def source_unit_means(
    encoder: nn.Module,
    source: ViewSource,
    taps: Sequence[str] | None = None,
    *,
    batch_size: int = 256,
    device: str | torch.device | None = None,
    amp: bool = False,
    progress: bool = False,
    activation: str = "positive_part",
    shift: float | Mapping[str, float] | None = None,
) -> dict[str, np.ndarray]:
    """Per-point, per-unit mean of the handled activation over positions/tokens and the source's K views.

    ``activation`` and ``shift`` as in :func:`unit_means`; other parameters as there.
    """
    means, _ = _accumulate(
        encoder,
        source,
        taps,
        batch_size=batch_size,
        device=device,
        amp=amp,
        progress=progress,
        activation=activation,
        shift=shift,
        signed=False,
    )
    return means


@accepts_options
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
    activation: str = "positive_part",
    shift: float | Mapping[str, float] | None = None,
    options: ScoringOptions | None = None,
) -> dict[str, np.ndarray]:
    """Per-point, per-unit mean of the handled activation over positions/tokens and K views.

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
    device, amp, progress, options
        As in :func:`~memlib.memorization.sslmem.alignment_loss` (UnitMem has no ``mode``).
    activation
        One of :data:`ACTIVATIONS` (module docstring): ``"positive_part"``
        (default) averages max(a, 0), ``"shift_min"`` averages a − floor, both
        per position/token before averaging (means ≥ 0); ``"clamp_mean"``
        averages the raw activations (signed means, clamped later by
        :func:`unitmem_from_means`).
    shift
        ``"shift_min"`` only: the floor to subtract, a number for every tap or
        a dict tap → number; default :func:`activation_floor` of each tapped
        module (GELU: :data:`GELU_MIN`, ReLU: 0).

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
        activation=activation,
        shift=shift,
    )


@accepts_options
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
    activation: str = "positive_part",
    shift: float | Mapping[str, float] | None = None,
    options: ScoringOptions | None = None,
) -> UnitMemResult:
    """UnitMem of every unit of the tapped layers over the points ``images``.

    Parameters
    ----------
    reduce
        ``"mean"`` (default) or ``"median"`` of the non-max points' μ.
    activation
        How negative activations are handled, one of :data:`ACTIVATIONS`;
        default ``"positive_part"`` (max(a, 0) per position/token before
        averaging). ``"clamp_mean"`` is memlib's earlier default.
    encoder, images, augmentation, taps, views, ids, batch_size, seed, device, amp, progress, shift, options
        As in :func:`unit_means`.

    Returns
    -------
    UnitMemResult
        Per-unit UnitMem in [0, 1], the point each unit prefers, and the
        non-negative means (for :meth:`UnitMemResult.classmem`).

    Examples
    --------
    >>> res = unitmem(encoder, train_images_uint8, SimCLRAugment(size=28), views=10)  # doctest: +SKIP
    >>> res.table().sort_values("unitmem").tail()  # doctest: +SKIP
    """
    if reduce not in REDUCTIONS:
        raise ValueError(f"reduce={reduce!r} is unknown; choose one of {REDUCTIONS}")
    means, signed = _accumulate(
        encoder,
        AugmentedViews(images, augmentation, views, seed, ids),
        taps,
        batch_size=batch_size,
        device=device,
        amp=amp,
        progress=progress,
        activation=activation,
        shift=shift,
        signed=True,
    )
    return unitmem_from_means(means, reduce, views, activation, negative=_negative_share(signed))


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
    activation: str = "positive_part",
    shift: float | Mapping[str, float] | None = None,
) -> UnitMemResult:
    """UnitMem over views you made yourself, (N, K, C, H, W); other parameters as in :func:`unitmem`."""
    if reduce not in REDUCTIONS:
        raise ValueError(f"reduce={reduce!r} is unknown; choose one of {REDUCTIONS}")
    src = FixedViews(views)
    means, signed = _accumulate(
        encoder,
        src,
        taps,
        batch_size=batch_size,
        device=device,
        amp=amp,
        progress=progress,
        activation=activation,
        shift=shift,
        signed=True,
    )
    return unitmem_from_means(means, reduce, src.views, activation, negative=_negative_share(signed))


def _negative_share(signed: dict[str, np.ndarray] | None) -> dict[str, float] | None:
    return None if signed is None else {t: float((m < 0).mean()) for t, m in signed.items()}


def unitmem_from_means(
    raw: dict[str, np.ndarray],
    reduce: str,
    views: int,
    activation: str = "positive_part",
    *,
    negative: Mapping[str, float] | None = None,
) -> UnitMemResult:
    """A :class:`UnitMemResult` from per-point unit means (:func:`unit_means` with the same ``activation``).

    Parameters
    ----------
    raw
        Tap → (N, units) means. For ``"clamp_mean"`` the signed means, clamped
        at 0 here; for ``"positive_part"`` and ``"shift_min"`` the means of the
        handled activations, which must be ≥ 0.
    reduce, views
        The reduction of the non-max points, and K (recorded).
    activation
        The handling the means were computed with, one of :data:`ACTIVATIONS`.
    negative
        Per tap, the share of negative signed means (:attr:`UnitMemResult.clamped`);
        for ``"clamp_mean"`` it is computed from ``raw``, otherwise NaN when not given.
    """
    check_activation(activation)
    if not raw:
        raise ValueError("raw is empty; pass at least one tap's means")
    if activation == "clamp_mean":
        mu = {t: np.maximum(m, 0.0) for t, m in raw.items()}
        clamped = {t: float((m < 0).mean()) for t, m in raw.items()}
    else:
        bad = [t for t, m in raw.items() if (np.asarray(m) < 0).any()]
        if bad:
            raise ValueError(
                f"raw has negative means in {bad}, impossible under activation={activation!r}; pass the means "
                "unit_means computes with the same activation, or activation='clamp_mean' for signed means"
            )
        mu = {t: np.asarray(m, dtype=np.float64) for t, m in raw.items()}
        clamped = {t: float((negative or {}).get(t, float("nan"))) for t in raw}
    n = next(iter(raw.values())).shape[0]
    return UnitMemResult(
        taps=list(raw),
        mu=mu,
        unitmem={t: selectivity(m, reduce) for t, m in mu.items()},
        argmax={t: m.argmax(0) for t, m in mu.items()},
        clamped=clamped,
        views=views,
        reduce=reduce,
        n_points=n,
        activation=activation,
    )
