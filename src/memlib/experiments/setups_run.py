"""SSLMem across training setups: the SSLMem paper's Table 1, Fig. 2b, Tables 4, 7–9 and 11–13.

This module holds the section's settings, its plan of SSLMem runs and its analysis
(:func:`setups_analysis`, from stored rows); :func:`~memlib.experiments.setups_evidence.run_setups`
fills the evidence store and calls it. Every comparison runs on the same seeded splits, so that all setups
score the *same* candidates:

- **Table 1**: SSLMem and linear-probe accuracy per method × architecture
  (:data:`SETUPS`), over seeds; does more memorisation go with more accuracy (S13)?
- **Tables 11–13**: a supervised encoder beside the SSL ones (S17), Feldman's
  supervised memorisation against SSLMem (S18), and Kendall's τ between every
  pair of setups' rankings of the candidates (S16).
- **Table 7**: the share of f's training set that g also trains on (S15).
- **Table 8**: measuring SSLMem with augmentations other than the training one (S27).
- **Table 9**: training with other augmentations (S28) and MAE mask ratios (S29).
- **Table 4**: Déjà Vu memorisation beside SSLMem per setup (S26).
- **Fig. 2b**: loss, accuracy and SSLMem over training, from saved snapshots (S10).

Each setup is an SSLMem run (:func:`~memlib.experiments.sslmem_experiment.run_sslmem`)
with a few preset fields changed, so encoders are cached and shared with the
other chapters (the SimCLR encoders of seed 0 are chapter 01's first pair, and their rows in the store too).
The ablations (Tables 7–9, Fig. 2b) use the first seed only, with one encoder pair per level; S10, S17 and
S27–S29 are decided instead from in/out levels (:meth:`SetupsRun.inout_evidence`), where each encoder trained
on a random half of chapter 01b's pool is a unit of replication.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar

import numpy as np
import pandas as pd
from scipy import stats as st

from ..data.augment import AUGMENTATIONS
from ..methods import METHODS
from ..probing import beats_floor
from ..stats import kendall_tau, kendall_test, mean_ci, overlap_at_k
from ..verdicts import (
    INCONCLUSIVE,
    Evidence,
    Sesoi,
    decide,
    mean_evidence,
    parts_count,
    parts_status,
    plan_n,
    plan_n_kendall,
    preset_status,
    standardised_sesoi,
    verdict_rule,
)
from .claims import Claim, claims_table
from .encoders import method_setup, vit_arch
from .presets import Preset
from .settings import Settings
from .sslmem_experiment import SSLMemRun
from .validate import check_method_kwargs

#: The setups of Table 1, each name mapped to (method, architecture kind), where ``"resnet"`` is the
#: preset's architecture and ``"vit"`` its ViT (:func:`~memlib.experiments.encoders.vit_arch`).
SETUPS: dict[str, tuple[str, str]] = {
    "SimCLR-ResNet": ("simclr", "resnet"),
    "DINO-ResNet": ("dino", "resnet"),
    "DINO-ViT": ("dino", "vit"),
    "MAE-ViT": ("mae", "vit"),
    "VICReg-ResNet": ("vicreg", "resnet"),
    "Supervised-ResNet": ("supervised", "resnet"),
}
#: The setup the ablations (overlap, augmentations, Fig. 2b) vary.
BASE_SETUP = "SimCLR-ResNet"

# fmt: off
#: Per preset, the settings that differ from :class:`SetupsSettings`' defaults and any preset fields that
#: differ from the SSLMem preset.
SETUPS_SETTINGS: dict[str, dict] = {
    "smoke": {"setups": ("SimCLR-ResNet", "MAE-ViT", "Supervised-ResNet"), "seeds": (0,),
              "overlaps": (0.7, 0.85), "train_augmentations": ("crop_flip",),
              "measure_augmentations": ("simclr", "rotation"), "mask_ratios": (0.5, 0.75), "dejavu_k": 5,
              "public": 256, "top_k": (5,)},
    # 2 cores: one f and one g per setup (no null family); seed 0 for every setup and the ablations, seeds 1
    # and 2 for the two setups S17 compares over seeds (SimCLR's pairs are chapter 01's first pair per split,
    # so only the supervised ones train): 36 trainings, about 90 minutes.
    # In/out levels (declared 2026-12-04 before any of their encoders trained or were scored): chapter 01b's
    # pool and the first k rows of its inclusion (whole balanced blocks), one encoder per row per level, so
    # levels pair by row; S10, S17, S27 and S28 are tested over those rows (see SetupsRun.inout_evidence). The
    # planned n for d = 0.5 at α/12 (the chapter's 12 tests) is 52 rows. S17 (46 s per supervised encoder; 60
    # rows, whole blocks) and S27 (no training: chapter 01b's 88 encoders re-scored) reach it; S10 (8 base
    # encoders retrained keeping snapshots, each snapshot scored and probed) and S28 (24 SimCLR encoders at 8
    # rows) are set by the budget and say what they would need. S29's in/out levels (32 MAE encoders, about 76
    # core-minutes with their probes) were declared at first, then left out before any of them trained: probing
    # runs on one core and the session could not fit them; S29 rests on its single pairs (inconclusive).
    "cpu": {"seeds": (0, 1, 2), "models_per_family": 1,
            "seed_setups": ("SimCLR-ResNet", "Supervised-ResNet"),
            "inout": {"dynamics": 8, "supervised": 60, "measure_aug": 88, "train_aug": 8}},
    "gpu": {"seeds": (0, 1, 2)},
    "paper": {"seeds": (0, 1, 2)},
}
# fmt: on


@dataclass(frozen=True)
class SetupsSettings(Settings):
    """This experiment's own settings (see :data:`SETUPS_SETTINGS` and
    :func:`~memlib.experiments.setups_evidence.run_setups`)."""

    TABLE: ClassVar[dict[str, dict]] = SETUPS_SETTINGS

    seeds: tuple[int, ...]
    setups: tuple[str, ...] = tuple(SETUPS)
    overlaps: tuple[float, ...] = (0.70, 0.80, 0.85)
    train_augmentations: tuple[str, ...] = ("crop_flip", "noise", "mask")
    measure_augmentations: tuple[str, ...] = ("simclr", "crop_flip", "noise", "rotation", "intensity", "mask")
    mask_ratios: tuple[float, ...] = (0.5, 0.75, 0.8, 0.9)
    seed_setups: tuple[str, ...] | None = None
    dejavu_k: int = 20
    dejavu_centre: int = 14
    public: int = 5000
    top_k: tuple[int, ...] = (5, 10, 25)
    kwargs: dict = field(default_factory=dict)
    train_augmentation: str | None = None  # the base setup's, filled in by run_setups
    #: Encoder rows of each in/out table (``supervised``, ``measure_aug``, ``train_aug``, ``mask_ratio``):
    #: the first k rows of chapter 01b's inclusion; ``None``: no in/out levels.
    inout: dict | None = field(
        default_factory=lambda: {"dynamics": 8, "supervised": 8, "measure_aug": 8, "train_aug": 8, "mask_ratio": 8}
    )

    def __post_init__(self):
        bad = [n for n in self.setups if n not in SETUPS]
        if bad or not self.setups:
            raise ValueError(f"setups={self.setups!r}: unknown {bad}; choose from {list(SETUPS)}")
        if self.seed_setups is not None and set(self.seed_setups) - set(SETUPS):
            raise ValueError(
                f"seed_setups={self.seed_setups!r}: unknown "
                f"{sorted(set(self.seed_setups) - set(SETUPS))}; choose from {list(SETUPS)}"
            )
        if BASE_SETUP not in self.setups:
            raise ValueError(f"setups must include {BASE_SETUP!r}, the setup the ablations vary")
        for a in (*self.train_augmentations, *self.measure_augmentations):
            if a not in AUGMENTATIONS:
                raise ValueError(f"augmentation {a!r} is unknown; choose from {sorted(AUGMENTATIONS)}")
        if not all(0 < o < 1 for o in self.overlaps):
            raise ValueError(f"overlaps={self.overlaps!r} must lie in (0, 1), e.g. (0.7, 0.8, 0.85)")
        if not all(0 < r < 1 for r in self.mask_ratios):
            raise ValueError(f"mask_ratios={self.mask_ratios!r} must lie in (0, 1), e.g. (0.5, 0.75)")
        if not self.seeds or any(isinstance(x, bool) or int(x) != x or x < 0 for x in self.seeds):
            raise ValueError(f"seeds={self.seeds!r} must be a non-empty list of ints ≥ 0, e.g. (0, 1)")
        for method, kw in self.kwargs.items():
            check_method_kwargs(method, kw)
        self._set("seeds", tuple(int(x) for x in self.seeds))
        if self.inout is not None:
            bad = sorted(set(self.inout) - set(INOUT_TABLES))
            if bad:
                raise ValueError(f"inout={self.inout!r}: unknown tables {bad}; choose from {sorted(INOUT_TABLES)}")
            for t, k in self.inout.items():
                if isinstance(k, bool) or not isinstance(k, int) or k < 8 or k % 4:
                    raise ValueError(
                        f"inout[{t!r}]={k!r} must be a multiple of 4, at least 8 (two blocks of the in/out design)"
                    )


#: The training preset and this experiment's settings for a preset, with overrides (None ignored).
setups_settings = SetupsSettings.for_preset


def setup_preset(p: Preset, s: dict, name: str, **fields) -> Preset:
    """The SSLMem preset of setup ``name``: its method, architecture, augmentation and method arguments."""
    method, kind = SETUPS[name]
    arch, aug = method_setup(p, method)  # as the method decides (MAE: a ViT, crop + flip)
    arch = vit_arch(p) if kind == "vit" else arch
    # No null family: the setups compare pairs, and f′ would double the trainings.
    base = {
        "method": method,
        "arch": arch,
        "augmentation": aug,
        "method_kwargs": dict(s["kwargs"].get(method, {})),
        "null_models": 0,
    }
    return p.replace(**{**base, **fields})


def mask_ratio_kwargs(ratio: float) -> dict:
    """MAE's arguments for ``ratio``: empty at MAE's default, so Table 1's MAE encoders are reused."""
    default = inspect.signature(METHODS["mae"].__init__).parameters["mask_ratio"].default
    return {} if ratio == default else {"mask_ratio": float(ratio)}


def overlap_sizes(p: Preset, ratio: float) -> tuple[int, int]:
    """``(|S_S|, |S_C|)`` with ``|S_S| / (|S_S| + |S_C|) ≈ ratio`` at the preset's training-set size."""
    total = int(p.shared) + int(p.candidate)
    shared = int(round(ratio * total))
    if not 0 < shared < total:
        raise ValueError(f"overlap {ratio} leaves no shared or no candidate points of {total}")
    return shared, total - shared


def plan(p: Preset, s: dict) -> list[tuple[str, object, Preset, int]]:
    """Every SSLMem run of the experiment as ``(table, label, preset, seed)``, Table 1 first."""
    again = s["seed_setups"] if s["seed_setups"] is not None else s["setups"]
    runs = [
        ("table1", name, setup_preset(p, s, name), seed)
        for seed in s["seeds"]
        for name in s["setups"]
        if seed == s["seeds"][0] or name in again
    ]
    seed = s["seeds"][0]
    for r in s["overlaps"]:
        sh, ca = overlap_sizes(p, r)
        runs.append(("overlap", r, setup_preset(p, s, BASE_SETUP, shared=sh, candidate=ca), seed))
    for a in s["train_augmentations"]:
        runs.append(("train_aug", a, setup_preset(p, s, BASE_SETUP, augmentation=a), seed))
    for r in s["mask_ratios"]:
        runs.append(("mask_ratio", r, setup_preset(p, s, "MAE-ViT", method_kwargs=mask_ratio_kwargs(r)), seed))
    return runs


@dataclass
class SetupsRun:
    """Everything :func:`~memlib.experiments.setups_evidence.run_setups` produced; each table is a DataFrame, each
    claim a method."""

    preset: Preset
    settings: dict
    table1_runs: pd.DataFrame  # one row per (setup, seed)
    candidate_scores: pd.DataFrame  # seed 0: normalised SSLMem per candidate (column per setup) + Feldman
    feldman: pd.DataFrame  # top-k overlap and τ between SSLMem and Feldman's memorisation
    overlap: pd.DataFrame
    measure_aug: pd.DataFrame
    measure_points: dict  # augmentation → per-candidate normalised scores
    train_aug: pd.DataFrame
    train_aug_points: dict
    mask_ratio: pd.DataFrame
    mask_ratio_points: dict
    overlap_points: dict
    dejavu: pd.DataFrame
    dynamics: pd.DataFrame
    dynamics_points: dict  # epoch → per-candidate raw scores
    provenance: dict
    run_dir: Path
    timings: dict = field(default_factory=dict)
    #: Probe accuracies of untrained encoders, per architecture (column ``arch``), on the first seed's probe sets.
    floor: pd.DataFrame = field(default_factory=pd.DataFrame)
    #: The evidence store the run was read from, and its encoders' keys.
    store: object = None
    encoder_keys: list = field(default_factory=list)
    #: The in/out levels, ``(table, level)`` → :class:`~memlib.experiments.subset_study.SubsetStudy` (empty:
    #: none ran; the ablations then rest on their single pairs).
    inout: dict = field(default_factory=dict, repr=False)

    # ---- tables -------------------------------------------------------------------------------------
    def table1(self) -> pd.DataFrame:
        """Per setup: mean ± sd over seeds of the mean S_C score and of f's probe accuracies."""
        g = self.table1_runs.groupby("setup", sort=False)
        out = pd.DataFrame(
            {
                "seeds": g.size(),
                "SSLMem": g["sslmem"].mean(),
                "SSLMem sd": g["sslmem"].std(ddof=1),
                "SSLMem calibrated": g["sslmem_calibrated"].mean(),
                "SSLMem raw": g["sslmem_raw"].mean(),
                "linear acc": g["linear_acc"].mean(),
                "linear acc sd": g["linear_acc"].std(ddof=1),
                "kNN acc": g["knn_acc"].mean(),
                "beats floor": g["beats_floor"].all(),
            }
        )
        return out

    def inout_encoders(self) -> pd.DataFrame:
        """One row per in/out level and encoder row i (rows pair across levels: same points, same seed): its
        memorisation (own in-versus-out contrast after point effects), its mean alignment over the pool, the
        relative memorisation (their ratio, scale-free across methods and augmentations: the statistic the
        claims test), and its linear-probe accuracy."""
        rows = []
        for (table, level), sd in self.inout.items():
            r = sd.result
            mean_al = r.alignment.mean(1)
            acc = sd.probe["linear_acc"].to_numpy() if "linear_acc" in sd.probe else np.full(len(mean_al), np.nan)
            for i, (m, a) in enumerate(zip(r.encoder_memorization, mean_al)):
                rows.append(
                    {
                        "table": table,
                        "level": level,
                        "row": i,
                        "memorisation": float(m),
                        "mean alignment": float(a),
                        "relative memorisation": float(m / a),
                        "linear acc": float(acc[i]),
                    }
                )
        cols = ["table", "level", "row", "memorisation", "mean alignment", "relative memorisation", "linear acc"]
        return pd.DataFrame(rows, columns=cols)

    def inout_levels(self) -> pd.DataFrame:
        """Per in/out level: encoders, and mean with 95 % interval over encoders of the relative memorisation,
        with the mean memorisation, alignment and linear accuracy (the figure's and tables' numbers)."""
        df = self.inout_encoders()
        rows = []
        for (table, level), g in df.groupby(["table", "level"], sort=False):
            m, lo, hi = mean_ci(g["relative memorisation"].to_numpy())
            rows.append(
                {
                    "table": table,
                    "level": level,
                    "encoders": len(g),
                    "relative memorisation": m,
                    "ci95 low": lo,
                    "ci95 high": hi,
                    "memorisation": g["memorisation"].mean(),
                    "mean alignment": g["mean alignment"].mean(),
                    "linear acc": g["linear acc"].mean(),
                }
            )
        return pd.DataFrame(rows)

    def inout_evidence(self) -> dict[str, tuple[str, dict]]:
        """The in/out tests, declared before the run, by claim: ``claim → (unit, {test key: per-row
        differences})``. Every test is a one-sided paired t-test over encoder rows (the unit)
        of a difference between levels, against 0 and a SESOI of d = 0.5 standardised:

        - S10: relative memorisation at the last snapshot − at the accuracy plateau (the first snapshot whose
          mean linear accuracy over rows is within 1 point of the best);
        - S17: relative memorisation, supervised − base setup;
        - S27: relative memorisation, training augmentation − each other measuring augmentation (base encoders);
        - S28: crop + flip − each other training augmentation, in relative memorisation and in linear accuracy;
        - S29: MAE's 75 % mask ratio − each other ratio, in relative memorisation and in linear accuracy.
        """
        df = self.inout_encoders()
        if not len(df):
            return {}
        wide = {
            col: df.pivot_table(index="row", columns=["table", "level"], values=col)
            for col in ("relative memorisation", "linear acc")
        }

        def diff(col, a, b):
            w = wide[col]
            if a not in w or b not in w:
                return None
            d = (w[a] - w[b]).dropna().to_numpy()
            return d if len(d) >= 2 else None

        out = {}
        dyn = df[df["table"] == "dynamics"]
        if dyn["level"].nunique() >= 2:
            acc = dyn.groupby("level")["linear acc"].mean()
            plateau, end = acc.index[acc >= acc.max() - 0.01].min(), acc.index.max()
            if plateau < end:
                d = diff("relative memorisation", ("dynamics", end), ("dynamics", plateau))
                if d is not None:
                    key = f"S10 relative memorisation: epoch {end} > epoch {plateau} (plateau)"
                    out["S10"] = ("encoder row (one in/out encoder, at two snapshots)", {key: d})
        base = ("base", BASE_SETUP)
        sup = [lv for t, lv in wide["relative memorisation"].columns if t == "supervised"]
        if sup:
            d = diff("relative memorisation", ("supervised", sup[0]), base)
            if d is not None:
                out["S17"] = ("encoder row (supervised and SimCLR in/out encoders)", {"S17": d})
        train = self.settings["train_augmentation"]
        levels = {t: [lv for tt, lv in wide["relative memorisation"].columns if tt == t] for t in INOUT_TABLES}

        def parts(cid, table, top, cols):
            tests = {}
            for lv in levels[table]:
                if lv == top:
                    continue
                for col in cols:
                    d = diff(col, (table, top), (table, lv))
                    if d is not None:
                        tests[f"{cid} {col}: {top} > {lv}"] = d
            return tests

        if train in levels["measure_aug"] and len(levels["measure_aug"]) >= 2:
            out["S27"] = ("encoder (base setup, in/out)", parts("S27", "measure_aug", train, ["relative memorisation"]))
        if "crop_flip" in levels["train_aug"] and len(levels["train_aug"]) >= 2:
            cols = ["relative memorisation", "linear acc"]
            out["S28"] = (
                "encoder row (one in/out encoder per training augmentation)",
                parts("S28", "train_aug", "crop_flip", cols),
            )
        if 0.75 in levels["mask_ratio"] and len(levels["mask_ratio"]) >= 2:
            cols = ["relative memorisation", "linear acc"]
            out["S29"] = ("encoder row (one in/out MAE per mask ratio)", parts("S29", "mask_ratio", 0.75, cols))
        return {k: v for k, v in out.items() if v[1]}

    def planned_n(self, alpha: float = 0.05) -> pd.DataFrame:
        """The sample-size plan per claim, declared with the design: its unit, the units now, the SESOI, the
        units a one-sided test needs for 80 % power at α/m, the encoders one unit costs, and the CPU hours of
        the planned n at this run's median training time per encoder (from the store).

        m is every claim of the chapter (10), or, with the in/out levels, every test of the chapter's Holm
        family (S13, S17 and the parts of S27–S29) if that is more. S13 is a Kendall τ over SSL runs (SESOI: an
        absolute τ of 0.2,
        :func:`~memlib.verdicts.plan_n_kendall`); every other claim is a mean over its units of a difference
        between levels or setups, planned for a standardised SESOI of d = 0.5 (:func:`~memlib.verdicts.plan_n`;
        the one-pair-per-level ablations have no spread to pilot with, and S17's paper gap has no counterpart at
        this scale).
        """
        s, runs = self.settings, self.table1_runs
        inout = self.inout_evidence()
        m = max(len(SETUPS_TESTS), len(self.evidence()))
        n_t1 = int(((runs["method"] != "supervised") & runs["beats_floor"]).sum())
        n17 = len(set(runs.loc[runs.setup == BASE_SETUP, "seed"]) & set(runs.loc[runs.method == "supervised", "seed"]))
        d_n = plan_n(0.5, 1.0, alpha=alpha, m=m)
        n_setups = len(s["setups"])
        plan = {  # claim: (unit, units now, SESOI, planned n, encoders per unit)
            "S10": ("encoder pair with snapshots", 1, "d = 0.5", d_n, 2),
            "S13": ("SSL run (setup × seed)", n_t1, "|τ| = 0.2", plan_n_kendall(0.2, alpha=alpha, m=m), 2),
            "S15": ("replicate (a pair per overlap ratio)", 1, "d = 0.5", d_n, 2 * len(s["overlaps"])),
            "S16": ("split (a pair per setup)", 1, "d = 0.5", d_n, 2 * n_setups),
            "S17": ("seed (SimCLR and supervised pairs)", n17, "d = 0.5", d_n, 4),
            "S18": ("split (SimCLR and supervised pairs)", 1, "d = 0.5", d_n, 4),
            "S26": ("split (a pair per setup)", 1, "d = 0.5", d_n, 2 * n_setups),
            "S27": ("encoder pair", 1, "d = 0.5", d_n, 2),
            "S28": (
                "replicate (a pair per training augmentation)",
                1,
                "d = 0.5",
                d_n,
                2 * len(s["train_augmentations"]),
            ),
            "S29": ("replicate (a pair per mask ratio)", 1, "d = 0.5", d_n, 2 * len(s["mask_ratios"])),
        }
        # The in/out levels replace the single pairs where they ran: a row trains one encoder per level it
        # adds (S17: the supervised one, SimCLR's is chapter 01b's; S27: none, it re-scores 01b's).
        new = {"S10": 1, "S17": 1, "S27": 0, "S28": len(s["train_augmentations"]), "S29": len(s["mask_ratios"])}
        for cid, (unit, tests) in inout.items():
            plan[cid] = (unit, min(len(d) for d in tests.values()), "d = 0.5", d_n, new[cid])
        df = pd.DataFrame.from_dict(
            plan, orient="index", columns=["unit", "n now", "SESOI", "planned n", "encoders per unit"]
        )
        df.index.name = "claim"
        df["encoders at planned n"] = df["planned n"] * df["encoders per unit"]
        minutes = self.minutes_per_encoder()
        df["CPU hours at planned n"] = df["encoders at planned n"] * minutes / 60
        return df

    def n_trained(self) -> int:
        """How many trained encoders the chapter's rows come from (untrained floors and snapshots not counted)."""
        if self.store is None:
            return 0
        enc = self.store.load("encoders")
        return int((enc.encoder.isin(self.encoder_keys) & (enc.kind == "trained")).sum())

    def minutes_per_encoder(self) -> float:
        """The median training time of the chapter's trained encoders in minutes (from the store; NaN without)."""
        if self.store is None:
            return float("nan")
        enc = self.store.load("encoders")
        enc = enc[enc.encoder.isin(self.encoder_keys) & (enc.kind == "trained")]
        return float(np.nanmedian(enc.train_wall_s) / 60) if len(enc) else float("nan")

    def tau_matrix(self) -> tuple[pd.DataFrame, pd.DataFrame]:
        """Kendall's τ and its p-value between every pair of setups' candidate scores (Table 13)."""
        cols = list(self.candidate_scores.columns)
        tau = pd.DataFrame(np.eye(len(cols)), index=cols, columns=cols)
        p = pd.DataFrame(np.zeros((len(cols), len(cols))), index=cols, columns=cols)
        for i, a in enumerate(cols):
            for b in cols[i + 1 :]:
                r = kendall_tau(self.candidate_scores[a], self.candidate_scores[b])
                tau.loc[a, b] = tau.loc[b, a] = r["tau"]
                p.loc[a, b] = p.loc[b, a] = r["p"]
        return tau, p

    # ---- claims -------------------------------------------------------------------------------------
    def evidence(self) -> dict:
        """The chapter's tests before correction, one Holm family (:func:`~memlib.verdicts.decide`): S13, S17
        (from the in/out rows where they ran, else the pairs per seed) and every part of S27–S29 from the in/out
        levels."""
        return self._evidence()[0]

    def _evidence(self) -> tuple[dict, np.ndarray, dict]:
        runs = self.table1_runs
        t1 = runs[(runs["method"] != "supervised") & runs["beats_floor"]]
        ev = {}
        if len(t1) >= 3:
            hi = kendall_test(t1["sslmem_calibrated"], t1["linear_acc"], "greater")
            lo = kendall_test(t1["sslmem_calibrated"], t1["linear_acc"], "less")
            ev["S13"] = Evidence(len(t1), hi["p"], lo["p"], None, hi["tau"], Sesoi(0.2, "a weak rank association"))
        diff = np.array([])
        sup = [c for c in self.candidate_scores.columns if c in SETUPS and SETUPS[c][0] == "supervised"]
        if sup:
            tr = runs[runs["beats_floor"]].set_index(["setup", "seed"])["sslmem_calibrated"]
            seeds = [x for x in self.settings["seeds"] if (sup[0], x) in tr.index and (BASE_SETUP, x) in tr.index]
            diff = np.array([tr[(sup[0], x)] - tr[(BASE_SETUP, x)] for x in seeds])
            if len(diff):
                why = "the paper's gap is at 100 epochs of ImageNet-scale training"
                ev["S17"] = mean_evidence(diff, sesoi=standardised_sesoi(diff, why=why))
        # The in/out levels decide S17 and S27–S29 where they ran (declared with the design: more units than the
        # single pairs; at cpu S17 has 56 encoder rows against 3 seeds of pairs).
        inout = self.inout_evidence()
        why = "an effect between in/out levels has no counterpart at the paper's scale"
        for cid, (_, tests) in inout.items():
            for k, d in tests.items():
                ev[k] = mean_evidence(d, sesoi=standardised_sesoi(d, why=why))
        return ev, diff, inout

    def claims(self, alpha: float = 0.05) -> pd.DataFrame:
        """Verdicts on S10, S13, S15–S18 and S26–S29 by :mod:`memlib.verdicts`, each over its unit of replication.

        S13 has one encoder pair per setup and seed, so its unit is the run. S17 and S27–S29 are decided from
        the in/out levels where they ran (:meth:`inout_evidence`: encoder rows as units, each claim's parts all
        needed, :func:`~memlib.verdicts.parts_status`); without them S17 is tested over seeds of pairs and
        S27–S29 rest on one pair per level. The other ablations (S10, S15, S16, S18, S26) run at the first seed
        with one encoder pair per level: the rule makes them inconclusive (one pair has no estimate of training
        noise); the statistic still reports what the test alone gives. Every test shares one Holm correction
        (:meth:`evidence`, :func:`~memlib.verdicts.decide`); S13's p is exact (or a permutation test with ties);
        the t-tests are refuted below their SESOI (d = 0.5 over units).
        """
        p = self.preset
        out: list[Claim] = []
        runs = self.table1_runs
        t1 = runs[(runs["method"] != "supervised") & runs["beats_floor"]]
        tau0, _ = self.tau_matrix()
        sup = [c for c in tau0.columns if c in SETUPS and SETUPS[c][0] == "supervised"]
        ev, diff, inout = self._evidence()
        ver = decide(ev, alpha=alpha)

        def add(cid, status, stat, n):
            test, unit = SETUPS_TESTS[cid]
            if cid in inout:
                test, unit = INOUT_TEST, inout[cid][0]
            out.append(Claim(cid, preset_status(p, status), stat, test, unit, n))

        def inout_claim(cid) -> bool:
            """Add claim ``cid`` from its in/out parts (all must hold); False where it has none."""
            if cid not in inout:
                return False
            tests = inout[cid][1]
            statuses = [ver[k].status for k in tests]
            parts = [
                f"{k.split(' ', 1)[1]}: {ver[k].estimate:+.3g} (Holm p {ver[k].p:.2g}; {ver[k].reason})" for k in tests
            ]
            n = min(len(d) for d in tests.values())
            add(
                cid,
                parts_status(statuses),
                f"{parts_count(statuses)}; " + "; ".join(parts) + f"; Holm over {len(ev)}",
                n,
            )
            return True

        def single(stat, unit="one encoder pair per level"):  # one unit: the test alone, never a verdict
            return verdict_rule(n=1, p=1.0, p_opposite=1.0).status, f"{stat}; {unit}: inconclusive"

        # S10: SSLMem keeps rising after the probe accuracy plateaus (in/out snapshots, else one pair's).
        d = self.dynamics
        best = d["linear_acc"].max()
        plateau = int(d.loc[d["linear_acc"] >= best - 0.01, "epoch"].min())
        end = int(d["epoch"].max())
        snaps = sorted(lv for t, lv in self.inout if t == "dynamics")
        if inout_claim("S10"):
            pass
        elif len(snaps) >= 2:
            add(
                "S10",
                INCONCLUSIVE,
                f"in/out snapshots: the mean accuracy peaks only at the last (epoch {snaps[-1]})",
                0,
            )
        elif plateau < end:
            a, b = self.dynamics_points[end], self.dynamics_points[plateau]
            w = st.wilcoxon(a, b, alternative="greater")
            add(
                "S10",
                *single(
                    f"accuracy within 1 pt of its best from epoch {plateau}; SSLMem of S_C there {b.mean():+.4f}, at "
                    f"epoch {end} {a.mean():+.4f} (Wilcoxon over points p = {w.pvalue:.2g})"
                ),
                1,
            )
        else:
            add("S10", INCONCLUSIVE, f"the accuracy peaks only at the last snapshot (epoch {end}): no plateau", 1)

        # S13: setups with more memorisation probe better (Kendall τ over SSL runs: setup × seed), on
        # calibrated SSLMem (declared), over the runs whose encoders beat their architecture's random floor.
        dropped = sorted(set(runs.loc[~runs["beats_floor"], "setup"]))
        note = f"; left out (below the random floor): {', '.join(dropped)}" if dropped else ""
        if "S13" in ver:
            v = ver["S13"]
            add(
                "S13",
                v.status,
                f"Kendall τ(calibrated SSLMem, linear acc) = {v.estimate:+.2f} over {len(t1)} SSL runs; Holm p = "
                f"{v.p:.2g} over {v.m}; {v.reason}; {v.sesoi}, reported only{note}",
                len(t1),
            )
        else:
            add("S13", INCONCLUSIVE, f"{len(t1)} SSL runs above the random floor (3 needed){note}", len(t1))

        # S15: 85 % ≈ 80 % and 70 % < 80 % overlap (declared parts; one pair per ratio).
        ov = self.overlap_points
        if all(k in ov for k in (0.7, 0.8, 0.85)):
            add(
                "S15",
                *single(
                    f"mean S_C score at 70 / 80 / 85 % overlap: {ov[0.7].mean():+.3f} / {ov[0.8].mean():+.3f} / "
                    f"{ov[0.85].mean():+.3f}"
                ),
                1,
            )

        # S16: SSL setups agree with each other more than with supervised (one split's rankings).
        tau, _ = self.tau_matrix()
        ssl = [c for c in tau.columns if c in SETUPS and SETUPS[c][0] != "supervised"]
        sup = [c for c in tau.columns if c in SETUPS and SETUPS[c][0] == "supervised"]
        if len(ssl) >= 2 and sup:
            within = [tau.loc[a, b] for i, a in enumerate(ssl) for b in ssl[i + 1 :]]
            across = [tau.loc[a, b] for a in ssl for b in sup]
            add(
                "S16",
                *single(
                    f"mean τ among SSL setups {np.mean(within):+.2f} ({len(within)} pairs of setups), SSL vs "
                    f"supervised {np.mean(across):+.2f}",
                    "one split (every τ shares its candidates and views)",
                ),
                1,
            )

        # S17: supervised has higher SSLMem than SimCLR after as many epochs (per seed: one pair each).
        if "S17" in inout:
            v, d = ver["S17"], inout["S17"][1]["S17"]
            stat = (
                f"supervised − SimCLR relative in/out memorisation per encoder row: mean {v.estimate:+.4f} over "
                f"{len(d)}; {v.sesoi}; Holm p = {v.p:.2g} over {v.m}; {v.reason}"
            )
            if len(diff):
                stat += "; the single pairs per seed (calibrated SSLMem): " + ", ".join(f"{x:+.4f}" for x in diff)
            add("S17", v.status, stat, len(d))
        elif sup:
            if "S17" in ver:
                v = ver["S17"]
                stat = "supervised − SimCLR calibrated SSLMem per seed: " + ", ".join(f"{x:+.4f}" for x in diff)
                sesoi = "no SESOI (no spread)" if v.sesoi is None else str(v.sesoi)
                add("S17", v.status, f"{stat}; {sesoi}; Holm p = {v.p:.2g} over {v.m}; {v.reason}", len(diff))
            else:
                add("S17", INCONCLUSIVE, "no seed has both setups above the random floor", 0)

        # S18: SSLMem and Feldman's memorisation share about half their top points (one split).
        if len(self.feldman):
            f = self.feldman.iloc[len(self.feldman) // 2]
            add(
                "S18",
                *single(
                    "; ".join(
                        f"overlap@{int(r.k)} = {r.overlap:.2f} (chance {r.chance:.2f}, p = {r['overlap p']:.2g})"
                        for _, r in self.feldman.iterrows()
                    )
                    + f"; Kendall τ = {f.tau:+.2f}",
                    "one split",
                ),
                1,
            )

        # S26: MAE has the highest Déjà Vu but the lowest SSLMem of the SSL setups (one pair per setup).
        dv = self.dejavu[self.dejavu["method"] != "supervised"]
        if "MAE-ViT" in dv.index and len(dv) >= 2:
            add(
                "S26",
                *single(
                    f"MAE-ViT ranks {dv['dejavu_gap'].rank(ascending=False)['MAE-ViT']:g} of {len(dv)} by Déjà Vu "
                    f"gap and {dv['sslmem'].rank()['MAE-ViT']:g} of {len(dv)} from the bottom by SSLMem (ties share "
                    "their mean rank); "
                    "Fashion-MNIST only (the CIFAR-10 vs ImageNet part is not tested)"
                ),
                1,
            )

        # S27: the training augmentation gives the highest SSLMem (one pair, several measuring augmentations).
        mp = self.measure_points
        train_aug = self.settings["train_augmentation"]
        if inout_claim("S27"):
            pass
        elif train_aug in mp and len(mp) >= 2:
            add("S27", *single(f"highest mean: {max(mp, key=lambda a: mp[a].mean())} (trained with {train_aug})"), 1)

        # S28: crops memorise more than noise or masking, and probe better (one pair per augmentation).
        ta, tp = self.train_aug, self.train_aug_points
        if inout_claim("S28"):
            pass
        elif "crop_flip" in tp and len(tp) >= 2:
            add(
                "S28",
                *single(
                    "mean S_C score: "
                    + ", ".join(f"{a} {v.mean():+.3f}" for a, v in tp.items())
                    + "; linear acc: "
                    + ", ".join(f"{a} {ta.loc[a, 'linear acc']:.3f}" for a in tp)
                ),
                1,
            )

        # S29: MAE memorisation and accuracy peak at a 75 % mask ratio (one pair per ratio).
        mr = self.mask_ratio
        if inout_claim("S29"):
            pass
        elif 0.75 in mr.index and len(mr) >= 2:
            add(
                "S29",
                *single(f"SSLMem peaks at {mr['SSLMem'].idxmax():g}, accuracy at {mr['linear acc'].idxmax():g}"),
                1,
            )

        return claims_table(sorted(out, key=lambda c: int(c.id[1:])))


#: The in/out tables (:func:`~memlib.experiments.setups_evidence.inout_designs`) and the claim each decides.
INOUT_TABLES = {"dynamics": "S10", "supervised": "S17", "measure_aug": "S27", "train_aug": "S28", "mask_ratio": "S29"}

#: The test of every claim decided from the in/out levels.
INOUT_TEST = (
    "one-sided paired t-test over encoder rows of a difference between in/out levels, against 0 and a SESOI of "
    "d = 0.5; Holm over the chapter's tests"
)

#: The test and unit of replication behind each claim of :meth:`SetupsRun.claims`.
SETUPS_TESTS = {
    "S10": ("Wilcoxon, S_C at the accuracy plateau vs the end (one pair)", "encoder pair"),
    "S13": (
        "one-sided Kendall τ(calibrated SSLMem, linear accuracy), exact or permutation p; Holm with S17",
        "SSL run (setup × seed)",
    ),
    "S15": ("mean score per overlap ratio (one pair each)", "encoder pair"),
    "S16": ("Kendall τ between setups' rankings (one split)", "split"),
    "S17": (
        "one-sided t-test over seeds of supervised − SimCLR calibrated SSLMem, against 0 and a SESOI of "
        "d = 0.5; Holm with S13",
        "seed (one pair per setup)",
    ),
    "S18": ("overlap@k against a permutation null (one split)", "split"),
    "S26": ("rank of MAE by SSLMem and by Déjà Vu gap (one pair per setup)", "encoder pair"),
    "S27": ("highest mean per measuring augmentation (one pair)", "encoder pair"),
    "S28": ("mean score per training augmentation (one pair each)", "encoder pair"),
    "S29": ("mean score per mask ratio (one pair each)", "encoder pair"),
}

#: The tables of a SetupsRun, written as CSV into its run folder.
TABLES = (
    "table1_runs",
    "candidate_scores",
    "feldman",
    "overlap",
    "measure_aug",
    "train_aug",
    "mask_ratio",
    "dejavu",
    "dynamics",
    "floor",
)


def _candidates(run: SSLMemRun, kind: str = "score") -> np.ndarray:
    return run.scores(kind)["candidate"]


def _row(run: SSLMemRun, **extra) -> dict:
    f = run.probe[run.probe["family"] == "f"]
    g = run.probe[run.probe["family"] == "g"]
    sc = run.scores()
    return {
        **extra,
        "sslmem": float(sc["candidate"].mean()),
        # The pair's offset removed: minus its mean on S_E, points neither f nor g trained on (chapter 01).
        "sslmem_calibrated": float(sc["candidate"].mean() - sc["extra"].mean()),
        "sslmem_raw": float(_candidates(run, "raw").mean()),
        "linear_acc": float(f["linear_acc"].mean()),
        "linear_acc_g": float(g["linear_acc"].mean()),
        "knn_acc": float(f["knn_acc"].mean()),
        "n_candidates": int(len(_candidates(run))),
    }


@dataclass
class SetupsExtras:
    """What chapter 06 measures beyond its SSLMem runs, read from stored rows (see
    :mod:`~memlib.experiments.setups_evidence`).

    ``measure``: the base setup's scores with each measuring augmentation (Table 8); ``label_prob``: the
    supervised setup's softmax probability of each candidate's label per family (Feldman's memorisation,
    Table 12), or ``None`` without a supervised setup; ``dejavu``: per Table 1 setup, its Déjà Vu result
    (Table 4); ``snapshots``: per snapshot epoch of the base pair, f's probe accuracies and loss and the
    candidates' and shared points' raw scores (Fig. 2b).
    """

    measure: dict  # augmentation → SSLMemResult over the base run's scored points
    label_prob: dict | None  # {"f": (members, candidates), "g": ...}
    dejavu: dict  # setup → DejaVuResult
    snapshots: dict  # epoch → {"loss", "linear_acc", "knn_acc", "candidate": raw, "shared": raw}


def setups_analysis(
    p: Preset, s, runs: dict, floor: pd.DataFrame, extras: SetupsExtras, provenance: dict, path: Path
) -> SetupsRun:
    """Chapter 06's tables from its runs (``(table, label, seed)`` → :class:`.SSLMemRun`, as planned by
    :func:`plan`), the untrained floor per architecture (column ``arch``, the first seed's probe sets) and its
    ``extras``; nothing is trained or scored here."""
    seed0 = s["seeds"][0]
    t1_rows, cand_cols = [], {}
    for table, name, rp, seed in plan(p, s):
        if table != "table1":
            continue
        run = runs[(table, name, seed)]
        t1_rows.append(_row(run, setup=name, method=rp.method, arch=rp.arch, seed=seed))
        if seed == seed0:
            cand_cols[name] = _candidates(run)
    table1_runs = pd.DataFrame(t1_rows)
    # f's and g's accuracies over the setup's seeds against the floor of its architecture; a setup whose
    # encoders do not beat it is uninformative and left out of the claims.
    accs = {n: g[["linear_acc", "linear_acc_g"]].to_numpy().ravel() for n, g in table1_runs.groupby("setup")}
    table1_runs["beats_floor"] = [
        bool(beats_floor(accs[r.setup], floor.loc[floor["arch"] == r.arch, "linear_acc"])["informative"])
        for r in table1_runs.itertuples()
    ]

    # Feldman's supervised memorisation (Table 12): mean p(y|x) under f minus under g.
    feldman_rows = []
    sup = [n for n in s["setups"] if SETUPS[n][0] == "supervised"]
    if sup and extras.label_prob is not None:
        lp = extras.label_prob
        cand_cols["Feldman (supervised)"] = lp["f"].mean(0) - lp["g"].mean(0)
        ssl_scores, fm = cand_cols[BASE_SETUP], cand_cols["Feldman (supervised)"]
        rng = np.random.default_rng(seed0)
        for k in s["top_k"]:
            if k >= len(fm):  # the top k of all candidates is every candidate: overlap 1 by construction
                continue
            ov = overlap_at_k(ssl_scores, fm, k)
            # Chance: the overlap of two random top-k sets (permutations of one scoring).
            null = np.array([overlap_at_k(rng.permutation(ssl_scores), fm, k) for _ in range(2000)])
            feldman_rows.append(
                {
                    "k": k,
                    "overlap": ov,
                    "chance": float(null.mean()),
                    "overlap p": float((1 + (null >= ov).sum()) / (1 + len(null))),
                    **kendall_tau(ssl_scores, fm),
                }
            )
    candidate_scores = pd.DataFrame(cand_cols)

    # Table 7: overlap ratio; Table 9: training augmentation and MAE mask ratio (first seed).
    def ablation(table: str, key: str) -> tuple[pd.DataFrame, dict]:
        rows, pts = [], {}
        for _, value, rp, seed in [r for r in plan(p, s) if r[0] == table]:
            run = runs[(table, value, seed)]
            pts[value] = _candidates(run)
            r = _row(run)
            rows.append(
                {
                    key: value,
                    "SSLMem": r["sslmem"],
                    "SSLMem calibrated": r["sslmem_calibrated"],
                    "SSLMem raw": r["sslmem_raw"],
                    "linear acc": r["linear_acc"],
                    "kNN acc": r["knn_acc"],
                    "n": r["n_candidates"],
                    "shared": rp.shared,
                    "candidate": rp.candidate,
                }
            )
        cols = [key, "SSLMem", "SSLMem calibrated", "SSLMem raw", "linear acc", "kNN acc", "n", "shared", "candidate"]
        return pd.DataFrame(rows, columns=cols).set_index(key), pts  # columns: an ablation may have no levels

    overlap, overlap_points = ablation("overlap", "overlap")
    train_aug, train_aug_points = ablation("train_aug", "train_augmentation")
    mask_ratio, mask_ratio_points = ablation("mask_ratio", "mask_ratio")

    # Table 8: the base setup's encoders measured with other augmentations (same views seed).
    base = runs[("table1", BASE_SETUP, seed0)]
    cand = base.subset == "candidate"
    measure_rows, measure_points = [], {}
    for a, res in extras.measure.items():
        c = res.score[cand]
        measure_points[a] = c
        lo_hi = mean_ci(c)
        measure_rows.append(
            {
                "augmentation": a,
                "SSLMem": lo_hi[0],
                "ci95 low": lo_hi[1],
                "ci95 high": lo_hi[2],
                "SSLMem raw": float(res.raw[cand].mean()),
                "trained with": a == p.augmentation,
            }
        )
    measure_aug = pd.DataFrame(measure_rows).set_index("augmentation")

    # Table 4: Déjà Vu beside SSLMem, for every Table 1 setup at the first seed.
    dv_rows = []
    for name, res in extras.dejavu.items():
        run = runs[("table1", name, seed0)]
        sm = res.summary()
        dv_rows.append(
            {
                "setup": name,
                "method": SETUPS[name][0],
                "sslmem": float(_candidates(run).mean()),
                "dejavu_gap": sm["gap"],
                "dejavu_memorised": sm["memorised"],
                "crop_acc_f": sm["acc_f"],
                "crop_acc_g": sm["acc_g"],
                "linear_acc": _row(run)["linear_acc"],
            }
        )
    dv = pd.DataFrame(dv_rows).set_index("setup")

    # Fig. 2b: the base setup's first f and g pair over training, from its snapshots.
    dyn_rows, dynamics_points = [], {}
    for e, snap in sorted(extras.snapshots.items()):
        c = snap["candidate"]
        dynamics_points[e] = c
        top = np.sort(c)[-max(1, len(c) // 10) :]
        dyn_rows.append(
            {
                "epoch": e,
                "loss": snap["loss"],
                "linear_acc": snap["linear_acc"],
                "knn_acc": snap["knn_acc"],
                "sslmem_raw": float(c.mean()),
                "sslmem_top10": float(top.mean()),
                "shared_raw": float(snap["shared"].mean()),
            }
        )
    distinct = {id(r): r for r in runs.values()}
    return SetupsRun(
        p,
        s,
        table1_runs,
        candidate_scores,
        pd.DataFrame(feldman_rows),
        overlap,
        measure_aug,
        measure_points,
        train_aug,
        train_aug_points,
        mask_ratio,
        mask_ratio_points,
        overlap_points,
        dv,
        pd.DataFrame(dyn_rows),
        dynamics_points,
        provenance,
        Path(path),
        {"sslmem_experiments": len(distinct)},
        floor,
    )
