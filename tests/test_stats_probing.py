import numpy as np
import pytest
import torch

from memlib.probing import knn_accuracy, knn_predict, linear_probe
from memlib.stats import cohens_d, kendall_tau, overlap_at_k, sslmem_tests, ttest_greater


def test_ttest_direction():
    rng = np.random.default_rng(0)
    hi, lo = rng.normal(1, 1, 200), rng.normal(0, 1, 200)
    assert ttest_greater(hi, lo)["p"] < 1e-6
    assert ttest_greater(lo, hi)["p"] > 0.99
    assert cohens_d(hi, lo) == pytest.approx(1.0, abs=0.25)


def test_sslmem_tests_table():
    rng = np.random.default_rng(1)
    scores = {
        "candidate": rng.normal(0.3, 0.1, 100),
        "shared": rng.normal(0, 0.1, 100),
        "extra": rng.normal(0.1, 0.1, 100),
        "independent": rng.normal(-0.3, 0.1, 100),
    }
    df = sslmem_tests(scores).set_index("null hypothesis")
    assert df.loc[["m(S_C) ≤ m(S_S)", "m(S_C) ≤ m(S_E)", "m(S_S) ≤ m(S_I)", "m(S_E) ≤ m(S_I)"], "reject"].all()
    assert (df["p_holm"] >= df["p"]).all()
    swapped = sslmem_tests({**scores, "candidate": scores["independent"], "independent": scores["candidate"]})
    assert not swapped.set_index("null hypothesis").loc["m(S_C) ≤ m(S_S)", "reject"]


def test_rank_agreement():
    a = np.arange(50.0)
    assert kendall_tau(a, a)["tau"] == pytest.approx(1.0)
    assert kendall_tau(a, -a)["tau"] == pytest.approx(-1.0)
    assert overlap_at_k(a, a, 10) == 1.0 and overlap_at_k(a, -a, 10) == 0.0
    with pytest.raises(ValueError, match="k=0"):
        overlap_at_k(a, a, 0)


def test_probes_separate_separable_classes():
    g = torch.Generator().manual_seed(0)
    centres = torch.randn(3, 16, generator=g) * 5
    y = torch.arange(300) % 3
    x = centres[y] + torch.randn(300, 16, generator=g)
    assert knn_accuracy(x[:200], y[:200], x[200:], y[200:]) > 0.95
    assert linear_probe(x[:200], y[:200], x[200:], y[200:], epochs=30)["test_acc"] > 0.95
    # labels carrying no information: chance level
    perm = y[torch.randperm(300, generator=g)]
    assert linear_probe(x[:200], perm[:200], x[200:], perm[200:], epochs=30)["test_acc"] < 0.6


def test_fraction_above_counts_strictly_greater():
    from memlib.stats import fraction_above

    s = np.array([0.1, 0.2, 0.2, 0.5])
    np.testing.assert_allclose(fraction_above(s, [-1, 0.1, 0.2, 0.49, 0.5]), [1.0, 0.75, 0.25, 0.25, 0.0])


def test_significant_points_finds_planted_memorisation():
    from memlib.stats import significant_points

    rng = np.random.default_rng(0)
    null = rng.normal(0, 1, 2000)
    planted = rng.normal(6, 0.5, 10)  # far above every null draw
    ordinary = rng.normal(0, 1, 190)  # drawn from the null itself
    res = significant_points(np.concatenate([planted, ordinary]), null, alpha=0.05)
    assert res["significant"].iloc[:10].all()
    assert res["significant"].iloc[10:].mean() < 0.05  # the FDR keeps false discoveries rare
    assert (res.p > 0).all() and (res.p <= 1).all() and (res.q >= res.p - 1e-12).all()
    with pytest.raises(ValueError, match="alpha=1.5"):
        significant_points([1.0], null, alpha=1.5)


def test_knn_predict_agrees_with_knn_accuracy():
    g = torch.Generator().manual_seed(0)
    bank, q = torch.randn(50, 4, generator=g), torch.randn(20, 4, generator=g)
    bl, ql = torch.randint(0, 3, (50,), generator=g), torch.randint(0, 3, (20,), generator=g)
    pred = knn_predict(bank, bl, q, k=5)
    assert (pred == ql).float().mean().item() == pytest.approx(knn_accuracy(bank, bl, q, ql, k=5))
    assert torch.equal(knn_predict(bank, bl, bank, k=1), bl)  # each point's nearest neighbour is itself


def test_point_intervals_cover_planted_memorisation_only():
    from memlib.stats import point_intervals

    rng = np.random.default_rng(0)
    ag = 1.0 + 0.05 * rng.standard_normal((10, 200))
    af = 1.0 + 0.05 * rng.standard_normal((10, 200))
    af[:, 0] -= 0.5  # every f encoder aligns point 0 much better: memorised
    iv = point_intervals(af, ag)
    assert iv.loc[0, "above_zero"] and iv.loc[0, "low"] > 0.3
    assert iv["above_zero"][1:].mean() < 0.1  # the others are noise: ≈ 2.5 % expected, more with few encoders
    assert (iv["low"] <= iv["raw"]).all() and (iv["raw"] <= iv["high"]).all()
    with pytest.raises(ValueError, match="≥ 2 encoders per family"):
        point_intervals(af[:1], ag)


def test_atypicality_ranks_a_planted_outlier_first():
    from memlib.probing import atypicality

    g = torch.Generator().manual_seed(0)
    feats = torch.randn(1, 8, generator=g).repeat(12, 1) + 0.05 * torch.randn(12, 8, generator=g)
    feats[3] = -feats[3]  # points in the opposite direction from its class
    a = atypicality(feats, torch.zeros(12, dtype=torch.long), k=3)
    assert int(a.argmax()) == 3
    with pytest.raises(ValueError, match="at least two points"):
        atypicality(feats[:3], torch.tensor([0, 0, 1]))


def test_largest_step_separates_a_spectrum_from_clusters():
    from memlib.stats import largest_step

    spread = np.linspace(-1, 1, 200)
    clusters = np.r_[np.full(100, -0.5), np.full(100, 0.5)]
    assert largest_step(spread) < 0.05
    assert largest_step(clusters) >= 0.5
