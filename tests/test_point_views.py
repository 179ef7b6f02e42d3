"""Scores that depend only on the point: views keyed by (seed, point id, view index), float64 distances,
float32 by default, and scoring of fixed views (memlib.memorization.views, .scoring, data.draws)."""

import copy
import inspect

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from memlib.data.augment import GaussianNoise, PatchMask, SimCLRAugment, to_float
from memlib.data.draws import PointDraws, augment_rows, point_keys
from memlib.memorization import (
    alignment_loss,
    draw_views,
    layermem,
    layermem_from_views,
    sslmem,
    sslmem_from_views,
    unit_means,
    unitmem,
)
from memlib.memorization.scoring import scoring_dtype
from memlib.models import build_encoder

N = 20
TOL = 1e-6


def _encoders(arch):
    torch.manual_seed(0)
    f, g = build_encoder(arch, 1, 28), build_encoder(arch, 1, 28)
    return f.eval(), g.eval()


@pytest.fixture(scope="module")
def images():
    return torch.randint(0, 256, (N, 1, 28, 28), dtype=torch.uint8, generator=torch.Generator().manual_seed(5))


def _scores(arch, images, mode, batch_size, order, aug):
    """SSLMem, LayerMem and UnitMem of the points in ``order``, returned in the original point order."""
    f, g = _encoders(arch)
    ids = np.arange(N)[order]
    back = np.argsort(order)
    kw = dict(views=3, mode=mode, ids=ids, batch_size=batch_size, seed=7)
    s = sslmem(f, g, images[order], aug, **kw)
    taps = list(f.tap_names)[:2]
    lm = layermem(f, g, images[order], aug, taps, **kw)
    mu = unit_means(f, images[order], aug, taps, views=3, ids=ids, batch_size=batch_size, seed=7)
    return {
        "raw": s.raw[back],
        "score": s.score[back],
        "layer_raw": lm.raw[:, back],
        "layer_score": lm.score[:, back],
        **{f"mu {t}": m[back] for t, m in mu.items()},
    }


@pytest.mark.parametrize("arch", ["resnet_narrow", "vit_micro"])
@pytest.mark.parametrize("mode", ["pairwise", "clean"])
def test_scores_do_not_depend_on_batch_size_or_order(images, arch, mode):
    aug = SimCLRAugment(size=28)
    ref = _scores(arch, images, mode, 64, np.arange(N), aug)
    shuffled = np.random.default_rng(0).permutation(N)
    for batch_size, order in [(1, np.arange(N)), (7, np.arange(N)), (64, shuffled), (7, shuffled[::-1].copy())]:
        got = _scores(arch, images, mode, batch_size, order, aug)
        for k in ref:
            np.testing.assert_allclose(got[k], ref[k], rtol=0, atol=TOL, err_msg=f"{k}, batch_size={batch_size}")


def test_views_are_keyed_by_the_point_not_its_position(images):
    aug = SimCLRAugment(size=28)
    v = draw_views(images, aug, 4, seed=3)
    assert v.shape == (N, 4, 1, 28, 28)
    # the same point under another position, in a smaller set, has the same views
    sub = draw_views(images[[9, 2]], aug, 4, seed=3, ids=[9, 2])
    torch.testing.assert_close(sub, v[[9, 2]], rtol=0, atol=0)
    # a view's draws depend on the seed, the id and the view index
    assert not torch.equal(draw_views(images, aug, 4, seed=4), v)
    assert not torch.equal(draw_views(images[[9]], aug, 4, seed=3, ids=[10])[0], v[9])
    assert not torch.equal(v[:, 0], v[:, 1])


def test_point_draws_match_for_each_row_whatever_the_batch():
    keys = point_keys(1, np.arange(10), 0)
    full = PointDraws(keys)
    a, b = full.rand((10, 3)), full.randn((10, 5))
    part = PointDraws(keys[[7, 3]])
    torch.testing.assert_close(part.rand((2, 3)), a[[7, 3]], rtol=0, atol=0)
    torch.testing.assert_close(part.randn((2, 5)), b[[7, 3]], rtol=0, atol=0)
    big = PointDraws(point_keys(0, np.arange(2000), 0))
    u, z = big.rand((2000, 50)), big.randn((2000, 50))
    assert 0 <= u.min() and u.max() < 1 and abs(u.mean() - 0.5) < 0.01
    assert abs(z.mean()) < 0.02 and abs(z.std() - 1) < 0.02
    with pytest.raises(ValueError, match="one row per key"):
        full.rand((5,))


def test_augmentation_without_point_draws_is_keyed_per_view(images):
    """A plain callable (no ``point_draws``) gets one generator per view, seeded from the same key."""

    def noise(x, generator=None):
        return (to_float(x) + 0.1 * torch.randn(x.shape, generator=generator)).clamp(0, 1)

    v = draw_views(images, noise, 3, seed=2)
    torch.testing.assert_close(draw_views(images[[4, 1]], noise, 3, seed=2, ids=[4, 1]), v[[4, 1]], rtol=0, atol=0)
    keys = point_keys(2, [4], [0, 1, 2])
    torch.testing.assert_close(augment_rows(noise, images[[4, 4, 4]], keys), v[4], rtol=0, atol=0)


@pytest.mark.parametrize("aug", [GaussianNoise(0.1), PatchMask(0.3)])
def test_every_metric_sees_the_same_views(images, aug):
    """SSLMem, LayerMem and UnitMem with the same (seed, ids) feed the encoder exactly ``draw_views``."""

    class Recorder(nn.Module):
        def __init__(self):
            super().__init__()
            self.lin, self.seen = nn.Linear(784, 8), []
            self.tap_names = ("lin",)

        def forward(self, x):
            self.seen.append(x.clone())
            return self.lin(x.flatten(1))

    ids = np.arange(100, 100 + N)
    want = draw_views(images, aug, 3, seed=9, ids=ids)
    for call in (
        lambda m: sslmem(m, m, images, aug, views=3, ids=ids, seed=9, batch_size=6),
        lambda m: layermem(m, m, images, aug, views=3, ids=ids, seed=9, batch_size=9),
    ):
        m = Recorder()
        call(m)
        seen = torch.cat(m.seen[0::2])  # f's passes: each batch goes through f, then g (the same module)
        torch.testing.assert_close(seen.view(N, 3, 1, 28, 28), want, rtol=0, atol=0)
    m = Recorder()
    unit_means(m, images, aug, ["lin"], views=3, ids=ids, seed=9, batch_size=N)
    torch.testing.assert_close(torch.stack(m.seen, 1), want, rtol=0, atol=0)  # one pass per view k


def test_fixed_views_equal_a_plain_per_point_loop(images):
    """memlib on fixed views = eq. 1–2 written out point by point, in float64, on a tap with a small range."""
    f, _ = _encoders("resnet_narrow")
    g = copy.deepcopy(f)  # g close to f: the raw scores' range is small, as between real f and g families
    with torch.no_grad():
        for p in g.parameters():
            p.add_(0.02 * p.std().nan_to_num() * torch.randn(p.shape, generator=torch.Generator().manual_seed(3)))
    views = draw_views(images, SimCLRAugment(size=28), 4, seed=1)
    tap = "layer1.0"

    def per_point(model, out_tap):
        acts = {}
        h = dict(model.named_modules())[out_tap].register_forward_hook(lambda m, i, o: acts.__setitem__("a", o))
        losses = []
        with torch.no_grad():
            for v in views:
                model(v)
                r = F.normalize(acts["a"].flatten(1).double(), dim=1)
                losses.append(np.mean([(r[i] - r[j]).norm().item() for i in range(4) for j in range(i + 1, 4)]))
        h.remove()
        return np.array(losses)

    raw = per_point(g, tap) - per_point(f, tap)
    res = layermem_from_views(f, g, views, [tap], batch_size=5)
    np.testing.assert_allclose(res.raw[0], raw, rtol=0, atol=TOL)
    np.testing.assert_allclose(res.score[0], raw / (raw.max() - raw.min()), rtol=0, atol=TOL)
    assert raw.max() - raw.min() < 0.05  # a small range: normalisation magnifies any error
    # sslmem on the images draws exactly these views
    np.testing.assert_allclose(
        sslmem(f, g, images, SimCLRAugment(size=28), views=4, seed=1).raw,
        sslmem_from_views(f, g, views).raw,
        rtol=0,
        atol=TOL,
    )


def test_fixed_views_clean_mode_needs_clean_images(images):
    f, g = _encoders("resnet_narrow")
    views = draw_views(images, GaussianNoise(0.1), 2)
    with pytest.raises(ValueError, match="clean="):
        sslmem_from_views(f, g, views, mode="clean")
    a = sslmem_from_views(f, g, views, clean=images, mode="clean")
    b = sslmem(f, g, images, GaussianNoise(0.1), views=2, mode="clean")
    np.testing.assert_allclose(a.raw, b.raw, rtol=0, atol=TOL)
    with pytest.raises(ValueError, match=r"\(N ≥ 1, K, C, H, W\)"):
        sslmem_from_views(f, g, views[0])


def test_scoring_is_float32_by_default_on_every_device(images):
    """Default scoring never autocasts (on CUDA neither: the dtype rule does not look at the device type)."""
    for fn in (alignment_loss, sslmem, layermem, unit_means, unitmem, sslmem_from_views, layermem_from_views):
        assert inspect.signature(fn).parameters["amp"].default is False, fn.__name__
    assert scoring_dtype(torch.device("cuda")) == torch.float32
    assert scoring_dtype(torch.device("cpu")) == torch.float32
    assert scoring_dtype(torch.device("cuda"), amp=True) == torch.bfloat16

    class Probe(nn.Module):
        def __init__(self):
            super().__init__()
            self.lin, self.state = nn.Linear(784, 4), []

        def forward(self, x):
            self.state.append(torch.is_autocast_enabled("cpu"))
            return self.lin(x.flatten(1))

    m = Probe()
    with torch.autocast("cpu", dtype=torch.bfloat16):  # an outer autocast is switched off, too
        alignment_loss(m, images, GaussianNoise(0.1), views=2)
    assert m.state and not any(m.state)
    m.state.clear()
    alignment_loss(m, images, GaussianNoise(0.1), views=2, amp=True)
    assert all(m.state)
    with pytest.raises(TypeError, match="amp=None"):
        alignment_loss(m, images, GaussianNoise(0.1), views=2, amp=None)


def test_bad_ids_are_refused(images):
    f, g = _encoders("resnet_narrow")
    with pytest.raises(ValueError, match="distinct"):
        sslmem(f, g, images, GaussianNoise(0.1), views=2, ids=[0] * N)
    with pytest.raises(ValueError, match="ids must be 20 integers"):
        sslmem(f, g, images, GaussianNoise(0.1), views=2, ids=np.arange(3))
    with pytest.raises(ValueError, match="empty"):
        sslmem(f, g, images[:0], GaussianNoise(0.1), views=2)
    res = sslmem(f, g, images.numpy(), GaussianNoise(0.1), views=2)  # a numpy array is taken as it is
    assert res.raw.shape == (N,)


def test_augmentation_size_other_than_the_images_warns():
    f, g = _encoders("resnet_narrow")
    small = torch.randint(0, 256, (4, 1, 8, 8), dtype=torch.uint8)
    with pytest.warns(UserWarning, match=r"augmentation size=28 but the images are 8×8.*SimCLRAugment\(size=8\)"):
        sslmem(f, g, small, SimCLRAugment(size=28), views=2)
