"""Statistics for memorisation scores: one-sided t-tests with effect sizes,
rank agreement (Kendall's τ, overlap@k) and multiple-testing corrections.

Thin wrappers over scipy.stats and statsmodels that return plain dicts /
DataFrames ready for tables and glue.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy import stats as st
from statsmodels.stats.multitest import multipletests


def cohens_d(a, b) -> float:
    """Cohen's d of ``mean(a) − mean(b)`` with the pooled standard deviation."""
    a, b = np.asarray(a, float), np.asarray(b, float)
    na, nb = len(a), len(b)
    pooled = np.sqrt(((na - 1) * a.var(ddof=1) + (nb - 1) * b.var(ddof=1)) / (na + nb - 2))
    return float((a.mean() - b.mean()) / pooled) if pooled > 0 else float("nan")


def ttest_greater(a, b) -> dict:
    """One-sided Welch t-test of H0: mean(a) ≤ mean(b) (alternative: a > b)."""
    r = st.ttest_ind(a, b, equal_var=False, alternative="greater")
    return {
        "t": float(r.statistic),
        "p": float(r.pvalue),
        "df": float(r.df),
        "cohens_d": cohens_d(a, b),
        "mean_a": float(np.mean(a)),
        "mean_b": float(np.mean(b)),
    }


def ttest_vs_zero(a, alternative: str) -> dict:
    """One-sample t-test against 0; ``alternative`` is ``"greater"`` or ``"less"``."""
    a = np.asarray(a, float)
    r = st.ttest_1samp(a, 0.0, alternative=alternative)
    sd = a.std(ddof=1)
    return {
        "t": float(r.statistic),
        "p": float(r.pvalue),
        "df": float(r.df),
        "cohens_d": float(a.mean() / sd) if sd > 0 else float("nan"),
        "mean_a": float(a.mean()),
        "mean_b": 0.0,
    }


#: The hypotheses of the SSLMem paper's Table 2 (two-sample) and Table 16 (vs 0),
#: plus S_C vs S_I, each as (null hypothesis text, a, b or None, alternative).
SSLMEM_HYPOTHESES = (
    ("m(S_C) ≤ m(S_S)", "candidate", "shared", "greater"),
    ("m(S_C) ≤ m(S_E)", "candidate", "extra", "greater"),
    ("m(S_S) ≤ m(S_I)", "shared", "independent", "greater"),
    ("m(S_E) ≤ m(S_I)", "extra", "independent", "greater"),
    ("m(S_E) ≤ m(S_S)", "extra", "shared", "greater"),
    ("m(S_C) ≤ m(S_I)", "candidate", "independent", "greater"),  # not in the paper: the most direct check
    ("m(S_C) ≤ 0", "candidate", None, "greater"),
    ("m(S_I) ≥ 0", "independent", None, "less"),
    ("m(S_S) ≤ 0", "shared", None, "greater"),
    ("m(S_E) ≤ 0", "extra", None, "greater"),
)


def sslmem_tests(scores: dict[str, np.ndarray], alpha: float = 0.05) -> pd.DataFrame:
    """Run the paper's one-sided tests on per-subset scores.

    Parameters
    ----------
    scores
        Maps ``"candidate"``, ``"shared"``, ``"extra"``, ``"independent"`` to
        per-point scores.
    alpha
        Level for the ``reject`` column, after Holm's correction over all rows.

    Returns
    -------
    pandas.DataFrame
        One row per null hypothesis: t, p, Holm-adjusted p, Cohen's d, reject.
    """
    rows = []
    for h0, a, b, alt in SSLMEM_HYPOTHESES:
        r = ttest_greater(scores[a], scores[b]) if b is not None else ttest_vs_zero(scores[a], alt)
        rows.append({"null hypothesis": h0, **r})
    df = pd.DataFrame(rows)
    reject, p_adj, _, _ = multipletests(df["p"], alpha=alpha, method="holm")
    df["p_holm"], df["reject"] = p_adj, reject
    return df


def kendall_tau(a, b) -> dict:
    """Kendall's τ-b between two scorings of the same points, two-sided p from :func:`kendall_test`."""
    r = kendall_test(a, b, "two-sided")
    return {"tau": r["tau"], "p": r["p"]}


#: Below this many pairs a tied Kendall τ is tested on every permutation; above, on :data:`N_PERMUTATIONS` draws.
EXACT_PERMUTATION_MAX_N = 8
#: Random permutations of a Monte-Carlo permutation test (seeded, p = (1 + hits) / (1 + draws)).
N_PERMUTATIONS = 20_000
#: Above this many pairs, Kendall's τ uses scipy's asymptotic p-value (exact and permutation p agree there).
ASYMPTOTIC_MIN_N = 60


def _concordance(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Σ sign(xᵢ − xⱼ)·sign(yᵢ − yⱼ) over i < j, for each row of ``y`` (shape (B, n)): τ-b's numerator, whose
    denominator (tie counts) every permutation of ``y`` shares."""
    i, j = np.triu_indices(len(x), 1)
    sx = np.sign(x[i] - x[j])
    return (np.sign(y[:, i] - y[:, j]) * sx).sum(axis=1)


def kendall_test(x, y, alternative: str = "two-sided", *, seed: int = 0) -> dict:
    """Kendall's τ-b between ``x`` and ``y`` with a p-value that holds at small n.

    Without ties: scipy's exact null (``kendalltau(method="exact")``). With ties: a permutation test of the
    pairing (every permutation up to :data:`EXACT_PERMUTATION_MAX_N` pairs, else :data:`N_PERMUTATIONS` seeded
    draws). Above :data:`ASYMPTOTIC_MIN_N` pairs, scipy's asymptotic p. ``alternative``: ``"greater"``
    (τ > 0), ``"less"`` or ``"two-sided"``.

    Returns
    -------
    dict
        ``tau``, ``p``, ``n`` and ``method`` (``"exact"``, ``"permutation (all)"``, ``"permutation (k draws)"``
        or ``"asymptotic"``); τ NaN and p 1 when either variable is constant or n < 2.
    """
    x, y = np.asarray(x, np.float64), np.asarray(y, np.float64)
    if x.shape != y.shape or x.ndim != 1:
        raise ValueError(f"x {x.shape} and y {y.shape} must be 1-d and of one length")
    if alternative not in ("two-sided", "greater", "less"):
        raise ValueError(f"alternative={alternative!r} must be 'two-sided', 'greater' or 'less'")
    n = len(x)
    if n < 2 or not (np.ptp(x) > 0 and np.ptp(y) > 0):
        return {"tau": float("nan"), "p": 1.0, "n": n, "method": "undefined"}
    ties = len(np.unique(x)) < n or len(np.unique(y)) < n
    if n > ASYMPTOTIC_MIN_N:
        r = st.kendalltau(x, y, alternative=alternative)
        return {"tau": float(r.statistic), "p": float(r.pvalue), "n": n, "method": "asymptotic"}
    if not ties:
        r = st.kendalltau(x, y, alternative=alternative, method="exact")
        return {"tau": float(r.statistic), "p": float(min(1.0, r.pvalue)), "n": n, "method": "exact"}
    tau = float(st.kendalltau(x, y).statistic)
    s0 = _concordance(x, y[None])[0]
    if n <= EXACT_PERMUTATION_MAX_N:
        from itertools import permutations

        perms = np.array(list(permutations(range(n))))
        s = _concordance(x, y[perms])
        hits = {"greater": s >= s0 - 1e-9, "less": s <= s0 + 1e-9, "two-sided": np.abs(s) >= abs(s0) - 1e-9}
        p = float(hits[alternative].mean())
        method = "permutation (all)"
    else:
        rng = np.random.default_rng(seed)
        perms = np.argsort(rng.random((N_PERMUTATIONS, n)), axis=1)
        s = _concordance(x, y[perms])
        hits = {"greater": s >= s0 - 1e-9, "less": s <= s0 + 1e-9, "two-sided": np.abs(s) >= abs(s0) - 1e-9}
        p = float((1 + hits[alternative].sum()) / (1 + N_PERMUTATIONS))
        method = f"permutation ({N_PERMUTATIONS} draws)"
    return {"tau": tau, "p": p, "n": n, "method": method}


def kendall_floor(x, alternative: str = "greater") -> float:
    """The smallest one-sided p :func:`kendall_test` can give for ``x`` (with its ties) against any ``y``: the p of
    a perfect order. A claim whose floor exceeds its corrected level cannot be decided at this n."""
    x = np.asarray(x, np.float64)
    y = x if alternative == "greater" else -x
    y = y + np.arange(len(y)) * 1e-12 * (np.ptp(y) or 1.0)  # break ties in y only (x keeps its own)
    return kendall_test(x, y, alternative)["p"]


def sign_test(x, alternative: str = "greater", mu: float = 0.0) -> float:
    """Exact sign test (scipy ``binomtest``) of the median of ``x`` against ``mu``; values equal to ``mu`` are
    dropped, and p is 1 when none is left. ``alternative``: ``"greater"``, ``"less"`` or ``"two-sided"``."""
    d = np.asarray(x, np.float64) - mu
    pos, k = int((d > 0).sum()), int((d != 0).sum())
    if not k:
        return 1.0
    return float(st.binomtest(pos, k, 0.5, alternative=alternative).pvalue)


def null_distribution(statistic, draw, *, draws: int = 2000, seed: int = 0) -> np.ndarray:
    """``draws`` values of ``statistic(draw(rng))`` under a null: the reference a threshold is declared from at
    the run's own n (e.g. the span of a random top tenth of the same candidates)."""
    rng = np.random.default_rng(seed)
    return np.array([statistic(draw(rng)) for _ in range(draws)], dtype=np.float64)


def overlap_at_k(a, b, k: int) -> float:
    """Fraction of the top-k points of scoring ``a`` that are in the top-k of ``b``."""
    a, b = np.asarray(a), np.asarray(b)
    if not 1 <= k <= len(a):
        raise ValueError(f"k={k} must lie in [1, {len(a)}]")
    ta, tb = np.argsort(-a, kind="stable")[:k], np.argsort(-b, kind="stable")[:k]
    return len(np.intersect1d(ta, tb)) / k


def mean_ci(x, confidence: float = 0.95) -> tuple[float, float, float]:
    """Mean and its t-based confidence interval."""
    x = np.asarray(x, float)
    m, se = x.mean(), st.sem(x) if len(x) > 1 else float("nan")
    h = se * st.t.ppf((1 + confidence) / 2, len(x) - 1) if len(x) > 1 else float("nan")
    return float(m), float(m - h), float(m + h)


def fraction_above(scores, thresholds) -> np.ndarray:
    """Fraction of ``scores`` strictly above each threshold (the paper's Fig. 5)."""
    s = np.sort(np.asarray(scores, float))
    t = np.asarray(thresholds, float)
    return 1.0 - np.searchsorted(s, t, side="right") / len(s)


def holm(p) -> list[float]:
    """Holm-adjusted p-values of a family of tests (statsmodels ``multipletests``); empty in, empty out."""
    p = list(p)
    return list(multipletests(p, method="holm")[1]) if p else []


def significant_points(scores, null, alpha: float = 0.05, method: str = "fdr_bh") -> pd.DataFrame:
    """Which points score significantly above a null distribution, after a multiple-testing correction.

    Each point's one-sided empirical p-value is ``(1 + #{null ≥ score}) /
    (1 + len(null))`` (never 0, valid for exchangeable draws); the p-values
    are then corrected with statsmodels' ``multipletests`` (default
    Benjamini–Hochberg false-discovery rate). For SSLMem the null is the
    shared points S_S, which both f and g saw.

    Parameters
    ----------
    scores
        Scores of the points to test, shape (N,).
    null
        Scores drawn under the null hypothesis (no memorisation), shape (M,).
    alpha
        Level of the corrected test.
    method
        Any ``multipletests`` method (``"fdr_bh"``, ``"holm"``, ``"bonferroni"``, ...).

    Returns
    -------
    pandas.DataFrame
        One row per point: ``score``, ``p``, ``q`` (corrected) and ``significant``.
    """
    scores, null = np.asarray(scores, float), np.sort(np.asarray(null, float))
    if null.size == 0 or scores.size == 0:
        raise ValueError(f"scores ({scores.size}) and null ({null.size}) must both be non-empty")
    if not 0 < alpha < 1:
        raise ValueError(f"alpha={alpha!r} must lie in (0, 1)")
    n_ge = null.size - np.searchsorted(null, scores, side="left")
    p = (1 + n_ge) / (1 + null.size)
    reject, q, _, _ = multipletests(p, alpha=alpha, method=method)
    return pd.DataFrame({"score": scores, "p": p, "q": q, "significant": reject})


def point_intervals(
    align_f_models, align_g_models, confidence: float = 0.95, n_boot: int = 2000, seed: int = 0
) -> pd.DataFrame:
    """Per-point confidence interval of the raw SSLMem score from the spread over encoder seeds.

    The score is ``mean_g(align) − mean_f(align)``; its interval is a
    percentile bootstrap that resamples f's and g's encoders (with
    replacement, each family on its own), so it shows how much the score of a
    point depends on which encoders were drawn. The views are fixed (the same
    views score every encoder). The paper gives no per-point uncertainty.

    Parameters
    ----------
    align_f_models, align_g_models
        Alignment loss per encoder and point, shapes (n_f, N) and (n_g, N), as in
        :class:`~memlib.memorization.sslmem.SSLMemResult`; each family needs ≥ 2 encoders.

    Returns
    -------
    pandas.DataFrame
        One row per point: ``raw``, ``low``, ``high`` and ``above_zero`` (``low > 0``).
    """
    af, ag = np.asarray(align_f_models, float), np.asarray(align_g_models, float)
    if af.ndim != 2 or ag.ndim != 2 or af.shape[1] != ag.shape[1]:
        raise ValueError(
            f"align_f_models {af.shape} and align_g_models {ag.shape} must be (n_models, N) with the same N"
        )
    if min(len(af), len(ag)) < 2:
        raise ValueError(
            f"point_intervals needs ≥ 2 encoders per family (got {len(af)} f and {len(ag)} g); "
            "train more with models_per_family"
        )
    rng = np.random.default_rng(seed)
    fi = rng.integers(0, len(af), (n_boot, len(af)))
    gi = rng.integers(0, len(ag), (n_boot, len(ag)))
    boot = ag[gi].mean(1) - af[fi].mean(1)  # (n_boot, N)
    a = (1 - confidence) / 2
    low, high = np.quantile(boot, [a, 1 - a], axis=0)
    raw = ag.mean(0) - af.mean(0)
    return pd.DataFrame({"raw": raw, "low": low, "high": high, "above_zero": low > 0})


def largest_step(scores, n_thresholds: int = 50) -> float:
    """Largest drop of the fraction above a threshold between neighbouring thresholds (Fig. 5).

    Thresholds are ``n_thresholds`` evenly spaced points over the scores'
    range; a small largest drop means the fraction falls smoothly (no cluster
    of points sharing one score level).
    """
    s = np.asarray(scores, float)
    if np.ptp(s) == 0:  # one score level: all points leave at one threshold
        return 1.0
    t = np.linspace(s.min(), s.max(), n_thresholds)
    return float(-np.diff(fraction_above(s, t)).min())


def split_half_reliability(per_pair, seed: int = 0) -> float:
    """Test–retest reliability of a per-point ranking: Spearman ρ between two disjoint halves of the pairs.

    ``per_pair`` is (pairs, points): each encoder pair's score of every point.
    The pairs are split at random into two halves (seeded), each half's mean
    score per point is taken, and the rank correlation of the two is returned.
    A ranking that training noise alone produced gives ρ near 0.
    """
    x = np.asarray(per_pair, dtype=np.float64)
    if x.ndim != 2 or x.shape[0] < 2:
        raise ValueError(f"per_pair must be (pairs ≥ 2, points), got shape {x.shape}: one pair has no second half")
    order = np.random.default_rng(seed).permutation(x.shape[0])
    a, b = x[order[: x.shape[0] // 2]].mean(0), x[order[x.shape[0] // 2 :]].mean(0)
    return float(st.spearmanr(a, b).statistic)
