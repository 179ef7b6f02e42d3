"""Weighted k-nearest-neighbour classification on frozen features (Wu et al. 2018; DINO)."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def knn_predict(
    train_features: torch.Tensor,
    train_labels: torch.Tensor,
    test_features: torch.Tensor,
    k: int = 20,
    temperature: float = 0.07,
    batch_size: int = 1024,
    num_classes: int | None = None,
) -> torch.Tensor:
    """Labels predicted by a cosine-similarity kNN vote weighted by exp(sim / T) (on the CPU)."""
    if k < 1:
        raise ValueError(f"k={k} must be ≥ 1")
    bank = F.normalize(train_features.float(), dim=1)
    labels = train_labels.to(bank.device).long()
    n_cls = num_classes or int(labels.max().item()) + 1
    k = min(k, bank.shape[0])
    out = []
    for s in range(0, test_features.shape[0], batch_size):
        q = F.normalize(test_features[s : s + batch_size].float().to(bank.device), dim=1)
        sim, idx = (q @ bank.T).topk(k, dim=1)
        votes = torch.zeros(q.shape[0], n_cls, device=bank.device)
        votes.scatter_add_(1, labels[idx], (sim / temperature).exp())
        out.append(votes.argmax(1).cpu())
    return torch.cat(out) if out else torch.zeros(0, dtype=torch.long)


def knn_accuracy(
    train_features: torch.Tensor,
    train_labels: torch.Tensor,
    test_features: torch.Tensor,
    test_labels: torch.Tensor,
    k: int = 20,
    temperature: float = 0.07,
    batch_size: int = 1024,
) -> float:
    """Top-1 accuracy of a cosine-similarity kNN vote weighted by exp(sim / T)."""
    n_cls = int(max(train_labels.max().item(), test_labels.max().item())) + 1
    pred = knn_predict(train_features, train_labels, test_features, k, temperature, batch_size, n_cls)
    return (pred == test_labels.cpu().long()).float().mean().item()


def atypicality(features: torch.Tensor, labels: torch.Tensor, k: int = 5) -> torch.Tensor:
    """How unlike its own class each point is: 1 − mean cosine similarity to its ``k`` nearest
    neighbours of the same label among the other points (higher = more atypical)."""
    x = F.normalize(features.float(), dim=1)
    labels = torch.as_tensor(labels).to(x.device).long()
    sim = x @ x.T
    sim.fill_diagonal_(-float("inf"))
    sim = sim.masked_fill(labels[:, None] != labels[None, :], -float("inf"))
    counts = (labels[:, None] == labels[None, :]).sum(1) - 1
    if int(counts.min()) < 1:
        raise ValueError("atypicality: every label needs at least two points")
    kk = min(k, int(counts.min()))
    return 1 - sim.topk(kk, dim=1).values.mean(1)
