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

import dataclasses
import json
import math
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from scipy import stats as st
from tqdm import tqdm

from ..data.augment import build_augmentation
from ..memorization.sslmem import sslmem
from ..memorization.unitmem import unitmem
from ..methods import build_method
from ..models import build_encoder, channel_stats
from ..provenance import git_commit, provenance
from ..stats import mean_ci
from ..training.dp import DPConfig, DPResult, dp_train
from ..training.loop import fingerprint
from .presets import Preset, claim_status
from .regularization_run import method_setup
from .removal_run import experiment_settings, probe_all, train_config
from .sslmem_run import default_cache_dir, load_with_splits, model_seed, probe_rng, probe_sets, validate

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

OWN_KEYS = ("epsilons", "max_grad_norm")


def dp_settings(preset: str | Preset, **overrides) -> tuple[Preset, dict]:
    """The training preset and DP settings for ``preset``, with ``overrides`` (None ignored)."""
    p, s = experiment_settings(DP_SETTINGS, OWN_KEYS, preset, overrides)
    eps = tuple(s["epsilons"])
    if not eps:
        raise ValueError("epsilons=() is empty; give at least one target ε, e.g. (inf, 20, 8)")
    for e in eps:
        DPConfig(epsilon=e, max_grad_norm=s["max_grad_norm"])  # raises naming the bad value
    s["epsilons"] = tuple(sorted((float(e) for e in eps), reverse=True))
    return p, s


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
            rows.append({"target ε": eps, "ε spent": g.epsilon.max(), "σ": g.noise_multiplier.iloc[0],
                         "sslmem raw": m, "ci95 low": lo, "ci95 high": hi, "sslmem score": g.sslmem_score.iloc[0],
                         "linear acc": g.linear_acc.mean(), "unitmem": g.unitmem.mean(), "n encoders": len(g)})
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
            out.append({"claim": cid, "status": status, "statistic": stat})
        return pd.DataFrame(out).set_index("claim")


def fit_dp_encoder(images, p: Preset, arch: str, aug_name: str, dp: DPConfig, model_seed: int, run_config: dict,
                   cache: Path, device, mean, std, progress: bool = True, desc: str = "dp") -> tuple:
    """Build an MAE and train it with DP-SGD, reusing a cached checkpoint of the same configuration.

    Returns
    -------
    tuple
        The trained method and its :class:`~memlib.training.dp.DPResult`.
    """
    torch.manual_seed(model_seed)
    enc = build_encoder(arch, images.shape[1], images.shape[-1], mean, std)
    method = build_method("mae", enc, augmentation=build_augmentation(aug_name, images.shape[-1]))
    cfg = train_config(p)
    rc = {**run_config, "arch": arch, "method": "mae", "augmentation": aug_name, "model_seed": model_seed}
    key = fingerprint({"train": cfg.to_dict(), "dp": dp.to_dict(), "run": rc})
    ckpt = cache / "dp_encoders" / key / "checkpoint.pt"
    res = dp_train(method, images, dataclasses.replace(cfg, seed=model_seed), dp, device=device,
                   checkpoint_path=ckpt, run_config=rc, progress=progress, desc=desc)
    return method, res


def run_dp(
    preset: str | Preset = "smoke",
    device: str = "cpu",
    seed: int = 0,
    cache_dir: str | Path | None = None,
    data_root: str | Path | None = None,
    progress: bool = True,
    **overrides,
) -> DPRun:
    """Train MAE with DP-SGD at several ε and measure SSLMem and accuracy (paper §4.6, Table 5).

    Parameters
    ----------
    preset
        ``smoke``, ``cpu``, ``gpu`` or ``paper`` (see :data:`DP_SETTINGS`).
    device
        ``"cpu"``, ``"cuda"`` or ``"auto"``.
    seed
        Seeds the splits, every encoder, the noise and the scoring views.
    cache_dir, data_root
        As in :func:`~memlib.experiments.sslmem_run.run_sslmem`.
    progress
        Show progress bars.
    **overrides
        ``epsilons``, ``max_grad_norm``, or any :class:`~memlib.experiments.presets.Preset`
        field; ``None`` values are ignored.

    Returns
    -------
    DPRun
    """
    p, s = dp_settings(preset, **overrides)
    dev = validate(p, device)
    t0 = time.perf_counter()
    commit = git_commit()
    train_set, test_set, splits = load_with_splits(p, seed, data_root)
    mean, std = channel_stats(train_set.images)
    cache = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    run_dir = cache / "dp" / fingerprint({"preset": p.to_dict(), "settings": s, "seed": seed})
    run_dir.mkdir(parents=True, exist_ok=True)
    sets = {p.dataset: probe_sets(p, train_set, test_set, probe_rng(seed))}
    arch, aug_name = method_setup(p, "mae")
    aug = build_augmentation(aug_name, train_set.image_size)
    candidates = train_set.images[splits.candidate]
    trained_at: list[str] = []
    rows, points = [], {}
    for eps in tqdm(s["epsilons"], desc="ε", disable=not progress, leave=False):
        dp = DPConfig(epsilon=eps, max_grad_norm=s["max_grad_norm"])
        fams: dict[str, list] = {"f": [], "g": []}
        spent: list[DPResult] = []
        for fam, idx in (("f", splits.f_train), ("g", splits.g_train)):
            for i in range(p.models_per_family):
                m, res = fit_dp_encoder(train_set.images[idx], p, arch, aug_name, dp, model_seed(seed, fam, i),
                                        {"dataset": p.dataset, "train_indices": fingerprint(idx.tolist())}, cache,
                                        dev, mean, std, progress=progress, desc=f"ε={eps:g} {fam}{i}")
                fams[fam].append(m.encoder)
                if fam == "f":
                    spent.append(res)
                trained_at.extend(res.commits)
        r = sslmem(fams["f"], fams["g"], candidates, aug, views=p.views, mode=p.mode, ids=splits.candidate,
                   batch_size=p.score_batch_size, seed=seed, device=dev, progress=progress)
        points[eps] = r.raw
        for i, (enc, res) in enumerate(zip(fams["f"], spent)):
            units = unitmem(enc, train_set.images[splits.f_train], aug, ids=splits.f_train, seed=seed,
                            device=dev).unitmem
            rows.append({"target_epsilon": eps, "epsilon": res.epsilon, "noise_multiplier": res.noise_multiplier,
                         "delta": res.delta, "steps": res.steps, "member": i, "arch": arch,
                         "sslmem_raw": float((r.align_g - r.align_f_models[i]).mean()),
                         "sslmem_score": float(r.score.mean()),
                         "linear_acc": probe_all(enc, sets, p.probe_epochs, seed, dev)[p.dataset],
                         "unitmem": float(np.concatenate(list(units.values())).mean())})
    results = pd.DataFrame(rows)
    wall = time.perf_counter() - t0
    prov = provenance({"preset": p.name, "seed": seed, **p.to_dict(), **s}, dev, wall, commit=commit,
                      trained_at=trained_at)
    run = DPRun(p, s, seed, results, points, prov, run_dir, {"total_s": wall})
    results.to_csv(run_dir / "results.csv", index=False)
    (run_dir / "provenance.json").write_text(json.dumps(prov, indent=1, default=str))
    return run
