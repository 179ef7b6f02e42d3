"""The artifact cache: ``memlib-cache list / path / clear`` on a temporary cache."""

import json
import subprocess
import sys

import pytest
import torch

from memlib.experiments.artifacts import default_cache_dir
from memlib.experiments.cache import clear_cache, list_artifacts, main, read_provenance
from memlib.provenance import provenance
from memlib.training.loop import atomic_save


@pytest.fixture
def cache(tmp_path):
    """A cache with one SSLMem run (summary.json with provenance) and one encoder checkpoint."""
    root = tmp_path / "cache"
    run = root / "sslmem" / "aaaa1111bbbb2222"
    run.mkdir(parents=True)
    prov = provenance({"preset": "smoke", "seed": 7})
    (run / "summary.json").write_text(json.dumps({"provenance": prov, "summary": []}))
    (run / "scores.csv").write_text("subset,score\ncandidate,0.5\n")
    atomic_save(
        {
            "fingerprint": "x",
            "epoch": 2,
            "method": {"w": torch.zeros(100)},
            "commits": ["abc123"],
            "run_config": {"model_seed": 7001},
        },
        root / "encoders" / "cccc3333dddd4444" / "checkpoint.pt",
    )
    return root, prov


def test_default_cache_dir_honours_env(tmp_path, monkeypatch):
    monkeypatch.setenv("MEMLIB_CACHE", str(tmp_path / "elsewhere"))
    assert default_cache_dir() == tmp_path / "elsewhere"
    monkeypatch.delenv("MEMLIB_CACHE")
    assert default_cache_dir().parts[-3:] == (".cache", "memlib", "runs")


def test_list_reads_kind_key_size_and_provenance(cache):
    root, prov = cache
    arts = {a.kind: a for a in list_artifacts(root)}
    assert set(arts) == {"sslmem", "encoders"}
    run = arts["sslmem"]
    assert run.key == "aaaa1111bbbb2222"
    assert run.size_bytes == sum(f.stat().st_size for f in run.path.iterdir())
    assert (run.preset, run.seed, run.commit, run.created) == ("smoke", 7, prov["commit"], prov["date_utc"])
    enc = arts["encoders"]
    assert (enc.preset, enc.seed, enc.commit) == (None, 7001, "abc123")
    assert enc.size_bytes > 400  # the 100 float zeros are in it
    assert [a.kind for a in list_artifacts(root, kind="encoders")] == ["encoders"]
    assert list_artifacts(root / "missing") == []


def test_corrupt_files_are_listed_without_provenance(tmp_path):
    bad = tmp_path / "encoders" / "0123456789abcdef"
    bad.mkdir(parents=True)
    (bad / "checkpoint.pt").write_bytes(b"not a checkpoint")
    (bad / "partial.json").write_text("{ half")
    assert read_provenance(bad) == {"preset": None, "seed": None, "commit": None, "date": None}
    assert [a.key for a in list_artifacts(tmp_path)] == ["0123456789abcdef"]


def test_cli_path_and_list(cache, capsys, monkeypatch):
    root, prov = cache
    monkeypatch.setenv("MEMLIB_CACHE", str(root))
    assert main(["path"]) == 0
    assert capsys.readouterr().out.strip() == str(root)
    assert main(["list"]) == 0
    out = capsys.readouterr().out
    assert "aaaa1111bbbb2222" in out and "cccc3333dddd4444" in out and prov["commit"] in out
    assert "2 artifact(s)" in out


def test_clear_refuses_without_yes(cache, capsys):
    root, _ = cache
    before = sorted(p.relative_to(root) for p in root.rglob("*"))
    assert main(["--cache-dir", str(root), "clear"]) == 1
    assert "--yes" in capsys.readouterr().err
    assert sorted(p.relative_to(root) for p in root.rglob("*")) == before


def test_clear_one_kind_then_all(cache, capsys):
    root, _ = cache
    assert main(["--cache-dir", str(root), "clear", "--kind", "sslmem", "--yes"]) == 0
    assert [a.kind for a in list_artifacts(root)] == ["encoders"]
    assert main(["--cache-dir", str(root), "clear", "--yes"]) == 0
    assert list_artifacts(root) == [] and root.is_dir()  # the folder itself stays


def test_clear_unknown_kind_is_an_error_and_deletes_nothing(cache, capsys):
    root, _ = cache
    assert main(["--cache-dir", str(root), "clear", "--kind", "encoder", "--yes"]) == 2
    err = capsys.readouterr().err
    assert "'encoder'" in err and "encoders" in err
    assert len(list_artifacts(root)) == 2
    with pytest.raises(ValueError, match="kind='nope' is not in the cache"):
        clear_cache(root, "nope")
    assert len(list_artifacts(root)) == 2


def test_module_runs_as_a_command(cache):
    root, _ = cache
    r = subprocess.run(
        [sys.executable, "-m", "memlib.experiments.cache", "--cache-dir", str(root), "list"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert r.returncode == 0, r.stderr
    assert "aaaa1111bbbb2222" in r.stdout


def test_folders_that_are_not_artifacts_are_never_listed_or_deleted(cache):
    root, _ = cache
    (root / "notes").mkdir()
    (root / "notes" / "todo.txt").write_text("keep me")
    (root / "sslmem" / "not-a-key").mkdir()  # makes 'sslmem' a folder memlib did not write alone
    (root / "README").write_text("keep me too")
    assert [a.kind for a in list_artifacts(root)] == ["encoders"]
    assert main(["--cache-dir", str(root), "clear", "--yes"]) == 0
    assert (root / "notes" / "todo.txt").read_text() == "keep me" and (root / "README").exists()
    assert (root / "sslmem" / "aaaa1111bbbb2222" / "summary.json").exists()
    assert not (root / "encoders").exists()
