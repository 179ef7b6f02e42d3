"""Batched feature extraction from a frozen encoder."""

from __future__ import annotations

import torch
from torch import nn

from ..data.augment import to_float


def embed(
    encoder: nn.Module,
    images: torch.Tensor,
    pooled: bool = True,
    batch_size: int = 1024,
    device: str | torch.device | None = None,
    spatial: bool = False,
) -> torch.Tensor:
    """Features of ``images`` (uint8 or float in [0, 1]) in eval mode, without gradients.

    ``pooled=True`` uses ``encoder.pooled`` (memlib encoders) — the features a
    probe trains on; ``pooled=False`` calls ``encoder(x)`` (the full
    representation); ``spatial=True`` returns ``encoder.forward_features(x)``
    unflattened (a ResNet's (B, C, h, w) map, for dense probes). Returns a
    float32 tensor on ``device``.
    """
    if device is None:
        p = next(iter(encoder.parameters()), None)
        device = p.device if p is not None else torch.device("cpu")
    fn = encoder.pooled if pooled and hasattr(encoder, "pooled") else encoder
    if spatial:
        fn = encoder.forward_features
    was_training = encoder.training
    encoder.eval()
    out = []
    try:
        with torch.inference_mode():
            for s in range(0, images.shape[0], batch_size):
                x = to_float(images[s : s + batch_size].to(device))
                with torch.autocast(
                    torch.device(device).type, dtype=torch.bfloat16, enabled=torch.device(device).type == "cuda"
                ):
                    f = fn(x)
                    out.append((f if spatial else f.flatten(1)).float())
    finally:
        encoder.train(was_training)
    return torch.cat(out)
