"""One way to specify, train and cache an encoder (memlib.experiments.encoders)."""

import numpy as np
import pytest
import torch

from memlib.data.splits import make_splits
from memlib.experiments.artifacts import DP_ENCODERS, DYNAMICS, ENCODERS
from memlib.experiments.encoders import CACHE_SCHEMA, EncoderSpec, family_specs, fit, model_seed
from memlib.experiments.presets import get_preset
from memlib.experiments.setups_run import mask_ratio_kwargs
from memlib.training.dp import DPConfig


def test_method_kwargs_change_the_encoder_key_only_when_set(tmp_path):
    p = get_preset("smoke", method="mae", arch="vit_micro")
    idx = np.arange(10)
    plain = EncoderSpec.from_preset(p, idx, 0).checkpoint(tmp_path)
    empty = EncoderSpec.from_preset(p.replace(method_kwargs={}), idx, 0).checkpoint(tmp_path)
    half = EncoderSpec.from_preset(p.replace(method_kwargs={"mask_ratio": 0.5}), idx, 0).checkpoint(tmp_path)
    assert plain == empty != half
    assert p.replace(method_kwargs={"a": 1}).to_dict()["method_kwargs"] == {"a": 1}
    assert mask_ratio_kwargs(0.75) == {} and mask_ratio_kwargs(0.5) == {"mask_ratio": 0.5}


def test_the_key_covers_what_changes_the_encoder_and_nothing_else(tmp_path):
    p = get_preset("smoke")
    base = EncoderSpec.from_preset(p, range(10), 0)
    changed = [
        EncoderSpec.from_preset(p, range(11), 0),
        EncoderSpec.from_preset(p, range(10), 1),
        EncoderSpec.from_preset(p, range(10), 0, threads=2),
        EncoderSpec.from_preset(p, range(10), 0, lam=0.2),
        EncoderSpec.from_preset(p, range(10), 0, arch="vit_micro"),
        EncoderSpec.from_preset(p, range(10), 0, augmentation="crop_flip"),
        EncoderSpec.from_preset(p.replace(epochs=3), range(10), 0),
    ]
    assert len({s.key() for s in changed} | {base.key()}) == len(changed) + 1
    snap = EncoderSpec.from_preset(p, range(10), 0, snapshots=True)
    assert snap.key() == base.key() and snap.kind is DYNAMICS and base.kind is ENCODERS  # same encoder, own cache
    dp = EncoderSpec.from_preset(p, range(10), 0, dp=DPConfig(epsilon=8.0))
    assert dp.kind is DP_ENCODERS and dp.key() != base.key()
    assert base.run_config()["schema"] == CACHE_SCHEMA


def test_family_specs_seed_each_member_and_refuse_unknown_families():
    p = get_preset("smoke", models_per_family=2)
    splits = make_splits(1000, 100, 32, 16, seed=0)
    specs = family_specs(p, splits, 3)
    assert [s.train.seed for s in specs["f"] + specs["g"]] == [model_seed(3, f, i) for f in "fg" for i in range(2)]
    assert list(specs["f"][0].indices) == splits.f_train.tolist()
    with pytest.raises(ValueError, match=r"families=\('h',\) must be a non-empty subset"):
        family_specs(p, splits, 0, ("h",))


def test_pool_trains_the_same_weights_as_one_process(fmnist_small, tmp_path):
    """Worker processes (one thread each) and in-process training give bit-identical encoders."""
    p = get_preset("smoke", epochs=2, batch_size=16)
    specs = [EncoderSpec.from_preset(p, range(32 * i, 32 * i + 32), model_seed(0, "f", i)) for i in range(2)]
    pooled = fit(specs, fmnist_small, tmp_path / "pool", "cpu", progress=False, workers=2)
    alone = fit(specs, fmnist_small, tmp_path / "one", "cpu", progress=False, workers=1)
    for a, b in zip(pooled, alone):
        sa, sb = a.encoder.state_dict(), b.encoder.state_dict()
        assert all(torch.equal(sa[k], sb[k]) for k in sa)
        assert a.history == b.history
    again = fit(specs + specs[:1], fmnist_small, tmp_path / "pool", "cpu", progress=False)  # all cached now
    assert [f.result.resumed_from_epoch for f in again] == [p.epochs] * 3


def test_workers_setting_is_checked(monkeypatch):
    from memlib.experiments.encoders import default_workers

    monkeypatch.setenv("MEMLIB_WORKERS", "0")
    with pytest.raises(ValueError, match="MEMLIB_WORKERS='0' must be an int ≥ 1"):
        default_workers()
    monkeypatch.setenv("MEMLIB_WORKERS", "3")
    assert default_workers() == 3


def test_the_null_family_trains_on_f_points_with_seeds_of_its_own():
    p = get_preset("smoke", models_per_family=2, null_models=3)
    splits = make_splits(1000, 100, 32, 16, seed=0)
    specs = family_specs(p, splits, 0, ("f", "g", "f'"))
    assert len(specs["f'"]) == 3 and all(s.indices == specs["f"][0].indices for s in specs["f'"])
    seeds = [s.train.seed for fam in specs.values() for s in fam]
    assert len(set(seeds)) == len(seeds)  # no null member repeats an f or g member
    assert {model_seed(0, "f'", i) for i in range(100)}.isdisjoint(
        {model_seed(0, f, i) for f in "fg" for i in range(100)} | {500 + r for r in range(100)}
    )
