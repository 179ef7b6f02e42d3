"""Linear probe: a softmax classifier trained on frozen, standardised features."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def linear_probe(
    train_features: torch.Tensor,
    train_labels: torch.Tensor,
    test_features: torch.Tensor,
    test_labels: torch.Tensor,
    epochs: int = 100,
    lr: float = 1e-2,
    weight_decay: float = 1e-4,
    batch_size: int = 1024,
    seed: int = 0,
) -> dict[str, float]:
    """Train a linear classifier with Adam on the features; report accuracies.

    Features are standardised with the training set's mean and std. Runs on
    the features' device.

    Returns
    -------
    dict
        ``{"test_acc": …, "train_acc": …}``.
    """
    if epochs < 1:
        raise ValueError(f"epochs={epochs} must be ≥ 1")
    dev = train_features.device
    mu, sd = train_features.mean(0), train_features.std(0).clamp_min(1e-6)
    xtr, xte = (train_features - mu) / sd, (test_features.to(dev) - mu) / sd
    ytr, yte = train_labels.to(dev).long(), test_labels.to(dev).long()
    n_cls = int(torch.maximum(ytr.max(), yte.max()).item()) + 1
    gen = torch.Generator().manual_seed(seed)
    layer = torch.nn.Linear(xtr.shape[1], n_cls).to(dev)
    with torch.no_grad():
        layer.weight.normal_(0, 0.01, generator=gen) if dev.type == "cpu" else layer.weight.normal_(0, 0.01)
        layer.bias.zero_()
    fit_head(layer, layer, xtr, ytr, epochs=epochs, lr=lr, weight_decay=weight_decay, batch_size=batch_size, gen=gen)
    with torch.no_grad():
        acc = lambda x, y: (layer(x).argmax(1) == y).float().mean().item()  # noqa: E731
        return {"test_acc": acc(xte, yte), "train_acc": acc(xtr, ytr)}


def fit_head(head: torch.nn.Module, forward, x: torch.Tensor, y: torch.Tensor, *, epochs: int, lr: float,
             weight_decay: float, batch_size: int, gen: torch.Generator) -> None:  # fmt: skip
    """Train ``head``'s parameters with Adam and a cosine schedule on cross-entropy of ``forward(x[i])`` against
    ``y[i]``, in minibatches drawn with ``gen`` (the loop of every probe: linear, dense)."""
    opt = torch.optim.Adam(head.parameters(), lr=lr, weight_decay=weight_decay)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, epochs)
    n = x.shape[0]
    for _ in range(epochs):
        perm = torch.randperm(n, generator=gen).to(x.device)
        for s in range(0, n, batch_size):
            i = perm[s : s + batch_size]
            loss = F.cross_entropy(forward(x[i]), y[i])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        sched.step()
