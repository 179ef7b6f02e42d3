"""One training loop for every method (data-parallel under torchrun, see :mod:`.distributed`).

DP-SGD (:mod:`.dp`: ``DPConfig``, ``DPResult``, ``dp_train``) is served on first use, and
opacus only when a DP run needs its accountant, so ``import memlib.training`` stays light.
"""

from .loop import CheckpointMismatch, TrainConfig, TrainResult, train

__all__ = ["CheckpointMismatch", "DPConfig", "DPResult", "TrainConfig", "TrainResult", "dp_train", "train"]

_LAZY = {"DPConfig", "DPResult", "dp_train"}


def __getattr__(name: str):
    if name in _LAZY:
        from . import dp

        return getattr(dp, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
