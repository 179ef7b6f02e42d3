"""The registry of artifact kinds: every sort of folder memlib writes under the cache folder.

Declared once here; the experiments take their folders from it (``SSLMEM.folder(cache, key)``) and
``memlib-cache`` (:mod:`memlib.experiments.cache`) lists and clears exactly these kinds. Kept apart
from :mod:`~memlib.experiments.cache` so the experiments import it without the command line.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from ..atomic import check_writable_dir

__all__ = [
    "DP",
    "DP_ENCODERS",
    "DYNAMICS",
    "ENCODERS",
    "KINDS",
    "LOCALIZATION",
    "REGULARIZATION",
    "REMOVAL",
    "SETUPS",
    "SSLMEM",
    "ArtifactKind",
    "check_cache_dir",
    "default_cache_dir",
]


def default_cache_dir() -> Path:
    """``$MEMLIB_CACHE`` if set, else ``~/.cache/memlib/runs``."""
    return Path(os.environ.get("MEMLIB_CACHE") or Path.home() / ".cache" / "memlib" / "runs")


@dataclass(frozen=True)
class ArtifactKind:
    """One sort of folder memlib writes under the cache: ``<cache>/<name>/<nested…>/<key>/``."""

    name: str
    description: str
    results: bool  # a run's results, finished by a COMPLETE marker; else checkpoints written by training
    nested: tuple[str, ...] = ()  # folders between <cache>/<name> and the key folders

    def root(self, cache: str | Path) -> Path:
        """``<cache>/<name>``: the folder ``clear`` deletes (a cache of its own for nested kinds)."""
        return Path(cache) / self.name

    def keys_dir(self, cache: str | Path) -> Path:
        """The folder holding this kind's key folders."""
        return self.root(cache).joinpath(*self.nested)

    def folder(self, cache: str | Path, key: str) -> Path:
        """The artifact folder of ``key``."""
        return self.keys_dir(cache) / key


ENCODERS = ArtifactKind("encoders", "encoder checkpoints, shared by every experiment", results=False)
DP_ENCODERS = ArtifactKind("dp_encoders", "encoders trained with DP-SGD (run_dp)", results=False)
# run_setups trains Fig. 2b's pair in a cache of its own, <cache>/dynamics, laid out as the main one.
DYNAMICS = ArtifactKind(
    "dynamics", "encoders with per-epoch snapshots, Fig. 2b (run_setups)", results=False, nested=(ENCODERS.name,)
)
SSLMEM = ArtifactKind("sslmem", "SSLMem runs: scores, splits, summary (run_sslmem)", results=True)
REMOVAL = ArtifactKind("removal", "removal runs (run_removal)", results=True)
REGULARIZATION = ArtifactKind(
    "regularization", "λ sweeps of the alignment regulariser (run_regularization)", results=True
)
DP = ArtifactKind("dp", "DP-SGD runs (run_dp)", results=True)
LOCALIZATION = ArtifactKind("localization", "LayerMem / UnitMem runs (run_localization)", results=True)
SETUPS = ArtifactKind("setups", "SSLMem across setups, its tables (run_setups)", results=True)

#: Every kind of folder memlib writes under the cache folder, by name. The writers take their
#: folders from here, and ``memlib-cache`` lists and clears exactly these.
KINDS: dict[str, ArtifactKind] = {
    k.name: k for k in (ENCODERS, DP_ENCODERS, DYNAMICS, SSLMEM, REMOVAL, REGULARIZATION, DP, LOCALIZATION, SETUPS)
}


def check_cache_dir(cache_dir: str | Path | None = None) -> Path:
    """The cache folder (``cache_dir``, else :func:`default_cache_dir`), checked writable before any compute.

    Nothing is created.

    Raises
    ------
    ValueError
        If it, or a folder above it, is a file.
    PermissionError
        If it (or the folder it would be created in) is not writable.
    """
    if cache_dir is not None:
        path, name = Path(cache_dir).expanduser(), "cache_dir"
    else:
        path, name = default_cache_dir(), "MEMLIB_CACHE" if os.environ.get("MEMLIB_CACHE") else "cache_dir (default)"
    return check_writable_dir(path, name, "pass cache_dir= a writable folder, or set MEMLIB_CACHE=<writable folder>")
