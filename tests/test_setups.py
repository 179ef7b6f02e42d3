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
    pd.testing.assert_frame_equal(first.inout_encoders(), again.inout_encoders())
    assert {k for k in first.inout if k[0] != "dynamics"} == {
        ("base", "SimCLR-ResNet"), ("supervised", "Supervised-ResNet"), ("train_aug", "noise"),
        ("measure_aug", "simclr"), ("measure_aug", "rotation")}  # fmt: skip
    assert sorted(e for t, e in first.inout if t == "dynamics") == sorted(first.dynamics["epoch"])
    pd.testing.assert_frame_equal(first.claims(), again.claims())
    snaps = EvidenceStore(store).load("encoders")
    rows = first.settings["inout"]["dynamics"]  # f and g, and every in/out row, at every snapshot epoch
    assert (snaps.kind == "snapshot").sum() == (2 + rows) * len(first.dynamics)
    assert first.measure_aug.loc["simclr", "SSLMem"] == first.table1().loc["SimCLR-ResNet", "SSLMem"]
    with pytest.raises(LookupError, match="memlib-evidence add --chapter 06"):
        run_setups("smoke", store=tmp_path / "other", cache_dir=tmp_path / "empty", train=False, **kw)


def test_inout_levels_pair_rows_with_chapter_01b():
    """Every in/out level is chapter 01b's subset design (same pool, the first k rows of its inclusion, the same
    model seed per row) with one setup's recipe; the base and measuring levels are 01b's own encoders."""
    import numpy as np

    from memlib.experiments.setups_evidence import inout_designs, setups_config
    from memlib.experiments.subset_study import SubsetSettings, subset_design

    cfg = setups_config("smoke")
    full = subset_design(*SubsetSettings.for_preset("smoke"), 0)
    levels = inout_designs(cfg)
    assert {t for t, _ in levels} == {"base", "supervised", "measure_aug", "train_aug", "mask_ratio", "dynamics"}
    for (table, level), d in levels.items():
        k = len(d.specs)
        assert np.array_equal(d.ids, full.ids) and np.array_equal(d.inclusion, full.inclusion[:k])
        assert [s.train.seed for s in d.specs] == [s.train.seed for s in full.specs[:k]]
        if table in ("base", "measure_aug"):
            assert d.keys() == full.keys()[:k]
            assert d.scoring["augmentation"] == (level if table == "measure_aug" else full.scoring["augmentation"])
        else:
            assert not set(d.keys()) & set(full.keys())  # another recipe: other encoders
    assert levels[("mask_ratio", 0.5)].specs[0].method == "mae"
    snaps = [d for (t, _), d in levels.items() if t == "dynamics"]
    assert all(x.snapshots for d in snaps for x in d.specs)
    assert [x.key() for x in snaps[0].specs] == full.keys()[: len(snaps[0].specs)]  # 01b's encoders, retrained
    assert len({k for d in snaps for k in d.keys()}) == len(snaps) * len(snaps[0].specs)  # a key per snapshot
    assert len({d.name for d in levels.values()}) == len(levels)  # each level's roles are its own
    with pytest.raises(ValueError, match="exceed chapter 01b's"):
        inout_designs(setups_config("smoke", inout={"supervised": 4 * 100}))
    with pytest.raises(ValueError, match="multiple of 4"):
        setups_config("smoke", inout={"supervised": 6})


def _planted(design, rows, memorisation, accuracy, rng):
    """A SubsetStudy of ``rows`` encoders whose in-versus-out contrast is ``memorisation`` (plus noise)."""
    import numpy as np
    import pandas as pd

    from memlib.experiments.subset_study import SubsetStudy
    from memlib.memorization.subset import balanced_inclusion, subset_sslmem_from_alignment

    inc = balanced_inclusion(40, rows, 0)
    y = 1.0 + rng.normal(0, 0.05, (rows, 1)) + rng.normal(0, 0.1, (1, 40)) + rng.normal(0, 0.01, (rows, 40))
    y = y - inc * (memorisation + rng.normal(0, 0.002, (rows, 1)))
    probe = pd.DataFrame({"linear_acc": accuracy + rng.normal(0, 0.002, rows)})
    return SubsetStudy(design, subset_sslmem_from_alignment(y, inc), np.zeros(40), probe, {})


@pytest.mark.parametrize("planted", [True, False])
def test_inout_claims_find_a_planted_difference_and_only_then(planted):
    """S17 and S28 from planted in/out levels: a real difference between levels (supervised memorises more; crop
    memorises more and probes better) is reproduced; with none planted they are not."""
    import dataclasses

    import numpy as np
    import pandas as pd

    from memlib.experiments.setups_run import SETUPS_SETTINGS, SetupsRun, SetupsSettings

    rng = np.random.default_rng(1)
    gap = 0.03 if planted else 0.0
    levels = {
        ("base", "SimCLR-ResNet"): (0.02, 0.80),
        ("supervised", "Supervised-ResNet"): (0.02 + gap, 0.80),
        ("train_aug", "crop_flip"): (0.02 + gap, 0.80 + gap),
        ("train_aug", "noise"): (0.02, 0.80),
        ("train_aug", "mask"): (0.02, 0.80),
    }
    inout = {k: _planted(None, 16, m, a, rng) for k, (m, a) in levels.items()}
    s = dataclasses.replace(SetupsSettings(**SETUPS_SETTINGS["smoke"]), train_augmentation="simclr")
    empty = pd.DataFrame()
    run = SetupsRun(get_preset("cpu"), s, pd.DataFrame(columns=["setup", "seed", "method", "beats_floor"]),
                    pd.DataFrame(), empty, empty, empty, {}, empty, {}, empty, {}, {}, empty, empty, {}, {}, None,
                    inout=inout)  # fmt: skip
    ev = run.evidence()
    assert set(ev) == {"S17", *(f"S28 {c}: crop_flip > {lv}" for c in ("relative memorisation", "linear acc")
                                for lv in ("noise", "mask"))}  # fmt: skip
    assert all(e.n == 16 for e in ev.values())
    plan = run.planned_n()
    assert plan.loc["S17", "n now"] == 16 and plan.loc["S17", "encoders per unit"] == 1
    from memlib.verdicts import REPRODUCED, decide, parts_status

    ver = decide(ev)
    s28 = parts_status([ver[k].status for k in ev if k.startswith("S28")])
    if planted:
        assert ver["S17"].status == REPRODUCED and s28 == REPRODUCED
    else:
        assert ver["S17"].status != REPRODUCED and s28 != REPRODUCED
