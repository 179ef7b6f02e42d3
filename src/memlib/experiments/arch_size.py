"""Do encoders with more parameters memorise more, and probe better? The SSLMem paper's Table 15 (claim S14).

The paper trains SimCLR on ResNet-18 (11 M parameters), ResNet-50 (25 M) and WRN-50-2 (69 M) and finds
normalised SSLMem of 0.315, 0.339 and 0.350 with linear accuracy 71, 77 and 81 %. Here the architecture is
the only thing that changes: chapter 01's SimCLR recipe (the preset's data, epochs and augmentation) on a
ladder of ResNets of one depth and growing width (``resnet_narrow`` and its ×2, ×4 and ×8 widths, 0.3 M to
20 M parameters at ``cpu``), each an SSLMem run with its f and g families, S_E for calibration and the
untrained floor of its own architecture.

Declared before the run (unit, statistic, SESOI, planned n):

- **Part 1, memorisation.** Unit: the encoder pair (f_i, g_i). Per pair, the calibrated memorisation of
  S_C (mean over S_C of align_g − align_f_i, minus the same mean over S_E, so a pair's chance offset does
  not count). One-sided Kendall τ between parameter count and that value over every pair of the
  architectures whose f encoders beat their untrained floor (a permutation p: the architecture ties pairs).
- **Part 2, accuracy.** Unit: the f encoder. One-sided Kendall τ between parameter count and linear-probe
  accuracy over every f encoder.
- Holm over the two parts; both must hold (a refuted part refutes the claim). SESOI: Kendall τ 0.2, a weak
  monotone trend (the paper gives three architectures, no spread). Planned n: :func:`plan_n_kendall` at
  τ 0.2 and Holm over 2, beside the smallest p the design's ties allow.

The study has a split of its own (see :data:`SIZE_SETTINGS`).
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import pandas as pd

from ..evidence import open_store
from ..models import build_encoder
from ..stats import kendall_floor, kendall_test
from ..verdicts import (
    INCONCLUSIVE,
    Evidence,
    Sesoi,
    decide,
    parts_count,
    parts_status,
    plan_n_kendall,
    preset_status,
)
from .claims import Claim, claims_table
from .presets import Preset, get_preset
from .registry import Experiment, check_parameters, register_experiment
from .sslmem_evidence import fill_run, missing, run_design, stored_sslmem_run
from .sslmem_experiment import SSLMemRun
from .stored import chapter_provenance

EXPERIMENT = "arch-size"
CLAIM = "S14"
#: S14's SESOI as Kendall τ (declared; reported beside the verdict).
TREND_SESOI = 0.2

# fmt: off
#: The architectures of each preset (one depth, growing width), the encoder pairs per architecture and the
#: split. At cpu, 8 pairs each: 64 encoders and 12 untrained ones. A SimCLR step (batch 50, one thread, this
#: 2-core machine beside other training, benchmarks/bench_train_step.py) took 0.078, 0.23, 0.72 and 3.5 s for
#: the ×1, ×2, ×4 and ×8 widths, so an encoder's 1200 steps take about 1.6, 4.6, 14 and 70 minutes: about 12
#: CPU-hours on 2 workers in all, against 16 encoders in 140 s on an H200 shared by 16 processes (×1 and ×2,
#: scripts/gpu_session.sh). The study has a split of its own (7, unused by the other chapters), so every
#: architecture, the narrow one too, trains and is scored on one machine: chapter 01's narrow encoders were
#: trained on this CPU in float32, while a GPU trains with bf16 autocast.
SIZE_SETTINGS = {
    "smoke": {"archs": ("resnet_narrow", "resnet_narrow_x2"), "models_per_family": 2, "split": 7,
              "cpu_trains": ("resnet_narrow", "resnet_narrow_x2")},
    "cpu": {"archs": ("resnet_narrow", "resnet_narrow_x2", "resnet_narrow_x4", "resnet_narrow_x8"),
            "models_per_family": 8, "split": 7, "cpu_trains": ("resnet_narrow", "resnet_narrow_x2")},
    "gpu": {"archs": ("resnet18", "resnet50"), "models_per_family": 3, "split": 7, "cpu_trains": ()},
    "paper": {"archs": ("resnet18", "resnet50"), "models_per_family": 3, "split": 7, "cpu_trains": ()},
}
# fmt: on
#: ``cpu_trains``: the architectures a run on the CPU may train when the store lacks them (the notebook at
#: ``cpu`` must not start 12 CPU-hours of ×4 and ×8 training); the others come from the store, filled on a GPU
#: (``scripts/gpu_session.sh``) or deliberately with ``memlib-evidence add --chapter arch-size``.


@lru_cache(maxsize=None)
def parameter_count(arch: str, channels: int = 1, image_size: int = 28) -> int:
    """Parameters of the encoder ``arch`` (the backbone the probe reads; heads are not counted)."""
    return int(sum(p.numel() for p in build_encoder(arch, channels, image_size).parameters()))


@dataclass(frozen=True)
class SizeConfig:
    """The study's resolved config: the SimCLR preset, the architectures and the split seed (the table's split
    shifted by ``seed``, the convention of :mod:`~memlib.experiments.registry`)."""

    preset: Preset
    archs: tuple[str, ...]
    seed: int
    cpu_trains: tuple[str, ...] = ()

    @property
    def settings(self) -> "SizeConfig":
        """The study's own settings are its config (what provenance records)."""
        return self

    def to_dict(self) -> dict:
        return {"archs": list(self.archs), "models_per_family": self.preset.models_per_family, "split": self.seed}


def size_config(preset="smoke", *, seed: int = 0, **params) -> SizeConfig:
    """Resolve the study's config: ``archs`` (names of :data:`memlib.models.ENCODERS`, at least two) and
    ``models_per_family`` change the table's; anything else is refused with the closest name."""
    from ..models import ENCODERS

    check_parameters(params, {"archs", "models_per_family", "cpu_trains"}, EXPERIMENT)
    name = preset if isinstance(preset, str) else preset.name
    if name not in SIZE_SETTINGS:
        raise ValueError(f"preset={name!r} has no architecture ladder; choose one of {sorted(SIZE_SETTINGS)}")
    s = {**SIZE_SETTINGS[name], **{k: v for k, v in params.items() if v is not None}}
    archs = tuple(s["archs"])
    bad = [a for a in archs if a not in ENCODERS or a.startswith("vit")]
    if len(archs) < 2 or bad or len(set(archs)) < len(archs):
        raise ValueError(
            f"archs={archs!r} must name at least two different ResNets of memlib.models.ENCODERS (unknown or "
            f"not a ResNet: {bad}); e.g. ('resnet_narrow', 'resnet_narrow_x2')"
        )
    p = get_preset(preset)
    if p.method != "simclr":
        raise ValueError(f"the architecture study trains SimCLR; preset {name!r} has method={p.method!r}")
    p = p.replace(null_models=0, paired_seeds=False, models_per_family=int(s["models_per_family"]))
    return SizeConfig(p, archs, int(s["split"]) + int(seed), tuple(s["cpu_trains"]))


def size_designs(cfg: SizeConfig, data_root=None) -> list:
    """One chapter-01 run design per architecture, its rows recorded under this experiment."""
    out = []
    for a in cfg.archs:
        d = run_design(cfg.preset.replace(arch=a), cfg.seed, True, data_root, experiment=EXPERIMENT, chapter="01d")
        # Chapter 01's names leave SimCLR's architecture out; here it is what varies.
        out.append(dataclasses.replace(d, name=d.name.replace(f"split {cfg.seed}: ", f"split {cfg.seed}: {a}, ")))
    return out


@dataclass
class ArchSize:
    """The study's runs, one per architecture, read from the evidence store.

    ``absent`` lists the declared architectures whose runs the store does not hold yet (read with
    ``train=False``): their tables leave them out, and S14 waits for them (inconclusive, saying which)."""

    preset: Preset
    runs: list[SSLMemRun]
    provenance: dict
    store: object = None
    encoder_keys: list = dataclasses.field(default_factory=list)
    absent: list = dataclasses.field(default_factory=list)

    @property
    def archs(self) -> list[str]:
        return [r.preset.arch for r in self.runs]

    def pairs(self) -> pd.DataFrame:
        """One row per encoder pair: architecture, parameters, calibrated and raw memorisation of S_C, f's
        linear accuracy, and whether its architecture beats the untrained floor."""
        rows = []
        for run, fl in zip(self.runs, self.floors()):
            cal, raw = run.pair_memorisation("calibrated"), run.pair_memorisation("raw")
            acc = run.probe.loc[run.probe.family == "f", "linear_acc"].to_numpy()
            for i in range(len(cal)):
                rows.append(
                    {
                        "arch": run.preset.arch,
                        "params": parameter_count(run.preset.arch, run.images.shape[1], run.images.shape[-1]),
                        "pair": i,
                        "memorisation": float(cal[i]),
                        "raw": float(raw[i]),
                        "linear_acc": float(acc[i]) if i < len(acc) else np.nan,
                        "informative": bool(fl["informative"]),
                    }
                )
        return pd.DataFrame(rows)

    def floors(self) -> list[dict]:
        """Per architecture: its f encoders' linear accuracy against its untrained floor
        (:func:`~memlib.probing.floor.beats_floor`)."""
        return [run.floor_check() for run in self.runs]

    def table(self) -> pd.DataFrame:
        """Per architecture: parameters, pairs, calibrated memorisation (mean, sd over pairs), normalised SSLMem of
        S_C (the paper's statistic), f's linear accuracy and the untrained floor's."""
        pairs = self.pairs()
        rows = []
        for run, fl in zip(self.runs, self.floors()):
            g = pairs[pairs.arch == run.preset.arch]
            rows.append(
                {
                    "arch": run.preset.arch,
                    "params (M)": g.params.iloc[0] / 1e6,
                    "pairs": len(g),
                    "memorisation": g.memorisation.mean(),
                    "sd": g.memorisation.std(ddof=1) if len(g) > 1 else np.nan,
                    "SSLMem": float(run.scores()["candidate"].mean()),
                    "linear acc": g.linear_acc.mean(),
                    "floor acc": float(fl["mean_floor"]),
                    "beats floor": bool(fl["informative"]),
                }
            )
        return pd.DataFrame(rows).set_index("arch")

    def _parts(self) -> dict[str, tuple[pd.DataFrame, str]]:
        pairs = self.pairs()
        return {
            "memorisation": (pairs[pairs.informative], "memorisation"),
            "accuracy": (pairs.dropna(subset=["linear_acc"]), "linear_acc"),
        }

    def planned_n(self, alpha: float = 0.05) -> pd.DataFrame:
        """Per part: units now, the SESOI (Kendall τ), the units a one-sided Kendall test needs for 80 % power at
        α/2 (:func:`~memlib.verdicts.plan_n_kendall`), and the smallest p this design's ties allow."""
        rows = []
        for part, (g, _) in self._parts().items():
            rows.append(
                {
                    "part": part,
                    "unit": "encoder pair" if part == "memorisation" else "f encoder",
                    "n now": len(g),
                    "SESOI τ": TREND_SESOI,
                    "planned n": plan_n_kendall(TREND_SESOI, alpha=alpha, m=2),
                    "best p now": kendall_floor(g.params, "greater") if g.params.nunique() > 1 else 1.0,
                }
            )
        return pd.DataFrame(rows).set_index("part")

    def claims(self, alpha: float = 0.05) -> pd.DataFrame:
        """The verdict on S14 by :mod:`memlib.verdicts` (see the module docstring for the declared design)."""
        sesoi = Sesoi(TREND_SESOI, "a weak monotone trend, standardised: the paper gives three architectures")
        ev, tau = {}, {}
        for part, (g, col) in self._parts().items():
            if len(g) >= 3 and g.params.nunique() > 1 and np.ptp(g[col]) > 0:
                hi, lo = kendall_test(g.params, g[col], "greater"), kendall_test(g.params, g[col], "less")
                ev[part] = Evidence(len(g), hi["p"], lo["p"], None, hi["tau"], sesoi)
                tau[part] = hi["tau"]
            else:
                ev[part] = Evidence(len(g), 1.0, 1.0, None, None, sesoi)
                tau[part] = np.nan
        ver = decide(ev, alpha=alpha)
        statuses = [v.status for v in ver.values()]
        status = parts_status(statuses)
        if self.absent:  # the declared design is incomplete: the tests are shown, the claim is not decided
            status = INCONCLUSIVE
        dropped = [a for a, fl in zip(self.archs, self.floors()) if not fl["informative"]]

        def unit(part, n):
            return f"{n} {'pairs' if part == 'memorisation' else 'f encoders'}"

        stat = "; ".join(
            f"{part}: τ = {tau[part]:+.2f} over {unit(part, v.n)}, Holm p = {v.p:.2g}: {v.status}"
            if np.isfinite(tau[part])
            else f"{part}: no trend to test over {unit(part, v.n)} (3 units over 2 sizes needed): {v.status}"
            for part, v in ver.items()
        )
        stat = f"{parts_count(statuses)}; {stat}; {sesoi}, reported only"
        if dropped:
            stat += f"; left out of the memorisation part (below the untrained floor): {', '.join(dropped)}"
        if self.absent:
            stat = (
                f"interim, {len(self.runs)} of the {len(self.runs) + len(self.absent)} declared architectures "
                f"stored (not yet: {', '.join(self.absent)}), so no verdict; {stat}"
            )
        claim = Claim(
            CLAIM,
            preset_status(self.preset, status),
            stat,
            "one-sided Kendall τ(parameters, value), permutation p (tied architectures); Holm over the 2 parts",
            "encoder pair (memorisation), f encoder (accuracy)",
            int(min(v.n for v in ver.values())),
        )
        return claims_table([claim])


def _read(store, designs: list, data_root=None) -> ArchSize:
    held = [d for d in designs if not missing(store, d)]
    if len(held) < 2:
        raise LookupError(
            f"the store {store.path} lacks {len(designs) - len(held)} of the {len(designs)} architecture runs of "
            f"{EXPERIMENT!r} (at least two must be stored); fill it with `memlib-evidence add --chapter "
            f"{EXPERIMENT}` or, on a GPU, scripts/gpu_session.sh"
        )
    runs = [stored_sslmem_run(store, d, train=False, data_root=data_root) for d in held]
    keys = [k for d in held for k in d.keys()]
    absent = [d.preset.arch for d in designs if d not in held]
    return ArchSize(designs[0].preset, runs, {}, store, keys, absent)


def _run(cfg: SizeConfig, *, store=None, train=True, device="cpu", cache_dir=None, data_root=None, progress=True):
    t0 = time.perf_counter()
    st = open_store(store, cfg.preset.name)
    designs = size_designs(cfg, data_root)
    if train:
        on_cpu = str(device) == "cpu"
        for d in designs:
            if on_cpu and d.preset.arch not in cfg.cpu_trains and missing(st, d):
                continue  # left to a GPU (see SIZE_SETTINGS); read as absent
            stored_sslmem_run(st, d, device=device, cache_dir=cache_dir, data_root=data_root, progress=progress)
    out = _read(st, designs, data_root)
    out.provenance = chapter_provenance(EXPERIMENT, cfg, ", ".join(d.name for d in designs), device,
                                       time.perf_counter() - t0, out.runs[0].provenance)  # fmt: skip
    return out


register_experiment(
    Experiment(
        name=EXPERIMENT,
        chapter="01d",
        notebook="01_sslmem",
        title="Architecture size: do encoders with more parameters memorise more and probe better? (S14)",
        claims=(CLAIM,),
        config=size_config,
        design=size_designs,
        run=_run,
        fill=fill_run,
        minutes_per_encoder=22.6,  # the mean of the four widths' minutes per encoder above
        missing=missing,
    )
)
