"""The alignment regulariser of the SSLMem paper (§4.4, Fig. 4).

Any SSL method's loss becomes

    L_total = (1 − λ) L_SSL − λ E_{x', x''} d(f(x'), f(x''))

with f(·) the encoder's whole representation (flattened, L2-normalised, as
SSLMem measures it), d the Euclidean distance, two fresh views of each image
drawn with the method's own augmentation, and the mean over the mini-batch
(the book's Methods page). The minus sign rewards views for being *far apart*, so a
higher λ makes the encoder align its views less, which lowers memorisation
(and accuracy). The official code has this sign reversed; this is the
paper's sign.
"""

from __future__ import annotations

import math
import numbers

import torch
import torch.nn.functional as F

from .base import SSLMethod


def check_lambda(lam) -> float:
    """Return the alignment regulariser's weight λ if it lies in [0, 1).

    ``L_total = (1 − λ) L_SSL − λ E d(f(x'), f(x''))``: at λ = 1 the SSL
    loss vanishes and only the regulariser is left, so λ must stay below 1.

    Raises
    ------
    ValueError
        If ``lam`` is not a real number or lies outside [0, 1).
    """
    if isinstance(lam, bool) or not isinstance(lam, numbers.Real) or math.isnan(lam):
        raise ValueError(f"lam={lam!r} must be a real number in [0, 1); use e.g. lam=0.1, or 0 for none")
    if not 0.0 <= lam < 1.0:
        raise ValueError(
            f"lam={lam!r} must lie in [0, 1) (at 1 the SSL loss vanishes); use e.g. lam=0.1, or 0 for none"
        )
    return float(lam)


def view_alignment(encoder, views_a: torch.Tensor, views_b: torch.Tensor) -> torch.Tensor:
    """Per-image distance d(f(x'), f(x'')) between two batches of views, shape (B,).

    Representations are the encoder's full output, flattened and
    L2-normalised (the SSLMem representation), so d lies in [0, 2].
    """
    r = encoder(torch.cat([views_a, views_b])).flatten(1).float()
    r = F.normalize(r, dim=1)
    b = views_a.shape[0]
    return (r[:b] - r[b:]).norm(dim=1)


class AlignmentRegularized(SSLMethod):
    """A method whose loss carries the paper's alignment term.

    Parameters
    ----------
    base
        The SSL method to regularise (any :class:`~memlib.methods.base.SSLMethod`
        with an ``augmentation``); it keeps its own heads and loss.
    lam
        λ in [0, 1). λ = 0 gives the base loss unchanged (the term is then
        not computed at all).

    Notes
    -----
    ``name`` includes λ (``"simclr+align0.1"``), so cached encoders of
    different λ never mix.
    """

    def __init__(self, base: SSLMethod, lam: float):
        lam = check_lambda(lam)
        if not isinstance(base, SSLMethod):
            raise TypeError(f"base must be an SSLMethod, got {type(base).__name__}")
        if getattr(base, "augmentation", None) is None:
            raise ValueError(f"base method {base.name!r} has no augmentation to draw the regulariser's two views")
        super().__init__(base.encoder)
        self.base, self.lam = base, lam
        self.name = f"{base.name}+align{lam:g}"

    @property
    def augmentation(self):
        return self.base.augmentation

    def training_step(self, images, indices, labels, generator=None):
        out = dict(self.base.training_step(images, indices, labels, generator))
        if self.lam == 0:
            return out
        # Two fresh views per image, separate from whatever views the base method drew.
        v = self.augmentation(torch.cat([images, images]), generator)
        b = images.shape[0]
        align = view_alignment(self.encoder, v[:b], v[b:]).mean()
        out["ssl_loss"], out["alignment"] = out["loss"], align.detach()
        out["loss"] = (1 - self.lam) * out["loss"] - self.lam * align
        return out
