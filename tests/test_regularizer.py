"""Alignment regulariser: the loss formula, its sign, validation, and the λ sweep at smoke."""

import numpy as np
import pytest
import torch

from memlib.data.augment import SimCLRAugment
from memlib.methods import build_method
from memlib.methods.regularizer import AlignmentRegularized, view_alignment
from memlib.models import build_encoder
from memlib.training import TrainConfig, train


def _simclr(seed=0, size=28):
    torch.manual_seed(seed)
    return build_method("simclr", build_encoder("resnet_narrow", 1, size), augmentation=SimCLRAugment(size=size))


@pytest.mark.parametrize("lam", [-0.1, 1.0, 1.5, True, "0.1", None])
def test_bad_lambda_is_named(lam):
    with pytest.raises(ValueError, match=r"lam="):
        AlignmentRegularized(_simclr(), lam)


def test_loss_is_the_papers_formula(fmnist_small):
    """(1 − λ) L_SSL − λ · mean d(f(x'), f(x'')), with the views drawn after the base method's."""
    x, lam = fmnist_small.images[:16], 0.3
    reg = AlignmentRegularized(_simclr(), lam)
    out = reg.training_step(x, None, None, torch.Generator().manual_seed(5))
    gen = torch.Generator().manual_seed(5)
    base = reg.base.training_step(x, None, None, gen)["loss"]
    v = reg.augmentation(torch.cat([x, x]), gen)
    d = view_alignment(reg.encoder, v[:16], v[16:]).mean()
    assert torch.allclose(out["loss"], (1 - lam) * base - lam * d, atol=1e-5)
    assert 0 < d.item() <= 2  # unit vectors: distances in [0, 2]
    assert torch.allclose(out["ssl_loss"], base, atol=1e-5)


def test_lambda_zero_is_the_base_loss(fmnist_small):
    x = fmnist_small.images[:16]
    reg = AlignmentRegularized(_simclr(), 0.0)
    a = reg.training_step(x, None, None, torch.Generator().manual_seed(1))["loss"]
    b = reg.base.training_step(x, None, None, torch.Generator().manual_seed(1))["loss"]
    assert torch.allclose(a, b)
    assert reg.name == "simclr+align0" and AlignmentRegularized(_simclr(), 0.25).name == "simclr+align0.25"


def test_higher_lambda_gives_larger_view_distances(fmnist_small):
    """The minus sign: training with a large λ pushes views apart compared with λ = 0."""
    x = fmnist_small.images[:48]
    cfg = TrainConfig(epochs=4, batch_size=16, lr=3e-3, warmup_epochs=0, channels_last=False)  # 12 steps
    dist = {}
    for lam in (0.0, 0.8):
        reg = AlignmentRegularized(_simclr(seed=0), lam)  # same initial weights for both
        train(reg, x, None, cfg, progress=False)
        reg.eval()
        gen = torch.Generator().manual_seed(123)
        v = reg.augmentation(torch.cat([x, x]), gen)
        with torch.no_grad():
            dist[lam] = float(view_alignment(reg.encoder, v[:48], v[48:]).mean())
    assert dist[0.8] > dist[0.0], dist


def test_lambda_zero_reuses_sslmem_encoders(fmnist_small, tmp_path):
    """λ = 0 is the plain method's spec, so the sweep loads chapter 01's encoders instead of retraining."""
    from memlib.data.splits import make_splits
    from memlib.experiments import get_preset
    from memlib.experiments.encoders import EncoderSpec, family_specs, fit, model_seed

    p = get_preset("smoke", shared=32, candidate=16, epochs=1, batch_size=16, models_per_family=1)
    splits = make_splits(len(fmnist_small), 100, p.shared, p.candidate, seed=0)
    fit(family_specs(p, splits, 0, ("f",))["f"], fmnist_small, tmp_path, "cpu", progress=False)
    spec = EncoderSpec.from_preset(p, splits.f_train, model_seed(0, "f", 0), lam=0.0)
    assert spec.key() != EncoderSpec.from_preset(p, splits.f_train, model_seed(0, "f", 0), lam=0.1).key()
    assert fit([spec], fmnist_small, tmp_path, "cpu", progress=False)[0].result.resumed_from_epoch == p.epochs


def test_bad_sweep_settings_fail_before_compute(tmp_path):
    from memlib.experiments.regularization_run import run_regularization

    for kw, match in [
        ({"lambdas": (0.0, 1.0)}, "lam=1.0"),
        ({"lambdas": (0.0,)}, "lambdas="),
        ({"methods": ("simclr", "byol")}, "method='byol'"),
        ({"methods": ()}, "methods="),
    ]:
        with pytest.raises(ValueError, match=match):
            run_regularization("smoke", cache_dir=tmp_path, progress=False, **kw)
    assert not (tmp_path / "regularization").exists()  # nothing written


def test_smoke_sweep():
    from memlib.experiments.regularization_run import run_regularization

    run = run_regularization("smoke", progress=False)
    r = run.results
    assert set(r.method) == {"simclr", "mae"} and set(r.lam) == {0.0, 0.5}
    assert r.linear_acc.between(0, 1).all() and np.isfinite(r.sslmem_raw).all()
    assert set(r.loc[r.method == "mae", "arch"]) == {"vit_micro"}
    s = run.summary()
    assert len(s) == 4 and {"SSLMem raw", "SSLMem calibrated", "sd over encoders", "linear acc"} <= set(s.columns)
    assert (s["n encoders"] == 1).all()  # smoke: one f per (method, λ)
    assert run.claims().loc["S22", "status"].startswith("not reproduced yet")
    from memlib.atomic import is_complete

    assert is_complete(run.run_dir)  # results and provenance written, then the COMPLETE marker


def test_s22_is_decided_per_method_on_calibrated_memorisation():
    """Each method is a declared part: a fall with λ for SimCLR only is "partly (1 of 2 parts, none refuted)"; the
    raw score (which carries the families' offset) does not decide."""
    from pathlib import Path

    import numpy as np
    import pandas as pd

    from memlib.experiments.presets import get_preset
    from memlib.experiments.regularization_run import RegularizationRun

    rng = np.random.default_rng(0)
    rows = []
    for method, slope in (("simclr", -0.05), ("mae", 0.0)):
        for lam in (0.0, 0.2, 0.4, 0.6):
            for member in range(3):
                cal = slope * lam + rng.normal(0, 0.002)
                rows.append(
                    {
                        "method": method,
                        "lam": lam,
                        "member": member,
                        "sslmem_raw": rng.normal(0, 0.05),
                        "sslmem_calibrated": cal,
                        "linear_acc": 0.7 - 0.1 * lam + rng.normal(0, 0.005),
                        "informative": True,
                    }
                )
    run = RegularizationRun(get_preset("cpu"), {}, 0, pd.DataFrame(rows), {}, {}, Path("."))
    claims = run.claims()
    assert claims.loc["S22", "status"] == "partly reproduced (1 of 2 parts, none refuted) (cpu)"
    assert "1 reproduced, 0 refuted of 2 parts" in claims.loc["S22", "statistic"]
    assert claims.loc["S23", "status"] == "reproduced (cpu)"
    assert claims.loc["S22", "unit"] == "f encoder" and claims.loc["S22", "n"] == 12


def test_memorisation_below_the_random_floor_enters_no_claim_but_its_accuracy_does():
    """A (method, λ) whose encoders do not beat the random floor is left out of S22 (its SSLMem is noise of
    encoders without a representation) and kept in S23 (the accuracy it lost is the claim's subject)."""
    from pathlib import Path

    import numpy as np
    import pandas as pd

    from memlib.experiments.presets import get_preset
    from memlib.experiments.regularization_run import RegularizationRun

    rng = np.random.default_rng(1)
    rows, levels = [], []
    for lam in (0.0, 0.2, 0.4, 0.6):
        informative = lam < 0.4
        for member in range(3):
            # Memorisation "falls" only at the uninformative λ: excluded, S22 must not find it.
            cal = (0.0 if informative else -0.2) + rng.normal(0, 0.002)
            acc = 0.7 - 0.4 * lam + rng.normal(0, 0.005)
            rows.append({"method": "mae", "lam": lam, "member": member, "sslmem_raw": cal,
                         "sslmem_calibrated": cal, "linear_acc": acc, "informative": informative})  # fmt: skip
        levels.append({"method": "mae", "lam": lam, "acc": 0.7 - 0.4 * lam, "floor_acc": 0.5, "floor_p": 0.01,
                       "informative": informative})  # fmt: skip
    run = RegularizationRun(get_preset("cpu"), {}, 0, pd.DataFrame(rows), {}, {}, Path("."),
                            levels=pd.DataFrame(levels).set_index(["method", "lam"]))  # fmt: skip
    claims = run.claims()
    assert not claims.loc["S22", "status"].startswith("reproduced")
    assert claims.loc["S22", "n"] == 6 and "below the random floor" in claims.loc["S22", "statistic"]
    assert claims.loc["S23", "status"] == "reproduced (cpu)" and claims.loc["S23", "n"] == 12
