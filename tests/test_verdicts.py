"""The one verdict rule and the encoder-level tests (memlib.verdicts), on constructed cases."""

import numpy as np
import pytest
from scipy import stats as st

from memlib.verdicts import (
    INCONCLUSIVE,
    NOT_REPRODUCED,
    REPRODUCED,
    equivalence_rule,
    mean_effect,
    mixed_effect,
    tost,
    verdict_rule,
)


def _pairs(mean, sd, n, seed=0):
    return np.random.default_rng(seed).normal(mean, sd, n)


def test_a_true_effect_with_enough_pairs_is_reproduced():
    v = mean_effect(_pairs(0.02, 0.01, 8), margin=0.005, paper_effect=0.02)
    assert v.status == REPRODUCED and v.p < 0.05 and v.n == 8 and v.estimate > 0


def test_the_opposite_effect_is_not_reproduced():
    v = mean_effect(_pairs(-0.02, 0.01, 8), margin=0.005)
    assert v.status == NOT_REPRODUCED and "opposite" in v.reason


def test_a_null_effect_inside_the_margin_is_not_reproduced():
    v = mean_effect(_pairs(0.0, 0.002, 10), margin=0.01)
    assert v.status == NOT_REPRODUCED and v.p_equivalent < 0.05 and "TOST" in v.reason


def test_a_powered_null_result_is_not_reproduced_and_an_underpowered_one_inconclusive():
    powered = mean_effect(_pairs(0.0, 0.01, 30, seed=1), paper_effect=0.02)
    assert powered.power >= 0.8 and powered.status == NOT_REPRODUCED
    weak = mean_effect(_pairs(0.0, 0.05, 3, seed=2), margin=0.01, paper_effect=0.02)
    assert weak.power < 0.8 and weak.status == INCONCLUSIVE


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
