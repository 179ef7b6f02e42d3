"""One SSLMem run (a split with its f, g and f′ families) to evidence-store rows and back.

:func:`stored_sslmem_run` is what chapter 01's study calls per run: if the
store holds every row the run's analysis needs, it rebuilds the
:class:`~memlib.experiments.sslmem_experiment.SSLMemRun` from those rows
(no weights, no training, no scoring); otherwise it runs
:func:`~memlib.experiments.sslmem_experiment.run_sslmem` (training only
what the cache lacks), appends the run's rows, and then rebuilds the run
from the store all the same, so every number downstream comes from stored
rows.

Rows of one run
    ``encoders`` (every f, g, f′ member and each untrained floor encoder), ``roles`` (which member each is),
    ``alignments`` (per encoder × scored point, at the representation), ``point_stats`` (each g member's
    atypicality among the run's scored points), ``probes`` (linear and kNN accuracy on the run's probe sets)
    and ``history`` (each trained encoder's training log).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from ..data.datasets import test_point_ids
from ..evidence import EvidenceStore, batch_provenance
from ..memorization.sslmem import sslmem_from_alignment
from ..probing import atypicality, embed
from ..training.loop import fingerprint
from .artifacts import check_cache_dir
from .encoders import EncoderSpec, family_specs
from .inputs import load_with_splits
from .presets import Preset
from .sslmem_experiment import SSLMemRun, floor_seeds, run_sslmem

EXPERIMENT = "sslmem"
#: Neighbours of the atypicality stored per g member (:meth:`.SSLMemRun.atypicality`'s default).
ATYPICALITY_K = 5
_PROBES = ("linear_acc", "linear_train_acc", "knn_acc")
_FLOOR = ("linear_acc", "linear_train_acc", "knn_acc")


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


@dataclass(frozen=True)
class RunDesign(StoredContexts):
    """What one SSLMem run needs from the store: its members, scored points and scoring and probe contexts."""

    preset: Preset
    seed: int
    probe: bool
    members: dict[str, list[EncoderSpec]]  # family → specs, in member order
    floor: list[str]  # keys of the untrained floor encoders (empty without probes)
    ids: np.ndarray  # point ids of the scored points, in the run's order
    subset: np.ndarray  # subset of each scored point
    name: str  # the design's name in the store ("split=0 paired …")

    @property
    def atypicality_context(self) -> str:
        return f"atypicality k={ATYPICALITY_K} among {len(self.ids)} points {fingerprint(self.ids.tolist())}"

    def keys(self) -> list[str]:
        """Every encoder key of the design: trained members, then untrained floor encoders."""
        return [s.key() for specs in self.members.values() for s in specs] + list(self.floor)


def untrained_key(p: Preset, seed: int) -> str:
    """The store key of the untrained encoder of ``p``'s architecture built after ``torch.manual_seed(seed)``
    with the training split's channel statistics."""
    return fingerprint({"untrained": p.arch, "dataset": p.dataset, "seed": int(seed), "stats": "train split"})


def run_design(p: Preset, seed: int, probe: bool, data_root=None) -> RunDesign:
    """The :class:`RunDesign` of :func:`~memlib.experiments.sslmem_experiment.run_sslmem` at ``p`` and ``seed``
    (loads the data set to draw the split; trains nothing)."""
    train_set, _, splits = load_with_splits(p, seed, data_root)
    fams = ("f", "g") + (("f'",) if p.null_models else ())
    ids = np.concatenate(
        [splits.candidate, splits.shared, test_point_ids(splits.extra, train_set), splits.independent]
    ).astype(np.int64)
    subset = np.concatenate(
        [
            [s] * len(x)
            for s, x in zip(
                ("candidate", "shared", "extra", "independent"),
                (splits.candidate, splits.shared, splits.extra, splits.independent),
            )
        ]
    )
    floor = [untrained_key(p, s) for s in floor_seeds(seed)] if probe else []
    name = (
        f"split {seed}: shared {p.shared}, candidate {p.candidate}, {p.epochs} epochs, "
        f"{p.models_per_family} per family{', paired seeds' if p.paired_seeds else ''}"
    )
    return RunDesign(p, seed, probe, family_specs(p, splits, seed, fams), floor, ids, subset, name)


# ----- run → rows ----------------------------------------------------------------------------------------------
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


def run_rows(run: SSLMemRun, d: RunDesign, cache: Path) -> dict[str, pd.DataFrame]:
    """The store rows of a finished ``run`` (its encoders' checkpoints are read from ``cache``)."""
    p = d.preset
    specs = [(fam, i, s) for fam, ss in d.members.items() for i, s in enumerate(ss)]
    align = {"f": run.result.align_f_models, "g": run.result.align_g_models}
    if run.null is not None:
        align["f'"] = run.null.align_f_models
    enc = [encoder_row(s, cache) for _, _, s in specs]
    roles = [
        {"experiment": EXPERIMENT, "design": d.name, "encoder": s.key(), "role": fam, "member": i}
        for fam, i, s in specs
    ]
    al, hist, probes, stats = [], [], [], []
    for fam, i, s in specs:
        al.append(
            pd.DataFrame(
                {
                    "encoder": s.key(),
                    "dataset": p.dataset,
                    "point_id": d.ids,
                    "tap": "",
                    **d.scoring,
                    "alignment": align[fam][i],
                }
            )
        )
        hist.append(history_rows(s.key(), run.histories[f"{fam}{i}"]))
        if d.probe:
            probes += [
                {
                    "encoder": s.key(),
                    "probe": k,
                    "context": d.probe_context,
                    "value": float(run.probe.loc[f"{fam}{i}", k]),
                }
                for k in _PROBES
            ]
    for i, s in enumerate(d.members["g"]):
        aty = atypicality(embed(run.encoders["g"][i], run.images), torch.as_tensor(run.labels), ATYPICALITY_K)
        stats.append(
            pd.DataFrame(
                {
                    "encoder": s.key(),
                    "dataset": p.dataset,
                    "point_id": d.ids,
                    "stat": "atypicality",
                    "context": d.atypicality_context,
                    "value": aty.cpu().numpy().astype(np.float64),
                }
            )
        )
    if d.probe:
        for key, (_, row) in zip(d.floor, run.floor.iterrows()):
            enc.append(untrained_row(p, key, int(row["seed"])))
            roles.append(
                {
                    "experiment": EXPERIMENT,
                    "design": d.name,
                    "encoder": key,
                    "role": "untrained",
                    "member": int(row["seed"]),
                }
            )
            probes += [{"encoder": key, "probe": k, "context": d.probe_context, "value": float(row[k])} for k in _FLOOR]
    return {
        "encoders": pd.DataFrame(enc),
        "roles": pd.DataFrame(roles),
        "alignments": pd.concat(al, ignore_index=True),
        "point_stats": pd.concat(stats, ignore_index=True),
        "probes": pd.DataFrame(probes, columns=["encoder", "probe", "context", "value"]),
        "history": pd.concat(hist, ignore_index=True),
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


# ----- rows → run ----------------------------------------------------------------------------------------------
def missing(store: EvidenceStore, d: RunDesign) -> list[str]:
    """What the store lacks for ``d``, one phrase each (empty: the run can be analysed from the store)."""
    out = []
    keys = set(store.load("encoders")["encoder"])
    lack = [k for k in d.keys() if k not in keys]
    if lack:
        out.append(f"{len(lack)} of {len(d.keys())} encoders")
    al = d.stored_alignments(store)
    trained = [s.key() for ss in d.members.values() for s in ss]
    n = al.groupby("encoder").size().reindex(trained, fill_value=0) if len(al) else pd.Series(0, index=trained)
    if (n < len(d.ids)).any():
        out.append(f"alignments of {int((n < len(d.ids)).sum())} encoders")
    if d.probe:
        pr = store.load("probes")
        pr = pr[(pr.context == d.probe_context) & pr.encoder.isin(d.keys())]
        if len(pr) < len(_PROBES) * len(d.keys()):
            out.append("probe accuracies")
    st = store.load("point_stats")
    g = [s.key() for s in d.members["g"]]
    st = st[(st.context == d.atypicality_context) & st.encoder.isin(g)]
    if len(st) < len(g) * len(d.ids):
        out.append("atypicality")
    return out


def matrix(df: pd.DataFrame, keys: list[str], ids: np.ndarray, value: str) -> np.ndarray:
    """Rows ``keys`` × columns ``ids`` of ``df``'s ``value`` (encoder, point_id long form)."""
    if not keys:
        return np.empty((0, len(ids)))
    wide = df.pivot(index="encoder", columns="point_id", values=value)
    return wide.loc[keys, ids].to_numpy(dtype=np.float64)


def run_from_store(store: EvidenceStore, d: RunDesign, data_root=None) -> SSLMemRun:
    """The :class:`.SSLMemRun` of design ``d``, from stored rows only (weights are never loaded)."""
    p = d.preset
    al = d.stored_alignments(store)
    mats = {fam: matrix(al, [s.key() for s in specs], d.ids, "alignment") for fam, specs in d.members.items()}
    sc = d.scoring
    result = sslmem_from_alignment(mats["f"], mats["g"], sc["views"], sc["mode"], d.ids)
    null = sslmem_from_alignment(mats["f'"], mats["f"], sc["views"], sc["mode"], d.ids) if "f'" in mats else None
    st = store.load("point_stats")
    st = st[(st.context == d.atypicality_context) & (st.stat == "atypicality")]
    aty = matrix(st, [s.key() for s in d.members["g"]], d.ids, "value")
    hist = store.load("history")
    histories = {}
    for fam, specs in d.members.items():
        for i, s in enumerate(specs):
            h = hist[hist.encoder == s.key()].pivot(index="epoch", columns="metric", values="value").sort_index()
            histories[f"{fam}{i}"] = [
                {"epoch": int(e), **{k: float(v) for k, v in row.items() if np.isfinite(v)}} for e, row in h.iterrows()
            ]
    probe, floor = pd.DataFrame(columns=["encoder", "family"]).set_index("encoder"), pd.DataFrame()
    if d.probe:
        pr = store.load("probes")
        pr = pr[pr.context == d.probe_context].pivot(index="encoder", columns="probe", values="value")
        probe = pd.DataFrame(
            [
                {"encoder": f"{fam}{i}", "family": fam, **{k: pr.at[s.key(), k] for k in _PROBES}}
                for fam, specs in d.members.items()
                for i, s in enumerate(specs)
            ]
        ).set_index("encoder")
        floor = pd.DataFrame(
            [
                {"arch": p.arch, "seed": s, **{k: pr.at[key, k] for k in _FLOOR}}
                for key, s in zip(d.floor, floor_seeds(d.seed))
            ]
        )
    train_set, test_set, splits = load_with_splits(p, d.seed, data_root)
    images = _images(train_set, test_set, d.ids)
    labels = _labels(train_set, test_set, d.ids)
    return SSLMemRun(
        p,
        d.seed,
        splits,
        result,
        d.subset,
        images,
        labels,
        train_set.classes,
        histories,
        probe,
        store_provenance(store, d, EXPERIMENT),
        Path(store.path),
        {},
        {},
        null,
        floor,
        atypicality_values=aty.mean(0) if len(aty) else None,
    )


def _images(train_set, test_set, ids: np.ndarray) -> torch.Tensor:
    n = len(train_set)
    return torch.stack([train_set.images[i] if i < n else test_set.images[i - n] for i in ids.tolist()])


def _labels(train_set, test_set, ids: np.ndarray) -> np.ndarray:
    n = len(train_set)
    return np.array([int(train_set.labels[i]) if i < n else int(test_set.labels[i - n]) for i in ids.tolist()])


def store_provenance(store: EvidenceStore, d, experiment: str) -> dict:
    """Where design ``d``'s rows came from: the store batches that gave its encoders their roles in
    ``experiment``, and the encoders' training."""
    enc = store.load("encoders").set_index("encoder").loc[d.keys()]
    roles = store.load("roles")
    mine = roles.encoder.isin(d.keys()) & (roles.design == d.name) & (roles.experiment == experiment)
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


def stored_sslmem_run(
    store: EvidenceStore, d: RunDesign, *, device="cpu", cache_dir=None, data_root=None, progress=True, train=True
) -> SSLMemRun:
    """The run of design ``d`` from the store, running (and appending) it first if the store lacks rows.

    ``train=False`` refuses to compute anything: a missing row is an error naming what is missing.
    """
    lack = missing(store, d)
    if lack:
        if not train:
            raise LookupError(
                f"the evidence store {store.path} lacks {', '.join(lack)} of {d.name}; run with train=True "
                f"(memlib-evidence add) to compute them, or point MEMLIB_RESULTS at a complete store"
            )
        run = run_sslmem(
            d.preset,
            seed=d.seed,
            device=device,
            cache_dir=cache_dir,
            data_root=data_root,
            progress=progress,
            probe=d.probe,
        )
        rows = run_rows(run, d, check_cache_dir(cache_dir))
        prov = batch_provenance(
            EXPERIMENT,
            d.name,
            d.preset.name,
            d.seed,
            run.provenance["device"],
            run.timings["total_s"],
            commit=run.provenance["commit"],
        )
        store.append(rows, prov)
    return run_from_store(store, d, data_root)
