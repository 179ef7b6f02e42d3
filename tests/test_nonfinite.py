"""Nothing silently wrong: non-finite settings, weights and scores are refused, never turned into numbers;
the thread count is part of a training run's identity (memlib.training.loop, memlib.memorization)."""

import os

import numpy as np
import pytest
import torch
from torch import nn

import memlib
from memlib.data.augment import to_float
from memlib.experiments.validate import validate_run_parameters
from memlib.memorization import layermem, sslmem, unit_means
from memlib.memorization.sslmem import normalize_scores
from memlib.methods import SSLMethod, build_method
from memlib.models import build_encoder
from memlib.training import CheckpointMismatch, TrainConfig, train
from memlib.training.loop import atomic_save, fingerprint, nonfinite_tensors


@pytest.mark.parametrize(
    "kw, msg",
    [
        (dict(lr=float("inf")), r"lr=inf must be a finite number > 0"),
        (dict(lr=float("nan")), r"lr=nan must be a finite number > 0"),
        (dict(weight_decay=float("inf")), r"weight_decay=inf must be a finite number ≥ 0"),
        (dict(threads=0), r"threads=0 must be an int ≥ 1"),
    ],
)
def test_train_config_refuses_non_finite_settings(kw, msg):
    with pytest.raises(ValueError, match=msg):
        TrainConfig(epochs=1, batch_size=8, **kw)


def test_run_parameters_refuse_infinite_lr(tmp_path):
    with pytest.raises(ValueError, match=r"lr=inf must be a finite number > 0, e.g. lr=1e-3"):
        validate_run_parameters("smoke", lr=float("inf"))
    with pytest.raises(ValueError, match=r"method_kwargs\['mask_ratio'\]=nan must be a finite number"):
        validate_run_parameters("smoke", method="mae", arch="vit_micro", method_kwargs={"mask_ratio": float("nan")})
    assert list(tmp_path.iterdir()) == []


class _Explode(SSLMethod):
    """Finite loss throughout; its weights become inf after the first epoch (as a huge lr does)."""

    name = "explode"

    def __init__(self, encoder):
        super().__init__(encoder)
        self.steps = 0

    def training_step(self, images, indices, labels, generator=None):
        self.steps += 1
        if self.steps == 3:  # during epoch 2 (2 steps per epoch)
            with torch.no_grad():
                next(self.encoder.parameters()).fill_(float("inf"))
        return {"loss": self.encoder.pooled(images.float() / 255).nan_to_num().pow(2).mean()}


def test_non_finite_weights_stop_training_and_never_reach_the_checkpoint(fmnist_small, tmp_path):
    path = tmp_path / "c.pt"
    m = _Explode(build_encoder("resnet_narrow", 1, 28))
    cfg = TrainConfig(epochs=3, batch_size=8, checkpoint_every=1)
    with pytest.raises(FloatingPointError, match=r"NaN or inf after step 4;.*last one with finite weights"):
        train(m, fmnist_small.images[:16], None, cfg, checkpoint_path=path, progress=False)
    ckpt = torch.load(path, weights_only=False)
    assert ckpt["epoch"] == 1 and nonfinite_tensors(ckpt["method"]) == []  # epoch 1's, finite


def test_huge_lr_stops_naming_the_step_with_a_finite_checkpoint(fmnist_small, tmp_path):
    path = tmp_path / "c.pt"
    torch.manual_seed(0)
    m = build_method("simclr", build_encoder("resnet_narrow", 1, 28))
    cfg = TrainConfig(epochs=4, batch_size=8, lr=1e30, warmup_epochs=0, checkpoint_every=1)
    with pytest.raises(FloatingPointError, match=r"step \d+"):
        train(m, fmnist_small.images[:16], None, cfg, checkpoint_path=path, progress=False)
    if path.exists():
        assert nonfinite_tensors(torch.load(path, weights_only=False)["method"]) == []


def test_checkpoint_with_non_finite_weights_is_refused(fmnist_small, tmp_path):
    """A checkpoint poisoned by an older memlib is refused before compute, not resumed into the same failure."""
    torch.manual_seed(0)
    m = build_method("simclr", build_encoder("resnet_narrow", 1, 28))
    cfg = TrainConfig(epochs=1, batch_size=8)
    path = tmp_path / "c.pt"
    train(m, fmnist_small.images[:8], None, cfg, checkpoint_path=path, progress=False)
    ckpt = torch.load(path, weights_only=False)
    key = next(k for k, v in ckpt["method"].items() if v.is_floating_point())
    ckpt["method"][key] = torch.full_like(ckpt["method"][key], float("nan"))
    del ckpt["content_sha256"]  # as written before hashes existed
    atomic_save(ckpt, path)
    before = path.read_bytes()
    with pytest.raises(CheckpointMismatch, match=r"holds non-finite weights.*delete it to retrain"):
        train(m, fmnist_small.images[:8], None, cfg, checkpoint_path=path, progress=False)
    assert path.read_bytes() == before  # left as it was


def test_stale_checkpoint_temp_files_are_removed(fmnist_small, tmp_path):
    path = tmp_path / "c.pt"
    dead = tmp_path / "c.pt.tmp999999999"  # an earlier process, killed mid-save
    dead.write_bytes(b"")
    os.utime(dead, (0, 0))
    torch.manual_seed(0)
    train(
        build_method("simclr", build_encoder("resnet_narrow", 1, 28)),
        fmnist_small.images[:8],
        None,
        TrainConfig(epochs=1, batch_size=8),
        checkpoint_path=path,
        progress=False,
    )
    assert not dead.exists() and path.exists()
    assert [p.name for p in tmp_path.iterdir()] == ["c.pt"]


def test_thread_count_is_part_of_the_run(fmnist_small):
    a, b = TrainConfig(epochs=1, batch_size=8, threads=1), TrainConfig(epochs=1, batch_size=8, threads=2)
    assert fingerprint(a.to_dict()) != fingerprint(b.to_dict())
    assert TrainConfig(epochs=1, batch_size=8).threads == torch.get_num_threads()
    seen = []

    class Spy(SSLMethod):
        name = "spy"

        def training_step(self, images, indices, labels, generator=None):
            seen.append(torch.get_num_threads())
            return {"loss": self.encoder.pooled(images.float() / 255).pow(2).mean()}

    before = torch.get_num_threads()
    train(
        Spy(build_encoder("resnet_narrow", 1, 28)),
        fmnist_small.images[:8],
        None,
        TrainConfig(epochs=1, batch_size=8, threads=1),
        progress=False,
    )
    assert seen == [1] and torch.get_num_threads() == before  # restored


class _NaNOn(nn.Module):
    """A linear encoder that outputs NaN on the images in ``bad`` (matched by their first pixel)."""

    def __init__(self, bad_pixels):
        super().__init__()
        self.lin = nn.Linear(784, 8)
        self.bad = bad_pixels
        self.tap_names = ("lin",)

    def forward(self, x):
        x = x.flatten(1)
        hit = torch.isin((x[:, 0] * 255).round(), self.bad)
        return self.lin(torch.where(hit[:, None], torch.full_like(x, float("nan")), x))


def test_a_nan_alignment_raises_naming_the_encoder_and_the_points():
    images = torch.randint(1, 200, (12, 1, 28, 28), dtype=torch.uint8)
    images[:, 0, 0, 0] = torch.arange(12, dtype=torch.uint8) + 100  # first pixels identify the points
    torch.manual_seed(0)
    f, g = nn.Sequential(nn.Flatten(), nn.Linear(784, 8)), _NaNOn(torch.tensor([105.0, 107.0]))
    ids = np.arange(50, 62)

    def keep(x, generator=None):  # views = the image itself, so the marker pixel survives
        return to_float(x)

    with pytest.raises(
        FloatingPointError,
        match=r"encoder g\[0\] gave a NaN or inf alignment loss for 2 point\(s\) "
        r"\(ids \[55, 57\]\)",
    ):
        sslmem(f, g, images, keep, views=2, ids=ids)
    with pytest.raises(FloatingPointError, match=r"encoder g\[0\] gave a NaN or inf layer alignment"):
        layermem(_NaNOn(torch.tensor([0.0])), g, images, keep, ["lin"], views=2)
    with pytest.raises(FloatingPointError, match=r"mean activation for 2 point\(s\) \(ids \[55, 57\]\)"):
        unit_means(g, images, keep, ["lin"], views=2, ids=ids)


def test_normalisation_never_hides_nan():
    with pytest.raises(FloatingPointError, match=r"NaN or inf at positions \[1\]"):
        normalize_scores(np.array([0.1, np.nan, 0.3]))
    with pytest.warns(UserWarning, match="one point scored"):
        assert normalize_scores(np.array([0.2])).tolist() == [0.0]
    np.testing.assert_array_equal(normalize_scores(np.zeros(3)), np.zeros(3))  # f = g: 0, not NaN


def test_run_with_exploding_lr_fails_loudly(tmp_path):
    """The issue's reproduction: lr=1e30 once gave all-zero scores; now the run stops with an error."""
    if not os.path.isdir("/usr/share/datasets/fashion-mnist"):
        pytest.skip("Fashion-MNIST missing: sudo apt-get install dataset-fashion-mnist")
    with pytest.raises(FloatingPointError):
        memlib.run_sslmem(
            "smoke", cache_dir=tmp_path / "c", data_root=tmp_path / "d", lr=1e30, epochs=2, progress=False
        )
    assert not list((tmp_path / "c").glob("sslmem/*/scores.csv"))  # no results were written
