"""Chapter 03 (the alignment regulariser) as a registered experiment: its design, its rows in the evidence
store, and the :class:`~memlib.experiments.regularization_run.RegularizationRun` rebuilt from those rows.

As in chapter 01 (:mod:`~memlib.experiments.sslmem_evidence`): if the store lacks a row of the design,
:func:`~memlib.experiments.regularization_run.run_regularization` computes the sweep (training only what the
cache lacks) and its rows are appended as one batch; the run the chapter analyses is then always rebuilt from
stored rows.

Rows of one sweep
    ``encoders`` and ``roles`` (f and g of every (method, λ), untrained encoders of each architecture),
    ``alignments`` (per encoder × point of S_C and S_E, scored with the method's training augmentation),
    ``probes`` (linear accuracy of every trained encoder; linear, train and kNN accuracy of the untrained ones)
    and ``history`` (each trained encoder's training log).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import torch

from ..data.datasets import test_point_ids
from ..evidence import EvidenceStore
from ..memorization.sslmem import sslmem_from_alignment
from .encoders import EncoderSpec, method_setup
from .inputs import load_with_splits
from .presets import Preset
from .registry import register_experiment
from .regularization_run import (
    RegularizationRun,
    RegularizationSettings,
    regularization_analysis,
    regularization_specs,
    run_regularization,
)
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

EXPERIMENT = "regularization"
_FLOOR = ("linear_acc", "linear_train_acc", "knn_acc")


def regularization_config(preset="smoke", *, seed: int = 0, **params) -> ChapterConfig:
    """Resolve chapter 03's config once: ``params`` change preset fields (``epochs=``) or the sweep's
    (``lambdas=``, ``methods=``), ``None`` ignored, anything else refused with the closest name."""
    return chapter_config(RegularizationSettings, EXPERIMENT, preset, seed, **params)


@dataclass(frozen=True)
class RegularizationDesign(StoredContexts):
    """What one λ sweep needs from the store: its encoders, scored points and contexts."""

    preset: Preset
    seed: int
    settings: RegularizationSettings
    members: dict  # (method, λ) → {"f": [EncoderSpec], "g": [EncoderSpec]}
    floor: dict  # architecture → [(store key, seed)] of its untrained encoders
    ids: np.ndarray  # S_C, then S_E (test point ids)
    n_candidates: int
    name: str
    params: dict = field(default_factory=dict)

    def specs(self) -> list[tuple[tuple[str, float], str, int, EncoderSpec]]:
        """Every trained encoder as ((method, λ), family, member, spec)."""
        return [(job, fam, i, s) for job, fams in self.members.items() for fam, ss in fams.items()
                for i, s in enumerate(ss)]  # fmt: skip

    def keys(self) -> list[str]:
        """Every encoder key of the design: trained members, then untrained encoders."""
        return self.trained_keys() + [k for ks in self.floor.values() for k, _ in ks]

    def trained_keys(self) -> list[str]:
        """The keys of the encoders the design trains."""
        return [s.key() for *_, s in self.specs()]

    def scoring_of(self, method: str) -> dict:
        """The alignment rows' scoring context of ``method``'s encoders (its training augmentation)."""
        return {**self.scoring, "augmentation": method_setup(self.preset, method)[1]}

    @staticmethod
    def role(job, fam: str) -> str:
        return f"{job[0]} λ={job[1]:g} {fam}"


def regularization_design(cfg: ChapterConfig, data_root=None) -> RegularizationDesign:
    """The :class:`RegularizationDesign` of ``cfg`` (loads the data set to draw the split; trains nothing)."""
    p, s, seed = cfg.preset, cfg.settings, cfg.seed
    train_set, _, splits = load_with_splits(p, seed, data_root)
    archs = dict.fromkeys(method_setup(p, m)[0] for m in s["methods"])
    floor = {a: [(untrained_key(p.replace(arch=a), x), x) for x in floor_seeds(seed)] for a in archs}
    ids = np.concatenate([splits.candidate, test_point_ids(splits.extra, train_set)]).astype(np.int64)
    name = (
        f"split {seed}: shared {p.shared}, candidate {p.candidate}, {p.epochs} epochs, {p.models_per_family} per "
        f"family; {', '.join(s['methods'])} at λ {', '.join(f'{x:g}' for x in s['lambdas'])}"
    )
    members = regularization_specs(p, s, splits, seed)
    return RegularizationDesign(p, seed, s, members, floor, ids, len(splits.candidate), name, cfg.params)


def regularization_rows(run: RegularizationRun, d: RegularizationDesign, cache) -> dict[str, pd.DataFrame]:
    """The store rows of a computed sweep ``run`` (its encoders' checkpoints are read from ``cache``)."""
    p, m = d.preset, run.measured
    enc, roles, al, hist, probes = [], [], [], [], []
    for job, fam, i, s in d.specs():
        key = s.key()
        enc.append(encoder_row(s, cache))
        roles.append({"experiment": EXPERIMENT, "design": d.name, "encoder": key, "role": d.role(job, fam),
                      "member": i})  # fmt: skip
        ckpt = torch.load(s.checkpoint(cache), map_location="cpu", weights_only=False, mmap=True)
        hist.append(history_rows(key, ckpt.get("history", [])))
        r = m["scored"][job]
        a = (r.align_f_models if fam == "f" else r.align_g_models)[i]
        al.append(pd.DataFrame({"encoder": key, "dataset": p.dataset, "point_id": d.ids, "tap": "",
                                **d.scoring_of(job[0]), "alignment": a}))  # fmt: skip
        probes.append({"encoder": key, "probe": "linear_acc", "context": d.probe_context,
                       "value": float(m["accs"][job][fam][i])})  # fmt: skip
    for arch, keys in d.floor.items():
        q = p.replace(arch=arch)
        table = m["floors"][arch].set_index("seed")
        for key, seed in keys:
            enc.append(untrained_row(q, key, seed))
            roles.append({"experiment": EXPERIMENT, "design": d.name, "encoder": key, "role": f"untrained {arch}",
                          "member": seed})  # fmt: skip
            probes += [{"encoder": key, "probe": k, "context": d.probe_context, "value": float(table.at[seed, k])}
                       for k in _FLOOR]  # fmt: skip
    return {
        "encoders": pd.DataFrame(enc),
        "roles": pd.DataFrame(roles),
        "alignments": pd.concat(al, ignore_index=True),
        "probes": pd.DataFrame(probes),
        "history": pd.concat(hist, ignore_index=True),
    }


def missing(store: EvidenceStore, d: RegularizationDesign) -> list[str]:
    """What the store lacks for ``d``, one phrase each (empty: the sweep can be analysed from the store)."""
    out = missing_encoders(store, d.keys())
    al = store.load("alignments")
    al = al[(al.tap == "") & al.point_id.isin(d.ids)]
    n = al.groupby(["encoder", "augmentation", "views", "mode", "view_seed"]).size()
    short = sum(n.get((s.key(), *d.scoring_of(job[0]).values()), 0) < len(d.ids) for job, _, _, s in d.specs())
    if short:
        out.append(f"alignments of {short} encoders")
    pr = store.load("probes")
    pr = pr[(pr.context == d.probe_context) & pr.encoder.isin(d.keys())]
    if len(pr) < len(d.specs()) + len(_FLOOR) * sum(len(k) for k in d.floor.values()):
        out.append("probe accuracies")
    return out


def run_from_store(store: EvidenceStore, d: RegularizationDesign, data_root=None) -> RegularizationRun:
    """The :class:`~memlib.experiments.regularization_run.RegularizationRun` of design ``d``, from stored rows
    only (weights are never loaded)."""
    p = d.preset
    al = store.load("alignments")
    al = al[(al.tap == "") & (al.dataset == p.dataset) & al.point_id.isin(d.ids)]
    pr = store.load("probes")
    pr = pr[pr.context == d.probe_context].pivot(index="encoder", columns="probe", values="value")
    scored, accs = {}, {}
    for job, fams in d.members.items():
        sc = d.scoring_of(job[0])
        mine = al
        for k, v in sc.items():
            mine = mine[mine[k] == v]
        mats = {fam: matrix(mine, [s.key() for s in ss], d.ids, "alignment") for fam, ss in fams.items()}
        scored[job] = sslmem_from_alignment(mats["f"], mats["g"], sc["views"], sc["mode"], d.ids)
        accs[job] = {fam: [float(pr.at[s.key(), "linear_acc"]) for s in ss] for fam, ss in fams.items()}
    floors = {
        arch: pd.DataFrame(
            [{"arch": arch, "seed": seed, **{k: float(pr.at[key, k]) for k in _FLOOR}} for key, seed in keys]
        )  # fmt: skip
        for arch, keys in d.floor.items()
    }
    run = regularization_analysis(
        p, d.settings, d.seed, scored, accs, floors, d.n_candidates, store_provenance(store, d, EXPERIMENT), store.path
    )
    run.store, run.encoder_keys = store, d.keys()
    return run


register_experiment(
    stored_experiment(
        name=EXPERIMENT,
        chapter="03",
        notebook="03_regularization",
        title="The alignment regulariser: do memorisation and accuracy fall as λ grows? (SimCLR, MAE)",
        claims=("S22", "S23"),
        config=regularization_config,
        design=regularization_design,
        missing=missing,
        compute=lambda d, **kw: run_regularization(d.preset.name, seed=d.seed, **kw, **d.params),
        rows=regularization_rows,
        read=run_from_store,
        minutes_per_encoder=2.5,
    )
)
