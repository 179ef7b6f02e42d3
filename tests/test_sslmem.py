"""SSLMem's defining properties, on encoder pairs built so the answer is known."""

import numpy as np
import pytest
import torch
from torch import nn

from memlib.data.augment import GaussianNoise, SimCLRAugment
from memlib.memorization import alignment_loss, draw_views, sslmem
from memlib.models import build_encoder

N, PLANTED = 60, [3, 17, 29, 41, 58]


class Smooth(nn.Module):
    """A fixed random linear map of the image: views of a point stay close."""

    def __init__(self, d_in=784, d_out=32):
        super().__init__()
        self.proj = nn.Linear(d_in, d_out)

    def forward(self, x):
        return self.proj(x.flatten(1))


class Planted(nn.Module):
    """``base`` plus, on inputs near one of the planted images only, a term that
    changes wildly between augmented views: g "did not learn" those points."""

    def __init__(self, base, planted, amplitude=3.0):
        super().__init__()
        self.base, self.amplitude = base, amplitude
        self.register_buffer("planted", planted.float().flatten(1) / 255)
        self.register_buffer("w", torch.randn(784, 32, generator=torch.Generator().manual_seed(1)))

    def forward(self, x):
        near = (torch.cdist(x.flatten(1), self.planted).min(1).values < 3.0).float()
        return self.base(x) + self.amplitude * near[:, None] * torch.sin(1000 * x.flatten(1) @ self.w)


@pytest.fixture(scope="module")
def pair():
    torch.manual_seed(0)
    images = torch.randint(0, 256, (N, 1, 28, 28), dtype=torch.uint8)
    f = Smooth()
    g = Planted(f, images[PLANTED])
    return f, g, images


@pytest.mark.parametrize("mode", ["pairwise", "clean"])
def test_planted_memorisation_ranks_top(pair, mode):
    f, g, images = pair
    res = sslmem(f, g, images, GaussianNoise(0.02), views=4, mode=mode, batch_size=64)
    top = np.argsort(-res.score)[: len(PLANTED)]
    assert set(top) == set(PLANTED)
    others = np.setdiff1d(np.arange(N), PLANTED)
    assert res.raw[PLANTED].min() > 10 * np.abs(res.raw[others]).max()


def test_antisymmetric_when_f_and_g_swap(pair):
    f, g, images = pair
    a = sslmem(f, g, images, GaussianNoise(0.02), views=3, seed=4)
    b = sslmem(g, f, images, GaussianNoise(0.02), views=3, seed=4)
    np.testing.assert_array_equal(a.raw, -b.raw)
    np.testing.assert_array_equal(a.score, -b.score)
    np.testing.assert_array_equal(a.align_f, b.align_g)


def test_normalised_scores_in_range(pair):
    f, g, images = pair
    res = sslmem(f, g, images, GaussianNoise(0.05), views=3)
    assert np.all(np.abs(res.score) <= 1.0)
    assert res.score.max() - res.score.min() == pytest.approx(1.0)
    np.testing.assert_allclose(res.score * (res.raw.max() - res.raw.min()), res.raw)


def test_identical_encoders_score_zero(pair):
    f, _, images = pair
    res = sslmem(f, f, images, GaussianNoise(0.05), views=3)
    assert np.all(res.raw == 0) and np.all(res.score == 0)


def test_families_average_and_seeding(pair):
    f, g, images = pair
    aug = GaussianNoise(0.05)
    one = sslmem(f, g, images, aug, views=3, seed=1)
    fam = sslmem([f, f], [g, g], images, aug, views=3, seed=1)
    np.testing.assert_allclose(one.raw, fam.raw)
    assert fam.align_f_models.shape == (2, N)
    again = sslmem(f, g, images, aug, views=3, seed=1)
    other = sslmem(f, g, images, aug, views=3, seed=2)
    np.testing.assert_array_equal(one.raw, again.raw)
    assert not np.array_equal(one.raw, other.raw)


def test_pairwise_matches_per_point_definition():
    """The batched computation equals eq. 1 computed point by point."""
    torch.manual_seed(0)
    enc = build_encoder("resnet_narrow", 1, 28)
    images = torch.randint(0, 256, (5, 1, 28, 28), dtype=torch.uint8)
    aug, k = SimCLRAugment(size=28), 4
    batched = alignment_loss(enc, images, aug, views=k, batch_size=5 * k, seed=3)[0]
    views = draw_views(images, aug, k, seed=3)  # (5, k, 1, 28, 28): the views memlib scored
    enc.eval()
    with torch.no_grad():
        reps = [torch.nn.functional.normalize(enc(v).double(), dim=1) for v in views]
    ref = [np.mean([(r[i] - r[j]).norm().item() for i in range(k) for j in range(i + 1, k)]) for r in reps]
    np.testing.assert_allclose(batched, ref, rtol=1e-6)


def test_scoring_uses_eval_mode_and_restores_it():
    torch.manual_seed(0)
    enc = build_encoder("resnet_narrow", 1, 28)
    images = torch.randint(0, 256, (8, 1, 28, 28), dtype=torch.uint8)
    aug = SimCLRAugment(size=28)
    enc.train()
    a = alignment_loss(enc, images, aug, views=2)
    assert enc.training  # restored
    enc.eval()
    b = alignment_loss(enc, images, aug, views=2)
    np.testing.assert_array_equal(a, b)  # BatchNorm used running statistics both times


@pytest.mark.parametrize(
    "kw,err,msg",
    [
        (dict(views=1), ValueError, "views=1"),
        (dict(mode="cosine"), ValueError, "mode='cosine'"),
        (dict(batch_size=2.5), ValueError, "batch_size=2.5"),
        (dict(seed=-1), ValueError, "seed=-1"),
    ],
)
def test_bad_arguments(pair, kw, err, msg):
    f, g, images = pair
    with pytest.raises(err, match=msg):
        sslmem(f, g, images, GaussianNoise(0.05), **kw)


def test_float_images_refused(pair):
    f, g, images = pair
    with pytest.raises(TypeError, match="uint8"):
        sslmem(f, g, images.float(), GaussianNoise(0.05))
