"""Memorisation metrics: SSLMem (per point), LayerMem (per layer), UnitMem and ClassMem (per unit)."""

from .layermem import LayerMemResult, layer_alignment, layermem
from .sslmem import MODES, SSLMemResult, alignment_loss, normalize_scores, sslmem
from .unitmem import UnitMemResult, point_selectivity, selectivity, unit_means, unit_taps, unitmem

__all__ = [
    "MODES", "LayerMemResult", "SSLMemResult", "UnitMemResult", "alignment_loss", "layer_alignment", "layermem",
    "normalize_scores", "point_selectivity", "selectivity", "sslmem", "unit_means", "unit_taps", "unitmem",
]
