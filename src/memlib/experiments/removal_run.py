"""Removing the most memorised points (SSLMem paper §4.4, Fig. 3, 6, 7, Table 14).

An encoder f and a reference encoder g train on disjoint halves of a training
pool (25k points each for CIFAR-10 in the paper). SSLMem scores f's half with g
as the reference; then the top-k most memorised points, or as a control k
random points, are removed from f's half, f is retrained from scratch on what
is left, and the retrained encoders are linear-probed on the training
distribution (Fashion-MNIST test) and on two data sets they never saw
(``mnist5k`` and the 8×8 scikit-learn ``digits``, resized to the encoder's
input size). The claim (S19): removing memorised points harms downstream
accuracy more than removing random ones.

Every encoder is trained through the shared loop :func:`~memlib.training.loop.train`
with a checkpoint keyed by its :class:`~memlib.experiments.encoders.EncoderSpec`,
so a re-run, or another experiment with the same configuration, reuses it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar

import numpy as np
import pandas as pd
from scipy import stats as st

from ..data.augment import build_augmentation
from ..data.datasets import load_dataset
from ..memorization.sslmem import sslmem
from ..probing import beats_floor, random_floor
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
from .encoders import EncoderSpec, model_seed
from .inputs import DOWNSTREAM, downstream_sets, probe_rng, probe_sets
from .presets import Preset
from .probes import probe_all
from .settings import Settings

# fmt: off
#: Removal settings per preset (training settings come from the SSLMem preset of the same name).
#: ``half`` = size of f's (and g's) half of the pool; ``fractions`` = k as fractions of the half
#: (the paper: 500…16k of 25k = 2 %…64 %); ``seeds`` = retraining seeds per (k, how).
REMOVAL_SETTINGS: dict[str, dict] = {
    "smoke": {"half": 48, "fractions": (0.25,), "seeds": (0,), "epochs": 2, "batch_size": 16,
              "downstream_train": 256, "downstream_test": 128},
    # 2 cores, about 30 min: 150 points per encoder at chapter 01's 400 epochs; 2 f and 2 g encoders, so the
    # ranking that picks the removed points has a split-half reliability; 2 fractions × 2 ways × 2 seeds = 8
    # retrains.
    "cpu": {"half": 150, "fractions": (0.08, 0.32), "seeds": (0, 1), "epochs": 400, "batch_size": 50,
            "models_per_family": 2, "null_models": 0, "probe_train": 2000, "probe_test": 1000, "probe_epochs": 100,
            "downstream_train": None, "downstream_test": None},
    "gpu": {"half": 25000, "fractions": (0.02, 0.04, 0.08, 0.16, 0.32, 0.64), "seeds": (0, 1, 2),
            "downstream_train": None, "downstream_test": None},
    "paper": {"half": 25000, "fractions": (0.02, 0.04, 0.08, 0.16, 0.32, 0.64), "seeds": (0, 1, 2),
              "downstream_train": None, "downstream_test": None},
}
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

    def floor_check(self) -> dict:
        """Whether the trained encoders (f and every retrained one) probe better on the training data set than
        untrained encoders of the same architecture (:func:`~memlib.probing.floor.beats_floor`); empty without
        a floor."""
        ds = self.preset.dataset
        if ds not in self.floor or len(self.floor) < 2 or len(self.results) < 2:
            return {}
        return beats_floor(self.results[ds], self.floor[ds])

    def reliability(self) -> float:
        """Split-half Spearman ρ of the ranking that picks the removed points (NaN with one encoder pair)."""
        if self.pair_raw is None or self.pair_raw.shape[0] < 2:
            return float("nan")
        return split_half_reliability(self.pair_raw, seed=self.seed)

    @property
    def datasets(self) -> list[str]:
        """The downstream sets probed (the training data set first, then the unseen ones)."""
        return [self.preset.dataset] + [d for d in DOWNSTREAM if d != self.preset.dataset]

    def curves(self) -> pd.DataFrame:
        """Mean accuracy and its 95 % CI per (dataset, how, k), for the plot."""
        rows = []
        long = self.results.melt(
            id_vars=["k", "fraction", "how", "seed"], value_vars=self.datasets, var_name="dataset", value_name="acc"
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
        """One-sided paired t-test per (dataset, k) of H0: acc(random removal) ≤ acc(top removal).

        Pairs share the retraining seed. With one seed the test is undefined (NaN).
        """
        rows = []
        r = self.results
        for ds in self.datasets:
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

        S19's unit is the retrained pair (top and random removal from the same retraining seed, at one k).
        Each downstream set is a declared part ("also on data the encoder never saw"): per set, the paired
        differences acc(random) − acc(top) over all k and seeds are tested one-sided in both directions and
        against the part's SESOI (d = 0.5 over retrained pairs: the paper's accuracy gap has no counterpart at
        this scale), Holm over the sets (the chapter's whole family: S20 and S21 are not attempted). A refuted
        set refutes the claim. The removed points come from a ranking; when its split-half reliability
        (:meth:`reliability`) is below :data:`~memlib.verdicts.MIN_RELIABILITY`, or unknown (one encoder
        pair), S19 is inconclusive whatever the tests say. S20 (segmentation) and S21 (depth) need dense
        labels that no data set available here has. A preset that is not ``meaningful`` decides nothing.
        """
        r = self.results
        top = r[r.how == "top"].set_index(["k", "seed"]).sort_index()
        rnd = r[r.how == "random"].set_index(["k", "seed"]).reindex(top.index)
        diffs = {ds: (rnd[ds] - top[ds]).to_numpy() for ds in self.datasets}
        why = "the paper's accuracy gap has no counterpart at this scale"
        ver = decide(
            {ds: mean_evidence(d, sesoi=standardised_sesoi(d, why=why)) for ds, d in diffs.items()}, alpha=alpha
        )
        verdicts = list(ver.values())
        parts = [
            f"{ds}: random − top {d.mean():+.4f} (n = {len(d)}; "
            f"{'no SESOI: no spread' if v.sesoi is None else f'SESOI {v.sesoi.value:.4f}'}), Holm p = {v.p:.2g}"
            + ("" if v.p_smaller is None else f", smaller than the SESOI p = {v.p_smaller:.2g}")
            + ("" if v.power is None else f", power {v.power:.0%} for the SESOI")
            + f": {v.status}"
            for (ds, d), v in zip(diffs.items(), verdicts)
        ]
        parts.insert(0, parts_count([v.status for v in verdicts]))
        status = parts_status([v.status for v in verdicts])
        fc = self.floor_check()
        if fc and not fc["informative"]:
            parts.insert(
                0,
                f"uninformative: the encoders' probe on {self.preset.dataset} "
                f"({fc['mean_trained']:.3f}) does not beat untrained ones ({fc['mean_floor']:.3f}, "
                f"p = {fc['p']:.2g}); the tests alone: {status}",
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
        na = "not attempted (no segmentation / depth labels available offline)"
        return claims_table(
            [
                Claim(
                    "S19",
                    preset_status(self.preset, status),
                    "; ".join(parts),
                    "one-sided paired t-test per downstream set (parts), against 0 and a SESOI of d = 0.5, Holm",
                    "retrained encoder pair (top vs random, same seed)",
                    len(top),
                ),
                Claim("S20", na, "—"),
                Claim("S21", na, "—"),
            ]
        )


@dataclass(frozen=True)
class RemovalSettings(Settings):
    """The removal experiment's own settings (see :data:`REMOVAL_SETTINGS`)."""

    TABLE: ClassVar[dict[str, dict]] = REMOVAL_SETTINGS

    half: int
    fractions: tuple[float, ...]
    seeds: tuple[int, ...]
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


#: The training preset and removal settings for a preset, with overrides (None ignored).
removal_settings = RemovalSettings.for_preset


def run_removal(
    preset="smoke", *, device="cpu", seed=0, cache_dir=None, data_root=None, progress=True, **overrides
) -> RemovalRun:
    """Run the removal experiment of the paper's §4.4 at a preset.

    Settings come from :data:`REMOVAL_SETTINGS` at ``preset`` and from ``overrides`` (``half``, ``fractions``,
    ``seeds``, ``downstream_train``, ``downstream_test`` or a Preset field; ``None`` is ignored). ``seed``
    draws the pool and seeds f, g and the scoring views. The remaining arguments are those of
    :meth:`~memlib.experiments.context.RunContext.start`. Returns a :class:`RemovalRun`.
    """
    p, s = removal_settings(preset, **overrides)
    ctx = RunContext.start(
        REMOVAL, p, device, seed, {"settings": s.to_dict()}, cache_dir, data_root, progress, splits=False
    )
    dev, half = ctx.device, s["half"]
    train_set = load_dataset(p.dataset, "train", root=data_root)
    if 2 * half > len(train_set):
        raise ValueError(f"half={half} needs 2·half ≤ {len(train_set)} training images of {p.dataset}")
    pool = np.random.default_rng(seed).permutation(len(train_set))[: 2 * half]
    f_idx, g_idx = np.sort(pool[:half]), np.sort(pool[half:])

    # f and g families on the disjoint halves, then SSLMem of f's half.
    specs = [
        EncoderSpec.from_preset(p, idx, model_seed(seed, fam, i))
        for fam, idx in (("f", f_idx), ("g", g_idx))
        for i in range(p.models_per_family)
    ]
    fitted = ctx.fit(specs, train_set, labels=[f"{fam}{i}" for fam in "fg" for i in range(p.models_per_family)])
    fs = [f.encoder for f in fitted[: p.models_per_family]]
    gs = [f.encoder for f in fitted[p.models_per_family :]]
    aug = build_augmentation(p.augmentation, train_set.image_size)
    res = sslmem(fs, gs, train_set.images[f_idx], aug, ids=f_idx, **ctx.scoring(p))
    t_score = ctx.elapsed()

    sets = downstream_sets(
        train_set.channels,
        train_set.image_size,
        s["downstream_train"],
        s["downstream_test"],
        seed,
        data_root,
        names=[d for d in DOWNSTREAM if d != p.dataset],
    )
    # The Fashion-MNIST probe uses the preset's probe sizes (train split for the probe, test split to score).
    test_set = load_dataset(p.dataset, "test", root=data_root)
    sets[p.dataset] = probe_sets(p, train_set, test_set, probe_rng(seed))

    rows = [{"k": 0, "fraction": 0.0, "how": "none", "seed": seed, **probe_all(fs[0], sets, p.probe_epochs, seed, dev)}]
    jobs = [(frac, how, rs) for frac in s["fractions"] for rs in s["seeds"] for how in ("top", "random")]
    retrain = []
    for frac, how, rs in jobs:
        k = max(1, round(frac * half))
        keep = np.delete(f_idx, select_removal(res.score, k, how, seed=seed * 1000 + rs))
        # The retraining seed is shared by top and random removal, so their accuracies pair up.
        retrain.append(EncoderSpec.from_preset(p, keep, seed * 1000 + 500 + rs))
    labels = [f"{how} k={max(1, round(frac * half))} s{rs}" for frac, how, rs in jobs]
    for (frac, how, rs), fit in zip(jobs, ctx.fit(retrain, train_set, labels=labels)):
        rows.append(
            {
                "k": max(1, round(frac * half)),
                "fraction": frac,
                "how": how,
                "seed": rs,
                **probe_all(fit.encoder, sets, p.probe_epochs, seed, dev),
            }
        )
    results = pd.DataFrame(rows)
    # The random floor: untrained encoders of the same architecture on every downstream set.
    floor_seeds = [seed * 1000 + 900 + i for i in range(3)]
    floor = pd.DataFrame(
        {
            name: random_floor(p.arch, tr, te, seeds=floor_seeds, probe_epochs=p.probe_epochs, device=dev,
                               stats_set=train_set)["linear_acc"].to_numpy()
            for name, (tr, te) in sets.items()
        },
        index=pd.Index(floor_seeds, name="seed"),
    )  # fmt: skip
    prov = ctx.provenance({**p.to_dict(), **s.to_dict()})
    run = RemovalRun(
        p,
        s,
        seed,
        f_idx,
        g_idx,
        res.score,
        res.raw,
        results,
        prov,
        ctx.run_dir,
        {"score_s": t_score, "total_s": ctx.elapsed()},
        res.align_g_models[: min(len(fs), len(gs))] - res.align_f_models[: min(len(fs), len(gs))],
        floor,
    )
    ctx.save(
        tables={
            "results": results,
            "scores": pd.DataFrame({"index": f_idx, "raw": res.raw, "score": res.score}),
            "random_floor": floor.reset_index(),
        },
        jsons={"provenance": prov},
    )
    return run
