"""Memorisation metrics: SSLMem (per point), LayerMem (per layer), UnitMem and ClassMem (per unit),
and for comparison Feldman's supervised memorisation and Déjà Vu."""

from .dejavu import DejaVuResult, dejavu, periphery_crop
from .enrichment import layer_enrichment
from .feldman import label_probability, supervised_memorization
from .layermem import LayerMemResult, layer_alignment, layermem, layermem_from_views
from .options import ScoringOptions
from .sslmem import SSLMemResult, alignment_loss, normalize_scores, sslmem, sslmem_from_views
from .unitmem import (
    ACTIVATIONS,
    UnitMemResult,
    activation_floor,
    point_selectivity,
    selectivity,
    unit_means,
    unit_taps,
    unitmem,
    unitmem_from_means,
    unitmem_from_views,
)
from .views import MODES, AugmentedViews, FixedViews, draw_views

__all__ = [
    "ACTIVATIONS",
    "activation_floor",
    "layer_enrichment",
    "unitmem_from_means",
    "AugmentedViews",
    "FixedViews",
    "draw_views",
    "layermem_from_views",
    "sslmem_from_views",
    "unitmem_from_views",
    "DejaVuResult",
    "MODES",
    "LayerMemResult",
    "dejavu",
    "label_probability",
    "periphery_crop",
    "supervised_memorization",
    "SSLMemResult",
    "ScoringOptions",
    "UnitMemResult",
    "alignment_loss",
    "layer_alignment",
    "layermem",
    "normalize_scores",
    "point_selectivity",
    "selectivity",
    "sslmem",
    "unit_means",
    "unit_taps",
    "unitmem",
]
