import numpy as np
import pytest

from memlib.data.splits import Splits, make_splits


def test_sizes_and_disjoint():
    s = make_splits(1000, 200, shared=500, candidate=100, seed=1)
    assert s.sizes() == {"candidate": 100, "shared": 500, "extra": 100, "independent": 100}
    train = np.concatenate([s.shared, s.candidate, s.independent])
    assert len(np.unique(train)) == len(train)
    assert train.max() < 1000 and s.extra.max() < 200
    assert len(s.f_train) == len(s.g_train) == 600


def test_fractions_resolve():
    s = make_splits(1000, 100, shared=0.7, candidate=0.1, extra=0.5)
    assert s.sizes() == {"candidate": 100, "shared": 700, "extra": 50, "independent": 100}


def test_seeded():
    a, b, c = (make_splits(500, 100, 200, 50, seed=k) for k in (3, 3, 4))
    assert all(np.array_equal(getattr(a, n), getattr(b, n)) for n in ("shared", "candidate", "independent", "extra"))
    assert not np.array_equal(a.candidate, c.candidate)


def test_stratified_candidates_match_independent():
    labels = np.repeat(np.arange(10), 100)
    s = make_splits(1000, 100, 300, 50, seed=0, train_labels=labels)
    assert np.array_equal(
        np.bincount(labels[s.candidate], minlength=10), np.bincount(labels[s.independent], minlength=10)
    )


@pytest.mark.parametrize(
    "kw,msg",
    [
        (dict(shared=900, candidate=100), "exceeds the 1000 training points"),
        (dict(shared=10, candidate=10, extra=500), "extra=500 exceeds"),
        (dict(shared=10, candidate=0), "candidate=0"),
        (dict(shared=1.5, candidate=10), "must lie in \\(0, 1\\)"),
        (dict(shared=-1, candidate=10), "shared=-1"),
    ],
)
def test_impossible_sizes(kw, msg):
    with pytest.raises(ValueError, match=msg):
        make_splits(1000, 100, **kw)


def test_overlap_is_refused():
    with pytest.raises(ValueError, match="share 1 indices"):
        Splits(shared=[1, 2], candidate=[2, 3], independent=[4], extra=[0], seed=0)


def test_json_roundtrip(tmp_path):
    s = make_splits(300, 50, 100, 20, seed=7)
    t = Splits.load(s.save(tmp_path / "splits.json"))
    assert t.seed == 7 and np.array_equal(s.independent, t.independent) and np.array_equal(s.extra, t.extra)
