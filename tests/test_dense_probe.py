"""The dense (segmentation) probe of memlib.probing.dense: masks, mIoU, and a probe that finds planted spatial
information and does not find it where there is none."""

import numpy as np
import pytest
import torch
from torch import nn

from memlib.probing.dense import mean_iou, object_masks, segmentation_probe, spatial_features

pytestmark = pytest.mark.usefixtures("one_thread")


def _blobs(n, seed):
    """Images of one 4×4 square each at a random place on a 4-pixel grid; its brightness gives the class."""
    g = torch.Generator().manual_seed(seed)
    labels = torch.randint(0, 4, (n,), generator=g)
    where = torch.randint(0, 4, (n, 2), generator=g)
    imgs = torch.zeros(n, 1, 16, 16, dtype=torch.uint8)
    for i, c in enumerate(labels.tolist()):
        r, q = (4 * where[i]).tolist()
        imgs[i, 0, r : r + 4, q : q + 4] = 80 + 50 * c
    return imgs, labels


class _Pooled(nn.Module):
    """A 'convolutional encoder' whose 4×4 map codes the pooled brightness in radial-basis channels: what and
    where are both kept; with ``keep=False`` every location gets the image's mean map (where is lost)."""

    def __init__(self, keep=True):
        super().__init__()
        self.keep = keep
        self.centres = nn.Parameter(torch.linspace(0, 1, 6).view(1, 6, 1, 1), requires_grad=False)

    def forward_features(self, x):
        f = nn.functional.avg_pool2d(x, 4)
        f = torch.exp(-(((f - self.centres) / 0.1) ** 2))
        return f if self.keep else f.mean((2, 3), keepdim=True).expand_as(f).contiguous()


def test_object_masks_label_the_object_and_leave_the_background():
    imgs, labels = _blobs(8, 0)
    m = object_masks(imgs, labels, 0.2)
    assert m.shape == (8, 16, 16)
    for i in range(8):
        assert set(m[i].unique().tolist()) == {0, int(labels[i]) + 1}
        assert int((m[i] > 0).sum()) == 16  # the 4×4 square
    with pytest.raises(ValueError, match="threshold=1.5"):
        object_masks(imgs, labels, 1.5)


def test_mean_iou_known_values():
    t = torch.tensor([[0, 0, 1, 1]])
    assert mean_iou(t, t, 2) == 1.0
    p = torch.tensor([[0, 1, 1, 1]])  # class 0: 1/2, class 1: 2/3
    assert mean_iou(p, t, 2) == pytest.approx((1 / 2 + 2 / 3) / 2)
    assert mean_iou(torch.zeros(1, 4, dtype=torch.long), t, 3) == pytest.approx((1 / 2 + 0) / 2)  # class 2 absent


def test_the_probe_finds_planted_spatial_information_and_nothing_where_there_is_none():
    tr, ltr = _blobs(200, 1)
    te, lte = _blobs(100, 2)
    mtr, mte = object_masks(tr, ltr), object_masks(te, lte)
    scores = {}
    for keep in (True, False):
        enc = _Pooled(keep)
        f_tr, f_te = spatial_features(enc, tr), spatial_features(enc, te)
        scores[keep] = segmentation_probe(f_tr, mtr, f_te, mte, n_classes=5, epochs=40, seed=0)["test_miou"]
    # The objects are found where they are, with their class (bilinear upsampling of a 4×4 map blurs their
    # edges, so not 1); a map without spatial information gives the background only (mIoU 0.94 / 5 ≈ 0.19).
    assert scores[True] > 0.45
    assert scores[False] < 0.25
    assert scores[True] > scores[False] + 0.25


def test_a_map_without_space_is_refused():
    class Flat(nn.Module):
        def __init__(self):
            super().__init__()
            self.w = nn.Parameter(torch.ones(1))

        def forward_features(self, x):
            return x.flatten(1)[:, None, :] * self.w  # tokens, as a ViT gives

    with pytest.raises(ValueError, match="needs a convolutional encoder"):
        spatial_features(Flat(), torch.zeros(2, 1, 8, 8, dtype=torch.uint8))


def test_same_seed_same_score():
    tr, ltr = _blobs(60, 3)
    f = spatial_features(_Pooled(), tr)
    m = object_masks(tr, ltr)
    a = segmentation_probe(f, m, f, m, n_classes=5, epochs=5, seed=4)
    b = segmentation_probe(f, m, f, m, n_classes=5, epochs=5, seed=4)
    assert a == b and np.isfinite(a["test_miou"])
