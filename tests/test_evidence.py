"""The evidence store: append-only rows, schema validation, checksums, atomic appends, and chapters that
compute the same verdicts from stored rows as from freshly trained encoders."""

import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from memlib.evidence import EvidenceStore, StoreConflict, StoreError, batch_provenance
from memlib.evidence.schema import TABLES

ROOT = Path(__file__).resolve().parents[1]
TEST_STORE = ROOT / "tests" / "data" / "evidence_smoke"


def _rows(values=(0.5, 0.25), encoder="enc-a"):
    return pd.DataFrame(
        {
            "encoder": encoder,
            "dataset": "fashion_mnist",
            "point_id": np.arange(len(values)),
            "tap": "",
            "augmentation": "simclr",
            "views": 5,
            "mode": "pairwise",
            "view_seed": 0,
            "alignment": list(values),
        }
    )


def _prov():
    return batch_provenance("test", "design 0", "smoke", 0, "cpu", 1.0)


def test_append_is_idempotent_and_never_rewrites(tmp_path):
    store = EvidenceStore(tmp_path)
    assert store.append({"alignments": _rows()}, _prov()) == {"alignments": 2}
    files = sorted((tmp_path / "alignments").glob("*.parquet"))
    assert store.append({"alignments": _rows()}, _prov()) == {"alignments": 0}  # same key, same values: no-op
    assert sorted((tmp_path / "alignments").glob("*.parquet")) == files
    # one new key among old ones: only it is appended, in a new file
    assert store.append({"alignments": _rows((0.5, 0.25, 0.125))}, _prov()) == {"alignments": 1}
    df = store.load("alignments")
    assert list(df.sort_values("point_id").alignment) == [0.5, 0.25, 0.125]
    assert len(list((tmp_path / "alignments").glob("*.parquet"))) == 2
    assert store.verify() == []


def test_a_stored_key_with_other_values_is_refused_naming_both_provenances(tmp_path):
    store = EvidenceStore(tmp_path)
    store.append({"alignments": _rows()}, _prov())
    with pytest.raises(StoreConflict) as e:
        store.append({"alignments": _rows((0.5, 0.3))}, _prov())
    msg = str(e.value)
    assert "0.3" in msg and "0.25" in msg and "commit" in msg and "batch" in msg
    assert len(store.load("alignments")) == 2  # nothing was written


def test_schema_is_validated_with_clear_errors(tmp_path):
    store = EvidenceStore(tmp_path)
    with pytest.raises(StoreError, match="missing \\['alignment'\\]"):
        store.append({"alignments": _rows().drop(columns="alignment")}, _prov())
    with pytest.raises(StoreError, match="non-finite"):
        store.append({"alignments": _rows((0.5, float("nan")))}, _prov())
    with pytest.raises(StoreError, match="cannot be read as int64"):
        store.append({"alignments": _rows().assign(views="five")}, _prov())
    with pytest.raises(StoreError, match="not a table"):
        store.append({"alignment": _rows()}, _prov())
    assert not (tmp_path / "alignments").exists()


def test_verify_names_a_corrupted_file_and_a_tampered_row(tmp_path):
    store = EvidenceStore(tmp_path)
    store.append({"alignments": _rows()}, _prov())
    assert store.verify() == []
    part = next((tmp_path / "alignments").glob("*.parquet"))
    data = part.read_bytes()
    part.write_bytes(data[: len(data) // 2])  # truncated
    problems = store.verify()
    assert len(problems) == 1 and part.name in problems[0] and "SHA-256" in problems[0]
    with pytest.raises(StoreError, match="cannot be read as Parquet"):
        EvidenceStore(tmp_path).load("alignments")
    # the CLI exits 1 and names the file
    r = subprocess.run(
        [sys.executable, "-m", "memlib.experiments.evidence_cli", "--store", str(tmp_path), "verify"],
        capture_output=True,
        text=True,
    )
    assert r.returncode == 1 and part.name in r.stderr


def test_a_duplicated_key_with_different_values_fails_loading(tmp_path):
    store = EvidenceStore(tmp_path)
    store.append({"alignments": _rows()}, _prov())
    store.append({"alignments": _rows(encoder="enc-b")}, _prov())
    # a second file that gives enc-b's point 1 another value (as a bad merge of two branches would)
    b = sorted((tmp_path / "alignments").glob("*.parquet"))[1]
    t = pd.read_parquet(b)
    t.loc[1, "alignment"] = 9.0
    t.to_parquet(b)  # the checksum no longer matches, and the key now holds two values
    fresh = EvidenceStore(tmp_path)
    problems = fresh.verify()
    assert any("SHA-256" in p for p in problems)
    # write the conflicting row as a third, otherwise valid batch
    fresh2 = EvidenceStore(tmp_path / "two")
    fresh2.append({"alignments": _rows()}, _prov())
    batch = "20990101T000000-deadbeef"
    t2 = _rows((0.5, 0.75)).assign(batch=batch)
    t2.to_parquet(tmp_path / "two" / "alignments" / f"{batch}.parquet")
    prov = pd.DataFrame([{**_prov(), "batch": batch, "schema": 1, "checksums": "{}"}])
    prov.to_parquet(tmp_path / "two" / "provenance" / f"{batch}.parquet")
    with pytest.raises(StoreConflict, match="one key, two values"):
        EvidenceStore(tmp_path / "two").load("alignments")


def test_non_finite_values_on_disk_are_refused_on_load(tmp_path):
    store = EvidenceStore(tmp_path)
    store.append({"alignments": _rows()}, _prov())
    part = next((tmp_path / "alignments").glob("*.parquet"))
    t = pd.read_parquet(part)
    t.loc[0, "alignment"] = np.inf
    t.to_parquet(part)
    with pytest.raises(StoreError, match="non-finite"):
        EvidenceStore(tmp_path).load("alignments")


def test_an_append_killed_half_way_leaves_the_store_as_it_was(tmp_path):
    store = EvidenceStore(tmp_path)
    store.append({"alignments": _rows()}, _prov())
    # A child appends two tables and is killed (SIGKILL) after the first file, before the provenance row.
    code = textwrap.dedent(
        f"""
        import sys, time
        import pandas as pd
        from memlib.evidence import EvidenceStore, batch_provenance
        from memlib.evidence import store as st
        real = st.EvidenceStore._write
        def slow(self, t, df, path):
            out = real(self, t, df, path)
            print("wrote", t.name, flush=True)
            time.sleep(60)
            return out
        st.EvidenceStore._write = slow
        rows = pd.DataFrame({{"encoder": "enc-z", "epoch": [1, 2], "metric": "loss", "value": [1.0, 0.5]}})
        probes = pd.DataFrame({{"encoder": ["enc-z"], "probe": ["linear_acc"], "context": ["c"], "value": [0.5]}})
        EvidenceStore({str(tmp_path)!r}).append({{"history": rows, "probes": probes}},
                                               batch_provenance("t", "d", "smoke", 0, "cpu", 1.0))
        """
    )
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().startswith("wrote")
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    fresh = EvidenceStore(tmp_path)
    assert len(fresh.load("history")) == 0  # the unfinished batch is not read
    assert len(fresh.load("alignments")) == 2
    problems = fresh.verify()
    assert len(problems) == 1 and "did not finish" in problems[0]
    # the lock died with the process: the next append goes through
    assert fresh.append({"alignments": _rows((0.5, 0.25, 1.0))}, _prov()) == {"alignments": 1}


def test_every_table_has_keys_values_and_a_batch():
    for name, t in TABLES.items():
        assert t.keys and t.values, name
        assert "batch" in t.columns
        assert not set(t.keys) & set(t.values)


def test_the_committed_store_is_sound_and_within_budget():
    store = EvidenceStore(ROOT / "results")
    if not (ROOT / "results" / "provenance").is_dir():
        pytest.skip("no committed store")
    assert store.verify() == []
    assert store.size_bytes() <= 25e6


def test_status_lists_every_claim_with_its_n_and_verdict():
    r = subprocess.run(
        [sys.executable, "-m", "memlib.experiments.evidence_cli", "--root", str(ROOT), "status", "--json"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    ids = [c["id"] for c in out["claims"]]
    assert len(ids) == 38 and len(set(ids)) == 38
    decided = [c for c in out["claims"] if c["chapter"]]
    assert all(c["verdict"] for c in out["claims"])
    assert all(c["n"] is None or c["n"] >= 1 for c in decided)
    assert {r["chapter"] for r in out["chapters"]} >= {"01"}


def _registered():
    from memlib.experiments.registry import experiments

    return sorted(experiments())


def _analysis(result) -> list[pd.DataFrame]:
    """What a registered experiment's result decides or shows, as tables to compare."""
    if hasattr(result, "claims"):
        out = [result.claims()]
        for name in ("contrasts", "pair_table", "unit_summary", "planned_n"):
            if hasattr(result, name):
                out.append(getattr(result, name)())
        return out
    return [result.point_table() if hasattr(result, "point_table") else result.table()]


@pytest.mark.notebook
@pytest.mark.parametrize("name", _registered())
def test_every_registered_experiment_decides_the_same_from_the_store_alone(name, tmp_path, monkeypatch):
    from memlib.experiments import encoders
    from memlib.experiments.registry import run_experiment

    fresh = run_experiment(name, "smoke", store=tmp_path / "store", progress=False)
    # From the store only: no encoder may train, load or score now.
    monkeypatch.setenv("MEMLIB_CACHE", str(tmp_path / "empty-cache"))

    def no_fit(*a, **k):
        raise AssertionError("fit called although the store holds every row")

    monkeypatch.setattr(encoders, "fit", no_fit)
    stored = run_experiment(name, "smoke", store=tmp_path / "store", progress=False, train=False)
    for a, b in zip(_analysis(fresh), _analysis(stored), strict=True):
        pd.testing.assert_frame_equal(a, b)
    assert not (tmp_path / "empty-cache" / "encoders").exists()
    with pytest.raises(LookupError, match="lacks"):
        run_experiment(name, "smoke", store=tmp_path / "other", progress=False, train=False)


@pytest.mark.notebook
def test_chapter_05_rebuilt_from_stored_rows_equals_the_run_that_wrote_them(tmp_path, monkeypatch):
    """Every table chapter 05 shows, from the live run (UnitMem with its per-point means, encoders in memory)
    and from the rows it appended: the store keeps everything the analysis reads."""
    from memlib.experiments import localization_evidence as le
    from memlib.experiments.registry import run_experiment

    live = {}
    compute = le.run_localization

    def spy(*a, **k):
        live["run"] = compute(*a, **k)
        return live["run"]

    monkeypatch.setattr(le, "run_localization", spy)
    stored = run_experiment("localization", "smoke", store=tmp_path / "store", progress=False)
    fresh = live["run"]
    assert stored is not fresh and stored.encoders == {}
    pd.testing.assert_frame_equal(fresh.claims(), stored.claims())
    for arch in ("resnet", "vit"):
        pd.testing.assert_frame_equal(fresh.layer_table(arch), stored.layer_table(arch))
    pd.testing.assert_frame_equal(fresh.unit_summary(), stored.unit_summary())
    pd.testing.assert_frame_equal(fresh.vit_sensitivity(), stored.vit_sensitivity())
    pd.testing.assert_frame_equal(fresh.atypical(), stored.atypical())
    pd.testing.assert_frame_equal(fresh.finetune, stored.finetune)
    pd.testing.assert_frame_equal(fresh.pruning.reset_index(drop=True), stored.pruning, check_dtype=False)
    for which in ("resnet", "vit", "supervised", "untrained"):
        pd.testing.assert_frame_equal(fresh.member_units(which), stored.member_units(which))
        pd.testing.assert_frame_equal(fresh.unit_table(which, 1), stored.unit_table(which, 1), check_dtype=False)


@pytest.mark.notebook
def test_chapter_01_from_the_committed_test_store_trains_nothing_and_glues_the_same_values(tmp_path, monkeypatch):
    """The CI form of "a fresh clone with a complete store reproduces the chapter": notebook 01 at `smoke`
    from a committed store (written by scripts/make_test_store.py), with an empty cache."""
    from memlib.experiments.glance import glued_values
    from memlib.experiments.notebooks import execute

    store = tmp_path / "store"
    shutil.copytree(TEST_STORE, store, ignore=shutil.ignore_patterns("glued_01.json"))
    monkeypatch.setenv("MEMLIB_RESULTS", str(store))
    monkeypatch.setenv("MEMLIB_CACHE", str(tmp_path / "cache"))
    before = sorted(p.name for p in store.rglob("*.parquet"))
    t0 = time.perf_counter()
    out = tmp_path / "01.ipynb"
    nb = ROOT / "notebooks" / "01_sslmem.ipynb"
    execute(nb, out, {"preset": "smoke", "device": "cpu", "seed": 0}, cwd=nb.parent)
    assert not (tmp_path / "cache" / "encoders").exists(), "an encoder was trained or loaded"
    assert sorted(p.name for p in store.rglob("*.parquet")) == before, "rows were appended"
    want = json.loads((TEST_STORE / "glued_01.json").read_text())
    got = glued_values(out)
    assert {k: got.get(k) for k in want} == want
    assert time.perf_counter() - t0 < 600


def test_add_respects_its_budget_and_names_what_it_skips(tmp_path, capsys):
    from memlib.experiments.evidence_cli import _parse_budget, main

    assert _parse_budget("45m") == 45 and _parse_budget("2h") == 120 and _parse_budget("1h30m") == 90
    with pytest.raises(SystemExit, match="not a duration"):
        _parse_budget("soon")
    rc = main(["--store", str(tmp_path / "s"), "add", "--chapter", "01", "--preset", "smoke", "--budget", "0m"])
    out = capsys.readouterr().out
    assert rc == 0 and "past the budget" in out
    assert not (tmp_path / "s" / "encoders").exists()  # nothing trained, nothing appended
    assert main(["--store", str(tmp_path / "s"), "add", "--chapter", "99", "--preset", "smoke"]) == 2


def test_a_new_section_is_one_module_registered_on_the_store(tmp_path, monkeypatch):
    """The guide's "adding a section", as a test: a toy experiment (config, design, missing, compute, rows,
    read) registered with ``stored_experiment`` runs through ``run_experiment``, computes once, appends one
    batch and is read back from the store alone."""
    from dataclasses import dataclass

    from memlib.experiments import registry
    from memlib.experiments.presets import get_preset
    from memlib.experiments.registry import register_experiment, run_experiment
    from memlib.experiments.stored import missing_encoders, stored_experiment

    monkeypatch.setattr(registry, "EXPERIMENTS", dict(registry.experiments()))
    calls = []

    @dataclass(frozen=True)
    class Cfg:
        preset: object
        settings: object
        seed: int

    @dataclass(frozen=True)
    class Toy:
        scale: float = 2.0

        def to_dict(self):
            return {"scale": self.scale}

    @dataclass(frozen=True)
    class Design:
        preset: object
        seed: int
        scale: float
        name: str = "toy design"

        def keys(self):
            return [f"toy-{self.seed}"]

    @dataclass
    class Run:
        value: float
        provenance: dict

    def compute(d, **kw):
        calls.append(d)
        return Run(d.scale * (d.seed + 1), {"device": "cpu", "commit": "toy"})

    def rows(run, d, cache):
        enc = {c: "" for c in ("kind", "arch", "method", "augmentation", "dataset", "spec", "trained_at",
                               "trained_date", "trained_hardware")}  # fmt: skip
        enc.update(encoder=d.keys()[0], n_train=0, train_seed=d.seed, epochs=0, lam=0.0, train_threads=0,
                   train_wall_s=0.0, final_loss=0.0)  # fmt: skip
        res = {"encoder": d.keys()[0], "experiment": "toy", "quantity": "value", "context": "", "value": run.value}
        return {"encoders": pd.DataFrame([enc]), "results": pd.DataFrame([res])}

    def read(store, d, data_root=None):
        r = store.load("results")
        return Run(float(r.loc[r.encoder == d.keys()[0], "value"].iloc[0]), {"trained_at": [], "batches": [],
                   "commit": "", "hardware": [], "date_utc": "", "wall_time_s": 0.0})  # fmt: skip

    register_experiment(
        stored_experiment(
            name="toy",
            chapter="99",
            notebook="99_toy",
            title="a toy section",
            claims=(),
            config=lambda preset, seed=0, **kw: Cfg(get_preset(preset), Toy(**kw), seed),
            design=lambda cfg, data_root=None: Design(cfg.preset, cfg.seed, cfg.settings.scale),
            missing=lambda store, d: missing_encoders(store, d.keys()),
            compute=compute,
            rows=rows,
            read=read,
            minutes_per_encoder=0.1,
        )
    )
    out = run_experiment("toy", "smoke", seed=1, store=tmp_path / "s", scale=3.0)
    assert out.value == 6.0 and len(calls) == 1 and out.provenance["config"]["experiment"] == "toy"
    again = run_experiment("99", "smoke", seed=1, store=tmp_path / "s", scale=3.0, train=False)
    assert again.value == 6.0 and len(calls) == 1  # read from the store, not computed
    with pytest.raises(LookupError, match="lacks 1 of 1 encoders of toy design"):
        run_experiment("toy", "smoke", seed=2, store=tmp_path / "s", train=False)
