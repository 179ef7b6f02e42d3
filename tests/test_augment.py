import pytest
import torch
from torchvision.transforms.v2 import functional as TF

from memlib.data import augment as A
from memlib.data.augment import IntensityJitter, PatchMask, RandomRotation, build_augmentation


@pytest.fixture
def rgb():
    return torch.rand(4, 3, 16, 16, generator=torch.Generator().manual_seed(0))


@pytest.mark.parametrize(
    "op,tv",
    [
        (A.adjust_brightness, TF.adjust_brightness),
        (A.adjust_contrast, TF.adjust_contrast),
        (A.adjust_saturation, TF.adjust_saturation),
    ],
)
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


def _images(n=8, s=28, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (n, 1, s, s), generator=g, dtype=torch.uint8)


@pytest.mark.parametrize("name", ["rotation", "mask", "intensity"])
def test_rotation_mask_intensity_are_seeded_and_in_range(name):
    aug, x = build_augmentation(name, 28), _images()
    a = aug(x, torch.Generator().manual_seed(1))
    b = aug(x, torch.Generator().manual_seed(1))
    c = aug(x, torch.Generator().manual_seed(2))
    assert a.shape == (8, 1, 28, 28) and a.dtype == torch.float32
    assert torch.equal(a, b) and not torch.equal(a, c)
    assert 0 <= a.min() and a.max() <= 1


def test_rotation_by_zero_is_identity_and_by_max_moves_pixels():
    x = _images()
    assert torch.allclose(RandomRotation(degrees=0)(x), x.float() / 255, atol=1e-5)
    assert (RandomRotation(degrees=90)(x, torch.Generator().manual_seed(0)) - x.float() / 255).abs().mean() > 0.05


def test_patch_mask_zeroes_about_ratio_of_whole_patches():
    x = torch.full((64, 1, 28, 28), 255, dtype=torch.uint8)
    y = PatchMask(ratio=0.25, patch=4)(x, torch.Generator().manual_seed(0))
    zero = (y == 0).float()
    assert abs(zero.mean().item() - 0.25) < 0.03
    patches = zero.view(64, 1, 7, 4, 7, 4)
    assert torch.all((patches.amin((3, 5)) == patches.amax((3, 5))))  # all or nothing within a patch
    assert torch.equal(PatchMask(ratio=0.0)(x), x.float() / 255)


def test_intensity_jitter_without_strength_is_identity():
    x = _images()
    assert torch.allclose(IntensityJitter(brightness=0, contrast=0)(x), x.float() / 255)
