"""The random-encoder floor: probe accuracy of untrained encoders, and whether trained ones beat it."""

import numpy as np
import pytest
import torch

from memlib.data.datasets import ImageDataset
from memlib.models import build_encoder, channel_stats
from memlib.probing import beats_floor, embed, knn_accuracy, linear_probe, random_floor

ARCH, SIZE, EPOCHS = "resnet_narrow", 16, 5


pytestmark = pytest.mark.usefixtures("one_thread")


def two_classes(n: int, seed: int, name: str) -> ImageDataset:
    """Noisy images; class 1 is brighter on a fixed pattern (linearly separable in pixels, not trivially)."""
    g = torch.Generator().manual_seed(seed)
    pattern = torch.Generator().manual_seed(99)
    mask = (torch.rand(1, 1, SIZE, SIZE, generator=pattern) < 0.3).float()
    labels = torch.arange(n) % 2
    x = 100 + 60 * torch.randn(n, 1, SIZE, SIZE, generator=g) + 25 * labels[:, None, None, None] * mask
    return ImageDataset(x.clamp(0, 255).to(torch.uint8), labels.long(), ["a", "b"], name)


@pytest.fixture(scope="module")
def sets():
    return two_classes(48, 0, "toy/train"), two_classes(32, 1, "toy/test")


@pytest.fixture(scope="module")
def floor(sets):
    before = torch.get_rng_state()
    df = random_floor(ARCH, *sets, seeds=(0, 1, 2), probe_epochs=EPOCHS, k=5)
    assert torch.equal(torch.get_rng_state(), before)  # the global RNG is left as it was
    return df


def test_floor_has_one_row_per_seed_and_varies_with_the_seed(floor):
    assert list(floor["seed"]) == [0, 1, 2]
    assert list(floor.columns) == ["arch", "seed", "linear_acc", "linear_train_acc", "knn_acc"]
    assert floor[["linear_acc", "knn_acc"]].apply(lambda c: c.between(0, 1).all()).all()
    # Different untrained encoders, different accuracies: not a constant.
    assert floor["linear_acc"].nunique() > 1 or floor["knn_acc"].nunique() > 1


def test_floor_is_what_probing_the_untrained_encoder_gives(floor, sets):
    train, test = sets
    torch.manual_seed(1)
    enc = build_encoder(ARCH, 1, SIZE, *channel_stats(train.images))  # the constructor path of a trained run
    ftr, fte = embed(enc, train.images), embed(enc, test.images)
    row = floor.set_index("seed").loc[1]
    lp = linear_probe(ftr, train.labels, fte, test.labels, epochs=EPOCHS, seed=1)
    assert row["linear_acc"] == lp["test_acc"] and row["linear_train_acc"] == lp["train_acc"]
    assert row["knn_acc"] == knn_accuracy(ftr, train.labels, fte, test.labels, k=5)
    # Another seed is another encoder.
    torch.manual_seed(2)
    other = build_encoder(ARCH, 1, SIZE, *channel_stats(train.images))
    assert not torch.allclose(embed(other, test.images), fte)


def test_floor_rejects_bad_input(sets):
    train, test = sets
    with pytest.raises(ValueError, match="seeds is empty"):
        random_floor(ARCH, train, test, seeds=())
    with pytest.raises(ValueError, match="arch='nope' is unknown"):
        random_floor("nope", train, test, seeds=(0,))
    unlabelled = ImageDataset(test.images, torch.full_like(test.labels, -1), test.classes, "toy/unlabeled")
    with pytest.raises(ValueError, match="test_set .* needs labelled images"):
        random_floor(ARCH, train, unlabelled, seeds=(0,))
    with pytest.raises(TypeError, match="train_set must be a memlib.data.datasets.ImageDataset"):
        random_floor(ARCH, train.images, test, seeds=(0,))


def test_beats_floor():
    floor = [0.61, 0.63, 0.62]
    high = beats_floor([0.90, 0.92, 0.91], floor)
    assert high["informative"] and high["p"] < 0.01
    assert high["estimate"] == pytest.approx(0.29)
    same = beats_floor(floor, floor)
    assert not same["informative"] and same["p"] == pytest.approx(0.5)
    assert not beats_floor([0.55, 0.58, 0.56], floor)["informative"]  # below the floor
    assert not beats_floor([0.62, 0.64, 0.6], floor, alpha=0.05)["informative"]
    # No spread in either group: decided by the means.
    assert beats_floor([0.9, 0.9], [0.6, 0.6])["informative"]
    assert not beats_floor([0.6, 0.6], [0.6, 0.6])["informative"]
    assert np.isfinite(high["t"]) and high["n_trained"] == 3 and high["n_floor"] == 3


def test_beats_floor_rejects_bad_input():
    with pytest.raises(ValueError, match="trained_accs needs at least 2"):
        beats_floor([0.9], [0.5, 0.6])
    with pytest.raises(ValueError, match="floor_accs has non-finite"):
        beats_floor([0.9, 0.8], [0.5, np.nan])
    with pytest.raises(ValueError, match="alpha=1.5 must be in"):
        beats_floor([0.9, 0.8], [0.5, 0.6], alpha=1.5)
