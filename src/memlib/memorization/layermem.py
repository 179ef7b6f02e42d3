"""LayerMem and ΔLayerMem (Wang et al., NeurIPS 2024): SSLMem of intermediate layers.

LayerMem(l) is SSLMem (:mod:`memlib.memorization.sslmem`) with the output of
layer l of f and g as the representation instead of the encoder's final
output, averaged over the scored points; ΔLayerMem(l) = LayerMem(l) −
LayerMem(l−1) isolates what layer l adds (the book's Methods page).

Layer outputs are read with forward hooks (:func:`~memlib.models.encoder.tapped`):
the output each module really computes, so a ResNet block's tap includes its
residual addition and ReLU. One forward pass per batch of views computes every
tap, and every encoder of both families sees the same views as
:func:`~memlib.memorization.sslmem.sslmem` with the same ``seed`` and ``ids``
would draw (whatever the batch size). Representations are flattened and
L2-normalised, d is the Euclidean distance (float64), and the pairwise or
clean form of the alignment loss is shared with SSLMem
(:func:`~memlib.memorization.scoring.view_distances`).
Encoders run in eval mode (BatchNorm on running statistics), as they must:
the official code measured in train mode.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np
import pandas as pd
import torch
from torch import nn

from ..data.augment import Augmentation
from ..models.encoder import tapped
from .options import ScoringOptions, accepts_options
from .scoring import as_list, family_names
from .sslmem import normalize_scores, source_alignments
from .views import (
    AugmentedViews,
    FixedViews,
    ViewSource,
)


@dataclass
class LayerMemResult:
    """Per-point, per-layer SSLMem of one scored set.

    Attributes
    ----------
    taps
        Layer (tap) names, in the order of the first axis of the arrays.
    align_f, align_g
        Alignment loss per layer and point, averaged over f's (g's) family, shape (L, N).
    raw
        ``align_g − align_f`` per layer, shape (L, N).
    score
        ``raw`` divided by its range over the scored set, separately per layer; in [-1, 1].
    views, mode
        K and the form of the alignment loss.
    align_f_models, align_g_models
        The same per encoder, shape (models, L, N): member i of f and of g form encoder pair i
        (:meth:`pair_raw`).
    """

    taps: list[str]
    align_f: np.ndarray
    align_g: np.ndarray
    raw: np.ndarray
    score: np.ndarray
    views: int
    mode: str
    align_f_models: np.ndarray | None = None
    align_g_models: np.ndarray | None = None

    def pair_raw(self, i: int) -> np.ndarray:
        """``align_g − align_f`` of encoder pair ``i`` (f's and g's i-th members), shape (L, N)."""
        if self.align_f_models is None or self.align_g_models is None:
            raise ValueError("this result has no per-encoder alignments; score it with layermem()")
        n = min(len(self.align_f_models), len(self.align_g_models))
        if not 0 <= i < n:
            raise ValueError(f"pair {i} does not exist; this result has {n} encoder pair(s)")
        return self.align_g_models[i] - self.align_f_models[i]

    def layer(self, tap: str, kind: str = "score") -> np.ndarray:
        """Per-point scores of one layer; ``kind`` is ``"score"`` (normalised) or ``"raw"``."""
        if tap not in self.taps:
            raise ValueError(f"tap={tap!r} was not scored; scored taps: {self.taps}")
        return getattr(self, kind)[self.taps.index(tap)]

    def table(self, points=None, taps: Sequence[str] | None = None) -> pd.DataFrame:
        """LayerMem and ΔLayerMem per layer, over ``points`` (indices or mask; default all).

        ΔLayerMem is the difference to the previous row, so pass ``taps`` in
        depth order (e.g. only the ViT blocks, or only their MLPs); the first
        row's Δ is its LayerMem itself (the change from the input).

        Returns
        -------
        pandas.DataFrame
            Indexed by tap: ``layermem`` (mean normalised score), ``delta``,
            ``layermem_raw`` (mean raw difference), ``delta_raw``, ``n``.
        """
        taps = list(self.taps if taps is None else taps)
        rows = np.array([self.taps.index(self._known(t)) for t in taps])
        idx = np.arange(self.raw.shape[1]) if points is None else np.asarray(points)
        lm, lm_raw = self.score[rows][:, idx].mean(1), self.raw[rows][:, idx].mean(1)
        df = pd.DataFrame(
            {
                "layermem": lm,
                "delta": np.diff(lm, prepend=0.0),
                "layermem_raw": lm_raw,
                "delta_raw": np.diff(lm_raw, prepend=0.0),
            },
            index=pd.Index(taps, name="tap"),
        )
        df["n"] = len(np.arange(self.raw.shape[1])[idx])
        return df

    def _known(self, tap: str) -> str:
        if tap not in self.taps:
            raise ValueError(f"tap={tap!r} was not scored; scored taps: {self.taps}")
        return tap


def source_layer_alignment(
    encoders: nn.Module | Sequence[nn.Module],
    source: ViewSource,
    taps: Sequence[str] | None = None,
    *,
    mode: str = "pairwise",
    batch_size: int = 512,
    device: str | torch.device | None = None,
    amp: bool = False,
    progress: bool = False,
    names: Sequence[str] | None = None,
) -> tuple[list[str], np.ndarray]:
    """Alignment loss of each encoder at each tap on each point of a view source: taps and (n_encoders, L, N).

    NaN or inf raises :class:`FloatingPointError` naming the encoder and the points.
    """
    models = as_list(encoders)
    taps = list(getattr(models[0], "tap_names", ()) if taps is None else taps)
    if not taps:
        raise ValueError("taps is empty and the encoder has no tap_names; pass the module names to read")
    for m in models:  # unknown names fail here, before any compute
        with tapped(m, taps):
            pass
    out = source_alignments(
        models, source, taps, mode=mode, batch_size=batch_size, device=device, amp=amp, progress=progress, names=names
    )
    return taps, out


@accepts_options
def layer_alignment(
    encoders: nn.Module | Sequence[nn.Module],
    images: torch.Tensor,
    augmentation: Augmentation,
    taps: Sequence[str] | None = None,
    *,
    views: int = 5,
    mode: str = "pairwise",
    ids=None,
    batch_size: int = 512,
    seed: int = 0,
    device: str | torch.device | None = None,
    amp: bool = False,
    progress: bool = False,
    options: ScoringOptions | None = None,
) -> tuple[list[str], np.ndarray]:
    """Alignment loss of each encoder at each tapped layer on each image.

    Parameters
    ----------
    encoders
        One encoder or a list, all with the same tap names.
    taps
        Module names to read (see :func:`~memlib.models.encoder.tapped`);
        default: the first encoder's ``tap_names``.
    images, augmentation, views, mode, ids, batch_size, seed, device, amp, progress, options
        As in :func:`~memlib.memorization.sslmem.alignment_loss`.

    Returns
    -------
    tuple
        The tap names and an array of shape (n_encoders, L, N).
    """
    return source_layer_alignment(
        encoders,
        AugmentedViews(images, augmentation, views, seed, ids),
        taps,
        mode=mode,
        batch_size=batch_size,
        device=device,
        amp=amp,
        progress=progress,
    )


@accepts_options
def layermem(
    f: nn.Module | Sequence[nn.Module],
    g: nn.Module | Sequence[nn.Module],
    images: torch.Tensor,
    augmentation: Augmentation,
    taps: Sequence[str] | None = None,
    *,
    views: int = 5,
    mode: str = "pairwise",
    ids=None,
    batch_size: int = 512,
    seed: int = 0,
    device: str | torch.device | None = None,
    amp: bool = False,
    progress: bool = False,
    options: ScoringOptions | None = None,
) -> LayerMemResult:
    """LayerMem of ``images`` at every tapped layer, for encoders f (trained on them) and g (not).

    ``f`` and ``g`` may each be one encoder or a family; alignment losses are
    averaged within each family, as in :func:`~memlib.memorization.sslmem.sslmem`.
    Pass every point to be compared in one call: normalised scores use each
    layer's range over the whole set. Other parameters as in
    :func:`layer_alignment`.

    Returns
    -------
    LayerMemResult
        Per-point, per-layer scores; :meth:`LayerMemResult.table` gives
        LayerMem and ΔLayerMem per layer.

    Examples
    --------
    >>> res = layermem(f, g, images_uint8, SimCLRAugment(size=28), taps=f.tap_names)  # doctest: +SKIP
    >>> res.table()  # doctest: +SKIP
    """
    return _layermem(
        f, g, AugmentedViews(images, augmentation, views, seed, ids), taps, mode, batch_size, device, amp, progress
    )


def layermem_from_views(
    f: nn.Module | Sequence[nn.Module],
    g: nn.Module | Sequence[nn.Module],
    views: torch.Tensor,
    taps: Sequence[str] | None = None,
    *,
    clean: torch.Tensor | None = None,
    mode: str = "pairwise",
    batch_size: int = 512,
    device: str | torch.device | None = None,
    amp: bool = False,
    progress: bool = False,
) -> LayerMemResult:
    """LayerMem of views you made yourself, (N, K, C, H, W).

    As :func:`~memlib.memorization.sslmem.sslmem_from_views`.
    """
    return _layermem(f, g, FixedViews(views, clean), taps, mode, batch_size, device, amp, progress)


def _layermem(f, g, source, taps, mode, batch_size, device, amp, progress) -> LayerMemResult:
    fs, gs = as_list(f), as_list(g)
    taps, a = source_layer_alignment(
        fs + gs,
        source,
        taps,
        mode=mode,
        batch_size=batch_size,
        device=device,
        amp=amp,
        progress=progress,
        names=family_names(fs, gs),
    )
    return layermem_from_alignment(taps, a[: len(fs)], a[len(fs) :], source.views, mode)


def layermem_from_alignment(taps, af: np.ndarray, ag: np.ndarray, views: int, mode: str) -> LayerMemResult:
    """A :class:`LayerMemResult` from per-encoder, per-layer alignment losses of f's family ``af`` and g's ``ag``
    (each shape (models, layers, points)), e.g. rows of the evidence store."""
    af, ag = np.asarray(af, dtype=np.float64), np.asarray(ag, dtype=np.float64)
    if af.ndim != 3 or ag.shape[1:] != af.shape[1:] or af.shape[1] != len(taps):
        raise ValueError(f"af {af.shape} and ag {ag.shape} must be (models, {len(taps)} taps, points) alike")
    raw = ag.mean(0) - af.mean(0)
    score = np.stack([normalize_scores(r) for r in raw])
    return LayerMemResult(list(taps), af.mean(0), ag.mean(0), raw, score, views, mode, af, ag)
