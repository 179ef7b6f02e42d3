"""memlib: memorisation in self-supervised learning.

Reproducible companion to SSLMem (Wang et al., ICLR 2024) and
LayerMem/UnitMem (Wang et al., NeurIPS 2024). Score your own encoders::

    import memlib
    data = memlib.load_dataset("fashion_mnist", "train")
    res = memlib.sslmem(f, g, data.images[:1000], memlib.SimCLRAugment(size=28))
    res.score  # per-point memorisation, in [-1, 1]
"""

from .data.augment import SimCLRAugment, build_augmentation
from .data.datasets import ImageDataset, load_dataset
from .data.splits import Splits, make_splits
from .memorization import ScoringOptions, SSLMemResult, alignment_loss, draw_views, sslmem, sslmem_from_views
from .methods import METHODS, build_method
from .models import ENCODERS, build_encoder
from .training import TrainConfig, train

__version__ = "0.1.0"

#: Names served from :mod:`memlib.experiments` on first use (PEP 562), so ``import memlib``
#: loads neither the experiment runners nor, through the DP runner, opacus.
_LAZY = {"PRESETS": "experiments", "get_preset": "experiments", "run_sslmem": "experiments"}


def __getattr__(name: str):
    if name in _LAZY:
        import importlib

        value = getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))


__all__ = [
    "ENCODERS",
    "METHODS",
    "PRESETS",
    "ImageDataset",
    "SSLMemResult",
    "ScoringOptions",
    "SimCLRAugment",
    "Splits",
    "TrainConfig",
    "alignment_loss",
    "build_augmentation",
    "build_encoder",
    "build_method",
    "get_preset",
    "load_dataset",
    "draw_views",
    "make_splits",
    "run_sslmem",
    "sslmem",
    "sslmem_from_views",
    "train",
]
