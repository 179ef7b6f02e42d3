"""Frozen-feature evaluation: embedding, kNN and linear probes."""

from .features import embed
from .knn import atypicality, knn_accuracy, knn_predict
from .linear import linear_probe

__all__ = ["atypicality", "embed", "knn_accuracy", "knn_predict", "linear_probe"]
