"""What a chapter's provenance block says about the evidence store rows behind it."""

from __future__ import annotations

import numpy as np
import pandas as pd

from ..evidence import EvidenceStore
from ..provenance import commit_link, repository_url


def store_rows(store: EvidenceStore, keys: list[str]) -> dict[str, int]:
    """How many rows of each per-encoder table belong to the encoders ``keys``."""
    keys = set(keys)
    out = {}
    for table in ("encoders", "alignments", "point_stats", "probes", "history", "units", "results"):
        df = store.load(table)
        out[table] = int(df.encoder.isin(keys).sum()) if len(df) else 0
    return out


def store_summary(store: EvidenceStore, keys: list[str]) -> dict:
    """Encoders ``keys`` as the store knows them: how many, trained when, where and by which commits, and the
    store batches that hold their rows."""
    enc = store.load("encoders")
    enc = enc[enc.encoder.isin(set(keys))]
    trained = enc[enc.kind == "trained"]
    batches = sorted(set(enc.batch))
    prov = store.batches().set_index("batch").loc[batches] if batches else pd.DataFrame()
    dates = sorted(d for d in trained.trained_date if d)
    return {
        "encoders": len(enc),
        "trained": len(trained),
        "untrained": int((enc.kind == "untrained").sum()),
        "snapshots": int((enc.kind == "snapshot").sum()),
        "missing": len(set(keys)) - len(enc),
        "trained_from": dates[0] if dates else "",
        "trained_to": dates[-1] if dates else "",
        "hardware": sorted(set(h for h in trained.trained_hardware if h)),
        "trained_at": sorted({c for s in trained.trained_at for c in s.split(",") if c}),
        "train_hours": float(np.nansum(trained.train_wall_s)) / 3600,
        "batches": batches,
        "batch_commits": sorted(set(prov["commit"])) if len(prov) else [],
        "rows": store_rows(store, keys),
    }


def store_markdown(store: EvidenceStore, keys: list[str], repository: str | None = None) -> str:
    """A markdown table for a chapter's provenance block: the encoders and store rows behind its verdicts."""
    s = store_summary(store, keys)
    url = repository or repository_url()
    rows = [
        ("evidence store", f"`{store.path.name}/` ({len(s['batches'])} batches)"),
        (
            "encoders",
            f"{s['encoders']} ({s['trained']} trained, {s['untrained']} untrained"
            + (f", {s['snapshots']} training snapshots" if s["snapshots"] else "")
            + ")",
        ),
        ("trained", f"{s['trained_from']} to {s['trained_to']}" if s["trained_from"] else "—"),
        ("trained on", ", ".join(s["hardware"]) or "—"),
        ("training time", f"{s['train_hours']:.2f} h (sum over encoders)"),
        ("trained at commits", ", ".join(commit_link(c, url) for c in s["trained_at"]) or "—"),
        ("rows written at commits", ", ".join(commit_link(c, url) for c in s["batch_commits"]) or "—"),
        ("rows behind the verdicts", ", ".join(f"{k} {v:,}" for k, v in s["rows"].items() if v)),
    ]
    return "| | |\n|---|---|\n" + "\n".join(f"| {k} | {v} |" for k, v in rows)
