"""Does a non-private MAE memorise at this scale, and in which regime? The pilot behind chapter 04's design.

Chapter 04 asks whether DP lowers memorisation and accuracy; that question needs a regime in which the
non-private encoder memorises. At ``cpu`` the DP chapter's non-private MAE did not (calibrated SSLMem ≈ 0).
Chapter 01's scaling sweep shows, for SimCLR, memorisation growing when the same compute goes to fewer
points for longer. This pilot measures that for MAE (its own ViT and augmentation, trained from scratch as
``run_sslmem`` trains it), one SSLMem run per regime (training-set size, epochs) at equal compute per
encoder, each with its f and g families, S_E for calibration and the untrained-ViT floor:

- per encoder pair, the calibrated memorisation of S_C (mean over S_C of align_g − align_f_i, minus the same
  mean over S_E), tested over pairs by the verdict rule (Holm over the regimes, SESOI d = 0.5);
- f's linear-probe accuracy against untrained ViTs (:func:`~memlib.probing.floor.beats_floor`).

A regime *memorises* when the rule reproduces "calibrated memorisation > 0" and f beats the floor. The
regimes, encoders per family and sizes are declared in :data:`REGIME_SETTINGS` before the run; the first
``cpu`` regime has the DP chapter's private set size (150 points) and the encoders of chapter 03's λ = 0 MAE.
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass

import numpy as np
import pandas as pd

from ..evidence import open_store
from ..verdicts import REPRODUCED, decide, mean_evidence, preset_status, standardised_sesoi
from .encoders import method_setup
from .presets import Preset, get_preset
from .registry import Experiment, check_parameters, register_experiment
from .sslmem_evidence import fill_run, missing, run_design, stored_sslmem_run
from .sslmem_experiment import SSLMemRun
from .stored import chapter_provenance

EXPERIMENT = "mae-regime"

# fmt: off
#: The regimes of each preset, as (shared, candidate, epochs[, pairs]), each at about equal compute per encoder
#: (points × epochs), and the encoders per family where a regime names none. At cpu, 150 points × 200 epochs
#: (chapter 03's λ = 0 MAE, the DP chapter's private set size) and 50 points × 600 epochs, piloted at 3 pairs
#: each. The 150 × 200 regime is then topped up to 11 pairs: its pilot (+0.0083, sd 0.0088 over 3 pairs)
#: needs 11 for 80 % power at Holm over the two regimes (``verdicts.plan_n``), declared before the top-up.
#: The 50 × 600 regime (−0.0004) stays at its pilot's 3 pairs.
REGIME_SETTINGS = {
    "smoke": {"regimes": ((32, 16, 2), (24, 16, 3)), "models_per_family": 2},
    "cpu": {"regimes": ((125, 25, 200, 11), (42, 8, 600, 3)), "models_per_family": 3},
    "gpu": {"regimes": ((125, 25, 200), (42, 8, 600)), "models_per_family": 3},
    "paper": {"regimes": ((125, 25, 200), (42, 8, 600)), "models_per_family": 3},
}
# fmt: on


@dataclass(frozen=True)
class RegimeConfig:
    """The pilot's resolved config: the MAE preset, the regimes and the split seed."""

    preset: Preset
    regimes: tuple[tuple[int, int, int, int], ...]  # (shared, candidate, epochs, pairs)
    seed: int

    @property
    def settings(self) -> "RegimeConfig":
        """The pilot's own settings are its config (what provenance records)."""
        return self

    def to_dict(self) -> dict:
        return {"regimes": [list(r) for r in self.regimes], "models_per_family": self.preset.models_per_family}


def regime_config(preset="smoke", *, seed: int = 0, **params) -> RegimeConfig:
    """Resolve the pilot's config: ``regimes`` ((shared, candidate, epochs[, pairs]), …) and
    ``models_per_family`` (the pairs of a regime that names none) change the table's; anything else is refused
    with the closest name."""
    check_parameters(params, {"regimes", "models_per_family"}, EXPERIMENT)
    name = preset if isinstance(preset, str) else preset.name
    if name not in REGIME_SETTINGS:
        raise ValueError(f"preset={name!r} has no MAE regimes; choose one of {sorted(REGIME_SETTINGS)}")
    s = {**REGIME_SETTINGS[name], **{k: v for k, v in params.items() if v is not None}}
    regimes = tuple(tuple(int(x) for x in r) for r in s["regimes"])
    if not regimes or any(len(r) not in (3, 4) or min(r) < 1 for r in regimes):
        raise ValueError(
            f"regimes={s['regimes']!r} must be (shared, candidate, epochs) or (shared, candidate, epochs, pairs) "
            "tuples of ints ≥ 1"
        )
    regimes = tuple(r if len(r) == 4 else (*r, int(s["models_per_family"])) for r in regimes)
    p = get_preset(preset)
    arch, aug = method_setup(p, "mae")
    p = p.replace(method="mae", arch=arch, augmentation=aug, null_models=0, paired_seeds=False,
                  models_per_family=int(s["models_per_family"]))  # fmt: skip
    return RegimeConfig(p, regimes, int(seed))


def regime_designs(cfg: RegimeConfig, data_root=None) -> list:
    """One chapter-01 run design per regime, its rows recorded under this experiment."""
    return [
        run_design(
            cfg.preset.replace(shared=s, candidate=c, epochs=e, models_per_family=n),
            cfg.seed,
            True,
            data_root,
            experiment=EXPERIMENT,
            chapter="01c",
        )  # fmt: skip
        for s, c, e, n in cfg.regimes
    ]


@dataclass
class MAERegime:
    """The pilot's runs, one per regime, read from the evidence store."""

    preset: Preset
    runs: list[SSLMemRun]
    provenance: dict
    store: object = None
    encoder_keys: list = dataclasses.field(default_factory=list)

    def table(self, alpha: float = 0.05) -> pd.DataFrame:
        """Per regime: size, epochs, pairs, calibrated memorisation (``memorisation``, mean over pairs, and its
        ``sd``) with the rule's ``verdict`` on "> 0" (Holm over the regimes), f's linear accuracy against the
        untrained-ViT floor, and whether the regime memorises."""
        mem = [r.pair_memorisation() for r in self.runs]
        ev = {i: mean_evidence(x, sesoi=standardised_sesoi(x, why="pilot, no paper counterpart")) for i, x in
              enumerate(mem)}  # fmt: skip
        v = decide(ev, alpha=alpha)
        rows = []
        for i, (run, x) in enumerate(zip(self.runs, mem)):
            f_acc = run.probe.loc[run.probe.family == "f", "linear_acc"].to_numpy()
            fl = run.floor_check(alpha)
            rows.append(
                {
                    "train size": len(run.splits.f_train),
                    "epochs": run.preset.epochs,
                    "pairs": len(x),
                    "memorisation": float(x.mean()),
                    "sd": float(x.std(ddof=1)) if len(x) > 1 else np.nan,
                    "Holm p": v[i].p,
                    "verdict": preset_status(self.preset, v[i].status),
                    "f acc": float(f_acc.mean()),
                    "floor acc": float(fl["mean_floor"]),
                    "floor p": float(fl["p"]),
                    "memorises": bool(v[i].status == REPRODUCED and fl["informative"] and self.preset.meaningful),
                }
            )
        return pd.DataFrame(rows).set_index(["train size", "epochs"])

    def chosen(self) -> tuple[int, int] | None:
        """The (train size, epochs) of the regime with the largest calibrated memorisation among those that
        memorise, or ``None`` when none does."""
        t = self.table()
        t = t[t["memorises"]]
        return None if t.empty else tuple(int(v) for v in t["memorisation"].idxmax())


def _read(store, designs: list, data_root=None) -> MAERegime:
    runs = [stored_sslmem_run(store, d, train=False, data_root=data_root) for d in designs]
    keys = [k for d in designs for k in d.keys()]
    return MAERegime(designs[0].preset, runs, {}, store, keys)


def _run(cfg: RegimeConfig, *, store=None, train=True, device="cpu", cache_dir=None, data_root=None, progress=True):
    t0 = time.perf_counter()
    st = open_store(store, cfg.preset.name)
    designs = regime_designs(cfg, data_root)
    for d in designs:
        stored_sslmem_run(st, d, device=device, cache_dir=cache_dir, data_root=data_root, progress=progress,
                          train=train)  # fmt: skip
    out = _read(st, designs, data_root)
    stored = out.runs[0].provenance
    out.provenance = chapter_provenance(EXPERIMENT, cfg, ", ".join(d.name for d in designs), device,
                                        time.perf_counter() - t0, stored)  # fmt: skip
    return out


register_experiment(
    Experiment(
        name=EXPERIMENT,
        chapter="01c",
        notebook="01_sslmem",
        title="MAE at this scale: which regime memorises? (the pilot for chapter 04's private training)",
        claims=(),
        config=regime_config,
        design=regime_designs,
        run=_run,
        fill=fill_run,
        minutes_per_encoder=2.5,
        missing=missing,
    )
)
