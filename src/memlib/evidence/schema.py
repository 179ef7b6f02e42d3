"""The evidence store's tables: their key columns, value columns and dtypes (schema version :data:`SCHEMA_VERSION`).

Every table has a key (the columns that name a row) and values. A row's key
appears once in the store; appending it again with the same values does
nothing, and with other values is an error (:class:`~memlib.evidence.store.StoreConflict`).
Every table also has ``batch``, the append that wrote the row; its
provenance (commit, preset, seed, device, hardware, threads, date, wall
time) is the ``provenance`` table's row of that batch.

Alignment losses are float64: the chapters' normalised scores are ratios of
differences of them, and a float32 copy would move glued values in their
fourth significant digit. Unit summaries are float32 (they are shown, never
differenced).
"""

from __future__ import annotations

from dataclasses import dataclass

#: Version of the tables' layout; a store written with another version is refused with the fix.
SCHEMA_VERSION = 1

STR, I64, F64, F32 = "string", "int64", "float64", "float32"


@dataclass(frozen=True)
class Table:
    """One table of the store: ``keys`` name a row, ``values`` are what it holds (name → dtype)."""

    name: str
    keys: dict[str, str]
    values: dict[str, str]
    doc: str

    @property
    def columns(self) -> dict[str, str]:
        """Every column with its dtype (keys, values, then ``batch``)."""
        return {**self.keys, **self.values, "batch": STR}


TABLES: dict[str, Table] = {
    t.name: t
    for t in (
        Table(
            "provenance",
            {"batch": STR},
            {
                "schema": I64,
                "experiment": STR,
                "design": STR,
                "preset": STR,
                "seed": I64,
                "commit": STR,
                "device": STR,
                "hardware": STR,
                "threads": I64,
                "date_utc": STR,
                "wall_s": F64,
                "versions": STR,
                "checksums": STR,
            },
            "one row per append (batch): where, when and by which code its rows were computed, and the SHA-256 "
            "of each of the batch's other files",
        ),
        Table(
            "encoders",
            {"encoder": STR},
            {
                "kind": STR,
                "arch": STR,
                "method": STR,
                "augmentation": STR,
                "dataset": STR,
                "n_train": I64,
                "train_seed": I64,
                "epochs": I64,
                "lam": F64,
                "spec": STR,
                "trained_at": STR,
                "trained_date": STR,
                "trained_hardware": STR,
                "train_threads": I64,
                "train_wall_s": F64,
                "final_loss": F64,
            },
            "one row per encoder: its EncoderSpec key (``encoder``) and spec (JSON), how and where it was trained; "
            "untrained encoders (the random floor) have kind 'untrained'",
        ),
        Table(
            "roles",
            {"experiment": STR, "design": STR, "encoder": STR},
            {"role": STR, "member": I64},
            "which role (f, g, f′, untrained, a DP level, …) an encoder plays in a design of an experiment",
        ),
        Table(
            "alignments",
            {
                "encoder": STR,
                "dataset": STR,
                "point_id": I64,
                "tap": STR,
                "augmentation": STR,
                "views": I64,
                "mode": STR,
                "view_seed": I64,
            },
            {"alignment": F64},
            "per encoder × point: the alignment loss (paper eq. 1) over K views keyed by (view_seed, point_id, k), "
            "at the representation (tap '') or a LayerMem tap",
        ),
        Table(
            "point_stats",
            {"encoder": STR, "dataset": STR, "point_id": I64, "stat": STR, "context": STR},
            {"value": F64},
            "per encoder × point: other per-point quantities (atypicality among a scored set, …); ``context`` "
            "names what the value depends on besides the encoder and point",
        ),
        Table(
            "probes",
            {"encoder": STR, "probe": STR, "context": STR},
            {"value": F64},
            "per encoder: probe accuracies (linear_acc, linear_train_acc, knn_acc, …) on the probe sets ``context``",
        ),
        Table(
            "history",
            {"encoder": STR, "epoch": I64, "metric": STR},
            {"value": F64},
            "per encoder × epoch: the training log (loss, kNN accuracy at evaluation epochs)",
        ),
        Table(
            "units",
            {"encoder": STR, "tap": STR, "unit": I64, "context": STR},
            {"unitmem": F32, "classmem": F32, "top_point_id": I64, "top_class": I64},
            "per encoder × unit: UnitMem and ClassMem summaries with the unit's preferred point and class",
        ),
        Table(
            "results",
            {"encoder": STR, "experiment": STR, "quantity": STR, "context": STR},
            {"value": F64},
            "per encoder: other results a chapter uses (pruning, removal, DP's ε, σ and δ, regularisers)",
        ),
    )
}
