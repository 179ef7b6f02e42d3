"""Chapter 05 (localisation) as a registered experiment: its design, its rows in the evidence store, and the
:class:`~memlib.experiments.localization_run.LocalizationRun` rebuilt from those rows.

``run_experiment("localization", …)`` (:func:`~memlib.experiments.stored.stored_experiment`): if the store holds
every row the chapter's analysis needs, the run is rebuilt from them (no weights, no training, no scoring);
otherwise :func:`~memlib.experiments.localization_run.run_localization` computes the run (training only what
the cache lacks), its rows are appended as one batch, and the run is rebuilt from the store all the same, so
every number downstream comes from stored rows.

Rows of one run
    ``encoders`` and ``roles`` (ResNet f and g, ViT f and g, supervised f, untrained ResNets), ``alignments``
    (per encoder × LayerMem tap × scored point: S_C and S_E), ``units`` (UnitMem and ClassMem of every unit,
    on f's training points and on unseen test points, the ViT under every activation handling),
    ``point_stats`` (each encoder's point selectivity; each g member's atypicality of the candidates),
    ``results`` (share of negative means per tap, fine-tuning accuracies and p, pruning accuracies) and
    ``history`` (each trained encoder's training log).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import torch

from ..data.datasets import test_point_ids
from ..evidence import EvidenceStore
from ..memorization.layermem import layermem_from_alignment
from ..memorization.unitmem import ACTIVATIONS, UnitMemResult
from .encoders import EncoderSpec
from .inputs import load_with_splits
from .localization_run import (
    UNIT_ENCODERS,
    LocalizationRun,
    LocalizationSettings,
    localization_specs,
    run_localization,
    unseen_points,
    untrained_seeds,
)
from .presets import Preset
from .registry import register_experiment
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

EXPERIMENT = "localization"
#: The activation handling of the main UnitMem results (the others are the ViT's sensitivity table).
MAIN_ACTIVATION = "positive_part"


def localization_config(preset="smoke", *, seed: int = 0, **params) -> ChapterConfig:
    """Resolve chapter 05's config once: ``params`` change preset fields (``models_per_family=``) or
    :class:`~memlib.experiments.localization_run.LocalizationSettings` fields (``unit_views=``), ``None``
    ignored, anything else refused with the closest name."""
    return chapter_config(LocalizationSettings, EXPERIMENT, preset, seed, **params)


@dataclass(frozen=True)
class LocalizationDesign(StoredContexts):
    """What one localisation run needs from the store: its encoders, scored points and contexts."""

    preset: Preset
    seed: int
    settings: LocalizationSettings
    finetune_epochs: int
    members: dict[str, list[EncoderSpec]]  # "resnet f", "resnet g", "vit f", "vit g", "supervised f" → specs
    untrained: list[tuple[str, int]]  # (store key, seed) of each untrained ResNet
    ids: np.ndarray  # LayerMem points: S_C, then S_E (test point ids)
    n_candidates: int
    unit_ids: np.ndarray  # UnitMem points seen in training: f's training points
    unit_labels: np.ndarray
    unseen_ids: np.ndarray  # UnitMem points no encoder trained on
    unseen_labels: np.ndarray
    name: str
    params: dict = field(default_factory=dict)

    def keys(self) -> list[str]:
        """Every encoder key of the design: trained members, then untrained ResNets."""
        return self.trained_keys() + [k for k, _ in self.untrained]

    def trained_keys(self) -> list[str]:
        """The keys of the encoders the design trains."""
        return [s.key() for specs in self.members.values() for s in specs]

    def unit_encoders(self, which: str) -> list[str]:
        """Store keys of the encoders whose units ``which`` (one of
        :data:`~memlib.experiments.localization_run.UNIT_ENCODERS`) reads."""
        if which == "untrained":
            return [k for k, _ in self.untrained]
        return [s.key() for s in self.members[f"{which} f"]]

    def unit_context(self, seen: bool, activation: str = MAIN_ACTIVATION) -> str:
        ls = self.settings
        pts = (
            f"f's {len(self.unit_ids)} training points of split {self.seed}"
            if seen
            else f"{len(self.unseen_ids)} unseen test points (outside S_E, drawn with seed {self.seed + 4242})"
        )
        return f"UnitMem {activation}, K={ls.unit_views}, view seed {self.seed}, over {pts}"

    @property
    def atypicality_context(self) -> str:
        return f"atypicality k=5 of S_C among f's training points and S_E of split {self.seed}, in g's embedding"

    def finetune_context(self, layers: str) -> str:
        p = self.preset
        return (
            f"fine-tuning the {self.settings.n_finetune} {layers} layers, {self.finetune_epochs} epochs, head "
            f"from seed {self.seed}; probe sets of seed {self.seed}: train {p.probe_train}, test {p.probe_test}"
        )

    def pruning_jobs(self) -> list[tuple[float, str, int]]:
        ls = self.settings
        return [
            (f, s, d)
            for f in ls.prune_fractions
            for s, d in (("top", 0), ("bottom", 0), *(("random", i) for i in range(ls.random_draws)))
        ]

    def pruning_context(self, job: tuple[float, str, int] | None = None) -> str:
        p = self.preset
        base = (
            f"units by UnitMem {MAIN_ACTIVATION}; linear probe {p.probe_epochs} epochs on probe sets of seed "
            f"{self.seed}: train {p.probe_train}, test {p.probe_test}"
        )
        if job is None:
            return f"unpruned; {base}"
        frac, strategy, draw = job
        return f"pruned {strategy} {frac:g} draw {draw}; {base}"


def localization_design(cfg: ChapterConfig, data_root=None) -> LocalizationDesign:
    """The :class:`LocalizationDesign` of ``cfg`` (loads the data set to draw the split; trains nothing)."""
    p, ls, seed = cfg.preset, cfg.settings, cfg.seed
    train_set, test_set, splits = load_with_splits(p, seed, data_root)
    named = localization_specs(p, ls.vit_arch, splits, seed)
    members: dict[str, list[EncoderSpec]] = {}
    for name, spec in named.items():
        members.setdefault(name.rstrip("0123456789"), []).append(spec)
    n_f = len(members["resnet f"])
    untrained = [(untrained_key(p, s), s) for s in untrained_seeds(seed, n_f)]
    ids = np.concatenate([splits.candidate, test_point_ids(splits.extra, train_set)]).astype(np.int64)
    unseen = unseen_points(len(test_set), splits, seed)
    name = (
        f"split {seed}: shared {p.shared}, candidate {p.candidate}, {p.epochs} epochs, {p.models_per_family} per "
        f"family; {ls.vit_arch}, supervised and untrained ResNets"
    )
    return LocalizationDesign(
        p,
        seed,
        ls,
        p.probe_epochs if ls.finetune_epochs is None else ls.finetune_epochs,
        members,
        untrained,
        ids,
        len(splits.candidate),
        np.asarray(splits.f_train, dtype=np.int64),
        train_set.labels[splits.f_train].numpy().astype(np.int64),
        test_point_ids(unseen, train_set),
        test_set.labels[unseen].numpy().astype(np.int64),
        name,
        cfg.params,
    )


# ----- run → rows ----------------------------------------------------------------------------------------------
def _unit_rows(key: str, res: UnitMemResult, ids, labels, context: str) -> tuple[pd.DataFrame, list[dict]]:
    cm = res.classmem(labels)
    units = pd.concat(
        [
            pd.DataFrame(
                {
                    "encoder": key,
                    "tap": t,
                    "unit": np.arange(len(res.unitmem[t]), dtype=np.int64),
                    "context": context,
                    "unitmem": res.unitmem[t].astype(np.float32),
                    "classmem": cm[t].astype(np.float32),
                    "top_point_id": ids[res.argmax[t]],
                    "top_class": labels[res.argmax[t]],
                }
            )
            for t in res.taps
        ],
        ignore_index=True,
    )
    neg = [
        {"encoder": key, "experiment": EXPERIMENT, "quantity": "negative means", "context": f"{context}; tap {t}",
         "value": float(v)}
        for t, v in res.clamped.items() if np.isfinite(v)
    ]  # fmt: skip
    return units, neg


def localization_rows(run: LocalizationRun, d: LocalizationDesign, cache) -> dict[str, pd.DataFrame]:
    """The store rows of a finished ``run`` (its encoders' checkpoints are read from ``cache``)."""
    p = d.preset
    specs = [(fam, i, s) for fam, ss in d.members.items() for i, s in enumerate(ss)]
    enc = [encoder_row(s, cache) for _, _, s in specs]
    roles = [
        {"experiment": EXPERIMENT, "design": d.name, "encoder": s.key(), "role": fam, "member": i}
        for fam, i, s in specs
    ]
    for m, (key, seed) in enumerate(d.untrained):
        enc.append(untrained_row(p, key, seed))
        roles.append({"experiment": EXPERIMENT, "design": d.name, "encoder": key, "role": "untrained", "member": m})
    hist = [history_rows(s.key(), torch.load(s.checkpoint(cache), map_location="cpu", weights_only=False,
                                             mmap=True).get("history", [])) for _, _, s in specs]  # fmt: skip
    al = []
    for arch in ("resnet", "vit"):
        res = run.layer[arch]
        for fam, mats in (("f", res.align_f_models), ("g", res.align_g_models)):
            for i, s in enumerate(d.members[f"{arch} {fam}"]):
                al.append(
                    pd.DataFrame(
                        {
                            "encoder": s.key(),
                            "dataset": p.dataset,
                            "point_id": np.tile(d.ids, len(res.taps)),
                            "tap": np.repeat(res.taps, len(d.ids)),
                            **d.scoring,
                            "alignment": mats[i].reshape(-1),
                        }
                    )
                )
    units, results, stats = [], [], []
    sets = {which: (run.units[which], run.unseen_units[which], MAIN_ACTIVATION) for which in UNIT_ENCODERS}
    for act, (seen, unseen) in run.vit_activations.items():
        if act != MAIN_ACTIVATION:
            sets[f"vit {act}"] = (seen, unseen, act)
    for which, (seen, unseen, act) in sets.items():
        for key, a, b in zip(d.unit_encoders(which.split()[0]), seen, unseen):
            u, neg = _unit_rows(key, a, d.unit_ids, d.unit_labels, d.unit_context(True, act))
            units.append(u)
            results += neg
            u, neg = _unit_rows(key, b, d.unseen_ids, d.unseen_labels, d.unit_context(False, act))
            units.append(u)
            results += neg
            stats.append(
                pd.DataFrame(
                    {
                        "encoder": key,
                        "dataset": p.dataset,
                        "point_id": d.unit_ids,
                        "stat": "point selectivity",
                        "context": d.unit_context(True, act),
                        "value": a.point_selectivity(),
                    }
                )
            )
    cand = d.ids[: d.n_candidates]
    for s, aty in zip(d.members["resnet g"], run.atypicality_members):
        stats.append(
            pd.DataFrame(
                {
                    "encoder": s.key(),
                    "dataset": p.dataset,
                    "point_id": cand,
                    "stat": "atypicality",
                    "context": d.atypicality_context,
                    "value": np.asarray(aty, dtype=np.float64),
                }
            )
        )
    f_keys = [s.key() for s in d.members["resnet f"]]
    for r in run.finetune.itertuples():
        ctx = d.finetune_context(r.layers)
        results.append(_result(f_keys[r.member], "finetune accuracy", ctx, r.accuracy))
        if np.isfinite(r.p):
            results.append(_result(f_keys[r.member], "finetune p", ctx, r.p))
    for member, g in run.pruning.groupby("member"):
        results.append(_result(f_keys[member], "accuracy", d.pruning_context(), g["base_accuracy"].iloc[0]))
        for r in g.itertuples():
            results.append(
                _result(f_keys[member], "accuracy", d.pruning_context((r.fraction, r.strategy, r.draw)), r.accuracy)
            )
    return {
        "encoders": pd.DataFrame(enc),
        "roles": pd.DataFrame(roles),
        "alignments": pd.concat(al, ignore_index=True),
        "units": pd.concat(units, ignore_index=True),
        "point_stats": pd.concat(stats, ignore_index=True),
        "results": pd.DataFrame(results),
        "history": pd.concat(hist, ignore_index=True),
    }


def _result(key: str, quantity: str, context: str, value) -> dict:
    return {"encoder": key, "experiment": EXPERIMENT, "quantity": quantity, "context": context, "value": float(value)}


# ----- rows → run ----------------------------------------------------------------------------------------------
@dataclass
class StoredUnitMem(UnitMemResult):
    """A :class:`~memlib.memorization.unitmem.UnitMemResult` read back from the store's summaries: UnitMem,
    ClassMem, each unit's top point and each point's selectivity, without the per-point means ``mu``."""

    stored_classmem: dict = field(default_factory=dict)
    stored_selectivity: np.ndarray | None = None

    def classmem(self, labels=None) -> dict[str, np.ndarray]:
        """ClassMem of every unit, as stored (computed over the class labels of the points it was read on)."""
        return self.stored_classmem

    def point_selectivity(self) -> np.ndarray:
        if self.stored_selectivity is None:
            raise ValueError("point selectivity is stored for the points seen in training only")
        return self.stored_selectivity


def _stored_units(units, results, stats, key: str, context: str, ids, seen: bool, views: int) -> StoredUnitMem:
    u = units.get((key, context))
    if u is None:
        raise LookupError(f"no unit rows of {key} in {context}")
    taps = list(dict.fromkeys(u["tap"]))
    by_tap = {t: g.sort_values("unit") for t, g in u.groupby("tap", sort=False)}
    neg = results[(results.encoder == key) & (results.quantity == "negative means")].set_index("context")["value"]
    sel = None
    if seen:
        st = stats[(stats.encoder == key) & (stats.context == context) & (stats.stat == "point selectivity")]
        sel = st.set_index("point_id").loc[ids, "value"].to_numpy(np.float64)
    return StoredUnitMem(
        taps,
        {},
        {t: g["unitmem"].to_numpy(np.float64) for t, g in by_tap.items()},
        {t: _positions(ids, g["top_point_id"].to_numpy()) for t, g in by_tap.items()},
        {t: float(neg.get(f"{context}; tap {t}", np.nan)) for t in taps},
        views,
        "mean",
        len(ids),
        stored_classmem={t: g["classmem"].to_numpy(np.float64) for t, g in by_tap.items()},
        stored_selectivity=sel,
    )


def missing(store: EvidenceStore, d: LocalizationDesign) -> list[str]:
    """What the store lacks for ``d``, one phrase each (empty: the run can be analysed from the store)."""
    out = missing_encoders(store, d.keys())
    al = _alignments(store, d)
    trained = [s.key() for fam in ("resnet f", "resnet g", "vit f", "vit g") for s in d.members[fam]]
    n = al.groupby("encoder").size().reindex(trained, fill_value=0) if len(al) else pd.Series(0, index=trained)
    if (n < len(d.ids)).any():
        out.append(f"LayerMem alignments of {int((n < len(d.ids)).sum())} encoders")
    un = store.load("units")
    ctx = {d.unit_context(s) for s in (True, False)}
    keys = set(d.keys()) - {s.key() for s in d.members["resnet g"] + d.members["vit g"]}
    have = set(map(tuple, un.loc[un.context.isin(ctx), ["encoder", "context"]].drop_duplicates().to_numpy()))
    if any((k, c) not in have for k in keys for c in ctx):
        out.append("UnitMem")
    res = store.load("results")
    res = res[res.experiment == EXPERIMENT]
    f_keys = {s.key() for s in d.members["resnet f"]}
    done = (res.quantity == "finetune accuracy") & (res.context == d.finetune_context("last"))
    if not f_keys <= set(res.loc[done, "encoder"]):
        out.append("fine-tuning")
    if not f_keys <= set(res.loc[res.context == d.pruning_context(), "encoder"]):
        out.append("pruning")
    return out


def _alignments(store: EvidenceStore, d: LocalizationDesign) -> pd.DataFrame:
    al = store.load("alignments")
    sel = (al.tap != "") & (al.dataset == d.preset.dataset) & al.point_id.isin(d.ids)
    for k, v in d.scoring.items():
        sel &= al[k] == v
    return al[sel]


def run_from_store(store: EvidenceStore, d: LocalizationDesign, data_root=None) -> LocalizationRun:
    """The :class:`~memlib.experiments.localization_run.LocalizationRun` of design ``d``, from stored rows only
    (weights are never loaded)."""
    p = d.preset
    al = _alignments(store, d)
    layer = {}
    for arch in ("resnet", "vit"):
        keys = {fam: [s.key() for s in d.members[f"{arch} {fam}"]] for fam in ("f", "g")}
        sub = al[al.encoder.isin(keys["f"] + keys["g"])]
        taps = list(dict.fromkeys(sub.loc[sub.encoder == keys["f"][0], "tap"]))  # stored in depth order
        wide = sub.set_index(["encoder", "tap", "point_id"])["alignment"].unstack("point_id")
        mats = {
            fam: np.stack([wide.loc[[(k, t) for t in taps], d.ids].to_numpy(np.float64) for k in ks])
            for fam, ks in keys.items()
        }
        layer[arch] = layermem_from_alignment(taps, mats["f"], mats["g"], d.scoring["views"], d.scoring["mode"])
    un = store.load("units")
    un = {k: g for k, g in un[un.encoder.isin(d.keys())].groupby(["encoder", "context"], sort=False)}
    res = store.load("results")
    res = res[(res.experiment == EXPERIMENT) & res.encoder.isin(d.keys())]
    stats = store.load("point_stats")
    stats = stats[stats.encoder.isin(d.keys())]
    views = d.settings.unit_views

    def read(which, act=MAIN_ACTIVATION):
        keys = d.unit_encoders(which)
        seen = [_stored_units(un, res, stats, k, d.unit_context(True, act), d.unit_ids, True, views) for k in keys]
        unseen = [
            _stored_units(un, res, stats, k, d.unit_context(False, act), d.unseen_ids, False, views) for k in keys
        ]
        return seen, unseen

    units, unseen_units = {}, {}
    for which in UNIT_ENCODERS:
        units[which], unseen_units[which] = read(which)
    vit_act = {act: (units["vit"], unseen_units["vit"]) if act == MAIN_ACTIVATION else read("vit", act)
               for act in ACTIVATIONS}  # fmt: skip
    aty = stats[(stats.context == d.atypicality_context) & (stats.stat == "atypicality")]
    cand = d.ids[: d.n_candidates]
    aty_m = matrix(aty, [s.key() for s in d.members["resnet g"]], cand, "value")
    f_keys = [s.key() for s in d.members["resnet f"]]
    val = res.set_index(["encoder", "quantity", "context"])["value"]
    train_set, _, splits = load_with_splits(p, d.seed, data_root)
    run = LocalizationRun(
        p,
        d.seed,
        splits,
        layer,
        d.n_candidates,
        units,
        unseen_units,
        vit_act,
        d.unit_labels,
        _positions(d.unit_ids, cand),
        aty_m.mean(0),
        pd.DataFrame(),
        pd.DataFrame(),
        store_provenance(store, d, EXPERIMENT),
        store.path,
        atypicality_members=list(aty_m),
        store=store,
        encoder_keys=d.keys(),
    )
    rows = []
    pl = run.pair_layers("resnet")
    n = d.settings.n_finetune
    for m, key in enumerate(f_keys[: run.n_pairs]):
        mine = pl[pl["pair"] == m].set_index("tap")
        k = min(n, len(mine))
        taps = {"most memorising": list(mine["delta_z"].nlargest(k).index), "last": list(mine.index[-k:])}
        for layers in ("most memorising", "last"):
            ctx = d.finetune_context(layers)
            rows.append(
                {
                    "member": m,
                    "layers": layers,
                    "taps": ", ".join(taps[layers]),
                    "accuracy": val[(key, "finetune accuracy", ctx)],
                    "p": val.get((key, "finetune p", ctx), np.nan),
                }
            )
    run.finetune = pd.DataFrame(rows)
    rows = []
    for m, key in enumerate(f_keys):
        base = val[(key, "accuracy", d.pruning_context())]
        n_units = sum(len(v) for v in units["resnet"][m].unitmem.values())
        for job in d.pruning_jobs():
            acc = val[(key, "accuracy", d.pruning_context(job))]
            rows.append(
                {"member": m, "fraction": job[0], "strategy": job[1], "draw": job[2],
                 "units": max(1, int(round(job[0] * n_units))), "base_accuracy": base, "accuracy": acc,
                 "drop": base - acc}
            )  # fmt: skip
    run.pruning = pd.DataFrame(rows)
    return run


def _positions(ids: np.ndarray, wanted: np.ndarray) -> np.ndarray:
    pos = pd.Series(np.arange(len(ids)), index=ids)
    return pos.loc[wanted].to_numpy()


register_experiment(
    stored_experiment(
        name=EXPERIMENT,
        chapter="05",
        notebook="05_localization",
        title="LayerMem and UnitMem: where in the encoder is memorisation? (ResNet, ViT, supervised, untrained)",
        claims=("L1", "L2", "L3", "L4", "L5", "L6", "L7", "L8"),
        config=localization_config,
        design=localization_design,
        missing=missing,
        compute=lambda d, **kw: run_localization(d.preset.name, seed=d.seed, **kw, **d.params),
        rows=localization_rows,
        read=run_from_store,
        minutes_per_encoder=3.3,
    )
)
