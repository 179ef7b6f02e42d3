"""What every chapter on the evidence store shares: a design's scoring and probe contexts, encoder and
history rows, long-to-wide reads, provenance from stored batches, and the one read-or-compute step.

A chapter registered on the store (:mod:`~memlib.experiments.registry`) has a design (the encoders and
contexts it needs), a ``missing(store, design)`` (what the store lacks), a computing run, a ``rows(run,
design, cache)`` (the run as store rows) and a ``read(store, design)`` (the run rebuilt from rows only).
:func:`stored_run` ties them together the same way for every chapter: read from the store if it holds every
row, else compute, append one batch and read back, so every number a chapter shows comes from stored rows.
"""

from __future__ import annotations

import dataclasses
import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd
import torch

from ..evidence import EvidenceStore, batch_provenance
from ..provenance import provenance
from ..training.loop import fingerprint
from .artifacts import check_cache_dir
from .encoders import EncoderSpec
from .presets import Preset
from .registry import Experiment, check_parameters


class StoredContexts:
    """The store contexts of a design with a ``preset`` and a ``seed``: how its alignments were scored (the
    key columns of the ``alignments`` table) and which probe sets its probes used."""

    @property
    def scoring(self) -> dict:
        p = self.preset
        return {"augmentation": p.augmentation, "views": p.views, "mode": p.mode, "view_seed": self.seed}

    @property
    def probe_context(self) -> str:
        p = self.preset
        return (
            f"{p.dataset} probe sets of seed {self.seed}: train {p.probe_train}, test {p.probe_test}; "
            f"linear probe {p.probe_epochs} epochs"
        )

    def stored_alignments(self, store: EvidenceStore) -> pd.DataFrame:
        """The store's alignment rows of this design's points at the representation, scored in its context."""
        al = store.load("alignments")
        sel = (al.tap == "") & (al.dataset == self.preset.dataset) & al.point_id.isin(self.ids)
        for k, v in self.scoring.items():
            sel &= al[k] == v
        return al[sel]


def untrained_key(p: Preset, seed: int) -> str:
    """The store key of the untrained encoder of ``p``'s architecture built after ``torch.manual_seed(seed)``
    with the training split's channel statistics."""
    return fingerprint({"untrained": p.arch, "dataset": p.dataset, "seed": int(seed), "stats": "train split"})


def encoder_row(spec: EncoderSpec, cache: Path) -> dict:
    ckpt = torch.load(spec.checkpoint(cache), map_location="cpu", weights_only=False, mmap=True)
    prov = ckpt.get("provenance", {})
    hist = ckpt.get("history", [])
    return {
        "encoder": spec.key(),
        "kind": "trained",
        "arch": spec.arch,
        "method": spec.method,
        "augmentation": spec.augmentation,
        "dataset": spec.dataset,
        "n_train": len(spec.indices),
        "train_seed": spec.train.seed,
        "epochs": spec.train.epochs,
        "lam": spec.lam,
        "spec": json.dumps({"train": spec.train.to_dict(), "run": spec.run_config()}, sort_keys=True, default=str),
        "trained_at": ",".join(ckpt.get("commits", [])),
        "trained_date": str(prov.get("date_utc", "")),
        "trained_hardware": str(prov.get("hardware", "")),
        "train_threads": spec.train.threads,
        "train_wall_s": float(prov.get("wall_time_s") or np.nan),
        "final_loss": float(hist[-1]["loss"]) if hist and "loss" in hist[-1] else np.nan,
    }


def untrained_row(p: Preset, key: str, seed: int) -> dict:
    return {
        "encoder": key,
        "kind": "untrained",
        "arch": p.arch,
        "method": "",
        "augmentation": "",
        "dataset": p.dataset,
        "n_train": 0,
        "train_seed": int(seed),
        "epochs": 0,
        "lam": np.nan,
        "spec": json.dumps({"untrained": p.arch, "seed": int(seed), "stats": "train split"}),
        "trained_at": "",
        "trained_date": "",
        "trained_hardware": "",
        "train_threads": 0,
        "train_wall_s": np.nan,
        "final_loss": np.nan,
    }


def history_rows(key: str, history: list[dict]) -> pd.DataFrame:
    """The ``history`` rows of encoder ``key``'s training log (one dict per logged epoch)."""
    rows = [
        {"encoder": key, "epoch": int(e["epoch"]), "metric": k, "value": float(v)}
        for e in history
        for k, v in e.items()
        if k != "epoch" and v is not None and np.isfinite(v)
    ]
    return pd.DataFrame(rows, columns=["encoder", "epoch", "metric", "value"])


def matrix(df: pd.DataFrame, keys: list[str], ids: np.ndarray, value: str) -> np.ndarray:
    """Rows ``keys`` × columns ``ids`` of ``df``'s ``value`` (encoder, point_id long form)."""
    if not keys:
        return np.empty((0, len(ids)))
    wide = df.pivot(index="encoder", columns="point_id", values=value)
    return wide.loc[keys, ids].to_numpy(dtype=np.float64)


def store_provenance(store: EvidenceStore, d, experiment: str, *, keys=None, batches=None) -> dict:
    """Where design ``d``'s rows came from: the store batches that gave its encoders their roles in
    ``experiment`` (or ``batches``), and the training of its encoders (or of ``keys``)."""
    keys = d.keys() if keys is None else list(keys)
    enc = store.load("encoders").set_index("encoder").loc[keys]
    if batches is None:
        roles = store.load("roles")
        mine = roles.encoder.isin(keys) & (roles.design == d.name) & (roles.experiment == experiment)
        batches = sorted(set(roles.loc[mine, "batch"]))
    prov = store.batches().set_index("batch").loc[batches] if batches else pd.DataFrame()
    trained = enc[enc.kind == "trained"]
    return {
        "config": {"preset": d.preset.name, "seed": d.seed, **d.preset.to_dict()},
        "design": d.name,
        "store": str(store.path),
        "batches": batches,
        "commit": ",".join(sorted(set(prov["commit"]))) if len(prov) else "",
        "trained_at": sorted({c for s in trained.trained_at for c in s.split(",") if c}),
        "trained_dates": sorted(set(trained.trained_date)),
        "hardware": sorted(set(prov["hardware"])) if len(prov) else [],
        "device": ",".join(sorted(set(prov["device"]))) if len(prov) else "",
        "date_utc": ",".join(sorted(set(prov["date_utc"]))) if len(prov) else "",
        "wall_time_s": float(prov["wall_s"].sum()) if len(prov) else 0.0,
        "train_wall_s": float(np.nansum(trained.train_wall_s)),
        "n_encoders": len(enc),
    }


def stored_run(
    store: EvidenceStore,
    d,
    *,
    experiment: str,
    chapter: str,
    missing: Callable,
    compute: Callable,
    rows: Callable,
    read: Callable,
    train: bool = True,
    cache_dir=None,
    data_root=None,
):
    """Design ``d``'s run from the store: ``read(store, d, data_root)`` if ``missing(store, d)`` is empty; else
    (only with ``train``) ``compute()``, append ``rows(run, d, cache)`` as one batch, and read back.

    ``train=False`` refuses to compute anything: a missing row is an error naming what is missing.
    """
    lack = missing(store, d)
    if lack:
        if not train:
            raise LookupError(
                f"the evidence store {store.path} lacks {', '.join(lack)} of {d.name}; run with train=True "
                f"(memlib-evidence add --chapter {chapter}) to compute them, or point MEMLIB_RESULTS at a "
                "complete store"
            )
        t0 = time.perf_counter()
        run = compute()
        batch = rows(run, d, check_cache_dir(cache_dir))
        prov = batch_provenance(
            experiment,
            d.name,
            d.preset.name,
            d.seed,
            run.provenance["device"],
            time.perf_counter() - t0,
            commit=run.provenance["commit"],
        )
        store.append(batch, prov)
    return read(store, d, data_root)


def chapter_provenance(experiment: str, cfg, design: str, device, wall_s: float, stored: dict) -> dict:
    """A chapter's provenance block: its config (preset, seed, experiment, design and every setting), this
    analysis's commit, machine and time, the commits that trained its encoders, and ``stored`` (the store
    batches behind its rows, :func:`store_provenance`) under ``"store"``."""
    config = {"preset": cfg.preset.name, "seed": cfg.seed, "experiment": experiment, "design": design}
    prov = provenance(
        {**config, **cfg.preset.to_dict(), **cfg.settings.to_dict()}, device, wall_s, trained_at=stored["trained_at"]
    )
    prov["store"] = {k: stored[k] for k in ("batches", "commit", "hardware", "date_utc", "wall_time_s")}
    return prov


@dataclass(frozen=True)
class ChapterConfig:
    """A chapter's resolved config: the training preset, the chapter's own settings, the split seed, and the
    parameters it was resolved from (what a computing run is called with)."""

    preset: Preset
    settings: object
    seed: int
    params: dict = field(default_factory=dict)


def chapter_config(settings_cls, experiment: str, preset="smoke", seed: int = 0, **params) -> ChapterConfig:
    """Resolve a chapter's config once through its :class:`~memlib.experiments.settings.Settings` subclass:
    ``params`` change preset fields or the chapter's settings, ``None`` ignored, anything else refused with
    the closest name."""
    known = {f.name for f in dataclasses.fields(settings_cls)} | {f.name for f in dataclasses.fields(Preset)}
    check_parameters(params, known, experiment)
    params = {k: v for k, v in params.items() if v is not None}
    p, s = settings_cls.for_preset(preset, **params)
    return ChapterConfig(p, s, int(seed), params)


def missing_encoders(store: EvidenceStore, keys: list[str]) -> list[str]:
    """``["k of n encoders"]`` when the store lacks ``k`` of the encoder ``keys``, else ``[]``."""
    held = set(store.load("encoders")["encoder"])
    lack = [k for k in keys if k not in held]
    return [f"{len(lack)} of {len(keys)} encoders"] if lack else []


def stored_experiment(
    *,
    name: str,
    chapter: str,
    notebook: str,
    title: str,
    claims: tuple[str, ...],
    config: Callable,
    design: Callable,
    missing: Callable,
    compute: Callable,
    rows: Callable,
    read: Callable,
    minutes_per_encoder: float,
    prepare: Callable | None = None,
) -> Experiment:
    """An :class:`~memlib.experiments.registry.Experiment` of one design per config, on the evidence store.

    ``design(cfg, data_root)`` gives the design; ``compute(d, device=, cache_dir=, data_root=, progress=)``
    computes its run (training what the cache lacks); ``missing``, ``rows`` and ``read`` as in
    :func:`stored_run`. The experiment's run reads the design from the store (computing first what it lacks)
    and records :func:`chapter_provenance`. ``prepare(d, store=, train=, device=, cache_dir=, data_root=,
    progress=)``, if given, runs first and returns the design to fill (e.g. one bound to rows another
    experiment must have stored first).
    """

    def fill(d, *, store, train=True, device="cpu", cache_dir=None, data_root=None, progress=True):
        from ..evidence import open_store

        store = open_store(store, d.preset.name)
        if prepare is not None:
            d = prepare(d, store=store, train=train, device=device, cache_dir=cache_dir, data_root=data_root,
                        progress=progress)  # fmt: skip

        def run_it():
            return compute(d, device=device, cache_dir=cache_dir, data_root=data_root, progress=progress)

        return stored_run(store, d, experiment=name, chapter=chapter, missing=missing,
                          compute=run_it, rows=rows, read=read, train=train, cache_dir=cache_dir,
                          data_root=data_root)  # fmt: skip

    def run(cfg, *, store=None, train=True, device="cpu", cache_dir=None, data_root=None, progress=True):
        t0 = time.perf_counter()
        d = design(cfg, data_root)
        out = fill(d, store=store, train=train, device=device, cache_dir=cache_dir, data_root=data_root,
                   progress=progress)  # fmt: skip
        out.provenance = chapter_provenance(name, cfg, d.name, device, time.perf_counter() - t0, out.provenance)
        return out

    def bind(d, store):
        return d if prepare is None else prepare(d, store=store, train=False)

    return Experiment(
        name=name,
        chapter=chapter,
        notebook=notebook,
        title=title,
        claims=claims,
        config=config,
        design=lambda cfg, data_root=None: [design(cfg, data_root)],
        run=run,
        fill=fill,
        minutes_per_encoder=minutes_per_encoder,
        missing=missing,
        bind=bind if prepare is not None else None,
    )
