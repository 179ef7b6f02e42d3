"""DP-SGD for MAE (exact per-sample gradients, clipping, the accountant's ε at δ) and the DP chapter's run:
settings checked before any compute, the baselines, the random floor, calibrated SSLMem and the claims by the
verdict rule."""

import math

import pytest
import torch

from memlib.data.augment import CropFlip
from memlib.methods import build_method
from memlib.methods.mae import MAE
from memlib.models import build_encoder
from memlib.training import TrainConfig
from memlib.training.dp import DPConfig, _OneSampleLoss, dp_train


def _mae(seed=0):
    torch.manual_seed(seed)
    enc = build_encoder("vit_micro", 1, 28)
    return MAE(enc, decoder_dim=32, decoder_depth=1, decoder_heads=2, augmentation=CropFlip(size=28))


def test_one_sample_loss_is_mae_per_sample_loss(fmnist_small):
    m = _mae()
    x = m.augmentation(fmnist_small.images[:4], torch.Generator().manual_seed(0))
    want = m.per_sample_loss(x, torch.Generator().manual_seed(7))
    keep, mask, restore = m.random_masking(4, x.device, torch.Generator().manual_seed(7))
    one = _OneSampleLoss(m)
    got = torch.stack([one(x[i], keep[i], mask[i], restore[i]) for i in range(4)])
    assert torch.allclose(got, want, atol=1e-5)


def test_per_sample_gradients_are_exact(fmnist_small):
    """vmap(grad) inside dp_train equals one backward pass per sample."""
    from torch.func import functional_call, grad, vmap

    m = _mae()
    x = m.augmentation(fmnist_small.images[:3], torch.Generator().manual_seed(0))
    keep, mask, restore = m.random_masking(3, x.device, torch.Generator().manual_seed(1))
    one = _OneSampleLoss(m)
    params = {k: p.detach() for k, p in m.named_parameters()}
    bufs = {f"method.{k}": b for k, b in m.named_buffers()}
    g = vmap(
        grad(lambda p, *a: functional_call(one, ({f"method.{k}": v for k, v in p.items()}, bufs), a)),
        in_dims=(None, 0, 0, 0, 0),
    )(params, x, keep, mask, restore)
    for i in range(3):
        m.zero_grad()
        one(x[i], keep[i], mask[i], restore[i]).backward()
        for k, p in m.named_parameters():
            if p.grad is not None:
                assert torch.allclose(g[k][i], p.grad, atol=1e-5), k


def _run(images, **dp):
    cfg = TrainConfig(epochs=1, batch_size=16, lr=1e-3, warmup_epochs=0)
    return dp_train(_mae(), images, cfg, DPConfig(**dp), progress=False)


def test_epsilon_is_finite_and_shrinks_as_noise_grows(fmnist_small):
    x = fmnist_small.images[:64]
    lo, hi = _run(x, noise_multiplier=0.8), _run(x, noise_multiplier=2.0)
    assert math.isfinite(lo.epsilon) and math.isfinite(hi.epsilon) and lo.epsilon > hi.epsilon > 0
    assert lo.steps == hi.steps == 4
    target = _run(x, epsilon=8.0)  # σ from opacus for the target; the spent ε meets it
    assert 0 < target.epsilon <= 8.0 * 1.02 and target.noise_multiplier > 0
    free = _run(x, epsilon=math.inf)
    assert free.noise_multiplier == 0 and math.isinf(free.epsilon)


def test_delta_defaults_to_1e5_and_is_what_the_accountant_used(fmnist_small):
    from opacus.accountants import RDPAccountant

    assert DPConfig().delta == 1e-5
    res = _run(fmnist_small.images[:64], epsilon=8.0)
    assert res.delta == 1e-5
    acct = RDPAccountant()
    for _ in range(res.steps):
        acct.step(noise_multiplier=res.noise_multiplier, sample_rate=res.sample_rate)
    assert res.epsilon == pytest.approx(acct.get_epsilon(1e-5), rel=1e-9)
    assert res.epsilon > acct.get_epsilon(1 / 64) * 1.01  # the old δ = 1/N would report less spent


def test_delta_at_or_above_one_over_n_is_refused(fmnist_small):
    with pytest.raises(ValueError, match=r"delta=0.03125 must be below 1/N = 0.0312 for N = 32"):
        _run(fmnist_small.images[:32], epsilon=8.0, delta=1 / 32)


def test_clipping_bounds_each_sample(fmnist_small):
    """With σ = 0 and a tiny C, the whole update's gradient norm is at most (batch · C) / (q·N)."""
    m = _mae()
    before = {k: p.detach().clone() for k, p in m.named_parameters()}
    cfg = TrainConfig(epochs=1, batch_size=64, lr=1e-3, warmup_epochs=0, weight_decay=0.0)
    dp_train(m, fmnist_small.images[:64], cfg, DPConfig(noise_multiplier=0.0, max_grad_norm=1e-3), progress=False)
    grads = [p.grad for p in m.parameters() if p.grad is not None]
    total = torch.linalg.vector_norm(torch.stack([g.norm() for g in grads]))
    assert 0 < float(total) <= 1e-3 * 1.0001  # q = 1: every sample, divided by N
    assert any(not torch.equal(before[k], p) for k, p in m.named_parameters())


@pytest.mark.parametrize(
    "kw, match",
    [
        ({"epsilon": 0}, "epsilon=0"),
        ({"epsilon": -1.0}, "epsilon=-1.0"),
        ({"max_grad_norm": 0}, "max_grad_norm=0"),
        ({"delta": 1.5}, "delta=1.5"),
        ({"delta": None}, "delta=None"),
    ],
)
def test_bad_dp_config_is_named(kw, match):
    with pytest.raises(ValueError, match=match):
        DPConfig(**kw)


def test_refuses_contrastive_and_batchnorm(fmnist_small):
    simclr = build_method("simclr", build_encoder("resnet_narrow", 1, 28))
    with pytest.raises(TypeError, match="MAE"):
        dp_train(simclr, fmnist_small.images[:8], TrainConfig(epochs=1, batch_size=4), DPConfig())


def test_finished_checkpoint_is_loaded_with_its_accountant(fmnist_small, tmp_path):
    cfg = TrainConfig(epochs=1, batch_size=16, lr=1e-3, warmup_epochs=0)
    dp, x, ck = DPConfig(noise_multiplier=1.0), fmnist_small.images[:32], tmp_path / "ck.pt"
    a = dp_train(_mae(), x, cfg, dp, checkpoint_path=ck, progress=False)
    m2 = _mae(seed=1)  # other initial weights: the checkpoint must replace them
    b = dp_train(m2, x, cfg, dp, checkpoint_path=ck, progress=False)
    assert b.epsilon == a.epsilon and b.steps == a.steps and b.history == a.history
    saved = torch.load(ck, weights_only=False)["method"]
    assert all(torch.equal(v, saved[k]) for k, v in m2.state_dict().items())


# ---- the DP chapter's run (memlib.experiments.dp_run) ----------------------------------------------------


@pytest.mark.parametrize(
    "kw, match",
    [
        ({"delta": 1.0}, r"delta=1.0 must be in \(0, 1\)"),
        ({"delta": 0.05}, r"delta=0.05 must be below 1/N = 0.0208 \(N = 48"),
        ({"epsilons": ()}, r"epsilons=\(\) is empty"),
        ({"epsilons": (math.inf, 8.0)}, "epsilon=inf is the 'clip only' baseline"),
        ({"epsilons": (20.0, 0)}, "epsilon=0 must be a number > 0"),
        ({"epsilons": (8.0, 8.0)}, "repeats"),
        ({"max_grad_norm": -1.0}, "max_grad_norm=-1.0"),
        ({"public": -1}, "public=-1 must be an int"),
        ({"dp_batch_size": 1000}, "dp_batch_size=1000 exceeds N = 48"),
    ],
)
def test_bad_settings_fail_before_compute(tmp_path, kw, match):
    from memlib.experiments.dp_run import run_dp

    with pytest.raises(ValueError, match=match):
        run_dp("smoke", cache_dir=tmp_path / "cache", progress=False, **kw)
    assert not any(tmp_path.iterdir())  # nothing loaded, trained or written


def test_finetune_spec_starts_from_its_init_and_keys_it(fmnist_small, tmp_path):
    from memlib.experiments.dp_run import FineTuneSpec
    from memlib.experiments.encoders import EncoderSpec
    from memlib.experiments.presets import get_preset

    p = get_preset("smoke", method="mae")
    init = EncoderSpec.from_preset(p, range(32), 600, arch="vit_micro", augmentation="crop_flip")
    pretrained = init.build(fmnist_small)
    with torch.no_grad():
        next(pretrained.parameters()).add_(1.0)  # weights no seeded build gives
    torch.save({"method": pretrained.state_dict()}, tmp_path / "init.pt")
    base = EncoderSpec.from_preset(p, range(32, 64), 0, arch="vit_micro", augmentation="crop_flip")
    fields = {k: getattr(base, k) for k in ("dataset", "indices", "arch", "method", "augmentation", "train")}
    ft = FineTuneSpec(**fields, init=init, init_path=str(tmp_path / "init.pt"))
    got = ft.build(fmnist_small).state_dict()
    assert all(torch.equal(v, got[k]) for k, v in pretrained.state_dict().items())
    assert not all(torch.equal(v, got[k]) for k, v in base.build(fmnist_small).state_dict().items())
    other = FineTuneSpec(**fields, init=base, init_path=str(tmp_path / "init.pt"))
    assert len({ft.key(), base.key(), other.key()}) == 3  # the init is part of the cache key


def _table(values, informative=None, clip=None):
    """A DPRun-like (results, levels) pair: ``values[setting]`` holds each f encoder's value (every claim's column)."""
    import pandas as pd

    ranks = {"MAE (no DP)": 4.0, "clip only": float("nan"), "ε = 20": 3.0, "ε = 8": 2.0, "ε = 4": 1.0}
    informative = informative or {}
    values = dict(values, **({"clip only": clip} if clip is not None else {}))
    rows = [
        {"setting": s, "member": i, "sslmem_calibrated": v, "linear_acc": v, "unitmem": v}
        for s, vs in values.items()
        for i, v in enumerate(vs)
    ]
    levels = pd.DataFrame(
        [
            {
                "setting": s,
                "privacy_rank": ranks[s],
                "ranked": s != "clip only",
                "acc": 0.7 if informative.get(s, True) else 0.47,
                "floor_acc": 0.46,
                "floor_p": 0.001 if informative.get(s, True) else 0.4,
                "informative": informative.get(s, True),
            }
            for s in values
        ]
    ).set_index("setting")
    return pd.DataFrame(rows), levels


def _claims(results, levels):
    from memlib.experiments.dp_run import dp_claims
    from memlib.experiments.presets import get_preset

    return dp_claims(results, levels, get_preset("cpu"))


FALLING = {"MAE (no DP)": [0.9, 0.91, 0.92, 0.93], "ε = 20": [0.5, 0.51, 0.52, 0.53], "ε = 8": [0.1, 0.11, 0.12, 0.13]}
CLIP_REVERSED = [9.0, 9.1, 9.2, 9.3]


def test_claims_follow_the_verdict_rule_over_f_encoders():
    c = _claims(*_table(FALLING))
    assert (c.status == "reproduced (cpu)").all(), c.statistic.tolist()
    assert (c.unit == "f encoder").all() and (c.n == 12).all()
    assert c.statistic.str.contains("Kendall τ").all() and c.test.str.contains("Kendall").all()
    rising = {"MAE (no DP)": FALLING["ε = 8"], "ε = 20": FALLING["ε = 20"], "ε = 8": FALLING["MAE (no DP)"]}
    assert (_claims(*_table(rising)).status == "not reproduced (cpu)").all()


def test_one_f_encoder_per_level_is_inconclusive():
    # Four perfectly ordered levels: Kendall's exact p = 1/24 < 0.05, yet one encoder per level carries no
    # estimate of training noise.
    one = {"MAE (no DP)": [0.9], "ε = 20": [0.5], "ε = 8": [0.1], "ε = 4": [0.0]}
    c = _claims(*_table(one))
    assert (c.status == "inconclusive (cpu)").all()
    assert c.statistic.str.contains("n = 1: one unit carries no estimate").all()


def test_uninformative_and_clip_only_settings_are_left_out_of_the_claims():
    base = _claims(*_table(FALLING))
    # ε = 8 below the floor, with values that would reverse the ordering: left out and named, and the verdict
    # holds on the other two levels.
    flipped = dict(FALLING, **{"ε = 8": CLIP_REVERSED})
    c = _claims(*_table(flipped, informative={"ε = 8": False}))
    assert (c.n == 8).all()
    assert c.statistic.str.contains(r"left out \(below the random floor\): ε = 8: linear acc 0.470 vs floor").all()
    assert (c.status == "reproduced (cpu)").all(), c.statistic.tolist()
    # Clip only is never ranked: values that would reverse the ordering change nothing.
    assert (_claims(*_table(FALLING, clip=CLIP_REVERSED)).statistic == base.statistic).all()
    # One informative ranked setting: inconclusive, and the statistic says which fell below the floor.
    c = _claims(*_table(FALLING, informative={"ε = 20": False, "ε = 8": False}))
    assert (c.status == "inconclusive (cpu)").all()
    assert c.statistic.str.startswith("ε = 20 and ε = 8 do not beat the random floor (ε = 20: linear acc 0.470").all()
    assert c.statistic.str.endswith("1 informative ranked setting(s) of 3, 2 needed").all()


@pytest.fixture(scope="module")
def smoke(tmp_path_factory):
    from memlib.experiments.dp_run import run_dp

    return run_dp("smoke", cache_dir=tmp_path_factory.mktemp("cache"), progress=False)


def test_smoke_run_baselines_and_privacy(smoke):
    r = smoke.results.set_index("setting")
    assert list(r.index) == ["MAE (no DP)", "clip only", "ε = 20", "ε = 8"]
    plain, clip = r.loc["MAE (no DP)"], r.loc["clip only"]
    # The plain baseline is the ordinary trainer: no clipping, no noise, no accountant.
    assert plain.noise_multiplier == 0 and math.isinf(plain.epsilon) and math.isnan(plain.delta)
    assert math.isnan(plain.max_grad_norm) and plain.steps == 3  # 48 points in batches of 16, one epoch
    # Clip only: per-sample clipping, σ = 0, ε spent ∞.
    assert clip.noise_multiplier == 0 and math.isinf(clip.epsilon) and clip.max_grad_norm == 1.0
    dp = r.loc[["ε = 20", "ε = 8"]]
    assert (dp.delta == 1e-5).all() and (dp.epsilon <= dp.target_epsilon * 1.02).all() and (dp.epsilon > 0).all()
    assert dp.noise_multiplier.iloc[0] < dp.noise_multiplier.iloc[1]  # smaller ε needs more noise
    assert r.linear_acc.between(0, 1).all() and r.unitmem.between(0, 1).all()


def test_smoke_run_floor_scores_and_claims(smoke):
    from memlib.atomic import is_complete

    assert list(smoke.floor.seed) == [900, 901, 902] and (smoke.floor.arch == "vit_micro").all()
    assert len(smoke.public) == 1  # public pretraining: one encoder per member
    lv = smoke.levels
    assert not lv.loc["clip only", "ranked"] and lv.privacy_rank.dropna().tolist() == [3.0, 2.0, 1.0]
    assert len(smoke.encoders) == 8 and set(smoke.encoders.family) == {"f", "g"}  # g is probed too
    # One f encoder per setting: its calibrated score is the mean of the per-point calibrated scores.
    r = smoke.results.set_index("setting")
    for name, pts in smoke.points.items():
        assert len(pts) == 16 and r.loc[name, "sslmem_calibrated"] == pytest.approx(pts.mean(), abs=1e-9)
    assert (r.sslmem_calibrated != r.sslmem_raw).all()
    c = smoke.claims()
    assert list(c.index) == ["S24", "S25", "L9"] and c.status.str.startswith("not reproduced yet").all()
    assert len(smoke.summary()) == 4
    assert is_complete(smoke.run_dir)  # results and provenance written, then the COMPLETE marker
