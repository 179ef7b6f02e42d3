"""Feldman's (2020) supervised memorisation, the leave-one-out score SSLMem is modelled on.

For a labelled point (x, y) and classifiers f trained with it and g trained
without it, the memorisation is

    mem(x) = E_f[p_f(y | x)] − E_g[p_g(y | x)],

the softmax probability of the true label under f minus under g (the
SSLMem paper's App. B.3 uses this "softmax difference"; Feldman's original
uses the 0/1 accuracy). It needs labels and a classifier head, which is why
the paper builds SSLMem on representations instead.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import torch

from ..data.augment import to_float


@torch.inference_mode()
def label_probability(
    model, images: torch.Tensor, labels, batch_size: int = 1024, device: str | torch.device | None = None
) -> np.ndarray:
    """Softmax probability of each point's label under ``model`` (eval mode, unaugmented images).

    ``model`` is a trained classifier: any module with ``encoder`` and
    ``classifier`` (such as :class:`~memlib.methods.supervised.Supervised`) or
    a callable returning logits.
    """
    if device is None:
        device = next(model.parameters()).device
    labels = torch.as_tensor(np.asarray(labels)).long()
    was_training = model.training
    model.eval()
    out = []
    try:
        for s in range(0, images.shape[0], batch_size):
            x = to_float(images[s : s + batch_size].to(device))
            logits = model.classifier(model.encoder.pooled(x)) if hasattr(model, "classifier") else model(x)
            p = logits.float().softmax(-1).cpu()
            out.append(p.gather(1, labels[s : s + batch_size, None]).squeeze(1))
    finally:
        model.train(was_training)
    return torch.cat(out).numpy()


def supervised_memorization(
    f_models: Sequence,
    g_models: Sequence,
    images: torch.Tensor,
    labels,
    batch_size: int = 1024,
    device: str | torch.device | None = None,
) -> np.ndarray:
    """Feldman's memorisation of each point: mean p(y|x) over ``f_models`` minus over ``g_models``.

    Parameters
    ----------
    f_models, g_models
        Classifiers trained with and without the points (one or more each).
    images, labels
        The points (uint8 (N, C, H, W)) and their labels.

    Returns
    -------
    numpy.ndarray
        One score in [-1, 1] per point.
    """
    if not f_models or not g_models:
        raise ValueError("supervised_memorization: f_models and g_models must each hold at least one classifier")
    pf = np.mean([label_probability(m, images, labels, batch_size, device) for m in f_models], axis=0)
    pg = np.mean([label_probability(m, images, labels, batch_size, device) for m in g_models], axis=0)
    return pf - pg
