"""Random draws keyed by the point: each view's randomness is a function of (seed, point id, view index).

A scored point's views must not depend on how the scored set is batched,
ordered, sharded over ranks or which device runs it. A shared
:class:`torch.Generator` cannot give that: what one image draws depends on
how many draws came before it. :class:`PointDraws` replaces the generator
with a counter-based draw: one 64-bit key per image row, derived from
``(seed, point id, view index)`` by splitmix64's mixing function, and the
e-th number of the j-th draw of that row is ``hash(key, j, e)``. The numbers
are computed with NumPy on the CPU and then moved to the images' device, so
a CPU and a GPU see the same views.

Augmentations stay batched: they call :func:`uniform` and :func:`normal`
with either a :class:`torch.Generator` (training, where speed matters and a
run's order is fixed) or a :class:`PointDraws` (scoring), and only the
parameter draws differ. An augmentation that draws through these two
functions declares ``point_draws = True``; any other callable is called
once per view with a CPU :class:`torch.Generator` seeded from the same key
(:func:`augment_rows`), so its views are keyed by the point too, just slower.
"""

from __future__ import annotations

import math
from typing import Callable, Sequence

import numpy as np
import torch

_GAMMA = np.uint64(0x9E3779B97F4A7C15)  # splitmix64's increment (2^64 / golden ratio)
_M1, _M2 = np.uint64(0xBF58476D1CE4E5B9), np.uint64(0x94D049BB133111EB)


def _mix(z: np.ndarray) -> np.ndarray:
    """splitmix64's finaliser: a bijection of uint64 that scatters every input bit over the output."""
    with np.errstate(over="ignore"):
        z = (z ^ (z >> np.uint64(30))) * _M1
        z = (z ^ (z >> np.uint64(27))) * _M2
    return z ^ (z >> np.uint64(31))


def _add(a, b) -> np.ndarray:
    with np.errstate(over="ignore"):
        return np.asarray(a, dtype=np.uint64) + np.asarray(b, dtype=np.uint64)


def _times_gamma(a) -> np.ndarray:
    with np.errstate(over="ignore"):
        return np.asarray(a, dtype=np.uint64) * _GAMMA


def check_seed(seed) -> int:
    """``seed`` as an int ≥ 0, or a clear error."""
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"seed={seed!r} must be an int ≥ 0")
    return int(seed)


def check_ids(ids, n: int) -> np.ndarray:
    """Point ids as an int64 array of ``n`` distinct values ≥ 0 (default ``0..n−1``), or a clear error."""
    if ids is None:
        return np.arange(n, dtype=np.int64)
    if isinstance(ids, torch.Tensor):
        ids = ids.cpu().numpy()
    ids = np.asarray(ids)
    if ids.shape != (n,) or (n and not np.issubdtype(ids.dtype, np.integer)):
        raise ValueError(f"ids must be {n} integers, one per point, got {ids.dtype} of shape {ids.shape}")
    ids = ids.astype(np.int64)
    if n and ids.min() < 0:
        raise ValueError(f"ids must be ≥ 0, got {ids.min()}")
    if len(np.unique(ids)) != n:
        raise ValueError(
            "ids must be distinct: each id names one point, and its views are drawn from it "
            "(pass dataset indices, or leave ids=None for positions 0..N−1)"
        )
    return ids


def point_keys(seed: int, ids, view_index) -> np.ndarray:
    """One uint64 key per (point id, view index) pair, broadcast together, for the given seed."""
    h = _mix(_add(check_seed(seed), _GAMMA))
    h = _mix(_add(h, _add(np.asarray(ids, dtype=np.int64).astype(np.uint64), _GAMMA)))
    return _mix(_add(h, _add(np.asarray(view_index, dtype=np.int64).astype(np.uint64), _GAMMA)))


class PointDraws:
    """A per-row random source: row r's numbers depend only on ``keys[r]`` and the draw's position.

    Pass it where an augmentation takes a generator. Each call of
    :meth:`rand` or :meth:`randn` is the next draw ``j``; its value for row r
    and element e is ``hash(keys[r], j, e)``, so a row draws the same numbers
    whichever rows share its batch.

    Parameters
    ----------
    keys
        uint64 keys, one per image row (:func:`point_keys`).
    """

    def __init__(self, keys: np.ndarray):
        self.keys = np.asarray(keys, dtype=np.uint64).reshape(-1)
        self.calls = 0

    def __len__(self) -> int:
        return len(self.keys)

    def _bits(self, shape: Sequence[int]) -> np.ndarray:
        shape = tuple(int(s) for s in shape)
        if not shape or shape[0] != len(self.keys):
            raise ValueError(
                f"a keyed draw needs one row per key: shape {shape} for {len(self.keys)} keys; "
                "an augmentation given PointDraws must draw (batch, ...) shapes"
            )
        self.calls += 1
        per_row = _mix(_add(self.keys, _times_gamma(self.calls)))  # this draw's stream of each row
        elems = _times_gamma(np.arange(1, math.prod(shape[1:]) + 1, dtype=np.uint64))
        return _mix(_add(per_row[:, None], elems[None, :])).reshape(shape)

    def rand(self, shape: Sequence[int], device=None) -> torch.Tensor:
        """Uniform float32 in [0, 1) of ``shape`` (first axis: rows), on ``device``."""
        u = (self._bits(shape) >> np.uint64(40)).astype(np.float32) * np.float32(2.0**-24)
        return torch.from_numpy(u).to(device)

    def randn(self, shape: Sequence[int], device=None) -> torch.Tensor:
        """Standard normal float32 of ``shape`` (Box–Muller on two 53-bit uniforms), on ``device``."""
        shape = tuple(int(s) for s in shape)
        bits = self._bits((shape[0], 2 * math.prod(shape[1:])))
        u = (bits >> np.uint64(11)).astype(np.float64) * 2.0**-53
        u1, u2 = 1.0 - u[:, 0::2], u[:, 1::2]  # u1 in (0, 1]: log is finite
        z = np.sqrt(-2.0 * np.log(u1)) * np.cos(2 * np.pi * u2)
        return torch.from_numpy(z.astype(np.float32).reshape(shape)).to(device)


def uniform(generator, shape: Sequence[int], device) -> torch.Tensor:
    """``torch.rand(shape)`` from a :class:`torch.Generator` (or ``None``) or a :class:`PointDraws`."""
    if isinstance(generator, PointDraws):
        return generator.rand(shape, device)
    return torch.rand(tuple(shape), generator=generator, device=device)


def normal(generator, shape: Sequence[int], device) -> torch.Tensor:
    """``torch.randn(shape)`` from a :class:`torch.Generator` (or ``None``) or a :class:`PointDraws`."""
    if isinstance(generator, PointDraws):
        return generator.randn(shape, device)
    return torch.randn(tuple(shape), generator=generator, device=device)


def supports_point_draws(augmentation) -> bool:
    """Whether ``augmentation`` draws through :func:`uniform`/:func:`normal` (declares ``point_draws = True``)."""
    return bool(getattr(augmentation, "point_draws", False))


def augment_rows(augmentation: Callable, rows: torch.Tensor, keys: np.ndarray) -> torch.Tensor:
    """Augment ``rows`` (uint8, one image per key) with each row's randomness keyed by ``keys``.

    Batched for augmentations that support :class:`PointDraws`; otherwise one
    call per row with a CPU generator seeded from the row's key (the result
    is moved to ``rows``' device).
    """
    if supports_point_draws(augmentation):
        return augmentation(rows, PointDraws(keys))
    out = []
    for row, key in zip(rows.cpu(), np.asarray(keys, dtype=np.uint64)):
        gen = torch.Generator().manual_seed(int(key >> np.uint64(1)))  # manual_seed takes < 2^63
        out.append(augmentation(row[None], gen))
    return torch.cat(out).to(rows.device)
