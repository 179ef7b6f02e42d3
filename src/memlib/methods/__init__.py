"""SSL methods behind a small registry (one file per method).

Add a method by writing one file that subclasses
:class:`~memlib.methods.base.SSLMethod`, decorates it with
``@register("name")`` and is imported below.
"""

from __future__ import annotations

from .base import SSLMethod

#: Registered methods by name.
METHODS: dict[str, type[SSLMethod]] = {}


def register(name: str):
    """Class decorator adding an :class:`SSLMethod` to :data:`METHODS` under ``name``."""

    def deco(cls):
        if name in METHODS:
            raise ValueError(f"method {name!r} is registered twice")
        METHODS[name] = cls
        return cls

    return deco


def check_method(name: str) -> None:
    """Raise a clear error if ``name`` is not a registered method."""
    if name not in METHODS:
        raise ValueError(f"method={name!r} is unknown; choose one of {sorted(METHODS)}")


def build_method(name: str, encoder, **kwargs) -> SSLMethod:
    """Method by name (one of :data:`METHODS`) around ``encoder``."""
    check_method(name)
    return METHODS[name](encoder, **kwargs)


from . import dino, mae, simclr, supervised, vicreg  # noqa: E402,F401  (each registers itself)

__all__ = ["METHODS", "SSLMethod", "build_method", "check_method", "register"]
