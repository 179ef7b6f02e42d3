"""Chapter 06 (SSLMem across setups) as a registered experiment on the evidence store.

The chapter's designs are its SSLMem runs, one :class:`~memlib.experiments.sslmem_evidence.RunDesign` per
distinct (setup preset, seed) of :func:`~memlib.experiments.setups_run.plan` (stored as chapter 01's runs
are, under this experiment's roles), and one :class:`ExtrasDesign` for what the chapter measures on those
encoders beyond SSLMem, and the in/out levels of the ablations (:func:`inout_designs`: chapter 01b's subset design
trained with each level's recipe, :class:`SnapshotLevel` for training snapshots). :func:`run_setups` fills what
the store lacks (training only what the cache lacks),
then analyses from stored rows only (:func:`~memlib.experiments.setups_run.setups_analysis`).

Rows of the extras
    ``alignments`` of the base setup's f and g with each measuring augmentation (Table 8; the training
    augmentation's rows are the base run's own); ``point_stats`` ``label_prob`` (the supervised setup's
    softmax probability of each candidate's label, for Feldman's memorisation, Table 12) and
    ``dejavu_correct`` (whether each Table 1 encoder's kNN labels a candidate right from its periphery,
    Table 4); and, for Fig. 2b, one ``encoders`` row per training snapshot of the base pair (kind
    ``snapshot``, its ``final_loss`` the training loss at that epoch) with its ``alignments`` of the
    candidates and shared points and, for f, its ``probes``.
"""

from __future__ import annotations

import dataclasses
import json
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from ..atomic import CorruptFileError
from ..data.augment import build_augmentation
from ..data.datasets import load_dataset, test_point_ids
from ..device import resolve_device
from ..evidence import EvidenceStore, batch_provenance, open_store
from ..memorization.dejavu import DejaVuResult, dejavu_hits
from ..memorization.feldman import label_probability
from ..memorization.sslmem import alignment_loss, sslmem_from_alignment
from ..models import build_encoder, channel_stats
from ..probing import atypicality, embed
from ..provenance import provenance
from ..training.loop import fingerprint
from .artifacts import check_cache_dir
from .context import scoring_options
from .encoders import EncoderSpec, family_specs, fit
from .inputs import load_with_splits, probe_rng, probe_sets
from .presets import Preset, shift_seeds
from .probes import probe_encoder
from .registry import Experiment, register_experiment
from .setups_run import (
    BASE_SETUP,
    SETUPS,
    SetupsExtras,
    SetupsRun,
    SetupsSettings,
    mask_ratio_kwargs,
    plan,
    setup_preset,
    setups_analysis,
)
from .sslmem_evidence import RunDesign, missing, point_images, point_labels, run_design, stored_sslmem_run
from .stored import (
    ChapterConfig,
    StoredContexts,
    chapter_config,
    chapter_provenance,
    matrix,
    missing_encoders,
    store_provenance,
    stored_run,
)
from .subset_study import SubsetDesign, SubsetSettings, subset_design, subset_from_store
from .subset_study import fill as subset_fill
from .subset_study import missing as subset_missing
from .validate import check_run_folders, validate_run_parameters

EXPERIMENT = "setups"
CHAPTER = "06"
#: The ``point_stats`` context of the supervised setup's label probabilities.
LABEL_PROB_CONTEXT = "softmax probability of the label under the classifier head, unaugmented candidates"


def setups_config(preset="smoke", *, seed: int = 0, **params) -> ChapterConfig:
    """Resolve chapter 06's config once: ``params`` change preset fields (``epochs=``) or the chapter's settings
    (``seeds=``, ``setups=``, ``overlaps=``, …; see :class:`~memlib.experiments.setups_run.SetupsSettings`),
    ``None`` ignored, anything else refused with the closest name. ``seed`` shifts every seed of the settings."""
    cfg = chapter_config(SetupsSettings, EXPERIMENT, preset, 0, **params)
    s = shift_seeds(cfg.settings, seed)
    s = dataclasses.replace(s, train_augmentation=cfg.preset.augmentation)
    return ChapterConfig(cfg.preset, s, s["seeds"][0], cfg.params)


def snapshot_epochs(spec: EncoderSpec) -> list[int]:
    """The epochs at which training keeps a snapshot of ``spec`` (:func:`memlib.training.loop.train`: the
    start, every ``checkpoint_every`` epochs and the last)."""
    t = spec.train
    return sorted({0, *range(t.checkpoint_every, t.epochs + 1, t.checkpoint_every), t.epochs})


def snapshot_key(spec: EncoderSpec, epoch: int) -> str:
    """The store key of ``spec``'s snapshot at ``epoch``."""
    return fingerprint({"snapshot of": spec.key(), "epoch": int(epoch)})


@dataclass(frozen=True)
class ExtrasDesign(StoredContexts):
    """What chapter 06 measures beyond its SSLMem runs: augmentations, Feldman, Déjà Vu and snapshots."""

    preset: Preset  # the base setup's
    seed: int
    settings: SetupsSettings
    base: RunDesign  # the base setup's run at the first seed
    supervised: RunDesign | None  # the supervised setup's run at the first seed
    dejavu_runs: dict  # setup → its RunDesign at the first seed
    dynamics: dict  # family → EncoderSpec (with snapshots)
    epochs: tuple[int, ...]  # snapshot epochs
    public: np.ndarray  # test-split positions of Déjà Vu's public set
    name: str
    ids: np.ndarray = field(default=None)  # the base run's scored points (StoredContexts)

    @property
    def dejavu_context(self) -> str:
        s = self.settings
        return (
            f"Déjà Vu: centre {s['dejavu_centre']} px blanked, {s['dejavu_k']}-NN over {len(self.public)} public "
            f"test points {fingerprint(self.public.tolist())}"
        )

    @property
    def dynamics_ids(self) -> np.ndarray:
        """The points each snapshot is scored on (candidates, then shared points)."""
        return self.base.ids[np.isin(self.base.subset, ("candidate", "shared"))]

    def measure_scoring(self, augmentation: str) -> dict:
        return {**self.base.scoring, "augmentation": augmentation}

    def snapshots(self) -> list[tuple[str, int, str]]:
        """Every snapshot as (family, epoch, store key)."""
        return [(fam, e, snapshot_key(s, e)) for fam, s in self.dynamics.items() for e in self.epochs]

    def trained_keys(self) -> list[str]:
        """What the extras train: the snapshot pair, each standing as its last snapshot (the runs' encoders are
        the run designs')."""
        return [snapshot_key(s, self.epochs[-1]) for s in self.dynamics.values()]

    def keys(self) -> list[str]:
        runs = [self.base, *([self.supervised] if self.supervised else []), *self.dejavu_runs.values()]
        held = list(dict.fromkeys(k for d in runs for k in d.trained_keys()))
        return held + [k for *_, k in self.snapshots()]


def setups_designs(cfg: ChapterConfig, data_root=None) -> list:
    """The chapter's designs: one run design per distinct (setup preset, seed) of the plan, its
    :class:`ExtrasDesign`, then its in/out levels (:func:`inout_designs`; loads the data set to draw the splits;
    trains nothing)."""
    designs, index = _run_designs(cfg, data_root)
    return [*designs.values(), _extras_design(cfg, designs, index, data_root), *inout_designs(cfg, data_root).values()]


def inout_designs(cfg: ChapterConfig, data_root=None) -> dict[tuple[str, object], SubsetDesign]:
    """The in/out (random-subset) levels of the ablations, by ``(table, level)``: each is chapter 01b's subset
    design (same pool, the first k rows of its inclusion, the same model seeds; k from the settings' ``inout``)
    trained with one setup's recipe, so row i of every level trains on the same points from the same seed
    (paired by row).

    Tables: ``"supervised"`` (S17) with ``("base", BASE_SETUP)`` over as many rows (chapter 01b's own
    encoders), ``"train_aug"`` (S28) and ``"mask_ratio"`` (S29), each scored with its training augmentation, and
    ``"measure_aug"`` (S27): chapter 01b's encoders scored with every measuring augmentation (its training one is
    01b's own rows). Empty when ``inout`` is ``None``. A k beyond chapter 01b's design is refused."""
    p, s, seed = cfg.preset, cfg.settings, cfg.seed
    ks = s["inout"]
    if not ks:
        return {}
    _, sub = SubsetSettings.for_preset(p.name)
    over = {t: k for t, k in ks.items() if k > sub.encoders and t in ("supervised", "measure_aug")}
    if over:
        raise ValueError(
            f"inout={ks!r}: {over} exceed chapter 01b's {sub.encoders} encoders, whose rows these tables reuse; "
            f"use at most {sub.encoders}"
        )

    def level(table, label, rp, k, measure=None):
        d = subset_design(rp, dataclasses.replace(sub, encoders=k, planned=None), seed, data_root)
        return dataclasses.replace(d, label=f"in/out {table} {label}", experiment=EXPERIMENT, measure=measure)

    base_p = setup_preset(p, s, BASE_SETUP)
    out = {}
    sup = [n for n in s["setups"] if SETUPS[n][0] == "supervised"]
    if "supervised" in ks and sup:
        out[("base", BASE_SETUP)] = level("base", BASE_SETUP, base_p, ks["supervised"])
        out[("supervised", sup[0])] = level("supervised", sup[0], setup_preset(p, s, sup[0]), ks["supervised"])
    if "measure_aug" in ks:
        for a in s["measure_augmentations"]:
            measure = None if a == base_p.augmentation else a
            out[("measure_aug", a)] = level("measure_aug", a, base_p, ks["measure_aug"], measure)
    for a in s["train_augmentations"] if "train_aug" in ks else ():
        out[("train_aug", a)] = level("train_aug", a, setup_preset(p, s, BASE_SETUP, augmentation=a), ks["train_aug"])
    for r in s["mask_ratios"] if "mask_ratio" in ks else ():
        mae = setup_preset(p, s, "MAE-ViT", method_kwargs=mask_ratio_kwargs(r))
        out[("mask_ratio", r)] = level("mask_ratio", r, mae, ks["mask_ratio"])
    if "dynamics" in ks:  # S10: the base encoders of the first rows, retrained keeping snapshots
        d = level("dynamics", "snapshots", base_p, ks["dynamics"])
        specs = [dataclasses.replace(x, snapshots=True) for x in d.specs]
        for e in snapshot_epochs(specs[0]):
            out[("dynamics", e)] = SnapshotLevel(**{**vars(d), "specs": specs, "epoch": e})
    return out


@dataclass(frozen=True)
class SnapshotLevel(SubsetDesign):
    """An in/out level of training snapshots: row i's encoder as it was at ``epoch`` (store keys
    :func:`snapshot_key`; each row's last snapshot stands for its training, as the extras' pair does)."""

    epoch: int = 0

    @property
    def name(self) -> str:
        return f"{super().name}, epoch {self.epoch}"

    def keys(self) -> list[str]:
        return [snapshot_key(x, self.epoch) for x in self.specs]

    def trained_keys(self) -> list[str]:
        last = snapshot_epochs(self.specs[0])[-1]
        return self.keys() if self.epoch == last else []


def fill_snapshots(
    levels: list[SnapshotLevel], *, store, device="cpu", cache_dir=None, data_root=None, progress=True
) -> None:
    """Train ``levels``' rows keeping snapshots (or load them), then score, embed and probe every snapshot of
    every level the store lacks, and append the rows as one batch."""
    t0 = time.perf_counter()
    levels = [d for d in levels if subset_missing(store, d)]
    if not levels:
        return
    dev, cache, d0 = resolve_device(device), check_cache_dir(cache_dir), levels[0]
    p = d0.preset
    train_set, test_set, _ = load_with_splits(p, d0.seed, data_root)
    fitted = fit(d0.specs, train_set, cache, dev, progress=progress)
    images, labels = train_set.images[d0.ids], train_set.labels[d0.ids]
    aug = build_augmentation(d0.scoring["augmentation"], train_set.image_size)
    probe_tr, probe_te = probe_sets(p, train_set, test_set, probe_rng(d0.seed))
    opts = scoring_options(p, d0.seed, dev)
    rows = {k: [] for k in ("encoders", "roles", "alignments", "point_stats", "probes")}
    for d in levels:
        for i, (spec, fit_) in enumerate(zip(d.specs, fitted)):
            key = snapshot_key(spec, d.epoch)
            path = spec.checkpoint(cache).parent / "snapshots" / f"epoch{d.epoch:04d}.pt"
            enc = _load_snapshot(spec.arch, train_set, path)
            ckpt = torch.load(spec.checkpoint(cache), map_location="cpu", weights_only=False, mmap=True)
            loss = {int(h["epoch"]): h.get("loss") for h in fit_.history}.get(d.epoch)
            rows["encoders"].append(_snapshot_row(spec, key, d.epoch, loss, ckpt))
            rows["roles"].append(pd.DataFrame([{"experiment": EXPERIMENT, "design": d.name, "encoder": key,
                                                "role": "subset snapshot", "member": i}]))  # fmt: skip
            al = alignment_loss([enc], images, aug, ids=d.ids, options=opts)[0]
            rows["alignments"].append(_alignment_rows(key, p.dataset, d.ids, d.scoring, al))
            aty = atypicality(embed(enc, images), labels, 5).cpu().numpy()
            for stat, v in (("included", d.inclusion[i].astype(np.float64)), ("atypicality", aty)):
                rows["point_stats"].append(_stat_rows(key, p.dataset, d.ids, stat, d.context, v))
            pr = probe_encoder(enc, probe_tr, probe_te, p.probe_epochs, d.seed, dev)
            rows["probes"].append(pd.DataFrame([{"encoder": key, "probe": k, "context": d.probe_context,
                                                 "value": float(pr[k])} for k in pr]))  # fmt: skip
    name = f"in/out snapshots of {len(d0.specs)} rows, epochs {', '.join(str(d.epoch) for d in levels)}"
    prov = batch_provenance(EXPERIMENT, name, p.name, d0.seed, dev, time.perf_counter() - t0)
    store.append({k: pd.concat(v, ignore_index=True) for k, v in rows.items() if v}, prov)


def _run_designs(cfg: ChapterConfig, data_root=None) -> tuple[dict, dict]:
    """``(designs, index)``: the distinct run designs by (preset fingerprint, seed), and each plan entry
    ``(table, label, seed)`` → its design's key. Each architecture's untrained floor is probed once, in its
    first run at the first seed (the probe sets the chapter compares with)."""
    p, s = cfg.preset, cfg.settings
    designs, index, floored = {}, {}, set()
    for table, label, rp, seed in plan(p, s):
        key = (fingerprint(rp.to_dict()), seed)
        if key not in designs:
            d = run_design(rp, seed, True, data_root, experiment=EXPERIMENT, chapter=CHAPTER)
            first = seed == cfg.seed and rp.arch not in floored
            floored |= {rp.arch} if first else set()
            designs[key] = dataclasses.replace(d, name=f"{table} {label}: {d.name}", floor=d.floor if first else [])
        index[(table, label, seed)] = key
    return designs, index


def _extras_design(cfg: ChapterConfig, designs: dict, index: dict, data_root=None) -> ExtrasDesign:
    """The extras of ``cfg`` over its run ``designs`` (and ``index``) from :func:`_run_designs`."""
    p, s, seed = cfg.preset, cfg.settings, cfg.seed
    t1 = {name: designs[index[("table1", name, seed)]] for name in s["setups"]}
    sup = [n for n in s["setups"] if SETUPS[n][0] == "supervised"]
    base = t1[BASE_SETUP]
    train_set, _, splits = load_with_splits(base.preset, seed, data_root)
    dyn = {fam: ss[0] for fam, ss in family_specs(base.preset, splits, seed, snapshots=True).items()}
    # Déjà Vu's public set: test points no encoder trained on (S_E left out), drawn from the first seed.
    n_test = len(load_dataset(p.dataset, "test", root=data_root))
    extra = test_point_ids(splits.extra, train_set) - len(train_set)
    pool = np.setdiff1d(np.arange(n_test), extra)
    public = np.sort(np.random.default_rng(seed + 7).choice(pool, min(s["public"], len(pool)), replace=False))
    name = (
        f"setups extras, split {seed}: {BASE_SETUP} measured with {', '.join(s['measure_augmentations'])}; Déjà Vu "
        f"of {', '.join(s['setups'])}; {base.preset.epochs}-epoch snapshots"
    )
    return ExtrasDesign(
        base.preset, seed, s, base, t1[sup[0]] if sup else None, t1, dyn,
        tuple(snapshot_epochs(dyn["f"])), public, name, base.ids,
    )  # fmt: skip


# ----- extras: compute, rows, read -------------------------------------------------------------------------
@dataclass
class ExtrasComputed:
    """The extras' rows as computed (per store table) and where and when they were computed."""

    tables: dict
    provenance: dict


def _fitted(d: RunDesign, train_set, cache, device, progress) -> dict:
    """Run design ``d``'s members per family as trained methods (loaded from the cache; trained if absent)."""
    return {fam: fit(ss, train_set, cache, device, progress=progress) for fam, ss in d.members.items()}


def _load_snapshot(arch: str, train_set, path: Path):
    """The encoder of the snapshot file ``path``; a missing, truncated or foreign file names itself and the fix."""
    enc = build_encoder(arch, train_set.channels, train_set.image_size, *channel_stats(train_set.images))
    try:
        enc.load_state_dict(torch.load(path, map_location="cpu", weights_only=True)["encoder"])
    except Exception as e:  # torch raises several types for truncated or foreign files
        raise CorruptFileError(
            f"chapter 06: snapshot {path} is unreadable ({type(e).__name__}: {str(e).splitlines()[0]}). Fix: "
            f"delete its encoder folder {path.parent.parent} and rerun run_setups (or memlib-evidence add "
            "--chapter 06), which trains it again with its snapshots"
        ) from e
    return enc.eval()


def _alignment_rows(key: str, dataset: str, ids, scoring: dict, values) -> pd.DataFrame:
    return pd.DataFrame({"encoder": key, "dataset": dataset, "point_id": ids, "tap": "", **scoring,
                         "alignment": np.asarray(values, dtype=np.float64)})  # fmt: skip


def _stat_rows(key: str, dataset: str, ids, stat: str, context: str, values) -> pd.DataFrame:
    return pd.DataFrame({"encoder": key, "dataset": dataset, "point_id": ids, "stat": stat, "context": context,
                         "value": np.asarray(values, dtype=np.float64)})  # fmt: skip


def compute_extras(d: ExtrasDesign, *, device="cpu", cache_dir=None, data_root=None, progress=True) -> ExtrasComputed:
    """Every extras row of ``d``: load the encoders (training only the snapshot pair, if the cache lacks it),
    score, probe and embed."""
    t0 = time.perf_counter()
    dev, cache, p = resolve_device(device), check_cache_dir(cache_dir), d.preset
    train_set, test_set, _ = load_with_splits(p, d.seed, data_root)
    rows = {k: [] for k in ("encoders", "roles", "alignments", "point_stats", "probes")}
    base = d.base
    opts = scoring_options(p, d.seed, dev)
    images = point_images(train_set, test_set, base.ids)
    fams = _fitted(base, train_set, cache, dev, progress)
    for a in d.settings["measure_augmentations"]:
        if a == base.scoring["augmentation"]:
            continue  # the base run's own rows
        specs = [*base.members["f"], *base.members["g"]]
        al = alignment_loss([x.encoder for x in (*fams["f"], *fams["g"])], images,
                            build_augmentation(a, train_set.image_size), ids=base.ids, options=opts)  # fmt: skip
        for spec, v in zip(specs, al):
            rows["alignments"].append(_alignment_rows(spec.key(), p.dataset, base.ids, d.measure_scoring(a), v))
    if d.supervised is not None:
        sup = d.supervised
        cand = sup.ids[sup.subset == "candidate"]
        x, y = point_images(train_set, test_set, cand), point_labels(train_set, test_set, cand)
        for fam, fitted in _fitted(sup, train_set, cache, dev, progress).items():
            for spec, m in zip(sup.members[fam], fitted):
                v = label_probability(m.method, x, y, device=dev)
                rows["point_stats"].append(_stat_rows(spec.key(), p.dataset, cand, "label_prob", LABEL_PROB_CONTEXT, v))
    public = test_set.subset(d.public)
    s = d.settings
    for rd in d.dejavu_runs.values():
        cand = rd.ids[rd.subset == "candidate"]
        x, y = point_images(train_set, test_set, cand), point_labels(train_set, test_set, cand)
        fitted = _fitted(rd, train_set, cache, dev, progress)
        for fam in ("f", "g"):
            for spec, m in zip(rd.members[fam], fitted[fam]):
                hits = dejavu_hits(m.encoder, x, y, public.images, public.labels.numpy(), k=s["dejavu_k"],
                                   centre=s["dejavu_centre"], device=dev)  # fmt: skip
                rows["point_stats"].append(
                    _stat_rows(spec.key(), p.dataset, cand, "dejavu_correct", d.dejavu_context, hits)
                )
    _snapshot_rows(d, rows, train_set, test_set, cache, dev, progress)
    tables = {k: pd.concat(v, ignore_index=True) if v and isinstance(v[0], pd.DataFrame) else pd.DataFrame(v)
              for k, v in rows.items() if v}  # fmt: skip
    prov = provenance({"experiment": EXPERIMENT, "design": d.name}, dev, time.perf_counter() - t0)
    return ExtrasComputed(tables, prov)


def _snapshot_rows(d: ExtrasDesign, rows: dict, train_set, test_set, cache, dev, progress) -> None:
    """Fig. 2b's rows: each snapshot of the base pair as an encoder, its alignments and (for f) its probes."""
    p, specs = d.preset, [d.dynamics["f"], d.dynamics["g"]]
    fitted = fit(specs, train_set, cache, dev, progress=progress, labels=["f0 (snapshots)", "g0 (snapshots)"])
    ids = d.dynamics_ids
    images = point_images(train_set, test_set, ids)
    aug = build_augmentation(p.augmentation, train_set.image_size)
    probe_tr, probe_te = probe_sets(p, train_set, test_set, probe_rng(d.seed))
    opts = scoring_options(p, d.seed, dev)
    for (fam, spec), fit_ in zip(d.dynamics.items(), fitted):
        loss = {int(h["epoch"]): h.get("loss") for h in fit_.history}
        ckpt = torch.load(spec.checkpoint(cache), map_location="cpu", weights_only=False, mmap=True)
        for e in d.epochs:
            key = snapshot_key(spec, e)
            enc = _load_snapshot(spec.arch, train_set, spec.checkpoint(cache).parent / "snapshots" / f"epoch{e:04d}.pt")
            rows["encoders"].append(_snapshot_row(spec, key, e, loss.get(e), ckpt))
            rows["roles"].append({"experiment": EXPERIMENT, "design": d.name, "encoder": key,
                                  "role": f"{fam} snapshot", "member": e})  # fmt: skip
            al = alignment_loss([enc], images, aug, ids=ids, options=opts)[0]
            rows["alignments"].append(_alignment_rows(key, p.dataset, ids, d.base.scoring, al))
            if fam == "f":
                pr = probe_encoder(enc, probe_tr, probe_te, p.probe_epochs, d.seed, dev)
                rows["probes"] += [{"encoder": key, "probe": k, "context": d.probe_context, "value": float(pr[k])}
                                   for k in ("linear_acc", "knn_acc")]  # fmt: skip


def _snapshot_row(spec: EncoderSpec, key: str, epoch: int, loss, ckpt: dict) -> pd.DataFrame:
    prov = ckpt.get("provenance", {})
    return pd.DataFrame([{
        "encoder": key, "kind": "snapshot", "arch": spec.arch, "method": spec.method,
        "augmentation": spec.augmentation, "dataset": spec.dataset, "n_train": len(spec.indices),
        "train_seed": spec.train.seed, "epochs": int(epoch), "lam": spec.lam,
        "spec": json.dumps({"snapshot of": spec.key(), "epoch": int(epoch)}),
        "trained_at": ",".join(ckpt.get("commits", [])), "trained_date": str(prov.get("date_utc", "")),
        "trained_hardware": str(prov.get("hardware", "")), "train_threads": spec.train.threads,
        "train_wall_s": np.nan, "final_loss": np.nan if loss is None else float(loss),
    }])  # fmt: skip


def extras_rows(run: ExtrasComputed, d: ExtrasDesign, cache) -> dict[str, pd.DataFrame]:
    """The store rows of computed extras (already rows)."""
    return run.tables


def _count(df: pd.DataFrame, keys: list[str]) -> pd.Series:
    return df.groupby("encoder").size().reindex(keys, fill_value=0) if len(df) else pd.Series(0, index=keys)


def missing_extras(store: EvidenceStore, d: ExtrasDesign) -> list[str]:
    """What the store lacks for the extras ``d``, one phrase each (empty: nothing to compute)."""
    out = missing_encoders(store, d.keys())
    al = store.load("alignments")
    base = [s.key() for ss in d.base.members.values() for s in ss]
    for a in d.settings["measure_augmentations"]:
        sel = al[(al.tap == "") & al.point_id.isin(d.base.ids)]
        for k, v in d.measure_scoring(a).items():
            sel = sel[sel[k] == v]
        if (_count(sel, base) < len(d.base.ids)).any():
            out.append(f"alignments measured with {a}")
    st = store.load("point_stats")
    for stat, context, runs in (
        ("label_prob", LABEL_PROB_CONTEXT, [d.supervised] if d.supervised else []),
        ("dejavu_correct", d.dejavu_context, list(d.dejavu_runs.values())),
    ):
        sel = st[(st.stat == stat) & (st.context == context)]
        if any((_count(sel, r.trained_keys()) < (r.subset == "candidate").sum()).any() for r in runs):
            out.append(stat.replace("_", " "))
    snaps = [k for *_, k in d.snapshots()]
    sel = d.stored_alignments(store)
    if (_count(sel[sel.point_id.isin(d.dynamics_ids)], snaps) < len(d.dynamics_ids)).any():
        out.append("snapshot alignments")
    return out


def read_extras(store: EvidenceStore, d: ExtrasDesign, data_root=None) -> SetupsExtras:
    """The chapter's :class:`~memlib.experiments.setups_run.SetupsExtras`, from stored rows only."""
    al = store.load("alignments")
    al = al[(al.tap == "") & (al.dataset == d.preset.dataset)]
    views, mode = d.base.scoring["views"], d.base.scoring["mode"]

    def select(df, scoring):
        for k, v in scoring.items():
            df = df[df[k] == v]
        return df

    def fam_matrices(df, run: RunDesign, ids, value):
        return {fam: _matrix(df, [s.key() for s in ss], ids, value) for fam, ss in run.members.items()}

    measure = {}
    for a in d.settings["measure_augmentations"]:
        m = fam_matrices(select(al, d.measure_scoring(a)), d.base, d.base.ids, "alignment")
        measure[a] = sslmem_from_alignment(m["f"], m["g"], views, mode, d.base.ids)
    st = store.load("point_stats")
    label_prob = None
    if d.supervised is not None:
        cand = d.supervised.ids[d.supervised.subset == "candidate"]
        sel = st[(st.stat == "label_prob") & (st.context == LABEL_PROB_CONTEXT)]
        label_prob = fam_matrices(sel, d.supervised, cand, "value")
    dv = {}
    sel = st[(st.stat == "dejavu_correct") & (st.context == d.dejavu_context)]
    for name, rd in d.dejavu_runs.items():
        m = fam_matrices(sel, rd, rd.ids[rd.subset == "candidate"], "value")
        dv[name] = DejaVuResult(m["f"].mean(0), m["g"].mean(0))
    enc = store.load("encoders").set_index("encoder")
    pr = store.load("probes")
    pr = pr[pr.context == d.probe_context].set_index(["encoder", "probe"])["value"]
    snap_al = select(al, d.base.scoring)
    ids = d.dynamics_ids
    n_cand = int((d.base.subset == "candidate").sum())
    snapshots = {}
    for e in d.epochs:
        keys = {fam: [snapshot_key(s, e)] for fam, s in d.dynamics.items()}
        raw = sslmem_from_alignment(_matrix(snap_al, keys["f"], ids, "alignment"),
                                    _matrix(snap_al, keys["g"], ids, "alignment"), views, mode, ids).raw  # fmt: skip
        f = keys["f"][0]
        loss = enc.at[f, "final_loss"]
        snapshots[e] = {
            "loss": float(loss),
            "linear_acc": float(pr[(f, "linear_acc")]),
            "knn_acc": float(pr[(f, "knn_acc")]),
            "candidate": raw[:n_cand],
            "shared": raw[n_cand:],
        }
    return SetupsExtras(measure, label_prob, dv, snapshots)


def _matrix(df: pd.DataFrame, keys: list[str], ids: np.ndarray, value: str) -> np.ndarray:
    """:func:`~memlib.experiments.stored.matrix` of the rows of ``keys`` and ``ids`` only (the long table holds
    every chapter's rows)."""
    return matrix(df[df.encoder.isin(keys) & df.point_id.isin(ids)], keys, ids, value)


# ----- the chapter ---------------------------------------------------------------------------------------------
def fill(d, *, store, train=True, device="cpu", cache_dir=None, data_root=None, progress=True):
    """One design's rows into ``store`` (computing what it lacks): a run design as chapter 01's, the extras
    with :func:`compute_extras`."""
    store = open_store(store, d.preset.name)
    kw = dict(train=train, cache_dir=cache_dir, data_root=data_root)
    if isinstance(d, SubsetDesign):
        lack = subset_missing(store, d)
        if lack and not train:
            raise LookupError(
                f"the evidence store {store.path} lacks {', '.join(lack)} of {d.name}; run with train=True, or "
                f"`memlib-evidence add --chapter {CHAPTER}`"
            )
        if lack and isinstance(d, SnapshotLevel):
            fill_snapshots([d], store=store, device=device, cache_dir=cache_dir, data_root=data_root,
                           progress=progress)  # fmt: skip
        elif lack:
            subset_fill(d, store=store, device=device, cache_dir=cache_dir, data_root=data_root, progress=progress)
        return subset_from_store(store, d)
    if isinstance(d, ExtrasDesign):
        return stored_run(store, d, experiment=EXPERIMENT, chapter=CHAPTER, missing=missing_extras,
                          compute=lambda: compute_extras(d, device=device, cache_dir=cache_dir, data_root=data_root,
                                                         progress=progress),
                          rows=extras_rows, read=read_extras, **kw)  # fmt: skip

    return stored_sslmem_run(store, d, device=device, progress=progress, **kw)


def missing_any(store: EvidenceStore, d) -> list[str]:
    """What the store lacks for design ``d`` (a run design, the extras or an in/out level)."""
    if isinstance(d, SubsetDesign):
        return subset_missing(store, d)
    return missing_extras(store, d) if isinstance(d, ExtrasDesign) else missing(store, d)


def run_chapter(
    cfg: ChapterConfig, *, store=None, train=True, device="cpu", cache_dir=None, data_root=None, progress=True
) -> SetupsRun:
    """Fill what the store lacks for ``cfg`` (with ``train=True``), then chapter 06's analysis from stored rows."""
    t0 = time.perf_counter()
    for _, _, rp, seed in plan(cfg.preset, cfg.settings):  # every run's preset is checked before any training
        validate_run_parameters(rp, device, seed)
    st = open_store(store, cfg.preset.name)
    designs, index = _run_designs(cfg, data_root)
    extras_d = _extras_design(cfg, designs, index, data_root)
    kw = dict(store=st, train=train, device=device, cache_dir=cache_dir, data_root=data_root, progress=progress)
    if train:  # train every run's encoders first, so the pool of workers stays busy across runs
        from .sslmem_experiment import run_sslmem

        for d in designs.values():
            if missing(st, d):
                run_sslmem(d.preset, seed=d.seed, train_only=True, device=device, cache_dir=cache_dir,
                           data_root=data_root, progress=progress)  # fmt: skip
    read = {key: fill(d, **kw) for key, d in designs.items()}
    runs = {entry: read[key] for entry, key in index.items()}
    extras = fill(extras_d, **kw)
    inout_d = inout_designs(cfg, data_root)
    snaps = [d for d in inout_d.values() if isinstance(d, SnapshotLevel)]
    if train and snaps:  # every snapshot level in one pass over the snapshots
        fill_snapshots(snaps, store=st, device=device, cache_dir=cache_dir, data_root=data_root, progress=progress)
    inout = {key: fill(d, **kw) for key, d in inout_d.items()}
    floor = pd.concat(
        [r.floor.assign(arch=d.preset.arch) for key, d in designs.items() if d.floor for r in [read[key]]],
        ignore_index=True,
    )
    every = [*designs.values(), extras_d, *inout_d.values()]
    keys = list(dict.fromkeys(k for d in every for k in d.keys()))
    batches = _batches(st, every, keys)
    stored = store_provenance(st, extras_d, EXPERIMENT, keys=keys, batches=batches)
    out = setups_analysis(cfg.preset, cfg.settings, runs, floor, extras, {}, st.path)
    out.provenance = chapter_provenance(EXPERIMENT, cfg, extras_d.name, device, time.perf_counter() - t0, stored)
    out.store, out.encoder_keys, out.inout = st, keys, inout
    return out


def _batches(store: EvidenceStore, designs: list, keys: list[str]) -> list[str]:
    """The store batches behind the chapter: those that gave its encoders their roles here, and those that
    stored encoders it shares with other chapters (SimCLR's first pairs are chapter 01's)."""
    roles = store.load("roles")
    names = {d.name for d in designs}
    mine = set(roles.loc[(roles.experiment == EXPERIMENT) & roles.design.isin(names), "batch"])
    enc = store.load("encoders")
    return sorted(mine | set(enc.loc[enc.encoder.isin(keys), "batch"]))


def run_setups(
    preset="smoke",
    *,
    device="cpu",
    seed=0,
    cache_dir=None,
    data_root=None,
    progress=True,
    store=None,
    train=True,
    **overrides,
) -> SetupsRun:
    """Run chapter 06 (see :mod:`~memlib.experiments.setups_run`) at ``preset`` and return a
    :class:`~memlib.experiments.setups_run.SetupsRun`.

    ``overrides`` change the chapter's settings (``seeds``, ``setups``, ``seed_setups`` (the setups that run
    every seed; the others run the first), ``overlaps``, ``train_augmentations``, ``measure_augmentations``,
    ``mask_ratios``, ``dejavu_k``, ``dejavu_centre``, ``public``, ``top_k``, ``kwargs``) or preset fields
    (``epochs=50``); ``None`` is ignored. ``seed`` shifts every seed of the settings (``seed=10`` runs seeds
    10, 11, 12 where they are 0, 1, 2). Every number is read from the evidence store ``store`` (``None``:
    :func:`~memlib.evidence.default_store_path`); what it lacks is computed and appended first, or, with
    ``train=False``, named in an error. The same as ``run_experiment("setups", preset, ...)``.
    """
    cfg = setups_config(preset, seed=seed, **overrides)
    check_run_folders(cache_dir, data_root, cfg.preset.dataset)  # before anything loads or trains
    return run_chapter(cfg, store=store, train=train, device=device, cache_dir=cache_dir, data_root=data_root,
                       progress=progress)  # fmt: skip


register_experiment(
    Experiment(
        name=EXPERIMENT,
        chapter=CHAPTER,
        notebook="06_sslmem_setups",
        title="SSLMem across methods, supervision, augmentations and training time (Tables 1, 4, 7–9, 11–13)",
        claims=("S10", "S13", "S15", "S16", "S17", "S18", "S26", "S27", "S28", "S29"),
        config=setups_config,
        design=setups_designs,
        run=run_chapter,
        fill=fill,
        minutes_per_encoder=2.5,
        missing=missing_any,
    )
)
