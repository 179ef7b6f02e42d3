"""Every runner checks its cache folder and data root before any compute (memlib.experiments.validate).

No data are installed for these tests (``MEMLIB_FASHION_MNIST_DIR`` points nowhere): a runner
that loaded data before checking its folders would fail with FileNotFoundError instead.
"""

import os

import pytest

from memlib.experiments import run_dp, run_localization, run_regularization, run_removal, run_sslmem
from memlib.experiments.setups_evidence import run_setups
from memlib.experiments.validate import check_run_folders

RUNNERS = {
    "sslmem": run_sslmem,
    "removal": run_removal,
    "regularization": run_regularization,
    "dp": run_dp,
    "localization": run_localization,
    "setups": run_setups,
}
ROOT = os.geteuid() == 0


@pytest.fixture(autouse=True)
def _no_data(tmp_path, monkeypatch):
    monkeypatch.setenv("MEMLIB_FASHION_MNIST_DIR", str(tmp_path / "no-debian-package"))
    (tmp_path / "afile").write_text("keep")


def _snapshot(folder):
    return sorted(
        (p.relative_to(folder).as_posix(), p.stat().st_size if p.is_file() else -1) for p in folder.rglob("*")
    )


@pytest.mark.parametrize("name", RUNNERS)
def test_cache_dir_under_a_file(name, tmp_path):
    cache = tmp_path / "afile" / "cache"
    with pytest.raises(ValueError) as e:
        RUNNERS[name]("smoke", cache_dir=cache, data_root=tmp_path / "data", progress=False)
    msg = str(e.value)
    assert f"cache_dir='{cache}' lies under {tmp_path / 'afile'}, which is a file, not a folder" in msg
    assert "Fix: pass cache_dir= a writable folder, or set MEMLIB_CACHE=<writable folder>" in msg
    assert _snapshot(tmp_path) == [("afile", 4)]


@pytest.mark.parametrize("name", ["sslmem", "setups"])
def test_data_root_under_a_file(name, tmp_path):
    data = tmp_path / "afile" / "data"
    with pytest.raises(ValueError) as e:
        RUNNERS[name]("smoke", cache_dir=tmp_path / "cache", data_root=data, progress=False)
    assert f"data_root='{data}' lies under {tmp_path / 'afile'}" in str(e.value)
    assert "Fix: pass data_root= a writable folder (or set MEMLIB_DATA)" in str(e.value)
    assert _snapshot(tmp_path) == [("afile", 4)]


def test_memlib_cache_under_a_file_is_named(tmp_path, monkeypatch):
    monkeypatch.setenv("MEMLIB_CACHE", str(tmp_path / "afile" / "runs"))
    with pytest.raises(ValueError, match=r"MEMLIB_CACHE='.*afile/runs' lies under .*afile, which is a file"):
        run_sslmem("smoke", data_root=tmp_path / "data", progress=False)
    assert _snapshot(tmp_path) == [("afile", 4)]


@pytest.mark.parametrize("name", ["sslmem", "removal"])
def test_read_only_cache_simulated(name, tmp_path, monkeypatch):
    # Simulated with os.access: tests run as root, where chmod does not stop writes.
    ro = tmp_path / "ro"
    ro.mkdir()
    real = os.access
    monkeypatch.setattr(os, "access", lambda p, mode, **kw: False if str(p) == str(ro) else real(p, mode, **kw))
    with pytest.raises(PermissionError) as e:
        RUNNERS[name]("smoke", cache_dir=ro / "cache", data_root=tmp_path / "data", progress=False)
    assert f"cache_dir='{ro / 'cache'}' would be created in {ro}, which is not writable by this user" in str(e.value)
    assert "MEMLIB_CACHE=" in str(e.value)
    assert _snapshot(tmp_path) == [("afile", 4), ("ro", -1)]


@pytest.mark.skipif(ROOT, reason="runs as root, where chmod does not stop writes (see the simulated test above)")
def test_read_only_cache_for_real(tmp_path):
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o555)
    try:
        with pytest.raises(PermissionError, match="not writable by this user"):
            run_sslmem("smoke", cache_dir=ro, data_root=tmp_path / "data", progress=False)
    finally:
        ro.chmod(0o755)


def test_good_folders_pass_and_are_not_created(tmp_path):
    assert check_run_folders(tmp_path / "c", tmp_path / "d", "fashion_mnist") == tmp_path / "c"
    assert _snapshot(tmp_path) == [("afile", 4)]
