"""Differential privacy against memorisation (SSLMem paper §4.6, Table 5).

MAE encoders are trained with DP-SGD as in ViP (:func:`~memlib.training.dp.dp_train`)
at ε = ∞, 20 and 8 (δ = 1/N): f's family on S_S ∪ S_C and g's on S_S ∪ S_I, each
at the same ε; the candidates S_C are scored with SSLMem and f is
linear-probed. The claims (S24, S25): memorisation and accuracy both fall as
ε shrinks. Only MAE is trained privately: its loss is a sum of per-sample
losses, while a contrastive loss (SimCLR's NT-Xent) couples every sample of a
batch to the others, so one sample's gradient is not its own and per-sample
clipping does not bound its influence.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar

import numpy as np
import pandas as pd
from scipy import stats as st
from tqdm import tqdm

from ..data.augment import build_augmentation
from ..memorization.sslmem import sslmem
from ..memorization.unitmem import unitmem
from ..stats import mean_ci
from ..training.dp import DPConfig
from .artifacts import DP
from .claims import Claim, claims_table
from .context import RunContext
from .encoders import family_specs, method_setup
from .inputs import load_with_splits, probe_rng, probe_sets
from .presets import Preset, claim_status
from .probes import probe_all
from .settings import Settings

# fmt: off
#: DP settings per preset (training settings come from the SSLMem preset of the same name).
#: ``epsilons`` = target ε per run (``inf`` = no noise); ``max_grad_norm`` = per-sample clipping norm C.
DP_SETTINGS: dict[str, dict] = {
    "smoke": {"epsilons": (math.inf, 20.0, 8.0), "max_grad_norm": 1.0, "shared": 32, "candidate": 16,
              "epochs": 1, "batch_size": 16, "probe_train": 256, "probe_test": 128},
    # 2 cores: 3 ε × 2 families × 2 encoders = 12 DP trainings of 150 points.
    "cpu": {"epsilons": (math.inf, 20.0, 8.0), "max_grad_norm": 1.0, "models_per_family": 2, "epochs": 200,
            "probe_train": 2000, "probe_test": 1000},
    "gpu": {"epsilons": (math.inf, 20.0, 8.0), "max_grad_norm": 1.0},
    "paper": {"epsilons": (math.inf, 20.0, 8.0), "max_grad_norm": 1.0},
}
# fmt: on


@dataclass(frozen=True)
class DPSettings(Settings):
    """The DP sweep's own settings (see :data:`DP_SETTINGS`)."""

    TABLE: ClassVar[dict[str, dict]] = DP_SETTINGS

    epsilons: tuple[float, ...]
    max_grad_norm: float = 1.0

    def __post_init__(self):
        eps = tuple(self.epsilons)
        if not eps:
            raise ValueError("epsilons=() is empty; give at least one target ε, e.g. (inf, 20, 8)")
        for e in eps:
            DPConfig(epsilon=e, max_grad_norm=self.max_grad_norm)  # raises naming the bad value
        self._set("epsilons", tuple(sorted((float(e) for e in eps), reverse=True)))


#: The training preset and DP settings for a preset, with overrides (None ignored).
dp_settings = DPSettings.for_preset


@dataclass
class DPRun:
    """Everything one DP sweep produced (see :func:`run_dp`).

    Attributes
    ----------
    results
        One row per f encoder: ``target_epsilon``, ``epsilon`` (spent, RDP
        accountant), ``noise_multiplier``, ``member``, ``sslmem_raw`` (mean over
        S_C of ``align_g − align_f`` for this member), ``sslmem_score`` (mean
        normalised score of the family), ``linear_acc`` and ``unitmem`` (mean
        UnitMem of the ViT's MLP units over f's training points; localisation
        paper, claim L9).
    points
        Per-point raw scores of S_C per target ε.
    """

    preset: Preset
    settings: dict
    seed: int
    results: pd.DataFrame
    points: dict
    provenance: dict
    run_dir: Path
    timings: dict = field(default_factory=dict)

    def summary(self) -> pd.DataFrame:
        """Per target ε: ε spent, σ, mean SSLMem over S_C (raw with 95 % CI, normalised) and probe accuracy."""
        rows = []
        for eps, g in self.results.groupby("target_epsilon", sort=False):
            m, lo, hi = mean_ci(self.points[eps])
            rows.append(
                {
                    "target ε": eps,
                    "ε spent": g.epsilon.max(),
                    "σ": g.noise_multiplier.iloc[0],
                    "sslmem raw": m,
                    "ci95 low": lo,
                    "ci95 high": hi,
                    "sslmem score": g.sslmem_score.iloc[0],
                    "linear acc": g.linear_acc.mean(),
                    "unitmem": g.unitmem.mean(),
                    "n encoders": len(g),
                }
            )
        return pd.DataFrame(rows).set_index("target ε")

    def claims(self, alpha: float = 0.05) -> pd.DataFrame:
        """Verdicts on S24 (memorisation falls with ε), S25 (accuracy falls with ε) and L9 (UnitMem falls with ε).

        One-sided Kendall's τ between the target ε (∞ ranks highest) and each
        f encoder's value, H1: τ > 0; fewer than 10 encoders are too few to
        call a failure to reject "not reproduced" (:func:`~memlib.experiments.presets.claim_status`).
        """
        r = self.results
        out = []
        for cid, col in (("S24", "sslmem_raw"), ("S25", "linear_acc"), ("L9", "unitmem")):
            if len(r) >= 3 and np.ptp(r[col]) > 0 and r.target_epsilon.nunique() > 1:
                t = st.kendalltau(st.rankdata(r.target_epsilon), r[col], alternative="greater")
                tau, p = float(t.statistic), float(t.pvalue)
            else:
                tau = p = float("nan")
            stat = f"τ = {tau:+.2f}, p = {p:.2g} (n = {len(r)})"
            status = claim_status(self.preset, self.seed, bool(p < alpha), n=len(r))
            out.append(Claim(cid, status, stat, "one-sided Kendall τ over target ε", "f encoder", len(r)))
        return claims_table(out)


def run_dp(
    preset="smoke", *, device="cpu", seed=0, cache_dir=None, data_root=None, progress=True, **overrides
) -> DPRun:
    """Train MAE with DP-SGD at several ε and measure SSLMem and accuracy (paper §4.6, Table 5).

    ``preset`` is ``smoke``, ``cpu``, ``gpu`` or ``paper`` (:data:`DP_SETTINGS`) and ``seed`` seeds the splits,
    every encoder, the noise and the scoring views. ``overrides`` set ``epsilons``, ``max_grad_norm`` or any
    :class:`~memlib.experiments.presets.Preset` field (``None`` is ignored); ``device``, ``cache_dir``,
    ``data_root`` and ``progress`` work as in :meth:`~memlib.experiments.context.RunContext.start`.
    Returns a :class:`DPRun`.
    """
    p, s = dp_settings(preset, **overrides)
    ctx = RunContext.start(DP, p, device, seed, {"settings": s.to_dict()}, cache_dir, data_root, progress)
    dev = ctx.device
    train_set, test_set, splits = load_with_splits(p, seed, data_root)
    sets = {p.dataset: probe_sets(p, train_set, test_set, probe_rng(seed))}
    arch, aug_name = method_setup(p, "mae")
    aug = build_augmentation(aug_name, train_set.image_size)
    candidates = train_set.images[splits.candidate]
    # Every encoder of every ε in one fit, so they share the worker pool.
    specs = {
        eps: family_specs(
            p.replace(method="mae"),
            splits,
            seed,
            arch=arch,
            augmentation=aug_name,
            dp=DPConfig(epsilon=eps, max_grad_norm=s["max_grad_norm"]),
        )
        for eps in s["epsilons"]
    }
    flat = [(eps, fam, i, sp) for eps, fams in specs.items() for fam, ss in fams.items() for i, sp in enumerate(ss)]
    fitted = ctx.fit([sp for *_, sp in flat], train_set, labels=[f"ε={eps:g} {fam}{i}" for eps, fam, i, _ in flat])
    by_eps: dict = {}
    for (eps, fam, _, _), f in zip(flat, fitted):
        by_eps.setdefault(eps, {"f": [], "g": []})[fam].append(f)
    rows, points = [], {}
    for eps in tqdm(s["epsilons"], desc="ε", disable=not progress, leave=False):
        fams = {fam: [f.encoder for f in fs] for fam, fs in by_eps[eps].items()}
        r = sslmem(fams["f"], fams["g"], candidates, aug, ids=splits.candidate, **ctx.scoring(p))
        points[eps] = r.raw
        for i, f in enumerate(by_eps[eps]["f"]):
            res = f.result
            units = unitmem(
                f.encoder, train_set.images[splits.f_train], aug, ids=splits.f_train, seed=seed, device=dev
            ).unitmem
            rows.append(
                {
                    "target_epsilon": eps,
                    "epsilon": res.epsilon,
                    "noise_multiplier": res.noise_multiplier,
                    "delta": res.delta,
                    "steps": res.steps,
                    "member": i,
                    "arch": arch,
                    "sslmem_raw": float((r.align_g - r.align_f_models[i]).mean()),
                    "sslmem_score": float(r.score.mean()),
                    "linear_acc": probe_all(f.encoder, sets, p.probe_epochs, seed, dev)[p.dataset],
                    "unitmem": float(np.concatenate(list(units.values())).mean()),
                }
            )
    results = pd.DataFrame(rows)
    prov = ctx.provenance({**p.to_dict(), **s.to_dict()})
    run = DPRun(p, s, seed, results, points, prov, ctx.run_dir, {"total_s": ctx.elapsed()})
    ctx.save(tables={"results": results}, jsons={"provenance": prov})
    return run
