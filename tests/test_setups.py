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


class _Started(Exception):
    pass


@pytest.mark.parametrize("preset", ["smoke", "cpu"])
def test_seed_shifts_every_seed_and_zero_is_the_presets_own(monkeypatch, preset):
    """One seed convention (memlib.experiments.presets): run_setups adds ``seed`` to every seed of its settings,
    as run_sslmem_study does; at seed 0 its settings are the preset's own, so it plans the same encoders."""
    import dataclasses

    import memlib.experiments.setups_run as sr

    started = []

    def start(kind, p, device, seed, key, *a, **k):
        started.append((seed, key["settings"]))
        raise _Started  # stop before anything loads or trains

    monkeypatch.setattr(sr.RunContext, "start", start)

    def settings(**kw):
        with pytest.raises(_Started):
            sr.run_setups(preset, data_root="unused", **kw)
        seed, s = started.pop()
        assert seed == s["seeds"][0]  # the run is recorded under its first seed
        return s

    p, own = setups_settings(preset)
    assert settings() == dataclasses.replace(own, train_augmentation=p.augmentation).to_dict()
    assert settings(seed=10)["seeds"] == tuple(x + 10 for x in own["seeds"])
    assert settings(seed=10, seeds=(0, 1))["seeds"] == (10, 11)  # explicit seeds shift too
    with pytest.raises(TypeError, match="seed='1' must be an int"):
        sr.run_setups(preset, seed="1")
