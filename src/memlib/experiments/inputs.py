"""What a run reads: the preset's data set and its split, and the probe and downstream sets.

Every experiment draws these the same way from its seed, so runs that share
a seed share their points (chapter 03's λ = 0 probe is chapter 01's).
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from ..data.datasets import ImageDataset, load_dataset
from ..data.splits import Splits, make_splits
from .presets import Preset

#: The downstream sets the removal experiment probes on. Fashion-MNIST is the
#: training distribution; the two digit sets are data the encoders never saw.
DOWNSTREAM = ("fashion_mnist", "mnist5k", "digits")


def load_with_splits(p: Preset, seed: int, data_root=None) -> tuple[ImageDataset, ImageDataset, Splits]:
    """The preset's dataset (train and test split) and its seeded S_S / S_C / S_I / S_E split."""
    train_set = load_dataset(p.dataset, "train", root=data_root)
    test_set = load_dataset(p.dataset, "test", root=data_root)
    splits = make_splits(
        len(train_set), len(test_set), p.shared, p.candidate, p.extra, seed=seed, train_labels=train_set.labels.numpy()
    )
    return train_set, test_set, splits


def probe_rng(seed: int) -> np.random.Generator:
    """The generator that draws the probe sets of a run seeded with ``seed`` (the same in every experiment)."""
    return np.random.default_rng(seed + 12345)


def sample_subset(ds: ImageDataset, n: int | None, rng: np.random.Generator) -> ImageDataset:
    """``n`` points of ``ds`` drawn with ``rng``, in dataset order (all of ``ds`` for ``n=None``)."""
    if n is None or n >= len(ds):
        return ds
    return ds.subset(np.sort(rng.choice(len(ds), size=n, replace=False)))


def probe_sets(
    p: Preset, train_set: ImageDataset, test_set: ImageDataset, rng: np.random.Generator
) -> tuple[ImageDataset, ImageDataset]:
    """The linear probe's train and test sets: ``p.probe_train`` / ``p.probe_test`` points drawn with ``rng``."""
    return sample_subset(train_set, p.probe_train, rng), sample_subset(test_set, p.probe_test, rng)


def resize_to(ds: ImageDataset, channels: int, size: int) -> ImageDataset:
    """``ds`` with images bilinearly resized to size × size and 1↔3 channels matched (uint8 kept)."""
    x = ds.images.float()
    if x.shape[-1] != size or x.shape[-2] != size:
        x = F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False, antialias=True)
    if x.shape[1] != channels:
        x = x.mean(1, keepdim=True) if channels == 1 else x.expand(-1, channels, -1, -1)
    return ImageDataset(x.round().clamp(0, 255).to(torch.uint8), ds.labels, ds.classes, ds.name)


def downstream_sets(
    channels: int, size: int, n_train: int | None, n_test: int | None, seed: int, data_root=None, names=DOWNSTREAM
) -> dict[str, tuple[ImageDataset, ImageDataset]]:
    """(train, test) probe sets ``names``, resized to the encoder's input, optionally subsampled."""
    rng = probe_rng(seed)
    out = {}
    for name in names:
        tr, te = (resize_to(load_dataset(name, s, root=data_root), channels, size) for s in ("train", "test"))
        out[name] = (sample_subset(tr, n_train, rng), sample_subset(te, n_test, rng))
    return out
