"""Loss functions, one per file."""

from .ntxent import nt_xent

__all__ = ["nt_xent"]
