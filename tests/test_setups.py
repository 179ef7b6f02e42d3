"""Chapter 06's pieces: new augmentations, Feldman's and Déjà Vu memorisation, snapshots, method arguments."""

import numpy as np
import pytest
import torch
from torch import nn

from memlib.data.augment import IntensityJitter, PatchMask, RandomRotation, build_augmentation
from memlib.experiments.presets import get_preset
from memlib.experiments.setups_run import mask_ratio_kwargs, overlap_sizes, plan, setups_settings
from memlib.experiments.encoders import EncoderSpec
from memlib.memorization.dejavu import dejavu, periphery_crop
from memlib.memorization.feldman import supervised_memorization
from memlib.methods import build_method
from memlib.models import build_encoder
from memlib.probing import knn_accuracy, knn_predict
from memlib.training import TrainConfig, train


def _images(n=8, s=28, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (n, 1, s, s), generator=g, dtype=torch.uint8)


# ---- augmentations -----------------------------------------------------------------------------------
@pytest.mark.parametrize("name", ["rotation", "mask", "intensity"])
def test_new_augmentations_are_seeded_and_in_range(name):
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


# ---- kNN ----------------------------------------------------------------------------------------------
def test_knn_predict_agrees_with_knn_accuracy():
    g = torch.Generator().manual_seed(0)
    bank, q = torch.randn(50, 4, generator=g), torch.randn(20, 4, generator=g)
    bl, ql = torch.randint(0, 3, (50,), generator=g), torch.randint(0, 3, (20,), generator=g)
    pred = knn_predict(bank, bl, q, k=5)
    assert (pred == ql).float().mean().item() == pytest.approx(knn_accuracy(bank, bl, q, ql, k=5))
    assert torch.equal(knn_predict(bank, bl, bank, k=1), bl)  # each point's nearest neighbour is itself


# ---- Feldman's memorisation ------------------------------------------------------------------------------
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


# ---- Déjà Vu -------------------------------------------------------------------------------------------
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


# ---- snapshots and method arguments ---------------------------------------------------------------------
def test_snapshots_hold_initial_and_final_weights(tmp_path):
    torch.manual_seed(0)
    enc = build_encoder("resnet_narrow", 1, 28)
    init = {k: v.clone() for k, v in enc.state_dict().items()}
    method = build_method("simclr", enc)
    train(method, _images(16), None, TrainConfig(epochs=2, batch_size=8, checkpoint_every=1, channels_last=False),
          checkpoint_path=tmp_path / "ck.pt", progress=False, snapshot_dir=tmp_path / "snaps")
    files = sorted(f.name for f in (tmp_path / "snaps").iterdir())
    assert files == ["epoch0000.pt", "epoch0001.pt", "epoch0002.pt"]
    first = torch.load(tmp_path / "snaps" / "epoch0000.pt", weights_only=True)["encoder"]
    last = torch.load(tmp_path / "snaps" / "epoch0002.pt", weights_only=True)["encoder"]
    assert all(torch.equal(first[k], init[k]) for k in init)
    assert all(torch.equal(last[k], v) for k, v in enc.state_dict().items())
    assert any(not torch.equal(first[k], last[k]) for k in init)


def test_method_kwargs_change_the_encoder_key_only_when_set(tmp_path):
    p = get_preset("smoke", method="mae", arch="vit_micro")
    idx = np.arange(10)
    plain = EncoderSpec.from_preset(p, idx, 0).checkpoint(tmp_path)
    empty = EncoderSpec.from_preset(p.replace(method_kwargs={}), idx, 0).checkpoint(tmp_path)
    half = EncoderSpec.from_preset(p.replace(method_kwargs={"mask_ratio": 0.5}), idx, 0).checkpoint(tmp_path)
    assert plain == empty != half
    assert p.replace(method_kwargs={"a": 1}).to_dict()["method_kwargs"] == {"a": 1}
    assert mask_ratio_kwargs(0.75) == {} and mask_ratio_kwargs(0.5) == {"mask_ratio": 0.5}


@pytest.mark.parametrize("ratio", [0.7, 0.8, 0.85])
def test_overlap_sizes_keep_the_training_set_size(ratio):
    p = get_preset("cpu")
    sh, ca = overlap_sizes(p, ratio)
    assert sh + ca == p.shared + p.candidate and abs(sh / (sh + ca) - ratio) < 0.01


def test_plan_shares_candidates_across_table1_setups():
    p, s = setups_settings("cpu")
    t1 = [(rp, seed) for table, _, rp, seed in plan(p, s) if table == "table1"]
    assert len(t1) == len(s["setups"]) + len(s["seed_setups"]) * (len(s["seeds"]) - 1)
    # Same sizes and seed → the same splits, so every setup scores the same candidates (Table 13).
    assert len({(rp.shared, rp.candidate, rp.dataset) for rp, _ in t1}) == 1
    assert {rp.method for rp, _ in t1} == {"simclr", "dino", "mae", "vicreg", "supervised"}


# ---- per-point uncertainty and the spectrum claims of chapter 01 ---------------------------------------------
def test_point_intervals_cover_planted_memorisation_only():
    from memlib.stats import point_intervals

    rng = np.random.default_rng(0)
    ag = 1.0 + 0.05 * rng.standard_normal((10, 200))
    af = 1.0 + 0.05 * rng.standard_normal((10, 200))
    af[:, 0] -= 0.5  # every f encoder aligns point 0 much better: memorised
    iv = point_intervals(af, ag)
    assert iv.loc[0, "above_zero"] and iv.loc[0, "low"] > 0.3
    assert iv["above_zero"][1:].mean() < 0.1  # the others are noise: ≈ 2.5 % expected, more with few encoders
    assert (iv["low"] <= iv["raw"]).all() and (iv["raw"] <= iv["high"]).all()
    with pytest.raises(ValueError, match="≥ 2 encoders per family"):
        point_intervals(af[:1], ag)


def test_atypicality_ranks_a_planted_outlier_first():
    from memlib.probing import atypicality

    g = torch.Generator().manual_seed(0)
    feats = torch.randn(1, 8, generator=g).repeat(12, 1) + 0.05 * torch.randn(12, 8, generator=g)
    feats[3] = -feats[3]  # points in the opposite direction from its class
    a = atypicality(feats, torch.zeros(12, dtype=torch.long), k=3)
    assert int(a.argmax()) == 3
    with pytest.raises(ValueError, match="at least two points"):
        atypicality(feats[:3], torch.tensor([0, 0, 1]))


def test_largest_step_separates_a_spectrum_from_clusters():
    from memlib.stats import largest_step

    spread = np.linspace(-1, 1, 200)
    clusters = np.r_[np.full(100, -0.5), np.full(100, 0.5)]
    assert largest_step(spread) < 0.05
    assert largest_step(clusters) >= 0.5
