"""The SSLMem experiment end to end: splits → train f and g families → score → probe.

Notebooks call :func:`run_sslmem` and only plot what it returns. Trained
encoders are cached under the cache directory, keyed by a hash of everything
that determines them (dataset, split, architecture, method, training settings,
seed), so re-running a notebook, or another notebook with the same
configuration, reuses them instead of training again; an interrupted
training resumes from its last checkpoint.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from ..data.augment import build_augmentation
from ..data.datasets import test_point_ids
from ..data.splits import SUBSET_LABELS, SUBSETS, Splits
from ..device import resolve_device
from ..memorization.sslmem import SSLMemResult, sslmem
from ..probing import atypicality, beats_floor, embed, random_floor
from ..stats import (
    mean_ci,
    point_intervals,
    sslmem_tests,
)
from .artifacts import SSLMEM
from .context import RunContext
from .inputs import load_with_splits, probe_rng, probe_sets, sample_subset
from .presets import Preset, get_preset
from .probes import KnnEval, probe_encoder


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
    null: SSLMemResult | None = None  # SSLMem of the null family f′ against f (``null_models`` > 0)
    #: Probe accuracies of untrained encoders of the same architecture (the random floor; empty without probes).
    floor: pd.DataFrame = field(default_factory=pd.DataFrame)
    #: Each scored point's atypicality in g's representation, when read from the evidence store (no weights).
    atypicality_values: np.ndarray | None = None

    def pair_scores(self, kind: str = "raw") -> np.ndarray:
        """Raw SSLMem per encoder pair (f_i, g_i), shape (pairs, N); ``kind="calibrated"`` subtracts each pair's
        mean on S_E, the points neither family trained on, so a pair's chance offset does not count."""
        if kind not in ("raw", "calibrated"):
            raise ValueError(f"kind={kind!r} must be 'raw' or 'calibrated'")
        r = self.result
        n = min(len(r.align_f_models), len(r.align_g_models))
        per_pair = r.align_g_models[:n] - r.align_f_models[:n]
        if kind == "calibrated":
            per_pair = per_pair - per_pair[:, self.subset == "extra"].mean(1, keepdims=True)
        return per_pair

    def pair_memorisation(self, kind: str = "calibrated", subset: str = "candidate") -> np.ndarray:
        """Per encoder pair: the mean over ``subset`` of :meth:`pair_scores` (calibrated by default: the pair's
        mean over S_C minus its mean over S_E)."""
        return self.pair_scores(kind)[:, self.subset == subset].mean(1)

    def floor_check(self, alpha: float = 0.05) -> dict:
        """f's linear-probe accuracy against this run's untrained floor (:func:`~memlib.probing.floor.beats_floor`)."""
        f_acc = self.probe.loc[self.probe.family == "f", "linear_acc"].to_numpy()
        return beats_floor(list(f_acc), self.floor["linear_acc"].to_numpy(), alpha=alpha)

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
            rows.append(
                {
                    "subset": SUBSET_LABELS[s],
                    "n": int(m.sum()),
                    "mean score": mean,
                    "ci95 low": lo,
                    "ci95 high": hi,
                    "std score": self.result.score[m].std(ddof=1),
                    "mean raw": self.result.raw[m].mean(),
                    "mean align f": self.result.align_f[m].mean(),
                    "mean align g": self.result.align_g[m].mean(),
                }
            )
        return pd.DataFrame(rows).set_index("subset")

    def tests(self) -> pd.DataFrame:
        """The paper's one-sided t-tests (Tables 2 and 16) on the normalised scores, with points as replicates:
        shown beside the encoder-level tests of :class:`~memlib.experiments.sslmem_study.SSLMemStudy`, which
        decide the claims."""
        return sslmem_tests(self.scores())

    def has_atypicality(self) -> bool:
        """Whether :meth:`atypicality` can be computed (g's encoders, or stored values, are at hand)."""
        return self.atypicality_values is not None or bool(self.encoders.get("g"))

    def atypicality(self, k: int = 5) -> np.ndarray:
        """Each scored point's atypicality in g's representation (mean over g's family, see
        :func:`~memlib.probing.knn.atypicality`; among all scored points); the stored values when the run was
        read from the evidence store (computed there with k = 5)."""
        if self.atypicality_values is not None:
            if k != 5:
                raise ValueError(f"k={k}: this run was read from the evidence store, which holds atypicality at k=5")
            return self.atypicality_values
        return np.mean(
            [
                atypicality(embed(enc, self.images), torch.as_tensor(self.labels), k).cpu().numpy()
                for enc in self.encoders["g"]
            ],
            axis=0,
        )

    def point_intervals(self, confidence: float = 0.95) -> pd.DataFrame:
        """Each candidate's raw score with a bootstrap interval over f's and g's encoders
        (:func:`~memlib.stats.point_intervals`), most memorised first."""
        c = self.subset == "candidate"
        df = point_intervals(
            self.result.align_f_models[:, c], self.result.align_g_models[:, c], confidence, seed=self.seed
        )
        df.insert(0, "label", [self.classes[i] for i in self.labels[c]])
        return df.sort_values("raw", ascending=False)

    def order_holds(self) -> bool:
        """Whether the subset means are ordered S_C > S_E > S_S > S_I."""
        m = {s: v.mean() for s, v in self.scores().items()}
        return bool(m["candidate"] > m["extra"] > m["shared"] > m["independent"])


def run_sslmem(
    preset="smoke",
    *,
    device="cpu",
    seed=0,
    cache_dir=None,
    data_root=None,
    progress=True,
    probe=True,
    floor=True,
    train_only=False,
    **overrides,
) -> SSLMemRun | None:
    """Run the SSLMem experiment of the paper's §4.2 at a preset.

    ``preset`` is a preset name (``smoke``, ``cpu``, ``gpu``, ``paper``) or a
    :class:`~memlib.experiments.presets.Preset`, and ``overrides`` change any of its fields (``epochs=50``,
    ``shared=200``; ``None`` is ignored, so notebook parameters can default to None). ``seed`` seeds the splits
    and every encoder. Device, folders and progress bars: :meth:`~memlib.experiments.context.RunContext.start`.
    ``probe=False`` skips the linear probes (an empty ``probe`` table) and the random floor; ``floor=False``
    skips only the floor (:func:`random_floor_of`; a caller running many runs of one architecture computes it
    once); ``train_only=True`` trains (or finds)
    the encoders and returns ``None``, so a study can train all its runs' encoders before scoring any.
    Returns a :class:`SSLMemRun`.
    """
    # Every parameter (split sizes included) is checked before any data is loaded or anything written.
    ctx = RunContext.start(SSLMEM, get_preset(preset, **overrides), device, seed, {}, cache_dir, data_root, progress)
    p, dev = ctx.preset, ctx.device
    train_set, test_set, splits = load_with_splits(p, seed, data_root)
    splits.save(ctx.run_dir / "splits.json")

    rng = probe_rng(seed)
    probe_tr, probe_te = probe_sets(p, train_set, test_set, rng)
    knn = KnnEval(sample_subset(probe_tr, 2000, rng), sample_subset(probe_te, 1000, rng))

    # The same augmentation trains the encoders and measures their alignment (as the paper does).
    aug = build_augmentation(p.augmentation, train_set.image_size)
    t_train = time.perf_counter()
    fitted = ctx.fit_families(p, train_set, splits, ("f", "g") + (("f'",) if p.null_models else ()), eval_fn=knn)
    families = {fam: [f.encoder for f in fs] for fam, fs in fitted.items()}
    histories = {f"{fam}{i}": f.history for fam, fs in fitted.items() for i, f in enumerate(fs)}
    t_train = time.perf_counter() - t_train
    if train_only:
        return None

    scored = {
        "candidate": train_set.subset(splits.candidate),
        "shared": train_set.subset(splits.shared),
        "extra": test_set.subset(splits.extra),
        "independent": train_set.subset(splits.independent),
    }
    images = torch.cat([d.images for d in scored.values()])
    labels = np.concatenate([d.labels.numpy() for d in scored.values()])
    subset = np.concatenate([[s] * len(d) for s, d in scored.items()])
    # Views are drawn from each point's dataset index, so a point has the same views in every chapter.
    ids = np.concatenate([splits.candidate, splits.shared, test_point_ids(splits.extra, train_set), splits.independent])
    t_score = time.perf_counter()
    result = sslmem(families["f"], families["g"], images, aug, ids=ids, **ctx.scoring(p))
    # The null family: f′ saw exactly f's points, so SSLMem(f′ vs f) is what chance alone gives (same views).
    null = None
    if p.null_models:
        null = sslmem(families["f'"], families["f"], images, aug, ids=ids, **ctx.scoring(p))
    t_score = time.perf_counter() - t_score

    t_probe = time.perf_counter()
    rows = []
    for fam, encs in families.items() if probe else ():
        for i, enc in enumerate(encs):
            rows.append(
                {
                    "encoder": f"{fam}{i}",
                    "family": fam,
                    **probe_encoder(enc, probe_tr, probe_te, p.probe_epochs, seed, dev),
                }
            )
    probe_df = pd.DataFrame(rows, columns=None if rows else ["encoder", "family"]).set_index("encoder")
    # The random floor: untrained encoders of the same architecture, probed on the same sets (seeds no
    # trained encoder of this run uses).
    floor = _floor(p, seed, train_set, probe_tr, probe_te, dev) if probe and floor else pd.DataFrame()
    t_probe = time.perf_counter() - t_probe

    prov = ctx.provenance(p.to_dict())
    run = SSLMemRun(
        p,
        seed,
        splits,
        result,
        subset,
        images,
        labels,
        train_set.classes,
        histories,
        probe_df,
        prov,
        ctx.run_dir,
        {"train_s": t_train, "score_s": t_score, "probe_s": t_probe, "total_s": ctx.elapsed()},
        families,
        null,
        floor,
    )
    _save(run, ctx)
    return run


def floor_seeds(seed: int) -> list[int]:
    """Seeds of the run's untrained floor encoders: seeds no trained encoder of the run uses."""
    return [seed * 1000 + 900 + i for i in range(3)]


def _floor(p: Preset, seed: int, train_set, probe_tr, probe_te, device) -> pd.DataFrame:
    # Untrained encoders of the run's architecture on the run's probe sets.
    return random_floor(
        p.arch,
        probe_tr,
        probe_te,
        seeds=floor_seeds(seed),
        probe_epochs=p.probe_epochs,
        device=device,
        stats_set=train_set,
    )


def random_floor_of(preset, *, seed=0, device="cpu", data_root=None, **overrides) -> pd.DataFrame:
    """The random floor :func:`run_sslmem` reports for ``preset`` and ``seed`` (same probe sets, same
    untrained encoders), without training anything: one row per untrained encoder
    (:func:`~memlib.probing.floor.random_floor`)."""
    p = get_preset(preset, **overrides)
    dev = resolve_device(device)
    train_set, test_set, _ = load_with_splits(p, seed, data_root)
    probe_tr, probe_te = probe_sets(p, train_set, test_set, probe_rng(seed))
    return _floor(p, seed, train_set, probe_tr, probe_te, dev)


def _save(run: SSLMemRun, ctx: RunContext) -> None:
    """Write per-point scores (CSV), summary, tests, probe and provenance (JSON) to the run folder, then its
    ``COMPLETE`` marker."""
    r = run.result
    scores = pd.DataFrame(
        {
            "subset": run.subset,
            "label": run.labels,
            "align_f": r.align_f,
            "align_g": r.align_g,
            "raw": r.raw,
            "score": r.score,
        }
    )
    if run.null is not None:
        scores["null_raw"] = run.null.raw  # f′ vs f on the same points and views
    summary = {
        "summary": run.summary().reset_index().to_dict(orient="records"),
        "tests": run.tests().to_dict(orient="records"),
        "probe": run.probe.reset_index().to_dict(orient="records"),
        "random_floor": run.floor.to_dict(orient="records"),
        "order_holds": run.order_holds(),
        "timings": run.timings,
        "provenance": run.provenance,
        "histories": run.histories,
    }
    ctx.save(tables={"scores": scores}, jsons={"summary": summary})
