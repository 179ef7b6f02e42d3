"""One training loop for every method."""

from .loop import CheckpointMismatch, TrainConfig, TrainResult, train

__all__ = ["CheckpointMismatch", "TrainConfig", "TrainResult", "train"]
