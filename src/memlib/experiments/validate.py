"""Checking a run's parameters before any compute starts.

Every notebook's ``parameters`` cell (preset, device, seed, sizes, λ, ε)
goes through :func:`validate_run_parameters` first, so a typo fails in
seconds, with a message naming the parameter, its value and the fix, and
nothing is loaded, trained or written. Split sizes are checked against the
known sizes of the dataset's splits (:data:`~memlib.data.datasets.SPLIT_SIZES`),
so no data need to be loaded for that either.

The small checks (:func:`~memlib.methods.regularizer.check_lambda`, :func:`check_epsilon`,
:func:`check_seed`, :func:`check_positive_int`) are public so that every
experiment can call the same ones.
"""

from __future__ import annotations

import inspect
import math
import numbers
from pathlib import Path
from typing import Iterable

import torch

from ..data.augment import AUGMENTATIONS
from ..data.datasets import KNOWN_DATASETS, SPLIT_SIZES, check_data_root
from ..data.splits import check_split_sizes
from ..device import resolve_device
from ..memorization.views import MODES
from ..methods import METHODS, check_method
from ..methods.regularizer import check_lambda
from ..models import ENCODERS
from .artifacts import check_cache_dir
from .presets import Preset, get_preset

#: Preset fields that must be positive ints.
POSITIVE_INT_FIELDS = ("epochs", "batch_size", "views", "models_per_family", "probe_epochs", "score_batch_size")


def _is_int(value) -> bool:
    # bool is an int subclass, but `epochs=True` is a bug, not a count.
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def check_positive_int(name: str, value) -> int:
    """Return ``value`` if it is an int ≥ 1, else raise naming ``name``.

    Raises
    ------
    ValueError
        If ``value`` is not an int or is ≤ 0.
    """
    if not _is_int(value) or value <= 0:
        raise ValueError(f"{name}={value!r} must be a positive int; pass an int ≥ 1 (or None for the preset's value)")
    return int(value)


def check_seed(seed) -> int:
    """Return ``seed`` if it is an int ≥ 0 (what numpy and torch accept as a seed)."""
    if not _is_int(seed) or seed < 0:
        raise ValueError(f"seed={seed!r} must be an int ≥ 0, e.g. seed=0")
    return int(seed)


def _as_float(name: str, value) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or math.isnan(value):
        raise ValueError(f"{name}={value!r} must be a real number")
    return float(value)


def check_epsilon(eps) -> float:
    """Return the DP budget ε if it is > 0 (``math.inf`` means no differential privacy).

    Raises
    ------
    ValueError
        If ``eps`` is not a number or is ≤ 0.
    """
    v = _as_float("epsilon", eps)
    if not v > 0:
        raise ValueError(f"epsilon={eps!r} must be > 0 (smaller is more private); use e.g. 8, or math.inf for no DP")
    return v


def _each(value) -> Iterable:
    """A scalar or a sweep (list, tuple) as an iterable of values."""
    return value if isinstance(value, (list, tuple)) else (value,)


def check_preset(p: Preset) -> Preset:
    """Check every field of a preset; raise naming the field, its value and the fix.

    Split sizes are checked separately (:func:`check_preset_sizes`), since
    not every experiment uses the SSLMem splits.

    Raises
    ------
    ValueError
        On the first bad field.
    """
    if p.dataset not in KNOWN_DATASETS:
        raise ValueError(f"dataset={p.dataset!r} is unknown; choose one of {list(KNOWN_DATASETS)}")
    if p.arch not in ENCODERS:
        raise ValueError(f"arch={p.arch!r} is unknown; choose one of {sorted(ENCODERS)}")
    check_method(p.method)
    archs = METHODS[p.method].archs
    if archs is not None and p.arch not in archs:
        raise ValueError(f"method={p.method!r} cannot train arch={p.arch!r}; pass arch= one of {list(archs)}")
    check_method_kwargs(p.method, p.method_kwargs)
    if p.augmentation not in AUGMENTATIONS:
        raise ValueError(f"augmentation={p.augmentation!r} is unknown; choose one of {sorted(AUGMENTATIONS)}")
    if p.mode not in MODES:
        raise ValueError(f"mode={p.mode!r} is unknown; choose one of {MODES}")
    for name in POSITIVE_INT_FIELDS:
        check_positive_int(name, getattr(p, name))
    if p.mode == "pairwise" and p.views < 2:
        raise ValueError(f"views={p.views} must be ≥ 2 for mode='pairwise' (pairs of views); pass views=2 or more")
    lr = _as_float("lr", p.lr)
    if not (math.isfinite(lr) and lr > 0):
        raise ValueError(f"lr={p.lr!r} must be a finite number > 0, e.g. lr=1e-3")
    for name in ("warmup_epochs", "eval_every", "null_models"):
        v = getattr(p, name)
        if not _is_int(v) or v < 0:
            raise ValueError(f"{name}={v!r} must be an int ≥ 0")
    for name in ("probe_train", "probe_test"):
        if getattr(p, name) is not None:
            check_positive_int(name, getattr(p, name))
    return p


def check_method_kwargs(method: str, kwargs) -> dict:
    """Check that ``kwargs`` are keyword arguments the method ``method`` takes (its sizes, ratios, weights).

    Values are checked by the method itself when it is built; this catches a
    misspelt or foreign name before any data is loaded.
    """
    if not isinstance(kwargs, dict):
        raise ValueError(f"method_kwargs={kwargs!r} must be a dict, e.g. method_kwargs={{'mask_ratio': 0.5}}")
    params = inspect.signature(METHODS[method].__init__).parameters
    known = sorted(k for k in params if k not in ("self", "encoder", "augmentation"))
    bad = sorted(set(kwargs) - set(known))
    if bad:
        raise ValueError(f"method_kwargs has {bad}, which method={method!r} does not take; known: {known}")
    for k, v in kwargs.items():
        if isinstance(v, float) and not math.isfinite(v):
            raise ValueError(f"method_kwargs[{k!r}]={v!r} must be a finite number")
    return kwargs


def check_run_folders(cache_dir=None, data_root=None, dataset: str | None = None) -> Path:
    """Check, before any compute, that a run can write its cache folder and use its data root.

    Nothing is created. The data root must be writable only when data will be
    written into it (see :func:`~memlib.data.datasets.check_data_root`).

    Parameters
    ----------
    cache_dir
        The run's ``cache_dir`` (default ``$MEMLIB_CACHE``, else ``~/.cache/memlib/runs``).
    data_root
        The run's ``data_root`` (default ``$MEMLIB_DATA``, else ``~/.cache/memlib/data``).
    dataset
        The data set the run loads (its root is not checked if None).

    Returns
    -------
    pathlib.Path
        The cache folder.

    Raises
    ------
    ValueError
        If a folder, or one above it, is a file; the message names it and the fix.
    PermissionError
        If a folder that must be written is read-only for this user.
    """
    cache = check_cache_dir(cache_dir)
    if dataset is not None:
        check_data_root(dataset, data_root, param="data_root")
    return cache


def check_preset_sizes(p: Preset) -> tuple[int, int, int]:
    """Check that the preset's S_S, S_C (= S_I) and S_E fit its dataset, without loading it.

    Returns
    -------
    tuple of int
        ``(|S_S|, |S_C|, |S_E|)``, as :func:`~memlib.data.splits.make_splits` will draw them.
    """
    sizes = SPLIT_SIZES[p.dataset]
    return check_split_sizes(sizes["train"], sizes["test"], p.shared, p.candidate, p.extra)


def validate_run_parameters(
    preset: str | Preset = "smoke",
    device: str | torch.device = "cpu",
    seed: int = 0,
    *,
    lam=None,
    epsilon=None,
    splits: bool = True,
    **overrides,
) -> tuple[Preset, torch.device]:
    """Check everything a notebook's parameters cell can set, before any compute.

    Parameters
    ----------
    preset
        Preset name or :class:`~memlib.experiments.presets.Preset`.
    device
        ``"cpu"``, ``"cuda"``, ``"cuda:N"`` or ``"auto"``; ``"cuda"`` without a GPU is refused.
    seed
        The run's seed (int ≥ 0).
    lam
        Optional regulariser weight λ, or a list of them (a sweep); each must lie in [0, 1).
    epsilon
        Optional DP budget ε, or a list of them; each must be > 0 (``math.inf``: no DP).
    splits
        Also check that the SSLMem split sizes fit the dataset.
    **overrides
        Preset fields (``epochs=50``, ``shared=200``, …); ``None`` values take the preset's value.

    Returns
    -------
    tuple
        The preset with the overrides applied, and the resolved ``torch.device``.

    Raises
    ------
    ValueError
        Naming the first bad parameter, its value and the fix.
    """
    p = check_preset(get_preset(preset, **overrides))
    check_seed(seed)
    if splits:
        check_preset_sizes(p)
    for v in _each(lam) if lam is not None else ():
        check_lambda(v)
    for v in _each(epsilon) if epsilon is not None else ():
        check_epsilon(v)
    return p, resolve_device(device)
