"""Chapter 01's study: SSLMem over several splits, with the encoder pair as the unit of evidence.

One :class:`~memlib.experiments.sslmem_experiment.SSLMemRun` is one split
(seed) with its f, g and null (f′) families. :func:`run_sslmem_study` runs one
per seed in :class:`StudySettings` ``seeds``, a paired-seed variant (g_i from
f_i's seed) and a scaling sweep (training-set size against epochs at fixed
compute), training every encoder the study needs before scoring any, so the
worker pool never waits for a probe. :class:`SSLMemStudy` turns the runs into
one row per encoder pair and decides claims S1–S9, S11 and S12 with
:mod:`memlib.verdicts` over pairs (never over points).

Scores of one pair
    ``raw``: g_i's alignment loss minus f_i's, per point (the paper's score for one pair);
    ``normalised``: raw divided by its range over the pair's scored points (the paper's normalisation,
    applied to each pair); ``calibrated``: raw minus the pair's mean on S_E, the points neither family
    trained on, so a pair's chance offset does not count.
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass, field
from typing import ClassVar

import numpy as np
import pandas as pd
from scipy import stats as st
from statsmodels.stats.power import TTestPower

from ..data.splits import SUBSET_LABELS, SUBSETS
from ..evidence import EvidenceStore, open_store
from ..probing import beats_floor
from ..provenance import provenance
from ..stats import largest_step, null_distribution, significant_points, split_half_reliability
from ..verdicts import (
    INCONCLUSIVE,
    MIN_POWER,
    MIN_RELIABILITY,
    Evidence,
    Sesoi,
    Verdict,
    decide,
    equivalence_evidence,
    mean_evidence,
    mixed_effect,
    parts_count,
    parts_status,
    plan_n,
    preset_status,
)
from .claims import Claim, claims_table
from .presets import Preset
from .registry import Experiment, check_parameters, register_experiment
from .settings import Settings
from .sslmem_evidence import fill_run, missing, run_design, stored_sslmem_run
from .sslmem_experiment import SSLMemRun, run_sslmem

#: The paper's mean normalised score per subset, from its §4.2 and Fig. 2c (MAE, ViT-tiny, CIFAR-10, 5,000
#: points per subset).
PAPER_MEANS = {"candidate": 0.30723, "shared": -0.00136, "extra": 0.09958, "independent": -0.31182}

# fmt: off
STUDY_SETTINGS = {
    "smoke": {"seeds": (0, 1), "paired": (0,), "paired_pairs": 2, "scaling": ((48, 16, 3),), "scaling_models": 1},
    # 2 cores: 3 splits × (3 f + 3 g + 2 f′) = 24 encoders, 3 paired g's, and 2 × 4 scaling encoders, each at
    # the compute of one main encoder (1,200 steps of batch 50; size × epochs = 60,000 = 150 × 400): 35
    # encoders of about 4.5 min on one core, 80 minutes on two.
    # The paired-seed measurement: 8 pairs each way on split 0 (f shared by both designs: 8 f, 8 g, 8 paired g).
    "cpu": {"seeds": (0, 1, 2), "paired": (0,), "paired_pairs": 8, "scaling": ((42, 8, 1200), (1000, 200, 50)),
            "scaling_models": 2},
    "gpu": {"seeds": (0, 1, 2), "paired": (), "scaling": ()},
    "paper": {"seeds": (0, 1, 2), "paired": (), "scaling": ()},
}
# fmt: on


@dataclass(frozen=True)
class StudySettings(Settings):
    """What :func:`run_sslmem_study` runs besides the preset's SSLMem runs.

    Attributes
    ----------
    seeds
        One split (and its f, g, f′ families) per seed; claims S1–S8 need at least 3 at a meaningful preset.
    paired
        Seeds whose split is also run with paired seeds (g_i from f_i's seed) to measure the pair spread.
    paired_pairs
        Pairs each way in the paired-seed measurement (0: compare the paired variant with the split's own
        pairs): the split is run with this many pairs per family with independent and with paired seeds.
    scaling
        (shared, candidate, epochs) per point of the scaling figure, run at the first seed.
    scaling_models
        Encoders per family at each scaling point.
    reliability_threshold
        Split-half Spearman ρ of the candidates' ranking below which every claim that uses a ranking
        (S9, S11) is inconclusive; declared here, before any run.
    margin
        TOST margin for S2 ("m(S_S) ≈ 0") at the paper's scale, in paper-normalised units; declared before any
        run (a sixth of the paper's S_C mean). The run uses it scaled by its own core effect
        (:meth:`SSLMemStudy.scale`).
    alpha
        Level of every test after Holm's correction over the chapter's tests.
    """

    TABLE: ClassVar[dict[str, dict]] = STUDY_SETTINGS

    seeds: tuple[int, ...]
    paired: tuple[int, ...] = ()
    paired_pairs: int = 0
    scaling: tuple[tuple[int, int, int], ...] = ()
    scaling_models: int = 2
    reliability_threshold: float = MIN_RELIABILITY
    margin: float = 0.05
    alpha: float = 0.05

    def __post_init__(self):
        seeds = tuple(int(s) for s in self.seeds)
        if not seeds or len(set(seeds)) != len(seeds):
            raise ValueError(f"seeds={self.seeds!r} must be distinct ints, e.g. (0, 1, 2): one split per seed")
        self._set("seeds", seeds)
        if not set(self.paired) <= set(seeds):
            raise ValueError(f"paired={self.paired!r} must be a subset of seeds={seeds!r}")
        for row in self.scaling:
            if len(row) != 3 or not all(isinstance(v, int) and v >= 1 for v in row):
                raise ValueError(f"scaling row {row!r} must be (shared, candidate, epochs), ints ≥ 1")
        if self.paired_pairs and self.paired_pairs < 2:
            raise ValueError(f"paired_pairs={self.paired_pairs!r} must be 0 or ≥ 2: a spread needs two pairs")
        if self.scaling_models < 1:
            raise ValueError(f"scaling_models={self.scaling_models!r} must be ≥ 1")
        if not 0 < self.reliability_threshold < 1:
            raise ValueError(f"reliability_threshold={self.reliability_threshold!r} must lie in (0, 1)")
        if not self.margin > 0:
            raise ValueError(f"margin={self.margin!r} must be > 0")


def pair_scores(run: SSLMemRun) -> dict[str, np.ndarray]:
    """Per encoder pair and point: ``raw``, ``normalised`` and ``calibrated`` scores (see the module docstring)."""
    raw = run.pair_scores("raw")
    span = np.ptp(raw, axis=1, keepdims=True)
    return {
        "raw": raw,
        "normalised": raw / np.where(span > 0, span, 1.0),
        "calibrated": run.pair_scores("calibrated"),
    }


@dataclass
class SSLMemStudy:
    """The runs of a study and the encoder-level analyses chapter 01 shows."""

    settings: StudySettings
    runs: list[SSLMemRun]  # one per split seed
    paired: list[SSLMemRun]  # the paired-seed variants (settings.paired)
    scaling_runs: list[SSLMemRun]  # settings.scaling, in order
    provenance: dict = field(default_factory=dict)  # of the analysis (commit, date, hardware, wall time)
    store: EvidenceStore | None = None  # the evidence store the runs were read from
    designs: list = field(default_factory=list)  # the RunDesign of each run, in order
    #: The independent-seed half of the paired-seed measurement (``paired_pairs``); empty: the split's own runs.
    paired_independent: list = field(default_factory=list)
    #: The in/out design adopted for per-point claims (:meth:`adopt_per_point`); ``None``: the pairs' rankings.
    per_point: object | None = None

    def adopt_per_point(self, sub, paper_reliability: float) -> bool:
        """Use the in/out study ``sub`` (:class:`~memlib.experiments.subset_study.SubsetStudy`) for S9 when its
        full-set ranking reliability exceeds ``paper_reliability`` (the rule declared in chapter 01 before the
        run); returns whether it was adopted."""
        adopted = bool(sub.rank_reliability()[0] > paper_reliability)
        self.per_point = sub if adopted else None
        return adopted

    @property
    def preset(self):
        return self.runs[0].preset

    def pair_table(self) -> pd.DataFrame:
        """One row per encoder pair (split × pair) and subset: mean raw, normalised and calibrated score."""
        return _pair_table(self.runs)

    def pair_means(self, kind: str = "normalised") -> pd.DataFrame:
        """Per encoder pair (rows: split, pair), the mean ``kind`` score of each subset (columns S_C, S_S, …)."""
        t = self.pair_table()
        return t.pivot_table(index=["split", "pair"], columns="subset", values=kind)[
            [SUBSET_LABELS[s] for s in SUBSETS]
        ]

    def encoder_keys(self) -> list[str]:
        """Every encoder key the study's runs read from the evidence store (each once, in order)."""
        return list(dict.fromkeys(k for d in self.designs for k in d.keys()))

    def n_pairs(self) -> int:
        return len(self.pair_means())

    # ----- the claims ---------------------------------------------------------------------------------------
    #: Claim → (effect, baseline, direction) on per-pair mean normalised scores; baseline None = against 0.
    CONTRASTS: ClassVar[dict[str, tuple[str, str | None, int]]] = {
        "S1": ("candidate", None, 1),
        "S3a": ("extra", None, 1),  # S3's part 2 (S_E below S_C) is S6's contrast
        "S4": ("independent", None, -1),
        "S5": ("candidate", "shared", 1),
        "S6": ("candidate", "extra", 1),
        "S7": ("shared", "independent", 1),
        "S8": ("extra", "independent", 1),
    }

    #: The fraction of the paper's effect (at this run's scale) below which an effect is of no interest.
    SESOI_FRACTION: ClassVar[float] = 0.5

    def scale(self) -> tuple[float, str]:
        """This run's core effect over the paper's: mean S_C − S_S over pairs (normalised) divided by the paper's
        (0.309); NaN when the run's core effect is not positive (then SESOIs are standardised instead)."""
        m = self.pair_means("normalised")
        core = float((m["S_C"] - m["S_S"]).mean()) if len(m) else float("nan")
        paper = PAPER_MEANS["candidate"] - PAPER_MEANS["shared"]
        k = core / paper if core > 0 else float("nan")
        return k, f"run S_C − S_S {core:+.3f} / paper {paper:.3f}"

    def _sesoi(self, paper_effect: float, sd: float) -> Sesoi | None:
        """A contrast's SESOI: half the paper's effect scaled by this run's core effect, or, when the run has no
        positive core effect, half a standard deviation over pairs (d = 0.5)."""
        k, why = self.scale()
        f = self.SESOI_FRACTION
        if np.isfinite(k) and paper_effect:
            return Sesoi(f * abs(paper_effect) * k, f"{f:g} × paper {abs(paper_effect):.3f} × scale {k:.2f} ({why})")
        if np.isfinite(sd) and sd > 0:
            return Sesoi(f * sd, f"d = {f:g} (no positive core effect to scale the paper's by)")
        return None

    def _contrast_rows(self) -> pd.DataFrame:
        """Each directional contrast of S1–S8 over encoder pairs, uncorrected: per-pair mean, spread, one-sided
        p-values in both directions and below the SESOI, the paper's effect (with the power this run had for it
        and the minimum detectable effect at 80 % power, both at the unadjusted α and shown only), and the mixed
        model's estimate on the points (pair as random intercept)."""
        m = self.pair_means("normalised")
        t = self.pair_table_points()
        rows = []
        for cid, (eff, base, sign) in self.CONTRASTS.items():
            x = m[SUBSET_LABELS[eff]] - (m[SUBSET_LABELS[base]] if base else 0.0)
            x = x.to_numpy(dtype=np.float64)
            paper = PAPER_MEANS[eff] - (PAPER_MEANS[base] if base else 0.0)
            n = len(x)
            sd = x.std(ddof=1) if n > 1 else float("nan")
            sesoi = self._sesoi(paper, sd)
            e = mean_evidence(x, direction=sign, sesoi=sesoi)
            if n > 1 and sd > 0:
                power = TTestPower().power(
                    effect_size=abs(paper) / sd, nobs=n, alpha=self.settings.alpha, alternative="larger"
                )
                mde = (
                    TTestPower().solve_power(nobs=n, alpha=self.settings.alpha, power=MIN_POWER, alternative="larger")
                    * sd
                )
            else:
                power = mde = float("nan")
            mixed = {"estimate": float("nan"), "p": float("nan")}
            if base is not None and t["group"].nunique() > 1:
                sub = t[t.subset.isin([eff, base])]
                mixed = mixed_effect(sub.normalised, sub.subset, sub.group, effect=eff, baseline=base)
            rows.append(
                {
                    "claim": cid,
                    "contrast": f"{SUBSET_LABELS[eff]} − {SUBSET_LABELS[base]}" if base else SUBSET_LABELS[eff],
                    "direction": "> 0" if sign > 0 else "< 0",
                    "pairs": n,
                    "mean": float(x.mean()),
                    "sd over pairs": float(sd),
                    "p": float(e.p),
                    "p opposite": float(e.p_opposite),
                    "p smaller": float(e.p_smaller) if e.p_smaller is not None else float("nan"),
                    "SESOI": sesoi.value if sesoi else float("nan"),
                    "SESOI reason": sesoi.reason if sesoi else "none: no spread over pairs",
                    "paper effect": paper,
                    "power for paper": float(power),
                    "MDE (80 %)": float(mde),
                    "mixed-model estimate": mixed["estimate"],
                    "mixed-model p (two-sided)": mixed["p"],
                    "evidence": e,
                }
            )
        return pd.DataFrame(rows).set_index("claim")

    def contrasts(self) -> pd.DataFrame:
        """``_contrast_rows`` with the p-values corrected over the chapter's whole family (Holm over every
        test of :meth:`verdicts`: the contrasts, S2, S9, S11 and S12) and the power for the SESOI at α/m."""
        df = self._contrast_rows().drop(columns="evidence")
        v = self.verdicts()
        df["p (Holm)"] = [v[c].p for c in df.index]
        df["p opposite (Holm)"] = [v[c].p_opposite for c in df.index]
        df["p smaller (Holm)"] = [np.nan if v[c].p_smaller is None else v[c].p_smaller for c in df.index]
        df["power for SESOI"] = [np.nan if v[c].power is None else v[c].power for c in df.index]
        return df

    def pair_table_points(self) -> pd.DataFrame:
        """Every pair's score of every point (long form): split, pair, group, subset, raw/normalised/calibrated."""
        return _points_table(self.runs)

    def shared_sesoi(self) -> Sesoi:
        """S2's margin at this run's scale: the declared paper-scale margin times :meth:`scale` (unscaled when
        the run has no positive core effect)."""
        k, why = self.scale()
        mg = self.settings.margin
        if np.isfinite(k):
            return Sesoi(mg * k, f"margin {mg:g} at the paper's scale × scale {k:.2f} ({why})")
        return Sesoi(mg, f"margin {mg:g} at the paper's scale (no positive core effect to scale it by)")

    def shared_equivalence(self) -> Verdict:
        """S2, "m(S_S) ≈ 0": TOST over pairs on the mean normalised S_S score, margin :meth:`shared_sesoi`;
        corrected over the chapter's family."""
        return self.verdicts()["S2"]

    def reliability(self) -> pd.DataFrame:
        """Split-half reliability of the candidates' ranking per split: Spearman ρ between the mean calibrated
        scores of two disjoint halves of the pairs (and the Spearman–Brown value for all pairs)."""
        rows = []
        for run in self.runs:
            sc = pair_scores(run)["calibrated"][:, run.subset == "candidate"]
            if sc.shape[0] < 2:
                rows.append({"split": run.seed, "pairs": sc.shape[0], "rho halves": float("nan")})
                continue
            rho = split_half_reliability(sc, seed=run.seed)
            rows.append({"split": run.seed, "pairs": sc.shape[0], "rho halves": rho})
        df = pd.DataFrame(rows).set_index("split")
        df["rho all pairs (Spearman–Brown)"] = 2 * df["rho halves"] / (1 + df["rho halves"])
        return df

    def ranking_reliable(self) -> bool:
        """Whether the mean split-half ρ reaches the declared threshold (needs ≥ 2 pairs per split)."""
        rho = self.reliability()["rho halves"]
        return bool(rho.notna().all() and rho.mean() >= self.settings.reliability_threshold)

    def per_pair_spectrum(self) -> pd.DataFrame:
        """Per encoder pair: Kendall τ between candidates' score and atypicality (S9), the share of f's loss
        range the top tenth spans (S11) and the largest step of the fraction above a threshold (S12), each of
        the last two also as a z-score against its null at the run's own n (``… z``): S11's against the top
        tenth of a random ranking of the same candidates, S12's against as many independent normal scores
        (a continuous spectrum)."""
        rows = []
        step_null: dict[int, np.ndarray] = {}
        for run in self.runs:
            c = run.subset == "candidate"
            sc = pair_scores(run)["normalised"][:, c]
            aty = run.atypicality()[c] if run.has_atypicality() else None
            r = run.result
            for i in range(sc.shape[0]):
                align_f = r.align_f_models[i, c]
                top = sc[i] >= np.quantile(sc[i], 0.9)
                span = np.ptp(align_f[top]) / np.ptp(align_f) if np.ptp(align_f) > 0 else float("nan")
                k, n_c = int(top.sum()), len(align_f)
                span_null = null_distribution(
                    lambda idx, a=align_f: np.ptp(a[idx]) / np.ptp(a) if np.ptp(a) > 0 else np.nan,
                    lambda rng, n_c=n_c, k=k: rng.choice(n_c, size=k, replace=False),
                    seed=run.seed * 1000 + i,
                )
                if n_c not in step_null:
                    step_null[n_c] = null_distribution(largest_step, lambda rng, n_c=n_c: rng.normal(size=n_c))
                step = largest_step(sc[i])
                rows.append(
                    {
                        "split": run.seed,
                        "pair": i,
                        "tau atypicality": float(st.kendalltau(sc[i], aty).statistic) if aty is not None else np.nan,
                        "top-10 % span": float(span),
                        "top-10 % span z": _z(span, span_null),
                        "largest step": step,
                        "largest step z": _z(step, step_null[n_c]),
                    }
                )
        return pd.DataFrame(rows).set_index(["split", "pair"])

    def null_table(self) -> pd.DataFrame:
        """Mean raw SSLMem per subset of the null family (f′ vs f: same data, other seeds) beside f vs g."""
        rows = []
        for run in self.runs:
            if run.null is None:
                continue
            for s in SUBSETS:
                m = run.subset == s
                rows.append(
                    {
                        "split": run.seed,
                        "subset": SUBSET_LABELS[s],
                        "f vs g": run.result.raw[m].mean(),
                        "f′ vs f (null)": run.null.raw[m].mean(),
                    }
                )
        return pd.DataFrame(rows)

    def significance(self, method: str = "fdr_bh") -> pd.DataFrame:
        """Per point, against the null family: each point's calibrated score (its split's mean raw score over
        pairs minus that mean on S_E) tested one-sided against the calibrated null scores (f′ vs f, minus their
        mean on S_E) of all the split's points, FDR-corrected. Calibrating both removes the families' offsets,
        so a point is significant only by beating seed noise point by point."""
        rows = []
        for run in self.runs:
            if run.null is None:
                continue
            e = run.subset == "extra"
            score = run.result.raw - run.result.raw[e].mean()
            null = run.null.raw - run.null.raw[e].mean()
            for s in ("candidate", "shared", "independent"):
                res = significant_points(score[run.subset == s], null, self.settings.alpha, method)
                rows.append(
                    {
                        "split": run.seed,
                        "subset": SUBSET_LABELS[s],
                        "n": len(res),
                        "significant": int(res.significant.sum()),
                    }
                )
        if not rows:
            return pd.DataFrame(columns=["n", "significant", "share"])
        df = pd.DataFrame(rows).groupby("subset", sort=False)[["n", "significant"]].sum()
        df["share"] = df.significant / df.n
        return df

    def paired_spread(self) -> pd.DataFrame:
        """Spread over pairs of the S_S offset (mean raw S_S score) and of S_C − S_S, independent vs paired seeds,
        on the splits run both ways."""
        rows = []
        for design, runs in (
            ("independent seeds", self.paired_independent or [r for r in self.runs if r.seed in self.settings.paired]),
            ("paired seeds", self.paired),
        ):
            if not runs:
                continue
            t = _pair_table(runs).pivot_table(index=["split", "pair"], columns="subset", values="raw")
            rows.append(
                {
                    "design": design,
                    "pairs": len(t),
                    "sd of S_S offset": float(t["S_S"].std(ddof=1)),
                    "sd of S_C − S_S": float((t["S_C"] - t["S_S"]).std(ddof=1)),
                    "mean S_C − S_S": float((t["S_C"] - t["S_S"]).mean()),
                }
            )
        df = pd.DataFrame(rows)
        return df.set_index("design") if len(df) else df

    def paired_variance_ratio(self, confidence: float = 0.95) -> pd.DataFrame:
        """Per contrast (S_C − S_S, S_C − S_E, S_C − S_I, raw), the variance over pairs with paired seeds divided by
        that with independent seeds, its F-distribution confidence interval and two-sided p (equal variances)."""
        designs = {
            "independent": self.paired_independent or [r for r in self.runs if r.seed in self.settings.paired],
            "paired": self.paired,
        }
        if not all(designs.values()):
            return pd.DataFrame()
        t = {
            k: _pair_table(v).pivot_table(index=["split", "pair"], columns="subset", values="raw")
            for k, v in designs.items()
        }
        rows = []
        for other in ("S_S", "S_E", "S_I"):
            xi, xp = (t[k]["S_C"] - t[k][other] for k in ("independent", "paired"))
            ni, npair = len(xi), len(xp)
            ratio = float(xp.var(ddof=1) / xi.var(ddof=1))
            a = (1 - confidence) / 2
            lo = ratio / st.f.ppf(1 - a, npair - 1, ni - 1)
            hi = ratio / st.f.ppf(a, npair - 1, ni - 1)
            cdf = st.f.cdf(ratio, npair - 1, ni - 1)
            rows.append(
                {
                    "contrast": f"S_C − {other}",
                    "pairs independent": ni,
                    "pairs paired": npair,
                    "sd independent": float(xi.std(ddof=1)),
                    "sd paired": float(xp.std(ddof=1)),
                    "variance ratio (paired / independent)": ratio,
                    f"{confidence:.0%} CI low": float(lo),
                    f"{confidence:.0%} CI high": float(hi),
                    "p (two-sided F test)": float(2 * min(cdf, 1 - cdf)),
                }
            )
        return pd.DataFrame(rows).set_index("contrast")

    def scaling(self) -> pd.DataFrame:
        """The S_C − S_I gap per encoder pair (raw and normalised) at each training-set size and epoch count,
        including the main runs' first split."""
        rows = []
        for run in [self.runs[0], *self.scaling_runs]:
            sc = pair_scores(run)
            c, i_ = run.subset == "candidate", run.subset == "independent"
            for k in range(sc["raw"].shape[0]):
                rows.append(
                    {
                        "train size": len(run.splits.f_train),
                        "epochs": run.preset.epochs,
                        "pair": k,
                        "gap raw": float(sc["raw"][k, c].mean() - sc["raw"][k, i_].mean()),
                        "gap normalised": float(sc["normalised"][k, c].mean() - sc["normalised"][k, i_].mean()),
                    }
                )
        return pd.DataFrame(rows)

    def floor_check(self) -> dict:
        """Whether the f encoders probe better than untrained encoders of the same architecture (linear probe,
        one-sided Welch test over encoders; :func:`~memlib.probing.floor.beats_floor`). Empty without probes."""
        trained = [a for r in self.runs if len(r.probe) for a in r.probe.loc[r.probe.family == "f", "linear_acc"]]
        floor = [a for r in self.runs if len(r.floor) for a in r.floor["linear_acc"]]
        if len(trained) < 2 or len(floor) < 2:
            return {}
        return beats_floor(trained, floor, alpha=self.settings.alpha)

    def claims(self) -> pd.DataFrame:
        """Verdicts on S1–S9, S11 and S12 over encoder pairs (:mod:`memlib.verdicts`).

        A run whose f encoders do not beat the random-encoder floor (:meth:`floor_check`) learned nothing a
        probe can see: its claims are inconclusive, whatever the tests say.
        """
        table = self._claims()
        fc = self.floor_check()
        if fc and not fc["informative"] and self.preset.meaningful:
            table["status"] = f"{INCONCLUSIVE} ({self.preset.name})"
            table["statistic"] = (
                f"uninformative: f's linear probe {fc['mean_trained']:.3f} does not beat untrained encoders "
                f"({fc['mean_floor']:.3f}, p = {fc['p']:.2g}); the tests alone: " + table["statistic"]
            )
        return table

    #: S9, S11 and S12 on per-pair statistics (column, shift, direction, words, SESOI). S11 and S12 are
    #: non-inferiority tests against their nulls at the run's n (z-scores, :meth:`per_pair_spectrum`): the
    #: claim holds unless the statistic is worse than its null by more than the SESOI (in null sds).
    SPECTRUM: ClassVar[dict[str, tuple]] = {
        "S9": ("tau atypicality", 0.0, 1, "mean Kendall τ(score, atypicality)",
               Sesoi(0.1, "a small rank association (τ 0.1), standardised: the paper gives no τ")),
        "S11": ("top-10 % span z", 0.5, 1, "mean z of the top tenth's share of f's loss range against random top "
                "tenths of the same candidates", Sesoi(0.5, "half a null sd: the lowest-loss tenth of 25 uniform "
                "losses lies about one null sd below random, so narrower by half of that is a band of f's losses")),
        "S12": ("largest step z", -1.0, -1, "mean z of the largest step of the fraction above a threshold against "
                "independent normal scores", Sesoi(1.0, "one null sd: a step larger than that means a cluster of "
                "points on one score level")),
    }  # fmt: skip

    def evidence(self) -> dict[str, Evidence]:
        """The chapter's family of tests, uncorrected: the contrasts (S1, S3a, S4–S8), S2, S9, S11 and S12."""
        ev = {cid: r.evidence for cid, r in self._contrast_rows().iterrows()}
        x = self.pair_means("normalised")["S_S"].to_numpy(dtype=np.float64)
        ev["S2"] = equivalence_evidence(x, self.shared_sesoi())
        spec = self.per_pair_spectrum()
        for cid, (col, shift, sign, _, sesoi) in self.SPECTRUM.items():
            x = spec[col].dropna().to_numpy(dtype=np.float64)
            if cid == "S9" and self.per_point is not None:  # the in/out design: one τ per block of encoders
                x = self.per_point.block_taus()
            e = mean_evidence(x + shift, direction=sign, sesoi=None if shift else sesoi)
            ev[cid] = dataclasses.replace(e, sesoi=sesoi, estimate=float(x.mean()) if len(x) else None)
        return ev

    def planned_n(self) -> pd.DataFrame:
        """Per claim, the encoder pairs a one-sided test needs for 80 % power to detect its SESOI at α/m (m: the
        chapter's whole Holm family), with this run's spread over pairs as the pilot
        (:func:`~memlib.verdicts.plan_n`); S3 takes the larger of its two parts (S3a and S6). S9's unit is the in/out
        design's block of encoders when it is adopted (:meth:`adopt_per_point`), the pair otherwise."""
        ev = self.evidence()
        sd = {cid: float(r["sd over pairs"]) for cid, r in self._contrast_rows().iterrows()}
        sd["S2"] = float(self.pair_means("normalised")["S_S"].std(ddof=1))
        spec = self.per_pair_spectrum()
        for cid, (col, *_) in self.SPECTRUM.items():
            sd[cid] = float(spec[col].dropna().std(ddof=1))
        if self.per_point is not None:  # S9 is tested over the in/out design's blocks
            sd["S9"] = float(np.std(self.per_point.block_taus(), ddof=1))
        rows = {}
        for cid, e in ev.items():
            ok = e.sesoi is not None and np.isfinite(sd[cid]) and sd[cid] > 0
            n = plan_n(e.sesoi.value, sd[cid], alpha=self.settings.alpha, m=len(ev)) if ok else np.nan
            rows[cid] = {
                "unit": "block" if cid == "S9" and self.per_point is not None else "pair",
                "n now": e.n,
                "pilot sd": sd[cid],
                "SESOI": e.sesoi.value if e.sesoi else np.nan,
                "planned n": n,
            }
        rows["S3"] = max((rows.pop("S3a"), rows["S6"]), key=lambda r: np.nan_to_num(r["planned n"], nan=np.inf))
        order = ["S1", "S2", "S3", "S4", "S5", "S6", "S7", "S8", "S9", "S11", "S12"]
        df = pd.DataFrame.from_dict(rows, orient="index").loc[[c for c in order if c in rows]]
        df.index.name = "claim"
        return df

    def verdicts(self) -> dict[str, Verdict]:
        """Every test of :meth:`evidence` decided by the one rule, Holm over the whole family."""
        return decide(self.evidence(), alpha=self.settings.alpha)

    def _claims(self) -> pd.DataFrame:
        p = self.preset
        con = self.contrasts()
        ver = self.verdicts()
        m = len(ver)
        unit = "encoder pair (split × pair)"
        recs = []

        def stat(cid, v):
            r = con.loc[cid]
            ps = "" if v.p_smaller is None else f", smaller than the SESOI p = {v.p_smaller:.2g}"
            pw = "" if v.power is None else f"; power {v.power:.0%} for the SESOI at α/{m}"
            return (
                f"{r.contrast} = {r['mean']:+.3f} (sd over pairs {r['sd over pairs']:.3f}; paper "
                f"{r['paper effect']:+.3f}; SESOI {r['SESOI']:.3f}: {r['SESOI reason']}); Holm p = {v.p:.2g}{ps}"
                f"{pw}: {v.reason}"
            )

        test = f"one-sided one-sample t-test over pairs, against 0 and the SESOI; Holm over the chapter's {m} tests"
        for cid in ("S1", "S4", "S5", "S6", "S7", "S8"):
            v = ver[cid]
            recs.append(Claim(cid, preset_status(p, v.status), stat(cid, v), test, unit, v.n))
        v2 = ver["S2"]
        recs.append(
            Claim(
                "S2",
                preset_status(p, v2.status),
                f"mean S_S {v2.estimate:+.3f} (margin ±{v2.sesoi.value:.3f}: {v2.sesoi.reason}); {v2.reason}",
                f"TOST over pairs, margin ±SESOI (normalised); Holm over the chapter's {m} tests",
                unit,
                v2.n,
            )
        )
        va, vb = ver["S3a"], ver["S6"]
        parts = [va.status, vb.status]
        recs.append(
            Claim(
                "S3",
                preset_status(p, parts_status(parts)),
                f"{parts_count(parts)}. Part 1 (S_E > 0): {stat('S3a', va)}. Part 2 (S_E < S_C, as S6): "
                f"{stat('S6', vb)}",
                test,
                unit,
                va.n,
            )
        )
        recs.extend(self._spectrum_claims(ver))
        order = {"S1": 0, "S2": 1, "S3": 2, "S4": 3, "S5": 4, "S6": 5, "S7": 6, "S8": 7, "S9": 8, "S11": 9, "S12": 10}
        return claims_table(sorted(recs, key=lambda c: order[c.id]))

    def _spectrum_claims(self, ver: dict[str, Verdict]) -> list[Claim]:
        p = self.preset
        rel = self.reliability()["rho halves"].mean()
        reliable = self.ranking_reliable()
        out = []
        for cid, (col, shift, sign, words, sesoi) in self.SPECTRUM.items():
            v = ver[cid]
            status, why = v.status, v.reason
            unit = "encoder pair (split × pair)"
            in_out = cid == "S9" and self.per_point is not None
            if in_out:
                unit = f"block of {self.per_point.design.settings.block} in/out encoders"
                rel_c = self.per_point.rank_reliability()[1]
                ok, what = rel_c >= self.settings.reliability_threshold, "the in/out design's split-half ρ"
            else:
                ok, what, rel_c = reliable, "split-half ρ", rel
            if cid in ("S9", "S11") and not ok:
                status, why = (
                    INCONCLUSIVE,
                    (
                        f"ranking unreliable: {what} = {rel_c:.2f} < "
                        f"{self.settings.reliability_threshold} (declared threshold); "
                        f"the test alone: {v.status}, {v.reason}"
                    ),
                )
            if in_out:
                test = "one-sided t-test over blocks of the in/out design (τ > 0 claimed, against 0 and the SESOI)"
                null = "null 0"
            elif cid == "S9":
                test = "one-sided t-test over pairs (τ > 0 claimed, against 0 and the SESOI)"
                null = "null 0"
            else:
                cmp = "above −1" if sign > 0 else "below +1"
                test = f"one-sided t-test over pairs of the z against the null at the run's n ({cmp} claimed)"
                null = f"claimed {cmp}"
            est = f"{words} {v.estimate:+.3f} ({null}; {sesoi}); " if v.estimate is not None else ""
            out.append(Claim(cid, preset_status(p, status), f"{est}{why}", f"{test}; Holm over the chapter", unit, v.n))
        return out


def _z(value: float, null: np.ndarray) -> float:
    """``value`` in standard deviations of its ``null`` from the null's mean (NaN where the null has no spread)."""
    null = null[np.isfinite(null)]
    sd = null.std(ddof=1) if len(null) > 1 else 0.0
    return float((value - null.mean()) / sd) if sd > 0 and np.isfinite(value) else float("nan")


def _points_table(runs: list[SSLMemRun]) -> pd.DataFrame:
    """Every pair's raw, normalised and calibrated score of every point of ``runs`` (long form)."""
    rows = []
    for run in runs:
        sc = pair_scores(run)
        for i in range(sc["raw"].shape[0]):
            rows.append(
                pd.DataFrame(
                    {
                        "split": run.seed,
                        "pair": i,
                        "group": f"{run.seed}/{i}",
                        "subset": run.subset,
                        **{k: v[i] for k, v in sc.items()},
                    }
                )
            )
    return pd.concat(rows, ignore_index=True)


def _pair_table(runs: list[SSLMemRun]) -> pd.DataFrame:
    """Each pair's mean score per subset (subsets by their paper labels), from :func:`_points_table`."""
    t = _points_table(runs)
    t["subset"] = t["subset"].map(SUBSET_LABELS)
    return t.groupby(["split", "pair", "subset"], sort=False)[["raw", "normalised", "calibrated"]].mean().reset_index()


def study_presets(preset="smoke", **overrides):
    """The preset and :class:`StudySettings` of a study (``overrides`` split between the two)."""
    return StudySettings.for_preset(preset, **overrides)


@dataclass(frozen=True)
class StudyConfig:
    """Chapter 01's resolved config: the preset, the study settings (split seeds already shifted by ``seed``)."""

    preset: Preset
    settings: StudySettings
    seed: int = 0

    def runs(self) -> list[tuple[Preset, int, bool]]:
        """(preset, split seed, probe?) of every run: the splits, the paired-seed variants, the scaling sweep."""
        p, s = self.preset, self.settings
        out = [(p, seed, True) for seed in s.seeds]
        if s.paired_pairs:
            q = p.replace(models_per_family=s.paired_pairs, null_models=0)
            out += [(q, seed, False) for seed in s.paired]
            out += [(q.replace(paired_seeds=True), seed, False) for seed in s.paired]
        else:
            out += [(p.replace(paired_seeds=True), seed, False) for seed in s.paired]
        out += [
            (
                p.replace(
                    shared=sh,
                    candidate=c,
                    extra=None,
                    epochs=e,
                    models_per_family=s.scaling_models,
                    null_models=0,
                    eval_every=min(p.eval_every, e),
                ),
                s.seeds[0],
                False,
            )
            for sh, c, e in s.scaling
        ]
        return out


def study_config(preset="smoke", *, seed: int = 0, **overrides) -> StudyConfig:
    """Resolve chapter 01's config once: ``overrides`` change preset fields (``epochs=``) or study settings
    (``seeds=(0, 1, 2)``), ``None`` ignored, anything else refused with the closest name; ``seed`` shifts every
    split seed (``seed=10`` runs seeds 10, 11, 12 where the preset has 0, 1, 2)."""
    known = {f.name for f in dataclasses.fields(StudySettings)} | {f.name for f in dataclasses.fields(Preset)}
    check_parameters(overrides, known, "sslmem")
    p, s = study_presets(preset, **overrides)
    if seed:
        s = dataclasses.replace(s, seeds=tuple(x + seed for x in s.seeds), paired=tuple(x + seed for x in s.paired))
    return StudyConfig(p, s, int(seed))


def study_designs(cfg: StudyConfig, data_root=None) -> list:
    """The :class:`~memlib.experiments.sslmem_evidence.RunDesign` of every run of ``cfg`` (trains nothing)."""
    return [run_design(q, seed, probe, data_root) for q, seed, probe in cfg.runs()]


def run_study(
    cfg: StudyConfig, *, store=None, train=True, device="cpu", cache_dir=None, data_root=None, progress=True
) -> SSLMemStudy:
    """Compute what the evidence store lacks for ``cfg`` (with ``train=True``), then the study from stored rows."""
    t0 = time.perf_counter()
    s = cfg.settings
    kw = dict(device=device, cache_dir=cache_dir, data_root=data_root, progress=progress)
    store = open_store(store, cfg.preset.name)
    designs = study_designs(cfg, data_root)
    todo = [d for d in designs if missing(store, d)]
    if train:
        for d in todo:  # train everything first: the pool stays busy across runs
            run_sslmem(d.preset, seed=d.seed, train_only=True, **kw)
    runs = [stored_sslmem_run(store, d, train=train, **kw) for d in designs]
    k, m = len(s.seeds), len(s.paired)
    indep = []
    if s.paired_pairs:  # the paired-seed measurement's independent-seed half comes before its paired half
        indep, runs = runs[k : k + m], runs[:k] + runs[k + m :]
    prov = provenance(
        {"preset": cfg.preset.name, "seed": cfg.seed, "experiment": "sslmem"},
        device,
        time.perf_counter() - t0,
    )
    return SSLMemStudy(
        s,
        runs[:k],
        runs[k : k + m],
        runs[k + m :],
        provenance=prov,
        store=store,
        designs=designs,
        paired_independent=indep,
    )


def run_sslmem_study(
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
) -> SSLMemStudy:
    """Run chapter 01's study (see the module docstring) and return an :class:`SSLMemStudy`.

    ``overrides`` change preset fields (``epochs=``) or study settings (``seeds=(0, 1, 2)``); ``None`` is ignored.
    ``seed`` shifts every split seed of the settings (``seed=10`` runs seeds 10, 11, 12 where the preset has
    0, 1, 2), so the notebook runner's ``seed`` gives a whole new study.

    Every run is read from the evidence store ``store`` (an :class:`~memlib.evidence.EvidenceStore`, a folder,
    or ``None`` for :func:`~memlib.evidence.default_store_path`). Runs the store lacks are computed and appended
    first, every missing encoder trained (or found in the cache) before any run is scored; ``train=False``
    refuses to compute anything and names what the store lacks. The same as
    ``run_experiment("sslmem", preset, ...)``.
    """
    cfg = study_config(preset, seed=seed, **overrides)
    return run_study(
        cfg, store=store, train=train, device=device, cache_dir=cache_dir, data_root=data_root, progress=progress
    )


register_experiment(
    Experiment(
        name="sslmem",
        chapter="01",
        notebook="01_sslmem",
        title="SSLMem: do encoders memorise their training points? (splits, null family, paired seeds, scaling)",
        claims=("S1", "S2", "S3", "S4", "S5", "S6", "S7", "S8", "S9", "S11", "S12"),
        config=study_config,
        design=study_designs,
        run=run_study,
        fill=fill_run,
        minutes_per_encoder=3.3,
        missing=missing,
    )
)
