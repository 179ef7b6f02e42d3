"""scripts/gpu_check.sh on a machine without a GPU: one SKIP line per GPU part, the summary, exit 0.

The script's GPU parts (benchmarks, notebooks on CUDA, the gpu-preset section) never run here: the
tests hide any GPU (CUDA_VISIBLE_DEVICES=""), so they take seconds wherever they run.
"""

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "scripts" / "gpu_check.sh"
PARTS = ["bench_sslmem", "bench_unitmem", "bench_train_step", "notebooks_smoke", "gpu_preset_01_sslmem"]
REASON = "no CUDA GPU (torch.cuda.is_available() is False)"

pytestmark = pytest.mark.skipif(shutil.which("bash") is None, reason="needs bash")


def _run(args, **env_extra):
    env = {k: v for k, v in os.environ.items() if k not in ("OUT", "GPU_CHECK_REHEARSE", "GPU_CHECK_BUDGET_S")}
    env.update(CUDA_VISIBLE_DEVICES="", PYTHON=sys.executable, **env_extra)
    return subprocess.run(
        ["bash", str(SCRIPT), *args], env=env, capture_output=True, text=True, timeout=180, check=False
    )


def test_skips_every_gpu_part_and_writes_the_summary(tmp_path):
    out = tmp_path / "results"
    r = _run([str(out)])
    assert r.returncode == 0, r.stdout + r.stderr
    for part in PARTS:
        assert f"SKIP {part}: {REASON}" in r.stdout.splitlines()
    summary = (out / "summary.txt").read_text()
    for part in PARTS:
        assert re.search(rf"^{part}\s+skipped\s+-\s+0\s+{re.escape(REASON)}$", summary, re.MULTILINE), summary
    assert "overall: ok (0 failed, 5 skipped, of 5)" in summary
    for field in ("date_utc: ", "commit: ", "torch: ", "mode: skipped", "total_wall_s: "):
        assert field in summary
    assert "## nvidia-smi" in summary
    assert not list(out.glob("bench_*.json"))  # nothing ran


def test_results_go_to_OUT_as_few_flat_files(tmp_path):
    # Through the device tool, $OUT is where results must go, and at most 8 files, 2 folders down, come back.
    out = tmp_path / "OUT"
    out.mkdir()
    r = _run([], OUT=str(out))
    assert r.returncode == 0, r.stdout + r.stderr
    assert (out / "summary.txt").is_file()
    assert f"results: {out}" in (out / "summary.txt").read_text()
    files = [p for p in out.rglob("*") if p.is_file()]
    assert len(files) <= 8 and all(len(p.relative_to(out).parts) <= 3 for p in files), files


@pytest.mark.notebook
def test_the_store_part_rehearsed_on_the_cpu_packs_batches_that_merge_into_a_sound_store(tmp_path):
    """scripts/gpu_session.sh's store part (scripts/gpu_store.py) at smoke on the CPU, into a copy of the test
    store: the designs it fills come back as batch files that unpack into another store and verify."""
    import json
    import tarfile

    from memlib.evidence import EvidenceStore

    store = tmp_path / "store"  # empty: every design of the study is to fill
    out = tmp_path / "out"
    env = {k: v for k, v in os.environ.items() if k != "OUT"}
    env.update(MEMLIB_CACHE=str(tmp_path / "cache"), MEMLIB_WORKERS="1", CUDA_VISIBLE_DEVICES="")
    cmd = [sys.executable, str(ROOT / "scripts" / "gpu_store.py"), "arch-size", "--preset", "smoke"]
    cmd += ["--store", str(store), "--out", str(out), "--device", "cpu", "--budget-s", "600"]
    r = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600, check=False)
    assert r.returncode == 0, r.stdout + r.stderr
    log = json.loads((out / "gpu_store.json").read_text())
    assert log["filled"] == log["todo"] and log["new_files"]
    merged = tmp_path / "merged"
    with tarfile.open(out / "store_batches.tar") as tar:
        tar.extractall(merged, filter="data")
    assert EvidenceStore(merged).verify() == []
    assert len(EvidenceStore(merged).load("roles")) == len(EvidenceStore(store).load("roles")) > 0
    again = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600, check=False)
    assert json.loads((out / "gpu_store.json").read_text())["todo"] == [], again.stdout + again.stderr


def test_gpu_workers_come_from_the_environment_and_bad_values_are_refused(monkeypatch):
    from memlib.experiments.encoders import gpu_workers

    monkeypatch.delenv("MEMLIB_GPU_WORKERS", raising=False)
    assert gpu_workers() == 1
    monkeypatch.setenv("MEMLIB_GPU_WORKERS", "12")
    assert gpu_workers() == 12
    monkeypatch.setenv("MEMLIB_GPU_WORKERS", "0")
    with pytest.raises(ValueError, match="MEMLIB_GPU_WORKERS"):
        gpu_workers()
