"""LayerMem, UnitMem and ClassMem on layers built so the answer is known."""

import os

import numpy as np
import pytest
import torch
from torch import nn

from memlib.data.augment import GaussianNoise, to_float
from memlib.memorization import draw_views, layermem, selectivity, sslmem, unit_means, unitmem
from memlib.models import build_encoder, extract_taps

N, TARGET = 12, 5


pytestmark = pytest.mark.usefixtures("one_thread")


def identity_aug(x, generator=None):
    """No augmentation: every view is the clean image, so μ is exact."""
    return to_float(x)


class Detector(nn.Module):
    """A layer of 4 conv-like units on 3×3 positions, built so their UnitMem is known:

    unit 0 fires only on image ``TARGET`` (UnitMem 1), unit 1 is 1 on every image (UnitMem 0),
    unit 2 fires on the images of class 1 only (ClassMem 1), unit 3 is negative everywhere
    except ``TARGET`` (a GELU-like unit; its negative means are clamped to 0).
    """

    def __init__(self, images, labels):
        super().__init__()
        self.register_buffer("ref", to_float(images[TARGET]).flatten())
        self.register_buffer("cls1", to_float(images[labels == 1]).flatten(1))
        self.units = nn.Identity()  # the tapped layer

    def forward(self, x):
        x = x.flatten(1)
        hit = ((x - self.ref).abs().amax(1) < 1e-6).float()
        in_cls1 = (torch.cdist(x, self.cls1).amin(1) < 1e-3).float()
        u = torch.stack([2.0 * hit, torch.ones_like(hit), in_cls1, 3.0 * hit - 0.1 * (1 - hit)], 1)
        return self.units(u[:, :, None, None].expand(-1, -1, 3, 3)).flatten(1)


@pytest.fixture(scope="module")
def detector():
    g = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (N, 1, 8, 8), dtype=torch.uint8, generator=g)
    labels = torch.tensor([0, 1] * (N // 2))
    labels[TARGET] = 0
    return Detector(images, labels), images, labels.numpy()


@pytest.mark.parametrize("reduce", ["mean", "median"])
def test_unitmem_one_for_a_single_point_unit_zero_for_a_uniform_one(detector, reduce):
    enc, images, _ = detector
    res = unitmem(enc, images, identity_aug, taps=["units"], views=3, reduce=reduce, batch_size=5)
    u = res.unitmem["units"]
    assert u[0] == pytest.approx(1.0) and u[3] == pytest.approx(1.0)
    assert u[1] == pytest.approx(0.0)
    assert res.argmax["units"][0] == TARGET and res.argmax["units"][3] == TARGET
    # Unit 2 fires equally on the 5 class-1 images: the 4 besides the max are not "the rest" at 0.
    rest = 4 / (N - 1) if reduce == "mean" else 0.0  # the median of 4 ones and 7 zeros is 0
    assert u[2] == pytest.approx((1 - rest) / (1 + rest))
    # Unit 3's negative means (every point but TARGET) were clamped, and only those.
    assert res.clamped["units"] == pytest.approx((N - 1) / (4 * N))
    assert (res.mu["units"] >= 0).all()


def test_classmem_finds_the_class_unit(detector):
    enc, images, labels = detector
    res = unitmem(enc, images, identity_aug, taps=["units"], views=1, batch_size=64)
    cm = res.classmem(labels)["units"]
    assert cm[2] == pytest.approx(1.0)  # fires on class 1 only
    assert cm[1] == pytest.approx(0.0)
    assert cm[0] == pytest.approx(1.0)  # it fires in class 0 only (on one point of it)
    assert res.unitmem["units"][2] < cm[2]  # the class unit is selective for its class, not for one point
    with pytest.raises(ValueError, match="labels must have shape"):
        res.classmem(labels[:-1])


def test_selectivity_formula():
    mu = np.array([[4.0, 1.0, 0.0], [1.0, 1.0, 0.0], [1.0, 1.0, 0.0], [0.0, 1.0, 0.0]])
    np.testing.assert_allclose(selectivity(mu, "mean"), [(4 - 2 / 3) / (4 + 2 / 3), 0.0, 0.0])
    np.testing.assert_allclose(selectivity(mu, "median"), [(4 - 1) / (4 + 1), 0.0, 0.0])
    with pytest.raises(ValueError, match="non-negative"):
        selectivity(-mu)
    with pytest.raises(ValueError, match="reduce='max'"):
        selectivity(mu, "max")


def test_unit_means_average_positions_and_views():
    torch.manual_seed(0)
    enc = build_encoder("resnet_narrow", 1, 16)
    images = torch.randint(0, 256, (6, 1, 16, 16), dtype=torch.uint8)
    aug = GaussianNoise(0.1)
    mu = unit_means(enc, images, aug, taps=["layer1.0"], views=3, batch_size=4, seed=2)["layer1.0"]
    # By hand, point by point: the same views (keyed by seed, point and view), averaged over positions and views.
    views = draw_views(images, aug, 3, seed=2)
    enc.eval()
    with torch.no_grad():
        want = torch.stack(
            [extract_taps(enc, v, ["layer1.0"])["layer1.0"].double().mean((2, 3)).mean(0) for v in views]
        )
    np.testing.assert_allclose(mu, want.numpy(), rtol=1e-6, atol=1e-7)


def test_resnet_block_tap_includes_the_residual_addition():
    torch.manual_seed(0)
    enc = build_encoder("resnet_narrow", 1, 16).eval()
    x = torch.rand(4, 1, 16, 16)
    with torch.no_grad():
        taps = extract_taps(enc, x, ["stem", "layer1.0", "layer2.0"])
        b = enc.layer1[0]
        own = b(taps["stem"])  # the block's own forward: relu(bn2(conv2(…)) + identity)
        chained = b.bn2(b.conv2(b.relu(b.bn1(b.conv1(taps["stem"])))))  # child modules re-chained: no addition
        torch.testing.assert_close(taps["layer1.0"], own)
        torch.testing.assert_close(taps["layer1.0"], torch.relu(chained + taps["stem"]))
        assert not torch.allclose(taps["layer1.0"], torch.relu(chained))
        torch.testing.assert_close(taps["layer2.0"], enc.layer2[0](own))


def test_vit_taps_attention_mlp_and_hidden_units():
    torch.manual_seed(0)
    enc = build_encoder("vit_micro", 1, 16).eval()
    names = list(enc.tap_names)
    assert {"vit.blocks.0", "vit.blocks.0.attn", "vit.blocks.0.mlp", "vit.blocks.0.mlp.act"} <= set(names)
    x = torch.rand(3, 1, 16, 16)
    with torch.no_grad():
        t = extract_taps(enc, x, ["vit.blocks.0", "vit.blocks.0.mlp.act", "vit.blocks.1"])
        torch.testing.assert_close(t["vit.blocks.1"], enc.vit.blocks[1](t["vit.blocks.0"]))
    res = unitmem(enc, torch.randint(0, 256, (5, 1, 16, 16), dtype=torch.uint8), identity_aug, views=1)
    assert res.taps == [n for n in names if n.endswith(".mlp.act")]  # default units: MLP hidden neurons
    hidden = enc.vit.blocks[0].mlp.fc1.out_features
    assert res.unitmem["vit.blocks.0.mlp.act"].shape == (hidden,)
    assert all(((u >= 0) & (u <= 1)).all() for u in res.unitmem.values())


def test_layermem_last_block_equals_sslmem_and_f_equals_g_gives_zero():
    torch.manual_seed(0)
    f = build_encoder("resnet_narrow", 1, 16)
    torch.manual_seed(1)
    g = build_encoder("resnet_narrow", 1, 16)
    images = torch.randint(0, 256, (10, 1, 16, 16), dtype=torch.uint8)
    aug = GaussianNoise(0.1)
    res = layermem(f, g, images, aug, views=3, batch_size=12, seed=3)
    assert res.taps == list(f.tap_names) and res.raw.shape == (len(f.tap_names), 10)
    # The encoder's representation is the last block's output: LayerMem there is SSLMem.
    ref = sslmem(f, g, images, aug, views=3, batch_size=12, seed=3)
    np.testing.assert_allclose(res.layer("layer4.0", "raw"), ref.raw, rtol=1e-5, atol=1e-6)
    table = res.table()
    np.testing.assert_allclose(table["delta"].cumsum(), table["layermem"])
    assert table.loc["layer4.0", "layermem"] == pytest.approx(ref.score.mean(), abs=1e-5)
    same = layermem(f, f, images, aug, views=3, batch_size=12)
    assert np.all(same.raw == 0)


def test_layermem_runs_in_eval_mode_and_restores_it():
    torch.manual_seed(0)
    f = build_encoder("resnet_narrow", 1, 16).train()
    images = torch.randint(0, 256, (8, 1, 16, 16), dtype=torch.uint8)
    before = {k: v.clone() for k, v in f.state_dict().items()}
    layermem(f, f, images, GaussianNoise(0.1), views=2, batch_size=8)
    unitmem(f, images, GaussianNoise(0.1), views=2)
    assert f.training
    for k, v in f.state_dict().items():  # BatchNorm running statistics untouched
        torch.testing.assert_close(v, before[k])


@pytest.mark.parametrize(
    "kw, msg",
    [
        ({"taps": ["nope"]}, "unknown tap name"),
        ({"views": 0}, "views=0"),
        ({"batch_size": 0}, "batch_size=0"),
        ({"reduce": "max"}, "reduce='max'"),
    ],
)
def test_unitmem_bad_arguments_fail_before_compute(kw, msg):
    enc = build_encoder("resnet_narrow", 1, 16)
    images = torch.randint(0, 256, (4, 1, 16, 16), dtype=torch.uint8)

    def aug(x, generator=None):
        raise AssertionError("computed before validating")

    with pytest.raises(ValueError, match=msg):
        unitmem(enc, images, aug, **kw)
    with pytest.raises(TypeError, match="uint8"):
        unitmem(enc, images.float(), aug)


def test_layermem_unknown_tap_fails_before_compute():
    enc = build_encoder("resnet_narrow", 1, 16)
    images = torch.randint(0, 256, (4, 1, 16, 16), dtype=torch.uint8)
    with pytest.raises(ValueError, match="unknown tap name"):
        layermem(enc, enc, images, GaussianNoise(0.1), taps=["layer9.0"], views=2, batch_size=8)


def _peak_kb(fn) -> int:
    """Peak resident memory (kB) that ``fn()`` adds, from Linux's VmHWM after resetting it."""
    with open("/proc/self/clear_refs", "w") as fh:
        fh.write("5")  # resets VmHWM to the current RSS
    status = lambda key: int(next(ln for ln in open("/proc/self/status") if ln.startswith(key)).split()[1])  # noqa: E731
    base = status("VmRSS")
    fn()
    return status("VmHWM") - base


@pytest.mark.skipif(not os.access("/proc/self/clear_refs", os.W_OK), reason="needs Linux /proc/self/clear_refs")
def test_unitmem_peak_memory_does_not_grow_with_views():
    torch.manual_seed(0)
    enc = build_encoder("resnet_narrow", 1, 28)
    images = torch.randint(0, 256, (96, 1, 28, 28), dtype=torch.uint8)
    run = lambda k: unitmem(enc, images, GaussianNoise(0.1), views=k, batch_size=32)  # noqa: E731
    run(1)  # warm up allocator and kernels
    small, large = _peak_kb(lambda: run(2)), _peak_kb(lambda: run(16))
    # Keeping every view's activations would add 14 × 96 images × ~26k floats ≈ 140 MB at K = 16.
    assert large - small < 30_000, (small, large)


def test_pruned_zeroes_the_units_only_inside_the_context():
    from memlib.experiments.localization_run import pruned

    torch.manual_seed(0)
    enc = build_encoder("resnet_narrow", 1, 16).eval()
    x = torch.rand(3, 1, 16, 16)
    with torch.no_grad():
        before = extract_taps(enc, x, ["layer1.0", "layer2.0"])
        with pruned(enc, {"layer1.0": np.array([0, 3])}):
            inside = extract_taps(enc, x, ["layer1.0", "layer2.0"])
        after = extract_taps(enc, x, ["layer1.0"])
    assert before["layer1.0"][:, [0, 3]].abs().sum() > 0
    assert inside["layer1.0"][:, [0, 3]].abs().sum() == 0
    torch.testing.assert_close(inside["layer1.0"][:, [1, 2, 4]], before["layer1.0"][:, [1, 2, 4]])
    assert not torch.allclose(inside["layer2.0"], before["layer2.0"])  # later layers see the pruned output
    torch.testing.assert_close(after["layer1.0"], before["layer1.0"])


def test_finetune_leaves_the_encoder_untouched():
    from memlib.data.datasets import ImageDataset
    from memlib.experiments.localization_run import finetune_layers

    torch.manual_seed(0)
    enc = build_encoder("resnet_narrow", 1, 16)
    state = {k: v.clone() for k, v in enc.state_dict().items()}
    ds = ImageDataset(torch.randint(0, 256, (16, 1, 16, 16), dtype=torch.uint8), torch.arange(16) % 2, ["a", "b"], "t")
    hits = finetune_layers(enc, ["layer4.0"], ds, ds.subset(range(6)), epochs=1, batch_size=8)
    assert hits.shape == (6,) and hits.dtype == bool
    for k, v in enc.state_dict().items():
        torch.testing.assert_close(v, state[k])


def test_finetune_is_the_same_whatever_ran_before():
    """The head starts from the seed, not the global RNG (a recomputed store row must not change)."""
    from memlib.data.datasets import ImageDataset
    from memlib.experiments.localization_run import finetune_layers

    torch.manual_seed(0)
    enc = build_encoder("resnet_narrow", 1, 16)
    ds = ImageDataset(torch.randint(0, 256, (64, 1, 16, 16), dtype=torch.uint8), torch.arange(64) % 4,
                      ["a", "b", "c", "d"], "t")  # fmt: skip
    runs = []
    for state in (1, 2):
        torch.manual_seed(state)  # what ran before
        runs.append(finetune_layers(enc, ["layer4.0"], ds, ds, epochs=3, batch_size=16, seed=7))
    assert np.array_equal(runs[0], runs[1])
    assert not np.array_equal(runs[0], finetune_layers(enc, ["layer4.0"], ds, ds, epochs=3, batch_size=16, seed=8))


@pytest.mark.parametrize(
    "kw, msg",
    [
        ({"vit_arch": "resnet18"}, "vit_arch='resnet18'"),
        ({"unit_views": 0}, "unit_views=0"),
        ({"n_finetune": -1}, "n_finetune=-1"),
        ({"random_draws": 1}, "random_draws=1"),
        ({"prune_fractions": (0.1, 1.5)}, "prune_fractions"),
        ({"epochs": 0}, "epochs=0"),
    ],
)
def test_run_localization_bad_parameters_fail_before_anything_is_written(kw, msg, tmp_path):
    from memlib.experiments.localization_run import run_localization

    with pytest.raises(ValueError, match=msg):
        run_localization("smoke", cache_dir=tmp_path / "cache", progress=False, **kw)
    assert not (tmp_path / "cache").exists()


def test_layermem_keeps_each_pair_and_the_family_raw_is_their_mean(detector):
    """pair_raw(i) is g_i − f_i per layer and point; the family's raw score is the mean over pairs."""
    _, images, _ = detector
    torch.manual_seed(0)
    encs = [build_encoder("resnet_narrow", 1, 8) for _ in range(4)]
    res = layermem(encs[:2], encs[2:], images, identity_aug, views=2, batch_size=5)
    pairs = np.stack([res.pair_raw(i) for i in range(2)])
    assert pairs.shape == res.raw.shape[:0] + (2,) + res.raw.shape
    np.testing.assert_allclose(pairs.mean(0), res.raw, atol=1e-10)
    with pytest.raises(ValueError, match="pair 2 does not exist"):
        res.pair_raw(2)


def test_standardised_layermem_removes_a_pair_offset_and_keeps_planted_memorisation():
    from memlib.experiments.localization_run import _standardised

    rng = np.random.default_rng(0)
    cand = np.arange(60) < 20
    noise = rng.normal(0, 1.0, (3, 60))
    offset = np.array([[5.0], [-3.0], [0.0]])  # a pair's chance shift, the same on every point
    planted = np.where(cand, 2.0, 0.0) * np.array([[0.0], [1.0], [0.0]])  # only layer 1 memorises S_C
    z = _standardised(noise + offset + planted, cand)["z"]
    z0 = _standardised(noise, cand)["z"]
    np.testing.assert_allclose(z[[0, 2]], z0[[0, 2]])  # the offset is gone
    assert z[1] > z0[1] + 1.5  # the planted layer stands out by about 2 S_E standard deviations


def test_top_units_of_untrained_encoders_sit_where_layer_size_predicts(fmnist_small):
    """Pooled enrichment of the last layer averages ≈ 1 over untrained encoders on real images (no
    memorisation, only architecture), far below a layer whose units were made point-selective."""
    from memlib.memorization.enrichment import layer_enrichment
    from memlib.probing import untrained_encoder

    images = fmnist_small.images[:120]
    last = []
    for seed in range(4):
        enc = untrained_encoder("resnet_narrow", images, seed)
        res = unitmem(enc, images, identity_aug, views=1, batch_size=60)
        last.append(layer_enrichment(res.unitmem, 0.1)["enrichment"].iloc[-1])
        # The same encoder with its last layer's units made point-selective: enrichment far above 1.
        planted = {**res.unitmem, res.taps[-1]: np.maximum(res.unitmem[res.taps[-1]], 0.99)}
        assert layer_enrichment(planted, 0.1)["enrichment"].iloc[-1] > 1.4
    assert 0.6 < np.mean(last) < 1.4, last
