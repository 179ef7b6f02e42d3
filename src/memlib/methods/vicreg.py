"""VICReg (Bardes et al. 2022): variance-invariance-covariance regularisation."""

from __future__ import annotations

import torch
from torch import nn

from ..data.augment import SimCLRAugment
from ..losses.vicreg import vicreg_loss
from . import register
from .base import SSLMethod


@register("vicreg")
class VICReg(SSLMethod):
    """VICReg: two views, an expander MLP, and the loss of
    :func:`~memlib.losses.vicreg.vicreg_loss`.

    Parameters
    ----------
    encoder
        The encoder; its pooled output feeds the expander.
    expander_dim
        Width of the 3-layer expander (VICReg: 8192).
    sim_weight, var_weight, cov_weight
        Loss weights of invariance, variance and covariance (VICReg: 25, 25, 1).
    augmentation
        Draws the two views; ``None``: :class:`~memlib.data.augment.SimCLRAugment`
        at the encoder's image size (close to VICReg's BYOL augmentations).
    """

    name = "vicreg"

    def __init__(
        self,
        encoder,
        expander_dim: int = 512,
        sim_weight: float = 25.0,
        var_weight: float = 25.0,
        cov_weight: float = 1.0,
        augmentation=None,
    ):
        for name, v in (("sim_weight", sim_weight), ("var_weight", var_weight), ("cov_weight", cov_weight)):
            if not v >= 0:
                raise ValueError(f"VICReg: {name}={v!r} must be ≥ 0 (VICReg uses 25, 25, 1)")
        super().__init__(encoder)
        d, e = encoder.pooled_dim, expander_dim
        self.expander = nn.Sequential(
            nn.Linear(d, e),
            nn.BatchNorm1d(e),
            nn.ReLU(inplace=True),
            nn.Linear(e, e),
            nn.BatchNorm1d(e),
            nn.ReLU(inplace=True),
            nn.Linear(e, e),
        )
        self.weights = dict(sim_weight=sim_weight, var_weight=var_weight, cov_weight=cov_weight)
        self.augmentation = augmentation or SimCLRAugment(size=encoder.img_size)

    def training_step(self, images, indices, labels, generator=None):
        b = images.shape[0]
        z = self.expander(self.encoder.pooled(self.augmentation(torch.cat([images, images]), generator)))
        return vicreg_loss(z[:b], z[b:], **self.weights)
