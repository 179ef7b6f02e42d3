"""Where are the top UnitMem units? Layer enrichment relative to layer size.

"Most of the top-10 % units are in layer L" means little by itself when L
holds most of the units: a layer with a share s of all units holds, by chance,
a share s of any set of units picked without regard to layer. Two views:

**Pooled** (``within_layer=False``): pick the top ``top`` fraction of units
across all layers together (k = round(top · units), at least 1). Per layer:
its share of those k units, the share expected by chance (its share of all
units) and their ratio, the *enrichment* (1 = as many top units as its size
predicts; 2 = twice as many). Units tied at the cut share the remaining
places equally (fractional counts), so ties never favour a layer by its
position. ``p`` is the one-sided hypergeometric probability of at least the
layer's (rounded) count of top units if the k top units fell on units at
random (Fisher's exact test of enrichment).

**Within layer** (``within_layer=True``): pick each layer's own top ``top``
fraction (k_l = round(top · units_l), at least 1) and report their mean
UnitMem, ``top_mean``. The reference, ``expected_top_mean``, is the expected
mean of the top k_l of units_l units drawn at random, without replacement,
from all layers pooled: what a layer of that size would show if its units
were no different from the rest. It is computed exactly (order statistics of
a hypergeometric draw), so it accounts for the top of a small layer being a
noisier, lower maximum than that of a large one. ``enrichment`` is the
ratio: 1 when the layer's best units are as good as chance predicts, above 1
when they are better. UnitMem is at most 1, so these ratios are compressed
(a layer whose top units all score 1 against a reference of 0.5 gives 2);
``difference`` reports ``top_mean − expected_top_mean`` as well.
"""

from __future__ import annotations

from typing import Mapping

import numpy as np
import pandas as pd
from scipy.stats import hypergeom


def _check(unitmem_by_layer: Mapping[str, np.ndarray], top: float) -> dict[str, np.ndarray]:
    if not isinstance(unitmem_by_layer, Mapping) or not unitmem_by_layer:
        raise ValueError(
            "unitmem_by_layer must be a non-empty dict layer → UnitMem of its units, e.g. UnitMemResult.unitmem"
        )
    if isinstance(top, bool) or not isinstance(top, (int, float)) or not 0 < top < 1:
        raise ValueError(f"top={top!r} must be a fraction in (0, 1), e.g. 0.1 for the top 10 % of units")
    out = {}
    for name, v in unitmem_by_layer.items():
        a = np.asarray(v, dtype=np.float64)
        if a.ndim != 1 or a.size == 0:
            raise ValueError(f"unitmem_by_layer[{name!r}] must be a non-empty 1-D array of units, got shape {a.shape}")
        if not np.isfinite(a).all():
            raise ValueError(f"unitmem_by_layer[{name!r}] has non-finite values; drop or fix those units first")
        out[str(name)] = a
    return out


def _top_count(n: int, top: float) -> int:
    return max(1, int(round(top * n)))


def _pooled(layers: dict[str, np.ndarray], top: float) -> pd.DataFrame:
    allv = np.concatenate(list(layers.values()))
    total = allv.size
    k = _top_count(total, top)
    cut = np.sort(allv)[::-1][k - 1]  # the k-th largest value
    above = int((allv > cut).sum())
    tied = int((allv == cut).sum())
    weight = (k - above) / tied  # each unit tied at the cut counts this much
    rows = []
    for name, v in layers.items():
        count = float((v > cut).sum() + weight * (v == cut).sum())
        share, expected = count / k, v.size / total
        rows.append(
            {
                "layer": name,
                "units": v.size,
                "top_units": count,
                "share": share,
                "expected_share": expected,
                "enrichment": share / expected,
                "p": float(hypergeom.sf(int(round(count)) - 1, total, v.size, k)),
            }
        )
    return pd.DataFrame(rows)


def _expected_top_mean(pool_desc: np.ndarray, n: int, k: int) -> float:
    """E[mean of the top k of n values drawn without replacement from ``pool_desc`` (sorted descending)]."""
    m = pool_desc.size
    j = np.arange(m)  # value j has j larger (or earlier-tied) values before it
    # P(value j drawn and fewer than k of the j before it drawn) = n/m · P(Hypergeom(m−1, j, n−1) ≤ k−1)
    p = n / m * hypergeom.cdf(k - 1, m - 1, j, n - 1)
    return float((pool_desc * p).sum() / k)


def _within(layers: dict[str, np.ndarray], top: float) -> pd.DataFrame:
    pool = np.sort(np.concatenate(list(layers.values())))[::-1]
    rows = []
    for name, v in layers.items():
        k = _top_count(v.size, top)
        top_mean = float(np.sort(v)[::-1][:k].mean())
        expected = _expected_top_mean(pool, v.size, k)
        rows.append(
            {
                "layer": name,
                "units": v.size,
                "top_units": k,
                "top_mean": top_mean,
                "expected_top_mean": expected,
                "difference": top_mean - expected,
                "enrichment": top_mean / expected if expected > 0 else float("nan"),
            }
        )
    return pd.DataFrame(rows)


def layer_enrichment(
    unitmem_by_layer: Mapping[str, np.ndarray], top: float = 0.1, within_layer: bool = False
) -> pd.DataFrame:
    """Per layer, whether it holds more top UnitMem units than its size predicts (module docstring).

    Parameters
    ----------
    unitmem_by_layer
        Layer name → UnitMem of each of its units (1-D), e.g.
        :attr:`~memlib.memorization.unitmem.UnitMemResult.unitmem`.
    top
        Fraction of units counted as "top", in (0, 1).
    within_layer
        False (default): top units chosen across all layers pooled. True: each
        layer's own top fraction, compared with a random layer of the same size.

    Returns
    -------
    pandas.DataFrame
        One row per layer, in the order given. Pooled: ``layer``, ``units``,
        ``top_units`` (ties split fractionally), ``share`` (of all top units),
        ``expected_share`` (the layer's share of all units), ``enrichment`` =
        share / expected_share, ``p`` (one-sided hypergeometric). Within layer:
        ``layer``, ``units``, ``top_units``, ``top_mean``, ``expected_top_mean``,
        ``difference``, ``enrichment`` = top_mean / expected_top_mean.

    Examples
    --------
    >>> layer_enrichment(unitmem(encoder, images, aug).unitmem, top=0.1)  # doctest: +SKIP
    """
    layers = _check(unitmem_by_layer, top)
    return _within(layers, top) if within_layer else _pooled(layers, top)
