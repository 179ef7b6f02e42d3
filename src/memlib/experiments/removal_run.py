"""Removing the most memorised points (SSLMem paper §4.4, Fig. 3, 6, 7, Table 14).

In the paper, an encoder f and a reference encoder g train on disjoint halves of a training pool (25k points
each for CIFAR-10); SSLMem scores f's half with g as the reference; then the top-k most memorised points, or as
a control k random points, are removed from f's half, f is retrained from scratch on what is left, and the
retrained encoders are linear-probed on the training distribution and on data sets they never saw. The claim
(S19): removing memorised points harms downstream accuracy more than removing random ones.

Here f's half is ranked by chapter 01's in/out design instead of one f and g
(:mod:`~memlib.experiments.removal_evidence`), whose ranking is the more reliable at equal compute; the
downstream sets are Fashion-MNIST (Fashion-MNIST test), ``mnist5k`` and the 8×8 scikit-learn ``digits``, resized
to the encoder's input size. This module holds the selection rule, the settings, the run's analysis
(:class:`RemovalRun`) and its compute step; the evidence store and the registered experiment are in
:mod:`~memlib.experiments.removal_evidence`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar

import numpy as np
import pandas as pd
from scipy import stats as st

from ..data.datasets import load_dataset
from ..probing import beats_floor, random_floor, untrained_encoder
from ..probing.dense import segment_encoder
from ..stats import mean_ci, split_half_reliability
from ..verdicts import (
    INCONCLUSIVE,
    MIN_RELIABILITY,
    decide,
    mean_evidence,
    parts_count,
    parts_status,
    preset_status,
    standardised_sesoi,
)
from .artifacts import REMOVAL
from .claims import Claim, claims_table
from .context import RunContext
from .inputs import DOWNSTREAM
from .presets import Preset
from .probes import probe_all
from .settings import Settings
from .validate import check_run_folders

# fmt: off
#: Removal settings per preset. Training settings are the preset's, shared with the in/out design whose ranking
#: picks the removed points (:mod:`~memlib.experiments.subset_study`), so the retrains follow its recipe.
#: ``half`` = points of the pool f trains on (the pool's first ``half``, at most the pool); ``fractions`` = k as
#: fractions of the half (the paper: 500…16k of 25k = 2 %…64 %); ``seeds`` = retraining seeds per (k, how).
REMOVAL_SETTINGS: dict[str, dict] = {
    "smoke": {"half": 24, "fractions": (0.25,), "seeds": (0,), "rank_encoders": 8, "downstream_train": 256,
              "downstream_test": 128},
    # 2 cores: 150 points per encoder at chapter 01's 400 epochs, ranked by the first 48 in/out encoders of
    # chapter 01 (fixed here, so the retrains stay valid when chapter 01's design grows);
    # 2 fractions × 4 seeds = 8 retrained pairs (16 retrains and one encoder on the whole half, about 25 min on
    # one core). Planned n, declared before the run: 41 pairs (d = 0.5 at α = 0.05/4, 80 % power). Topped up
    # toward it by whole seeds as compute allows (the stopping point set by the session's spare core, not by
    # the results): seeds 0–3 (8 pairs, 2026-12-04 afternoon), then 0–9 (20 pairs, 2026-12-04 evening), then
    # 0–20 (42 pairs, the planned n, 2026-12-04 night).
    "cpu": {"half": 150, "fractions": (0.08, 0.32), "seeds": tuple(range(21)), "rank_encoders": 48, "probe_train": 2000,
            "probe_test": 1000, "probe_epochs": 100, "downstream_train": None, "downstream_test": None},
    "gpu": {"half": 5000, "fractions": (0.02, 0.04, 0.08, 0.16, 0.32, 0.64), "seeds": (0, 1, 2),
            "rank_encoders": 32, "downstream_train": None, "downstream_test": None},
    "paper": {"half": 5000, "fractions": (0.02, 0.04, 0.08, 0.16, 0.32, 0.64), "seeds": (0, 1, 2),
              "rank_encoders": 32, "downstream_train": None, "downstream_test": None},
}
#: Retrained pairs that S19 and S20 need (d = 0.5, one-sided, α = 0.05 / 4 tasks, 80 % power).
PLANNED_PAIRS = 41
#: The dense probe's column in :attr:`RemovalRun.results` and :attr:`RemovalRun.floor` (S20's stand-in).
SEGMENTATION = "segmentation"
# fmt: on


def select_removal(scores, k: int, how: str = "top", seed: int = 0) -> np.ndarray:
    """Positions (into ``scores``) of the ``k`` points to remove.

    Parameters
    ----------
    scores
        Memorisation score of each point of the pool, shape (N,).
    k
        How many points to remove, ``0 ≤ k ≤ N``.
    how
        ``"top"``: the k highest scores (ties broken by position, stably);
        ``"random"``: k positions drawn without replacement.
    seed
        Seeds the random draw (ignored for ``"top"``).

    Returns
    -------
    numpy.ndarray
        Sorted int64 positions, all distinct, within ``[0, N)``.
    """
    scores = np.asarray(scores, dtype=np.float64)
    if scores.ndim != 1:
        raise ValueError(f"scores must be 1-D (one score per point), got shape {scores.shape}")
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or not 0 <= k <= len(scores):
        raise ValueError(f"k={k!r} must be an int in [0, {len(scores)}] (the number of scored points)")
    if how == "top":
        idx = np.argsort(-scores, kind="stable")[:k]
    elif how == "random":
        idx = np.random.default_rng(seed).choice(len(scores), size=int(k), replace=False)
    else:
        raise ValueError(f"how={how!r} is unknown; choose 'top' or 'random'")
    return np.sort(idx).astype(np.int64)


@dataclass
class RemovalRun:
    """Everything one removal experiment produced (see :func:`run_removal`).

    Attributes
    ----------
    scores
        SSLMem score of each point of f's half (normalised over the half).
    results
        One row per retrained encoder: ``k``, ``fraction``, ``how``
        (``"top"``, ``"random"``, or ``"none"`` for f itself), ``seed``, and
        the linear-probe accuracy on each downstream set.
    """

    preset: Preset
    settings: dict
    seed: int
    f_indices: np.ndarray
    g_indices: np.ndarray
    scores: np.ndarray
    raw: np.ndarray
    results: pd.DataFrame
    provenance: dict
    run_dir: Path
    timings: dict = field(default_factory=dict)
    #: Raw score of each point of f's half per encoder pair (f_i, g_i), shape (pairs, N).
    pair_raw: np.ndarray | None = None
    #: Linear-probe accuracy of untrained encoders of the same architecture, one row per seed and a column per
    #: downstream set (the random floor).
    floor: pd.DataFrame = field(default_factory=pd.DataFrame)
    #: Split-half ρ of the ranking that picked the removed points, when it comes from elsewhere (the in/out
    #: design's two halves of encoders, over f's half); ``None``: from ``pair_raw``.
    rank_reliability: float | None = None
    #: The evidence store the run was read from, and its encoders' keys (``None`` for a run built by hand).
    store: object = None
    encoder_keys: list = field(default_factory=list)

    def floor_check(self, task: str | None = None) -> dict:
        """Whether the trained encoders (f and every retrained one) score better on ``task`` (default: the probe
        on the training data set) than untrained encoders of the same architecture
        (:func:`~memlib.probing.floor.beats_floor`); empty without a floor."""
        ds = task or self.preset.dataset
        if ds not in self.floor or ds not in self.results or len(self.floor) < 2 or len(self.results) < 2:
            return {}
        return beats_floor(self.results[ds], self.floor[ds])

    def reliability(self) -> float:
        """Split-half ρ of the ranking that picks the removed points: :attr:`rank_reliability` when given, else
        that of ``pair_raw``'s pairs (NaN with one encoder pair)."""
        if self.rank_reliability is not None:
            return float(self.rank_reliability)
        if self.pair_raw is None or self.pair_raw.shape[0] < 2:
            return float("nan")
        return split_half_reliability(self.pair_raw, seed=self.seed)

    @property
    def datasets(self) -> list[str]:
        """The downstream sets probed (the training data set first, then the unseen ones)."""
        return [self.preset.dataset] + [d for d in DOWNSTREAM if d != self.preset.dataset]

    @property
    def tasks(self) -> list[str]:
        """The run's downstream scores, the linear probe per set and then ``segmentation`` (the dense probe's
        mIoU, :mod:`memlib.probing.dense`) when it was measured."""
        return self.datasets + [SEGMENTATION] * (SEGMENTATION in self.results)

    def curves(self) -> pd.DataFrame:
        """Mean score and its 95 % CI per (task, how, k), for the plot (column ``dataset`` names the task)."""
        rows = []
        long = self.results.melt(
            id_vars=["k", "fraction", "how", "seed"], value_vars=self.tasks, var_name="dataset", value_name="acc"
        )
        for (ds, how, k), g in long.groupby(["dataset", "how", "k"]):
            m, lo, hi = mean_ci(g.acc.to_numpy())
            rows.append(
                {
                    "dataset": ds,
                    "how": how,
                    "k": k,
                    "fraction": g.fraction.iloc[0],
                    "mean": m,
                    "ci95 low": lo,
                    "ci95 high": hi,
                    "n": len(g),
                }
            )
        return pd.DataFrame(rows)

    def tests(self) -> pd.DataFrame:
        """One-sided paired t-test per (task, k) of H0: score(random removal) ≤ score(top removal).

        Pairs share the retraining seed. With one seed the test is undefined (NaN).
        """
        rows = []
        r = self.results
        for ds in self.tasks:
            for k in sorted(r.loc[r.how == "top", "k"].unique()):
                top = r[(r.how == "top") & (r.k == k)].set_index("seed")[ds]
                rnd = r[(r.how == "random") & (r.k == k)].set_index("seed")[ds].reindex(top.index)
                diff = (rnd - top).to_numpy()
                if len(diff) > 1 and np.ptp(diff) > 0:
                    t = st.ttest_rel(rnd.to_numpy(), top.to_numpy(), alternative="greater")
                    tt, p = float(t.statistic), float(t.pvalue)
                else:
                    tt = p = float("nan")
                rows.append(
                    {
                        "dataset": ds,
                        "k": int(k),
                        "fraction": float(k / len(self.f_indices)),
                        "acc top": top.mean(),
                        "acc random": rnd.mean(),
                        "random − top": diff.mean(),
                        "n seeds": len(diff),
                        "t": tt,
                        "p": p,
                    }
                )
        return pd.DataFrame(rows)

    def claims(self, alpha: float = 0.05) -> pd.DataFrame:
        """Verdicts on S19–S21, by :mod:`memlib.verdicts`.

        The unit is the retrained pair (top and random removal from the same retraining seed, at one k). Each
        task is tested on the paired differences score(random) − score(top) over all k and seeds, one-sided in
        both directions and against its SESOI (d = 0.5 over retrained pairs: the paper's gaps have no
        counterpart at this scale), Holm over every task of the chapter (its whole family).

        - S19: each downstream set's linear probe is a declared part ("also on data the encoder never saw"); a
          refuted set refutes the claim.
        - S20: the dense probe's mIoU (:mod:`memlib.probing.dense`, object masks of the training data set: a
          stand-in for the paper's segmentation) when measured, else not attempted.
        - S21 (depth) needs depth labels that no data set available here has.

        The removed points come from a ranking; when its split-half ρ (:meth:`reliability`) is below
        :data:`~memlib.verdicts.MIN_RELIABILITY`, or unknown (one encoder pair), S19 and S20 are inconclusive
        whatever the tests say, as is a task whose trained encoders do not beat untrained ones. A preset that
        is not ``meaningful`` decides nothing.
        """
        r = self.results
        top = r[r.how == "top"].set_index(["k", "seed"]).sort_index()
        rnd = r[r.how == "random"].set_index(["k", "seed"]).reindex(top.index)
        diffs = {ds: (rnd[ds] - top[ds]).to_numpy() for ds in self.tasks}
        why = "the paper's gap has no counterpart at this scale"
        ver = decide(
            {ds: mean_evidence(d, sesoi=standardised_sesoi(d, why=why)) for ds, d in diffs.items()}, alpha=alpha
        )

        def part(ds: str) -> str:
            d, v = diffs[ds], ver[ds]
            return (
                f"{ds}: random − top {d.mean():+.4f} (n = {len(d)}; "
                f"{'no SESOI: no spread' if v.sesoi is None else f'SESOI {v.sesoi.value:.4f}'}), Holm p = {v.p:.2g}"
                + ("" if v.p_smaller is None else f", smaller than the SESOI p = {v.p_smaller:.2g}")
                + ("" if v.power is None else f", power {v.power:.0%} for the SESOI")
                + f": {v.status}"
            )

        def gated(status: str, parts: list[str], floor_task: str) -> tuple[str, list[str]]:
            fc = self.floor_check(floor_task)
            if fc and not fc["informative"]:
                parts.insert(
                    0,
                    f"uninformative: the encoders' {floor_task} score ({fc['mean_trained']:.3f}) does not beat "
                    f"untrained ones ({fc['mean_floor']:.3f}, p = {fc['p']:.2g}); the tests alone: {status}",
                )
                status = INCONCLUSIVE
            rho = self.reliability()
            if not rho >= MIN_RELIABILITY:
                why = "one encoder pair: unknown" if np.isnan(rho) else f"{rho:.2f} < {MIN_RELIABILITY}"
                parts.insert(
                    0,
                    f"ranking of the removed points unreliable (split-half ρ {why}), so inconclusive; "
                    f"the tests alone: {status}",
                )
                status = INCONCLUSIVE
            else:
                parts.insert(0, f"ranking split-half ρ = {rho:.2f}")
            return status, parts

        statuses = [ver[ds].status for ds in self.datasets]
        s19, p19 = gated(parts_status(statuses), [parts_count(statuses)] + [part(ds) for ds in self.datasets],
                         self.preset.dataset)  # fmt: skip
        test = "one-sided paired t-test, against 0 and a SESOI of d = 0.5, Holm over the chapter's tasks"
        unit = "retrained encoder pair (top vs random, same seed)"
        recs = [Claim("S19", preset_status(self.preset, s19), "; ".join(p19), f"{test} (a part per downstream set)",
                      unit, len(top))]  # fmt: skip
        if SEGMENTATION in self.results:
            s20, p20 = gated(ver[SEGMENTATION].status, [part(SEGMENTATION)], SEGMENTATION)
            p20.append("stand-in: per-pixel object masks of single-object images, not the paper's ADE20K")
            recs.append(Claim("S20", preset_status(self.preset, s20), "; ".join(p20), f"{test} (mIoU)", unit,
                              len(top)))  # fmt: skip
        else:
            recs.append(Claim("S20", "not attempted (no dense probe in this run)", "—"))
        recs.append(Claim("S21", "not attempted (no depth labels available offline)", "—"))
        return claims_table(recs)


@dataclass(frozen=True)
class RemovalSettings(Settings):
    """The removal experiment's own settings (see :data:`REMOVAL_SETTINGS`)."""

    TABLE: ClassVar[dict[str, dict]] = REMOVAL_SETTINGS

    half: int
    fractions: tuple[float, ...]
    seeds: tuple[int, ...]
    rank_encoders: int = 8
    segmentation_epochs: int = 30
    mask_threshold: float = 0.2
    downstream_train: int | None = None
    downstream_test: int | None = None

    def __post_init__(self):
        if isinstance(self.half, bool) or not isinstance(self.half, int) or self.half < 2:
            raise ValueError(f"half={self.half!r} must be an int ≥ 2 (points in each half of the pool)")
        fr = tuple(self.fractions)
        if not fr or not all(0 < f < 1 for f in fr):
            raise ValueError(f"fractions={fr!r} must be a non-empty list of numbers in (0, 1), e.g. (0.08, 0.32)")
        if not self.seeds:
            raise ValueError("seeds=() is empty; give at least one retraining seed, e.g. (0, 1)")
        self._set("fractions", fr)
        self._set("seeds", tuple(int(x) for x in self.seeds))


def run_removal(
    preset="smoke",
    *,
    device="cpu",
    seed=0,
    store=None,
    train=True,
    cache_dir=None,
    data_root=None,
    progress=True,
    **overrides,
) -> RemovalRun:
    """Run the removal experiment of the paper's §4.4 at a preset, on the evidence store.

    The registered experiment ``"removal"`` (:mod:`~memlib.experiments.removal_evidence`): settings come from
    :data:`REMOVAL_SETTINGS` at ``preset`` and from ``overrides`` (``half``, ``fractions``, ``seeds``,
    ``downstream_train``, ``downstream_test`` or a Preset field; ``None`` is ignored). The removed points are
    ranked by the in/out design of ``seed`` (:mod:`~memlib.experiments.subset_study`); what the store lacks is
    computed first (only with ``train=True``). Folders are checked before any data are loaded.
    """
    from .registry import run_experiment

    check_run_folders(cache_dir, data_root)
    return run_experiment("removal", preset, device=device, seed=seed, store=store, train=train,
                          cache_dir=cache_dir, data_root=data_root, progress=progress, **overrides)  # fmt: skip


def compute_removal(d, *, device="cpu", cache_dir=None, data_root=None, progress=True) -> RemovalRun:
    """Train and probe design ``d``'s encoders (a bound :class:`~memlib.experiments.removal_evidence.RemovalDesign`:
    its ranking read from the store): f on the whole half, each top-k and random-k retrain, and untrained encoders
    of the same architecture (the random floor), each linear-probed on every downstream set."""
    p, s = d.preset, d.settings
    ctx = RunContext.start(REMOVAL, p, device, d.seed, {"settings": s.to_dict(), "design": d.name}, cache_dir,
                           data_root, progress, splits=False)  # fmt: skip
    train_set = load_dataset(p.dataset, "train", root=data_root)
    sets = d.probe_sets(train_set, data_root)
    named = d.named_specs()
    fitted = ctx.fit(list(named.values()), train_set, labels=list(named))
    seg_tr, seg_te = sets[p.dataset]

    def segment(encoder) -> float:
        return segment_encoder(encoder, seg_tr, seg_te, epochs=s["segmentation_epochs"], seed=d.seed,
                               device=ctx.device, threshold=s["mask_threshold"])["test_miou"]  # fmt: skip

    rows = []
    for (how, k, rs), fit in zip(d.jobs().values(), fitted):
        acc = probe_all(fit.encoder, sets, p.probe_epochs, d.seed, ctx.device)
        rows.append({"k": k, "fraction": k / s["half"], "how": how, "seed": rs, **acc,
                     SEGMENTATION: segment(fit.encoder)})  # fmt: skip
    floor = pd.DataFrame(
        {
            **{name: random_floor(p.arch, tr, te, seeds=d.floor_seeds, probe_epochs=p.probe_epochs, device=ctx.device,
                                  stats_set=train_set)["linear_acc"].to_numpy()
               for name, (tr, te) in sets.items()},
            SEGMENTATION: [segment(untrained_encoder(p.arch, train_set.images, x, ctx.device)) for x in d.floor_seeds],
        },
        index=pd.Index(d.floor_seeds, name="seed"),
    )  # fmt: skip
    prov = ctx.provenance({**p.to_dict(), **s.to_dict()})
    return RemovalRun(p, s, d.seed, d.half_ids, d.rest_ids, d.scores, d.raw, pd.DataFrame(rows), prov, ctx.run_dir,
                      {"total_s": ctx.elapsed()}, floor=floor, rank_reliability=d.rank_reliability)  # fmt: skip
