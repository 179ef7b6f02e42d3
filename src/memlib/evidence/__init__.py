"""The evidence store: every chapter's per-encoder results, committed, append-only, with provenance.

Chapters ask the store for the encoders their design needs, train only the
missing ones, append their rows, and compute every verdict, table and
figure from stored rows. Trained weights stay in the cache
(``memlib-cache``); results live here (``memlib-evidence``). Load a table in
three lines of pandas::

    import pandas as pd, glob
    alignments = pd.concat(pd.read_parquet(f) for f in glob.glob("results/alignments/*.parquet"))
    alignments.groupby("encoder").alignment.mean()

(``EvidenceStore("results").load("alignments")`` does the same and keeps only
finished appends.) The tables, their keys and dtypes are in
:mod:`memlib.evidence.schema`; how files are written, in
:mod:`memlib.evidence.store`.
"""

from __future__ import annotations

import json
import os

import torch

from ..provenance import git_commit, hardware, provenance, versions
from .schema import SCHEMA_VERSION, TABLES, Table
from .store import EvidenceStore, StoreConflict, StoreError, default_store_path

__all__ = [
    "SCHEMA_VERSION",
    "TABLES",
    "EvidenceStore",
    "StoreConflict",
    "StoreError",
    "Table",
    "batch_provenance",
    "default_store_path",
    "open_store",
]


def open_store(store=None, preset: str | None = None) -> EvidenceStore:
    """``store`` as an :class:`EvidenceStore`: a store, a folder, or ``None`` for :func:`default_store_path`."""
    if isinstance(store, EvidenceStore):
        return store
    return EvidenceStore(store if store is not None else default_store_path(preset))


def batch_provenance(
    experiment: str, design: str, preset: str, seed: int, device, wall_s: float, commit: str | None = None
) -> dict:
    """The provenance of one append (see the ``provenance`` table): code, machine, threads, date, wall time."""
    prov = provenance({}, device, wall_s, commit=commit or git_commit())
    return {
        "experiment": experiment,
        "design": design,
        "preset": preset,
        "seed": int(seed),
        "commit": prov["commit"],
        "device": prov["device"],
        "hardware": hardware(device),
        "threads": int(os.environ.get("MEMLIB_WORKERS") or 0) or torch.get_num_threads(),
        "date_utc": prov["date_utc"],
        "wall_s": float(wall_s),
        "versions": json.dumps(versions(), sort_keys=True),
    }
