"""``import memlib`` stays light: the experiment runners and opacus load on first use (issue 30)."""

import subprocess
import sys


def _imported(code: str) -> set[str]:
    """Modules that ``python -X importtime -c code`` reports loading."""
    out = subprocess.run(
        [sys.executable, "-X", "importtime", "-c", code], capture_output=True, text=True, check=True
    ).stderr
    return {line.split("|")[-1].strip() for line in out.splitlines() if line.startswith("import time:")}


def test_import_memlib_loads_neither_experiments_nor_opacus():
    mods = _imported("import memlib")
    assert "memlib" in mods and "memlib.memorization" in mods  # the probe sees memlib's own modules
    heavy = sorted(m for m in mods if m.split(".")[0] == "opacus" or m.startswith("memlib.experiments"))
    assert heavy == []


def test_import_memlib_training_does_not_load_opacus():
    mods = _imported("import memlib.training.dp")
    assert not any(m.split(".")[0] == "opacus" for m in mods)


def test_lazy_names_still_resolve():
    import memlib
    from memlib import PRESETS, get_preset, run_sslmem
    from memlib.experiments import PRESETS as P2
    from memlib.experiments import run_sslmem as r2
    from memlib.training import DPConfig, dp_train
    from memlib.training.dp import DPConfig as D2
    from memlib.training.dp import dp_train as t2

    assert PRESETS is P2 and run_sslmem is r2 and get_preset("smoke") == P2["smoke"]
    assert DPConfig is D2 and dp_train is t2
    assert {"PRESETS", "get_preset", "run_sslmem"} <= set(dir(memlib))
    assert all(hasattr(memlib, name) for name in memlib.__all__)
