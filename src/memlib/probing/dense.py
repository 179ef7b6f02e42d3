"""A dense linear probe: semantic segmentation of single-object images, a stand-in for the paper's segmentation.

No data set with segmentation labels is available offline, but single-object images such as Fashion-MNIST carry
their own dense labels: each pixel above an intensity threshold belongs to the image's object, the rest is
background (:func:`object_masks`; class ``label + 1`` on the object, 0 on the background). The probe is linear
per location: a 1×1 convolution on the encoder's frozen spatial features (``forward_features``), its logits
upsampled bilinearly to the image (upsampling and a 1×1 convolution commute, so this is a linear read-out of the
upsampled features), trained with per-pixel cross-entropy. The score is the mean intersection over union over
the classes present (:func:`mean_iou`), as the paper's mIoU.

This tests how well a representation keeps *where* and *what* at once, as segmentation does; it is not the
paper's ADE20K task, and a chapter must say so.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..data.augment import to_float
from .features import embed
from .linear import fit_head


def object_masks(images: torch.Tensor, labels: torch.Tensor, threshold: float = 0.2) -> torch.Tensor:
    """Per-pixel classes of single-object images: ``label + 1`` where the (first-channel-mean) intensity is above
    ``threshold`` (in [0, 1]), else 0 (background). Shape (B, H, W), int64."""
    if not 0 < threshold < 1:
        raise ValueError(f"threshold={threshold!r} must be in (0, 1) (a fraction of the full intensity)")
    x = to_float(images).mean(1)
    return torch.where(x > threshold, labels.long().view(-1, 1, 1) + 1, torch.zeros_like(x, dtype=torch.long))


def spatial_features(encoder: nn.Module, images: torch.Tensor, batch_size: int = 512, device=None) -> torch.Tensor:
    """The encoder's frozen spatial feature map (B, C, h, w) (:func:`~memlib.probing.features.embed` with
    ``spatial=True``); refuses encoders without one."""
    f = embed(encoder, images, spatial=True, batch_size=batch_size, device=device)
    if f.ndim != 4:
        raise ValueError(
            f"the encoder's forward_features gives shape {tuple(f.shape)}, not a (B, C, h, w) map; the dense probe "
            "needs a convolutional encoder (e.g. a ResNet)"
        )
    return f


def mean_iou(pred: torch.Tensor, target: torch.Tensor, n_classes: int) -> float:
    """Mean over classes present (in the prediction or the target) of intersection over union, from the
    confusion matrix of every pixel."""
    cm = torch.bincount(target.reshape(-1) * n_classes + pred.reshape(-1), minlength=n_classes**2)
    cm = cm.reshape(n_classes, n_classes).double()
    inter = cm.diag()
    union = cm.sum(0) + cm.sum(1) - inter
    present = union > 0
    return float((inter[present] / union[present]).mean())


def segmentation_probe(
    train_features: torch.Tensor,
    train_masks: torch.Tensor,
    test_features: torch.Tensor,
    test_masks: torch.Tensor,
    *,
    n_classes: int,
    epochs: int = 30,
    lr: float = 1e-2,
    weight_decay: float = 1e-4,
    batch_size: int = 256,
    seed: int = 0,
) -> dict[str, float]:
    """Train a per-location linear classifier (1×1 convolution, logits upsampled to the masks' size) on frozen,
    channel-standardised spatial features; return ``{"test_miou", "train_miou", "test_pixel_acc"}``."""
    if epochs < 1:
        raise ValueError(f"epochs={epochs} must be ≥ 1")
    dev = train_features.device
    mu = train_features.mean((0, 2, 3), keepdim=True)
    sd = train_features.std((0, 2, 3), keepdim=True).clamp_min(1e-6)
    xtr, xte = (train_features - mu) / sd, (test_features.to(dev) - mu) / sd
    ytr, yte = train_masks.to(dev).long(), test_masks.to(dev).long()
    size = ytr.shape[-2:]
    gen = torch.Generator().manual_seed(seed)
    head = nn.Conv2d(xtr.shape[1], n_classes, 1).to(dev)
    with torch.no_grad():
        head.weight.normal_(0, 0.01, generator=gen) if dev.type == "cpu" else head.weight.normal_(0, 0.01)
        head.bias.zero_()

    def logits(x):
        return F.interpolate(head(x), size=size, mode="bilinear", align_corners=False)

    fit_head(head, logits, xtr, ytr, epochs=epochs, lr=lr, weight_decay=weight_decay, batch_size=batch_size, gen=gen)
    with torch.no_grad():
        pte = torch.cat([logits(xte[s : s + 1024]).argmax(1) for s in range(0, len(xte), 1024)])
        ptr = torch.cat([logits(xtr[s : s + 1024]).argmax(1) for s in range(0, len(xtr), 1024)])
    return {
        "test_miou": mean_iou(pte, yte, n_classes),
        "train_miou": mean_iou(ptr, ytr, n_classes),
        "test_pixel_acc": float((pte == yte).float().mean()),
    }


def segment_encoder(encoder: nn.Module, train_set, test_set, *, epochs: int = 30, seed: int = 0, device=None,
                    threshold: float = 0.2) -> dict[str, float]:  # fmt: skip
    """:func:`segmentation_probe` of ``encoder`` on the object masks of two labelled image sets (``images``,
    ``labels``, ``classes``)."""
    k = len(train_set.classes) + 1
    ftr = spatial_features(encoder, train_set.images, device=device)
    fte = spatial_features(encoder, test_set.images, device=device)
    mtr = object_masks(train_set.images, train_set.labels, threshold)
    mte = object_masks(test_set.images, test_set.labels, threshold)
    return segmentation_probe(ftr, mtr.to(ftr.device), fte, mte, n_classes=k, epochs=epochs, seed=seed)
