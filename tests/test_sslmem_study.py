"""Chapter 01's study: claims decided over encoder pairs, on synthetic runs with planted effects, and the
smoke study end to end."""

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from memlib.data.splits import SUBSETS, Splits
from memlib.experiments.page import evidence, table
from memlib.experiments.presets import get_preset
from memlib.experiments.sslmem_experiment import SSLMemRun
from memlib.experiments.sslmem_study import SSLMemStudy, StudySettings, pair_scores, run_sslmem_study
from memlib.memorization.sslmem import SSLMemResult
from memlib.verdicts import INCONCLUSIVE, NOT_REPRODUCED, REPRODUCED, parts_status

N_PER_SUBSET = 30


def _run(seed, effect, pairs=4, offset_sd=0.01, point_sd=0.002, null=False):
    """An SSLMemRun whose pair i scores S_C at +effect and S_I at −effect above the pair's own random offset."""
    rng = np.random.default_rng(seed)
    subset = np.repeat(SUBSETS, N_PER_SUBSET)
    shift = {"candidate": effect, "shared": 0.0, "extra": 0.0, "independent": -effect}
    mean = np.array([shift[s] for s in subset])
    align_f = rng.normal(0.5, 0.05, (pairs, len(subset)))
    offsets = rng.normal(0, offset_sd, (pairs, 1))
    align_g = align_f + mean + offsets + rng.normal(0, point_sd, (pairs, len(subset)))
    raw = align_g.mean(0) - align_f.mean(0)
    res = SSLMemResult(align_f.mean(0), align_g.mean(0), raw, raw / np.ptp(raw), align_f, align_g, 5, "pairwise")
    null_res = None
    if null:
        z = rng.normal(0, point_sd, len(subset)) + rng.normal(0, offset_sd)  # f′ vs f has an offset too
        null_res = SSLMemResult(align_f.mean(0), align_f.mean(0) + z, z, z / np.ptp(z), align_f, align_f, 5, "x")
    n = N_PER_SUBSET
    splits = Splits(np.arange(n), np.arange(n, 2 * n), np.arange(2 * n, 3 * n), np.arange(n), seed)
    return SSLMemRun(
        get_preset("cpu"), seed, splits, res, subset, None, np.zeros(len(subset), int), [], {},
        pd.DataFrame(), {}, Path("."), null=null_res,
    )  # fmt: skip


def _study(effect, seeds=(0, 1, 2), **kw):
    s = StudySettings(seeds=seeds)
    return SSLMemStudy(s, [_run(seed, effect, **kw) for seed in seeds], [], [])


def test_a_planted_memorisation_effect_is_reproduced_over_pairs():
    claims = _study(0.02).claims()
    for cid in ("S1", "S4", "S5", "S7"):
        assert claims.loc[cid, "status"].startswith(REPRODUCED), (cid, claims.loc[cid, "statistic"])
        assert claims.loc[cid, "unit"].startswith("encoder pair") and claims.loc[cid, "n"] == 12


def test_no_effect_under_large_pair_offsets_is_not_called_reproduced():
    """Offsets of ±0.01 per pair with no memorisation: point-level tests would fire, the pair-level ones must not."""
    claims = _study(0.0, offset_sd=0.01).claims()
    for cid in ("S1", "S4", "S5", "S6", "S7", "S8"):
        assert not claims.loc[cid, "status"].startswith(REPRODUCED), (cid, claims.loc[cid, "statistic"])


def test_the_opposite_effect_is_not_reproduced():
    claims = _study(-0.02).claims()
    assert claims.loc["S5", "status"].startswith(NOT_REPRODUCED)
    assert "opposite" in claims.loc["S5", "statistic"]


def test_one_encoder_pair_is_inconclusive_whatever_its_effect():
    claims = _study(0.05, seeds=(0,), pairs=1).claims()
    assert claims.loc["S5", "status"].startswith(INCONCLUSIVE) and claims.loc["S5", "n"] == 1


def test_scores_are_antisymmetric_when_f_and_g_swap():
    run = _run(0, 0.02)
    swapped = _run(0, 0.02)
    swapped.result = SSLMemResult(
        run.result.align_g, run.result.align_f, -run.result.raw, -run.result.score,
        run.result.align_g_models, run.result.align_f_models, 5, "pairwise",
    )  # fmt: skip
    a, b = pair_scores(run), pair_scores(swapped)
    for kind in ("raw", "normalised", "calibrated"):
        np.testing.assert_allclose(a[kind], -b[kind], atol=1e-12)


def test_calibration_removes_each_pairs_offset():
    run = _run(0, 0.0, offset_sd=0.05, point_sd=0.0)
    cal = pair_scores(run)["calibrated"]
    np.testing.assert_allclose(cal, 0.0, atol=1e-12)  # all points of a pair share its offset, S_E included


def test_reliability_tells_a_stable_ranking_from_noise():
    stable = _run(0, 0.02, point_sd=0.0)
    per_point = np.random.default_rng(1).normal(0, 0.01, stable.result.raw.shape)  # the same in every pair
    stable.result.align_g_models = stable.result.align_g_models + per_point
    noise = _run(0, 0.02, point_sd=0.01, offset_sd=0.0)
    assert SSLMemStudy(StudySettings(seeds=(0,)), [stable], [], []).ranking_reliable()
    assert not SSLMemStudy(StudySettings(seeds=(0,)), [noise], [], []).ranking_reliable()


def test_the_null_family_is_the_per_point_null():
    study = _study(0.02, null=True)
    sig = study.significance()
    assert sig.loc["S_C", "share"] > 0.9 and sig.loc["S_S", "share"] < 0.2


def test_parts_are_counted_k_of_m():
    assert parts_status([REPRODUCED, REPRODUCED]) == REPRODUCED
    assert parts_status([REPRODUCED, INCONCLUSIVE]) == "partly reproduced (1 of 2 parts, none refuted)"
    assert parts_status([REPRODUCED, NOT_REPRODUCED]) == NOT_REPRODUCED  # a refuted part refutes the claim
    assert parts_status([INCONCLUSIVE, NOT_REPRODUCED]) == NOT_REPRODUCED
    assert parts_status([INCONCLUSIVE, INCONCLUSIVE]) == INCONCLUSIVE
    with pytest.raises(ValueError, match="at least one part"):
        parts_status([])


def test_settings_are_checked():
    with pytest.raises(ValueError, match="paired"):
        StudySettings(seeds=(0, 1), paired=(2,))
    with pytest.raises(ValueError, match="distinct"):
        StudySettings(seeds=(0, 0))
    with pytest.raises(ValueError, match="shared, candidate, epochs"):
        StudySettings(seeds=(0,), scaling=((10, 5),))


def test_tables_show_no_nan_and_evidence_names_unit_and_n():
    html = table(pd.DataFrame({"a": [0.123456, np.nan], "b": [3.0, 4.0]})).to_html()
    assert "nan" not in html.lower() and "—" in html and "padding" in html and "0.123" in html
    row = pd.Series({"test": "t-test over pairs", "unit": "encoder pair", "n": 12})
    assert evidence(row) == "t-test over pairs; unit: encoder pair, n = 12"


def test_the_smoke_study_runs_end_to_end(tmp_path):
    study = run_sslmem_study("smoke", cache_dir=tmp_path, progress=False)
    assert len(study.runs) == 2 and len(study.paired) == 1 and len(study.scaling_runs) == 1
    claims = study.claims()
    assert list(claims.index) == ["S1", "S2", "S3", "S4", "S5", "S6", "S7", "S8", "S9", "S11", "S12"]
    assert claims.status.str.startswith("not reproduced yet (smoke").all()  # smoke decides nothing
    assert (claims.n == 2).all()
    assert set(study.scaling()["train size"]) == {96, 64}


def test_encoders_that_do_not_beat_the_random_floor_decide_nothing():
    study = _study(0.02)
    for run in study.runs:
        run.probe = pd.DataFrame({"family": ["f"] * 3, "linear_acc": [0.60, 0.61, 0.59]})
        run.floor = pd.DataFrame({"linear_acc": [0.60, 0.62, 0.61]})
    assert not study.floor_check()["informative"]
    claims = study.claims()
    assert claims.status.str.startswith("inconclusive").all() and claims.statistic.str.contains("uninformative").all()
    for run in study.runs:
        run.probe["linear_acc"] = [0.80, 0.81, 0.79]
    assert study.floor_check()["informative"]
    assert study.claims().loc["S5", "status"].startswith(REPRODUCED)
