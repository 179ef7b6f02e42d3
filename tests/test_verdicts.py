"""The one verdict rule and the encoder-level tests (memlib.verdicts), on constructed cases."""

import numpy as np
import pytest
from scipy import stats as st

from memlib.verdicts import (
    INCONCLUSIVE,
    NOT_REPRODUCED,
    REPRODUCED,
    Evidence,
    Sesoi,
    decide,
    equivalence_evidence,
    equivalence_rule,
    mean_effect,
    mean_evidence,
    mixed_effect,
    parts_count,
    parts_status,
    plan_n,
    plan_n_kendall,
    tost,
    verdict_rule,
)


def _pairs(mean, sd, n, seed=0):
    return np.random.default_rng(seed).normal(mean, sd, n)


def test_a_true_effect_with_enough_pairs_is_reproduced():
    v = mean_effect(_pairs(0.02, 0.01, 8), margin=0.005, sesoi=Sesoi(0.01, "half the effect"))
    assert v.status == REPRODUCED and v.p < 0.05 and v.n == 8 and v.estimate > 0 and v.power > 0.5


def test_the_opposite_effect_is_not_reproduced():
    v = mean_effect(_pairs(-0.02, 0.01, 8), margin=0.005)
    assert v.status == NOT_REPRODUCED and "opposite" in v.reason


def test_a_null_effect_inside_the_margin_is_not_reproduced():
    v = mean_effect(_pairs(0.0, 0.002, 10), margin=0.01)
    assert v.status == NOT_REPRODUCED and v.p_equivalent < 0.05 and "TOST" in v.reason


def test_power_never_refutes_an_effect_is_refuted_only_below_its_sesoi():
    """A null result with high power for the SESOI is not a refutation by itself; the one-sided test against the
    SESOI is."""
    weak_effect = _pairs(0.004, 0.004, 6, seed=3)  # in the claimed direction, not significant, far below 0.05
    v = mean_effect(weak_effect, sesoi=Sesoi(0.05, "constructed"))
    assert v.power > 0.99 and v.p_smaller < 0.05 and v.status == NOT_REPRODUCED and "SESOI" in v.reason
    big = Sesoi(0.05, "constructed")
    r = verdict_rule(n=8, p=0.3, p_opposite=0.7, power=0.99, sesoi=big)
    assert r.status == INCONCLUSIVE and r.power == 0.99  # power reported, never the reason
    noisy = mean_effect([0.05, -0.04, 0.01], sesoi=Sesoi(0.02, "constructed"))
    assert noisy.power < 0.8 and noisy.status == INCONCLUSIVE


def test_decide_corrects_over_the_whole_family_and_reports_power_at_the_corrected_level():
    s = Sesoi(0.01, "constructed")
    x = _pairs(0.02, 0.01, 5, seed=4)
    one = mean_evidence(x, sesoi=s)
    alone = decide({"a": one})["a"]
    family = decide({"a": one, **{f"b{i}": Evidence(5, 0.5, 0.5) for i in range(9)}})["a"]
    assert family.m == 10 and family.p == pytest.approx(min(1.0, one.p * 10))
    assert alone.p == pytest.approx(one.p) and family.power < alone.power
    # a p that passes alone fails after the correction over ten tests
    borderline = Evidence(5, 0.02, 0.98)
    assert decide({"a": borderline})["a"].status == REPRODUCED
    assert decide({"a": borderline, **{f"b{i}": Evidence(5, 0.5, 0.5) for i in range(9)}})["a"].status == INCONCLUSIVE


def test_equivalence_evidence_uses_the_sesoi_as_margin_and_refutes_outside_it():
    s = Sesoi(0.01, "constructed")
    inside = decide({"S2": equivalence_evidence(_pairs(0.0, 0.002, 10), s)})["S2"]
    outside = decide({"S2": equivalence_evidence(_pairs(0.03, 0.002, 10), s)})["S2"]
    tiny_but_nonzero = decide({"S2": equivalence_evidence(_pairs(0.004, 0.001, 10), s)})["S2"]
    assert inside.status == REPRODUCED and outside.status == NOT_REPRODUCED
    assert tiny_but_nonzero.status == REPRODUCED  # different from 0, but inside the SESOI


def test_a_refuted_part_refutes_a_conjunctive_claim():
    assert parts_status([REPRODUCED, NOT_REPRODUCED]) == NOT_REPRODUCED
    assert parts_status([REPRODUCED, INCONCLUSIVE]) == "partly reproduced (1 of 2 parts, none refuted)"
    assert parts_status([REPRODUCED, REPRODUCED]) == REPRODUCED
    assert parts_status([INCONCLUSIVE, INCONCLUSIVE]) == INCONCLUSIVE
    assert parts_count([REPRODUCED, NOT_REPRODUCED, INCONCLUSIVE]) == "1 reproduced, 1 refuted of 3 parts"
    with pytest.raises(ValueError):
        parts_status([])


def test_plan_n_grows_with_the_correction_and_shrinks_with_the_effect():
    assert plan_n(0.5, 1.0) < plan_n(0.5, 1.0, m=10) and plan_n(1.0, 1.0) < plan_n(0.5, 1.0)
    from statsmodels.stats.power import TTestPower

    n = plan_n(0.5, 1.0, m=5)
    assert TTestPower().power(effect_size=0.5, nobs=n, alpha=0.01, alternative="larger") >= 0.8
    assert TTestPower().power(effect_size=0.5, nobs=n - 1, alpha=0.01, alternative="larger") < 0.8
    with pytest.raises(ValueError):
        Sesoi(0.0, "none")


def test_planted_effects_at_the_planned_n_are_detected_in_most_simulated_runs():
    """The planners' promise, checked by simulation: 200 runs at the planned n, each tested as the chapters
    test (one-sided t over units; one-sided Kendall τ), detect the planted SESOI at α/m in ≥ 75 % of runs, and
    clearly less often at a third of that n (so the check can fail)."""
    rng = np.random.default_rng(0)
    m, alpha = 4, 0.05
    n = plan_n(0.5, 1.0, m=m)
    hits = [st.ttest_1samp(rng.normal(0.5, 1.0, n), 0, alternative="greater").pvalue < alpha / m for _ in range(200)]
    few = [
        st.ttest_1samp(rng.normal(0.5, 1.0, n // 3), 0, alternative="greater").pvalue < alpha / m for _ in range(200)
    ]
    assert np.mean(hits) >= 0.75 > np.mean(few)
    tau = 0.3
    n = plan_n_kendall(tau, alpha=alpha, m=m)
    r = np.sin(np.pi * tau / 2)  # Pearson r of a bivariate normal whose Kendall τ is ``tau``
    cov = [[1, r], [r, 1]]

    def detected(k):
        x, y = rng.multivariate_normal([0, 0], cov, k).T
        return st.kendalltau(x, y, alternative="greater").pvalue < alpha / m

    assert np.mean([detected(n) for _ in range(200)]) >= 0.75 > np.mean([detected(n // 3) for _ in range(200)])
    assert plan_n_kendall(0.2, m=4) > plan_n_kendall(0.2) > plan_n_kendall(0.5)
    with pytest.raises(ValueError, match="tau"):
        plan_n_kendall(1.2)


def test_one_encoder_pair_is_inconclusive_whatever_its_p_value():
    assert verdict_rule(n=1, p=1e-12, p_opposite=1.0).status == INCONCLUSIVE
    assert mean_effect([0.5]).status == INCONCLUSIVE
    assert equivalence_rule(n=1, p_equivalent=1e-9, p_different=1.0).status == INCONCLUSIVE


def test_the_rule_is_symmetric_in_direction():
    x = _pairs(0.02, 0.01, 8)
    up, down = mean_effect(x, direction=+1), mean_effect(-x, direction=-1)
    assert up.status == down.status == REPRODUCED and up.p == pytest.approx(down.p)


def test_equivalence_claims_use_tost():
    assert equivalence_rule(n=10, p_equivalent=0.01, p_different=0.6).status == REPRODUCED
    assert equivalence_rule(n=10, p_equivalent=0.7, p_different=0.001).status == NOT_REPRODUCED
    assert equivalence_rule(n=10, p_equivalent=0.3, p_different=0.3).status == INCONCLUSIVE
    assert tost(_pairs(0.0, 0.002, 10), 0.01) < 0.05 < tost(_pairs(0.03, 0.002, 10), 0.01)
    with pytest.raises(ValueError, match="margin=0"):
        tost([0.1, 0.2], 0)


def test_mixed_model_recovers_a_planted_effect_that_a_family_offset_hides_from_the_point_test():
    rng = np.random.default_rng(0)
    offsets = [-0.05, -0.03, -0.04, -0.06]  # each encoder pair's chance shift, shared by all its points
    values, subset, group = [], [], []
    for g, off in enumerate(offsets):
        for s, effect, n in (("candidate", 0.01, 50), ("shared", 0.0, 100)):
            values += list(off + effect + rng.normal(0, 0.005, n))
            subset += [s] * n
            group += [g] * n
    values, subset = np.array(values), np.array(subset)
    point_t = st.ttest_1samp(values[subset == "candidate"], 0.0)
    assert point_t.statistic < 0 and point_t.pvalue < 1e-6  # the point-level test is fooled by the offsets
    m = mixed_effect(values, subset, group, effect="candidate", baseline="shared")
    assert m["estimate"] == pytest.approx(0.01, abs=0.002) and m["p"] < 0.001
    assert m["n_groups"] == 4 and m["n_points"] == 600


def test_split_half_reliability_tells_a_stable_ranking_from_noise():
    from memlib.stats import split_half_reliability

    rng = np.random.default_rng(0)
    signal = rng.normal(0, 1, 200)
    stable = signal + rng.normal(0, 0.3, (6, 200))
    noise = rng.normal(0, 1, (6, 200))
    assert split_half_reliability(stable) > 0.9
    assert abs(split_half_reliability(noise)) < 0.2
    with pytest.raises(ValueError, match="one pair has no second half"):
        split_half_reliability(noise[:1])


def test_units_that_all_agree_exactly_get_the_sign_test():
    """Three pairs with the same positive difference: the t-test is undefined, the sign test gives 1/8."""
    from memlib.verdicts import mean_effect

    v = mean_effect([0.077, 0.077, 0.077])
    assert v.p == pytest.approx(0.125) and v.p_opposite == pytest.approx(1.0)
    assert v.status == "inconclusive"  # 3 units cannot reach 5 % by signs alone
    assert mean_effect([0.1] * 6).status == "reproduced"  # 1/64
    assert mean_effect([-0.1] * 6).status == "not reproduced"
    assert mean_effect([0.0, 0.0, 0.0]).p == 1.0


# --- small-n p-values (memlib.stats) against scipy's exact modes ---------------------------------------------


@pytest.mark.parametrize("alternative", ["greater", "less", "two-sided"])
def test_kendall_without_ties_is_scipys_exact_test(alternative):
    from memlib.stats import kendall_test

    rng = np.random.default_rng(5)
    for n in (4, 6, 9, 15):
        x, y = rng.permutation(n).astype(float), rng.permutation(n).astype(float)
        r = kendall_test(x, y, alternative)
        ref = st.kendalltau(x, y, method="exact", alternative=alternative)
        assert r["method"] == "exact" and r["p"] == pytest.approx(min(1.0, ref.pvalue)) and r["tau"] == ref.statistic


@pytest.mark.parametrize("alternative", ["greater", "less", "two-sided"])
def test_kendall_with_ties_is_scipys_exact_permutation_test(alternative):
    from memlib.stats import kendall_test

    x = np.array([0.0, 0.0, 0.2, 0.2, 0.4, 0.6, 0.6])  # λ levels with two encoders each, as in S22
    y = np.array([0.31, 0.29, 0.2, 0.25, 0.1, 0.12, 0.05])
    r = kendall_test(x, y, alternative)
    ref = st.permutation_test(
        (y,), lambda v: st.kendalltau(x, v).statistic, permutation_type="pairings", alternative=alternative,
        n_resamples=np.inf,
    )  # fmt: skip
    assert r["method"] == "permutation (all)" and r["p"] == pytest.approx(ref.pvalue)
    asymptotic = st.kendalltau(x, y, alternative=alternative).pvalue
    assert r["p"] != pytest.approx(asymptotic)  # the asymptotic p is not what is reported


def test_kendall_floor_says_when_a_design_cannot_reach_significance():
    from memlib.stats import kendall_floor

    assert kendall_floor([0.0, 0.0, 0.2, 0.2]) == pytest.approx(1 / 6)  # S22's SimCLR after the floor exclusion
    assert kendall_floor(np.repeat([0.0, 0.2, 0.4], 3)) < 0.01


def test_sign_test_is_scipys_binomtest_and_drops_ties_with_the_null():
    from memlib.stats import sign_test

    x = np.array([0.3, 0.1, -0.2, 0.4, 0.0, 0.5, 0.2])
    for alt in ("greater", "less", "two-sided"):
        assert sign_test(x, alt) == pytest.approx(st.binomtest(5, 6, 0.5, alternative=alt).pvalue)
    assert sign_test(x, "greater", mu=0.25) == pytest.approx(st.binomtest(3, 7, 0.5, alternative="greater").pvalue)
    assert sign_test([0.0, 0.0], "greater") == 1.0
