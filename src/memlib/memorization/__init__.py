"""Memorisation metrics."""

from .sslmem import MODES, SSLMemResult, alignment_loss, normalize_scores, sslmem

__all__ = ["MODES", "SSLMemResult", "alignment_loss", "normalize_scores", "sslmem"]
