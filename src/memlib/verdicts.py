"""One symmetric verdict rule for every claim, and the encoder-level tests that feed it.

The rule (:func:`verdict_rule`), written once here, on p-values corrected over
the chapter's family (:func:`decide`: Holm over every claim and part the
chapter decides):

- **reproduced**: the pre-declared test is significant in the claimed
  direction;
- **not reproduced**: it is significant in the opposite direction, or the
  effect is shown significantly smaller than the claim's declared smallest
  effect of interest (:class:`Sesoi`; a one-sided test against it, or, for
  "≈" claims, significantly outside the SESOI used as TOST margin);
- **inconclusive**: anything else, and always when the test has fewer than
  two units of replication (one encoder pair carries no estimate of the
  training noise, whatever its p-value).

Power is never a reason for a verdict: the power of the claimed-direction test
for the SESOI, at the corrected level (Bonferroni α/m, Holm's strictest step),
is reported beside it (``Verdict.power``), and :func:`plan_n` turns a SESOI and a
spread into the encoders a run needs.

Each claim declares its SESOI before the run, at the run's scale: the paper's
effect scaled by the run's core effect, or a standardised effect, with the
reason in words. "≈" claims (an effect that should be absent) are reproduced
when TOST shows the effect inside ±SESOI and refuted when it is significantly
outside (:func:`equivalence_rule`).

A claim made of parts that must all hold (:func:`parts_status`) is reproduced
when every part is and refuted when any part is; :func:`parts_count` writes
"k reproduced, j refuted of m" for its statistic.

The unit of replication is the encoder pair (and the split): points and
units enter through per-pair means (:func:`mean_effect`) or through a mixed
model with the pair as group (:func:`mixed_effect`), never as replicates.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import stats as st

REPRODUCED, NOT_REPRODUCED, INCONCLUSIVE = "reproduced", "not reproduced", "inconclusive"
#: Version of the rule; chapters glue it with their verdicts, so the book can tell which rule decided a chapter.
#: 1: encoder-level tests, refutation by power for the paper's effect; 2: refutation against a declared SESOI,
#: one Holm per chapter over all its claims and parts, exact small-n tests, refuted parts refute.
RULE_VERSION = 2
#: The power a run is planned for (:func:`plan_n`); reported beside verdicts, never used to decide one.
MIN_POWER = 0.8
#: The split-half Spearman ρ below which a ranking of points is unreliable, so that a claim resting on it is
#: inconclusive (declared before any run; chapter 01 measures it).
MIN_RELIABILITY = 0.5


@dataclass(frozen=True)
class Sesoi:
    """A claim's smallest effect of interest, declared before the run, in the units of its test's estimate.

    ``value`` is positive (in the claimed direction); ``reason`` says where it comes from (the paper's effect
    scaled by this run's core effect, or a standardised effect)."""

    value: float
    reason: str

    def __post_init__(self):
        if not (math.isfinite(self.value) and self.value > 0):
            raise ValueError(f"Sesoi value={self.value!r} must be finite and > 0 (declared before the run)")

    def __str__(self) -> str:
        return f"SESOI {self.value:.3g} ({self.reason})"


@dataclass(frozen=True)
class Evidence:
    """One test's uncorrected one-sided p-values (a claim, or one part of it), before the chapter's correction.

    ``p``: claimed direction (for an "≈" claim: TOST inside ±SESOI); ``p_opposite``: opposite direction (for an
    "≈" claim: significantly outside ±SESOI); ``p_smaller``: the effect is smaller than the SESOI (one-sided;
    ``None`` where no test against the SESOI exists); ``sd``: the spread over units, for power (t-tests only)."""

    n: int
    p: float
    p_opposite: float
    p_smaller: float | None = None
    estimate: float | None = None
    sesoi: Sesoi | None = None
    sd: float | None = None
    equivalence: bool = False


@dataclass(frozen=True)
class Verdict:
    """A verdict and the numbers behind it (``None``: not computed); p-values as corrected over ``m`` tests."""

    status: str
    reason: str
    n: int
    estimate: float | None = None
    p: float | None = None
    p_opposite: float | None = None
    p_equivalent: float | None = None
    power: float | None = None
    p_smaller: float | None = None
    sesoi: Sesoi | None = None
    m: int = 1


def verdict_rule(
    *,
    n: int,
    p: float,
    p_opposite: float,
    p_smaller: float | None = None,
    p_equivalent: float | None = None,
    power: float | None = None,
    alpha: float = 0.05,
    estimate: float | None = None,
    sesoi: Sesoi | None = None,
    m: int = 1,
) -> Verdict:
    """The verdict from a claim's one-sided p-values, already corrected over the chapter's family (see the module
    docstring).

    Parameters
    ----------
    n
        Units of replication of the test (encoder pairs × splits).
    p, p_opposite
        One-sided p-values in the claimed and in the opposite direction (corrected).
    p_smaller
        One-sided p-value for "the effect is smaller than the SESOI" (corrected), if computed.
    p_equivalent
        TOST p-value for "the effect lies within ±SESOI" (corrected), if computed: it also shows the effect
        smaller than the SESOI.
    power
        Power of the claimed-direction test for the SESOI at the corrected level; reported only.
    """
    args = dict(
        n=n, estimate=estimate, p=p, p_opposite=p_opposite, p_equivalent=p_equivalent, power=power,
        p_smaller=p_smaller, sesoi=sesoi, m=m,
    )  # fmt: skip
    if n < 2:
        return Verdict(INCONCLUSIVE, f"n = {n}: one unit carries no estimate of training noise", **args)
    if p < alpha:
        return Verdict(REPRODUCED, f"significant in the claimed direction (p = {p:.2g})", **args)
    if p_opposite < alpha:
        return Verdict(NOT_REPRODUCED, f"significant in the opposite direction (p = {p_opposite:.2g})", **args)
    of = f" {sesoi.value:.3g}" if sesoi is not None else ""
    if p_smaller is not None and p_smaller < alpha:
        return Verdict(NOT_REPRODUCED, f"significantly smaller than the SESOI{of} (p = {p_smaller:.2g})", **args)
    if p_equivalent is not None and p_equivalent < alpha:
        return Verdict(
            NOT_REPRODUCED, f"equivalent to no effect within the SESOI{of} (TOST p = {p_equivalent:.2g})", **args
        )
    why = f"p = {p:.2g}" + ("" if p_smaller is None else f", smaller than the SESOI p = {p_smaller:.2g}")
    if power is not None and np.isfinite(power):
        why += f"; power {power:.0%} for the SESOI"
    return Verdict(INCONCLUSIVE, f"neither direction significant ({why})", **args)


def equivalence_rule(
    *,
    n: int,
    p_equivalent: float,
    p_different: float,
    alpha: float = 0.05,
    estimate: float | None = None,
    sesoi: Sesoi | None = None,
    m: int = 1,
) -> Verdict:
    """The verdict on a "≈" claim: reproduced by TOST inside ±SESOI, refuted when the effect is significantly
    outside ±SESOI (``p_different``; corrected p-values)."""
    args = dict(
        n=n, estimate=estimate, p=p_equivalent, p_opposite=p_different, p_equivalent=p_equivalent, sesoi=sesoi, m=m
    )
    if n < 2:
        return Verdict(INCONCLUSIVE, f"n = {n}: one unit carries no estimate of training noise", **args)
    if p_equivalent < alpha:
        return Verdict(REPRODUCED, f"equivalent within the SESOI (TOST p = {p_equivalent:.2g})", **args)
    if p_different < alpha:
        return Verdict(NOT_REPRODUCED, f"significantly outside the SESOI (p = {p_different:.2g})", **args)
    return Verdict(INCONCLUSIVE, f"neither inside nor outside the SESOI (TOST p = {p_equivalent:.2g})", **args)


#: The standardised effect (Cohen's d over units) used as SESOI where a claim has no effect at this run's scale.
STANDARD_D = 0.5


def standardised_sesoi(per_unit, *, d: float = STANDARD_D, why: str = "") -> Sesoi | None:
    """A SESOI of ``d`` standard deviations over units (Cohen's d; ``None`` without spread), for claims whose
    paper effect has no counterpart at this run's scale; ``why`` says so."""
    x = np.asarray(per_unit, dtype=np.float64)
    sd = float(x.std(ddof=1)) if len(x) > 1 else 0.0
    if not sd > 0:
        return None
    return Sesoi(d * sd, f"d = {d:g} standardised" + (f": {why}" if why else ""))


def _power(sesoi: Sesoi | None, sd: float | None, n: int, level: float) -> float | None:
    """Power of the one-sided one-sample t-test for the SESOI at ``level`` (``None`` where undefined)."""
    if sesoi is None or sd is None or not (np.isfinite(sd) and sd > 0) or n < 2:
        return None
    from statsmodels.stats.power import TTestPower

    return float(TTestPower().power(effect_size=sesoi.value / sd, nobs=n, alpha=level, alternative="larger"))


def plan_n(sesoi: float, sd: float, *, alpha: float = 0.05, m: int = 1, power: float = MIN_POWER) -> int:
    """Units of replication a one-sided one-sample t-test needs to detect ``sesoi`` with ``power`` at the
    corrected level α/m, given the spread ``sd`` over units (statsmodels ``TTestPower``); at least 2."""
    if not (sesoi > 0 and sd > 0 and m >= 1):
        raise ValueError(f"sesoi={sesoi!r} and sd={sd!r} must be > 0 and m={m!r} ≥ 1")
    from statsmodels.stats.power import TTestPower

    n = TTestPower().solve_power(effect_size=sesoi / sd, alpha=alpha / m, power=power, alternative="larger")
    return max(2, math.ceil(float(n)))


def plan_n_kendall(tau: float, *, alpha: float = 0.05, m: int = 1, power: float = MIN_POWER) -> int:
    """Units a one-sided Kendall τ test needs to detect a monotone trend of strength ``tau`` with ``power`` at
    α/m: the smallest n with τ / sd₀(n) ≥ z(1 − α/m) + z(power), sd₀ the null spread of τ without ties,
    √(2(2n + 5) / (9n(n − 1))) (normal approximation; ties, as in a few tied levels, need somewhat more)."""
    if not (0 < tau < 1 and m >= 1):
        raise ValueError(f"tau={tau!r} must be in (0, 1) and m={m!r} ≥ 1")
    z = st.norm.ppf(1 - alpha / m) + st.norm.ppf(power)
    n = 3
    while tau / math.sqrt(2 * (2 * n + 5) / (9 * n * (n - 1))) < z:
        n += 1
    return n


def plan_table(evidence: dict, claims: dict, *, alpha: float = 0.05, power: float = MIN_POWER):
    """The sample-size plan of a chapter: per claim, the units its tests need (:func:`plan_n` at α/m, m = every
    test in ``evidence``, the chapter's Holm family), with the spread over units of this run as the pilot.

    ``claims`` maps each claim id to the keys of its tests in ``evidence``; a claim of several parts plans for
    the part that needs the most units. A part with no SESOI or no t-test spread (a sign test, a count) has no
    plan (NaN).

    Returns
    -------
    pandas.DataFrame
        Indexed by claim: ``n now``, ``pilot sd``, ``SESOI``, ``planned n`` and ``part`` (the test planned for).
    """
    import pandas as pd

    m = len(evidence)
    rows = {}
    for cid, keys in claims.items():
        best = None
        for k in keys:
            e = evidence[k]
            ok = e.sesoi is not None and e.sd is not None and np.isfinite(e.sd) and e.sd > 0
            n = plan_n(e.sesoi.value, e.sd, alpha=alpha, m=m, power=power) if ok else np.nan
            row = {
                "n now": e.n,
                "pilot sd": e.sd if e.sd is not None else np.nan,
                "SESOI": e.sesoi.value if e.sesoi is not None else np.nan,
                "planned n": n,
                "part": k,
            }
            if best is None or np.nan_to_num(n, nan=np.inf) > np.nan_to_num(best["planned n"], nan=np.inf):
                best = row
        rows[cid] = best
    df = pd.DataFrame.from_dict(rows, orient="index")
    df.index.name = "claim"
    return df


def decide(evidence: dict, *, alpha: float = 0.05) -> dict[str, Verdict]:
    """Verdicts on a chapter's family of tests: Holm over every test in ``evidence`` (claims and parts alike),
    separately for the claimed-direction, opposite-direction and smaller-than-SESOI p-values, then
    :func:`verdict_rule` (or :func:`equivalence_rule` for "≈" tests). Power for the SESOI at α/m is reported."""
    from .stats import holm

    keys = list(evidence)
    m = len(keys)
    if not m:
        return {}
    ev = [evidence[k] for k in keys]
    p = holm([e.p for e in ev])
    po = holm([e.p_opposite for e in ev])
    idx = [i for i, e in enumerate(ev) if e.p_smaller is not None]
    ps = dict(zip(idx, holm([ev[i].p_smaller for i in idx])))
    out = {}
    for i, (k, e) in enumerate(zip(keys, ev)):
        if e.equivalence:
            out[k] = equivalence_rule(
                n=e.n, p_equivalent=p[i], p_different=po[i], alpha=alpha, estimate=e.estimate, sesoi=e.sesoi, m=m
            )
        else:
            out[k] = verdict_rule(
                n=e.n, p=p[i], p_opposite=po[i], p_smaller=ps.get(i), alpha=alpha, estimate=e.estimate,
                sesoi=e.sesoi, m=m, power=_power(e.sesoi, e.sd, e.n, alpha / m),
            )  # fmt: skip
    return out


def mean_evidence(per_unit, *, direction: int = 1, sesoi: Sesoi | None = None) -> Evidence:
    """Uncorrected evidence on "the effect has the sign ``direction``" from one value per unit of replication.

    One-sample t-tests on ``per_unit`` (e.g. each encoder pair's mean S_C − S_S difference) in both
    directions, and one-sided against the SESOI ("the effect is smaller than it"), if given. Units that all hold
    the same value (a discrete statistic) leave the t-test undefined; the exact sign test then gives the
    p-values (0.5ⁿ in the direction every unit points, 1 in the other).
    """
    from .stats import sign_test

    x = np.asarray(per_unit, dtype=np.float64) * np.sign(direction)
    n = len(x)
    est = float(x.mean()) * np.sign(direction) if n else float("nan")
    if n < 2 or not np.ptp(x) > 0:
        if not n:
            return Evidence(0, 1.0, 1.0, None, est, sesoi)
        p, p_opp = sign_test(x, "greater"), sign_test(x, "less")
        p_small = sign_test(x - sesoi.value, "less") if sesoi is not None else None
        return Evidence(n, p, p_opp, p_small, est, sesoi)
    p = float(st.ttest_1samp(x, 0.0, alternative="greater").pvalue)
    p_opp = float(st.ttest_1samp(x, 0.0, alternative="less").pvalue)
    p_small = float(st.ttest_1samp(x, sesoi.value, alternative="less").pvalue) if sesoi is not None else None
    return Evidence(n, p, p_opp, p_small, est, sesoi, float(x.std(ddof=1)))


def equivalence_evidence(per_unit, sesoi: Sesoi) -> Evidence:
    """Uncorrected evidence on "the mean of ``per_unit`` ≈ 0": TOST inside ±SESOI as ``p``, and "significantly
    outside ±SESOI" (the smaller one-sided p beyond either bound, doubled) as ``p_opposite``."""
    x = np.asarray(per_unit, dtype=np.float64)
    n = len(x)
    est = float(x.mean()) if n else float("nan")
    if n < 2 or not np.ptp(x) > 0:
        return Evidence(n, 1.0, 1.0, None, est, sesoi, equivalence=True)
    above = st.ttest_1samp(x, sesoi.value, alternative="greater").pvalue
    below = st.ttest_1samp(x, -sesoi.value, alternative="less").pvalue
    out = min(1.0, 2 * float(min(above, below)))
    return Evidence(n, tost(x, sesoi.value), out, None, est, sesoi, float(x.std(ddof=1)), equivalence=True)


def mean_effect(
    per_unit,
    *,
    direction: int = 1,
    sesoi: Sesoi | None = None,
    margin: float | None = None,
    alpha: float = 0.05,
) -> Verdict:
    """Verdict on "the effect has the sign ``direction``" from one value per unit, decided alone (a family of
    one; a chapter deciding several claims collects :func:`mean_evidence` and calls :func:`decide`).

    ``margin`` adds a TOST against ±margin (the effect shown equivalent to none refutes the claim).
    """
    e = mean_evidence(per_unit, direction=direction, sesoi=sesoi)
    x = np.asarray(per_unit, dtype=np.float64)
    p_eq = tost(x, margin) if margin is not None and len(x) > 1 and np.ptp(x) > 0 else None
    return verdict_rule(
        n=e.n, p=e.p, p_opposite=e.p_opposite, p_smaller=e.p_smaller, p_equivalent=p_eq, alpha=alpha,
        estimate=e.estimate, sesoi=sesoi, power=_power(sesoi, e.sd, e.n, alpha),
    )  # fmt: skip


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
    """The verdict on a claim whose parts must all hold (declared in its definition, e.g. "for every method"):
    reproduced when every part is, not reproduced when any part is refuted, "partly reproduced (k of m parts,
    none refuted)" when some parts are reproduced and the rest inconclusive, inconclusive otherwise."""
    if not statuses:
        raise ValueError("statuses is empty: a claim needs at least one part")
    k, m = sum(s == REPRODUCED for s in statuses), len(statuses)
    if k == m:
        return REPRODUCED
    if NOT_REPRODUCED in statuses:
        return NOT_REPRODUCED
    if k:
        return f"partly reproduced ({k} of {m} parts, none refuted)"
    return INCONCLUSIVE


def parts_count(statuses: list[str]) -> str:
    """ "k reproduced, j refuted of m" for a claim's parts, for its statistic."""
    k, j = sum(s == REPRODUCED for s in statuses), sum(s == NOT_REPRODUCED for s in statuses)
    return f"{k} reproduced, {j} refuted of {len(statuses)} parts"


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
