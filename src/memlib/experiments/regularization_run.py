"""The alignment regulariser against memorisation (SSLMem paper §4.4, Fig. 4).

For each method (SimCLR, MAE) and each λ, f and g families are trained as in
:func:`~memlib.experiments.sslmem_experiment.run_sslmem` (f on S_S ∪ S_C, g on
S_S ∪ S_I) with the loss ``(1 − λ) L_SSL − λ E d(f(x'), f(x''))``
(:class:`~memlib.methods.regularizer.AlignmentRegularized`); the candidates
S_C are scored with SSLMem (with S_E, which calibrates each encoder's offset),
and f and g are linear-probed. The claims (S22, S23): memorisation and
accuracy both fall as λ grows.

Untrained encoders of each method's architecture give the random floor
(:func:`~memlib.experiments.sslmem_experiment.random_floor_of`). A (method, λ)
whose f and g encoders do not beat it (:func:`~memlib.probing.floor.beats_floor`)
learned nothing measurable: its memorisation numbers enter no claim (S22),
while its accuracy still counts for S23, whose subject is the accuracy lost.

λ = 0 trains the plain method with the same cache key as ``run_sslmem``, so
the SimCLR encoders of a finished SSLMem run at the same preset and seed are
loaded, not retrained.
"""

from __future__ import annotations

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
from ..methods import check_method
from ..methods.regularizer import check_lambda
from ..probing import beats_floor
from ..stats import kendall_floor, kendall_test
from ..verdicts import Evidence, Sesoi, decide, parts_count, parts_status, plan_n_kendall, preset_status
from .artifacts import REGULARIZATION
from .claims import Claim, claims_table
from .context import RunContext
from .encoders import family_specs, method_setup
from .inputs import load_with_splits, probe_rng, probe_sets
from .presets import Preset
from .probes import probe_all
from .settings import Settings
from .sslmem_experiment import random_floor_of

#: S22's and S23's SESOI as Kendall ``|τ|`` (declared; reported beside the verdict).
TREND_SESOI = 0.2

# fmt: off
#: Sweep settings per preset (training settings come from the SSLMem preset of the same name).
#: ``lambdas`` = the λ values (0 first: the unregularised baseline); ``methods`` = methods swept.
REGULARIZATION_SETTINGS: dict[str, dict] = {
    "smoke": {"lambdas": (0.0, 0.5), "methods": ("simclr", "mae"), "shared": 32, "candidate": 16, "epochs": 2,
              "batch_size": 16, "probe_train": 256, "probe_test": 128},
    # 2 cores: 4 λ × 2 methods × 2 families × 3 encoders = 48 trainings of 150 points, 200 epochs each
    # (600 steps of batch 50): about an hour. The grid stops at 0.3 because the previous cpu run (λ 0, 0.3,
    # 0.6, 2 per family) put SimCLR at 0.6 and MAE at 0.3 and 0.6 below the random floor, so they entered no
    # memorisation trend (S22); 3 members per family give each method up to 12 f encoders over 4 levels.
    "cpu": {"lambdas": (0.0, 0.1, 0.2, 0.3), "methods": ("simclr", "mae"), "models_per_family": 3,
            "null_models": 0, "epochs": 200, "probe_train": 2000, "probe_test": 1000},
    "gpu": {"lambdas": (0.0, 0.1, 0.2, 0.4, 0.6), "methods": ("simclr", "mae")},
    "paper": {"lambdas": (0.0, 0.1, 0.2, 0.4, 0.6), "methods": ("simclr", "mae")},
}
# fmt: on


@dataclass(frozen=True)
class RegularizationSettings(Settings):
    """The λ sweep's own settings (see :data:`REGULARIZATION_SETTINGS`)."""

    TABLE: ClassVar[dict[str, dict]] = REGULARIZATION_SETTINGS

    lambdas: tuple[float, ...]
    methods: tuple[str, ...] = ("simclr", "mae")

    def __post_init__(self):
        lams = tuple(check_lambda(x) for x in self.lambdas)
        if len(lams) < 2 or len(set(lams)) != len(lams):
            raise ValueError(
                f"lambdas={self.lambdas!r} must hold at least two distinct values in [0, 1), e.g. (0, 0.1, 0.2)"
            )
        methods = tuple(self.methods)
        if not methods:
            raise ValueError("methods=() is empty; give at least one method, e.g. ('simclr', 'mae')")
        for m in methods:
            check_method(m)
        self._set("lambdas", tuple(sorted(lams)))
        self._set("methods", methods)


#: The training preset and sweep settings for a preset, with overrides (None ignored).
regularization_settings = RegularizationSettings.for_preset


@dataclass
class RegularizationRun:
    """Everything one λ sweep produced (see :func:`run_regularization`).

    Attributes
    ----------
    results
        One row per f encoder: ``method``, ``lam``, ``member``, ``sslmem_raw``
        (mean over S_C of ``align_g − align_f`` for this member, g averaged over
        its family), ``sslmem_calibrated`` (the same minus its mean over S_E),
        ``sslmem_score`` (mean normalised score of the family on S_C, the same
        for every member), ``align_f``, ``linear_acc`` and ``informative``
        (whether the (method, λ)'s f and g encoders beat the random floor).
    floor
        Probe accuracies of untrained encoders, per architecture (column ``arch``).
    levels
        Per (method, λ): mean linear accuracy of f and g, the floor's, the one-sided p of
        :func:`~memlib.probing.floor.beats_floor` and ``informative``.
    points
        Per-point raw scores of S_C per (method, λ), for confidence intervals.
    """

    preset: Preset
    settings: dict
    seed: int
    results: pd.DataFrame
    points: dict
    provenance: dict
    run_dir: Path
    timings: dict = field(default_factory=dict)
    floor: pd.DataFrame = field(default_factory=pd.DataFrame)
    levels: pd.DataFrame = field(default_factory=pd.DataFrame)
    measured: dict = field(default_factory=dict, repr=False)  # a computed run's SSLMem results and accuracies
    store: object = None  # the evidence store the run was read from (None: computed, not stored)
    encoder_keys: list = field(default_factory=list, repr=False)  # store keys of every encoder behind the run

    def summary(self) -> pd.DataFrame:
        """Per (method, λ), over the f encoders (the unit): mean SSLMem on S_C, raw and calibrated (minus S_E),
        the calibrated value's spread over encoders, and mean probe accuracy."""
        g = self.results.groupby(["method", "lam"])
        return pd.DataFrame(
            {
                "SSLMem raw": g.sslmem_raw.mean(),
                "SSLMem calibrated": g.sslmem_calibrated.mean(),
                "sd over encoders": g.sslmem_calibrated.std(ddof=1),
                "linear acc": g.linear_acc.mean(),
                "n encoders": g.size(),
                "beats floor": g.informative.all(),
            }
        )

    def _used(self, col: str) -> pd.DataFrame:
        """The f encoders a quantity is judged on: memorisation only where the encoders beat the floor."""
        r = self.results
        return r if col == "linear_acc" else r[r.informative]

    def trends(self) -> pd.DataFrame:
        """Kendall's τ between λ and each f encoder's SSLMem (raw and calibrated) and probe accuracy, per method.

        One-sided (H1: τ < 0, the quantity falls as λ grows); SSLMem over the λ whose encoders beat the
        random floor only. Undefined (NaN) with fewer than three encoders.
        """
        rows = []
        for col in ("sslmem_raw", "sslmem_calibrated", "linear_acc"):
            for method, g in self._used(col).groupby("method"):
                if len(g) >= 3 and np.ptp(g[col]) > 0:
                    r = kendall_test(g.lam, g[col], "less")
                    tau, p = r["tau"], r["p"]
                else:
                    tau = p = float("nan")
                rows.append({"method": method, "quantity": col, "tau": tau, "p": p, "n": len(g)})
        return pd.DataFrame(rows).sort_values(["method", "quantity"], kind="stable").reset_index(drop=True)

    def planned_n(self, alpha: float = 0.05) -> pd.DataFrame:
        """The sample-size plan per claim and method: f encoders now, the SESOI (Kendall ``|τ|``), the encoders
        a one-sided Kendall test needs for 80 % power to detect it at α/m (m: every part of S22 and S23, the
        chapter's Holm family; :func:`~memlib.verdicts.plan_n_kendall`), and the smallest p any order of the
        current encoders can reach (above α: undecidable at this n, whatever the data)."""
        t = self.trends()
        t = t[t.quantity.isin(["sslmem_calibrated", "linear_acc"])]
        m = len(t)
        rows = []
        for cid, col in (("S22", "sslmem_calibrated"), ("S23", "linear_acc")):
            for r in t[t.quantity == col].itertuples():
                g = self._used(col)
                lam = g.loc[g.method == r.method, "lam"]
                rows.append(
                    {
                        "claim": cid,
                        "method": r.method,
                        "n now": int(r.n),
                        "SESOI |τ|": TREND_SESOI,
                        "planned n": plan_n_kendall(TREND_SESOI, alpha=alpha, m=m),
                        "best p now": kendall_floor(lam, "less") if len(lam) >= 2 and np.ptp(lam) > 0 else 1.0,
                    }
                )
        return pd.DataFrame(rows).set_index(["claim", "method"])

    def claims(self, alpha: float = 0.05) -> pd.DataFrame:
        """Verdicts on S22 (memorisation falls with λ) and S23 (accuracy falls with λ), by :mod:`memlib.verdicts`.

        The unit is the f encoder (one per λ and family member). Each method is a declared part of the claim
        ("for SimCLR and MAE"): per method, Kendall's τ between λ and the encoders' values is tested
        one-sided in the claimed (τ < 0) and the opposite direction (exact, or a permutation test with tied λ),
        Holm over every part of both claims (the chapter's family); the claim is reproduced when every method
        is, refuted when any is, partly (k of m parts, none refuted) otherwise. The SESOI (``|τ|`` 0.2) is declared
        and reported; a permutation τ has no test against it, so only the opposite direction refutes. A part
        whose best possible order cannot reach α at its n says so (undecidable by design). A preset that is not
        ``meaningful`` decides nothing.
        """
        t = self.trends()
        out = []
        sesoi = Sesoi(TREND_SESOI, "a weak monotone trend, standardised: the paper gives a figure only")
        ev, info = {}, {}
        # Declared: S22 is judged on calibrated SSLMem (S_C minus S_E per encoder), so an offset between the
        # families that changes with λ does not count; raw is shown beside it.
        for cid, col in (("S22", "sslmem_calibrated"), ("S23", "linear_acc")):
            tc = t[t.quantity == col].reset_index(drop=True)
            info[cid] = tc
            for r in tc.itertuples():
                g = self._used(col)
                g = g[g.method == r.method]
                if r.n >= 3 and np.ptp(g[col]) > 0:
                    p_less = kendall_test(g.lam, g[col], "less")["p"]
                    p_greater = kendall_test(g.lam, g[col], "greater")["p"]
                else:
                    p_less = p_greater = 1.0
                floor = kendall_floor(g.lam, "less") if r.n >= 2 and np.ptp(g.lam) > 0 else 1.0
                ev[(cid, r.method)] = (Evidence(int(r.n), p_less, p_greater, None, r.tau, sesoi), floor)
        ver = decide({k: e for k, (e, _) in ev.items()}, alpha=alpha)
        for cid, col in (("S22", "sslmem_calibrated"), ("S23", "linear_acc")):
            tc = info[cid]
            verdicts = [ver[(cid, r.method)] for r in tc.itertuples()]
            floors = [ev[(cid, r.method)][1] for r in tc.itertuples()]

            def levels_of(method, col):
                g = self._used(col)
                return g.loc[g.method == method, "lam"].nunique()

            def undecidable(floor):
                return (
                    f"; undecidable at this n: the best order gives p = {floor:.2g} ≥ {alpha}" if floor >= alpha else ""
                )

            stat = "; ".join(
                f"{r.method}: τ = {r.tau:+.2f}, Holm p = {v.p:.2g} (n = {r.n}){undecidable(fl)}: {v.status}"
                if np.isfinite(r.tau)
                else f"{r.method}: {r.n} encoder(s) at {levels_of(r.method, col)} λ level(s), no trend to test "
                f"(3 encoders over 2 levels needed): {v.status}"
                for r, v, fl in zip(tc.itertuples(), verdicts, floors)
            )
            if verdicts:
                stat = f"{parts_count([v.status for v in verdicts])}; {stat}; {sesoi}, reported only"
            n = int(tc.n.min()) if len(tc) else 0
            status = preset_status(
                self.preset, parts_status([v.status for v in verdicts]) if verdicts else "inconclusive"
            )
            if cid == "S22" and not self.results.informative.all():
                below = self.levels[~self.levels.informative]
                stat += "; left out (below the random floor): " + ", ".join(
                    f"{m} λ = {lam:g} (acc {r.acc:.3f} vs floor {r.floor_acc:.3f})" for (m, lam), r in below.iterrows()
                )
            test = "one-sided Kendall τ over λ per method (parts; exact or permutation p), Holm over the chapter" + (
                ", λ above the random floor" if cid == "S22" else ""
            )
            out.append(Claim(cid, status, stat, test, "f encoder", n))
        return claims_table(out)


def regularization_specs(p: Preset, s, splits, seed: int) -> dict:
    """The encoders of a sweep: per (method, λ), f's and g's families
    (:func:`~memlib.experiments.encoders.family_specs`) with the method's architecture and training augmentation."""
    return {
        (method, lam): family_specs(
            p.replace(method=method),
            splits,
            seed,
            lam=lam,
            **dict(zip(("arch", "augmentation"), method_setup(p, method))),
        )
        for method in s["methods"]
        for lam in s["lambdas"]
    }


def run_regularization(
    preset="smoke", *, device="cpu", seed=0, cache_dir=None, data_root=None, progress=True, **overrides
) -> RegularizationRun:
    """Sweep the alignment regulariser's λ (paper §4.4, Fig. 4) at a preset.

    The sweep is :data:`REGULARIZATION_SETTINGS` at ``preset`` (``smoke``, ``cpu``, ``gpu`` or ``paper``), changed
    by ``overrides`` (``lambdas``, ``methods`` or any :class:`~memlib.experiments.presets.Preset` field; ``None``
    is ignored); ``seed`` seeds the splits, every encoder and the scoring views. ``device``, ``cache_dir``,
    ``data_root`` and ``progress``: see :meth:`~memlib.experiments.context.RunContext.start`.
    Returns a :class:`RegularizationRun`.
    """
    p, s = regularization_settings(preset, **overrides)
    ctx = RunContext.start(REGULARIZATION, p, device, seed, {"settings": s.to_dict()}, cache_dir, data_root, progress)
    dev = ctx.device
    train_set, test_set, splits = load_with_splits(p, seed, data_root)
    # The probe sets of run_sslmem (same rng), so λ = 0 matches chapter 01's probe.
    sets = {p.dataset: probe_sets(p, train_set, test_set, probe_rng(seed))}
    # S_C and S_E are scored together: S_E, which neither family trained on, calibrates each encoder's offset.
    scored_images = torch.cat([train_set.images[splits.candidate], test_set.images[splits.extra]])
    ids = np.concatenate([splits.candidate, test_point_ids(splits.extra, train_set)])
    jobs = [(m, lam) for m in s["methods"] for lam in s["lambdas"]]
    # Every encoder of the sweep in one fit, so they share the worker pool.
    specs = regularization_specs(p, s, splits, seed)
    flat = [(job, fam, i, sp) for job, fams in specs.items() for fam, ss in fams.items() for i, sp in enumerate(ss)]
    fitted = ctx.fit(
        [sp for *_, sp in flat], train_set, labels=[f"{m} λ={lam:g} {fam}{i}" for (m, lam), fam, i, _ in flat]
    )
    encoders = {}
    for (job, fam, _, _), f in zip(flat, fitted):
        encoders.setdefault(job, {"f": [], "g": []})[fam].append(f.encoder)
    scored, accs, floors = {}, {}, {}
    for method, lam in tqdm(jobs, desc="λ sweep", disable=not progress, leave=False):
        arch, aug_name = method_setup(p, method)
        fams = encoders[(method, lam)]
        # Measured with the training augmentation, as the paper does.
        aug = build_augmentation(aug_name, train_set.image_size)
        scored[(method, lam)] = sslmem(fams["f"], fams["g"], scored_images, aug, ids=ids, **ctx.scoring(p))
        accs[(method, lam)] = {
            fam: [probe_all(enc, sets, p.probe_epochs, seed, dev)[p.dataset] for enc in fams[fam]] for fam in ("f", "g")
        }
        if arch not in floors:
            floors[arch] = random_floor_of(p, seed=seed, device=dev, data_root=data_root, arch=arch).assign(arch=arch)
    prov = ctx.provenance({**p.to_dict(), **s.to_dict()})
    run = regularization_analysis(p, s, seed, scored, accs, floors, len(splits.candidate), prov, ctx.run_dir)
    run.timings = {"total_s": ctx.elapsed()}
    run.measured = {"scored": scored, "accs": accs, "floors": floors}
    ctx.save(
        tables={"results": run.results, "floor": run.floor, "levels": run.levels.reset_index()},
        jsons={"provenance": prov},
    )
    return run


def regularization_analysis(
    p: Preset, s, seed: int, scored: dict, accs: dict, floors: dict, n_candidates: int, prov: dict, run_dir
) -> RegularizationRun:
    """The :class:`RegularizationRun` of a sweep from its measurements: per (method, λ), the SSLMem result of
    S_C then S_E (``scored``, with per-encoder alignments) and the linear-probe accuracies of f's and g's
    members (``accs``); per architecture, the untrained encoders' probe table (``floors``)."""
    rows, points, levels = [], {}, []
    for (method, lam), r in scored.items():
        arch, _ = method_setup(p, method)
        is_c = np.arange(r.raw.shape[0]) < n_candidates
        f_accs, g_accs = accs[(method, lam)]["f"], accs[(method, lam)]["g"]
        points[(method, lam)] = r.raw[is_c]
        fl = beats_floor(f_accs + g_accs, floors[arch]["linear_acc"])
        levels.append({"method": method, "lam": lam, "acc": fl["mean_trained"], "floor_acc": fl["mean_floor"],
                       "floor_p": fl["p"], "informative": bool(fl["informative"])})  # fmt: skip
        for i, acc in enumerate(f_accs):
            rows.append(
                {
                    "method": method,
                    "lam": lam,
                    "member": i,
                    "arch": arch,
                    "sslmem_raw": float((r.align_g - r.align_f_models[i])[is_c].mean()),
                    # minus the same encoders' mean on S_E (neither family trained on it): the pair's offset
                    "sslmem_calibrated": float(
                        (r.align_g - r.align_f_models[i])[is_c].mean() - (r.align_g - r.align_f_models[i])[~is_c].mean()
                    ),
                    "sslmem_score": float(r.score[is_c].mean()),
                    "align_f": float(r.align_f_models[i].mean()),
                    "linear_acc": acc,
                    "informative": bool(fl["informative"]),
                }
            )
    results = pd.DataFrame(rows)
    floor = pd.concat(list(floors.values()), ignore_index=True)
    levels = pd.DataFrame(levels).set_index(["method", "lam"])
    return RegularizationRun(p, s, seed, results, points, prov, Path(run_dir), {}, floor, levels)
