"""What every SSL method provides to the training loop."""

from __future__ import annotations

import torch
from torch import nn

from ..models.encoder import Encoder


class SSLMethod(nn.Module):
    """An encoder plus the heads and loss of one training method.

    The training loop calls :meth:`training_step` with a batch of raw uint8
    images, the indices of those images in the dataset (solo-learn style:
    every batch carries them) and their labels (used only by supervised
    baselines), plus the generator that draws the augmentations. Subclasses
    set ``name`` and implement :meth:`training_step`.
    """

    name: str = "base"
    #: Encoder architectures (names in ``memlib.models.ENCODERS``) the method can train; ``None`` = any.
    archs: tuple[str, ...] | None = None
    #: The augmentation (a name in :data:`~memlib.data.augment.AUGMENTATIONS`) the method trains with
    #: whatever an experiment's default; ``None``: the experiment's.
    default_augmentation: str | None = None

    @classmethod
    def arch_for(cls, arch: str) -> str:
        """The architecture the method trains where an experiment asks for ``arch``: ``arch`` itself here;
        a method restricted to :attr:`archs` overrides this to pick its stand-in."""
        return arch

    @classmethod
    def recipe(cls, arch: str, augmentation: str) -> tuple[str, str]:
        """``(architecture, training augmentation)`` of the method where an experiment's defaults are
        ``arch`` and ``augmentation``: :meth:`arch_for` and :attr:`default_augmentation`, else the defaults."""
        return cls.arch_for(arch), cls.default_augmentation or augmentation

    def __init__(self, encoder: Encoder):
        super().__init__()
        self.encoder = encoder

    def training_step(
        self,
        images: torch.Tensor,
        indices: torch.Tensor,
        labels: torch.Tensor,
        generator: torch.Generator | None = None,
    ) -> dict[str, torch.Tensor]:
        """Return a dict with at least ``"loss"`` (a scalar tensor to minimise)."""
        raise NotImplementedError
