"""The point explorer's table: one row per scored point, its score the mean calibrated SSLMem over pairs (as
chapter 01 ranks points), with the standard error over pairs and the rank in its split."""

import json
import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from memlib.experiments.explorer import COLUMNS, gallery, load_points, point_table


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


# The explorer against chapter 01, on one store: the committed smoke store (scripts/make_test_store.py), whose
# glued_01.json holds what notebook 01 glued when it was executed from that store.
ROOT = Path(__file__).resolve().parents[1]
TEST_STORE = ROOT / "tests" / "data" / "evidence_smoke"


@pytest.fixture
def smoke_store(tmp_path, monkeypatch):
    """A copy of the committed smoke store as $MEMLIB_RESULTS, an empty $MEMLIB_CACHE, and no encoder may train."""
    from memlib.experiments import encoders

    store = tmp_path / "store"
    shutil.copytree(TEST_STORE, store, ignore=shutil.ignore_patterns("glued_01.json"))
    monkeypatch.setenv("MEMLIB_RESULTS", str(store))
    monkeypatch.setenv("MEMLIB_CACHE", str(tmp_path / "cache"))

    def no_fit(*a, **k):
        raise AssertionError("an encoder was trained although the explorer only reads the store")

    monkeypatch.setattr(encoders, "fit", no_fit)
    yield store
    assert not (tmp_path / "cache" / "encoders").exists(), "an encoder was trained or loaded"


def test_the_explorer_lists_every_point_chapter_01_scored_with_the_chapters_numbers(smoke_store):
    from memlib.data.splits import SUBSET_LABELS
    from memlib.experiments.registry import run_experiment

    glued = json.loads((TEST_STORE / "glued_01.json").read_text())
    before = sorted(p.name for p in smoke_store.rglob("*.parquet"))
    points = load_points("smoke", progress=False)
    assert sorted(p.name for p in smoke_store.rglob("*.parquet")) == before, "rows were appended"

    # Every point: each split scores S_S, S_C, S_E and S_I.
    per_split = sum(int(glued[f"n_{k}"]) for k in SUBSET_LABELS)
    assert len(points) == int(glued["n_splits"]) * per_split
    assert points["split"].nunique() == int(glued["n_splits"])
    assert (points["pairs"] * points["split"].nunique()).max() == int(glued["n_pairs"])
    # Chapter 01's mean normalised score per subset (glued by the executed notebook) is the explorer's mean.
    for key, label in SUBSET_LABELS.items():
        got = points.loc[points["subset"] == label, "normalised"].mean()
        assert got == pytest.approx(float(glued[f"mean_{key}"]), rel=1e-9, abs=1e-12), label
    # Per split and subset, the explorer's mean score is the chapter's per-pair table averaged over pairs.
    pt = run_experiment("sslmem", "smoke", progress=False, train=False).pair_table()
    want = pt.groupby(["split", "subset"])[["calibrated", "normalised"]].mean()
    got = points.groupby(["split", "subset"])[["score", "normalised"]].mean()
    np.testing.assert_allclose(got.loc[want.index, "score"], want["calibrated"], rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(got.loc[want.index, "normalised"], want["normalised"], rtol=1e-9, atol=1e-12)
    # Ranks run 1..n within each split, 1 for the highest score.
    for _, g in points.groupby("split"):
        assert g["rank"].min() == 1 and g.loc[g["score"].idxmax(), "rank"] == 1 and g["rank"].max() <= len(g)


def test_the_explorer_never_trains_a_missing_row_is_an_error(tmp_path, monkeypatch):
    from memlib.experiments import encoders

    monkeypatch.setattr(encoders, "fit", lambda *a, **k: pytest.fail("trained"))
    with pytest.raises(LookupError, match="lacks"):
        load_points("smoke", store=tmp_path / "empty-store", progress=False)


@pytest.mark.notebook
def test_the_explorer_notebook_runs_from_the_store_alone_and_shows_every_point(smoke_store, tmp_path):
    """What the book executes: notebook 07 from a complete store with an empty cache (as at `cpu` from results/,
    where it must never train): every point in the table, none downsampled away, and no parameters cell shown."""
    import nbformat

    from memlib.experiments.notebooks import execute

    nb = ROOT / "notebooks" / "07_explorer.ipynb"
    out = tmp_path / "07.ipynb"
    execute(nb, out, {"preset": "smoke", "device": "cpu", "seed": 0}, cwd=nb.parent)
    cells = nbformat.read(out, as_version=4).cells
    params = [c for c in cells if "parameters" in c.metadata.get("tags", [])]
    assert params and all("remove-cell" in c.metadata["tags"] for c in params)
    html = [o.get("data", {}).get("text/html", "") for c in cells if c.cell_type == "code" for o in c.outputs]
    (table,) = [h for h in html if "memlib-explorer-table" in h]
    n = len(load_points("smoke", progress=False))
    # itables embeds the rows as JSON: one thumbnail per point, none dropped by its maxBytes downsampling.
    assert "downsampled" not in table and table[table.index('"data_json"') :].count("data:image/png") == n
    assert f"{n:,} points over" in "".join(
        o.get("data", {}).get("text/markdown", "") for c in cells if c.cell_type == "code" for o in c.get("outputs", [])
    )
