"""NT-Xent, SimCLR's normalised-temperature cross-entropy (Chen et al. 2020)."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def nt_xent(z1: torch.Tensor, z2: torch.Tensor, temperature: float = 0.5) -> torch.Tensor:
    """Contrastive loss of two views (B, D) each: view i of ``z1`` must pick
    view i of ``z2`` (and vice versa) among the other 2B − 1 embeddings.

    Parameters
    ----------
    z1, z2
        Projections of the two views, row i of each from the same image.
    temperature
        Softmax temperature τ.
    """
    if z1.shape != z2.shape:
        raise ValueError(f"nt_xent: view shapes differ, {tuple(z1.shape)} vs {tuple(z2.shape)}")
    b = z1.shape[0]
    z = F.normalize(torch.cat([z1, z2]).float(), dim=1)
    sim = z @ z.T / temperature
    sim.fill_diagonal_(float("-inf"))  # an embedding is not its own positive
    target = torch.cat([torch.arange(b, 2 * b), torch.arange(0, b)]).to(z.device)
    return F.cross_entropy(sim, target)
