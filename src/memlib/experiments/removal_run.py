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
with a checkpoint keyed by a fingerprint of its configuration (:func:`fit_encoder`),
so a re-run, or another experiment with the same configuration, reuses it.
"""

from __future__ import annotations

import dataclasses
import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from scipy import stats as st
from tqdm import tqdm

from ..data.augment import build_augmentation
from ..data.datasets import ImageDataset, load_dataset
from ..memorization.sslmem import sslmem
from ..methods import SSLMethod, build_method
from ..models import build_encoder, channel_stats
from ..probing import embed, linear_probe
from ..provenance import git_commit, provenance
from ..stats import mean_ci
from ..training import TrainConfig, train
from ..training.loop import TrainResult, fingerprint
from .presets import Preset, claim_status, get_preset
from .sslmem_run import default_cache_dir, probe_rng, probe_sets, sample_subset, train_config, validate

#: The downstream sets every retrained encoder is probed on. Fashion-MNIST is
#: the training distribution; the two digit sets are data the encoders never saw.
DOWNSTREAM = ("fashion_mnist", "mnist5k", "digits")

#: Removal settings per preset (training settings come from the SSLMem preset of the same name).
#: ``half`` = size of f's (and g's) half of the pool; ``fractions`` = k as fractions of the half
#: (the paper: 500…16k of 25k = 2 %…64 %); ``seeds`` = retraining seeds per (k, how).
REMOVAL_SETTINGS: dict[str, dict] = {
    "smoke": {"half": 48, "fractions": (0.25,), "seeds": (0,), "epochs": 2, "batch_size": 16,
              "downstream_train": 256, "downstream_test": 128},
    # 2 cores, ≤ 20 min: 150 points per encoder (METHODS §5), 2 fractions × 2 ways × 2 seeds = 8 retrains.
    "cpu": {"half": 150, "fractions": (0.08, 0.32), "seeds": (0, 1), "epochs": 150, "batch_size": 50,
            "models_per_family": 1, "probe_train": 2000, "probe_test": 1000, "probe_epochs": 100,
            "downstream_train": None, "downstream_test": None},
    "gpu": {"half": 25000, "fractions": (0.02, 0.04, 0.08, 0.16, 0.32, 0.64), "seeds": (0, 1, 2),
            "downstream_train": None, "downstream_test": None},
    "paper": {"half": 25000, "fractions": (0.02, 0.04, 0.08, 0.16, 0.32, 0.64), "seeds": (0, 1, 2),
              "downstream_train": None, "downstream_test": None},
}


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


def fit_encoder(
    images: torch.Tensor,
    preset: Preset,
    cfg: TrainConfig,
    model_seed: int,
    run_config: dict,
    cache: Path,
    device: torch.device,
    mean,
    std,
    wrap: Callable[[SSLMethod], SSLMethod] | None = None,
    progress: bool = True,
    desc: str = "train",
    labels: torch.Tensor | None = None,
    arch: str | None = None,
    augmentation: str | None = None,
) -> tuple[SSLMethod, TrainResult]:
    """Build and train one encoder with the shared loop, reusing a cached checkpoint.

    The checkpoint path is a fingerprint of the training settings, the
    architecture, method (its ``name``, so a wrapper such as
    :class:`~memlib.methods.regularizer.AlignmentRegularized` counts), the
    augmentation, ``run_config`` (which must identify the training points) and
    ``model_seed``; an interrupted run resumes, a finished one is loaded.

    Parameters
    ----------
    images
        uint8 training images (N, C, H, W).
    preset
        Supplies ``arch``, ``method`` and ``augmentation``.
    cfg
        Training settings; its ``seed`` is replaced by ``model_seed``.
    model_seed
        Seeds the weights, the data order and the augmentation draws.
    run_config
        What else identifies the run (data set, training indices, …).
    cache, device
        Cache root (checkpoints go to ``cache/encoders/<fingerprint>``) and device.
    mean, std
        Per-channel input statistics for the encoder.
    wrap
        Optional function wrapping the built method (e.g. in a regulariser).
    progress, desc
        Progress bar and its label.
    labels
        Labels of ``images`` (passed to the method; SSL methods ignore them).
    arch, augmentation
        Override the preset's architecture and augmentation (e.g. a ViT and
        crop + flip for MAE).

    Returns
    -------
    tuple
        The trained method (its ``encoder`` is the encoder) and the :class:`~memlib.training.loop.TrainResult`.
    """
    arch, augmentation = arch or preset.arch, augmentation or preset.augmentation
    torch.manual_seed(model_seed)
    enc = build_encoder(arch, images.shape[1], images.shape[-1], mean, std)
    method = build_method(preset.method, enc, augmentation=build_augmentation(augmentation, images.shape[-1]))
    if wrap is not None:
        method = wrap(method)
    rc = {**run_config, "arch": arch, "method": method.name, "augmentation": augmentation, "model_seed": model_seed}
    # Same key as sslmem_run.train_families (cfg before its seed is set, same run_config keys): an
    # encoder trained there on the same points with the same seed is loaded here, not retrained.
    ckpt = cache / "encoders" / fingerprint({"train": cfg.to_dict(), "run": rc}) / "checkpoint.pt"
    res = train(method, images, labels, dataclasses.replace(cfg, seed=model_seed), device=device,
                checkpoint_path=ckpt, run_config=rc, progress=progress, desc=desc)
    return method, res


def resize_to(ds: ImageDataset, channels: int, size: int) -> ImageDataset:
    """``ds`` with images bilinearly resized to size × size and 1↔3 channels matched (uint8 kept)."""
    x = ds.images.float()
    if x.shape[-1] != size or x.shape[-2] != size:
        x = F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False, antialias=True)
    if x.shape[1] != channels:
        x = x.mean(1, keepdim=True) if channels == 1 else x.expand(-1, channels, -1, -1)
    return ImageDataset(x.round().clamp(0, 255).to(torch.uint8), ds.labels, ds.classes, ds.name)


def downstream_sets(channels: int, size: int, n_train: int | None, n_test: int | None, seed: int,
                    data_root=None, names=DOWNSTREAM) -> dict[str, tuple[ImageDataset, ImageDataset]]:
    """(train, test) probe sets ``names``, resized to the encoder's input, optionally subsampled."""
    rng = probe_rng(seed)
    out = {}
    for name in names:
        tr, te = (resize_to(load_dataset(name, s, root=data_root), channels, size) for s in ("train", "test"))
        out[name] = (sample_subset(tr, n_train, rng), sample_subset(te, n_test, rng))
    return out


def probe_all(encoder, sets: dict, epochs: int, seed: int, device) -> dict[str, float]:
    """Linear-probe test accuracy of ``encoder`` on every downstream set."""
    out = {}
    for name, (tr, te) in sets.items():
        ftr, fte = embed(encoder, tr.images, device=device), embed(encoder, te.images, device=device)
        out[name] = linear_probe(ftr, tr.labels, fte, te.labels, epochs=epochs, seed=seed)["test_acc"]
    return out


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

    @property
    def datasets(self) -> list[str]:
        """The downstream sets probed (the training data set first, then the unseen ones)."""
        return [self.preset.dataset] + [d for d in DOWNSTREAM if d != self.preset.dataset]

    def curves(self) -> pd.DataFrame:
        """Mean accuracy and its 95 % CI per (dataset, how, k), for the plot."""
        rows = []
        long = self.results.melt(id_vars=["k", "fraction", "how", "seed"], value_vars=self.datasets,
                                 var_name="dataset", value_name="acc")
        for (ds, how, k), g in long.groupby(["dataset", "how", "k"]):
            m, lo, hi = mean_ci(g.acc.to_numpy())
            rows.append({"dataset": ds, "how": how, "k": k, "fraction": g.fraction.iloc[0], "mean": m,
                         "ci95 low": lo, "ci95 high": hi, "n": len(g)})
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
                rows.append({"dataset": ds, "k": int(k), "fraction": float(k / len(self.f_indices)),
                             "acc top": top.mean(), "acc random": rnd.mean(), "random − top": diff.mean(),
                             "n seeds": len(diff), "t": tt, "p": p})
        return pd.DataFrame(rows)

    def claims(self, alpha: float = 0.05, min_pairs: int = 10) -> pd.DataFrame:
        """Verdicts on S19–S21.

        S19 pools, per downstream set, the paired differences acc(random) −
        acc(top) over all k and seeds and tests them one-sided (paired t-test,
        H0: mean difference ≤ 0). Reproduced when every set rejects at
        ``alpha``, partly when some do; when none does, "not reproduced" needs
        at least ``min_pairs`` pairs per set (a run big enough to show the
        effect), and a smaller run is "inconclusive". S20 (segmentation) and S21 (depth) need
        dense labels that no data set available here has. A preset that is not
        ``meaningful`` decides nothing.
        """
        r = self.results
        top = r[r.how == "top"].set_index(["k", "seed"]).sort_index()
        rnd = r[r.how == "random"].set_index(["k", "seed"]).reindex(top.index)
        oks, parts = [], []
        for ds in self.datasets:
            d = (rnd[ds] - top[ds]).to_numpy()
            if len(d) > 1 and np.ptp(d) > 0:
                p = float(st.ttest_1samp(d, 0.0, alternative="greater").pvalue)
            else:
                p = float("nan")
            oks.append(bool(p < alpha))
            parts.append(f"{ds}: random − top {d.mean():+.4f} (n = {len(d)}), p = {p:.2g}")
        s19 = claim_status(self.preset, self.seed, oks, n=len(top), min_n=min_pairs)
        na = "not attempted (no segmentation / depth labels available offline)"
        return pd.DataFrame([
            {"claim": "S19", "status": s19, "statistic": "; ".join(parts)},
            {"claim": "S20", "status": na, "statistic": "—"},
            {"claim": "S21", "status": na, "statistic": "—"},
        ]).set_index("claim")


def experiment_settings(table: dict[str, dict], own: tuple[str, ...], preset: str | Preset,
                        overrides: dict) -> tuple[Preset, dict]:
    """Split a preset's experiment settings from its training settings, with overrides applied.

    ``table[name]`` holds the experiment's own keys ``own`` (e.g. ``half``,
    ``fractions``) and any :class:`~memlib.experiments.presets.Preset` fields
    that differ from the SSLMem preset of the same name; ``overrides`` may
    change either (``None`` values are ignored).

    Returns
    -------
    tuple
        The training preset and the dict of the experiment's own settings.
    """
    name = preset if isinstance(preset, str) else preset.name
    if name not in table:
        raise ValueError(f"preset={name!r} has no settings for this experiment; choose one of {sorted(table)}")
    s = dict(table[name])
    s.update({k: overrides[k] for k in own if overrides.get(k) is not None})
    train_keys = {k: s.pop(k) for k in list(s) if k not in own}
    rest = {k: v for k, v in overrides.items() if k not in own and v is not None}
    return get_preset(preset, **{**train_keys, **rest}), s


def removal_settings(preset: str | Preset, **overrides) -> tuple[Preset, dict]:
    """The training preset and removal settings for ``preset``, with ``overrides`` (None ignored)."""
    p, s = experiment_settings(REMOVAL_SETTINGS, ("half", "fractions", "seeds", "downstream_train",
                                                  "downstream_test"), preset, overrides)
    if isinstance(s["half"], bool) or not isinstance(s["half"], int) or s["half"] < 2:
        raise ValueError(f"half={s['half']!r} must be an int ≥ 2 (points in each half of the pool)")
    fr = tuple(s["fractions"])
    if not fr or not all(0 < f < 1 for f in fr):
        raise ValueError(f"fractions={fr!r} must be a non-empty list of numbers in (0, 1), e.g. (0.08, 0.32)")
    if not s["seeds"]:
        raise ValueError("seeds=() is empty; give at least one retraining seed, e.g. (0, 1)")
    s["fractions"], s["seeds"] = fr, tuple(int(x) for x in s["seeds"])
    return p, s


def run_removal(
    preset: str | Preset = "smoke",
    device: str = "cpu",
    seed: int = 0,
    cache_dir: str | Path | None = None,
    data_root: str | Path | None = None,
    progress: bool = True,
    **overrides,
) -> RemovalRun:
    """Run the removal experiment of the paper's §4.4 at a preset.

    Parameters
    ----------
    preset
        ``smoke``, ``cpu``, ``gpu`` or ``paper`` (see :data:`REMOVAL_SETTINGS`).
    device
        ``"cpu"``, ``"cuda"`` or ``"auto"``.
    seed
        Seeds the pool, f and g, and the scoring views.
    cache_dir, data_root
        As in :func:`~memlib.experiments.sslmem_run.run_sslmem`.
    progress
        Show progress bars.
    **overrides
        ``half``, ``fractions``, ``seeds``, ``downstream_train``,
        ``downstream_test``, or any :class:`~memlib.experiments.presets.Preset`
        field; ``None`` values are ignored.

    Returns
    -------
    RemovalRun
    """
    p, s = removal_settings(preset, **overrides)
    dev = validate(p, device)
    half = s["half"]
    t0 = time.perf_counter()
    commit = git_commit()
    train_set = load_dataset(p.dataset, "train", root=data_root)
    if 2 * half > len(train_set):
        raise ValueError(f"half={half} needs 2·half ≤ {len(train_set)} training images of {p.dataset}")
    pool = np.random.default_rng(seed).permutation(len(train_set))[: 2 * half]
    f_idx, g_idx = np.sort(pool[:half]), np.sort(pool[half:])
    mean, std = channel_stats(train_set.images)
    cache = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    cfg = train_config(p)
    run_dir = cache / "removal" / fingerprint({"preset": p.to_dict(), "settings": s, "seed": seed})
    run_dir.mkdir(parents=True, exist_ok=True)
    trained_at: list[str] = []

    def fit(idx, mseed, desc):
        m, res = fit_encoder(train_set.images[idx], p, cfg, mseed,
                             {"dataset": p.dataset, "train_indices": fingerprint(idx.tolist())},
                             cache, dev, mean, std, progress=progress, desc=desc)
        trained_at.extend(res.commits)
        return m.encoder

    # f and g families on the disjoint halves, then SSLMem of f's half.
    fs = [fit(f_idx, seed * 1000 + 2 * i, f"f{i}") for i in range(p.models_per_family)]
    gs = [fit(g_idx, seed * 1000 + 2 * i + 1, f"g{i}") for i in range(p.models_per_family)]
    aug = build_augmentation(p.augmentation, train_set.image_size)
    res = sslmem(fs, gs, train_set.images[f_idx], aug, views=p.views, mode=p.mode, ids=f_idx,
                 batch_size=p.score_batch_size, seed=seed, device=dev, progress=progress)
    t_score = time.perf_counter() - t0

    sets = downstream_sets(train_set.channels, train_set.image_size, s["downstream_train"], s["downstream_test"],
                           seed, data_root, names=[d for d in DOWNSTREAM if d != p.dataset])
    # The Fashion-MNIST probe uses the preset's probe sizes (train split for the probe, test split to score).
    test_set = load_dataset(p.dataset, "test", root=data_root)
    sets[p.dataset] = probe_sets(p, train_set, test_set, probe_rng(seed))

    rows = [{"k": 0, "fraction": 0.0, "how": "none", "seed": seed,
             **probe_all(fs[0], sets, p.probe_epochs, seed, dev)}]
    jobs = [(frac, how, rs) for frac in s["fractions"] for rs in s["seeds"] for how in ("top", "random")]
    for frac, how, rs in tqdm(jobs, desc="retrain", disable=not progress, leave=False):
        k = max(1, round(frac * half))
        drop = select_removal(res.score, k, how, seed=seed * 1000 + rs)
        keep = np.delete(f_idx, drop)
        # The retraining seed is shared by top and random removal, so their accuracies pair up.
        enc = fit(keep, seed * 1000 + 500 + rs, f"{how} k={k} s{rs}")
        rows.append({"k": k, "fraction": frac, "how": how, "seed": rs,
                     **probe_all(enc, sets, p.probe_epochs, seed, dev)})
    results = pd.DataFrame(rows)
    wall = time.perf_counter() - t0
    prov = provenance({"preset": p.name, "seed": seed, **p.to_dict(), **s}, dev, wall, commit=commit,
                      trained_at=trained_at)
    run = RemovalRun(p, s, seed, f_idx, g_idx, res.score, res.raw, results, prov, run_dir,
                     {"score_s": t_score, "total_s": wall})
    results.to_csv(run_dir / "results.csv", index=False)
    pd.DataFrame({"index": f_idx, "raw": res.raw, "score": res.score}).to_csv(run_dir / "scores.csv", index=False)
    (run_dir / "provenance.json").write_text(json.dumps(prov, indent=1, default=str))
    return run
