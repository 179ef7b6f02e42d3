"""Chapter 06's runner (memlib.experiments.setups_run): its settings, plan and overlap sizes."""

import pytest

from memlib.experiments.presets import get_preset
from memlib.experiments.setups_run import overlap_sizes, plan, setups_settings


@pytest.mark.parametrize("ratio", [0.7, 0.8, 0.85])
def test_overlap_sizes_keep_the_training_set_size(ratio):
    p = get_preset("cpu")
    sh, ca = overlap_sizes(p, ratio)
    assert sh + ca == p.shared + p.candidate and abs(sh / (sh + ca) - ratio) < 0.01


def test_plan_shares_candidates_across_table1_setups():
    p, s = setups_settings("cpu")
    t1 = [(rp, seed) for table, _, rp, seed in plan(p, s) if table == "table1"]
    assert len(t1) == len(s["setups"]) + len(s["seed_setups"]) * (len(s["seeds"]) - 1)
    # Same sizes and seed → the same splits, so every setup scores the same candidates (Table 13).
    assert len({(rp.shared, rp.candidate, rp.dataset) for rp, _ in t1}) == 1
    assert {rp.method for rp, _ in t1} == {"simclr", "dino", "mae", "vicreg", "supervised"}
