"""One training loop for every method (data-parallel under torchrun, see :mod:`.distributed`)."""

from .loop import CheckpointMismatch, TrainConfig, TrainResult, train

__all__ = ["CheckpointMismatch", "TrainConfig", "TrainResult", "train"]
