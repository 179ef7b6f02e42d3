"""Encoders: ResNets with a small-image stem and timm ViTs, built by name."""

from __future__ import annotations

from .encoder import Encoder, channel_stats, extract_taps, tapped
from .resnet import (
    SmallImageResNet,
    resnet18,
    resnet50,
    resnet_narrow,
    resnet_narrow_x2,
    resnet_narrow_x4,
    resnet_narrow_x8,
)
from .vit import ViTEncoder, vit_micro, vit_tiny

#: Encoder constructors by name (what :func:`build_encoder` builds).
ENCODERS = {
    "resnet_narrow": resnet_narrow,
    "resnet_narrow_x2": resnet_narrow_x2,
    "resnet_narrow_x4": resnet_narrow_x4,
    "resnet_narrow_x8": resnet_narrow_x8,
    "resnet18": resnet18,
    "resnet50": resnet50,
    "vit_micro": vit_micro,
    "vit_tiny": vit_tiny,
}


def vit_counterpart(arch: str) -> str:
    """The ViT trained beside ``arch``: ``arch`` itself if a ViT, ``vit_tiny`` beside a full ResNet
    (``resnet18``, ``resnet50``), else ``vit_micro``."""
    return arch if arch.startswith("vit") else "vit_tiny" if arch in ("resnet18", "resnet50") else "vit_micro"


def build_encoder(name: str, in_chans: int, img_size: int, mean=None, std=None) -> Encoder:
    """Encoder by name (one of :data:`ENCODERS`) for images of ``in_chans`` channels and
    ``img_size`` × ``img_size`` pixels."""
    if name not in ENCODERS:
        raise ValueError(f"arch={name!r} is unknown; choose one of {sorted(ENCODERS)}")
    return ENCODERS[name](in_chans=in_chans, img_size=img_size, mean=mean, std=std)


__all__ = [
    "ENCODERS",
    "Encoder",
    "SmallImageResNet",
    "ViTEncoder",
    "build_encoder",
    "channel_stats",
    "extract_taps",
    "tapped",
    "resnet18",
    "resnet50",
    "resnet_narrow",
    "resnet_narrow_x2",
    "resnet_narrow_x4",
    "resnet_narrow_x8",
    "vit_micro",
    "vit_counterpart",
    "vit_tiny",
]
