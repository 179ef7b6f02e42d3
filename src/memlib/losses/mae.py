"""MAE's reconstruction loss (He et al. 2022): per-patch normalised pixels,
mean squared error on the masked patches only."""

from __future__ import annotations

import torch


def patchify(images: torch.Tensor, patch_size: int) -> torch.Tensor:
    """(B, C, H, W) → (B, N, p·p·C) patches in row-major order, as a ViT's patch embedding sees them."""
    b, c, h, w = images.shape
    p = patch_size
    if h % p or w % p:
        raise ValueError(f"patchify: patch_size={p} must divide the image size {h}×{w}")
    x = images.reshape(b, c, h // p, p, w // p, p)
    return torch.einsum("bchpwq->bhwpqc", x).reshape(b, (h // p) * (w // p), p * p * c)


def masked_patch_mse(
    pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor, norm_pix: bool = True
) -> torch.Tensor:
    """Per-sample reconstruction loss on the masked patches.

    Parameters
    ----------
    pred, target
        (B, N, P) predicted and true patches (``target`` from :func:`patchify`).
    mask
        (B, N), 1 for masked (hidden, to reconstruct) patches and 0 for visible ones.
    norm_pix
        Normalise each target patch by its own mean and variance (MAE's
        ``norm_pix_loss``, its best setting).

    Returns
    -------
    torch.Tensor
        (B,): each sample's mean squared error over its masked patches.
    """
    target = target.float()
    if norm_pix:
        mean = target.mean(dim=-1, keepdim=True)
        var = target.var(dim=-1, keepdim=True)
        target = (target - mean) / (var + 1e-6).sqrt()
    per_patch = (pred.float() - target).pow(2).mean(dim=-1)
    mask = mask.to(per_patch.dtype)
    return (per_patch * mask).sum(dim=1) / mask.sum(dim=1).clamp_min(1)
