"""Where scored views come from: one view source for SSLMem, LayerMem and UnitMem.

A view source holds N points and K views of each. Two kinds:

- :class:`AugmentedViews`: uint8 images, an augmentation and a seed. View k
  of the point with id i is drawn from the key ``(seed, i, k)``
  (:mod:`memlib.data.draws`), so it is the same whatever the batch size,
  the order of the points, the device, or the rank that scores it under
  ``torchrun``; and SSLMem, LayerMem and UnitMem of the same
  ``(seed, ids)`` see the same views. Ids default to positions 0..N−1;
  the experiment runners pass dataset indices.
- :class:`FixedViews`: a tensor of views (N, K, C, H, W) you made yourself
  (and clean images for ``mode="clean"``), scored as they are.

:func:`draw_views` materialises an :class:`AugmentedViews` source as a
tensor, e.g. to check memlib against your own code on exactly its views.
:func:`view_batches` cuts a source into batches of whole points; under
``torchrun`` each rank takes its share of whole batches and
:func:`gather_points` collects the per-point results.
"""

from __future__ import annotations

import warnings
from typing import Iterator, Protocol

import numpy as np
import torch
from tqdm import tqdm

from ..data.augment import Augmentation, to_float
from ..data.draws import augment_rows, check_ids, check_seed, point_keys
from ..training.distributed import gather_rows, shard_bounds

MODES = ("pairwise", "clean")


class ViewSource(Protocol):
    """N points with K views each (see the module docstring)."""

    n_points: int
    views: int

    def point_views(self, lo: int, hi: int, device) -> torch.Tensor:
        """All K views of points ``lo:hi``, point-major: (b·K, C, H, W) float in [0, 1]."""

    def view(self, lo: int, hi: int, k: int, device) -> torch.Tensor:
        """View k of points ``lo:hi``: (b, C, H, W) float."""

    def clean(self, lo: int, hi: int, device) -> torch.Tensor:
        """The clean images of points ``lo:hi``: (b, C, H, W) float."""


def _as_uint8_images(images, name: str = "images") -> torch.Tensor:
    if isinstance(images, np.ndarray):
        images = torch.from_numpy(images)
    if not isinstance(images, torch.Tensor) or images.ndim != 4 or images.dtype != torch.uint8:
        got = f"{images.dtype} {tuple(images.shape)}" if isinstance(images, torch.Tensor) else type(images).__name__
        raise TypeError(
            f"{name} must be uint8 of shape (N, C, H, W), got {got}; memlib augments raw pixels "
            f"(float images in [0, 1]: pass (x * 255).round().to(torch.uint8))"
        )
    if images.shape[0] == 0:
        raise ValueError(f"{name} is empty: pass at least one point")
    return images


def check_views_arg(views, mode: str) -> None:
    """Raise a clear error for a ``mode`` or number of views the alignment loss cannot take."""
    if mode not in MODES:
        raise ValueError(f"mode={mode!r} is unknown; choose one of {MODES}")
    least = 2 if mode == "pairwise" else 1
    if isinstance(views, bool) or not isinstance(views, (int, np.integer)) or views < least:
        raise ValueError(f"views={views!r} must be an int ≥ {least} for mode={mode!r}")


def check_batch_size(batch_size) -> int:
    """``batch_size`` as an int ≥ 1, or a clear error."""
    if isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer)) or batch_size < 1:
        raise ValueError(f"batch_size={batch_size!r} must be an int ≥ 1 (images per forward pass)")
    return int(batch_size)


class AugmentedViews:
    """K augmented views of each image, view k of point id i drawn from the key ``(seed, i, k)``.

    Parameters
    ----------
    images
        uint8 images (N, C, H, W), a tensor or a numpy array.
    augmentation
        ``(uint8 images, generator) → float views``. Augmentations that
        declare ``point_draws = True`` (all of memlib's) are applied batched;
        any other callable once per view (slower, same keying).
    views
        K.
    seed
        Seeds the view draws (int ≥ 0).
    ids
        One distinct int ≥ 0 per point (default: positions 0..N−1).
    """

    def __init__(self, images, augmentation: Augmentation, views: int, seed: int = 0, ids=None):
        self.images = _as_uint8_images(images)
        if not callable(augmentation):
            raise TypeError(
                f"augmentation must be callable (uint8 images, generator) → views, got {type(augmentation).__name__}"
            )
        if isinstance(views, bool) or not isinstance(views, (int, np.integer)) or views < 1:
            raise ValueError(f"views={views!r} must be an int ≥ 1")
        size = getattr(augmentation, "size", None)
        if isinstance(size, int) and size != self.images.shape[-1]:
            warnings.warn(
                f"augmentation size={size} but the images are {self.images.shape[-2]}×"
                f"{self.images.shape[-1]}: every view is resized to {size} px. If the encoder takes "
                f"{self.images.shape[-1]} px, pass e.g. SimCLRAugment(size={self.images.shape[-1]})",
                stacklevel=3,
            )
        self.augmentation, self.views = augmentation, int(views)
        self.seed = check_seed(seed)
        self.ids = check_ids(ids, self.images.shape[0])
        self.n_points = self.images.shape[0]

    def _augment(self, lo: int, hi: int, view_index: np.ndarray, device) -> torch.Tensor:
        per_point = len(view_index)
        rows = self.images[lo:hi].to(device).repeat_interleave(per_point, dim=0)
        keys = point_keys(self.seed, np.repeat(self.ids[lo:hi], per_point), np.tile(view_index, hi - lo))
        return augment_rows(self.augmentation, rows, keys)

    def point_views(self, lo: int, hi: int, device) -> torch.Tensor:
        return self._augment(lo, hi, np.arange(self.views), device)

    def view(self, lo: int, hi: int, k: int, device) -> torch.Tensor:
        return self._augment(lo, hi, np.array([k]), device)

    def clean(self, lo: int, hi: int, device) -> torch.Tensor:
        return to_float(self.images[lo:hi].to(device))


class FixedViews:
    """Views you made yourself, scored as they are.

    Parameters
    ----------
    views
        (N, K, C, H, W): uint8, or float in [0, 1] (what the encoders take).
    clean
        (N, C, H, W) clean images, needed for ``mode="clean"`` only.
    """

    def __init__(self, views: torch.Tensor, clean: torch.Tensor | None = None):
        if isinstance(views, np.ndarray):
            views = torch.from_numpy(views)
        if not isinstance(views, torch.Tensor) or views.ndim != 5 or views.shape[0] == 0:
            got = tuple(views.shape) if isinstance(views, torch.Tensor) else type(views).__name__
            raise ValueError(f"views must be a tensor of shape (N ≥ 1, K, C, H, W), got {got}")
        if clean is not None:
            if isinstance(clean, np.ndarray):
                clean = torch.from_numpy(clean)
            if not isinstance(clean, torch.Tensor) or tuple(clean.shape) != (views.shape[0], *views.shape[2:]):
                got = tuple(clean.shape) if isinstance(clean, torch.Tensor) else type(clean).__name__
                raise ValueError(f"clean must have shape {(views.shape[0], *views.shape[2:])} (N, C, H, W), got {got}")
        self.fixed, self.clean_images = views, clean
        self.n_points, self.views = views.shape[0], views.shape[1]

    def point_views(self, lo: int, hi: int, device) -> torch.Tensor:
        return to_float(self.fixed[lo:hi].flatten(0, 1).to(device))

    def view(self, lo: int, hi: int, k: int, device) -> torch.Tensor:
        return to_float(self.fixed[lo:hi, k].to(device))

    def clean(self, lo: int, hi: int, device) -> torch.Tensor:
        if self.clean_images is None:
            raise ValueError('mode="clean" needs the clean images: pass clean= (N, C, H, W) with the views')
        return to_float(self.clean_images[lo:hi].to(device))


def draw_views(
    images, augmentation: Augmentation, views: int, *, seed: int = 0, ids=None, device: str | torch.device = "cpu"
) -> torch.Tensor:
    """The exact views memlib scores for ``(images, augmentation, views, seed, ids)``: (N, K, C, H, W) float.

    Scoring these with the ``*_from_views`` functions gives the same result
    as scoring the images with the augmentation.
    """
    src = AugmentedViews(images, augmentation, views, seed, ids)
    v = src.point_views(0, src.n_points, torch.device(device))
    return v.view(src.n_points, src.views, *v.shape[1:])


def points_per_batch(batch_size: int, views: int, mode: str) -> int:
    """Points per batch of :func:`view_batches`: ``batch_size`` images hold their K views (and clean copy)."""
    return max(1, batch_size // (views + (mode == "clean")))


def view_batches(
    source: ViewSource,
    mode: str,
    batch_size: int,
    device: torch.device,
    progress: bool = False,
    desc: str = "alignment",
) -> Iterator[tuple[int, int, torch.Tensor]]:
    """Yield ``(start, b, v)``: batches of ``b`` whole points and their views.

    ``v`` holds the K views of each point, point-major (``b·K`` images),
    with the ``b`` clean images in front for ``mode="clean"``. Under
    ``torchrun`` each rank takes its :func:`~memlib.training.distributed.shard_bounds`
    share of whole batches (``start`` stays the global position).
    """
    per_batch = points_per_batch(batch_size, source.views, mode)
    lo, hi = shard_bounds(source.n_points, unit=per_batch)
    for start in tqdm(range(lo, hi, per_batch), desc=desc, disable=not progress, leave=False):
        end = min(start + per_batch, hi)
        v = source.point_views(start, end, device)
        if mode == "clean":
            v = torch.cat([source.clean(start, end, device), v])
        yield start, end - start, v


def gather_points(out: torch.Tensor, unit: int) -> torch.Tensor:
    """``out`` (…, N) with this rank's shard of the last axis filled, completed from every rank.

    Without a process group (one process) ``out`` is returned as is.
    """
    n = out.shape[-1]
    lo, hi = shard_bounds(n, unit=unit)
    if (lo, hi) == (0, n):
        return out
    mine = out[..., lo:hi].movedim(-1, 0).contiguous()
    return gather_rows(mine, n, unit=unit).movedim(0, -1)
