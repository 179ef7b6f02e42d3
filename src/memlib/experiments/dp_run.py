"""Differential privacy against memorisation (SSLMem paper §4.6, Table 5; localisation claim L9).

MAE encoders (a BatchNorm-free ViT) are trained at several privacy levels, each
with f's family on S_S ∪ S_C and g's on S_S ∪ S_I:

- **MAE (no DP)**: the ordinary trainer (:func:`~memlib.training.loop.train`), no clipping, no noise; the
  paper's non-private baseline and the ε = ∞ end of the ordering;
- **clip only**: DP-SGD's per-sample clipping with σ = 0 (ε spent = ∞), which separates the effect of
  clipping from that of the noise;
- **ε = 20, ε = 8, …**: DP-SGD as in ViP (:func:`~memlib.training.dp.dp_train`: Poisson sampling,
  per-sample clipping to C, Gaussian noise σ·C), σ from opacus' RDP accountant for the target ε at δ
  (the setting ``delta``, default 1e-5, below 1/(10·N) at the cpu preset's N = 150), which also reports
  the ε actually spent.

**Public pretraining** (setting ``public`` > 0). DP-SGD's noise on the averaged gradient has standard
deviation σ·C/(q·N) per coordinate; with N = 150 private points and ε = 8 it drowns every gradient
(at the cpu preset before this design, ε = 20 and 8 probed at the random floor). ViP itself pretrains
non-privately on public (synthetic) images and then trains privately. So here each member i first trains
an ordinary MAE on ``public`` Fashion-MNIST training images outside S_S ∪ S_C ∪ S_I (S_E comes from the
test split, so it is disjoint as well), and f_i and g_i of *every* level start from that encoder: the
levels differ only in the private training. DP-SGD runs full-batch by default (``dp_batch_size`` = None:
q = 1), which at a fixed number of epochs gives the least noise per step. ``public = 0`` trains from
scratch (the gpu and paper presets, whose splits use the whole training split).

**Floors.** Untrained encoders of the same ViT (:func:`~memlib.probing.floor.random_floor`, seeds no
trained encoder uses, on the run's probe sets) give the random floor. A level whose f and g encoders'
linear accuracies do not beat it (:func:`~memlib.probing.floor.beats_floor`) is *uninformative*: it is
shown, but its numbers enter no claim (the SSLMem of two encoders without a representation is alignment
noise). With public pretraining the public encoders are a second floor, reported beside the first (does
the private training move the accuracy at all?) but not used to exclude a level: an encoder at the public
floor has a real representation, and that DP kept the private points from changing it is the effect
under test, so dropping such levels would bias the claims towards the non-private ones.

**Scores.** The candidates S_C and the extra points S_E (test points no encoder trained on) are scored
with the same views; per f_i the calibrated SSLMem is the mean over S_C of (align_g − align_f_i) minus the
same mean over S_E (the declared score; the raw S_C mean is kept beside it). Each f encoder is also
linear-probed (g too, for the floor test) and its mean UnitMem over its training points is measured (L9).

**Claims** (S24 memorisation, S25 accuracy, L9 UnitMem fall as ε shrinks) by the one verdict rule
(:mod:`memlib.verdicts`), unit = f encoder: one-sided Kendall τ between the privacy level (MAE (no DP) >
ε = 20 > ε = 8) and each f encoder's value, in both directions, over the informative levels only.
"clip only" is not ranked: its ε is ∞ like the non-private baseline, so placing it between that and
ε = 20 would assert an ordering (clipping alone lowers memorisation) that the claims do not make.
A level with one f encoder carries no estimate of training noise, so the rule's n is the fewest f
encoders at any level; fewer than two informative levels leave the claim inconclusive.

**Why only MAE.** Its loss is a sum of per-sample losses, while a contrastive loss (SimCLR's NT-Xent)
couples every sample of a batch to the others, so one sample's gradient is not its own and per-sample
clipping does not bound its influence.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar

import numpy as np
import pandas as pd
import torch
from tqdm import tqdm

from ..data.augment import build_augmentation
from ..data.datasets import test_point_ids
from ..memorization.sslmem import sslmem
from ..memorization.unitmem import unitmem
from ..probing import beats_floor
from ..stats import kendall_floor, kendall_test
from ..training.dp import DPConfig
from ..verdicts import INCONCLUSIVE, Evidence, Sesoi, decide, mean_evidence, plan_n_kendall, preset_status
from .artifacts import DP
from .claims import Claim, claims_table
from .context import RunContext
from .encoders import EncoderSpec, family_specs, method_setup
from .inputs import load_with_splits, probe_rng, probe_sets
from .presets import Preset
from .probes import probe_encoder
from .settings import Settings
from .sslmem_experiment import random_floor_of

# fmt: off
#: DP settings per preset (training settings come from the SSLMem preset of the same name).
#: ``epsilons`` = target ε of the private levels (finite; the two baselines are always trained);
#: ``delta`` = δ of the accountant; ``max_grad_norm`` = per-sample clipping norm C; ``dp_batch_size`` =
#: DP-SGD's expected (Poisson) batch, None = N (q = 1); ``public`` = public pretraining images per member
#: (0 = train from scratch), trained for ``public_epochs`` at batch ``public_batch_size``. ``epochs`` and
#: ``batch_size`` are the private training's (``batch_size``: the ordinary trainer's, MAE (no DP)).
DP_SETTINGS: dict[str, dict] = {
    "smoke": {"epsilons": (20.0, 8.0), "shared": 32, "candidate": 16, "epochs": 1, "batch_size": 16,
              "public": 64, "public_epochs": 1, "public_batch_size": 32, "probe_train": 256, "probe_test": 128},
    # 2 cores, N = 150 private points, 3 encoders per family and level: 3 public MAEs (1,000 images, 30 epochs
    # of batch 25: ~175 s each) and 24 private trainings of 100 epochs from them (18 DP-SGD, full batch:
    # ~1.1 s/epoch; 6 ordinary, batch 50: ~0.8 s/epoch), timed with one thread per process while both cores
    # were busy: ~3,000 worker-seconds, ~25 min on 2 workers, plus ~4 min of scoring, UnitMem and probes
    # (30 encoders) in the main process: about 30 minutes.
    "cpu": {"epochs": 100, "models_per_family": 3, "public": 1000, "public_epochs": 30, "public_batch_size": 25,
            "probe_train": 2000, "probe_test": 1000},
    # The whole training split is private there (no public images left): DP-SGD from scratch at N ≈ 55k.
    "gpu": {"delta": 1e-6, "public": 0},
    "paper": {"delta": 1e-6, "public": 0},
}
# fmt: on

#: Display names of the two baselines (every table uses them).
PLAIN, CLIP = "MAE (no DP)", "clip only"

#: The test and unit of replication behind each claim of :meth:`DPRun.claims`.
DP_TESTS = {
    "S24": (
        "one-sided Kendall τ(privacy level, calibrated SSLMem of S_C), informative levels, clip only not ranked"
        "; exact or permutation p, Holm over the chapter",
        "f encoder",
    ),
    "S25": (
        "one-sided Kendall τ(privacy level, linear-probe accuracy), informative levels, clip only not ranked"
        "; exact or permutation p, Holm over the chapter",
        "f encoder",
    ),
    "L9": (
        "one-sided Kendall τ(privacy level, mean UnitMem of the MLP units), informative levels, clip only not ranked"
        "; exact or permutation p, Holm over the chapter",
        "f encoder",
    ),
}
#: What each claim ranks, with its name in the statistic.
_CLAIM_VALUES = {
    "S24": ("sslmem_calibrated", "calibrated SSLMem"),
    "S25": ("linear_acc", "linear acc"),
    "L9": ("unitmem", "UnitMem"),
}


def eps_label(eps: float) -> str:
    """The display name of a private level, e.g. ``"ε = 20"``."""
    return f"ε = {eps:g}"


@dataclass(frozen=True)
class DPSettings(Settings):
    """The DP sweep's own settings (see :data:`DP_SETTINGS`)."""

    TABLE: ClassVar[dict[str, dict]] = DP_SETTINGS

    epsilons: tuple[float, ...] = (20.0, 8.0)
    delta: float = 1e-5
    max_grad_norm: float = 1.0
    dp_batch_size: int | None = None
    public: int = 0
    public_epochs: int = 30
    public_batch_size: int = 25

    def __post_init__(self):
        eps = self._checked_epsilons()
        self._set("epsilons", tuple(sorted(eps, reverse=True)))
        d = self.delta
        if isinstance(d, bool) or not isinstance(d, (int, float)) or not 0 < d < 1:
            raise ValueError(f"delta={d!r} must be in (0, 1) and well below 1/N (N private points), e.g. 1e-5")
        for e in eps:
            DPConfig(epsilon=e, delta=float(d), max_grad_norm=self.max_grad_norm)  # raises naming the bad value
        for name, lo in (("public", 0), ("public_epochs", 1), ("public_batch_size", 1)):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < lo:
                raise ValueError(f"{name}={v!r} must be an int ≥ {lo}")
        b = self.dp_batch_size
        if b is not None and (isinstance(b, bool) or not isinstance(b, (int, np.integer)) or b < 1):
            raise ValueError(f"dp_batch_size={b!r} must be an int ≥ 1, or None for the whole private set (q = 1)")

    def _checked_epsilons(self) -> tuple[float, ...]:
        """The target ε values, each checked: finite and > 0 (∞ is the clip-only baseline, always trained)."""
        eps = tuple(self.epsilons) if isinstance(self.epsilons, (list, tuple)) else (self.epsilons,)
        if not eps:
            raise ValueError("epsilons=() is empty; give at least one finite target ε, e.g. (20, 8)")
        out = []
        for e in eps:
            if isinstance(e, bool) or not isinstance(e, (int, float)) or math.isnan(e) or not e > 0:
                raise ValueError(f"epsilons: epsilon={e!r} must be a number > 0, e.g. (20, 8)")
            if math.isinf(e):
                raise ValueError(
                    "epsilons: epsilon=inf is the 'clip only' baseline, which every run trains; give finite targets"
                )
            out.append(float(e))
        if len(set(out)) < len(out):
            raise ValueError(f"epsilons={eps!r} repeats a value")
        return tuple(out)


#: The training preset and DP settings for a preset, with overrides (None ignored).
dp_settings = DPSettings.for_preset


@dataclass(frozen=True)
class FineTuneSpec(EncoderSpec):
    """An :class:`~memlib.experiments.encoders.EncoderSpec` whose method starts from another spec's trained
    weights (``init``, the public-pretrained MAE) instead of its seeded initialisation.

    ``init``'s key is part of the cache key; ``init_path`` (its checkpoint) is where it is read from.
    """

    init: EncoderSpec | None = None
    init_path: str = field(default="", compare=False)

    def run_config(self) -> dict:
        rc = super().run_config()
        if self.init is not None:
            rc["init"] = self.init.key()
        return rc

    def build(self, train_set):
        method = super().build(train_set)
        if self.init is not None:
            ck = torch.load(self.init_path, map_location="cpu", weights_only=False)
            method.load_state_dict(ck["method"])
        return method


@dataclass
class DPRun:
    """Everything one DP sweep produced (see :func:`run_dp`).

    Attributes
    ----------
    results
        One row per f encoder: ``setting`` (display name), ``kind`` (``plain``, ``clip``, ``dp``),
        ``target_epsilon``, ``epsilon`` (spent, RDP accountant; ∞ without noise), ``noise_multiplier``
        (σ), ``delta`` (NaN without DP), ``steps``, ``member``, ``sslmem_calibrated`` (mean over S_C of
        ``align_g − align_f_i`` minus the same over S_E), ``sslmem_raw`` (the S_C mean alone),
        ``linear_acc``, ``knn_acc`` and ``unitmem`` (mean UnitMem of the ViT's MLP units over f's
        training points).
    encoders
        Probe accuracies of every trained encoder (f and g): ``setting``, ``family``, ``member``,
        ``linear_acc``, ``knn_acc``.
    levels
        One row per setting (index): ``kind``, ``target_epsilon``, ``privacy_rank`` (higher = less private;
        NaN for clip only, which no claim ranks), ``ranked``, ``acc`` (mean linear accuracy of f and g),
        ``floor_acc`` and ``floor_p`` (:func:`~memlib.probing.floor.beats_floor` against the random floor),
        ``informative``, ``public_acc``, ``public_p`` and ``beats_public`` (against the public-pretrained
        encoders; NaN without public pretraining or with fewer than 2 of them).
    floor
        Probe accuracies of the untrained encoders (the random floor).
    public
        Probe accuracies of the public-pretrained encoders (empty when ``public = 0``).
    points
        Per setting, each candidate's calibrated score (family means: raw minus the mean raw over S_E).
    """

    preset: Preset
    settings: dict
    seed: int
    results: pd.DataFrame
    levels: pd.DataFrame
    points: dict = field(default_factory=dict)
    encoders: pd.DataFrame = field(default_factory=pd.DataFrame)
    floor: pd.DataFrame = field(default_factory=pd.DataFrame)
    public: pd.DataFrame = field(default_factory=pd.DataFrame)
    provenance: dict = field(default_factory=dict)
    run_dir: Path | None = None
    timings: dict = field(default_factory=dict)
    measured: dict = field(default_factory=dict, repr=False)  # a computed run's scores, probes, ε spent, UnitMem
    store: object = None  # the evidence store the run was read from (None: computed, not stored)
    encoder_keys: list = field(default_factory=list, repr=False)  # store keys of every encoder behind the run

    def summary(self) -> pd.DataFrame:
        """Per setting: privacy spent, memorisation, accuracy, UnitMem and the floor tests (one row each)."""
        rows = []
        for name, lv in self.levels.iterrows():
            g = self.results[self.results.setting == name]
            rows.append(
                {
                    "setting": name,
                    "ε spent": _eps_text(g.epsilon.max()),
                    "σ": g.noise_multiplier.iloc[0],
                    "δ": g.delta.iloc[0],
                    "steps": int(g.steps.iloc[0]),
                    "f encoders": len(g),
                    "calibrated SSLMem": g.sslmem_calibrated.mean(),
                    "sd over f": g.sslmem_calibrated.std(ddof=1) if len(g) > 1 else float("nan"),
                    "raw SSLMem": g.sslmem_raw.mean(),
                    "linear acc (f, g)": lv.acc,
                    "UnitMem": g.unitmem.mean(),
                    "random floor p": lv.floor_p,
                    "informative": bool(lv.informative),
                    "public floor p": lv.public_p,
                    "ranked in claims": bool(lv.ranked and lv.informative),
                }
            )
        return pd.DataFrame(rows).set_index("setting")

    def planned_n(self, alpha: float = 0.05) -> pd.DataFrame:
        """The sample-size plan per claim: f encoders now (over the informative ranked settings), the SESOI
        (Kendall ``|τ|``), the f encoders a one-sided Kendall test needs for 80 % power to detect it at the
        chapter's Holm level (:func:`~memlib.verdicts.plan_n_kendall`, m = 3 claims), and the smallest p any
        order of the current encoders can reach."""
        used = [n for n, lv in self.levels.iterrows() if lv.ranked and lv.informative]
        r = self.results[self.results.setting.isin(used)]
        x = r.setting.map(self.levels.privacy_rank).to_numpy(dtype=float)
        best = kendall_floor(x) if len(x) >= 2 and np.ptp(x) > 0 else 1.0
        plan = plan_n_kendall(DP_TREND_SESOI, alpha=alpha, m=len(_CLAIM_VALUES))
        return pd.DataFrame(
            [{"claim": cid, "n now": len(r), "SESOI |τ|": DP_TREND_SESOI, "planned n": plan, "best p now": best}
             for cid in _CLAIM_VALUES]
        ).set_index("claim")  # fmt: skip

    def baseline_memorisation(self) -> dict:
        """Does the non-private baseline memorise? Its f encoders' calibrated SSLMem: n, mean, sd and the
        one-sided t-test over encoders (> 0). Reported beside the claims (they need it), not a claim itself."""
        x = self.results.loc[self.results.kind == "plain", "sslmem_calibrated"].to_numpy(dtype=float)
        e = mean_evidence(x)
        return {"n": len(x), "mean": float(x.mean()), "sd": float(x.std(ddof=1)) if len(x) > 1 else float("nan"),
                "p": float(e.p)}  # fmt: skip

    def claims(self, alpha: float = 0.05) -> pd.DataFrame:
        """Verdicts on S24 (memorisation), S25 (accuracy) and L9 (UnitMem) falling as ε shrinks.

        By :func:`dp_claims` over the informative, ranked levels (see the module docstring).
        """
        return dp_claims(self.results, self.levels, self.preset, alpha)


#: S24's, S25's and L9's SESOI as Kendall ``|τ|`` (declared; reported beside the verdict).
DP_TREND_SESOI = 0.2


def _eps_text(e: float) -> str:
    return "∞" if math.isinf(e) else f"{e:.2f}"


def _join(names) -> str:
    names = list(names)
    return " and ".join(names) if len(names) < 3 else f"{', '.join(names[:-1])} and {names[-1]}"


def _floor_text(lv: pd.Series) -> str:
    return f"linear acc {lv.acc:.3f} vs floor {lv.floor_acc:.3f}, p = {lv.floor_p:.2g}"


def dp_claims(results: pd.DataFrame, levels: pd.DataFrame, preset: Preset, alpha: float = 0.05) -> pd.DataFrame:
    """The claims S24, S25 and L9 from per-f-encoder ``results`` and per-setting ``levels`` (as in :class:`DPRun`).

    For each claim: one-sided Kendall τ between ``privacy_rank`` and the f encoders' value over the
    informative ranked levels, in the claimed (τ > 0: the value falls as ε shrinks) and the opposite
    direction (exact, or a permutation test where settings tie), with n = the fewest f encoders at any of
    those levels; Holm over the chapter's claims (:func:`~memlib.verdicts.decide`), then
    :func:`~memlib.verdicts.preset_status`. The SESOI (``|τ|`` :data:`DP_TREND_SESOI`) is declared and reported; a
    permutation τ has no test against it, so only the opposite direction refutes.
    """
    sesoi = Sesoi(DP_TREND_SESOI, "a weak monotone trend, standardised: the paper's ε levels are not this run's")
    ranked = levels[levels.ranked.astype(bool)]
    used = [s for s, lv in ranked.iterrows() if lv.informative]
    dropped = [s for s, lv in ranked.iterrows() if not lv.informative]
    why = "; ".join(f"{s}: {_floor_text(levels.loc[s])}" for s in dropped)
    r = results[results.setting.isin(used)]
    out, ev, info = [], {}, {}
    for cid, (col, name) in _CLAIM_VALUES.items():
        if len(used) < 2:
            continue
        x = r.setting.map(levels.privacy_rank).to_numpy(dtype=float)
        y = r[col].to_numpy(dtype=float)
        reps = int(r.groupby("setting").size().min())
        if len(r) >= 3 and np.ptp(y) > 0:
            hi, lo = kendall_test(x, y, "greater"), kendall_test(x, y, "less")
            tau, p, p_opp = hi["tau"], hi["p"], lo["p"]
        else:
            tau, p, p_opp = float("nan"), 1.0, 1.0
        ev[cid] = Evidence(reps, p, p_opp, None, tau, sesoi)
        info[cid] = (kendall_floor(x) if len(x) >= 2 and np.ptp(x) > 0 else 1.0, reps)
    ver = decide(ev, alpha=alpha)
    for cid, (col, name) in _CLAIM_VALUES.items():
        test, unit = DP_TESTS[cid]
        if len(used) < 2:
            verb = "does" if len(dropped) == 1 else "do"
            below = f"{_join(dropped)} {verb} not beat the random floor ({why}); " if dropped else ""
            stat = f"{below}{len(used)} informative ranked setting(s) of {len(ranked)}, 2 needed"
            out.append(Claim(cid, preset_status(preset, INCONCLUSIVE), stat, test, unit, len(r)))
            continue
        v, (floor, reps) = ver[cid], info[cid]
        means = ", ".join(f"{s} {r.loc[r.setting == s, col].mean():.4g}" for s in used)
        stat = (
            f"Kendall τ(privacy level, {name}) = {v.estimate:+.2f} over {len(r)} f encoders "
            f"({reps} per setting at fewest); means {means}; Holm p = {v.p:.2g} over {v.m}; {v.reason}; "
            f"{sesoi}, reported only"
        )
        if floor >= alpha:
            stat += f"; undecidable at this n: the best order gives p = {floor:.2g}"
        if dropped:
            stat += f"; left out (below the random floor): {why}"
        out.append(Claim(cid, preset_status(preset, v.status), stat, test, unit, len(r)))
    return claims_table(out)


def _check_sizes(p: Preset, s: DPSettings) -> None:
    """Settings that depend on the private set's size N = |S_S ∪ S_C|, checked before anything runs."""
    if not all(isinstance(v, (int, np.integer)) for v in (p.shared, p.candidate)):
        return  # fractions of the data set: N is known once it is loaded (dp_train checks δ < 1/N there)
    n = int(p.shared) + int(p.candidate)
    if not s.delta < 1 / n:
        raise ValueError(
            f"delta={s.delta!r} must be below 1/N = {1 / n:.3g} (N = {n} private points): δ ≥ 1/N allows "
            "publishing a whole point; use e.g. 1e-5"
        )
    if s.dp_batch_size is not None and s.dp_batch_size > n:
        raise ValueError(f"dp_batch_size={s.dp_batch_size} exceeds N = {n} private points; use ≤ {n} or None")


def public_indices(train_set, splits, n: int, seed: int) -> np.ndarray:
    """``n`` training-split indices outside S_S ∪ S_C ∪ S_I, drawn with ``seed`` (sorted): the public images."""
    used = np.concatenate([splits.shared, splits.candidate, splits.independent])
    rest = np.setdiff1d(np.arange(len(train_set)), used)
    if n > len(rest):
        raise ValueError(
            f"public={n} exceeds the {len(rest)} training images outside S_S ∪ S_C ∪ S_I; use public ≤ {len(rest)}"
        )
    return np.sort(np.random.default_rng(seed + 4242).choice(rest, size=n, replace=False))


def run_dp(
    preset="smoke", *, device="cpu", seed=0, cache_dir=None, data_root=None, progress=True, **overrides
) -> DPRun:
    """Train MAE at every privacy level and measure SSLMem, accuracy and UnitMem (paper §4.6, Table 5).

    ``preset`` is ``smoke``, ``cpu``, ``gpu`` or ``paper`` (:data:`DP_SETTINGS`) and ``seed`` seeds the
    splits, every encoder, the noise and the scoring views. ``overrides`` set ``epsilons``, ``delta``,
    ``max_grad_norm``, ``dp_batch_size``, ``public``, ``public_epochs``, ``public_batch_size`` or any
    :class:`~memlib.experiments.presets.Preset` field (``None`` is ignored); ``device``, ``cache_dir``,
    ``data_root`` and ``progress`` work as in :meth:`~memlib.experiments.context.RunContext.start`.
    Every setting is checked before anything is loaded or trained. Returns a :class:`DPRun`.
    """
    p, s = dp_settings(preset, **overrides)
    _check_sizes(p, s)
    ctx = RunContext.start(DP, p, device, seed, {"settings": s.to_dict()}, cache_dir, data_root, progress)
    dev = ctx.device
    train_set, test_set, splits = load_with_splits(p, seed, data_root)
    probe_tr, probe_te = probe_sets(p, train_set, test_set, probe_rng(seed))
    arch, aug_name = method_setup(p, "mae")
    aug = build_augmentation(aug_name, train_set.image_size)
    n_private = len(splits.f_train)
    public_specs, flat = dp_specs(p, s, train_set, splits, seed, ctx.cache)
    public_fitted = []
    if public_specs:  # public pretraining first: every private training starts from its member's encoder
        public_fitted = ctx.fit(public_specs, train_set, labels=[f"public{i}" for i in range(len(public_specs))])
    fitted = ctx.fit([sp for *_, sp in flat], train_set, labels=[f"{n} {fam}{i}" for n, fam, i, _ in flat])
    by_level: dict = {}
    for (name, fam, _, _), f in zip(flat, fitted):
        by_level.setdefault(name, {"f": [], "g": []})[fam].append(f)

    # S_C and S_E scored together, with the same views (ids as in run_sslmem).
    cand, extra = train_set.images[splits.candidate], test_set.images[splits.extra]
    images = torch.cat([cand, extra])
    ids = np.concatenate([splits.candidate, test_point_ids(splits.extra, train_set)])
    bs = min(p.batch_size, n_private)
    scored, probes, meta, units = {}, {}, {}, {}
    for name, kind, target, dp in tqdm(dp_levels(s), desc="setting", disable=not progress, leave=False):
        fams = by_level[name]
        scored[name] = sslmem(
            [f.encoder for f in fams["f"]], [f.encoder for f in fams["g"]], images, aug, ids=ids, **ctx.scoring(p)
        )
        for fam, members in fams.items():
            for i, f in enumerate(members):
                probes[(name, fam, i)] = probe_encoder(f.encoder, probe_tr, probe_te, p.probe_epochs, seed, dev)
                if fam != "f":
                    continue
                res = f.result
                um = unitmem(
                    f.encoder, train_set.images[splits.f_train], aug, ids=splits.f_train, seed=seed, device=dev
                )
                units[(name, i)] = float(np.concatenate(list(um.unitmem.values())).mean())
                meta[(name, i)] = {
                    "epsilon": getattr(res, "epsilon", math.inf),
                    "noise_multiplier": getattr(res, "noise_multiplier", 0.0),
                    "delta": getattr(res, "delta", float("nan")),
                    "steps": getattr(res, "steps", len(res.history) * (n_private // bs)),
                }

    # The random floor (untrained ViTs on the same probe sets) and the public floor (the pretrained start).
    floor = random_floor_of(p.replace(arch=arch), seed=seed, device=dev, data_root=data_root)
    public = pd.DataFrame(
        [
            {"member": i, **probe_encoder(f.encoder, probe_tr, probe_te, p.probe_epochs, seed, dev)}
            for i, f in enumerate(public_fitted)
        ],
        columns=["member", "linear_acc", "linear_train_acc", "knn_acc"],
    )
    prov = ctx.provenance({**p.to_dict(), **s.to_dict()})
    run = dp_analysis(p, s, seed, scored, probes, meta, units, floor, public, len(cand), prov, ctx.run_dir)
    run.timings = {"total_s": ctx.elapsed()}
    run.measured = {"scored": scored, "probes": probes, "meta": meta, "units": units}
    ctx.save(
        tables={
            "results": run.results,
            "encoders": run.encoders,
            "levels": run.levels.reset_index(),
            "random_floor": floor,
            "public_floor": public,
        },
        jsons={"provenance": prov, "claims": run.claims().reset_index().to_dict(orient="records")},
    )
    return run


def dp_levels(s: DPSettings) -> list[tuple]:
    """The settings of a sweep, in order: (name, kind, target ε, DPConfig or None): MAE (no DP), clip only,
    then each target ε."""
    levels = [
        (PLAIN, "plain", math.inf, None),
        (
            CLIP,
            "clip",
            math.inf,
            DPConfig(epsilon=math.inf, delta=s.delta, max_grad_norm=s.max_grad_norm, noise_multiplier=0.0),
        ),
    ]
    return levels + [
        (eps_label(e), "dp", e, DPConfig(epsilon=e, delta=s.delta, max_grad_norm=s.max_grad_norm))
        for e in s["epsilons"]
    ]


def dp_specs(p: Preset, s: DPSettings, train_set, splits, seed: int, cache) -> tuple[list, list]:
    """The encoders of a sweep: the public-pretrained MAEs (one per member, seeds no f or g member uses; empty
    with ``public = 0``) and, per setting, f's and g's families as (setting, family, member, spec), each
    starting from its member's public encoder."""
    arch, aug_name = method_setup(p, "mae")
    pm = p.replace(method="mae")
    dp_batch = s.dp_batch_size or len(splits.f_train)
    public_specs = []
    if s.public:
        public_idx = public_indices(train_set, splits, s.public, seed)
        pp = pm.replace(
            epochs=s.public_epochs, batch_size=s.public_batch_size, warmup_epochs=max(1, s.public_epochs // 10)
        )
        public_specs = [
            EncoderSpec.from_preset(pp, public_idx, seed * 1000 + 600 + i, arch=arch, augmentation=aug_name)
            for i in range(p.models_per_family)
        ]
    flat = []
    for name, _, _, dp in dp_levels(s):
        lp = pm if dp is None else pm.replace(batch_size=dp_batch)
        for fam, specs in family_specs(lp, splits, seed, arch=arch, augmentation=aug_name, dp=dp).items():
            for i, sp in enumerate(specs):
                if public_specs:
                    fields = {f.name: getattr(sp, f.name) for f in dataclasses.fields(EncoderSpec)}
                    init = public_specs[i]
                    sp = FineTuneSpec(**fields, init=init, init_path=str(init.checkpoint(cache)))
                flat.append((name, fam, i, sp))
    return public_specs, flat


def dp_analysis(
    p: Preset, s: DPSettings, seed: int, scored, probes, meta, units, floor, public, n_candidates: int, prov, run_dir
) -> DPRun:
    """The :class:`DPRun` of a sweep from its measurements: per setting the SSLMem result of S_C then S_E
    (``scored``); per (setting, family, member) the probe accuracies (``probes``); per (setting, f member) the
    privacy spent (``meta``) and mean UnitMem (``units``); the random and public floors."""
    arch, _ = method_setup(p, "mae")
    levels = dp_levels(s)
    rows, enc_rows, points = [], [], {}
    for name, kind, target, dp in levels:
        r = scored[name]
        is_c = np.arange(r.raw.shape[0]) < n_candidates
        points[name] = r.raw[is_c] - r.raw[~is_c].mean()
        for fam, n_members in (("f", len(r.align_f_models)), ("g", len(r.align_g_models))):
            for i in range(n_members):
                pr = probes[(name, fam, i)]
                enc_rows.append({"setting": name, "family": fam, "member": i, "linear_acc": pr["linear_acc"],
                                 "knn_acc": pr["knn_acc"]})  # fmt: skip
                if fam != "f":
                    continue
                per = r.align_g - r.align_f_models[i]
                m = meta[(name, i)]
                rows.append(
                    {
                        "setting": name,
                        "kind": kind,
                        "target_epsilon": target,
                        "epsilon": m["epsilon"],
                        "noise_multiplier": m["noise_multiplier"],
                        "delta": m["delta"],
                        "max_grad_norm": dp.max_grad_norm if dp is not None else float("nan"),
                        "steps": m["steps"],
                        "member": i,
                        "arch": arch,
                        "sslmem_calibrated": float(per[is_c].mean() - per[~is_c].mean()),
                        "sslmem_raw": float(per[is_c].mean()),
                        "linear_acc": pr["linear_acc"],
                        "knn_acc": pr["knn_acc"],
                        "unitmem": units[(name, i)],
                    }
                )
    results, encoders = pd.DataFrame(rows), pd.DataFrame(enc_rows)
    n_ranked = len(s["epsilons"]) + 1
    lv_rows = []
    for name, kind, target, _ in levels:
        accs = encoders.loc[encoders.setting == name, "linear_acc"].to_numpy()
        fl = beats_floor(accs, floor["linear_acc"])
        vs_public = beats_floor(accs, public["linear_acc"]) if len(public) >= 2 else None
        # Higher = less private: MAE (no DP) on top, then the target ε from the largest; clip only unranked.
        if kind == "dp":
            rank = float(n_ranked - 1 - s["epsilons"].index(target))
        else:
            rank = float(n_ranked) if kind == "plain" else float("nan")
        lv_rows.append(
            {
                "setting": name,
                "kind": kind,
                "target_epsilon": target,
                "privacy_rank": rank,
                "ranked": kind != "clip",
                "acc": float(accs.mean()),
                "floor_acc": fl["mean_floor"],
                "floor_p": fl["p"],
                "informative": fl["informative"],
                "public_acc": float(public["linear_acc"].mean()) if len(public) else float("nan"),
                "public_p": vs_public["p"] if vs_public else float("nan"),
                "beats_public": vs_public["informative"] if vs_public else None,
            }
        )
    lv = pd.DataFrame(lv_rows).set_index("setting")
    return DPRun(p, s, seed, results, lv, points, encoders, floor, public, prov, Path(run_dir) if run_dir else None)
