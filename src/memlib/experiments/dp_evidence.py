"""Chapter 04 (differential privacy) as a registered experiment: its design, its rows in the evidence store,
and the :class:`~memlib.experiments.dp_run.DPRun` rebuilt from those rows.

As for every chapter on the store (:func:`~memlib.experiments.stored.stored_experiment`): if the store lacks
a row of the design, :func:`~memlib.experiments.dp_run.run_dp` computes the sweep (training only what the
cache lacks) and its rows are appended as one batch; the run the chapter analyses is always rebuilt from
stored rows (:func:`~memlib.experiments.dp_run.dp_analysis`, shared with the computing run).

Rows of one sweep
    ``encoders`` and ``roles`` (f and g of every setting, the public-pretrained starts, untrained ViTs),
    ``alignments`` (per f and g encoder × point of S_C and S_E), ``probes`` (linear and kNN accuracy of
    every trained encoder; with train accuracy for the floors), ``results`` (per f encoder: ε spent where
    finite, σ, δ where DP accounted, steps and mean UnitMem) and ``history`` (each training log).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import torch

from ..data.datasets import test_point_ids
from ..evidence import EvidenceStore
from ..memorization.sslmem import sslmem_from_alignment
from .dp_run import DPRun, DPSettings, dp_analysis, dp_levels, dp_specs, run_dp
from .encoders import method_setup
from .inputs import load_with_splits
from .presets import Preset
from .registry import register_experiment
from .sslmem_experiment import floor_seeds
from .stored import (
    ChapterConfig,
    StoredContexts,
    chapter_config,
    encoder_row,
    history_rows,
    matrix,
    missing_encoders,
    store_provenance,
    stored_experiment,
    untrained_key,
    untrained_row,
)

EXPERIMENT = "dp"
_PROBES = ("linear_acc", "knn_acc")
_FLOOR = ("linear_acc", "linear_train_acc", "knn_acc")
#: Per f encoder, what the sweep's analysis reads besides scores and probes (non-finite values are not stored:
#: ε spent is ∞ without noise, δ is undefined without DP, and read back as such).
_META = ("epsilon", "noise_multiplier", "delta", "steps")


def dp_config(preset="smoke", *, seed: int = 0, **params) -> ChapterConfig:
    """Resolve chapter 04's config once: ``params`` change preset fields (``epochs=``) or DP settings
    (``epsilons=``, ``public=``), ``None`` ignored, anything else refused with the closest name."""
    return chapter_config(DPSettings, EXPERIMENT, preset, seed, **params)


@dataclass(frozen=True)
class DPDesign(StoredContexts):
    """What one DP sweep needs from the store: its encoders, scored points and contexts."""

    preset: Preset
    seed: int
    settings: DPSettings
    public: list  # the public-pretrained specs, one per member (empty without public pretraining)
    members: list  # (setting, family, member, spec) of every private training
    floor: list  # (store key, seed) of the untrained ViTs
    ids: np.ndarray  # S_C, then S_E (test point ids)
    n_candidates: int
    unit_points: int
    name: str
    params: dict = field(default_factory=dict)

    def keys(self) -> list[str]:
        """Every encoder key: private trainings, public starts, then untrained ViTs."""
        return self.trained_keys() + [k for k, _ in self.floor]

    def trained_keys(self) -> list[str]:
        """The keys of the encoders the design trains: private trainings, then public starts."""
        return [s.key() for *_, s in self.members] + [s.key() for s in self.public]

    @property
    def scoring(self) -> dict:
        return {**super().scoring, "augmentation": method_setup(self.preset, "mae")[1]}

    @property
    def unit_context(self) -> str:
        return f"mean UnitMem of every unit over f's {self.unit_points} training points, K=10, seed {self.seed}"


def dp_design(cfg: ChapterConfig, data_root=None) -> DPDesign:
    """The :class:`DPDesign` of ``cfg`` (loads the data set to draw the split; trains nothing)."""
    p, s, seed = cfg.preset, cfg.settings, cfg.seed
    train_set, _, splits = load_with_splits(p, seed, data_root)
    public, members = dp_specs(p, s, train_set, splits, seed, cache="")
    arch = method_setup(p, "mae")[0]
    floor = [(untrained_key(p.replace(arch=arch), x), x) for x in floor_seeds(seed)]
    ids = np.concatenate([splits.candidate, test_point_ids(splits.extra, train_set)]).astype(np.int64)
    name = (
        f"split {seed}: MAE on {arch}, {len(splits.f_train)} private points, {p.epochs} epochs, "
        f"{p.models_per_family} per family; settings {', '.join(n for n, *_ in dp_levels(s))}; "
        f"public {s.public} × {s.public_epochs} epochs"
    )
    return DPDesign(p, seed, s, public, members, floor, ids, len(splits.candidate), len(splits.f_train), name,
                    cfg.params)  # fmt: skip


def dp_rows(run: DPRun, d: DPDesign, cache) -> dict[str, pd.DataFrame]:
    """The store rows of a computed sweep ``run`` (its encoders' checkpoints are read from ``cache``)."""
    p, m = d.preset, run.measured
    enc, roles, al, hist, probes, results = [], [], [], [], [], []

    def trained(spec, role, member):
        enc.append(encoder_row(spec, cache))
        roles.append({"experiment": EXPERIMENT, "design": d.name, "encoder": spec.key(), "role": role,
                      "member": member})  # fmt: skip
        ck = torch.load(spec.checkpoint(cache), map_location="cpu", weights_only=False, mmap=True)
        hist.append(history_rows(spec.key(), ck.get("history", [])))

    for name, fam, i, spec in d.members:
        key = spec.key()
        trained(spec, f"{name} {fam}", i)
        r = m["scored"][name]
        a = (r.align_f_models if fam == "f" else r.align_g_models)[i]
        al.append(pd.DataFrame({"encoder": key, "dataset": p.dataset, "point_id": d.ids, "tap": "", **d.scoring,
                                "alignment": a}))  # fmt: skip
        acc = m["probes"][(name, fam, i)]
        probes += [{"encoder": key, "probe": k, "context": d.probe_context, "value": float(acc[k])} for k in _PROBES]
        if fam == "f":
            meta = m["meta"][(name, i)]
            results += [_result(key, q, "", meta[q]) for q in _META if np.isfinite(meta[q])]
            results.append(_result(key, "unitmem", d.unit_context, m["units"][(name, i)]))
    for i, spec in enumerate(d.public):
        trained(spec, "public", i)
        row = run.public.set_index("member").loc[i]
        probes += [{"encoder": spec.key(), "probe": k, "context": d.probe_context, "value": float(row[k])}
                   for k in _FLOOR]  # fmt: skip
    arch = method_setup(p, "mae")[0]
    table = run.floor.set_index("seed")
    for key, seed in d.floor:
        enc.append(untrained_row(p.replace(arch=arch), key, seed))
        roles.append({"experiment": EXPERIMENT, "design": d.name, "encoder": key, "role": "untrained",
                      "member": seed})  # fmt: skip
        probes += [{"encoder": key, "probe": k, "context": d.probe_context, "value": float(table.at[seed, k])}
                   for k in _FLOOR]  # fmt: skip
    return {
        "encoders": pd.DataFrame(enc),
        "roles": pd.DataFrame(roles),
        "alignments": pd.concat(al, ignore_index=True),
        "probes": pd.DataFrame(probes),
        "results": pd.DataFrame(results),
        "history": pd.concat(hist, ignore_index=True),
    }


def _result(key: str, quantity: str, context: str, value) -> dict:
    return {"encoder": key, "experiment": EXPERIMENT, "quantity": quantity, "context": context, "value": float(value)}


def missing(store: EvidenceStore, d: DPDesign) -> list[str]:
    """What the store lacks for ``d``, one phrase each (empty: the sweep can be analysed from the store)."""
    out = missing_encoders(store, d.keys())
    al = store.load("alignments")
    sel = (al.tap == "") & al.point_id.isin(d.ids)
    for k, v in d.scoring.items():
        sel &= al[k] == v
    n = al[sel].groupby("encoder").size()
    short = sum(n.get(s.key(), 0) < len(d.ids) for *_, s in d.members)
    if short:
        out.append(f"alignments of {short} encoders")
    pr = store.load("probes")
    pr = pr[(pr.context == d.probe_context) & pr.encoder.isin(d.keys())]
    if len(pr) < len(_PROBES) * len(d.members) + len(_FLOOR) * (len(d.public) + len(d.floor)):
        out.append("probe accuracies")
    res = store.load("results")
    f_keys = {s.key() for _, fam, _, s in d.members if fam == "f"}
    if not f_keys <= set(res.loc[(res.experiment == EXPERIMENT) & (res.quantity == "unitmem"), "encoder"]):
        out.append("UnitMem")
    return out


def run_from_store(store: EvidenceStore, d: DPDesign, data_root=None) -> DPRun:
    """The :class:`~memlib.experiments.dp_run.DPRun` of design ``d``, from stored rows only (weights are
    never loaded)."""
    p = d.preset
    al = store.load("alignments")
    sel = (al.tap == "") & (al.dataset == p.dataset) & al.point_id.isin(d.ids)
    for k, v in d.scoring.items():
        sel &= al[k] == v
    al = al[sel]
    pr = store.load("probes")
    pr = pr[pr.context == d.probe_context].pivot(index="encoder", columns="probe", values="value")
    res = store.load("results")
    res = res[(res.experiment == EXPERIMENT) & res.encoder.isin(d.keys())]
    val = res.set_index(["encoder", "quantity"])["value"]
    scored, probes, meta, units = {}, {}, {}, {}
    for name, *_ in dp_levels(d.settings):
        fams = {fam: [s for n, f, _, s in d.members if n == name and f == fam] for fam in ("f", "g")}
        mats = {fam: matrix(al, [s.key() for s in ss], d.ids, "alignment") for fam, ss in fams.items()}
        scored[name] = sslmem_from_alignment(mats["f"], mats["g"], d.scoring["views"], d.scoring["mode"], d.ids)
        for fam, ss in fams.items():
            for i, s in enumerate(ss):
                probes[(name, fam, i)] = {k: float(pr.at[s.key(), k]) for k in _PROBES}
                if fam == "f":
                    key = s.key()
                    meta[(name, i)] = {
                        "epsilon": float(val.get((key, "epsilon"), math.inf)),
                        "noise_multiplier": float(val.get((key, "noise_multiplier"), 0.0)),
                        "delta": float(val.get((key, "delta"), float("nan"))),
                        "steps": int(val[(key, "steps")]),
                    }
                    units[(name, i)] = float(val[(key, "unitmem")])
    floor = pd.DataFrame([{"arch": method_setup(p, "mae")[0], "seed": seed, **{k: float(pr.at[key, k]) for k in _FLOOR}}
                          for key, seed in d.floor])  # fmt: skip
    public = pd.DataFrame(
        [{"member": i, **{k: float(pr.at[s.key(), k]) for k in _FLOOR}} for i, s in enumerate(d.public)],
        columns=["member", *_FLOOR],
    )
    run = dp_analysis(p, d.settings, d.seed, scored, probes, meta, units, floor, public, d.n_candidates,
                      store_provenance(store, d, EXPERIMENT), store.path)  # fmt: skip
    run.store, run.encoder_keys = store, d.keys()
    return run


register_experiment(
    stored_experiment(
        name=EXPERIMENT,
        chapter="04",
        notebook="04_dp",
        title="Differential privacy: do memorisation, accuracy and UnitMem fall as ε shrinks? (MAE, DP-SGD)",
        claims=("S24", "S25", "L9"),
        config=dp_config,
        design=dp_design,
        missing=missing,
        compute=lambda d, **kw: run_dp(d.preset.name, seed=d.seed, **kw, **d.params),
        rows=dp_rows,
        read=run_from_store,
        minutes_per_encoder=1.2,
    )
)
