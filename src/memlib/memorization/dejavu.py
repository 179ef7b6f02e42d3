"""Déjà Vu memorisation (Meehan et al. 2023), beside SSLMem as in the SSLMem paper's Table 4.

From a crop of a training image that leaves out its centre (the object), an
encoder's representation is used to predict the image's label by a kNN vote
over a labelled *public* set of the same distribution, embedded by the same
encoder. Encoder f trained on the point; a reference encoder g did not. A
point is Déjà Vu memorised when f's kNN gets its label right from the crop
and g's does not; the population score is the share of such points (and the
accuracy gap between f and g).

Adaptation to 28 px Fashion-MNIST: there are no bounding boxes, so the
"background crop" is the image with a central square set to 0 (the
background value); the public set is embedded from whole images, and f's
and g's votes use their own embeddings of it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np
import torch

from ..probing.features import embed
from ..probing.knn import knn_predict


def periphery_crop(images: torch.Tensor, centre: int) -> torch.Tensor:
    """``images`` with a central ``centre`` × ``centre`` square set to 0 (uint8 kept)."""
    h, w = images.shape[-2:]
    if not 0 < centre < min(h, w):
        raise ValueError(f"periphery_crop: centre={centre!r} must lie in (0, {min(h, w)})")
    top, left = (h - centre) // 2, (w - centre) // 2
    out = images.clone()
    out[..., top : top + centre, left : left + centre] = 0
    return out


@dataclass
class DejaVuResult:
    """Per-point kNN correctness of f and g (shares over their members) on the crops."""

    correct_f: np.ndarray
    correct_g: np.ndarray

    @property
    def memorised(self) -> np.ndarray:
        """Whether f labels each point right more often than g does (with one encoder each, f right and g wrong)."""
        return self.correct_f > self.correct_g

    def summary(self) -> dict:
        """Accuracy of f and g on the crops, their gap, and the share of Déjà Vu memorised points."""
        return {
            "acc_f": float(self.correct_f.mean()),
            "acc_g": float(self.correct_g.mean()),
            "gap": float(self.correct_f.mean() - self.correct_g.mean()),
            "memorised": float(self.memorised.mean()),
        }


def dejavu(
    f_encoders: Sequence,
    g_encoders: Sequence,
    images: torch.Tensor,
    labels,
    public_images: torch.Tensor,
    public_labels,
    k: int = 20,
    centre: int = 14,
    device: str | torch.device | None = None,
) -> DejaVuResult:
    """Déjà Vu memorisation of ``images`` (f's training points) by ``f_encoders`` against ``g_encoders``.

    Parameters
    ----------
    f_encoders, g_encoders
        Encoders trained with and without the points.
    images, labels
        The points (uint8) and their labels (used only to score the votes).
    public_images, public_labels
        A labelled set of the same distribution that neither f nor g trained on.
    k
        Neighbours in the vote.
    centre
        Side of the central square removed from each point (see :func:`periphery_crop`).

    Returns
    -------
    DejaVuResult
    """
    labels = np.asarray(labels)
    f_hits = [dejavu_hits(e, images, labels, public_images, public_labels, k, centre, device) for e in f_encoders]
    g_hits = [dejavu_hits(e, images, labels, public_images, public_labels, k, centre, device) for e in g_encoders]
    return DejaVuResult(np.mean(f_hits, axis=0), np.mean(g_hits, axis=0))


def dejavu_hits(
    encoder,
    images: torch.Tensor,
    labels,
    public_images: torch.Tensor,
    public_labels,
    k: int = 20,
    centre: int = 14,
    device: str | torch.device | None = None,
) -> np.ndarray:
    """Whether ``encoder``'s kNN vote over the public set labels each point right from its periphery (0 or 1
    per point); :func:`dejavu` averages these over each family's members."""
    if len(public_images) < k:
        raise ValueError(f"dejavu: the public set has {len(public_images)} points, fewer than k={k}")
    labels = torch.as_tensor(np.asarray(labels)).long()
    public_labels = torch.as_tensor(np.asarray(public_labels)).long()
    n_cls = int(max(labels.max(), public_labels.max())) + 1
    bank = embed(encoder, public_images, device=device)
    q = embed(encoder, periphery_crop(images, centre), device=device)
    return (knn_predict(bank, public_labels, q, k=k, num_classes=n_cls) == labels).numpy().astype(np.float64)
