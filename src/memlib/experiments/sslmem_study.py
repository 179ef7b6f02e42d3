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
from dataclasses import dataclass
from typing import ClassVar

import numpy as np
import pandas as pd
from scipy import stats as st
from statsmodels.stats.multitest import multipletests
from statsmodels.stats.power import TTestPower

from ..data.splits import SUBSET_LABELS, SUBSETS
from ..probing import beats_floor
from ..stats import largest_step, significant_points, split_half_reliability
from ..verdicts import (
    INCONCLUSIVE,
    MIN_POWER,
    MIN_RELIABILITY,
    Verdict,
    equivalence_rule,
    mixed_effect,
    one_sided_pair,
    parts_status,
    preset_status,
    tost,
    verdict_rule,
)
from .claims import Claim, claims_table
from .settings import Settings
from .sslmem_experiment import SSLMemRun, run_sslmem

#: The paper's mean normalised score per subset, from its §4.2 and Fig. 2c (MAE, ViT-tiny, CIFAR-10, 5,000
#: points per subset).
PAPER_MEANS = {"candidate": 0.30723, "shared": -0.00136, "extra": 0.09958, "independent": -0.31182}

# fmt: off
STUDY_SETTINGS = {
    "smoke": {"seeds": (0, 1), "paired": (0,), "scaling": ((48, 16, 3),), "scaling_models": 1},
    # 2 cores: 3 splits × (3 f + 3 g + 2 f′) = 24 encoders, 3 paired g's, and 2 × 4 scaling encoders, each at
    # the compute of one main encoder (1,200 steps of batch 50; size × epochs = 60,000 = 150 × 400): 35
    # encoders of about 4.5 min on one core, 80 minutes on two.
    "cpu": {"seeds": (0, 1, 2), "paired": (0,), "scaling": ((42, 8, 1200), (1000, 200, 50)), "scaling_models": 2},
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
    scaling
        (shared, candidate, epochs) per point of the scaling figure, run at the first seed.
    scaling_models
        Encoders per family at each scaling point.
    reliability_threshold
        Split-half Spearman ρ of the candidates' ranking below which every claim that uses a ranking
        (S9, S11) is inconclusive; declared here, before any run.
    margin
        TOST margin for S2 ("m(S_S) ≈ 0"), in paper-normalised units; declared before any run (a sixth of the
        paper's S_C mean).
    alpha
        Level of every test after Holm's correction over the chapter's tests.
    """

    TABLE: ClassVar[dict[str, dict]] = STUDY_SETTINGS

    seeds: tuple[int, ...]
    paired: tuple[int, ...] = ()
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

    def contrasts(self) -> pd.DataFrame:
        """Each directional contrast of S1–S8 over encoder pairs: per-pair values, one-sided t-tests in both
        directions (Holm over the contrasts), power and minimum detectable effect at 80 % power, the paper's
        effect, and the mixed model's estimate on the points (pair as random intercept)."""
        m = self.pair_means("normalised")
        t = self.pair_table_points()
        rows = []
        for cid, (eff, base, sign) in self.CONTRASTS.items():
            x = m[SUBSET_LABELS[eff]] - (m[SUBSET_LABELS[base]] if base else 0.0)
            x = x.to_numpy(dtype=np.float64)
            paper = PAPER_MEANS[eff] - (PAPER_MEANS[base] if base else 0.0)
            n = len(x)
            sd = x.std(ddof=1) if n > 1 else float("nan")
            p_claim, p_opp = one_sided_pair(x, direction=sign)
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
                    "p": float(p_claim),
                    "p opposite": float(p_opp),
                    "paper effect": paper,
                    "power for paper": float(power),
                    "MDE (80 %)": float(mde),
                    "mixed-model estimate": mixed["estimate"],
                    "mixed-model p (two-sided)": mixed["p"],
                }
            )
        df = pd.DataFrame(rows).set_index("claim")
        for col in ("p", "p opposite"):  # Holm over the chapter's directional tests
            df[col + " (Holm)"] = multipletests(df[col], method="holm")[1]
        return df

    def pair_table_points(self) -> pd.DataFrame:
        """Every pair's score of every point (long form): split, pair, group, subset, raw/normalised/calibrated."""
        return _points_table(self.runs)

    def shared_equivalence(self) -> Verdict:
        """S2, "m(S_S) ≈ 0": TOST over pairs on the mean normalised S_S score, margin declared in the settings."""
        x = self.pair_means("normalised")["S_S"].to_numpy(dtype=np.float64)
        n = len(x)
        if n < 2 or not np.ptp(x) > 0:
            return equivalence_rule(n=n, p_equivalent=1.0, p_different=1.0, estimate=float(x.mean()))
        return equivalence_rule(
            n=n,
            p_equivalent=tost(x, self.settings.margin),
            p_different=float(st.ttest_1samp(x, 0.0).pvalue),
            alpha=self.settings.alpha,
            estimate=float(x.mean()),
        )

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
        range the top tenth spans (S11) and the largest step of the fraction above a threshold (S12)."""
        rows = []
        for run in self.runs:
            c = run.subset == "candidate"
            sc = pair_scores(run)["normalised"][:, c]
            aty = run.atypicality()[c] if run.encoders.get("g") else None
            r = run.result
            for i in range(sc.shape[0]):
                align_f = r.align_f_models[i, c]
                top = sc[i] >= np.quantile(sc[i], 0.9)
                span = np.ptp(align_f[top]) / np.ptp(align_f) if np.ptp(align_f) > 0 else float("nan")
                rows.append(
                    {
                        "split": run.seed,
                        "pair": i,
                        "tau atypicality": float(st.kendalltau(sc[i], aty).statistic) if aty is not None else np.nan,
                        "top-10 % span": float(span),
                        "largest step": largest_step(sc[i]),
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
            ("independent seeds", [r for r in self.runs if r.seed in self.settings.paired]),
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

    def _claims(self) -> pd.DataFrame:
        p = self.preset
        con = self.contrasts()
        a = self.settings.alpha
        unit = "encoder pair (split × pair)"
        recs = []

        def verdict(cid):
            r = con.loc[cid]
            return verdict_rule(
                n=int(r.pairs),
                p=r["p (Holm)"],
                p_opposite=r["p opposite (Holm)"],
                power=r["power for paper"],
                alpha=a,
                estimate=r["mean"],
            )

        def stat(cid, v):
            r = con.loc[cid]
            return (
                f"{r.contrast} = {r['mean']:+.3f} (sd over pairs {r['sd over pairs']:.3f}; paper "
                f"{r['paper effect']:+.3f}); Holm p = {r['p (Holm)']:.2g}; power for the paper's effect "
                f"{r['power for paper']:.0%}; MDE {r['MDE (80 %)']:.3f}: {v.reason}"
            )

        test = f"one-sided one-sample t-test over pairs, Holm over {len(con)}"
        for cid in ("S1", "S4", "S5", "S6", "S7", "S8"):
            v = verdict(cid)
            recs.append(Claim(cid, preset_status(p, v.status), stat(cid, v), test, unit, v.n))
        v2 = self.shared_equivalence()
        recs.append(
            Claim(
                "S2",
                preset_status(p, v2.status),
                f"mean S_S {v2.estimate:+.3f} (margin ±{self.settings.margin}); {v2.reason}",
                f"TOST over pairs, margin ±{self.settings.margin} (normalised)",
                unit,
                v2.n,
            )
        )
        va, vb = verdict("S3a"), verdict("S6")
        status3 = parts_status([va.status, vb.status])
        recs.append(
            Claim(
                "S3",
                preset_status(p, status3),
                f"part 1 (S_E > 0): {stat('S3a', va)}. Part 2 (S_E < S_C, as S6): {stat('S6', vb)}",
                test,
                unit,
                va.n,
            )
        )
        recs.extend(self._spectrum_claims())
        order = {"S1": 0, "S2": 1, "S3": 2, "S4": 3, "S5": 4, "S6": 5, "S7": 6, "S8": 7, "S9": 8, "S11": 9, "S12": 10}
        return claims_table(sorted(recs, key=lambda c: order[c.id]))

    def _spectrum_claims(self) -> list[Claim]:
        p, a = self.preset, self.settings.alpha
        spec = self.per_pair_spectrum()
        n = len(spec)
        rel = self.reliability()["rho halves"].mean()
        reliable = self.ranking_reliable()
        unit = "encoder pair (split × pair)"
        out = []

        for cid, col, null, sign, words in (
            ("S9", "tau atypicality", 0.0, 1, "mean Kendall τ(score, atypicality)"),
            ("S11", "top-10 % span", 0.5, 1, "mean share of f's loss range spanned by the top tenth"),
            ("S12", "largest step", 0.1, -1, "mean largest step of the fraction above a threshold"),
        ):
            x = spec[col].dropna()
            pc, po = one_sided_pair(np.asarray(x, float) - null, direction=sign)
            v = verdict_rule(n=len(x), p=pc, p_opposite=po, alpha=a, estimate=float(x.mean()) if len(x) else None)
            status, why = v.status, v.reason
            if cid in ("S9", "S11") and not reliable:
                status, why = (
                    INCONCLUSIVE,
                    (
                        f"ranking unreliable: split-half ρ = {rel:.2f} < "
                        f"{self.settings.reliability_threshold} (declared threshold); "
                        f"the test alone: {v.status}, {v.reason}"
                    ),
                )
            cmp = "≥" if sign > 0 else "≤"
            out.append(
                Claim(
                    cid,
                    preset_status(p, status),
                    f"{words} {x.mean():+.3f} (null {null}); {why}" if len(x) else why,
                    f"one-sided t-test over pairs ({cmp} {null} claimed)",
                    unit,
                    len(x) or n,
                )
            )
        return out


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


def run_sslmem_study(
    preset="smoke", *, device="cpu", seed=0, cache_dir=None, data_root=None, progress=True, **overrides
) -> SSLMemStudy:
    """Run chapter 01's study (see the module docstring) and return an :class:`SSLMemStudy`.

    ``overrides`` change preset fields (``epochs=``) or study settings (``seeds=(0, 1, 2)``); ``None`` is ignored.
    ``seed`` shifts every split seed of the settings (``seed=10`` runs seeds 10, 11, 12 where the preset has
    0, 1, 2), so the notebook runner's ``seed`` gives a whole new study. Every encoder is trained (or found in
    the cache) before any run is scored.
    """
    p, s = study_presets(preset, **overrides)
    if seed:
        s = dataclasses.replace(s, seeds=tuple(x + seed for x in s.seeds), paired=tuple(x + seed for x in s.paired))
    kw = dict(device=device, cache_dir=cache_dir, data_root=data_root, progress=progress)
    configs = [(p, seed, True) for seed in s.seeds]
    configs += [(p.replace(paired_seeds=True), seed, False) for seed in s.paired]
    configs += [
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
    for q, seed, _ in configs:  # train everything first: the pool stays busy across runs
        run_sslmem(q, seed=seed, train_only=True, **kw)
    runs = [run_sslmem(q, seed=seed, probe=probe, **kw) for q, seed, probe in configs]
    k, m = len(s.seeds), len(s.paired)
    return SSLMemStudy(s, runs[:k], runs[k : k + m], runs[k + m :])
