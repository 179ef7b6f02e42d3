"""One scoring options object for every metric: :class:`ScoringOptions`.

SSLMem, LayerMem and UnitMem (and the alignment and unit-mean functions
under them) take the same scoring settings: how many views, how the views
are compared, which ids name the points, the batch size, the seed of the view
draws, the device, bf16 autocast and a progress bar. Build them once and pass
them as ``options=``::

    opts = ScoringOptions(views=10, seed=3, device="cuda")
    sslmem(f, g, images, aug, options=opts)
    layermem(f, g, images, aug, options=opts)

The keyword arguments keep working (``sslmem(..., views=10)``). A field left
at ``None`` means the metric's own default (UnitMem draws 10 views where
SSLMem draws 5); a setting given both in ``options`` and as a keyword, or set
in ``options`` for a metric that has no such setting (``mode`` for UnitMem),
is refused.
"""

from __future__ import annotations

import dataclasses
import functools
import inspect
from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class ScoringOptions:
    """Scoring settings shared by the metrics; ``None`` = the metric's default.

    Attributes
    ----------
    views
        K, the number of augmented views per point.
    mode
        ``"pairwise"`` or ``"clean"`` (SSLMem and LayerMem; see :mod:`memlib.memorization.sslmem`).
    ids
        One distinct int ≥ 0 per point, naming it for the view draws.
    batch_size
        The most images per forward pass (views included); never changes a score.
    seed
        Seeds the view draws.
    device
        Device of the computation.
    amp
        bf16 autocast for the forward passes.
    progress
        Show a progress bar.
    """

    views: int | None = None
    mode: str | None = None
    ids: object = None
    batch_size: int | None = None
    seed: int | None = None
    device: str | torch.device | None = None
    amp: bool | None = None
    progress: bool | None = None

    def given(self) -> dict:
        """The fields that are set (not ``None``), as keyword arguments."""
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if getattr(self, f.name) is not None}


FIELDS = tuple(f.name for f in dataclasses.fields(ScoringOptions))


def accepts_options(fn):
    """Let ``fn`` (a metric with keyword scoring settings) also take them as ``options=``
    (a :class:`ScoringOptions`); its other parameters and their defaults stay as they are.

    ``fn`` declares the parameter itself, keyword-only (last, by convention):
    ``options: ScoringOptions | None = None``. The wrapper fills the settings in
    from it and calls ``fn`` without it, so ``fn`` never reads it. Declaring it
    in ``fn``'s own source keeps the signature that ``inspect.signature`` reports
    (through ``__wrapped__``) the one written in the source, which is what Sphinx's
    ``autodoc_preserve_defaults`` reads: a parameter added only to ``__signature__``
    breaks it (``pop from empty list``).
    """
    sig = inspect.signature(fn)
    declared = sig.parameters.get("options")
    if declared is None or declared.kind is not inspect.Parameter.KEYWORD_ONLY or declared.default is not None:
        raise TypeError(
            f"@accepts_options: {fn.__qualname__}() must declare a keyword-only "
            "`options: ScoringOptions | None = None` parameter"
        )
    takes = {name for name in FIELDS if name in sig.parameters}

    @functools.wraps(fn)
    def wrapper(*args, options: ScoringOptions | None = None, **kwargs):
        if options is not None:
            if not isinstance(options, ScoringOptions):
                raise TypeError(f"options={options!r} must be a memlib.memorization.ScoringOptions")
            given = options.given()
            foreign = sorted(set(given) - takes)
            if foreign:
                raise TypeError(f"{fn.__name__}() has no setting {foreign}; leave it None in options=")
            both = sorted(set(given) & set(kwargs))
            if both:
                raise TypeError(f"{fn.__name__}() got {both} both in options= and as keywords; pass each once")
            kwargs.update(given)
        return fn(*args, **kwargs)

    return wrapper
