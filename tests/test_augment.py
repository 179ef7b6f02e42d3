import pytest
import torch
from torchvision.transforms.v2 import functional as TF

from memlib.data import augment as A


@pytest.fixture
def rgb():
    return torch.rand(4, 3, 16, 16, generator=torch.Generator().manual_seed(0))


@pytest.mark.parametrize("op,tv", [
    (A.adjust_brightness, TF.adjust_brightness),
    (A.adjust_contrast, TF.adjust_contrast),
    (A.adjust_saturation, TF.adjust_saturation),
])
def test_batched_ops_match_torchvision(rgb, op, tv):
    factors = torch.tensor([0.6, 0.9, 1.2, 1.4])
    ours = op(rgb.clone(), factors)
    ref = torch.stack([tv(rgb[i], float(f)) for i, f in enumerate(factors)])
    torch.testing.assert_close(ours, ref, atol=1e-5, rtol=1e-5)


def test_grayscale_matches_torchvision(rgb):
    torch.testing.assert_close(A.grayscale(rgb), TF.rgb_to_grayscale(rgb), atol=1e-5, rtol=1e-5)


def test_hue_zero_shift_is_identity(rgb):
    torch.testing.assert_close(A.adjust_hue(rgb, torch.zeros(4)), rgb, atol=1e-5, rtol=1e-5)


def test_full_crop_without_flip_is_identity():
    x = torch.randint(0, 256, (3, 1, 12, 12), dtype=torch.uint8)
    out = A.random_resized_crop(A.to_float(x), 12, (1.0, 1.0), (1.0, 1.0), 0.0, None)
    torch.testing.assert_close(out, A.to_float(x), atol=1e-5, rtol=1e-5)
    flipped = A.random_resized_crop(A.to_float(x), 12, (1.0, 1.0), (1.0, 1.0), 1.0, None)
    torch.testing.assert_close(flipped, A.to_float(x).flip(-1), atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("channels", [1, 3])
def test_simclr_views_seeded_in_range_and_per_image(channels):
    x = torch.randint(0, 256, (8, channels, 28, 28), dtype=torch.uint8)
    x = x[:1].expand(8, -1, -1, -1).contiguous()  # the same image 8 times
    aug = A.SimCLRAugment(size=28)
    v1 = aug(x, torch.Generator().manual_seed(5))
    v2 = aug(x, torch.Generator().manual_seed(5))
    assert v1.shape == (8, channels, 28, 28) and v1.dtype == torch.float32
    assert v1.min() >= 0 and v1.max() <= 1
    assert torch.equal(v1, v2)  # same generator state → same views
    # each copy of the image draws its own parameters
    assert len({tuple(v.flatten()[:50].tolist()) for v in v1}) == 8


def test_unknown_augmentation():
    with pytest.raises(ValueError, match="augmentation='blur' is unknown"):
        A.build_augmentation("blur", 28)


def test_hue_shift_then_inverse_shift_is_identity(rgb):
    # Rotating chroma by +θ then −θ gives the image back (away from clamping).
    x = rgb * 0.5 + 0.25
    shift = torch.tensor([0.1, -0.05, 0.2, 0.0])
    torch.testing.assert_close(A.adjust_hue(A.adjust_hue(x, shift), -shift), x, atol=1e-4, rtol=1e-4)
