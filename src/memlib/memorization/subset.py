"""SSLMem from random-subset encoders (the in/out design of Feldman & Zhang 2020 and LiRA, Carlini et al. 2022).

A pool of N points and M encoders; encoder i trains on the points with
``inclusion[i, j]`` true. With a balanced design (:func:`balanced_inclusion`:
every encoder sees N/2 points, every point is seen by M/2 encoders) every
encoder informs every point, and an encoder's global alignment level (its
seed's offset) falls on "in" and "out" points equally often.

For point j, with ``y[i, j]`` encoder i's alignment loss on it (paper eq. 1):

- ``raw[j]``: mean of y over the encoders that did not train on j minus the mean over those that did
  (the paper's eq. 2 with f = "in", g = "out");
- ``score[j]``: the same after removing each encoder's offset, by least squares on the additive model
  ``y[i, j] = a[i] + b[j] − score[j] · inclusion[i, j]`` (a: encoder offset, b: point difficulty);
- ``se[j]``: its standard error from the spread over encoders (Welch: in and out variances of the
  offset-free alignments);
- ``normalised[j]``: ``score`` divided by its range over the pool (the paper's normalisation).

Per encoder, ``encoder_memorization[i]`` is encoder i's own in-versus-out contrast after point effects are
removed (each point's mean alignment over the *other* encoders), rescaled by (M−1)/M so that it estimates
the mean memorisation of a point: the encoder is then the unit of replication, with no family offset.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np
import torch
from torch import nn

from ..data.augment import Augmentation
from .options import ScoringOptions, accepts_options
from .sslmem import alignment_loss, normalize_scores


@dataclass
class SubsetSSLMemResult:
    """Per-point and per-encoder SSLMem of a random-subset design (see the module docstring).

    Attributes
    ----------
    raw, score, se, normalised
        Per point, shape (N,).
    encoder_offset
        Each encoder's fitted offset ``a`` (mean zero), shape (M,).
    encoder_memorization
        Each encoder's in-versus-out contrast after point effects, shape (M,).
    alignment
        The alignment losses ``y``, shape (M, N).
    inclusion
        The design, bool, shape (M, N).
    ids
        The point ids the views were drawn from (``None``: given alignments).
    """

    raw: np.ndarray
    score: np.ndarray
    se: np.ndarray
    normalised: np.ndarray
    encoder_offset: np.ndarray
    encoder_memorization: np.ndarray
    alignment: np.ndarray
    inclusion: np.ndarray
    ids: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.score)

    def table(self):
        """One row per point: id, score, se, rank (1 = most memorised), raw, normalised, encoders in and out."""
        import pandas as pd

        order = (-self.score).argsort(kind="stable")
        rank = np.empty(len(order), dtype=np.int64)
        rank[order] = np.arange(1, len(order) + 1)
        return pd.DataFrame(
            {
                "id": self.ids if self.ids is not None else np.arange(len(self)),
                "score": self.score,
                "se": self.se,
                "rank": rank,
                "raw": self.raw,
                "normalised": self.normalised,
                "n_in": self.inclusion.sum(0),
                "n_out": (~self.inclusion).sum(0),
            }
        )


def check_inclusion(inclusion, n_points: int | None = None, *, min_encoders: int = 4) -> np.ndarray:
    """``inclusion`` as a bool (M, N) array, refusing what no estimate can use: fewer than ``min_encoders``
    encoders, a shape that does not match ``n_points``, values other than 0/1, and points or encoders without
    at least one "in" and one "out" (a point needs two of each for its standard error)."""
    inc = np.asarray(inclusion)
    if inc.ndim != 2:
        raise ValueError(f"inclusion has shape {inc.shape}; it must be (encoders, points), True where trained on")
    if inc.dtype != bool:
        if not np.isin(inc, (0, 1)).all():
            raise ValueError("inclusion must hold booleans (or 0/1): True where encoder i trained on point j")
        inc = inc.astype(bool)
    m, n = inc.shape
    if m < min_encoders:
        raise ValueError(f"inclusion has {m} encoders; the in/out design needs at least {min_encoders} (M ≥ 4)")
    if n_points is not None and n != n_points:
        raise ValueError(f"inclusion has {n} columns but {n_points} points were given; one column per point")
    n_in = inc.sum(0)
    bad = np.flatnonzero((n_in < 2) | (m - n_in < 2))
    if len(bad):
        raise ValueError(
            f"{len(bad)} points (positions {bad[:10].tolist()}) are trained on by {n_in[bad[:10]].tolist()} of {m} "
            f"encoders; every point needs at least 2 encoders in and 2 out (draw the design with "
            f"balanced_inclusion, or drop those points)"
        )
    rows = inc.sum(1)
    bad = np.flatnonzero((rows == 0) | (rows == n))
    if len(bad):
        raise ValueError(f"encoders {bad.tolist()} trained on all or none of the points; each needs in and out points")
    return inc


def balanced_inclusion(n_points: int, n_encoders: int, seed: int = 0, *, block: int | None = 4) -> np.ndarray:
    """A random balanced design: bool (n_encoders, n_points), each encoder in on exactly n_points/2 points and
    each point in for exactly n_encoders/2 encoders, drawn from ``seed``.

    With ``block`` (default 4) the design is balanced within every ``block`` consecutive encoders, so any union
    of blocks (e.g. two halves for a split-half reliability, or the first k blocks of a growing study) is
    itself balanced. ``block=None`` balances only the whole.
    """
    if n_points < 2 or n_points % 2:
        raise ValueError(f"n_points={n_points} must be even and ≥ 2: each encoder trains on exactly half the pool")
    if n_encoders < 4 or n_encoders % 2:
        raise ValueError(f"n_encoders={n_encoders} must be even and ≥ 4: each point is in for exactly half")
    size = n_encoders if block is None else block
    if size < 2 or size % 2 or n_encoders % size:
        raise ValueError(f"block={block} must be even and divide n_encoders={n_encoders}")
    rng = np.random.default_rng(seed)
    return np.concatenate([_balanced_block(n_points, size, rng) for _ in range(n_encoders // size)])


def _balanced_block(n: int, m: int, rng: np.random.Generator) -> np.ndarray:
    """Greedy fill (each point to the m/2 encoders with most places left, ties at random), then random 2×2
    swaps, which keep every row and column sum."""
    inc = np.zeros((m, n), dtype=bool)
    left = np.full(m, n // 2)
    for j in rng.permutation(n):
        pick = np.lexsort((rng.random(m), -left))[: m // 2]
        inc[pick, j] = True
        left[pick] -= 1
    for _ in range(20 * m * n):
        i1, i2 = rng.choice(m, 2, replace=False)
        j1, j2 = rng.choice(n, 2, replace=False)
        if inc[i1, j1] and inc[i2, j2] and not inc[i1, j2] and not inc[i2, j1]:
            inc[i1, j1] = inc[i2, j2] = False
            inc[i1, j2] = inc[i2, j1] = True
    return inc


def subset_sslmem_from_alignment(alignment, inclusion, ids=None, *, tol: float = 1e-12) -> SubsetSSLMemResult:
    """:class:`SubsetSSLMemResult` from per-encoder alignment losses ``alignment`` (M, N) and the design."""
    y = np.asarray(alignment, dtype=np.float64)
    inc = check_inclusion(inclusion, y.shape[1] if y.ndim == 2 else None)
    if y.shape != inc.shape:
        raise ValueError(f"alignment has shape {y.shape}, inclusion {inc.shape}; both must be (encoders, points)")
    if not np.isfinite(y).all():
        raise FloatingPointError("alignment holds NaN or inf; scores are never computed from NaN")
    m, _ = y.shape
    out = ~inc
    n_in, n_out = inc.sum(0), out.sum(0)

    def contrast(z):  # mean over "out" minus mean over "in", per point
        return (z * out).sum(0) / n_out - (z * inc).sum(0) / n_in

    raw = contrast(y)
    # Least squares on y = a_i + b_j − s_j·in_ij by alternating exact updates (each lowers the loss).
    a = np.zeros(m)
    for _ in range(1000):
        z = y - a[:, None]
        s = contrast(z)
        b = (z * out).sum(0) / n_out
        a_new = (y - b[None, :] + s[None, :] * inc).mean(1)
        a_new -= a_new.mean()
        done = np.max(np.abs(a_new - a)) < tol
        a = a_new
        if done:
            break
    z = y - a[:, None]
    score = contrast(z)
    var_in = ((z - (z * inc).sum(0) / n_in) ** 2 * inc).sum(0) / (n_in - 1)
    var_out = ((z - (z * out).sum(0) / n_out) ** 2 * out).sum(0) / (n_out - 1)
    se = np.sqrt(var_in / n_in + var_out / n_out)
    # Per encoder: its own contrast against each point's mean over the other encoders.
    loo = (y.sum(0)[None, :] - y) / (m - 1)
    r = y - loo
    enc = ((r * out).sum(1) / out.sum(1) - (r * inc).sum(1) / inc.sum(1)) * (m - 1) / m
    return SubsetSSLMemResult(
        raw, score, se, normalize_scores(score), a, enc, y, inc, None if ids is None else np.asarray(ids)
    )


@accepts_options
def subset_sslmem(
    encoders: Sequence[nn.Module],
    inclusion,
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
) -> SubsetSSLMemResult:
    """SSLMem of ``images`` from encoders trained on random subsets of them.

    ``inclusion[i, j]`` is True where ``encoders[i]`` trained on ``images[j]``
    (:func:`balanced_inclusion` draws a balanced design). Every encoder sees
    the same views, keyed by ``(seed, ids[j], k)`` as in
    :func:`~memlib.memorization.sslmem.sslmem`; other parameters (and ``options=``, a
    :class:`~memlib.memorization.options.ScoringOptions`) as there.

    Examples
    --------
    >>> inc = balanced_inclusion(len(pool), 24, seed=0)  # train encoder i on pool[inc[i]]  # doctest: +SKIP
    >>> res = subset_sslmem(encoders, inc, pool_images, SimCLRAugment(size=28), ids=pool_ids)  # doctest: +SKIP
    >>> res.table().sort_values("rank").head(10)  # the ten most memorised, with standard errors  # doctest: +SKIP
    """
    encoders = list(encoders)
    inc = check_inclusion(inclusion, len(images))
    if inc.shape[0] != len(encoders):
        raise ValueError(f"inclusion has {inc.shape[0]} rows but {len(encoders)} encoders were given; one row each")
    y = alignment_loss(
        encoders,
        images,
        augmentation,
        views=views,
        mode=mode,
        ids=ids,
        batch_size=batch_size,
        seed=seed,
        device=device,
        amp=amp,
        progress=progress,
    )
    return subset_sslmem_from_alignment(y, inc, ids if ids is not None else np.arange(len(images)))
