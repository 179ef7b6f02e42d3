"""Loss functions, one per file."""

from .dino import dino_loss
from .mae import masked_patch_mse, patchify
from .ntxent import nt_xent
from .vicreg import covariance_term, variance_term, vicreg_loss

__all__ = ["covariance_term", "dino_loss", "masked_patch_mse", "nt_xent", "patchify", "variance_term", "vicreg_loss"]
