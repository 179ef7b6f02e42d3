"""A real ``kill -9`` of a real run, during training and during the results write: the rerun gives the
uninterrupted run's scores bit for bit, and nothing half-written is ever read (memlib.atomic, training.loop)."""

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.skipif(
    not os.path.isdir("/usr/share/datasets/fashion-mnist"),
    reason="Fashion-MNIST missing: sudo apt-get install dataset-fashion-mnist",
)

# run_sslmem at smoke; with KILL_FILE=<name> the process SIGKILLs itself after writing that file's
# bytes into its temporary file and before the rename, i.e. in the middle of the results write.
SCRIPT = textwrap.dedent("""
    import contextlib, os, signal, sys
    from pathlib import Path
    import torch
    torch.set_num_threads(1)
    import memlib.atomic as A
    from memlib.experiments import run_sslmem

    kill_file = os.environ.get("KILL_FILE")
    if kill_file:
        real = A.atomic_open

        @contextlib.contextmanager
        def dying(path, *a, **k):
            with real(path, *a, **k) as f:
                yield f
                if Path(path).name == kill_file:
                    f.flush()
                    os.kill(os.getpid(), signal.SIGKILL)

        A.atomic_open = dying
    run = run_sslmem("smoke", cache_dir=sys.argv[1], data_root=sys.argv[2], epochs=8, progress=False)
    print(run.run_dir)
""")


def _start(script, cache, data, **env):
    return subprocess.Popen(
        [sys.executable, str(script), str(cache), str(data)],
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "OMP_NUM_THREADS": "1", **env},
    )


def _finish(proc) -> Path:
    out, _ = proc.communicate(timeout=600)
    assert proc.returncode == 0, out
    return Path(out.strip().splitlines()[-1])


def test_kill9_during_training_and_during_the_results_write(tmp_path):
    from memlib.atomic import COMPLETE, is_complete

    script, data = tmp_path / "run.py", tmp_path / "data"
    script.write_text(SCRIPT)
    straight = _finish(_start(script, tmp_path / "straight", data))
    want = (straight / "scores.csv").read_bytes()

    # 1. killed while training, as soon as the first encoder checkpoint is on disk
    cache = tmp_path / "cache"
    victim = _start(script, cache, data)
    deadline = time.monotonic() + 300
    while not list(cache.glob("encoders/*/checkpoint.pt")):
        assert victim.poll() is None, "the run ended before its first checkpoint"
        assert time.monotonic() < deadline, "no checkpoint within 300 s"
        time.sleep(0.01)
    victim.send_signal(signal.SIGKILL)
    assert victim.wait(60) == -signal.SIGKILL
    assert not list(cache.glob(f"sslmem/*/{COMPLETE}"))  # it died before any result

    # 2. the rerun resumes, and is killed in the middle of writing scores.csv
    victim = _start(script, cache, data, KILL_FILE="scores.csv")
    assert victim.wait(600) == -signal.SIGKILL
    run_dir = next(cache.glob("sslmem/*"))
    assert not (run_dir / "scores.csv").exists()  # the half-written file never took the real name
    assert not is_complete(run_dir)
    assert list(run_dir.glob(".scores.csv.*.tmp"))  # what the kill left behind

    # 3. the next run finishes: identical scores, marker written, leftovers cleaned
    again = _finish(_start(script, cache, data))
    assert again == run_dir and is_complete(run_dir)
    assert (run_dir / "scores.csv").read_bytes() == want
    assert not list(run_dir.glob("*.tmp")) and not list(run_dir.glob(".*.tmp"))
