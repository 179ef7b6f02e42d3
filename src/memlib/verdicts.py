"""One symmetric verdict rule for every claim, and the encoder-level tests that feed it.

The rule (:func:`verdict_rule`), written once here:

- **reproduced**: the pre-declared test is significant in the claimed
  direction (after the chapter's multiple-testing correction);
- **not reproduced**: it is significant in the opposite direction, or an
  equivalence test (TOST, margin declared beforehand) shows the effect is
  smaller than the margin, or the run had at least 80 % power for the
  paper's effect and found none;
- **inconclusive**: anything else, and always when the test has fewer than
  two units of replication (one encoder pair carries no estimate of the
  training noise, whatever its p-value).

"≈" claims (an effect that should be absent) use :func:`equivalence_rule`:
reproduced when TOST shows the effect inside the margin, not reproduced when
it is significantly different from 0, inconclusive otherwise.

The unit of replication is the encoder pair (and the split): points and
units enter through per-pair means (:func:`mean_effect`) or through a mixed
model with the pair as group (:func:`mixed_effect`), never as replicates.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import stats as st

REPRODUCED, NOT_REPRODUCED, INCONCLUSIVE = "reproduced", "not reproduced", "inconclusive"
#: Power above which a null result counts against the claim.
MIN_POWER = 0.8
#: The split-half Spearman ρ below which a ranking of points is unreliable, so that a claim resting on it is
#: inconclusive (declared before any run; chapter 01 measures it).
MIN_RELIABILITY = 0.5


@dataclass(frozen=True)
class Verdict:
    """A verdict and the numbers behind it (``None``: not computed)."""

    status: str
    reason: str
    n: int
    estimate: float | None = None
    p: float | None = None
    p_opposite: float | None = None
    p_equivalent: float | None = None
    power: float | None = None


def verdict_rule(
    *,
    n: int,
    p: float,
    p_opposite: float,
    p_equivalent: float | None = None,
    power: float | None = None,
    alpha: float = 0.05,
    estimate: float | None = None,
) -> Verdict:
    """The verdict from a claim's one-sided p-values (see the module docstring).

    Parameters
    ----------
    n
        Units of replication of the test (encoder pairs × splits).
    p, p_opposite
        One-sided p-values in the claimed and in the opposite direction (corrected).
    p_equivalent
        TOST p-value for "the effect lies within the declared margin", if computed.
    power
        The test's power for the paper's effect at this n, if known.
    """
    args = dict(n=n, estimate=estimate, p=p, p_opposite=p_opposite, p_equivalent=p_equivalent, power=power)
    if n < 2:
        return Verdict(INCONCLUSIVE, f"n = {n}: one unit carries no estimate of training noise", **args)
    if p < alpha:
        return Verdict(REPRODUCED, f"significant in the claimed direction (p = {p:.2g})", **args)
    if p_opposite < alpha:
        return Verdict(NOT_REPRODUCED, f"significant in the opposite direction (p = {p_opposite:.2g})", **args)
    if p_equivalent is not None and p_equivalent < alpha:
        return Verdict(
            NOT_REPRODUCED, f"equivalent to no effect within the margin (TOST p = {p_equivalent:.2g})", **args
        )
    if power is not None and power >= MIN_POWER:
        return Verdict(NOT_REPRODUCED, f"no effect found with power {power:.0%} for the paper's effect", **args)
    why = f"p = {p:.2g}" + ("" if power is None else f", power {power:.0%} for the paper's effect")
    return Verdict(INCONCLUSIVE, f"neither direction significant ({why})", **args)


def equivalence_rule(
    *, n: int, p_equivalent: float, p_different: float, alpha: float = 0.05, estimate: float | None = None
) -> Verdict:
    """The verdict on a "≈" claim: reproduced by TOST, refuted by a significant two-sided difference."""
    args = dict(n=n, estimate=estimate, p=p_equivalent, p_opposite=p_different, p_equivalent=p_equivalent)
    if n < 2:
        return Verdict(INCONCLUSIVE, f"n = {n}: one unit carries no estimate of training noise", **args)
    if p_equivalent < alpha:
        return Verdict(REPRODUCED, f"equivalent within the margin (TOST p = {p_equivalent:.2g})", **args)
    if p_different < alpha:
        return Verdict(NOT_REPRODUCED, f"significantly different from 0 (p = {p_different:.2g})", **args)
    return Verdict(INCONCLUSIVE, f"neither equivalent nor different (TOST p = {p_equivalent:.2g})", **args)


def mean_effect(
    per_unit, *, direction: int = 1, margin: float | None = None, paper_effect: float | None = None, alpha: float = 0.05
) -> Verdict:
    """Verdict on "the effect has the sign ``direction``" from one value per unit of replication.

    One-sample t-tests on ``per_unit`` (e.g. each encoder pair's mean S_C − S_S
    difference) in both directions; TOST against ``±margin`` if given; power
    of the one-sided test for ``paper_effect`` (in the units of ``per_unit``)
    at the observed spread, if given. Units that all hold the same value (a
    discrete statistic, e.g. a count-based enrichment) leave the t-test
    undefined; the exact sign test then gives the p-values (0.5ⁿ in the
    direction every unit points, 1 in the other).
    """
    x = np.asarray(per_unit, dtype=np.float64) * np.sign(direction)
    n = len(x)
    est = float(x.mean()) * np.sign(direction) if n else float("nan")
    if n < 2 or not np.ptp(x) > 0:
        p, p_opp = 1.0, 1.0
        if n and x[0] != 0:
            pos = int((x > 0).sum())
            p, p_opp = (float(st.binomtest(pos, n, 0.5, alternative=a).pvalue) for a in ("greater", "less"))
        return verdict_rule(n=n, p=p, p_opposite=p_opp, alpha=alpha, estimate=est)
    p = float(st.ttest_1samp(x, 0.0, alternative="greater").pvalue)
    p_opp = float(st.ttest_1samp(x, 0.0, alternative="less").pvalue)
    p_eq = tost(x, margin) if margin is not None else None
    power = None
    if paper_effect is not None:
        from statsmodels.stats.power import TTestPower

        power = float(
            TTestPower().power(effect_size=abs(paper_effect) / x.std(ddof=1), nobs=n, alpha=alpha, alternative="larger")
        )
    return verdict_rule(n=n, p=p, p_opposite=p_opp, p_equivalent=p_eq, power=power, alpha=alpha, estimate=est)


def tost(x, margin: float) -> float:
    """Two one-sided tests p-value for "the mean of ``x`` lies in (−margin, margin)" (larger of the two)."""
    if not margin > 0:
        raise ValueError(f"margin={margin!r} must be > 0 (declared before the run)")
    x = np.asarray(x, dtype=np.float64)
    lower = st.ttest_1samp(x, -margin, alternative="greater").pvalue
    upper = st.ttest_1samp(x, margin, alternative="less").pvalue
    return float(max(lower, upper))


def mixed_effect(values, subset, group, *, effect: str, baseline: str) -> dict:
    """The difference ``effect`` − ``baseline`` between point subsets, with the encoder pair as random effect.

    A linear mixed model (statsmodels ``MixedLM``): value ~ subset, with a
    random intercept per ``group`` (encoder pair / split). Points are nested
    in pairs, so a shift shared by all points of a pair (training noise) goes
    into the pair's intercept instead of counting as evidence.

    Returns
    -------
    dict
        ``estimate``, ``se``, ``p`` (two-sided Wald), ``n_groups`` and ``n_points``.
    """
    import statsmodels.formula.api as smf

    df = pd.DataFrame(
        {"value": np.asarray(values, dtype=np.float64), "subset": np.asarray(subset), "group": np.asarray(group)}
    )
    df = df[df.subset.isin([effect, baseline])].copy()
    df["is_effect"] = (df.subset == effect).astype(float)
    # Fitted in units of the values' spread: scores of ~1e-2 would put variances near the optimiser's tolerance.
    scale = float(df.value.std()) or 1.0
    df["value"] = df.value / scale
    import warnings

    with warnings.catch_warnings():  # a pair variance at its boundary (0) is a valid fit, reported as such
        warnings.simplefilter("ignore")
        fit = smf.mixedlm("value ~ is_effect", df, groups=df["group"]).fit(reml=True)
    return {
        "estimate": float(fit.params["is_effect"]) * scale,
        "se": float(fit.bse["is_effect"]) * scale,
        "p": float(fit.pvalues["is_effect"]),
        "n_groups": int(df.group.nunique()),
        "n_points": len(df),
    }


def parts_status(statuses: list[str]) -> str:
    """The verdict on a claim whose parts are declared in its definition (e.g. "for every method"), from the
    parts' verdicts: reproduced when all are, "partly reproduced (k of m parts)" when some are, not
    reproduced when none is and at least one is refuted, inconclusive otherwise."""
    if not statuses:
        raise ValueError("statuses is empty: a claim needs at least one part")
    k, m = sum(s == REPRODUCED for s in statuses), len(statuses)
    if k == m:
        return REPRODUCED
    if k:
        return f"partly reproduced ({k} of {m} parts)"
    return NOT_REPRODUCED if NOT_REPRODUCED in statuses else INCONCLUSIVE


def one_sided_pair(x, *, direction: int = 1) -> tuple[float, float]:
    """One-sided one-sample t-test p-values of ``x`` against 0 in the claimed ``direction`` and the opposite one
    (1.0, 1.0 when ``x`` has fewer than two values or no spread)."""
    x = np.asarray(x, dtype=np.float64) * np.sign(direction)
    if len(x) < 2 or not np.ptp(x) > 0:
        return 1.0, 1.0
    return (
        float(st.ttest_1samp(x, 0.0, alternative="greater").pvalue),
        float(st.ttest_1samp(x, 0.0, alternative="less").pvalue),
    )


def preset_status(preset, status: str) -> str:
    """A verdict labelled with the preset it ran at; a preset that is not ``meaningful`` decides nothing."""
    if not preset.meaningful:
        return f"not reproduced yet ({preset.name} run only)"
    return f"{status} ({preset.name})"
