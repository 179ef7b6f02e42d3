"""The walk of ``preset`` through memlib: from ``run_experiment`` (what every notebook calls) to training,
scoring and the store, a reader follows the preset through few files and comes back to each at most twice.

The walk is traced, not read: every memlib function called with a :class:`Preset` among its arguments (or
the preset's name as ``preset``), in call order, each function at its first call (a loop over encoders calls
the same helper again; that is iteration, not back-and-forth), comprehensions and lambdas counted as their
enclosing function. A *return* to a file is entering it again after the walk left it.

    python -m pytest -q tests/test_preset_walk.py
"""

from __future__ import annotations

import collections
import sys
from pathlib import Path

import pytest

import memlib
from memlib.experiments.presets import Preset
from memlib.experiments.registry import run_experiment

SRC = str(Path(memlib.__file__).parent)
MAX_RETURNS = 2


def preset_walk(fn) -> list[tuple[str, str]]:
    """``(file, function)`` of each step of the preset's walk while ``fn()`` runs (see the module docstring)."""
    walk, seen = [], set()

    def profile(frame, event, arg):
        if event != "call" or not frame.f_code.co_filename.startswith(SRC):
            return
        co, loc = frame.f_code, frame.f_locals
        if co.co_name.startswith("<"):
            return
        if not (any(isinstance(v, Preset) for v in loc.values()) or isinstance(loc.get("preset"), str)):
            return
        step = (co.co_filename[len(SRC) + 1 :], co.co_name)
        if step not in seen:
            seen.add(step)
            walk.append(step)

    sys.setprofile(profile)
    try:
        fn()
    finally:
        sys.setprofile(None)
    return walk


def returns(walk: list[tuple[str, str]]) -> collections.Counter:
    """Per file, how often the walk enters it again after leaving it."""
    out, seen, last = collections.Counter(), set(), None
    for f, _ in walk:
        if f != last and f in seen:
            out[f] += 1
        seen.add(f)
        last = f
    return out


def test_returns_counts_reentries_only():
    walk = [("a.py", "x"), ("a.py", "y"), ("b.py", "z"), ("a.py", "w"), ("c.py", "v"), ("a.py", "u")]
    assert returns(walk) == {"a.py": 2}
    assert returns([("a.py", "x"), ("b.py", "y")]) == {}


@pytest.mark.parametrize("name", ["sslmem", "removal", "regularization", "dp", "localization", "setups"])
def test_preset_walk_returns_to_no_file_more_than_twice(name, tmp_path):
    walk = preset_walk(
        lambda: run_experiment(name, "smoke", store=tmp_path / "store", cache_dir=tmp_path / "cache", progress=False)
    )
    files = {f for f, _ in walk}
    assert "experiments/registry.py" in files and len(walk) > 10  # the walk was traced from the entry point
    assert any(f.startswith("evidence/") for f in files)  # and reached the store
    back = returns(walk)
    worst = {f: n for f, n in back.items() if n > MAX_RETURNS}
    assert not worst, f"{name}: the preset's walk returns to {worst}: " + " -> ".join(f"{f}:{c}" for f, c in walk)
