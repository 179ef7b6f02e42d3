"""SimCLR (Chen et al. 2020): two augmented views, MLP projector, NT-Xent."""

from __future__ import annotations

import torch
from torch import nn

from ..data.augment import SimCLRAugment
from ..losses.ntxent import nt_xent
from . import register
from .base import SSLMethod


@register("simclr")
class SimCLR(SSLMethod):
    """SimCLR.

    Parameters
    ----------
    encoder
        The encoder; its pooled output feeds the projector.
    proj_dim, hidden_dim
        Projector output and hidden width (2-layer MLP with BatchNorm).
    temperature
        NT-Xent temperature.
    augmentation
        Callable producing views from uint8 images; defaults to
        :class:`~memlib.data.augment.SimCLRAugment` at the encoder's image size.
    """

    name = "simclr"

    def __init__(
        self, encoder, proj_dim: int = 128, hidden_dim: int = 512, temperature: float = 0.5, augmentation=None
    ):
        super().__init__(encoder)
        d = encoder.pooled_dim
        self.projector = nn.Sequential(
            nn.Linear(d, hidden_dim), nn.BatchNorm1d(hidden_dim), nn.ReLU(inplace=True), nn.Linear(hidden_dim, proj_dim)
        )
        self.temperature = temperature
        self.augmentation = augmentation or SimCLRAugment(size=encoder.img_size)

    def training_step(self, images, indices, labels, generator=None):
        b = images.shape[0]
        views = self.augmentation(torch.cat([images, images]), generator)
        z = self.projector(self.encoder.pooled(views))
        return {"loss": nt_xent(z[:b], z[b:], self.temperature)}
