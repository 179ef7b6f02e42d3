"""VICReg's loss (Bardes et al. 2022): variance, invariance, covariance."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def variance_term(z: torch.Tensor, eps: float = 1e-4) -> torch.Tensor:
    """Hinge on each dimension's standard deviation over the batch: mean of
    ``max(0, 1 − sqrt(Var + eps))``. Zero when every dimension has std ≥ 1,
    close to 1 for a collapsed (constant) embedding."""
    std = torch.sqrt(z.var(dim=0) + eps)
    return F.relu(1 - std).mean()


def covariance_term(z: torch.Tensor) -> torch.Tensor:
    """Sum of squared off-diagonal covariances over the batch, divided by the dimension."""
    n, d = z.shape
    z = z - z.mean(dim=0)
    cov = (z.T @ z) / (n - 1)
    off = cov - torch.diag_embed(torch.diagonal(cov))
    return off.pow(2).sum() / d


def vicreg_loss(
    z1: torch.Tensor,
    z2: torch.Tensor,
    sim_weight: float = 25.0,
    var_weight: float = 25.0,
    cov_weight: float = 1.0,
) -> dict[str, torch.Tensor]:
    """VICReg loss of two views' embeddings (B, D) each, row i of both from the same image.

    Parameters
    ----------
    z1, z2
        Expander outputs of the two views.
    sim_weight, var_weight, cov_weight
        Weights λ, μ, ν of the invariance, variance and covariance terms
        (the paper's 25, 25, 1).

    Returns
    -------
    dict
        ``loss`` (the weighted sum) and the unweighted ``invariance``,
        ``variance`` and ``covariance`` terms (each summed over the two views).

    Notes
    -----
    This is the paper's loss, ``λ s(Z, Z') + μ [v(Z) + v(Z')] + ν [c(Z) + c(Z')]``;
    the official code halves the variance sum, which amounts to μ = 12.5.
    """
    if z1.shape != z2.shape or z1.ndim != 2:
        raise ValueError(
            f"vicreg_loss: views must be (B, D) of equal shape, got {tuple(z1.shape)} vs {tuple(z2.shape)}"
        )
    if z1.shape[0] < 2:
        raise ValueError(f"vicreg_loss: batch size {z1.shape[0]} is too small; variance needs at least 2 rows")
    z1, z2 = z1.float(), z2.float()
    inv = F.mse_loss(z1, z2)
    var = variance_term(z1) + variance_term(z2)
    cov = covariance_term(z1) + covariance_term(z2)
    loss = sim_weight * inv + var_weight * var + cov_weight * cov
    return {"loss": loss, "invariance": inv, "variance": var, "covariance": cov}
