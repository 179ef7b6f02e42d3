"""How a run measures what an encoder learned: linear and kNN probes of its frozen features."""

from __future__ import annotations

from dataclasses import dataclass

from ..data.datasets import ImageDataset
from ..probing import embed, knn_accuracy, linear_probe


def probe_encoder(
    encoder, probe_tr: ImageDataset, probe_te: ImageDataset, epochs: int, seed: int, device
) -> dict[str, float]:
    """Linear-probe test and train accuracy and kNN accuracy of ``encoder``'s frozen features."""
    ftr, fte = embed(encoder, probe_tr.images, device=device), embed(encoder, probe_te.images, device=device)
    lp = linear_probe(ftr, probe_tr.labels, fte, probe_te.labels, epochs=epochs, seed=seed)
    return {
        "linear_acc": lp["test_acc"],
        "linear_train_acc": lp["train_acc"],
        "knn_acc": knn_accuracy(ftr, probe_tr.labels, fte, probe_te.labels),
    }


def probe_all(encoder, sets: dict, epochs: int, seed: int, device) -> dict[str, float]:
    """Linear-probe test accuracy of ``encoder`` on every ``(train, test)`` set of ``sets``."""
    out = {}
    for name, (tr, te) in sets.items():
        ftr, fte = embed(encoder, tr.images, device=device), embed(encoder, te.images, device=device)
        out[name] = linear_probe(ftr, tr.labels, fte, te.labels, epochs=epochs, seed=seed)["test_acc"]
    return out


@dataclass
class KnnEval:
    """kNN accuracy of a method's encoder during training (an ``eval_fn`` that a worker process can take)."""

    bank: ImageDataset
    query: ImageDataset

    def __call__(self, method) -> dict[str, float]:
        enc = method.encoder
        device = next(enc.parameters()).device
        fb, fq = embed(enc, self.bank.images, device=device), embed(enc, self.query.images, device=device)
        return {"knn_acc": knn_accuracy(fb, self.bank.labels, fq, self.query.labels)}
