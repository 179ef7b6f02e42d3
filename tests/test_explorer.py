"""The point explorer's table: one row per scored point, its score the mean calibrated SSLMem over pairs (as
chapter 01 ranks points), with the standard error over pairs and the rank in its split."""

from dataclasses import dataclass

import numpy as np
import pytest

from memlib.experiments.explorer import COLUMNS, gallery, point_table


@dataclass
class FakeRun:
    seed: int
    raw: np.ndarray  # pairs × points
    calibrated: np.ndarray
    subset: np.ndarray
    labels: np.ndarray
    images: np.ndarray
    classes: tuple = ("shirt", "shoe")

    def pair_scores(self, kind="raw"):
        return {"raw": self.raw, "calibrated": self.calibrated}[kind]

    def has_atypicality(self):
        return True

    def atypicality(self, k=5):
        return np.linspace(0, 1, self.raw.shape[1])


@dataclass
class FakeStudy:
    runs: list


def _run(seed, rng):
    raw = rng.normal(size=(3, 6))
    cal = raw - raw[:, 4:].mean(axis=1, keepdims=True)
    subset = np.array(["candidate"] * 4 + ["extra"] * 2)
    images = rng.integers(0, 255, size=(6, 1, 8, 8), dtype=np.uint8)
    return FakeRun(seed, raw, cal, subset, np.array([0, 1, 0, 1, 0, 1]), images)


def test_the_point_table_is_the_mean_over_pairs_with_its_standard_error_and_rank():
    rng = np.random.default_rng(0)
    runs = [_run(0, rng), _run(1, rng)]
    t = point_table(FakeStudy(runs))
    assert list(t.columns) == COLUMNS and len(t) == 12
    first = t[t["split"] == 0]
    np.testing.assert_allclose(first["score"], runs[0].calibrated.mean(axis=0))
    np.testing.assert_allclose(first["se"], runs[0].calibrated.std(axis=0, ddof=1) / np.sqrt(3))
    assert first.loc[first["score"].idxmax(), "rank"] == 1
    assert set(t["subset"]) == {"S_C", "S_E"} and set(t["class"]) == {"shirt", "shoe"}
    assert all(u.startswith("data:image/png;base64,") for u in t["image"])


def test_the_gallery_takes_the_ends_of_each_class_among_candidates():
    t = point_table(FakeStudy([_run(0, np.random.default_rng(1))]))
    g = gallery(t, k=1)
    assert set(g["subset"]) == {"S_C"}
    for cls, rows in g.groupby("class"):
        c = t[(t["class"] == cls) & (t["subset"] == "S_C")]
        assert rows[rows["end"] == "most"]["score"].item() == pytest.approx(c["score"].max())
        assert rows[rows["end"] == "least"]["score"].item() == pytest.approx(c["score"].min())
