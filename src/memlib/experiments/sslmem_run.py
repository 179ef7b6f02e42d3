"""The SSLMem experiment end to end: splits → train f and g families → score → probe.

Notebooks call :func:`run_sslmem` and only plot what it returns. Trained
encoders are cached under the cache directory, keyed by a hash of everything
that determines them (dataset, split, architecture, method, training settings,
seed), so re-running a notebook, or another notebook with the same
configuration, reuses them instead of training again; an interrupted
training resumes from its last checkpoint.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from scipy import stats as st

from ..data.augment import build_augmentation
from ..data.datasets import ImageDataset, load_dataset, test_point_ids
from ..data.splits import SUBSET_LABELS, SUBSETS, Splits, make_splits
from ..device import resolve_device
from ..memorization.sslmem import SSLMemResult, sslmem
from ..methods import build_method
from ..models import build_encoder, channel_stats
from ..probing import atypicality, embed, knn_accuracy, linear_probe
from ..provenance import git_commit, provenance
from ..stats import largest_step, mean_ci, point_intervals, significant_points, sslmem_tests
from ..training import TrainConfig, train
from ..training.loop import fingerprint
from .presets import Preset, claim_status, get_preset
from .validate import check_preset, validate_run_parameters


def default_cache_dir() -> Path:
    """``$MEMLIB_CACHE`` if set, else ``~/.cache/memlib/runs``."""
    return Path(os.environ.get("MEMLIB_CACHE") or Path.home() / ".cache" / "memlib" / "runs")


@dataclass
class SSLMemRun:
    """Everything one SSLMem run produced (see :func:`run_sslmem`)."""

    preset: Preset
    seed: int
    splits: Splits
    result: SSLMemResult
    subset: np.ndarray  # subset name of each scored point
    images: torch.Tensor  # the scored images, uint8, in the order of ``result``
    labels: np.ndarray
    classes: list[str]
    histories: dict[str, list[dict]]
    probe: pd.DataFrame
    provenance: dict
    run_dir: Path
    timings: dict = field(default_factory=dict)
    encoders: dict[str, list] = field(default_factory=dict, repr=False)  # the trained f and g families

    def scores(self, kind: str = "score") -> dict[str, np.ndarray]:
        """Per-subset scores; ``kind`` is ``"score"`` (normalised) or ``"raw"``."""
        values = getattr(self.result, kind)
        return {s: values[self.subset == s] for s in SUBSETS}

    def summary(self) -> pd.DataFrame:
        """Count, mean (with its 95 % CI) and std of normalised scores, and raw means, per subset."""
        rows = []
        for s in SUBSETS:
            m = self.subset == s
            mean, lo, hi = mean_ci(self.result.score[m])
            rows.append({"subset": SUBSET_LABELS[s], "n": int(m.sum()), "mean score": mean, "ci95 low": lo,
                         "ci95 high": hi, "std score": self.result.score[m].std(ddof=1),
                         "mean raw": self.result.raw[m].mean(), "mean align f": self.result.align_f[m].mean(),
                         "mean align g": self.result.align_g[m].mean()})
        return pd.DataFrame(rows).set_index("subset")

    def tests(self) -> pd.DataFrame:
        """The paper's one-sided t-tests (Tables 2 and 16) on the normalised scores."""
        return sslmem_tests(self.scores())

    def claims(self, alpha: float = 0.05) -> pd.DataFrame:
        """Verdicts on the scoreboard claims S1–S9, S11 and S12 (METHODS.md §1, paper Tables 2 and 16, Figs. 1, 2a, 5).

        Tests are one-sided Welch / one-sample t-tests on the normalised
        scores with Holm's correction (:meth:`tests`); S2 ("≈ 0") holds when
        the 95 % confidence interval of the mean contains 0. S9: one-sided
        Kendall's τ between the candidates' scores and their atypicality in g's
        representation; S11: the most memorised tenth of S_C spans at least half
        of the candidates' range of f's alignment loss, and the candidate with the
        lowest loss on f is not among them; S12: the fraction above a threshold
        never drops by more than 10 % of S_C between neighbouring thresholds
        (:func:`~memlib.stats.largest_step`). A run at a preset
        that is not ``meaningful`` (``smoke``) never decides a claim.

        Returns
        -------
        pandas.DataFrame
            Indexed by claim id, with ``status`` and ``statistic`` strings.
        """
        t = self.tests().set_index("null hypothesis")
        shared = self.summary().loc["S_S"]

        def test(h0):
            r = t.loc[h0]
            stat = f"t = {r.t:.2f}, p = {r.p:.2g} (Holm {r.p_holm:.2g}), d = {r.cohens_d:.2f}"
            return bool(r.p_holm < alpha), stat

        def with_mean(h0):
            ok, stat = test(h0)
            return ok, f"mean {t.loc[h0, 'mean_a']:+.4f}; {stat}"

        pos, stat_e = with_mean("m(S_E) ≤ 0")
        below, stat_ce = test("m(S_C) ≤ m(S_E)")
        rows = {
            "S1": with_mean("m(S_C) ≤ 0"),
            "S2": (shared["ci95 low"] <= 0 <= shared["ci95 high"],
                   f"mean {shared['mean score']:+.4f}, 95% CI [{shared['ci95 low']:+.4f}, {shared['ci95 high']:+.4f}]"),
            "S3": ((pos, below), f"{stat_e.replace('; ', '; vs 0: ', 1)}; below S_C: {stat_ce}"),
            "S4": with_mean("m(S_I) ≥ 0"),
            "S5": test("m(S_C) ≤ m(S_S)"),
            "S6": test("m(S_C) ≤ m(S_E)"),
            "S7": test("m(S_S) ≤ m(S_I)"),
            "S8": test("m(S_E) ≤ m(S_I)"),
        }
        rows.update(self._spectrum_claims())
        out = []
        for cid, (ok, stat) in rows.items():
            status = claim_status(self.preset, self.seed, list(ok) if isinstance(ok, tuple) else ok)
            out.append({"claim": cid, "status": status, "statistic": stat})
        return pd.DataFrame(out).set_index("claim")

    def _spectrum_claims(self) -> dict:
        """S9 (atypical points score highest), S11 (memorisation vs f's alignment) and S12 (a smooth spectrum)."""
        c = self.subset == "candidate"
        score, align_f = self.result.score[c], self.result.align_f[c]
        rows = {}
        if self.encoders.get("g"):
            aty = self.atypicality()[c]
            r = st.kendalltau(score, aty, alternative="greater")
            rows["S9"] = (bool(r.pvalue < 0.05), f"Kendall τ(score, atypicality) = {r.statistic:+.2f}, "
                          f"p = {r.pvalue:.2g} (one-sided, n = {c.sum()})")
        top = score >= np.quantile(score, 0.9)
        span = np.ptp(align_f[top]) / np.ptp(align_f) if np.ptp(align_f) > 0 else float("nan")
        lowest_rank = int((score > score[np.argmin(align_f)]).sum()) + 1
        rows["S11"] = ((bool(span >= 0.5), bool(not top[np.argmin(align_f)])),
                       f"the top 10 % by score span {span:.0%} of S_C's range of f's alignment loss; the candidate "
                       f"with the lowest loss on f ranks {lowest_rank} of {c.sum()} by score")
        step = largest_step(score)
        rows["S12"] = (bool(step <= 0.1), f"largest drop of the fraction above a threshold between neighbouring "
                       f"thresholds (50 over the range): {step:.0%} of S_C (smooth: ≤ 10 %)")
        return rows

    def atypicality(self, k: int = 5) -> np.ndarray:
        """Each scored point's atypicality in g's representation (mean over g's family, see
        :func:`~memlib.probing.knn.atypicality`; among all scored points)."""
        return np.mean([atypicality(embed(enc, self.images), torch.as_tensor(self.labels), k).cpu().numpy()
                        for enc in self.encoders["g"]], axis=0)

    def point_intervals(self, confidence: float = 0.95) -> pd.DataFrame:
        """Each candidate's raw score with a bootstrap interval over f's and g's encoders
        (:func:`~memlib.stats.point_intervals`), most memorised first."""
        c = self.subset == "candidate"
        df = point_intervals(self.result.align_f_models[:, c], self.result.align_g_models[:, c], confidence,
                             seed=self.seed)
        df.insert(0, "label", [self.classes[i] for i in self.labels[c]])
        return df.sort_values("raw", ascending=False)

    def significance(self, alpha: float = 0.05, method: str = "fdr_bh") -> pd.DataFrame:
        """Which candidates are significantly memorised (per point; the paper gives none).

        Each candidate's normalised score is tested one-sided against the
        shared points S_S as the null distribution (both f and g trained on
        them, so their scores are what no memorisation looks like), with a
        false-discovery-rate correction (:func:`~memlib.stats.significant_points`).
        The same test on S_E and S_I shows how often it fires on points f did not train on.

        Returns
        -------
        pandas.DataFrame
            One row per subset tested: points, significant points and their share.
        """
        sc, rows = self.scores(), []
        for s in ("candidate", "extra", "independent"):
            res = significant_points(sc[s], sc["shared"], alpha, method)
            rows.append({"subset": SUBSET_LABELS[s], "n": len(res), "significant": int(res.significant.sum()),
                         "share": float(res.significant.mean())})
        return pd.DataFrame(rows).set_index("subset")

    def order_holds(self) -> bool:
        """Whether the subset means are ordered S_C > S_E > S_S > S_I."""
        m = {s: v.mean() for s, v in self.scores().items()}
        return bool(m["candidate"] > m["extra"] > m["shared"] > m["independent"])


def validate(preset: Preset, device: str) -> torch.device:
    """Check every setting before any compute; raise naming the parameter and the fix.

    See :func:`~memlib.experiments.validate.check_preset`; split sizes are not checked here.
    """
    check_preset(preset)
    return resolve_device(device)


def model_seed(seed: int, family: str, i: int) -> int:
    """Seed of member ``i`` of family ``"f"`` or ``"g"`` in a run seeded with ``seed``."""
    # f and g members get distinct seeds, as independent draws from A(S) and A(S \ x).
    return seed * 1000 + 2 * i + (family == "g")


def load_with_splits(p: Preset, seed: int, data_root=None) -> tuple[ImageDataset, ImageDataset, Splits]:
    """The preset's dataset (train and test split) and its seeded S_S / S_C / S_I / S_E split."""
    train_set = load_dataset(p.dataset, "train", root=data_root)
    test_set = load_dataset(p.dataset, "test", root=data_root)
    splits = make_splits(len(train_set), len(test_set), p.shared, p.candidate, p.extra, seed=seed,
                         train_labels=train_set.labels.numpy())
    return train_set, test_set, splits


def train_config(p: Preset) -> TrainConfig:
    """The training settings of the SSLMem encoders at preset ``p`` (seed set per encoder)."""
    return TrainConfig(epochs=p.epochs, batch_size=p.batch_size, lr=p.lr, warmup_epochs=min(p.warmup_epochs, p.epochs),
                       eval_every=p.eval_every, checkpoint_every=max(1, p.epochs // 10))


def encoder_checkpoint(p: Preset, train_indices, mseed: int, cache: Path) -> tuple[dict, Path]:
    """The run description and checkpoint path of the encoder trained on ``train_indices`` with seed ``mseed``.

    The path is the cache key (a fingerprint of everything that determines
    the encoder): keep it stable so trained encoders are reused.
    """
    run_config = {"dataset": p.dataset, "arch": p.arch, "method": p.method, "augmentation": p.augmentation,
                  "train_indices": fingerprint(np.asarray(train_indices).tolist()), "model_seed": mseed}
    if p.method_kwargs:  # only when set, so encoders trained before this option keep their keys
        run_config["method_kwargs"] = dict(sorted(p.method_kwargs.items()))
    key = fingerprint({"train": train_config(p).to_dict(), "run": run_config})
    return run_config, cache / "encoders" / key / "checkpoint.pt"


def train_families(
    p: Preset,
    train_set: ImageDataset,
    splits: Splits,
    seed: int,
    device: torch.device,
    cache: Path,
    families: tuple[str, ...] = ("f", "g"),
    eval_fn=None,
    progress: bool = True,
    snapshots: bool = False,
    keep: str = "encoder",
) -> tuple[dict[str, list], dict[str, list[dict]], list[str]]:
    """Train (or load from the cache) the encoders of f's and g's families.

    f's encoders train on ``splits.f_train`` (S_S ∪ S_C), g's on
    ``splits.g_train`` (S_S ∪ S_I), each from its own seed, with the preset's
    method, architecture, augmentation and training settings. Checkpoints
    live under ``cache / "encoders"``, keyed by a fingerprint of everything
    that determines the encoder, so any experiment asking for the same
    encoder loads it instead of training again.

    Parameters
    ----------
    p
        The preset (already validated).
    train_set
        The dataset's training split.
    splits
        The S_S / S_C / S_I / S_E split.
    seed
        The run's seed (member seeds derive from it).
    device
        Where to train.
    cache
        The cache directory.
    families
        Which families to train: ``"f"``, ``"g"`` or both.
    eval_fn
        Optional ``method → dict`` evaluated during training (e.g. kNN accuracy).
    progress
        Show progress bars.
    snapshots
        Keep the encoder's weights at every checkpoint epoch in a
        ``snapshots`` folder beside the checkpoint (see :func:`~memlib.training.loop.train`).
        An encoder already trained is loaded as it is, without snapshots.
    keep
        ``"encoder"`` returns the encoders; ``"method"`` the whole trained
        methods (heads included, e.g. a supervised classifier).

    Returns
    -------
    tuple
        Encoders (or methods) per family (``{"f": [...], "g": [...]}``), training history
        per encoder (``"f0"``, …), and the commits that trained them.
    """
    if keep not in ("encoder", "method"):
        raise ValueError(f"keep={keep!r} must be 'encoder' or 'method'")
    bad = sorted(set(families) - {"f", "g"})
    if bad or not families:
        raise ValueError(f"families={families!r} must be a non-empty subset of ('f', 'g')")
    mean, std = channel_stats(train_set.images)
    aug = build_augmentation(p.augmentation, train_set.image_size)
    cfg = train_config(p)
    out: dict[str, list] = {fam: [] for fam in families}
    histories: dict[str, list[dict]] = {}
    trained_at: list[str] = []
    for fam, idx in (("f", splits.f_train), ("g", splits.g_train)):
        if fam not in families:
            continue
        for i in range(p.models_per_family):
            mseed = model_seed(seed, fam, i)
            run_config, ckpt = encoder_checkpoint(p, idx, mseed, cache)
            torch.manual_seed(mseed)
            enc = build_encoder(p.arch, train_set.channels, train_set.image_size, mean, std)
            method = build_method(p.method, enc, augmentation=aug, **p.method_kwargs)
            res = train(method, train_set.images[idx], train_set.labels[idx],
                        TrainConfig(**{**cfg.to_dict(), "seed": mseed}), device=device, checkpoint_path=ckpt,
                        run_config=run_config, eval_fn=eval_fn, progress=progress, desc=f"{fam}{i}",
                        snapshot_dir=ckpt.parent / "snapshots" if snapshots else None)
            out[fam].append(method if keep == "method" else method.encoder)
            histories[f"{fam}{i}"] = res.history
            trained_at += res.commits
    return out, histories, trained_at


def run_sslmem(
    preset: str | Preset = "smoke",
    device: str = "cpu",
    seed: int = 0,
    cache_dir: str | Path | None = None,
    data_root: str | Path | None = None,
    progress: bool = True,
    **overrides,
) -> SSLMemRun:
    """Run the SSLMem experiment of the paper's §4.2 at a preset.

    Parameters
    ----------
    preset
        Preset name (``smoke``, ``cpu``, ``gpu``, ``paper``) or a :class:`~memlib.experiments.presets.Preset`.
    device
        ``"cpu"``, ``"cuda"`` or ``"auto"``.
    seed
        Seeds the splits and every encoder of both families.
    cache_dir
        Where trained encoders and results go (default :func:`default_cache_dir`).
    data_root
        Dataset root passed to :func:`~memlib.data.datasets.load_dataset`.
    progress
        Show progress bars.
    **overrides
        Any :class:`~memlib.experiments.presets.Preset` field, e.g. ``epochs=50`` or ``shared=200``;
        ``None`` values are ignored (so notebook parameters can default to None).

    Returns
    -------
    SSLMemRun
    """
    # Every parameter (split sizes included) is checked before any data is loaded or anything written.
    p, dev = validate_run_parameters(get_preset(preset, **overrides), device, seed)
    t_start = time.perf_counter()
    commit = git_commit()  # at the start: code may change while a long run trains
    train_set, test_set, splits = load_with_splits(p, seed, data_root)
    cache = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    run_key = {"preset": p.to_dict(), "seed": seed, "splits": fingerprint(splits.to_dict())}
    run_dir = cache / "sslmem" / fingerprint(run_key)
    run_dir.mkdir(parents=True, exist_ok=True)
    splits.save(run_dir / "splits.json")

    rng = probe_rng(seed)
    probe_tr, probe_te = probe_sets(p, train_set, test_set, rng)
    knn_bank, knn_query = sample_subset(probe_tr, 2000, rng), sample_subset(probe_te, 1000, rng)

    def knn_eval(method):
        enc = method.encoder
        fb, fq = embed(enc, knn_bank.images, device=dev), embed(enc, knn_query.images, device=dev)
        return {"knn_acc": knn_accuracy(fb, knn_bank.labels, fq, knn_query.labels)}

    # The same augmentation trains the encoders and measures their alignment (as the paper does).
    aug = build_augmentation(p.augmentation, train_set.image_size)
    t_train = time.perf_counter()
    families, histories, trained_at = train_families(p, train_set, splits, seed, dev, cache, eval_fn=knn_eval,
                                                     progress=progress)
    t_train = time.perf_counter() - t_train

    scored = {"candidate": train_set.subset(splits.candidate), "shared": train_set.subset(splits.shared),
              "extra": test_set.subset(splits.extra), "independent": train_set.subset(splits.independent)}
    images = torch.cat([d.images for d in scored.values()])
    labels = np.concatenate([d.labels.numpy() for d in scored.values()])
    subset = np.concatenate([[s] * len(d) for s, d in scored.items()])
    # Views are drawn from each point's dataset index, so a point has the same views in every chapter.
    ids = np.concatenate([splits.candidate, splits.shared, test_point_ids(splits.extra, train_set),
                          splits.independent])
    t_score = time.perf_counter()
    result = sslmem(families["f"], families["g"], images, aug, views=p.views, mode=p.mode, ids=ids,
                    batch_size=p.score_batch_size, seed=seed, device=dev, progress=progress)
    t_score = time.perf_counter() - t_score

    t_probe = time.perf_counter()
    rows = []
    for fam, encs in families.items():
        for i, enc in enumerate(encs):
            rows.append({"encoder": f"{fam}{i}", "family": fam,
                         **probe_encoder(enc, probe_tr, probe_te, p.probe_epochs, seed, dev)})
    probe = pd.DataFrame(rows).set_index("encoder")
    t_probe = time.perf_counter() - t_probe

    wall = time.perf_counter() - t_start
    prov = provenance({"preset": p.name, "seed": seed, **p.to_dict()}, dev, wall, commit=commit, trained_at=trained_at)
    run = SSLMemRun(p, seed, splits, result, subset, images, labels, train_set.classes, histories, probe, prov,
                    run_dir, {"train_s": t_train, "score_s": t_score, "probe_s": t_probe, "total_s": wall},
                    families)
    _save(run)
    return run


def probe_rng(seed: int) -> np.random.Generator:
    """The generator that draws the probe sets of a run seeded with ``seed`` (the same in every experiment)."""
    return np.random.default_rng(seed + 12345)


def probe_sets(p: Preset, train_set: ImageDataset, test_set: ImageDataset,
               rng: np.random.Generator) -> tuple[ImageDataset, ImageDataset]:
    """The linear probe's train and test sets: ``p.probe_train`` / ``p.probe_test`` points drawn with ``rng``."""
    return sample_subset(train_set, p.probe_train, rng), sample_subset(test_set, p.probe_test, rng)


def probe_encoder(encoder, probe_tr: ImageDataset, probe_te: ImageDataset, epochs: int, seed: int,
                  device) -> dict[str, float]:
    """Linear-probe test and train accuracy and kNN accuracy of ``encoder``'s frozen features."""
    ftr, fte = embed(encoder, probe_tr.images, device=device), embed(encoder, probe_te.images, device=device)
    lp = linear_probe(ftr, probe_tr.labels, fte, probe_te.labels, epochs=epochs, seed=seed)
    return {"linear_acc": lp["test_acc"], "linear_train_acc": lp["train_acc"],
            "knn_acc": knn_accuracy(ftr, probe_tr.labels, fte, probe_te.labels)}


def sample_subset(ds: ImageDataset, n: int | None, rng: np.random.Generator) -> ImageDataset:
    """``n`` points of ``ds`` drawn with ``rng``, in dataset order (all of ``ds`` for ``n=None``)."""
    if n is None or n >= len(ds):
        return ds
    return ds.subset(np.sort(rng.choice(len(ds), size=n, replace=False)))


def _save(run: SSLMemRun) -> None:
    """Write per-point scores (CSV), summary, tests, probe and provenance (JSON) to the run folder."""
    r = run.result
    pd.DataFrame({"subset": run.subset, "label": run.labels, "align_f": r.align_f, "align_g": r.align_g,
                  "raw": r.raw, "score": r.score}).to_csv(run.run_dir / "scores.csv", index=False)
    summary = {"summary": run.summary().reset_index().to_dict(orient="records"),
               "tests": run.tests().to_dict(orient="records"), "probe": run.probe.reset_index().to_dict(orient="records"),
               "order_holds": run.order_holds(), "timings": run.timings, "provenance": run.provenance,
               "histories": run.histories}
    tmp = run.run_dir / "summary.json.tmp"
    tmp.write_text(json.dumps(summary, indent=1, default=float))
    tmp.replace(run.run_dir / "summary.json")
