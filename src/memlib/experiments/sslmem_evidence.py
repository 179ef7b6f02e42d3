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

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from ..data.datasets import test_point_ids
from ..evidence import EvidenceStore, open_store
from ..memorization.sslmem import sslmem_from_alignment
from ..probing import atypicality, embed
from ..training.loop import fingerprint
from .encoders import EncoderSpec, family_specs
from .inputs import load_with_splits
from .presets import Preset
from .sslmem_experiment import SSLMemRun, floor_seeds, run_sslmem
from .stored import (
    StoredContexts,
    encoder_row,
    history_rows,
    matrix,
    missing_encoders,
    store_provenance,
    stored_run,
    untrained_key,
    untrained_row,
)

EXPERIMENT = "sslmem"
#: Neighbours of the atypicality stored per g member (:meth:`.SSLMemRun.atypicality`'s default).
ATYPICALITY_K = 5
_PROBES = ("linear_acc", "linear_train_acc", "knn_acc")
_FLOOR = ("linear_acc", "linear_train_acc", "knn_acc")


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
    experiment: str = EXPERIMENT  # the experiment whose roles its rows record
    chapter: str = "01"

    @property
    def atypicality_context(self) -> str:
        return f"atypicality k={ATYPICALITY_K} among {len(self.ids)} points {fingerprint(self.ids.tolist())}"

    def keys(self) -> list[str]:
        """Every encoder key of the design: trained members, then untrained floor encoders."""
        return self.trained_keys() + list(self.floor)

    def trained_keys(self) -> list[str]:
        """The keys of the encoders the design trains (the untrained floor is built, not trained)."""
        return [s.key() for specs in self.members.values() for s in specs]


def run_design(
    p: Preset, seed: int, probe: bool, data_root=None, *, experiment: str = EXPERIMENT, chapter: str = "01"
) -> RunDesign:
    """The :class:`RunDesign` of :func:`~memlib.experiments.sslmem_experiment.run_sslmem` at ``p`` and ``seed``
    (loads the data set to draw the split; trains nothing), its rows recorded under ``experiment``."""
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
    method = "" if p.method == "simclr" else f"{p.method} on {p.arch}, "  # chapter 01's names stay as stored
    name = (
        f"split {seed}: {method}shared {p.shared}, candidate {p.candidate}, {p.epochs} epochs, "
        f"{p.models_per_family} per family{', paired seeds' if p.paired_seeds else ''}"
    )
    members = family_specs(p, splits, seed, fams)
    return RunDesign(p, seed, probe, members, floor, ids, subset, name, experiment, chapter)


# ----- run → rows ----------------------------------------------------------------------------------------------
def run_rows(run: SSLMemRun, d: RunDesign, cache: Path) -> dict[str, pd.DataFrame]:
    """The store rows of a finished ``run`` (its encoders' checkpoints are read from ``cache``)."""
    p = d.preset
    specs = [(fam, i, s) for fam, ss in d.members.items() for i, s in enumerate(ss)]
    align = {"f": run.result.align_f_models, "g": run.result.align_g_models}
    if run.null is not None:
        align["f'"] = run.null.align_f_models
    enc = [encoder_row(s, cache) for _, _, s in specs]
    roles = [
        {"experiment": d.experiment, "design": d.name, "encoder": s.key(), "role": fam, "member": i}
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
                    "experiment": d.experiment,
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


# ----- rows → run ----------------------------------------------------------------------------------------------
def missing(store: EvidenceStore, d: RunDesign) -> list[str]:
    """What the store lacks for ``d``, one phrase each (empty: the run can be analysed from the store)."""
    out = missing_encoders(store, d.keys())
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
    images = point_images(train_set, test_set, d.ids)
    labels = point_labels(train_set, test_set, d.ids)
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
        store_provenance(store, d, d.experiment),
        Path(store.path),
        {},
        {},
        null,
        floor,
        atypicality_values=aty.mean(0) if len(aty) else None,
    )


def point_images(train_set, test_set, ids: np.ndarray) -> torch.Tensor:
    """The images of point ``ids`` (training split first, then the test split, as
    ``memlib.data.datasets.test_point_ids`` numbers them)."""
    n = len(train_set)
    return torch.stack([train_set.images[i] if i < n else test_set.images[i - n] for i in ids.tolist()])


def point_labels(train_set, test_set, ids: np.ndarray) -> np.ndarray:
    """The labels of point ``ids`` (numbered as in :func:`point_images`)."""
    n = len(train_set)
    return np.array([int(train_set.labels[i]) if i < n else int(test_set.labels[i - n]) for i in ids.tolist()])


def stored_sslmem_run(
    store: EvidenceStore, d: RunDesign, *, device="cpu", cache_dir=None, data_root=None, progress=True, train=True
) -> SSLMemRun:
    """The run of design ``d`` from the store, running (and appending) it first if the store lacks rows
    (:func:`~memlib.experiments.stored.stored_run`; ``train=False`` refuses to compute)."""

    def compute():
        # A design without floor keys (a chapter probing its architecture's floor once) skips the floor.
        return run_sslmem(d.preset, seed=d.seed, device=device, cache_dir=cache_dir, data_root=data_root,
                          progress=progress, probe=d.probe, floor=bool(d.floor))  # fmt: skip

    return stored_run(store, d, experiment=d.experiment, chapter=d.chapter, missing=missing, compute=compute,
                      rows=run_rows, read=run_from_store, train=train, cache_dir=cache_dir,
                      data_root=data_root)  # fmt: skip


def fill_run(d: RunDesign, *, store, **kw) -> SSLMemRun:
    """An experiment's ``fill`` for designs that are SSLMem runs: :func:`stored_sslmem_run` into ``store``."""
    return stored_sslmem_run(open_store(store, d.preset.name), d, **kw)
