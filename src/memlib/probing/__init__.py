"""Frozen-feature evaluation: embedding, kNN and linear probes."""

from .features import embed
from .knn import knn_accuracy
from .linear import linear_probe

__all__ = ["embed", "knn_accuracy", "linear_probe"]
