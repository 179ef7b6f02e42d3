"""The random-encoder floor: what linear and kNN probes read from an *untrained* encoder.

Random convolutional features alone separate Fashion-MNIST's classes far
above chance, so a trained encoder's probe accuracy says it learned something
only where it beats the same architecture left at its initialisation.
:func:`random_floor` builds those untrained encoders the way a training run
builds its encoder before the first step — ``memlib.models.build_encoder``
with the per-channel statistics of the training images, after
``torch.manual_seed(seed)`` — and probes their frozen features with the same
functions a run uses (:func:`~memlib.probing.features.embed`,
:func:`~memlib.probing.linear.linear_probe`, :func:`~memlib.probing.knn.knn_accuracy`).
Seed s gives the encoder a run with training seed s starts from. The global
torch RNG is left as it was.

:func:`beats_floor` asks whether trained encoders' accuracies exceed the
floor's (one-sided Welch t-test).
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import pandas as pd
import torch
from scipy import stats as st

from ..data.datasets import ImageDataset
from ..models import build_encoder, channel_stats
from .features import embed
from .knn import knn_accuracy
from .linear import linear_probe


def _check_set(name: str, d) -> ImageDataset:
    if not isinstance(d, ImageDataset):
        raise TypeError(f"{name} must be a memlib.data.datasets.ImageDataset, got {type(d).__name__}")
    if len(d.labels) == 0 or int(d.labels.min()) < 0:
        raise ValueError(f"{name} ({d.name}) needs labelled images (labels ≥ 0) to probe; pass a labelled split")
    return d


def untrained_encoder(arch: str, stats_images: torch.Tensor, seed: int, device: str | torch.device = "cpu"):
    """The encoder a training run with seed ``seed`` starts from: ``build_encoder`` with the per-channel
    statistics of ``stats_images`` (uint8, N×C×H×W) after ``torch.manual_seed(seed)``, in eval mode. The
    caller's global torch RNG is left as it was."""
    mean, std = channel_stats(stats_images)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(int(seed))
        enc = build_encoder(arch, stats_images.shape[1], stats_images.shape[-1], mean, std)
    return enc.to(device).eval()


def random_floor(
    arch: str,
    train_set: ImageDataset,
    test_set: ImageDataset,
    *,
    seeds: Sequence[int] = (0, 1, 2),
    probe_epochs: int = 100,
    device: str | torch.device = "cpu",
    k: int = 20,
    stats_set: ImageDataset | None = None,
) -> pd.DataFrame:
    """Linear-probe and kNN accuracy of untrained encoders of architecture ``arch``, one per seed.

    Parameters
    ----------
    arch
        A name of ``memlib.models.ENCODERS``, e.g. ``"resnet_narrow"``.
    train_set, test_set
        Labelled images the probes train and are tested on (the probe splits of a run).
    seeds
        One untrained encoder per seed (``torch.manual_seed(seed)`` before it is
        built); the linear probe uses the same seed.
    probe_epochs
        Epochs of the linear probe (:func:`~memlib.probing.linear.linear_probe`).
    device
        Where the encoders embed the images and the probe trains.
    k
        Neighbours of the kNN vote (:func:`~memlib.probing.knn.knn_accuracy`).
    stats_set
        Images whose per-channel mean and std the encoders normalise with;
        default ``train_set``. Pass the SSL training split to match a run
        exactly, whose encoders take the statistics of that split.

    Returns
    -------
    pandas.DataFrame
        One row per seed: ``arch``, ``seed``, ``linear_acc`` (test),
        ``linear_train_acc``, ``knn_acc`` (test).

    Examples
    --------
    >>> floor = random_floor("resnet_narrow", probe_train, probe_test, seeds=range(5))  # doctest: +SKIP
    >>> beats_floor(trained["linear_acc"], floor["linear_acc"])  # doctest: +SKIP
    """
    train_set, test_set = _check_set("train_set", train_set), _check_set("test_set", test_set)
    stats_set = train_set if stats_set is None else stats_set
    if not isinstance(stats_set, ImageDataset):
        raise TypeError(f"stats_set must be an ImageDataset or None, got {type(stats_set).__name__}")
    shapes = {n: tuple(d.images.shape[1:]) for n, d in (("train_set", train_set), ("test_set", test_set))}
    shapes["stats_set"] = tuple(stats_set.images.shape[1:])
    if len(set(shapes.values())) > 1:
        raise ValueError(f"train_set, test_set and stats_set must hold images of one shape (C, H, W), got {shapes}")
    seeds = [int(s) for s in seeds]
    if not seeds:
        raise ValueError("seeds is empty; pass at least one seed, e.g. seeds=(0, 1, 2)")
    if len(set(seeds)) < len(seeds):
        raise ValueError(f"seeds={seeds} repeats a seed; each seed is one untrained encoder")
    if probe_epochs < 1:
        raise ValueError(f"probe_epochs={probe_epochs} must be ≥ 1")
    if k < 1:
        raise ValueError(f"k={k} must be ≥ 1")
    rows = []
    for seed in seeds:
        with torch.random.fork_rng(devices=[]):  # the caller's global RNG stays as it was
            enc = untrained_encoder(arch, stats_set.images, seed, device)
            ftr, fte = embed(enc, train_set.images, device=device), embed(enc, test_set.images, device=device)
            lp = linear_probe(ftr, train_set.labels, fte, test_set.labels, epochs=probe_epochs, seed=seed)
            knn = knn_accuracy(ftr, train_set.labels, fte, test_set.labels, k=k)
        rows.append(
            {
                "arch": arch,
                "seed": seed,
                "linear_acc": lp["test_acc"],
                "linear_train_acc": lp["train_acc"],
                "knn_acc": knn,
            }
        )
    return pd.DataFrame(rows)


def beats_floor(trained_accs, floor_accs, alpha: float = 0.05) -> dict:
    """Whether trained encoders' accuracies exceed the random-encoder floor (one-sided Welch t-test).

    Parameters
    ----------
    trained_accs, floor_accs
        Accuracies of trained encoders and of untrained ones (e.g. a column of
        :func:`random_floor`), at least 2 each.
    alpha
        Significance level, in (0, 1).

    Returns
    -------
    dict
        ``estimate`` (mean trained − mean floor), ``mean_trained``,
        ``mean_floor``, ``t``, ``p`` (H0: mean trained ≤ mean floor),
        ``n_trained``, ``n_floor`` and ``informative`` (p < alpha). When both
        groups have no spread the test is undefined; p is then 0 if the
        trained mean is higher and 1 otherwise.
    """
    a = np.asarray(trained_accs, dtype=np.float64).ravel()
    b = np.asarray(floor_accs, dtype=np.float64).ravel()
    for name, x in (("trained_accs", a), ("floor_accs", b)):
        if x.size < 2:
            raise ValueError(f"{name} needs at least 2 accuracies for a t-test, got {x.size}; train or seed more")
        if not np.isfinite(x).all():
            raise ValueError(f"{name} has non-finite accuracies")
    if isinstance(alpha, bool) or not 0 < alpha < 1:
        raise ValueError(f"alpha={alpha!r} must be in (0, 1), e.g. 0.05")
    diff = float(a.mean() - b.mean())
    if a.var() == 0 and b.var() == 0:
        t, p = (float("inf"), 0.0) if diff > 0 else (float("nan"), 1.0)
    else:
        r = st.ttest_ind(a, b, equal_var=False, alternative="greater")
        t, p = float(r.statistic), float(r.pvalue)
    return {
        "estimate": diff,
        "mean_trained": float(a.mean()),
        "mean_floor": float(b.mean()),
        "t": t,
        "p": p,
        "n_trained": int(a.size),
        "n_floor": int(b.size),
        "informative": bool(p < alpha),
    }
