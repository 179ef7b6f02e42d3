"""Removal experiment: the selection rule and a smoke run end to end."""

import numpy as np
import pytest

from memlib.experiments.inputs import DOWNSTREAM, resize_to
from memlib.experiments.removal_run import run_removal, select_removal


def test_top_k_are_the_k_highest():
    scores = np.random.default_rng(3).normal(size=200)
    for k in (0, 1, 17, 200):
        sel = select_removal(scores, k, "top")
        assert len(sel) == len(set(sel)) == k
        rest = np.delete(scores, sel)
        if 0 < k < 200:
            assert scores[sel].min() >= rest.max()


def test_random_is_seeded_and_within_pool():
    scores = np.zeros(100)
    a, b, c = (select_removal(scores, 30, "random", seed=s) for s in (1, 1, 2))
    assert np.array_equal(a, b)
    assert not np.array_equal(a, c)
    for s in (a, c):
        assert len(np.unique(s)) == 30 and s.min() >= 0 and s.max() < 100


@pytest.mark.parametrize("kw, match", [({"k": 101}, "k=101"), ({"k": -1}, "k=-1"), ({"how": "worst"}, "how='worst'")])
def test_bad_input_is_named(kw, match):
    with pytest.raises(ValueError, match=match):
        select_removal(np.zeros(100), **{"k": 5, **kw})


def test_bad_settings_fail_before_compute():
    with pytest.raises(ValueError, match="fractions"):
        run_removal("smoke", fractions=(0.0,), progress=False)
    with pytest.raises(ValueError, match="half"):
        run_removal("smoke", half=1, progress=False)


def test_resize_digits_to_encoder_size():
    import torch

    from memlib.data.datasets import ImageDataset

    ds = ImageDataset(torch.full((3, 1, 8, 8), 200, dtype=torch.uint8), torch.zeros(3, dtype=torch.long), ["a"], "x")
    out = resize_to(ds, 1, 28)
    assert out.images.shape == (3, 1, 28, 28) and out.images.dtype == torch.uint8
    assert int(out.images.float().mean().round()) == 200  # a constant image stays constant


def test_smoke_run(fmnist_small):
    run = run_removal("smoke", progress=False)
    r = run.results
    assert set(r.how) == {"none", "top", "random"}
    k = r.loc[r.how == "top", "k"].iloc[0]
    assert k == round(0.25 * 24)
    for ds in (*DOWNSTREAM, "segmentation"):
        assert r[ds].between(0, 1).all() and run.floor[ds].between(0, 1).all()
    assert len(run.scores) == 24 and np.isfinite(run.scores).all()
    assert set(run.f_indices).isdisjoint(run.g_indices)
    claims = run.claims()
    for cid in ("S19", "S20"):
        assert claims.loc[cid, "status"].startswith("not reproduced yet")  # smoke decides nothing
    assert claims.loc["S21", "status"].startswith("not attempted")
    assert len(run.tests()) == len(DOWNSTREAM) + 1
    # the top-k retrain lost exactly the k best-ranked points of f's half
    from memlib.experiments.registry import get_experiment

    exp = get_experiment("removal")
    d = exp.design(exp.config("smoke"))[0].bind(run.store)
    top = next(s for label, s in d.named_specs().items() if label.startswith("top"))
    lost = np.setdiff1d(d.half_ids, top.indices)
    assert set(lost) == set(d.half_ids[np.argsort(-d.scores, kind="stable")[:k]])
    # the status counts every encoder of the bound design, top-k retrains included
    from memlib.experiments.evidence_cli import chapter_status

    st = next(c for c in chapter_status(run.store, "smoke", 1) if c["experiment"] == "removal")
    assert st["encoders_needed"] == len(d.keys()) == st["encoders_stored"] and st["designs_unbound"] == 0
    assert len(d.keys()) > len(exp.design(exp.config("smoke"))[0].keys())  # more than the unbound design knows
    # read back from the store alone (train=False), the run gives the same numbers
    again = run_removal("smoke", progress=False, train=False)
    cols = [*DOWNSTREAM, "segmentation"]
    assert np.allclose(again.results[cols].to_numpy(), r[cols].to_numpy())


def test_an_empty_store_is_refused_without_training(fmnist_small, tmp_path):
    with pytest.raises(LookupError, match="in/out ranking"):
        run_removal("smoke", progress=False, train=False)
    from memlib.evidence import EvidenceStore
    from memlib.experiments.evidence_cli import chapter_status

    st = next(c for c in chapter_status(EvidenceStore(tmp_path / "empty"), "smoke", 1) if c["experiment"] == "removal")
    assert st["designs_unbound"] == 1 and st["encoders_stored"] == 0  # said, not silently undercounted


def test_half_larger_than_the_pool_is_refused():
    with pytest.raises(ValueError, match=r"half=100 exceeds the in/out pool of 48 points"):
        run_removal("smoke", half=100, progress=False)
    with pytest.raises(ValueError, match=r"rank_encoders=6 must be a multiple of the in/out design's block \(4\)"):
        run_removal("smoke", rank_encoders=6, progress=False)


def _removal_run(effect, pair_raw):
    """A RemovalRun at the cpu preset whose top-k retrains probe ``effect`` below the random ones."""
    from pathlib import Path

    import pandas as pd

    from memlib.experiments.presets import get_preset
    from memlib.experiments.removal_run import RemovalRun

    rng = np.random.default_rng(0)
    rows = []
    for k in (12, 48):
        for seed in (0, 1, 2):
            base = rng.normal(0.7, 0.01, len(DOWNSTREAM))
            for how, shift in (("top", -effect), ("random", 0.0)):
                acc = base + shift + rng.normal(0, 0.002, len(DOWNSTREAM))
                rows.append({"k": k, "fraction": k / 150, "how": how, "seed": seed, **dict(zip(DOWNSTREAM, acc))})
    return RemovalRun(
        get_preset("cpu"), {}, 0, np.arange(150), np.arange(150, 300), np.zeros(150), np.zeros(150),
        pd.DataFrame(rows), {}, Path("."), pair_raw=pair_raw,
    )  # fmt: skip


def test_s19_needs_a_reliable_ranking_of_the_removed_points():
    rng = np.random.default_rng(1)
    signal = rng.normal(0, 1, 150)
    reliable = np.stack([signal + rng.normal(0, 0.1, 150) for _ in range(2)])
    unreliable = rng.normal(0, 1, (2, 150))  # two pairs that rank the points independently
    good = _removal_run(0.02, reliable).claims().loc["S19"]
    assert good.status.startswith("reproduced (cpu") and good.unit.startswith("retrained encoder pair")
    noisy = _removal_run(0.02, unreliable).claims().loc["S19"]
    assert noisy.status.startswith("inconclusive") and "unreliable" in noisy.statistic
    one_pair = _removal_run(0.02, reliable[:1]).claims().loc["S19"]
    assert one_pair.status.startswith("inconclusive") and "one encoder pair" in one_pair.statistic
    opposite = _removal_run(-0.02, reliable).claims().loc["S19"]
    assert opposite.status.startswith("not reproduced (cpu")
