"""Feldman's supervised memorisation (memlib.memorization.feldman)."""

import numpy as np
import pytest
import torch
from torch import nn

from memlib.memorization.feldman import supervised_memorization


def _images(n=8, s=28, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (n, 1, s, s), generator=g, dtype=torch.uint8)


class _Lookup(nn.Module):
    """A 'classifier' that gives probability ``conf`` to a fixed label per image (by its first pixel)."""

    def __init__(self, table: dict, conf: float):
        super().__init__()
        self.table, self.conf, self.w = table, conf, nn.Parameter(torch.zeros(1))

    def forward(self, x):
        keys = (x[:, 0, 0, 0] * 255).round().long().tolist()
        logits = torch.full((len(keys), 3), 0.0)
        for i, k in enumerate(keys):
            lab = self.table.get(k)
            if lab is not None:
                logits[i, lab] = np.log(self.conf / ((1 - self.conf) / 2))
        return logits + 0 * self.w


def test_feldman_finds_planted_memorisation_and_is_antisymmetric():
    x = torch.zeros(4, 1, 2, 2, dtype=torch.uint8)
    x[:, 0, 0, 0] = torch.arange(4, dtype=torch.uint8)
    labels = np.array([0, 1, 2, 0])
    f = _Lookup({0: 0, 1: 1, 2: 2, 3: 0}, conf=0.9)  # knows every label
    g = _Lookup({0: 0, 1: 1}, conf=0.9)  # never saw points 2 and 3
    mem = supervised_memorization([f], [g], x, labels)
    assert mem[:2] == pytest.approx([0, 0], abs=1e-6)
    assert mem[2:] == pytest.approx([0.9 - 1 / 3] * 2, abs=1e-5)
    assert np.allclose(supervised_memorization([g], [f], x, labels), -mem)
