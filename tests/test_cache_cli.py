"""memlib-cache over every kind of artifact memlib writes (the registry), and its errors.

Each error must exit with status 2 and one line naming the path (or kind) and the fix, and
leave the cache exactly as it was.
"""

import json
import os

import numpy as np
import pandas as pd
import pytest
import torch

from memlib.atomic import CorruptFileError, mark_complete, save_json, save_torch, start_run, write_csv
from memlib.data.datasets import ImageDataset
from memlib.experiments.cache import (
    DYNAMICS,
    ENCODERS,
    KINDS,
    SSLMEM,
    clear_cache,
    kinds,
    list_artifacts,
    main,
    skipped_kinds,
)
from memlib.experiments.encoders import EncoderSpec
from memlib.experiments.presets import get_preset
from memlib.experiments.setups_evidence import _load_snapshot
from memlib.models import build_encoder, channel_stats


def _snapshot(folder):
    return sorted(
        (p.relative_to(folder).as_posix(), p.stat().st_size if p.is_file() else -1) for p in folder.rglob("*")
    )


def _checkpoint(path, epoch=3, epochs=3):
    save_torch(
        {
            "fingerprint": "x",
            "epoch": epoch,
            "train_config": {"epochs": epochs},
            "commits": ["abc123"],
            "run_config": {"model_seed": 7001},
            "method": {"w": torch.zeros(10)},
        },
        path,
    )


@pytest.fixture
def cache(tmp_path):
    """One artifact of every kind; the results folders of even index finished, the others interrupted."""
    root = tmp_path / "cache"
    p = get_preset("smoke")
    for i, kind in enumerate(KINDS.values()):
        key = f"{i:016x}"
        if kind is DYNAMICS:  # where run_setups puts Fig. 2b's pair (encoders with snapshots)
            ckpt = EncoderSpec.from_preset(p, np.arange(10), 0, snapshots=True).checkpoint(root)
            _checkpoint(ckpt)
            save_torch({"epoch": 1, "encoder": {}}, ckpt.parent / "snapshots" / "epoch0001.pt")
        elif not kind.results:
            _checkpoint(kind.folder(root, key) / "checkpoint.pt", epoch=1 if i else 3)
        else:
            run = start_run(kind.folder(root, key))
            write_csv(pd.DataFrame({"a": [1]}), run / "results.csv", index=False)
            save_json({"commit": "abc123", "config": {"preset": "smoke", "seed": 0}}, run / "provenance.json")
            if i % 2 == 0:
                mark_complete(run)
    return root


def test_every_kind_is_listed_with_its_status(cache, capsys):
    arts = {a.kind: a for a in list_artifacts(cache)}
    assert set(arts) == set(KINDS) == set(kinds(cache))
    assert arts["encoders"].status == "complete" and arts["dp_encoders"].status == "partial 1/3"
    dyn = arts["dynamics"]
    assert dyn.path.parent == DYNAMICS.keys_dir(cache) == cache / "dynamics" / "encoders"
    assert (dyn.path / "snapshots" / "epoch0001.pt").is_file() and dyn.seed == 7001
    for name, kind in KINDS.items():
        if kind.results:
            i = list(KINDS).index(name)
            assert arts[name].status == ("complete" if i % 2 == 0 else "incomplete"), name
    assert main(["--cache-dir", str(cache), "list"]) == 0
    out = capsys.readouterr().out
    interrupted = sum(k.results and i % 2 == 1 for i, k in enumerate(KINDS.values()))
    assert "dynamics" in out and out.count(" incomplete ") == interrupted == 3
    assert f"{len(KINDS)} artifact(s)" in out and "not complete" in out
    assert main(["--cache-dir", str(cache), "list", "--kind", "dynamics"]) == 0
    assert "1 artifact(s)" in capsys.readouterr().out


def test_clear_deletes_every_kind_dynamics_included(cache, capsys):
    (cache / "notes.txt").write_text("keep me")
    assert main(["--cache-dir", str(cache), "clear", "--kind", "dynamics", "--yes"]) == 0
    assert not (cache / "dynamics").exists() and "dynamics" not in kinds(cache)
    assert main(["--cache-dir", str(cache), "clear", "--yes"]) == 0
    assert f"deleted {len(KINDS) - 1} artifact(s)" in capsys.readouterr().out
    assert os.listdir(cache) == ["notes.txt"]


def test_foreign_content_keeps_a_kind_folder_out_and_is_reported(cache, capsys):
    (cache / "dynamics" / "mine").mkdir()  # dynamics/ should hold only encoders/
    assert skipped_kinds(cache) == {"dynamics": cache / "dynamics" / "mine"}
    assert "dynamics" not in {a.kind for a in list_artifacts(cache)}
    assert main(["--cache-dir", str(cache), "clear", "--yes"]) == 0
    assert "left alone" not in capsys.readouterr().err  # clear says nothing about it, but keeps it
    assert sorted(os.listdir(cache)) == ["dynamics"]
    assert main(["--cache-dir", str(cache), "list"]) == 0
    assert "dynamics is left alone" in capsys.readouterr().err


def _one_error_line(capsys) -> str:
    cap = capsys.readouterr()
    lines = cap.err.strip().splitlines()
    assert cap.out == "" and len(lines) == 1, cap
    return lines[0]


@pytest.mark.parametrize("command", [["list"], ["clear", "--yes"]])
def test_missing_cache_folder_is_an_error(tmp_path, capsys, command):
    missing = tmp_path / "nowhere"
    assert main(["--cache-dir", str(missing), *command]) == 2
    line = _one_error_line(capsys)
    assert f"the cache folder {missing} does not exist" in line and "MEMLIB_CACHE" in line and "--cache-dir" in line
    assert not missing.exists()
    with pytest.raises(FileNotFoundError, match="does not exist"):
        clear_cache(missing)


@pytest.mark.parametrize("command", [["list"], ["clear", "--yes"]])
def test_cache_path_that_is_a_file_is_an_error(tmp_path, capsys, command):
    f = tmp_path / "cachefile"
    f.write_text("keep")
    assert main(["--cache-dir", str(f), *command]) == 2
    line = _one_error_line(capsys)
    assert f"the cache folder {f} is a file, not a folder" in line and "Fix:" in line
    assert f.read_text() == "keep"


@pytest.mark.parametrize("command", [["list", "--kind", "bogus"], ["clear", "--kind", "encoder", "--yes"]])
def test_unknown_kind_names_the_known_ones(cache, capsys, command):
    before = _snapshot(cache)
    assert main(["--cache-dir", str(cache), *command]) == 2
    line = _one_error_line(capsys)
    assert f"kind={command[2]!r} is not in the cache: memlib writes no such kind" in line
    assert "known kinds: " + ", ".join(KINDS) in line
    if command[2] == "encoder":
        assert "did you mean 'encoders'?" in line
    assert _snapshot(cache) == before


def test_read_only_cache_is_refused_before_anything_is_deleted(cache, capsys, monkeypatch):
    # Simulated with os.access: tests run as root, where chmod does not stop deletion.
    ro = SSLMEM.root(cache)
    real = os.access
    monkeypatch.setattr(os, "access", lambda p, mode, **kw: False if str(p) == str(ro) else real(p, mode, **kw))
    before = _snapshot(cache)
    assert main(["--cache-dir", str(cache), "clear", "--yes"]) == 2
    line = _one_error_line(capsys)
    assert f"{ro} is read-only for this user; nothing deleted. Fix: make it writable (chmod -R u+w {cache})" in line
    assert _snapshot(cache) == before  # not one kind deleted, though only sslmem/ is read-only


def test_writers_take_their_folders_from_the_registry(tmp_path):
    p = get_preset("smoke")
    ckpt = EncoderSpec.from_preset(p, np.arange(10), 0).checkpoint(tmp_path)
    assert ckpt.parent.parent == ENCODERS.keys_dir(tmp_path)
    dyn = EncoderSpec.from_preset(p, np.arange(10), 0, snapshots=True).checkpoint(tmp_path)
    assert dyn.parent == DYNAMICS.folder(tmp_path, ckpt.parent.name)


# --------------------------------------------------------------------------- #
# A truncated snapshot under dynamics/


def test_truncated_snapshot_names_the_file_and_the_fix(tmp_path):
    p = get_preset("smoke")
    images = torch.randint(0, 256, (8, 1, 28, 28), dtype=torch.uint8)
    ds = ImageDataset(images, torch.zeros(8, dtype=torch.int64), [str(i) for i in range(10)], "toy/train")
    stats = channel_stats(images)
    torch.manual_seed(0)
    enc = build_encoder(p.arch, 1, 28, *stats)
    snap = DYNAMICS.folder(tmp_path, "0123456789abcdef") / "snapshots" / "epoch0001.pt"
    save_torch({"epoch": 1, "encoder": enc.state_dict()}, snap)
    assert _load_snapshot(p.arch, ds, snap) is not None  # the intact one loads
    data = snap.read_bytes()
    snap.write_bytes(data[: len(data) // 2])
    with pytest.raises(CorruptFileError) as e:
        _load_snapshot(p.arch, ds, snap)
    msg = str(e.value)
    assert f"snapshot {snap} is unreadable" in msg
    assert f"Fix: delete its encoder folder {snap.parent.parent} and rerun run_setups" in msg
    assert snap.stat().st_size == len(data) // 2  # left for the user to delete
    with pytest.raises(CorruptFileError, match="epoch0002.pt is unreadable"):  # a missing one, too
        _load_snapshot(p.arch, ds, snap.with_name("epoch0002.pt"))


# --------------------------------------------------------------------------- #
# Runners that no fast test runs end to end: their _save writes every result, then the marker


def test_run_context_writes_every_result_then_the_marker(tmp_path):
    """Every runner saves through RunContext.save: its tables and JSONs, atomically, then COMPLETE."""
    import time

    import torch

    from memlib.atomic import is_complete
    from memlib.experiments.context import RunContext

    df = pd.DataFrame({"a": [1, 2]})
    ctx = RunContext(
        get_preset("smoke"),
        0,
        torch.device("cpu"),
        tmp_path,
        None,
        start_run(tmp_path / "run"),
        "abc",
        t0=time.perf_counter(),
    )
    assert not is_complete(ctx.run_dir)
    ctx.save(tables={"results": df, "pruning": df}, jsons={"provenance": {"commit": "abc", "x": np.float32(0.5)}})
    assert is_complete(ctx.run_dir)
    assert sorted(os.listdir(ctx.run_dir)) == ["COMPLETE", "provenance.json", "pruning.csv", "results.csv"]
    assert json.loads((ctx.run_dir / "provenance.json").read_text())["x"] == 0.5  # numpy scalars stay numbers


def test_no_writer_spells_a_kind_folder_itself():
    """Every ``<cache>/<kind>`` comes from the registry, so memlib-cache cannot miss a kind again."""
    import re
    from pathlib import Path

    import memlib

    src = Path(memlib.__file__).parent
    pattern = re.compile(r"/\s*[\"'](%s)[\"']" % "|".join(KINDS))
    hits = [
        f"{f.relative_to(src)}:{n}"
        for f in src.rglob("*.py")
        if f.name != "artifacts.py"
        for n, line in enumerate(f.read_text().splitlines(), 1)
        if pattern.search(line)
    ]
    assert hits == []
