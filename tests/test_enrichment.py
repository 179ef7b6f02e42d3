"""layer_enrichment: is a layer's share of the top UnitMem units more than its size predicts?"""

import numpy as np
import pandas as pd
import pytest

from memlib.memorization import layer_enrichment
from memlib.memorization.enrichment import _expected_top_mean

SIZES = {"small": 16, "middle": 64, "large": 256}


def draw(rng, planted: str | None = None) -> dict[str, np.ndarray]:
    layers = {name: rng.beta(2, 5, n) for name, n in SIZES.items()}
    if planted is not None:
        layers[planted] = rng.uniform(0.8, 1.0, SIZES[planted])
    return layers


def test_pooled_enrichment_is_one_for_iid_units_of_unequal_layers():
    rng = np.random.default_rng(0)
    tables = [layer_enrichment(draw(rng), top=0.1) for _ in range(400)]
    one = tables[0]
    assert list(one["layer"]) == list(SIZES) and list(one["units"]) == list(SIZES.values())
    np.testing.assert_allclose(one["expected_share"], np.array(list(SIZES.values())) / 336)
    assert one["top_units"].sum() == pytest.approx(round(0.1 * 336))
    assert one["share"].sum() == pytest.approx(1.0)
    mean = pd.concat(tables).groupby("layer", sort=False)["enrichment"].mean()
    np.testing.assert_allclose(mean.to_numpy(), 1.0, atol=0.1)
    # The raw share is not the answer: the large layer holds most top units by size alone.
    assert pd.concat(tables).groupby("layer")["share"].mean()["large"] > 0.7


def test_pooled_enrichment_finds_a_planted_layer():
    rng = np.random.default_rng(1)
    for planted in SIZES:
        t = layer_enrichment(draw(rng, planted), top=0.1).set_index("layer")
        # The planted layer holds as many of the 34 top units as it can: enrichment at its maximum.
        k, n = round(0.1 * 336), SIZES[planted]
        assert t.loc[planted, "top_units"] == min(n, k), planted
        assert t.loc[planted, "enrichment"] == pytest.approx(min(n, k) / k / (n / 336))
        assert t.loc[planted, "p"] < 0.01
        assert (t.drop(index=planted)["enrichment"] < 1).all()
    # A small layer with planted values is strongly enriched; the largest (76 % of units) cannot exceed 1.31.
    assert layer_enrichment(draw(rng, "small")).set_index("layer").loc["small", "enrichment"] > 2


def test_ties_at_the_cut_are_shared_in_proportion():
    t = layer_enrichment({"a": np.zeros(10), "b": np.zeros(30)}, top=0.1)
    np.testing.assert_allclose(t["top_units"], [1.0, 3.0])
    np.testing.assert_allclose(t["enrichment"], 1.0)


def test_within_layer_enrichment_is_one_for_iid_units_and_above_one_for_a_planted_layer():
    rng = np.random.default_rng(2)
    tables = [layer_enrichment(draw(rng), top=0.1, within_layer=True) for _ in range(400)]
    assert list(tables[0].columns) == [
        "layer",
        "units",
        "top_units",
        "top_mean",
        "expected_top_mean",
        "difference",
        "enrichment",
    ]
    assert list(tables[0]["top_units"]) == [2, 6, 26]
    mean = pd.concat(tables).groupby("layer", sort=False)["enrichment"].mean()
    np.testing.assert_allclose(mean.to_numpy(), 1.0, atol=0.1)
    t = layer_enrichment(draw(rng, "small"), top=0.1, within_layer=True).set_index("layer")
    assert t.loc["small", "enrichment"] > 1.2 and t.loc["small", "difference"] > 0.2


def test_expected_top_mean_matches_random_draws():
    rng = np.random.default_rng(3)
    pool = np.sort(rng.beta(2, 5, 60))[::-1]
    sims = [np.sort(rng.choice(pool, 12, replace=False))[::-1][:3].mean() for _ in range(20000)]
    assert _expected_top_mean(pool, 12, 3) == pytest.approx(np.mean(sims), abs=0.005)


@pytest.mark.parametrize("top", [0, 1, 1.5, -0.1, True])
def test_bad_top_raises(top):
    with pytest.raises(ValueError, match=r"top=.* must be a fraction in \(0, 1\)"):
        layer_enrichment({"a": np.ones(4)}, top=top)


def test_bad_layers_raise():
    with pytest.raises(ValueError, match="unitmem_by_layer must be a non-empty dict"):
        layer_enrichment({})
    with pytest.raises(ValueError, match=r"unitmem_by_layer\['a'\] must be a non-empty 1-D array"):
        layer_enrichment({"a": np.array([])})
    with pytest.raises(ValueError, match="non-finite"):
        layer_enrichment({"a": np.array([0.1, np.nan])})
