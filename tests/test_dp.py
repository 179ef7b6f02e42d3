"""DP-SGD for MAE: exact per-sample gradients, clipping, the accountant's ε, and a smoke run."""

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
    assert lo.steps == hi.steps == 4 and lo.delta == 1 / 64
    target = _run(x, epsilon=8.0)  # σ from opacus for the target; the spent ε meets it
    assert 0 < target.epsilon <= 8.0 * 1.02 and target.noise_multiplier > 0
    free = _run(x, epsilon=math.inf)
    assert free.noise_multiplier == 0 and math.isinf(free.epsilon)


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
    ],
)
def test_bad_dp_config_is_named(kw, match):
    with pytest.raises(ValueError, match=match):
        DPConfig(**kw)


def test_refuses_contrastive_and_batchnorm(fmnist_small):
    simclr = build_method("simclr", build_encoder("resnet_narrow", 1, 28))
    with pytest.raises(TypeError, match="MAE"):
        dp_train(simclr, fmnist_small.images[:8], TrainConfig(epochs=1, batch_size=4), DPConfig())


def test_bad_epsilon_fails_before_compute(tmp_path):
    from memlib.experiments.dp_run import run_dp

    with pytest.raises(ValueError, match="epsilon=0"):
        run_dp("smoke", cache_dir=tmp_path, epsilons=(math.inf, 0), progress=False)
    assert not (tmp_path / "dp").exists()


def test_smoke_run():
    from memlib.experiments.dp_run import run_dp

    run = run_dp("smoke", progress=False)
    r = run.results
    assert list(r.target_epsilon) == [math.inf, 20.0, 8.0]
    fin = r[r.target_epsilon < math.inf]
    assert (fin.epsilon <= fin.target_epsilon * 1.02).all() and (fin.epsilon > 0).all()
    assert r.noise_multiplier.iloc[1] < r.noise_multiplier.iloc[2]  # smaller ε needs more noise
    assert r.linear_acc.between(0, 1).all() and r.unitmem.between(0, 1).all()
    assert run.claims().loc[["S24", "L9"], "status"].str.startswith("not reproduced yet").all()
    assert len(run.summary()) == 3
    from memlib.atomic import is_complete

    assert is_complete(run.run_dir)  # results and provenance written, then the COMPLETE marker


def test_finished_checkpoint_is_loaded_with_its_accountant(fmnist_small, tmp_path):
    cfg = TrainConfig(epochs=1, batch_size=16, lr=1e-3, warmup_epochs=0)
    dp, x, ck = DPConfig(noise_multiplier=1.0), fmnist_small.images[:32], tmp_path / "ck.pt"
    a = dp_train(_mae(), x, cfg, dp, checkpoint_path=ck, progress=False)
    m2 = _mae(seed=1)  # other initial weights: the checkpoint must replace them
    b = dp_train(m2, x, cfg, dp, checkpoint_path=ck, progress=False)
    assert b.epsilon == a.epsilon and b.steps == a.steps and b.history == a.history
    saved = torch.load(ck, weights_only=False)["method"]
    assert all(torch.equal(v, saved[k]) for k, v in m2.state_dict().items())
