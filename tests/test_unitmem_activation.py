"""UnitMem's handling of negative activations: positive_part, shift_min, clamp_mean.

The encoders here are lookup tables: point i is an image whose pixels all equal i, and the
tapped module ``act`` outputs ``act(pre[i])``, token by token, so every activation is known.
"""

import numpy as np
import pytest
import torch
from torch import nn

from memlib.memorization import ACTIVATIONS, activation_floor, unit_means, unitmem_from_means, unitmem_from_views
from memlib.memorization.unitmem import GELU_MIN

N, T, K = 10, 16, 2
PLANTED = 3


pytestmark = pytest.mark.usefixtures("one_thread")


class Table(nn.Module):
    """Outputs ``act(pre[i])`` (tokens × units) for the point i whose image holds the value i."""

    def __init__(self, pre: torch.Tensor, act: nn.Module):
        super().__init__()
        self.register_buffer("pre", pre.float())  # (N, tokens, units)
        self.act = act  # the tapped layer

    def forward(self, x):
        idx = (x[:, 0, 0, 0] * 255).round().long()
        return self.act(self.pre[idx]).flatten(1)


def point_views(n: int = N, views: int = K) -> torch.Tensor:
    """(n, views, 1, 2, 2) uint8: every view of point i is the constant image i."""
    return torch.arange(n, dtype=torch.uint8)[:, None, None, None, None].expand(n, views, 1, 2, 2).contiguous()


def score(pre, act, activation, **kw):
    return unitmem_from_views(Table(pre, act), point_views(pre.shape[0]), ["act"], activation=activation, **kw)


def planted_pre(background: tuple[float, float], seed: int = 0) -> torch.Tensor:
    """Unit 0 fires (pre-activation 6) on 4 tokens of point PLANTED only; the rest is background."""
    g = torch.Generator().manual_seed(seed)
    lo, hi = background
    pre = lo + (hi - lo) * torch.rand(N, T, 1, generator=g)
    pre[PLANTED, :4, 0] = 6.0
    return pre


@pytest.mark.parametrize(
    "act, background",
    [(nn.ReLU(), (-1.0, 0.3)), (nn.GELU(), (-3.0, -0.2))],
    ids=["relu", "gelu"],
)
def test_a_unit_that_fires_for_one_point_scores_near_one(act, background):
    pre = planted_pre(background)
    post = act(pre)
    if isinstance(act, nn.GELU):  # a GELU tap: background activations in [−0.17, 0)
        bg = post[torch.arange(N) != PLANTED]
        assert (bg < 0).all() and (bg >= GELU_MIN).all()
    else:  # a ReLU tap: background activations are 0 or small positive ones
        assert (post >= 0).all() and (post[torch.arange(N) != PLANTED] > 0).any()
    res = score(pre, act, "positive_part")  # the default
    assert res.activation == "positive_part"
    assert res.unitmem["act"][0] > 0.9
    assert res.argmax["act"][0] == PLANTED
    assert (res.mu["act"] >= 0).all()


def test_default_is_positive_part_and_means_are_taken_after_it():
    pre = planted_pre((-3.0, 0.5))
    enc = Table(pre, nn.GELU())
    default = unitmem_from_views(enc, point_views(), ["act"])
    assert default.activation == "positive_part"
    np.testing.assert_array_equal(default.unitmem["act"], score(pre, nn.GELU(), "positive_part").unitmem["act"])
    # μ is the mean over tokens (and identical views) of max(GELU(pre), 0), not max(mean, 0).
    want = torch.nn.functional.gelu(pre.double()).clamp_min(0).mean(1).numpy()
    np.testing.assert_allclose(default.mu["act"], want, rtol=1e-6)
    got = unit_means(enc, point_views()[:, 0], lambda x, generator=None: x.float() / 255, ["act"], views=3)["act"]
    np.testing.assert_allclose(got, want, rtol=1e-6)  # unit_means has the same default


def test_on_relu_taps_all_handlings_agree():
    pre = planted_pre((-1.0, 0.3))
    results = [score(pre, nn.ReLU(), a) for a in ACTIVATIONS]
    for r in results[1:]:
        np.testing.assert_allclose(r.unitmem["act"], results[0].unitmem["act"], rtol=1e-12)
        np.testing.assert_allclose(r.mu["act"], results[0].mu["act"], rtol=1e-12)


def background_gelu_pre(seed: int = 0) -> torch.Tensor:
    """A GELU unit with no point of its own: 45 of 49 tokens are background (GELU ≈ −0.11), 4 respond alike
    on every point (pre-activation in [1.1, 1.3]) except point 0, which responds a little more (1.6)."""
    g = torch.Generator().manual_seed(seed)
    pre = torch.full((N, 49, 1), -0.3)
    pre[:, :4, 0] = 1.1 + 0.2 * torch.rand(N, 4, generator=g)
    pre[0, :4, 0] = 1.6
    return pre


def test_background_dominated_gelu_unit_is_not_near_one_by_default_but_is_under_clamp_mean():
    pre = background_gelu_pre()
    post = torch.nn.functional.gelu(pre.double())
    signed = post.mean(1)[:, 0]
    assert (signed[1:] < 0).all() and signed[0] > 0  # only point 0's background-dominated mean is above 0
    old = score(pre, nn.GELU(), "clamp_mean")
    new = score(pre, nn.GELU(), "positive_part")
    shifted = score(pre, nn.GELU(), "shift_min")
    # clamp_mean: every mean but point 0's is clamped to 0, so the unit "responds to point 0 only".
    assert old.unitmem["act"][0] > 0.99
    # positive_part: point 0's response is ~1.4× the others', far from a single-point unit.
    assert new.unitmem["act"][0] < 0.5
    assert shifted.unitmem["act"][0] < 0.5
    # Under every handling `clamped` reports the share of negative signed means (9 of 10 here).
    for r in (old, new, shifted):
        assert r.clamped["act"] == pytest.approx((N - 1) / N)


def test_shift_min_subtracts_the_gelu_floor():
    pre = planted_pre((-3.0, 0.5))
    res = score(pre, nn.GELU(), "shift_min")
    want = (torch.nn.functional.gelu(pre.double()) - GELU_MIN).mean(1).numpy()
    np.testing.assert_allclose(res.mu["act"], want, rtol=1e-6)
    # The floor can also be given, for every tap or per tap; a different floor moves μ.
    plain = torch.nn.functional.gelu(pre.double()).mean(1).numpy()
    np.testing.assert_allclose(score(pre, nn.GELU(), "shift_min", shift=-1.0).mu["act"], plain + 1.0, rtol=1e-6)


def test_activation_floor():
    x = torch.linspace(-4, 1, 200_001, dtype=torch.float64)
    assert activation_floor(nn.GELU()) == pytest.approx(torch.nn.functional.gelu(x).min().item(), abs=1e-9)
    assert activation_floor(nn.GELU()) <= torch.nn.functional.gelu(x).min().item()
    assert activation_floor(nn.GELU(approximate="tanh")) <= torch.nn.functional.gelu(x, approximate="tanh").min()
    assert activation_floor(nn.ReLU()) == 0.0
    assert activation_floor(nn.Sequential(nn.Linear(2, 2), nn.ReLU())) == 0.0
    assert activation_floor(nn.Identity()) is None


def test_bad_activation_and_shift_raise():
    pre = planted_pre((-1.0, 0.3))
    enc = Table(pre, nn.GELU())
    for call in (
        lambda: unitmem_from_views(enc, point_views(), ["act"], activation="relu"),
        lambda: unit_means(enc, point_views()[:, 0], lambda x, generator=None: x.float() / 255, activation="gelu"),
        lambda: unitmem_from_means({"act": np.ones((N, 1))}, "mean", 1, "clamp"),
    ):
        with pytest.raises(ValueError, match=r"activation='\w+' is unknown; choose one of .*positive_part"):
            call()
    with pytest.raises(ValueError, match="shift is only used with activation='shift_min'"):
        unitmem_from_views(enc, point_views(), ["act"], shift=-0.17)
    ident = Table(pre, nn.Identity())  # unbounded: shift_min cannot guess the floor
    with pytest.raises(ValueError, match="pass shift="):
        unitmem_from_views(ident, point_views(), ["act"], activation="shift_min")
    assert unitmem_from_views(ident, point_views(), ["act"], activation="shift_min", shift={"act": -1.0}).views == K
    with pytest.raises(ValueError, match="negative means"):
        unitmem_from_means({"act": -np.ones((N, 1))}, "mean", 1)  # signed means passed as positive_part ones
