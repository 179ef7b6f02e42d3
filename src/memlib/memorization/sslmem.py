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
of points is augmented once and the views go through all encoders. View k of
a point is drawn from ``(seed, point id, k)`` (:mod:`memlib.memorization.views`),
so a point's score does not depend on the batch size, the order of the set,
the device or the sharding; LayerMem and UnitMem with the same seed and ids
see the same views. :func:`sslmem_from_views` scores views you made
yourself. Scoring is batched over points and views (no per-point loop), runs
in eval mode (BatchNorm uses its running statistics), in float32 with
float64 distances (:mod:`memlib.memorization.scoring`), restoring each
module's mode after.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Sequence

import numpy as np
import torch
from torch import nn

from ..data.augment import Augmentation
from .options import ScoringOptions, accepts_options
from .scoring import as_list, eval_mode, family_names, forward, require_finite, scoring_device, view_distances
from .views import (
    AugmentedViews,
    FixedViews,
    ViewSource,
    check_batch_size,
    check_views_arg,
    gather_points,
    points_per_batch,
    view_batches,
)


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
    ids: np.ndarray | None = None  # the point ids the views were drawn from (None: fixed views)

    def __len__(self) -> int:
        return len(self.raw)

    def subset(self, idx) -> "SSLMemResult":
        """The rows ``idx``, keeping the normalisation of the whole scored set."""
        idx = np.asarray(idx)
        return SSLMemResult(
            self.align_f[idx],
            self.align_g[idx],
            self.raw[idx],
            self.score[idx],
            self.align_f_models[:, idx],
            self.align_g_models[:, idx],
            self.views,
            self.mode,
            None if self.ids is None else self.ids[idx],
        )


def source_alignment(
    encoders: nn.Module | Sequence[nn.Module],
    source: ViewSource,
    *,
    mode: str = "pairwise",
    batch_size: int = 512,
    device: str | torch.device | None = None,
    amp: bool = False,
    progress: bool = False,
    names: Sequence[str] | None = None,
) -> np.ndarray:
    """Alignment loss of each encoder on each point of a view source, shape (n_encoders, N).

    Raises :class:`FloatingPointError` naming the encoder (``names``, default
    its position) and the points if any alignment is NaN or inf.
    """
    models = as_list(encoders)
    out = source_alignments(
        models, source, None, mode=mode, batch_size=batch_size, device=device, amp=amp, progress=progress, names=names
    )
    return out[:, 0]


def source_alignments(
    models: list[nn.Module],
    source: ViewSource,
    taps: Sequence[str] | None,
    *,
    mode: str,
    batch_size: int,
    device,
    amp: bool,
    progress: bool,
    names: Sequence[str] | None,
) -> np.ndarray:
    """Alignment loss (paper eq. 1) of each model on each point, at each tap (``None``: the output only).

    The one batched loop behind SSLMem and LayerMem. Returns shape (n_models, len(taps) or 1, N); NaN or inf
    raises :class:`FloatingPointError` naming the encoder and the points.
    """
    check_views_arg(source.views, mode)
    batch_size = check_batch_size(batch_size)
    device = scoring_device(models, device)
    # Results stay on the device until the end: a .cpu() per batch would sync the GPU each time.
    out = torch.empty((len(models), len(taps or [None]), source.n_points), dtype=torch.float64, device=device)
    desc = "alignment" if taps is None else "layer alignment"
    with eval_mode(models), torch.inference_mode():
        for start, b, v in view_batches(source, mode, batch_size, device, progress, desc=desc):
            for j, m in enumerate(models):
                reps = (
                    [forward(m, v, batch_size, device, amp)]
                    if taps is None
                    else list(forward(m, v, batch_size, device, amp, taps=taps).values())
                )
                for li, r in enumerate(reps):
                    out[j, li, start : start + b] = view_distances(r, b, source.views, mode)
    out = gather_points(out, points_per_batch(batch_size, source.views, mode)).cpu().numpy()
    what = "alignment loss" if taps is None else "layer alignment"
    return require_finite(out, names or [str(j) for j in range(len(models))], what, getattr(source, "ids", None))


@accepts_options
def alignment_loss(
    encoders: nn.Module | Sequence[nn.Module],
    images: torch.Tensor,
    augmentation: Augmentation,
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
) -> np.ndarray:
    """Alignment loss of each encoder on each image.

    Parameters
    ----------
    encoders
        One encoder or a list. Each maps float images in [0, 1] of shape
        (B, C, H, W) to a representation (any shape; flattened).
    images
        uint8 images (N, C, H, W) on any device (tensor or numpy array).
    augmentation
        Callable ``(uint8 images, generator) → float views``; e.g.
        :class:`~memlib.data.augment.SimCLRAugment`.
    views
        K, the number of augmented views per point (≥ 2 for ``"pairwise"``).
    mode
        ``"pairwise"`` or ``"clean"`` (see the module docstring).
    ids
        One distinct int ≥ 0 per point, naming it for the view draws
        (default: positions 0..N−1). Pass dataset indices to give a point
        the same views wherever it is scored.
    batch_size
        The most images per forward pass (views included). It changes speed
        and memory, never a score.
    seed
        Seeds the view draws: view k of point i comes from ``(seed, ids[i], k)``.
    device
        Device of the computation; default: the first encoder's.
    amp
        bf16 autocast for the forward passes (default ``False``: float32 on
        every device; see :mod:`memlib.memorization.scoring` for its measured effect).
    progress
        Show a progress bar.
    options
        A :class:`~memlib.memorization.options.ScoringOptions` holding the settings above, in place of
        the keywords (its ``None`` fields keep these defaults).

    Returns
    -------
    numpy.ndarray
        Shape (n_encoders, N).
    """
    return source_alignment(
        encoders,
        AugmentedViews(images, augmentation, views, seed, ids),
        mode=mode,
        batch_size=batch_size,
        device=device,
        amp=amp,
        progress=progress,
    )


def normalize_scores(raw: np.ndarray) -> np.ndarray:
    """Divide by the range (max − min) over the set, so scores lie in [-1, 1].

    A set whose raw scores are all equal (e.g. f and g the same encoder)
    scores 0 everywhere; a single point does too, with a warning, since its
    range is 0 by definition. NaN or inf is refused, never normalised away.
    """
    raw = np.asarray(raw, dtype=np.float64)
    if not np.isfinite(raw).all():
        bad = np.flatnonzero(~np.isfinite(raw))
        raise FloatingPointError(
            f"raw scores are NaN or inf at positions {bad[:10].tolist()}: scores are never "
            f"computed from NaN; check the encoders that produced them"
        )
    if raw.size == 1:
        warnings.warn(
            "one point scored: the range-normalised score is 0 by definition; compare raw scores, "
            "or score the points to compare in one call",
            stacklevel=2,
        )
    span = raw.max() - raw.min() if raw.size else 0.0
    return raw / span if span > 0 else np.zeros_like(raw)


def sslmem_from_alignment(af: np.ndarray, ag: np.ndarray, views: int, mode: str, ids=None) -> SSLMemResult:
    """An :class:`SSLMemResult` from per-encoder alignment losses of f's family ``af`` and g's ``ag``."""
    raw = ag.mean(0) - af.mean(0)
    return SSLMemResult(
        af.mean(0),
        ag.mean(0),
        raw,
        normalize_scores(raw),
        af,
        ag,
        views,
        mode,
        None if ids is None else np.asarray(ids),
    )


@accepts_options
def sslmem(
    f: nn.Module | Sequence[nn.Module],
    g: nn.Module | Sequence[nn.Module],
    images: torch.Tensor,
    augmentation: Augmentation,
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
    src = AugmentedViews(images, augmentation, views, seed, ids)
    return _sslmem(f, g, src, mode, batch_size, device, amp, progress, src.ids)


def sslmem_from_views(
    f: nn.Module | Sequence[nn.Module],
    g: nn.Module | Sequence[nn.Module],
    views: torch.Tensor,
    *,
    clean: torch.Tensor | None = None,
    mode: str = "pairwise",
    batch_size: int = 512,
    device: str | torch.device | None = None,
    amp: bool = False,
    progress: bool = False,
) -> SSLMemResult:
    """SSLMem of views you made yourself: ``views`` is (N, K, C, H, W), uint8 or float in [0, 1].

    For ``mode="clean"`` pass the clean images ``clean`` (N, C, H, W).
    :func:`~memlib.memorization.views.draw_views` gives the views
    :func:`sslmem` would draw. Other parameters as in :func:`alignment_loss`.

    Examples
    --------
    >>> v = torch.stack([my_views(x) for x in images])  # (N, K, 1, 28, 28)  # doctest: +SKIP
    >>> sslmem_from_views(f, g, v).score  # doctest: +SKIP
    """
    return _sslmem(f, g, FixedViews(views, clean), mode, batch_size, device, amp, progress, None)


def _sslmem(f, g, source: ViewSource, mode, batch_size, device, amp, progress, ids) -> SSLMemResult:
    fs, gs = as_list(f), as_list(g)
    a = source_alignment(
        fs + gs,
        source,
        mode=mode,
        batch_size=batch_size,
        device=device,
        amp=amp,
        progress=progress,
        names=family_names(fs, gs),
    )
    return sslmem_from_alignment(a[: len(fs)], a[len(fs) :], source.views, mode, ids)
