"""Batched, seeded image augmentations that run on the images' device.

Every augmentation takes raw ``uint8`` images of shape (B, C, H, W) and returns
``float32`` images in [0, 1] (normalisation happens inside the encoder, so the
colour operations see real pixel values, not standardised ones — the official
code got this wrong). Each image in the batch draws its own parameters from an
explicit :class:`torch.Generator`, so the same generator state gives the same
views: SSLMem feeds identical views to f and g, and runs are reproducible.

Why not ``torchvision.transforms.v2`` directly: v2 draws one parameter set per
call, so per-image randomness would need a Python loop over the batch. The
operations below are the same formulas as ``torchvision.transforms.v2.functional``
(brightness, contrast, saturation, grayscale are checked against it in the
tests), vectorised over per-image parameters. Hue is a rotation in YIQ space,
a close approximation of torchvision's HSV hue shift.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, ClassVar, Protocol

import torch
import torch.nn.functional as F

from .draws import PointDraws, normal, uniform


class Augmentation(Protocol):
    """Anything mapping (uint8 images, generator) to float views in [0, 1].

    The generator is a :class:`torch.Generator` (training) or, when the
    augmentation declares ``point_draws = True``, a
    :class:`~memlib.data.draws.PointDraws` (scoring: draws keyed by the point).
    """

    def __call__(self, images: torch.Tensor, generator: torch.Generator | PointDraws | None = None) -> torch.Tensor: ...


_GRAY = torch.tensor([0.2989, 0.587, 0.114]).view(1, 3, 1, 1)  # ITU-R 601-2 luma, as torchvision's


def to_float(images: torch.Tensor) -> torch.Tensor:
    """uint8 (B, C, H, W) → float32 in [0, 1]; float input is passed through."""
    if images.dtype == torch.uint8:
        return images.float().div_(255.0)
    if not images.is_floating_point():
        raise TypeError(f"images must be uint8 or float, got dtype {images.dtype}")
    return images.float()


def _uniform(n: int, low: float, high: float, gen, device) -> torch.Tensor:
    return uniform(gen, (n,), device) * (high - low) + low


def grayscale(x: torch.Tensor) -> torch.Tensor:
    """Luma of RGB images (B, 3, H, W) → (B, 1, H, W)."""
    return (x * _GRAY.to(x.device, x.dtype)).sum(1, keepdim=True)


def adjust_brightness(x: torch.Tensor, factor: torch.Tensor) -> torch.Tensor:
    return (x * factor.view(-1, 1, 1, 1)).clamp_(0, 1)


def adjust_contrast(x: torch.Tensor, factor: torch.Tensor) -> torch.Tensor:
    gray = grayscale(x) if x.shape[1] == 3 else x
    mean = gray.mean(dim=(-3, -2, -1), keepdim=True)
    f = factor.view(-1, 1, 1, 1)
    return (f * x + (1 - f) * mean).clamp_(0, 1)


def adjust_saturation(x: torch.Tensor, factor: torch.Tensor) -> torch.Tensor:
    f = factor.view(-1, 1, 1, 1)
    return (f * x + (1 - f) * grayscale(x)).clamp_(0, 1)


_RGB2YIQ = torch.tensor([[0.299, 0.587, 0.114], [0.596, -0.274, -0.322], [0.211, -0.523, 0.312]])
_YIQ2RGB = torch.linalg.inv(_RGB2YIQ)


def adjust_hue(x: torch.Tensor, shift: torch.Tensor) -> torch.Tensor:
    """Rotate chroma by ``shift`` turns (in [-0.5, 0.5]) in YIQ space.

    One 3×3 colour matrix per image, ``YIQ→RGB · R(θ) · RGB→YIQ``, applied in a
    single einsum.
    """
    angle = shift.to(x.dtype) * 2 * math.pi
    c, s = torch.cos(angle), torch.sin(angle)
    rot = torch.zeros(x.shape[0], 3, 3, device=x.device, dtype=x.dtype)
    rot[:, 0, 0] = 1
    rot[:, 1, 1], rot[:, 1, 2], rot[:, 2, 1], rot[:, 2, 2] = c, -s, s, c
    mat = _YIQ2RGB.to(x.device, x.dtype) @ rot @ _RGB2YIQ.to(x.device, x.dtype)
    return torch.einsum("bij,bjhw->bihw", mat, x).clamp_(0, 1)


def random_resized_crop(
    x: torch.Tensor,
    size: int,
    scale: tuple[float, float],
    ratio: tuple[float, float],
    flip_p: float,
    gen: torch.Generator | None,
) -> torch.Tensor:
    """Per-image random crop of relative area in ``scale`` and aspect in ``ratio``,
    resized to ``size`` (bilinear), with a horizontal flip of probability ``flip_p``.
    One ``grid_sample`` call for the whole batch."""
    b, dev = x.shape[0], x.device
    area = _uniform(b, scale[0], scale[1], gen, dev)
    log_r = _uniform(b, math.log(ratio[0]), math.log(ratio[1]), gen, dev)
    r = torch.exp(log_r)
    w = torch.sqrt(area * r).clamp(max=1.0)  # fraction of the width
    h = torch.sqrt(area / r).clamp(max=1.0)
    cx = (uniform(gen, (b,), dev) * 2 - 1) * (1 - w)
    cy = (uniform(gen, (b,), dev) * 2 - 1) * (1 - h)
    flip = uniform(gen, (b,), dev) < flip_p
    sx = torch.where(flip, -w, w)
    theta = torch.zeros(b, 2, 3, device=dev, dtype=x.dtype)
    theta[:, 0, 0], theta[:, 0, 2] = sx, cx
    theta[:, 1, 1], theta[:, 1, 2] = h, cy
    grid = F.affine_grid(theta, (b, x.shape[1], size, size), align_corners=False)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)


@dataclass
class SimCLRAugment:
    """SimCLR's pipeline (Chen et al. 2020), batched.

    Random resized crop + horizontal flip, colour jitter with probability
    ``jitter_p`` and random grayscale with probability ``grayscale_p``. On
    1-channel images the colour operations (saturation, hue, grayscale) are
    dropped; brightness and contrast are kept.

    Parameters
    ----------
    size
        Output side length in pixels.
    scale
        Range of the crop's area as a fraction of the image. SimCLR uses
        (0.08, 1) at 224 px; on 28–32 px images (0.2, 1) keeps the object.
    """

    point_draws: ClassVar[bool] = True  # draws through draws.uniform/normal: can be keyed by the point

    size: int
    scale: tuple[float, float] = (0.2, 1.0)
    ratio: tuple[float, float] = (3 / 4, 4 / 3)
    flip_p: float = 0.5
    jitter_p: float = 0.8
    brightness: float = 0.4
    contrast: float = 0.4
    saturation: float = 0.4
    hue: float = 0.1
    grayscale_p: float = 0.2

    def __call__(self, images: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        x = random_resized_crop(to_float(images), self.size, self.scale, self.ratio, self.flip_p, generator)
        b, dev, rgb = x.shape[0], x.device, x.shape[1] == 3
        jitter = (uniform(generator, (b,), dev) < self.jitter_p).view(-1, 1, 1, 1)
        y = adjust_brightness(x.clone(), _uniform(b, 1 - self.brightness, 1 + self.brightness, generator, dev))
        y = adjust_contrast(y, _uniform(b, 1 - self.contrast, 1 + self.contrast, generator, dev))
        if rgb:
            y = adjust_saturation(y, _uniform(b, 1 - self.saturation, 1 + self.saturation, generator, dev))
            y = adjust_hue(y, _uniform(b, -self.hue, self.hue, generator, dev))
        x = torch.where(jitter, y, x)
        if rgb:
            gray = (uniform(generator, (b,), dev) < self.grayscale_p).view(-1, 1, 1, 1)
            x = torch.where(gray, grayscale(x).expand_as(x), x)
        return x


@dataclass
class CropFlip:
    """Random resized crop and horizontal flip only (no colour operations)."""

    point_draws: ClassVar[bool] = True  # draws through draws.uniform/normal: can be keyed by the point

    size: int
    scale: tuple[float, float] = (0.2, 1.0)
    ratio: tuple[float, float] = (3 / 4, 4 / 3)
    flip_p: float = 0.5

    def __call__(self, images: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        return random_resized_crop(to_float(images), self.size, self.scale, self.ratio, self.flip_p, generator)


@dataclass
class GaussianNoise:
    """Additive Gaussian pixel noise of standard deviation ``std`` (in [0, 1] units)."""

    point_draws: ClassVar[bool] = True  # draws through draws.uniform/normal: can be keyed by the point

    std: float = 0.05

    def __call__(self, images: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        x = to_float(images)
        noise = normal(generator, x.shape, x.device).to(x.dtype)
        return (x + self.std * noise).clamp_(0, 1)


@dataclass
class MultiCrop:
    """DINO's multi-crop (Caron et al. 2021): 2 global views and ``n_local`` local views.

    Each view is a :class:`SimCLRAugment` draw (crop, flip, colour jitter,
    grayscale); global views crop a large part of the image (``global_scale``),
    local views a small part (``local_scale``). DINO's blur and solarisation
    are not used. Unlike the other augmentations, calling it returns a *list*
    of view batches, so it is not a drop-in :class:`Augmentation`.

    Parameters
    ----------
    size
        Side length of the global views in pixels.
    n_local
        Number of local views (0 gives global views only).
    local_size
        Side length of the local views; ``None`` means ``size``. DINO uses a
        lower resolution (96 vs 224 px); a ViT with fixed position embeddings
        needs ``size``.
    global_scale, local_scale
        Range of the crop's area as a fraction of the image.
    """

    size: int
    n_local: int = 2
    local_size: int | None = None
    global_scale: tuple[float, float] = (0.4, 1.0)
    local_scale: tuple[float, float] = (0.1, 0.4)

    def __post_init__(self):
        if isinstance(self.n_local, bool) or not isinstance(self.n_local, int) or self.n_local < 0:
            raise ValueError(f"MultiCrop: n_local={self.n_local!r} must be an int ≥ 0")
        for name in ("global_scale", "local_scale"):
            lo, hi = getattr(self, name)
            if not 0 < lo <= hi <= 1:
                raise ValueError(f"MultiCrop: {name}={(lo, hi)!r} must satisfy 0 < low ≤ high ≤ 1")
        self.global_aug = SimCLRAugment(size=self.size, scale=self.global_scale)
        self.local_aug = SimCLRAugment(size=self.local_size or self.size, scale=self.local_scale)

    def global_views(self, images: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """Two global views of each image, (2B, C, size, size): view 1 of all images, then view 2."""
        return self.global_aug(torch.cat([images, images]), generator)

    def local_views(self, images: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """``n_local`` local views of each image, (n_local·B, C, s, s), view-major like :meth:`global_views`."""
        return self.local_aug(images.repeat(self.n_local, 1, 1, 1), generator)

    def __call__(self, images: torch.Tensor, generator: torch.Generator | None = None) -> list[torch.Tensor]:
        """``[global_1, global_2, local_1, …]``, each a (B, C, s, s) batch."""
        b = images.shape[0]
        views = list(self.global_views(images, generator).split(b))
        if self.n_local:
            views += list(self.local_views(images, generator).split(b))
        return views


@dataclass
class RandomRotation:
    """Rotation by a per-image angle drawn uniformly from [-``degrees``, ``degrees``] (bilinear, one
    ``grid_sample`` for the batch; corners filled with the nearest border pixel, as in the crops)."""

    point_draws: ClassVar[bool] = True  # draws through draws.uniform/normal: can be keyed by the point

    degrees: float = 30.0

    def __call__(self, images: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        x = to_float(images)
        b, dev = x.shape[0], x.device
        a = _uniform(b, -self.degrees, self.degrees, generator, dev) * (math.pi / 180)
        theta = torch.zeros(b, 2, 3, device=dev, dtype=x.dtype)
        theta[:, 0, 0], theta[:, 0, 1] = a.cos(), -a.sin()
        theta[:, 1, 0], theta[:, 1, 1] = a.sin(), a.cos()
        grid = F.affine_grid(theta, tuple(x.shape), align_corners=False)
        return F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)


@dataclass
class PatchMask:
    """Masking: each ``patch`` × ``patch`` square of an image is set to 0 with probability ``ratio``
    (drawn per image and patch), as in MAE's input masking but applied to the pixels."""

    point_draws: ClassVar[bool] = True  # draws through draws.uniform/normal: can be keyed by the point

    ratio: float = 0.25
    patch: int = 4

    def __post_init__(self):
        if not 0 <= self.ratio < 1:
            raise ValueError(f"PatchMask: ratio={self.ratio!r} must lie in [0, 1)")

    def __call__(self, images: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        x = to_float(images)
        b, _, h, w = x.shape
        gh, gw = -(-h // self.patch), -(-w // self.patch)
        keep = uniform(generator, (b, 1, gh, gw), x.device) >= self.ratio
        keep = keep.repeat_interleave(self.patch, 2).repeat_interleave(self.patch, 3)[:, :, :h, :w]
        return x * keep.to(x.dtype)


@dataclass
class IntensityJitter:
    """Brightness and contrast jitter only (SimCLR's factors): on 1-channel images this is all of
    SimCLR's colour augmentation, the stand-in for "colour" augmentations on Fashion-MNIST."""

    point_draws: ClassVar[bool] = True  # draws through draws.uniform/normal: can be keyed by the point

    brightness: float = 0.4
    contrast: float = 0.4

    def __call__(self, images: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        x = to_float(images)
        b, dev = x.shape[0], x.device
        x = adjust_brightness(x.clone(), _uniform(b, 1 - self.brightness, 1 + self.brightness, generator, dev))
        return adjust_contrast(x, _uniform(b, 1 - self.contrast, 1 + self.contrast, generator, dev))


#: Augmentations by name.
AUGMENTATIONS: dict[str, Callable[..., Augmentation]] = {
    "simclr": SimCLRAugment,
    "crop_flip": CropFlip,
    "noise": lambda size=None, **kw: GaussianNoise(**kw),
    "rotation": lambda size=None, **kw: RandomRotation(**kw),
    "mask": lambda size=None, **kw: PatchMask(**kw),
    "intensity": lambda size=None, **kw: IntensityJitter(**kw),
}


def build_augmentation(name: str, size: int, **kwargs) -> Augmentation:
    """Augmentation by name (one of :data:`AUGMENTATIONS`), for images of side ``size``."""
    if name not in AUGMENTATIONS:
        raise ValueError(f"augmentation={name!r} is unknown; choose one of {sorted(AUGMENTATIONS)}")
    return AUGMENTATIONS[name](size=size, **kwargs)
