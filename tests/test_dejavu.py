"""Déjà Vu memorisation (memlib.memorization.dejavu)."""

import pytest
import torch
from torch import nn

from memlib.memorization.dejavu import dejavu, periphery_crop


def _images(n=8, s=28, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (n, 1, s, s), generator=g, dtype=torch.uint8)


def test_periphery_crop_blanks_only_the_centre():
    x = torch.full((2, 1, 28, 28), 200, dtype=torch.uint8)
    y = periphery_crop(x, 14)
    assert y.dtype == torch.uint8 and (y[:, :, 7:21, 7:21] == 0).all()
    assert (y == 200).sum() == 2 * (28 * 28 - 14 * 14)
    with pytest.raises(ValueError, match="centre=28"):
        periphery_crop(x, 28)


class _Border(nn.Module):
    """An encoder that sees only the border of the image (as if it had memorised its backgrounds)."""

    def __init__(self, scale=1.0):
        super().__init__()
        self.scale = nn.Parameter(torch.tensor(scale))

    def forward(self, x):
        keep = torch.ones_like(x)
        keep[..., 7:21, 7:21] = 0
        return (x * keep).flatten(1) * self.scale


class _Blind(nn.Module):
    """An encoder that sees nothing of the border: its kNN votes carry no information."""

    def __init__(self):
        super().__init__()
        self.w = nn.Parameter(torch.zeros(1))

    def forward(self, x):
        return x[..., 10:18, 10:18].flatten(1) + self.w + 1e-3 * torch.arange(64, dtype=x.dtype)


def test_dejavu_detects_an_encoder_that_links_backgrounds_to_labels():
    g = torch.Generator().manual_seed(0)
    n = 40
    x = torch.randint(0, 256, (n, 1, 28, 28), generator=g, dtype=torch.uint8)
    labels = torch.randint(0, 4, (n,), generator=g)
    # The public set holds other images with the same backgrounds (the planted association).
    public = x.clone()
    public[..., 7:21, 7:21] = torch.randint(0, 256, (n, 1, 14, 14), generator=g, dtype=torch.uint8)
    res = dejavu([_Border()], [_Blind()], x, labels, public, labels, k=1, centre=14)
    s = res.summary()
    assert s["acc_f"] == 1.0 and s["acc_f"] - s["acc_g"] > 0.4 and s["memorised"] > 0.4
    swapped = dejavu([_Blind()], [_Border()], x, labels, public, labels, k=1, centre=14).summary()
    assert swapped["gap"] == pytest.approx(-s["gap"])
    with pytest.raises(ValueError, match="fewer than k=50"):
        dejavu([_Border()], [_Blind()], x, labels, public, labels, k=50)
