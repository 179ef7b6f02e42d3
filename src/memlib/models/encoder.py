"""The encoder interface memlib's methods and metrics rely on, and feature taps.

An :class:`Encoder` maps float images in [0, 1] of shape (B, C, H, W) to

- ``forward(x)``: the *full* representation, flattened to (B, D): the last
  feature map before pooling for ResNets, all tokens after the final norm for
  ViTs (the book's Methods page). SSLMem uses this.
- ``pooled(x)``: a pooled vector (B, F) (global average pool, or the CLS
  token) for projection heads, kNN and linear probes.

Input normalisation lives inside the encoder (a per-channel mean/std buffer),
so augmentations work on real pixel values and any user can call an encoder
on images in [0, 1].

Intermediate outputs are read by name with forward hooks
(:func:`extract_taps`), the way timm's feature extraction does: the output a
module really computes, residual additions included — never by re-chaining
child modules, which silently drops them.
"""

from __future__ import annotations

from contextlib import contextmanager

import torch
from torch import nn


class Encoder(nn.Module):
    """Base class: normalisation + ``forward_features`` + ``pool``.

    Subclasses implement :meth:`forward_features` (normalised input → unpooled
    features) and :meth:`pool`, and set ``pooled_dim`` and ``tap_names``.
    """

    pooled_dim: int
    tap_names: tuple[str, ...] = ()

    def __init__(self, in_chans: int, img_size: int, mean=None, std=None):
        super().__init__()
        self.in_chans, self.img_size = in_chans, img_size
        mean = torch.full((in_chans,), 0.5) if mean is None else torch.as_tensor(mean, dtype=torch.float32)
        std = torch.full((in_chans,), 0.25) if std is None else torch.as_tensor(std, dtype=torch.float32)
        self.register_buffer("mean", mean.view(1, -1, 1, 1).clone())
        self.register_buffer("std", std.view(1, -1, 1, 1).clone())

    def check_input(self, x: torch.Tensor) -> None:
        """Raise a clear error for images this encoder cannot take."""
        if x.ndim != 4 or x.shape[1] != self.in_chans:
            raise ValueError(
                f"{type(self).__name__} expects images of shape (B, {self.in_chans}, H, W), got {tuple(x.shape)}"
            )
        if not x.is_floating_point():
            raise TypeError(
                f"{type(self).__name__} expects float images in [0, 1], got dtype {x.dtype}; "
                "convert uint8 images with memlib.data.augment.to_float"
            )

    def normalize(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.mean) / self.std

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:  # pragma: no cover - abstract
        """Unpooled features of the normalised input."""
        raise NotImplementedError

    def pool(self, feats: torch.Tensor) -> torch.Tensor:  # pragma: no cover - abstract
        """Pool the unpooled features."""
        raise NotImplementedError

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Full representation, flattened: (B, D)."""
        return self.forward_features(x).flatten(1)

    def pooled(self, x: torch.Tensor) -> torch.Tensor:
        """Pooled representation: (B, pooled_dim)."""
        return self.pool(self.forward_features(x))


@contextmanager
def tapped(model: nn.Module, names):
    """Context manager recording the outputs of the named submodules.

    Yields a dict that, after a forward pass inside the ``with`` block, maps
    each name to that module's output tensor (the first element if the
    module returns a tuple).
    """
    modules = dict(model.named_modules())
    missing = [n for n in names if n not in modules]
    if missing:
        known = getattr(model, "tap_names", None) or [n for n in modules if n]
        raise ValueError(f"unknown tap name(s) {missing}; known: {list(known)[:40]}")
    out: dict[str, torch.Tensor] = {}
    handles = []
    for name in names:

        def hook(_mod, _inp, output, name=name):
            out[name] = output[0] if isinstance(output, (tuple, list)) else output

        handles.append(modules[name].register_forward_hook(hook))
    try:
        yield out
    finally:
        for h in handles:
            h.remove()


def extract_taps(model: nn.Module, x: torch.Tensor, names) -> dict[str, torch.Tensor]:
    """Run ``model(x)`` once and return the outputs of the named submodules."""
    with tapped(model, names) as out:
        model(x)
    return dict(out)


def channel_stats(images: torch.Tensor) -> tuple[list[float], list[float]]:
    """Per-channel mean and std of uint8 images (B, C, H, W) in [0, 1] units."""
    x = images.float() / 255.0
    return x.mean(dim=(0, 2, 3)).tolist(), x.std(dim=(0, 2, 3)).clamp_min(1e-3).tolist()
