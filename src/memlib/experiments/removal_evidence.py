"""Chapter 02 (removing the most memorised points) as a registered experiment on the evidence store.

The ranking that picks the removed points comes from chapter 01's in/out design
(:mod:`~memlib.experiments.subset_study`) at the same preset and seed: f's half is the pool's first ``half``
points, and each point's score is its offset-removed in/out score over all the design's encoders. The in/out
ranking is the more reliable one at equal compute (chapter 01), and every encoder of that design informs every
point, where the paper's design ranks f's half with one f and one g per pair.

A design is *bound* to a store (:meth:`RemovalDesign.bind`) once the in/out rows are there: the ranking fixes
which points each top-k retrain loses, and so its encoder key. Rows of one run: ``encoders`` and ``roles`` (f on
the whole half, each retrain, the untrained floor), ``probes`` (linear accuracy on every downstream set, one
context per set) and ``history``. The analysis (:class:`~memlib.experiments.removal_run.RemovalRun`) reads only
those rows and the in/out rows.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from ..data.datasets import load_dataset
from ..evidence import EvidenceStore
from .encoders import EncoderSpec
from .inputs import DOWNSTREAM, downstream_sets, probe_rng, probe_sets
from .presets import Preset, get_preset
from .registry import register_experiment
from .removal_run import SEGMENTATION, RemovalRun, RemovalSettings, compute_removal, select_removal
from .stored import (
    ChapterConfig,
    StoredContexts,
    chapter_config,
    encoder_row,
    history_rows,
    missing_encoders,
    store_provenance,
    stored_experiment,
    untrained_key,
    untrained_row,
)
from .subset_study import SubsetDesign, SubsetSettings, subset_design, subset_from_store
from .subset_study import fill as fill_subset
from .subset_study import missing as subset_missing

EXPERIMENT = "removal"


def removal_config(preset="smoke", *, seed: int = 0, **params) -> ChapterConfig:
    """Resolve chapter 02's config once: ``params`` change preset fields (``epochs=``) or the removal's own
    settings (``half=``, ``fractions=``, ``seeds=``), ``None`` ignored, anything else refused with the closest
    name. ``half`` may not exceed the in/out pool."""
    cfg = chapter_config(RemovalSettings, EXPERIMENT, preset, seed, **params)
    sub = SubsetSettings.for_preset(preset)[1]
    if cfg.settings["half"] > sub.pool:
        raise ValueError(
            f"half={cfg.settings['half']} exceeds the in/out pool of {sub.pool} points at preset {preset!r}; "
            f"choose half ≤ {sub.pool}"
        )
    m = cfg.settings["rank_encoders"]
    if m % sub.block or m < 2 * sub.block:
        raise ValueError(
            f"rank_encoders={m!r} must be a multiple of the in/out design's block ({sub.block}), at least two blocks"
        )
    return cfg


@dataclass(frozen=True)
class RemovalDesign(StoredContexts):
    """What one removal run needs: the in/out design that ranks f's half, and the encoders to train.

    Unbound (``scores is None``), it knows f's encoder, the random-removal retrains and the floor; bound to a
    store (:meth:`bind`), it also knows the ranking and so the top-k retrains."""

    preset: Preset
    settings: RemovalSettings
    seed: int
    subset: SubsetDesign
    params: dict = field(default_factory=dict)
    scores: np.ndarray | None = None  # in/out score of each point of half_ids
    raw: np.ndarray | None = None
    rank_reliability: float | None = None  # split-half ρ of the ranking of half_ids

    @property
    def half_ids(self) -> np.ndarray:
        """The points f trains on (f's half), the pool's first ``half`` points, sorted."""
        return np.sort(self.subset.ids[: self.settings["half"]])

    @property
    def rest_ids(self) -> np.ndarray:
        return np.sort(self.subset.ids[self.settings["half"] :])

    @property
    def name(self) -> str:
        s = self.settings
        ks = ", ".join(str(k) for k in self.ks)
        return (
            f"removal seed {self.seed}: half {s['half']} of the in/out pool ({self.subset.name}); k {ks}; "
            f"retraining seeds {', '.join(str(x) for x in s['seeds'])}"
        )

    @property
    def ks(self) -> list[int]:
        return [max(1, round(f * self.settings["half"])) for f in self.settings["fractions"]]

    @property
    def floor_seeds(self) -> list[int]:
        return [self.seed * 1000 + 900 + i for i in range(3)]

    @property
    def datasets(self) -> list[str]:
        return [self.preset.dataset] + [d for d in DOWNSTREAM if d != self.preset.dataset]

    def downstream_context(self, dataset: str) -> str:
        """The ``probes`` context of ``dataset``'s probe sets (its own per set, so no other chapter's rows clash)."""
        p, s = self.preset, self.settings
        n = (p.probe_train, p.probe_test) if dataset == p.dataset else (s["downstream_train"], s["downstream_test"])
        return (
            f"chapter 02 {dataset} probe sets of seed {self.seed}: train {n[0] or 'all'}, test {n[1] or 'all'}; "
            f"linear probe {p.probe_epochs} epochs"
        )

    def task_context(self, task: str) -> str:
        """The ``probes`` context of a task: a downstream set's linear probe, or the dense probe (S20)."""
        if task != SEGMENTATION:
            return self.downstream_context(task)
        p, s = self.preset, self.settings
        return (
            f"chapter 02 segmentation of {p.dataset} object masks (intensity > {s['mask_threshold']:g}), probe "
            f"sets of seed {self.seed}: train {p.probe_train or 'all'}, test {p.probe_test or 'all'}; 1×1 linear "
            f"probe {s['segmentation_epochs']} epochs"
        )

    @property
    def tasks(self) -> list[str]:
        return self.datasets + [SEGMENTATION]

    def probe_sets(self, train_set, data_root=None) -> dict:
        """(train, test) probe sets per downstream set; the training data set's from the preset's probe sizes."""
        p, s = self.preset, self.settings
        sets = downstream_sets(train_set.channels, train_set.image_size, s["downstream_train"], s["downstream_test"],
                               self.seed, data_root, names=self.datasets[1:])  # fmt: skip
        test_set = load_dataset(p.dataset, "test", root=data_root)
        return {p.dataset: probe_sets(p, train_set, test_set, probe_rng(self.seed)), **sets}

    def jobs(self) -> dict[str, tuple[str, int, int]]:
        """Label → (how, k, retraining seed): f on the whole half first, then each (k, seed, how)."""
        out = {f"none s{self.settings['seeds'][0]}": ("none", 0, self.settings["seeds"][0])}
        for k in self.ks:
            for rs in self.settings["seeds"]:
                for how in ("top", "random"):
                    if how == "random" or self.scores is not None:
                        out[f"{how} k={k} s{rs}"] = (how, k, rs)
        return out

    def named_specs(self) -> dict[str, EncoderSpec]:
        """Label → spec. A top-k and a random-k retrain share their retraining seed, so their accuracies pair."""
        half = self.half_ids
        out = {}
        for label, (how, k, rs) in self.jobs().items():
            seed = self.seed * 1000 + 500 + rs
            if how == "none":
                keep = half
            else:
                scores = self.scores if how == "top" else np.zeros(len(half))
                keep = np.delete(half, select_removal(scores, k, how, seed=self.seed * 1000 + rs))
            out[label] = EncoderSpec.from_preset(self.preset, keep, seed)
        return out

    def floor_keys(self) -> list[str]:
        return [untrained_key(self.preset, x) for x in self.floor_seeds]

    def trained_keys(self) -> list[str]:
        return [s.key() for s in self.named_specs().values()]

    def keys(self) -> list[str]:
        """Every encoder key known to the design (an unbound design does not know its top-k retrains yet)."""
        return self.trained_keys() + self.floor_keys()

    def bind(self, store: EvidenceStore) -> RemovalDesign:
        """This design with its ranking read from the in/out rows of ``store``."""
        if self.scores is not None:
            return self
        study = subset_from_store(store, self.subset)
        n = self.settings["half"]
        order = np.argsort(self.subset.ids[:n], kind="stable")
        # The gate of chapter 01: the split-half ρ (half the encoders against the other half) of the ranking.
        rel = study.reliability_curve(points=np.arange(n)).iloc[-1]["rho halves"]
        return dataclasses.replace(
            self, scores=study.result.score[:n][order], raw=study.result.raw[:n][order], rank_reliability=float(rel)
        )


def removal_design(cfg: ChapterConfig, data_root=None) -> RemovalDesign:
    """The unbound :class:`RemovalDesign` of ``cfg`` (loads the data set to draw the pool; trains nothing)."""
    p = cfg.preset
    # The first rank_encoders encoders of chapter 01's in/out design (whole blocks, so balanced): a ranking
    # fixed by the config, whatever chapter 01's design has grown to.
    ss = dataclasses.replace(SubsetSettings.for_preset(p.name)[1], encoders=cfg.settings["rank_encoders"])
    # Chapter 01's probe sets, whatever this chapter probes with, so the in/out rows are found as stored.
    base = get_preset(p.name)
    sp = p.replace(probe_train=base.probe_train, probe_test=base.probe_test, probe_epochs=base.probe_epochs)
    sub = subset_design(sp, ss, cfg.seed, data_root)
    return RemovalDesign(p, cfg.settings, cfg.seed, sub, cfg.params)


def missing(store: EvidenceStore, d: RemovalDesign) -> list[str]:
    """What the store lacks for ``d``, one phrase each (empty: the run can be analysed from the store)."""
    lack = subset_missing(store, d.subset)
    if lack:
        return [f"the in/out ranking ({'; '.join(lack)}; memlib-evidence add --chapter 01b)"]
    b = d.bind(store)
    out = missing_encoders(store, b.keys())
    pr = store.load("probes")
    have = pr[pr.encoder.isin(b.keys()) & pr.probe.isin(["linear_acc", _MIOU])].groupby("context").size()
    if any(have.get(b.task_context(t), 0) < len(b.keys()) for t in b.tasks):
        out.append("downstream probe scores")
    return out


_MIOU = "test_miou"


def _probe(task: str) -> str:
    return _MIOU if task == SEGMENTATION else "linear_acc"


def removal_rows(run: RemovalRun, d: RemovalDesign, cache) -> dict[str, pd.DataFrame]:
    """The store rows of a computed run (its encoders' checkpoints are read from ``cache``)."""
    enc, roles, probes, hist = [], [], [], []
    for (label, spec), (_, r) in zip(d.named_specs().items(), run.results.iterrows()):
        key = spec.key()
        enc.append(encoder_row(spec, cache))
        roles.append({"experiment": EXPERIMENT, "design": d.name, "encoder": key, "role": label,
                      "member": int(r["seed"])})  # fmt: skip
        ckpt = torch.load(spec.checkpoint(cache), map_location="cpu", weights_only=False, mmap=True)
        hist.append(history_rows(key, ckpt.get("history", [])))
        probes += [{"encoder": key, "probe": _probe(t), "context": d.task_context(t), "value": float(r[t])}
                   for t in d.tasks]  # fmt: skip
    for key, seed in zip(d.floor_keys(), d.floor_seeds):
        enc.append(untrained_row(d.preset, key, seed))
        roles.append({"experiment": EXPERIMENT, "design": d.name, "encoder": key, "role": "untrained", "member": seed})
        probes += [{"encoder": key, "probe": _probe(t), "context": d.task_context(t),
                    "value": float(run.floor.at[seed, t])} for t in d.tasks]  # fmt: skip
    return {
        "encoders": pd.DataFrame(enc),
        "roles": pd.DataFrame(roles),
        "probes": pd.DataFrame(probes),
        "history": pd.concat(hist, ignore_index=True),
    }


def run_from_store(store: EvidenceStore, d: RemovalDesign, data_root=None) -> RemovalRun:
    """The :class:`~memlib.experiments.removal_run.RemovalRun` of ``d`` from stored rows only."""
    b = d.bind(store)
    pr = store.load("probes")
    pr = pr[pr.encoder.isin(b.keys())]
    acc = {t: pr[(pr.context == b.task_context(t)) & (pr.probe == _probe(t))].set_index("encoder").value
           for t in b.tasks}  # fmt: skip
    rows = [
        {"k": k, "fraction": k / b.settings["half"], "how": how, "seed": rs,
         **{t: float(acc[t][spec.key()]) for t in b.tasks}}
        for (how, k, rs), spec in zip(b.jobs().values(), b.named_specs().values())
    ]  # fmt: skip
    floor = pd.DataFrame(
        {t: [float(acc[t][key]) for key in b.floor_keys()] for t in b.tasks},
        index=pd.Index(b.floor_seeds, name="seed"),
    )
    prov = store_provenance(store, b, EXPERIMENT)
    run = RemovalRun(b.preset, b.settings, b.seed, b.half_ids, b.rest_ids, b.scores, b.raw, pd.DataFrame(rows),
                     prov, Path(store.path), floor=floor, rank_reliability=b.rank_reliability)  # fmt: skip
    run.store, run.encoder_keys = store, b.keys()
    return run


def bind_ranking(d: RemovalDesign, *, store, train=True, device="cpu", cache_dir=None, data_root=None,
                 progress=True) -> RemovalDesign:  # fmt: skip
    """``d`` bound to its ranking: chapter 01's in/out rows, computed first (only with ``train``) if the store
    lacks them."""
    lack = subset_missing(store, d.subset)
    if lack and not train:
        raise LookupError(
            f"the evidence store {store.path} lacks the in/out ranking of chapter 02 ({'; '.join(lack)}); run with "
            "train=True (memlib-evidence add --chapter 01b)"
        )
    if lack:
        fill_subset(d.subset, store=store, device=device, cache_dir=cache_dir, data_root=data_root, progress=progress)
    return d.bind(store)


register_experiment(
    stored_experiment(
        name=EXPERIMENT,
        chapter="02",
        notebook="02_removal",
        title="Removing the most memorised points (ranked by the in/out design) against random ones (S19)",
        claims=("S19", "S20", "S21"),
        config=removal_config,
        design=removal_design,
        missing=missing,
        compute=compute_removal,
        rows=removal_rows,
        read=run_from_store,
        minutes_per_encoder=1.5,
        prepare=bind_ranking,
    )
)
