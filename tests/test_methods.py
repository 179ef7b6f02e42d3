"""The SSL methods, every one registered in ``memlib.methods.METHODS`` (SimCLR, DINO, MAE, VICReg, supervised,
and any method added later, with no list to edit): each trains through the one training loop on real data and
keeps the conventions every method shares; each loss has the property its paper relies on. The steps of
book/adding_a_method.md run as a test too: its toy method is registered as the guide says and trained at smoke."""

import copy
import importlib
import inspect
import re
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from memlib.data.augment import MultiCrop, SimCLRAugment
from memlib.losses import covariance_term, masked_patch_mse, patchify, variance_term
from memlib.methods import METHODS, build_method
from memlib.models import ENCODERS, Encoder, build_encoder
from memlib.training import TrainConfig, train

#: Method arguments for "the loss falls over a few steps", where a method's defaults do not make that a
#: property of its optimisation; a method not listed trains with its defaults. DINO's target (teacher and
#: centre) is frozen: with the default EMA its loss is not monotone over a few steps (it first rises while
#: the centre warms up and flattens the teacher's targets). The default dynamics are checked for finiteness
#: below and the EMA itself in test_dino_teacher_is_ema_without_gradient.
TRAIN_KWARGS = {"dino": dict(teacher_momentum=1.0, center_momentum=1.0, n_local=1)}
#: Architectures a method is also trained on, beside the one its recipe picks for a small ResNet.
EXTRA_ARCHS = {"dino": ("vit_micro",)}  # Table 1's DINO-ViT


def _arch(name: str) -> str:
    """The architecture a method trains where an experiment asks for the small ResNet (its recipe)."""
    return METHODS[name].arch_for("resnet_narrow")


#: (method, arch) of every registered method: a method registered in memlib is tested without editing a list.
CASES = [
    pytest.param(name, arch, id=f"{name}-{arch}")
    for name in sorted(METHODS)
    for arch in dict.fromkeys((_arch(name), *EXTRA_ARCHS.get(name, ())))
]


def _method(name, arch="resnet_narrow", seed=0, **kw):
    torch.manual_seed(seed)
    return build_method(name, build_encoder(arch, 1, 28), **kw)


def _check_trains(images, labels, name, arch, **kw):
    """The first 128 real images, 2 steps of 64 per epoch through the shared loop: the loss is finite and falls."""
    m = _method(name, arch, **{**TRAIN_KWARGS.get(name, {}), **kw})
    res = train(m, images[:128], labels[:128], TrainConfig(epochs=4, batch_size=64, warmup_epochs=1), progress=False)
    losses = np.array([h["loss"] for h in res.history])
    assert np.isfinite(losses).all()
    assert losses[-2:].mean() < losses[0], f"{name}/{arch} loss did not fall: {losses.round(4)}"


def _check_conventions(images, labels, name):
    """What every method owes the rest of memlib (book/adding_a_method.md), at smoke's batch size."""
    cls = METHODS[name]
    arch = _arch(name)
    assert cls.name == name, f"{cls.__name__}.name={cls.name!r}, registered as {name!r}"
    assert arch in ENCODERS and (cls.archs is None or arch in cls.archs)  # its recipe picks an arch it trains
    assert "augmentation" in inspect.signature(cls.__init__).parameters  # the runners pass augmentation=
    from memlib.experiments.presets import PRESETS

    x, y = images[: PRESETS["smoke"].batch_size], labels[: PRESETS["smoke"].batch_size]
    a, b = _method(name, arch, seed=0), _method(name, arch, seed=1)
    assert isinstance(a.encoder, Encoder)  # what SSLMem, LayerMem and the probes measure
    b.load_state_dict(a.state_dict())  # the checkpoint holds every piece of state: resuming is exact
    out = a.training_step(x, torch.arange(len(x)), y, torch.Generator().manual_seed(0))
    again = b.training_step(x, torch.arange(len(x)), y, torch.Generator().manual_seed(0))
    loss = out["loss"]
    assert loss.ndim == 0 and torch.isfinite(loss)
    torch.testing.assert_close(again["loss"], loss)  # the generator draws every random choice of a step
    loss.backward()
    grads = [p.grad for p in a.encoder.parameters() if p.requires_grad]
    assert any(g is not None and g.abs().sum() > 0 for g in grads), f"{name}: no gradient reaches the encoder"


@pytest.mark.parametrize("name,arch", CASES)
def test_method_trains_on_real_data(fmnist_small, name, arch):
    _check_trains(fmnist_small.images, fmnist_small.labels, name, arch)


@pytest.mark.parametrize("name", sorted(METHODS))
def test_method_keeps_the_shared_conventions(fmnist_small, name):
    _check_conventions(fmnist_small.images, fmnist_small.labels, name)


def test_dino_default_dynamics_stay_finite(fmnist_small):
    m = _method("dino", "resnet_narrow", n_local=2)
    res = train(
        m, fmnist_small.images[:64], None, TrainConfig(epochs=2, batch_size=64, warmup_epochs=1), progress=False
    )
    assert all(np.isfinite(h["loss"]) for h in res.history)
    assert torch.isfinite(m.center).all() and m.center.abs().sum() > 0  # the centre moved


def test_unknown_method_lists_the_known_ones():
    enc = build_encoder("resnet_narrow", 1, 28)
    with pytest.raises(ValueError, match="method='nope' is unknown") as err:
        build_method("nope", enc)
    for name in ("simclr", "dino", "mae", "vicreg", "supervised"):
        assert name in METHODS and repr(name) in str(err.value)


@pytest.mark.parametrize("ratio", [0.0, 1.0, -0.25, 1.5, 0.999])
def test_mae_mask_ratio_must_leave_visible_and_masked_patches(ratio):
    with pytest.raises(ValueError, match=f"mask_ratio={ratio!r}"):
        _method("mae", "vit_micro", mask_ratio=ratio)


def test_mae_needs_a_vit():
    with pytest.raises(TypeError, match="MAE needs a ViT encoder"):
        _method("mae", "resnet_narrow")


def test_mae_masks_the_requested_fraction():
    m = _method("mae", "vit_micro", mask_ratio=0.5)
    keep, mask, restore = m.random_masking(3, "cpu", torch.Generator().manual_seed(0))
    n = m.encoder.num_patches  # 7 × 7 = 49
    assert keep.shape == (3, int(n * 0.5)) and mask.shape == (3, n)
    assert (mask.sum(1) == n - keep.shape[1]).all()
    assert (torch.gather(mask, 1, keep) == 0).all()  # the kept patches are the unmasked ones
    assert not torch.equal(keep[0], keep[1])  # each image draws its own mask


def test_mae_loss_counts_only_masked_patches():
    gen = torch.Generator().manual_seed(0)
    target = torch.rand(4, 49, 16, generator=gen)
    pred = torch.rand(4, 49, 16, generator=gen)
    mask = (torch.rand(4, 49, generator=gen) < 0.75).float()
    base = masked_patch_mse(pred, target, mask)
    visible_changed = torch.where(mask.bool().unsqueeze(-1), pred, pred + 10)
    torch.testing.assert_close(masked_patch_mse(visible_changed, target, mask), base)
    masked_changed = torch.where(mask.bool().unsqueeze(-1), pred + 10, pred)
    assert (masked_patch_mse(masked_changed, target, mask) > base + 1).all()


def test_mae_per_sample_loss_depends_on_its_own_sample_only():
    # What DP-SGD's per-sample gradients need: no interaction across the batch.
    m = _method("mae", "vit_micro").eval()
    x = torch.rand(3, 1, 28, 28, generator=torch.Generator().manual_seed(0))
    y = x.clone()
    y[1] = 1 - y[1]
    with torch.no_grad():
        a = m.per_sample_loss(x, torch.Generator().manual_seed(1))
        b = m.per_sample_loss(y, torch.Generator().manual_seed(1))
    assert a.shape == (3,)
    torch.testing.assert_close(a[[0, 2]], b[[0, 2]])
    assert not torch.allclose(a[1], b[1])


def test_patchify_matches_the_vit_patch_order():
    x = torch.arange(2 * 1 * 8 * 8, dtype=torch.float32).view(2, 1, 8, 8)
    p = patchify(x, 4)
    assert p.shape == (2, 4, 16)
    torch.testing.assert_close(p[0, 1], x[0, 0, :4, 4:].reshape(-1))  # patch 1 = top-right (row-major)
    with pytest.raises(ValueError, match="patch_size=3"):
        patchify(x, 3)


def test_forward_masked_with_every_patch_equals_forward():
    enc = build_encoder("vit_micro", 1, 28).eval()
    x = torch.rand(2, 1, 28, 28)
    keep = torch.arange(enc.num_patches).expand(2, -1)
    with torch.no_grad():
        torch.testing.assert_close(enc.forward_masked(x, keep), enc.forward_features(x))
        part = enc.forward_masked(x, keep[:, :10])
    assert part.shape == (2, 11, enc.pooled_dim)


def test_dino_teacher_is_ema_without_gradient():
    m = _method("dino", "vit_micro", teacher_momentum=0.9, n_local=1)
    with torch.no_grad():  # make student and teacher differ, as after some training
        for p in m.student.parameters():
            p.add_(0.1)
    t0 = copy.deepcopy(list(m.teacher.parameters()))
    s0 = copy.deepcopy(list(m.student.parameters()))
    assert all(not p.requires_grad for p in m.teacher.parameters())
    seen = []
    m.teacher.register_forward_hook(lambda mod, inp, out: seen.append(inp[0].shape[0]))
    imgs = torch.randint(0, 256, (8, 1, 28, 28), dtype=torch.uint8)
    out = m.training_step(imgs, torch.arange(8), torch.zeros(8, dtype=torch.long))
    out["loss"].backward()
    assert 0 <= out["teacher_entropy"] <= np.log(m.center.shape[1]) + 1e-4  # diagnostic of the targets
    for t, a, b in zip(m.teacher.parameters(), t0, s0):
        assert t.grad is None
        torch.testing.assert_close(t, 0.9 * a + 0.1 * b)  # θ_t ← m θ_t + (1 − m) θ_s
    assert all(p.grad is not None for p in m.student.head.parameters())
    assert m.encoder is m.student.encoder  # SSLMem and the probes score the student
    assert seen == [16]  # the teacher sees the 2 global views only, never the local ones


def test_dino_settings_are_checked():
    with pytest.raises(ValueError, match="local_size=14"):
        _method("dino", "vit_micro", local_size=14)
    with pytest.raises(ValueError, match="teacher_momentum=1.5"):
        _method("dino", "resnet_narrow", teacher_momentum=1.5)
    with pytest.raises(ValueError, match="n_local=-1"):
        MultiCrop(size=28, n_local=-1)
    # A MultiCrop given as the augmentation sets the number of local views; a plain one draws the global views.
    assert _method("dino", "resnet_narrow", augmentation=MultiCrop(size=28, n_local=3)).multicrop.n_local == 3
    aug = SimCLRAugment(size=28)
    assert _method("dino", "resnet_narrow", augmentation=aug).augmentation is aug


def test_multicrop_views():
    mc = MultiCrop(size=28, n_local=3, local_size=12)
    views = mc(torch.randint(0, 256, (5, 1, 28, 28), dtype=torch.uint8), torch.Generator().manual_seed(0))
    assert [tuple(v.shape) for v in views] == [(5, 1, 28, 28)] * 2 + [(5, 1, 12, 12)] * 3
    assert all(v.min() >= 0 and v.max() <= 1 for v in views)


def test_vicreg_variance_term():
    gen = torch.Generator().manual_seed(0)
    spread = 3 * torch.randn(256, 32, generator=gen)  # std ≈ 3 in every dimension
    collapsed = torch.ones(256, 32) + 1e-3 * torch.randn(256, 32, generator=gen)
    assert variance_term(spread) == 0
    assert variance_term(collapsed) > 0.9
    correlated = torch.randn(256, 1, generator=gen).expand(-1, 32) + 0.1 * torch.randn(256, 32, generator=gen)
    assert covariance_term(correlated) > 10 * covariance_term(torch.randn(256, 32, generator=gen))


def test_supervised_encoder_is_the_network_without_its_classifier():
    m = _method("supervised")
    enc_params = {id(p) for p in m.encoder.parameters()}
    assert all(id(p) not in enc_params for p in m.classifier.parameters())
    assert m.encoder.pooled(torch.rand(2, 1, 28, 28)).shape == (2, m.encoder.pooled_dim)
    imgs = torch.randint(0, 256, (4, 1, 28, 28), dtype=torch.uint8)
    with pytest.raises(ValueError, match="labels are missing"):
        m.training_step(imgs, torch.arange(4), torch.full((4,), -1))
    with pytest.raises(ValueError, match="num_classes=10"):
        m.training_step(imgs, torch.arange(4), torch.full((4,), 12))


def test_smoke_run_with_another_method(tmp_path):
    import os

    if not os.path.isdir("/usr/share/datasets/fashion-mnist"):
        pytest.skip("Fashion-MNIST missing: sudo apt-get install dataset-fashion-mnist")
    from memlib.experiments import run_sslmem

    r = run_sslmem(
        "smoke",
        cache_dir=tmp_path / "cache",
        data_root=tmp_path / "data",
        progress=False,
        method="vicreg",
        probe_epochs=1,
    )
    assert np.isfinite(r.result.raw).all() and np.all(np.abs(r.result.score) <= 1)


GUIDE = Path(__file__).resolve().parents[1] / "book" / "adding_a_method.md"


def _guide_blocks() -> list[str]:
    return re.findall(r"```python\n(.*?)```", GUIDE.read_text(), re.S)


@pytest.fixture
def guide_method(tmp_path, monkeypatch):
    """The guide's first two steps: its method file, as written (relative imports and all), placed in
    ``memlib.methods`` under the name the guide gives it and imported; unregistered afterwards."""
    import memlib.methods

    module = re.search(r"one file, `src/memlib/methods/(\w+)\.py`", GUIDE.read_text()).group(1)
    (block,) = [b for b in _guide_blocks() if "@register(" in b]
    name = re.search(r'@register\("(\w+)"\)', block).group(1)
    assert name not in METHODS, f"the guide's method {name!r} is registered already"
    (tmp_path / f"{module}.py").write_text(block)
    monkeypatch.setattr(memlib.methods, "__path__", [*memlib.methods.__path__, str(tmp_path)])
    try:
        importlib.import_module(f"memlib.methods.{module}")
        yield name, module
    finally:
        METHODS.pop(name, None)
        sys.modules.pop(f"memlib.methods.{module}", None)
        if hasattr(memlib.methods, module):
            delattr(memlib.methods, module)


def test_the_guide_adds_a_method(guide_method, fmnist_small, tmp_path, monkeypatch):
    """book/adding_a_method.md, step by step: register its toy method, test it, select it by name, train it at
    smoke through the §4.2 runner, and run the property test the guide writes."""
    import memlib.methods

    name, module = guide_method
    blocks = _guide_blocks()
    text = GUIDE.read_text()

    # Registering: the guide's import line is the package's own, with the new module added.
    def imported(line):
        return set(re.match(r"from \. import ([\w, ]+)", line).group(1).replace(" ", "").split(","))

    (line,) = [b.strip() for b in blocks if b.startswith("from . import")]
    (own,) = re.findall(r"^from \. import .*$", Path(memlib.methods.__file__).read_text(), re.M)
    assert module in imported(line) and imported(line) - {module} <= imported(own)

    # The tests every registered method gets, with no list to edit.
    _check_conventions(fmnist_small.images, fmnist_small.labels, name)
    _check_trains(fmnist_small.images, fmnist_small.labels, name, _arch(name))

    # Selecting it by name: the guide's block as written (data and cache in this test's folders).
    monkeypatch.setenv("MEMLIB_DATA", str(tmp_path / "data"))
    (select,) = [b for b in blocks if "build_method(" in b]
    ns = {}
    exec(compile(select, str(GUIDE), "exec"), ns)
    assert ns["method"].name == name and ns["run"].preset.method == name
    run = ns["run"]
    assert np.isfinite(run.result.raw).all() and np.all(np.abs(run.result.score) <= 1)

    # The guide's chapter step: chapter 03's parameters cell takes the new method by name, and its design plans
    # the method's encoders (config and design only: the chapter's training is tested in test_regularizer).
    step = re.search(r"`methods = \[([^\]]*)\]`", text).group(1)
    methods = [m.strip().strip('"') for m in step.split(",")]
    assert name in methods
    from memlib.experiments.registry import get_experiment

    exp = get_experiment("regularization")
    cfg = exp.config("smoke", methods=methods)
    planned = {m for d in exp.design(cfg) for m, _ in d.members}  # (method, λ) → its families
    assert name in planned

    # The error the guide shows for an unknown name.
    shown = re.search(r"ValueError: (method='\w+' is unknown; choose one of )", text).group(1)
    with pytest.raises(ValueError) as err:
        build_method(shown.split("'")[1], build_encoder("resnet_narrow", 1, 28))
    assert str(err.value).startswith(shown) and repr(name) in str(err.value)

    # The property test the guide writes.
    (prop,) = [b for b in blocks if "def test_" in b]
    ns = {}
    exec(compile(prop, str(GUIDE), "exec"), ns)
    tests = [f for k, f in ns.items() if k.startswith("test_")]
    assert tests
    for t in tests:
        t()
