"""memlib.atomic: writes that never leave half a file, stale temporary files, completion markers, folder checks."""

import json
import os
import subprocess
import sys
import threading
import time

import numpy as np
import pandas as pd
import pytest
import torch

from memlib import atomic
from memlib.atomic import (
    COMPLETE,
    atomic_open,
    check_writable_dir,
    clean_stale_temps,
    is_complete,
    mark_complete,
    save_json,
    save_torch,
    start_run,
    write_bytes,
    write_csv,
    write_text,
)
from memlib.data.splits import Splits, make_splits

ROOT = os.geteuid() == 0 if hasattr(os, "geteuid") else False


def _listing(folder):
    return sorted(p.name for p in folder.iterdir())


def test_helpers_write_whole_files_and_leave_no_temp(tmp_path):
    write_text(tmp_path / "a.txt", "héllo")
    write_bytes(tmp_path / "b.bin", b"\x00\x01")
    save_json({"x": [1, 2]}, tmp_path / "c.json", indent=1)
    write_csv(pd.DataFrame({"k": [1, 2], "v": [0.5, 1.5]}), tmp_path / "d.csv", index=False)
    save_torch({"w": torch.arange(3)}, tmp_path / "sub" / "e.pt")  # the folder is created
    assert (tmp_path / "a.txt").read_text() == "héllo"
    assert (tmp_path / "b.bin").read_bytes() == b"\x00\x01"
    assert json.loads((tmp_path / "c.json").read_text()) == {"x": [1, 2]}
    assert pd.read_csv(tmp_path / "d.csv").to_dict("list") == {"k": [1, 2], "v": [0.5, 1.5]}
    assert torch.load(tmp_path / "sub" / "e.pt")["w"].tolist() == [0, 1, 2]
    assert _listing(tmp_path) == ["a.txt", "b.bin", "c.json", "d.csv", "sub"]
    # Permissions as a plain open() gives them, not mkstemp's 0600.
    assert (tmp_path / "a.txt").stat().st_mode & 0o777 == atomic._FILE_MODE


def test_an_error_while_writing_keeps_the_old_file_and_removes_the_temp(tmp_path):
    target = tmp_path / "summary.json"
    target.write_text("old")
    with pytest.raises(RuntimeError, match="disk full"):
        with atomic_open(target, "w") as f:
            f.write("half of the new")
            raise RuntimeError("disk full")
    assert target.read_text() == "old" and _listing(tmp_path) == ["summary.json"]
    # An object JSON cannot hold fails before anything is written.
    with pytest.raises(TypeError):
        save_json({"x": object()}, target)
    assert target.read_text() == "old" and _listing(tmp_path) == ["summary.json"]


def test_data_and_folder_are_fsynced(tmp_path, monkeypatch):
    synced = []
    real = os.fsync
    monkeypatch.setattr(os, "fsync", lambda fd: synced.append(os.readlink(f"/proc/self/fd/{fd}")) or real(fd))
    write_text(tmp_path / "a.txt", "x")
    assert any(".a.txt." in s and s.endswith(".tmp") for s in synced)  # the data, before the rename
    assert str(tmp_path) in synced  # the folder, after it


def test_two_writers_of_one_file_never_collide(tmp_path):
    # The old Splits.save used one fixed "<name>.tmp": a second writer's rename found it gone.
    target = tmp_path / "splits.json"
    with atomic_open(target, "w") as a:
        a.write("first")
        with atomic_open(target, "w") as b:
            b.write("second")
        assert target.read_text() == "second"
    assert target.read_text() == "first" and _listing(tmp_path) == ["splits.json"]

    s = make_splits(200, 50, 100, 20, seed=0)
    errors = []

    def save_many():
        try:
            for _ in range(50):
                s.save(target)
        except Exception as e:  # pragma: no cover - the failure this test guards against
            errors.append(e)

    threads = [threading.Thread(target=save_many) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    loaded = Splits.load(target)
    assert np.array_equal(loaded.candidate, s.candidate) and _listing(tmp_path) == ["splits.json"]


def _dead_pid() -> int:
    p = subprocess.Popen([sys.executable, "-c", "pass"])
    p.wait()
    return p.pid


def test_clean_stale_temps_removes_only_dead_writers_leftovers(tmp_path):
    dead, old = _dead_pid(), time.time() - 3600
    names = {
        f".summary.json.{dead}.abcd1234.tmp": True,  # atomic_open's, its writer is gone
        ".train-images-idx3-ubyte.k2j3h4l5.tmp": True,  # an older mkstemp writer's
        f"checkpoint.pt.tmp{dead}": True,  # training.loop.atomic_save's
        "summary.json.tmp": True,  # the old fixed-name writers'
        f".scores.csv.{os.getppid()}.abcd1234.tmp": False,  # a live process is writing it
        f".scores.csv.{os.getpid()}.abcd1234.tmp": False,  # this process is writing it
        "results.csv": False,  # a result, not a temporary file
    }
    for n in names:
        (tmp_path / n).write_text("x")
        os.utime(tmp_path / n, (old, old))
    # written after this process started: kept when it names no writer, removed when its writer is dead
    (tmp_path / ".fresh.json.k2j3h4l5.tmp").write_text("x")
    (tmp_path / f".killed.json.{dead}.abcd1234.tmp").write_text("x")
    names[f".killed.json.{dead}.abcd1234.tmp"] = True
    removed = clean_stale_temps(tmp_path)
    assert sorted(p.name for p in removed) == sorted(n for n, gone in names.items() if gone)
    assert _listing(tmp_path) == sorted([n for n, gone in names.items() if not gone] + [".fresh.json.k2j3h4l5.tmp"])
    assert clean_stale_temps(tmp_path / "missing") == []


def test_marker_is_written_last_and_checked(tmp_path):
    run = tmp_path / "run"
    start_run(run)
    write_csv(pd.DataFrame({"a": [1]}), run / "results.csv", index=False)
    assert not is_complete(run)  # results written, marker not yet
    mark_complete(run)
    assert is_complete(run)
    files = json.loads((run / COMPLETE).read_text())["files"]
    assert files == {"results.csv": (run / "results.csv").stat().st_size}
    (run / "results.csv").write_text("a\n1\n2\n")  # changed after the run finished
    assert not is_complete(run)
    (run / COMPLETE).write_text("{ half")
    assert not is_complete(run)


def test_start_run_drops_the_old_marker_and_stale_temps(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    write_text(run / "results.csv", "a\n1\n")
    mark_complete(run)
    stale = run / f".results.csv.{_dead_pid()}.abcd1234.tmp"
    stale.write_text("half")
    os.utime(stale, (time.time() - 3600,) * 2)
    start_run(run)
    assert _listing(run) == ["results.csv"] and not is_complete(run)  # results kept, marker and temp gone


def test_check_writable_dir_under_a_file(tmp_path):
    (tmp_path / "afile").write_text("keep")
    with pytest.raises(ValueError) as e:
        check_writable_dir(tmp_path / "afile" / "cache", "cache_dir", "pass cache_dir= a folder")
    msg = str(e.value)
    assert f"cache_dir='{tmp_path / 'afile' / 'cache'}'" in msg and f"lies under {tmp_path / 'afile'}" in msg
    assert "Fix: pass cache_dir= a folder" in msg
    with pytest.raises(ValueError, match="is a file, not a folder"):
        start_run(tmp_path / "afile")
    assert _listing(tmp_path) == ["afile"] and (tmp_path / "afile").read_text() == "keep"
    assert check_writable_dir(tmp_path / "new" / "deeper", "x", "y") == tmp_path / "new" / "deeper"
    assert not (tmp_path / "new").exists()  # checked, not created


def test_check_writable_dir_read_only_simulated(tmp_path, monkeypatch):
    # Simulated: tests run as root, where chmod does not stop writes; os.access is what the check asks.
    ro = tmp_path / "ro"
    ro.mkdir()
    real = os.access
    monkeypatch.setattr(os, "access", lambda p, mode, **kw: False if str(p) == str(ro) else real(p, mode, **kw))
    with pytest.raises(PermissionError) as e:
        check_writable_dir(ro / "cache", "MEMLIB_CACHE", "set MEMLIB_CACHE=<writable folder>")
    assert f"MEMLIB_CACHE='{ro / 'cache'}' would be created in {ro}, which is not writable" in str(e.value)
    assert "Fix: set MEMLIB_CACHE=<writable folder>" in str(e.value)
    with pytest.raises(PermissionError, match="is not writable by this user"):
        start_run(ro)
    assert _listing(ro) == []


@pytest.mark.skipif(ROOT, reason="runs as root, where chmod does not stop writes (see the simulated test above)")
def test_check_writable_dir_read_only_for_real(tmp_path):
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o555)
    try:
        with pytest.raises(PermissionError, match="not writable by this user"):
            check_writable_dir(ro / "cache", "cache_dir", "pass cache_dir=")
    finally:
        ro.chmod(0o755)
