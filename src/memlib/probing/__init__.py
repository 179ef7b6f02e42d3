"""Frozen-feature evaluation: embedding, kNN and linear probes, and the random-encoder floor."""

from .features import embed
from .floor import beats_floor, random_floor, untrained_encoder
from .knn import atypicality, knn_accuracy, knn_predict
from .linear import linear_probe

__all__ = [
    "atypicality",
    "beats_floor",
    "embed",
    "knn_accuracy",
    "knn_predict",
    "linear_probe",
    "random_floor",
    "untrained_encoder",
]
