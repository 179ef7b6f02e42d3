"""Chapter 06 (memlib.experiments.setups_run, setups_evidence): its settings, plan, overlap sizes and config."""

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


@pytest.mark.parametrize("preset", ["smoke", "cpu"])
def test_seed_shifts_every_seed_and_zero_is_the_presets_own(preset):
    """One seed convention (memlib.experiments.presets): chapter 06's config adds ``seed`` to every seed of its
    settings, as chapter 01's does; at seed 0 its settings are the preset's own, so it plans the same encoders."""
    import dataclasses

    from memlib.experiments.setups_evidence import run_setups, setups_config

    p, own = setups_settings(preset)
    cfg = setups_config(preset)
    assert cfg.settings.to_dict() == dataclasses.replace(own, train_augmentation=p.augmentation).to_dict()
    assert cfg.seed == own["seeds"][0]  # the chapter is recorded under its first seed
    assert setups_config(preset, seed=10).settings["seeds"] == tuple(x + 10 for x in own["seeds"])
    assert setups_config(preset, seed=10, seeds=(0, 1)).settings["seeds"] == (10, 11)  # explicit seeds shift too
    with pytest.raises(TypeError, match="seed='1' must be an int"):
        run_setups(preset, seed="1")
    with pytest.raises(TypeError, match="did you mean 'seeds'"):
        setups_config(preset, seedz=(0,))


def test_chapter_reads_back_from_the_store_alone(tmp_path):
    """Chapter 06 fills the store once; read back with an empty cache and ``train=False`` (no weights, no training)
    every table is the same, and a store missing the chapter's rows is refused with the command that fills it."""
    import pandas as pd

    from memlib.evidence import EvidenceStore
    from memlib.experiments.setups_evidence import run_setups

    kw = dict(setups=("SimCLR-ResNet", "Supervised-ResNet"), overlaps=(0.7,), train_augmentations=("noise",),
              measure_augmentations=("simclr", "rotation"), mask_ratios=(), top_k=(5,), progress=False)  # fmt: skip
    store = tmp_path / "store"
    first = run_setups("smoke", store=store, cache_dir=tmp_path / "cache", **kw)
    again = run_setups("smoke", store=store, cache_dir=tmp_path / "empty", train=False, **kw)
    assert not (tmp_path / "empty" / "encoders").exists()  # nothing trained or loaded
    for name in ("table1_runs", "candidate_scores", "feldman", "measure_aug", "dejavu", "dynamics", "overlap"):
        pd.testing.assert_frame_equal(getattr(first, name), getattr(again, name))
    pd.testing.assert_frame_equal(first.claims(), again.claims())
    snaps = EvidenceStore(store).load("encoders")
    assert (snaps.kind == "snapshot").sum() == 2 * len(first.dynamics)  # f and g at every snapshot epoch
    assert first.measure_aug.loc["simclr", "SSLMem"] == first.table1().loc["SimCLR-ResNet", "SSLMem"]
    with pytest.raises(LookupError, match="memlib-evidence add --chapter 06"):
        run_setups("smoke", store=tmp_path / "other", cache_dir=tmp_path / "empty", train=False, **kw)
