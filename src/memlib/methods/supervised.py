"""Supervised baseline: cross-entropy with a linear classifier on the pooled representation.

The encoder SSLMem and the probes use is ``self.encoder``: the network with
its classifier removed, as in the paper's SSL-vs-supervised comparison.
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import nn

from ..data.augment import CropFlip
from . import register
from .base import SSLMethod


@register("supervised")
class Supervised(SSLMethod):
    """Supervised training with the labels the training loop passes.

    Parameters
    ----------
    encoder
        The encoder; a linear classifier sits on its pooled output.
    num_classes
        Number of classes (10 for Fashion-MNIST and CIFAR-10).
    augmentation
        Draws the one training view; ``None``: :class:`~memlib.data.augment.CropFlip`
        at the encoder's image size. Any given augmentation is used as is.
    """

    name = "supervised"

    def __init__(self, encoder, num_classes: int = 10, augmentation=None):
        if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 2:
            raise ValueError(f"Supervised: num_classes={num_classes!r} must be an int ≥ 2")
        super().__init__(encoder)
        self.num_classes = num_classes
        self.classifier = nn.Linear(encoder.pooled_dim, num_classes)
        self.augmentation = augmentation or CropFlip(size=encoder.img_size)

    def training_step(self, images, indices, labels, generator=None):
        if labels is None or (labels < 0).any():
            raise ValueError(
                "Supervised: labels are missing (None or -1); pass the dataset's labels to "
                "memlib.training.train(method, images, labels, ...)"
            )
        if (labels >= self.num_classes).any():
            raise ValueError(
                f"Supervised: label {int(labels.max())} ≥ num_classes={self.num_classes}; "
                "build the method with a larger num_classes"
            )
        logits = self.classifier(self.encoder.pooled(self.augmentation(images, generator)))
        loss = F.cross_entropy(logits.float(), labels)
        acc = (logits.argmax(1) == labels).float().mean()
        return {"loss": loss, "accuracy": acc.detach()}
