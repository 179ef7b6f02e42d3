"""The random-subset (in/out) SSLMem estimator: planted memorisation is recovered under encoder offsets, the
paper's fixed split is a special case, the design is exactly balanced, and bad input is refused."""

import numpy as np
import pytest
import torch
from torch import nn

from memlib.data.augment import SimCLRAugment
from memlib.memorization.sslmem import sslmem
from memlib.memorization.subset import (
    balanced_inclusion,
    check_inclusion,
    subset_sslmem,
    subset_sslmem_from_alignment,
)

pytestmark = pytest.mark.usefixtures("one_thread")


def _planted(m=24, n=300, seed=1, offset_sd=1.0):
    rng = np.random.default_rng(seed)
    inc = balanced_inclusion(n, m, seed)
    a = rng.normal(0, offset_sd, m)  # per-encoder offsets (a seed's global alignment level)
    b = rng.normal(1, 0.3, n)  # point difficulty
    mem = np.where(rng.random(n) < 0.1, 0.5, 0.02)  # a tenth of the points memorised
    return inc, a, b, mem, a[:, None] + b[None, :] - mem[None, :] * inc


def test_planted_memorisation_is_recovered_where_encoder_offsets_bias_the_raw_score():
    inc, a, b, mem, y = _planted()
    r = subset_sslmem_from_alignment(y, inc)
    assert np.abs(r.score - mem).max() < 1e-8  # exact without noise
    assert np.abs(r.raw - mem).max() > 0.2  # each point's in and out encoders differ in mean offset
    np.testing.assert_allclose(r.encoder_offset, a - a.mean(), atol=1e-8)
    # with noise the offset-free score still ranks the planted points far better
    y2 = y + np.random.default_rng(2).normal(0, 0.05, y.shape)
    r2 = subset_sslmem_from_alignment(y2, inc)
    assert np.corrcoef(r2.score, mem)[0, 1] > 0.9 > 0.6 > np.corrcoef(r2.raw, mem)[0, 1]
    top = np.argsort(-r2.score)[: int((mem > 0.1).sum())]
    assert (mem[top] > 0.1).mean() > 0.9
    assert np.all(r2.se > 0) and np.isfinite(r2.se).all()


def test_per_encoder_memorisation_estimates_the_mean_memorisation_without_offsets():
    inc, a, b, mem, y = _planted(offset_sd=2.0)
    r = subset_sslmem_from_alignment(y, inc)
    # each encoder's own contrast estimates the mean memorisation of its in and out points
    want = [(mem[inc[i]].mean() + mem[~inc[i]].mean()) / 2 for i in range(len(a))]
    np.testing.assert_allclose(r.encoder_memorization, want, atol=1e-10)
    # with no memorisation, large offsets give zero per-encoder memorisation
    r0 = subset_sslmem_from_alignment(a[:, None] + b[None, :] + 0 * inc, inc)
    assert np.abs(r0.encoder_memorization).max() < 1e-10
    assert np.abs(r0.score).max() < 1e-8


def test_the_balanced_design_has_exact_row_and_column_sums():
    inc = balanced_inclusion(300, 24, seed=0)
    assert inc.shape == (24, 300) and inc.dtype == bool
    assert set(inc.sum(1)) == {150} and set(inc.sum(0)) == {12}
    for k in range(6):  # balanced within each block of four
        assert set(inc[4 * k : 4 * k + 4].sum(0)) == {2}
    assert np.array_equal(inc, balanced_inclusion(300, 24, seed=0))
    assert not np.array_equal(inc, balanced_inclusion(300, 24, seed=1))
    whole = balanced_inclusion(50, 6, seed=3, block=None)
    assert set(whole.sum(1)) == {25} and set(whole.sum(0)) == {3}
    # rows differ: the swaps randomise beyond the greedy fill
    assert len({r.tobytes() for r in inc}) == 24


class _Tiny(nn.Module):
    def __init__(self, seed):
        super().__init__()
        torch.manual_seed(seed)
        self.net = nn.Sequential(nn.Conv2d(1, 4, 3), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 26 * 26, 8))

    def forward(self, x):
        return self.net(x)


def test_the_fixed_split_design_is_a_special_case_of_the_paper_score():
    f, g = [_Tiny(0), _Tiny(1)], [_Tiny(2), _Tiny(3)]
    gen = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (12, 1, 28, 28), generator=gen, dtype=torch.uint8)
    ids = np.arange(100, 112)
    cand, indep = np.arange(6), np.arange(6, 12)  # S_C: trained on by f only; S_I: by g only
    inc = np.zeros((4, 12), dtype=bool)
    inc[:2, cand] = True
    inc[2:, indep] = True
    aug = SimCLRAugment(size=28)
    res = subset_sslmem(f + g, inc, images, aug, views=3, ids=ids, seed=7)
    paper = sslmem(f, g, images, aug, views=3, ids=ids, seed=7)
    np.testing.assert_allclose(res.raw[cand], paper.raw[cand], atol=1e-6)  # "out" = g, "in" = f
    np.testing.assert_allclose(res.raw[indep], -paper.raw[indep], atol=1e-6)  # in/out swap on S_I
    t = res.table()
    assert list(t.columns[:4]) == ["id", "score", "se", "rank"] and sorted(t["rank"]) == list(range(1, 13))


@pytest.mark.parametrize(
    "inclusion, match",
    [
        (np.ones((3, 8), dtype=bool), "at least 4"),
        (balanced_inclusion(8, 4, 0)[:, :6], "6 columns but 8 points"),
        (np.hstack([balanced_inclusion(6, 4, 0), [[1, 1]] + [[0, 0]] * 3]).astype(bool), "at least 2 encoders in"),
        (np.vstack([np.ones((2, 8)), np.zeros((2, 8))]).astype(bool), "all or none of the points"),
        (np.full((4, 8), 2), "booleans"),
        (np.ones(8, dtype=bool), "must be \\(encoders, points\\)"),
    ],
)
def test_bad_designs_are_refused_with_the_fix(inclusion, match):
    with pytest.raises(ValueError, match=match):
        check_inclusion(inclusion, 8)


def test_bad_design_arguments_and_shapes_are_refused():
    with pytest.raises(ValueError, match="even"):
        balanced_inclusion(7, 4)
    with pytest.raises(ValueError, match="≥ 4"):
        balanced_inclusion(8, 2)
    with pytest.raises(ValueError, match="block"):
        balanced_inclusion(8, 6, block=4)
    inc = balanced_inclusion(8, 4, 0)
    with pytest.raises(ValueError, match="shape"):
        subset_sslmem_from_alignment(np.zeros((5, 8)), inc)
    with pytest.raises(FloatingPointError):
        subset_sslmem_from_alignment(np.full((4, 8), np.nan), inc)
    with pytest.raises(ValueError, match="one row each"):
        subset_sslmem([_Tiny(0)] * 3, inc, torch.zeros(8, 1, 28, 28, dtype=torch.uint8), SimCLRAugment(size=28))


def test_subset_sslmem_takes_scoring_options_like_every_metric():
    from memlib.memorization import ScoringOptions

    f = [_Tiny(i) for i in range(4)]
    images = torch.randint(0, 256, (8, 1, 28, 28), generator=torch.Generator().manual_seed(1), dtype=torch.uint8)
    inc = balanced_inclusion(8, 4, 0)
    aug = SimCLRAugment(size=28)
    a = subset_sslmem(f, inc, images, aug, views=3, seed=7)
    b = subset_sslmem(f, inc, images, aug, options=ScoringOptions(views=3, seed=7))
    np.testing.assert_array_equal(a.alignment, b.alignment)
    with pytest.raises(TypeError):
        subset_sslmem(f, inc, images, aug, views=3, options=ScoringOptions(views=3))
