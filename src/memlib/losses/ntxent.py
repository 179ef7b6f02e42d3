"""NT-Xent, SimCLR's normalised-temperature cross-entropy (Chen et al. 2020).

Under ``torch.distributed`` the loss is over the global batch: every rank
gathers the embeddings of all ranks (with gradients) before the softmax, so
the negatives are those of the whole batch, as in a single-process run.
"""

from __future__ import annotations

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch.distributed.nn.functional import all_gather


def gather_across_ranks(z: torch.Tensor) -> torch.Tensor:
    """Rows of ``z`` from every rank, in rank order, keeping gradients; ``z`` itself with one process.

    ``torch.distributed.nn.functional.all_gather`` sums the gradients of the
    gathered copies back into each rank's rows; DistributedDataParallel then
    averages over ranks, which gives the single-process gradient.
    """
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return z
    return torch.cat(all_gather(z))


def nt_xent(z1: torch.Tensor, z2: torch.Tensor, temperature: float = 0.5) -> torch.Tensor:
    """Contrastive loss of two views (B, D) each: view i of ``z1`` must pick
    view i of ``z2`` (and vice versa) among the other 2B − 1 embeddings.

    Parameters
    ----------
    z1, z2
        Projections of the two views, row i of each from the same image.
    temperature
        Softmax temperature τ.

    Under ``torch.distributed``, ``z1`` and ``z2`` are this rank's rows; the
    loss is over the rows of all ranks (:func:`gather_across_ranks`).
    """
    if z1.shape != z2.shape:
        raise ValueError(f"nt_xent: view shapes differ, {tuple(z1.shape)} vs {tuple(z2.shape)}")
    z1, z2 = gather_across_ranks(z1), gather_across_ranks(z2)
    b = z1.shape[0]
    z = F.normalize(torch.cat([z1, z2]).float(), dim=1)
    sim = z @ z.T / temperature
    sim.fill_diagonal_(float("-inf"))  # an embedding is not its own positive
    target = torch.cat([torch.arange(b, 2 * b), torch.arange(0, b)]).to(z.device)
    return F.cross_entropy(sim, target)
