"""Memorisation metrics: SSLMem (per point), LayerMem (per layer), UnitMem and ClassMem (per unit),
and for comparison Feldman's supervised memorisation and Déjà Vu."""

from .dejavu import DejaVuResult, dejavu, periphery_crop
from .feldman import label_probability, supervised_memorization
from .layermem import LayerMemResult, layer_alignment, layermem
from .sslmem import MODES, SSLMemResult, alignment_loss, normalize_scores, sslmem
from .unitmem import UnitMemResult, point_selectivity, selectivity, unit_means, unit_taps, unitmem

__all__ = [
    "DejaVuResult", "MODES", "LayerMemResult", "dejavu", "label_probability", "periphery_crop",
    "supervised_memorization", "SSLMemResult", "UnitMemResult", "alignment_loss", "layer_alignment", "layermem",
    "normalize_scores", "point_selectivity", "selectivity", "sslmem", "unit_means", "unit_taps", "unitmem",
]
