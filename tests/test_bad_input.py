"""Bad input across the public API: a clear error naming the parameter, the value and the fix,
raised before any compute, with nothing written (issue 7).

Each case runs in a fresh ``tmp_path`` that also holds the cache (``$MEMLIB_CACHE``, set by
conftest); after the error the folder must still be empty (or unchanged, where the case
needs a file on disk to begin with).
"""

import math
import re

import numpy as np
import pytest
import torch

import memlib
from memlib.data.augment import SimCLRAugment
from memlib.data.datasets import SPLIT_SIZES
from memlib.data.splits import Splits, make_splits
from memlib.device import resolve_device
from memlib.experiments.setups_run import setups_settings
from memlib.experiments.validate import check_epsilon, check_lambda, validate_run_parameters
from memlib.training.loop import CheckpointMismatch, TrainConfig, atomic_save, load_checkpoint

NO_GPU = pytest.mark.skipif(torch.cuda.is_available(), reason="a GPU is present")


def _snapshot(folder):
    return sorted((p.relative_to(folder), p.stat().st_size if p.is_file() else -1) for p in folder.rglob("*"))


def _tiny_encoder():
    torch.manual_seed(0)
    return memlib.build_encoder("resnet_narrow", 1, 8)


def _uint8(n=4, c=1, s=8):
    return torch.randint(0, 256, (n, c, s, s), dtype=torch.uint8)


# (id, call, exception type, regex the message must match: the parameter and its value)
CASES = [
    # data
    ("dataset-unknown", lambda: memlib.load_dataset("fashion-mnits"), ValueError, r"name='fashion-mnits'.*one of"),
    ("split-unknown", lambda: memlib.load_dataset("digits", "val"), ValueError, r"split='val'.*'train', 'test'"),
    (
        "splits-too-large",
        lambda: make_splits(100, 50, 60, 30),
        ValueError,
        r"shared \+ 2\*candidate = 60 \+ 2\*30 = 120 exceeds the 100 training points; lower",
    ),
    (
        "extra-too-large",
        lambda: make_splits(100, 10, 10, 5, extra=20),
        ValueError,
        r"extra=20 exceeds the 10 test points; lower 'extra'",
    ),
    ("size-negative", lambda: make_splits(100, 10, -5, 5), ValueError, r"shared=-5 must be ≥ 0"),
    (
        "fraction-outside-0-1",
        lambda: make_splits(100, 10, 1.5, 5),
        ValueError,
        r"shared=1.5 as a fraction must lie in \(0, 1\); pass an int",
    ),
    ("candidate-zero", lambda: make_splits(100, 10, 10, 0), ValueError, r"candidate=0"),
    ("size-not-a-number", lambda: make_splits(100, 10, "10", 5), TypeError, r"shared='10' must be an int count"),
    (
        "splits-overlap",
        lambda: Splits(shared=[0, 1], candidate=[1, 2], independent=[3], extra=[0], seed=0),
        ValueError,
        r"'shared' and 'candidate' share 1 indices",
    ),
    # models and methods
    (
        "arch-unknown",
        lambda: memlib.build_encoder("resnet19", 1, 28),
        ValueError,
        r"arch='resnet19' is unknown; choose one of",
    ),
    (
        "method-unknown",
        lambda: memlib.build_method("simclr2", _tiny_encoder()),
        ValueError,
        r"method='simclr2' is unknown; choose one of .*'simclr'",
    ),
    (
        "encoder-wrong-dtype",
        lambda: _tiny_encoder()(_uint8()),
        TypeError,
        r"expects float images in \[0, 1\], got dtype torch.uint8; convert",
    ),
    (
        "encoder-wrong-shape",
        lambda: _tiny_encoder()(torch.rand(2, 3, 8, 8)),
        ValueError,
        r"expects images of shape \(B, 1, H, W\), got \(2, 3, 8, 8\)",
    ),
    # presets and notebook parameters
    ("preset-unknown", lambda: memlib.get_preset("fast"), ValueError, r"preset='fast' is unknown; choose one of"),
    (
        "preset-field-unknown",
        lambda: memlib.get_preset("smoke", epoch=3),
        ValueError,
        r"unknown preset field\(s\) \['epoch'\]",
    ),
    ("preset-wrong-type", lambda: memlib.get_preset(3), TypeError, r"preset=3 must be a preset name"),
    ("epochs-zero", lambda: validate_run_parameters("smoke", epochs=0), ValueError, r"epochs=0 must be a positive int"),
    (
        "batch-size-negative",
        lambda: validate_run_parameters("smoke", batch_size=-8),
        ValueError,
        r"batch_size=-8 must be a positive int",
    ),
    ("views-zero", lambda: validate_run_parameters("smoke", views=0), ValueError, r"views=0 must be a positive int"),
    (
        "views-one-pairwise",
        lambda: validate_run_parameters("smoke", views=1),
        ValueError,
        r"views=1 must be ≥ 2 for mode='pairwise'",
    ),
    (
        "epochs-bool",
        lambda: validate_run_parameters("smoke", epochs=True),
        ValueError,
        r"epochs=True must be a positive int",
    ),
    (
        "lr-nonpositive",
        lambda: validate_run_parameters("smoke", lr=0.0),
        ValueError,
        r"lr=0.0 must be a finite number > 0",
    ),
    (
        "probe-size-zero",
        lambda: validate_run_parameters("smoke", probe_train=0),
        ValueError,
        r"probe_train=0 must be a positive",
    ),
    (
        "augmentation-unknown",
        lambda: validate_run_parameters("smoke", augmentation="simclr++"),
        ValueError,
        r"augmentation='simclr\+\+' is unknown",
    ),
    (
        "sizes-do-not-fit-dataset",
        lambda: validate_run_parameters("smoke", dataset="digits", shared=1400),
        ValueError,
        r"= 1464 exceeds the 1437 training points",
    ),
    ("seed-negative", lambda: validate_run_parameters("smoke", seed=-1), ValueError, r"seed=-1 must be an int ≥ 0"),
    ("lambda-one", lambda: check_lambda(1.0), ValueError, r"lam=1.0 must lie in \[0, 1\)"),
    (
        "lambda-negative",
        lambda: validate_run_parameters("smoke", lam=[0.0, -0.1]),
        ValueError,
        r"lam=-0.1 must lie in \[0, 1\)",
    ),
    ("lambda-nan", lambda: check_lambda(float("nan")), ValueError, r"lam=nan must be a real number in \[0, 1\)"),
    ("epsilon-zero", lambda: check_epsilon(0), ValueError, r"epsilon=0 must be > 0.*math.inf for no DP"),
    (
        "epsilon-negative",
        lambda: validate_run_parameters("smoke", epsilon=[8, -1.0]),
        ValueError,
        r"epsilon=-1.0 must be > 0",
    ),
    ("device-not-a-device", lambda: resolve_device("gpu0"), ValueError, r"device='gpu0' is not a device; use 'cpu'"),
    ("device-unsupported", lambda: resolve_device("meta"), ValueError, r"device='meta' is not supported"),
    # training and scoring
    ("trainconfig-epochs", lambda: TrainConfig(epochs=0, batch_size=8), ValueError, r"epochs=0 must be a positive int"),
    (
        "trainconfig-batch",
        lambda: TrainConfig(epochs=1, batch_size=-1),
        ValueError,
        r"batch_size=-1 must be a positive int",
    ),
    (
        "train-float-images",
        lambda: memlib.train(
            memlib.build_method("simclr", _tiny_encoder()),
            torch.rand(4, 1, 8, 8),
            None,
            TrainConfig(epochs=1, batch_size=4),
        ),
        TypeError,
        r"images must be uint8 \(N, C, H, W\), got torch.float32 \(4, 1, 8, 8\)",
    ),
    (
        "align-views-one",
        lambda: memlib.alignment_loss(_tiny_encoder(), _uint8(), SimCLRAugment(size=8), views=1),
        ValueError,
        r"views=1 must be an int ≥ 2 for mode='pairwise'",
    ),
    (
        "align-mode-unknown",
        lambda: memlib.alignment_loss(_tiny_encoder(), _uint8(), SimCLRAugment(size=8), mode="clear"),
        ValueError,
        r"mode='clear' is unknown; choose one of",
    ),
    (
        "align-float-images",
        lambda: memlib.alignment_loss(_tiny_encoder(), torch.rand(4, 1, 8, 8), SimCLRAugment(size=8)),
        TypeError,
        r"images must be uint8 of shape \(N, C, H, W\), got torch.float32",
    ),
    (
        "sslmem-not-a-module",
        lambda: memlib.sslmem("f.pt", _tiny_encoder(), _uint8(), SimCLRAugment(size=8)),
        TypeError,
        r"encoders must be an nn.Module .* got str \(load a checkpoint into a module first\)",
    ),
    # SSLMem across setups (chapter 06)
    (
        "method-kwargs-unknown",
        lambda: validate_run_parameters("smoke", method="mae", arch="vit_micro", method_kwargs={"mask": 0.5}),
        ValueError,
        r"method_kwargs has \['mask'\], which method='mae' does not take; known: .*'mask_ratio'",
    ),
    (
        "method-kwargs-not-dict",
        lambda: validate_run_parameters("smoke", method_kwargs=[0.5]),
        ValueError,
        r"method_kwargs=\[0.5\] must be a dict",
    ),
    (
        "setup-unknown",
        lambda: setups_settings("smoke", setups=("SimCLR-ResNet", "BYOL-ResNet")),
        ValueError,
        r"setups=.*unknown \['BYOL-ResNet'\]; choose from",
    ),
    (
        "overlap-outside-0-1",
        lambda: setups_settings("smoke", overlaps=(0.7, 1.0)),
        ValueError,
        r"overlaps=\(0.7, 1.0\) must lie in \(0, 1\)",
    ),
    (
        "measure-augmentation-unknown",
        lambda: setups_settings("smoke", measure_augmentations=("simclr", "blur")),
        ValueError,
        r"augmentation 'blur' is unknown; choose from",
    ),
]


@pytest.mark.parametrize("call, exc, match", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_bad_input(call, exc, match, tmp_path):
    with pytest.raises(exc, match=match):
        call()
    assert _snapshot(tmp_path) == []  # nothing written, not even the cache folder


def test_cases_are_distinct():
    ids = [c[0] for c in CASES]
    assert len(ids) == len(set(ids)) >= 20


@NO_GPU
@pytest.mark.parametrize(
    "call",
    [
        lambda: resolve_device("cuda"),
        lambda: validate_run_parameters("smoke", device="cuda"),
        lambda: memlib.alignment_loss(_tiny_encoder(), _uint8(), SimCLRAugment(size=8), device="cuda"),
    ],
    ids=["resolve", "parameters", "scoring"],
)
def test_cuda_without_gpu(call, tmp_path):
    with pytest.raises(ValueError, match=r"device='cuda' but no CUDA GPU is available here; use device='cpu'"):
        call()
    assert _snapshot(tmp_path) == []


def test_missing_data_names_the_install_command(tmp_path, monkeypatch):
    monkeypatch.setenv("MEMLIB_FASHION_MNIST_DIR", str(tmp_path / "no-debian-package"))
    with pytest.raises(FileNotFoundError, match=re.escape("sudo apt-get install dataset-fashion-mnist")) as e:
        memlib.load_dataset("fashion_mnist", "train", root=tmp_path / "data")
    assert str(tmp_path / "data") in str(e.value)  # says where it looked
    assert _snapshot(tmp_path) == []


@pytest.mark.parametrize(
    "overrides, match",
    [
        ({"epochs": 0}, r"epochs=0 must be a positive int"),
        ({"shared": 59000, "candidate": 1000}, r"exceeds the 60000 training points"),
        ({"method": "byol"}, r"method='byol' is unknown"),
        ({"arch": "vit_huge"}, r"arch='vit_huge' is unknown"),
        ({"dataset": "imagenet"}, r"dataset='imagenet' is unknown"),
        ({"method": "mae"}, r"method='mae' cannot train arch='resnet_narrow'; pass arch= one of \['vit_micro'"),
    ],
    ids=["epochs", "sizes", "method", "arch", "dataset", "method-arch"],
)
def test_run_sslmem_fails_before_loading_data(overrides, match, tmp_path, monkeypatch):
    # No data anywhere: had the run loaded data before checking, it would fail with FileNotFoundError.
    monkeypatch.setenv("MEMLIB_FASHION_MNIST_DIR", str(tmp_path / "none"))
    with pytest.raises(ValueError, match=match):
        memlib.run_sslmem("smoke", cache_dir=tmp_path / "c", data_root=tmp_path / "data", progress=False, **overrides)
    assert _snapshot(tmp_path) == []


def test_corrupt_checkpoint_is_refused_and_left_untouched(tmp_path):
    path = tmp_path / "checkpoint.pt"
    path.write_bytes(b"\x80\x02 truncated by a crash")
    before = _snapshot(tmp_path)
    with pytest.raises(
        CheckpointMismatch, match=rf"checkpoint {re.escape(str(path))} is unreadable .*delete it to retrain"
    ):
        load_checkpoint(path, "0123456789abcdef")
    assert _snapshot(tmp_path) == before and path.read_bytes() == b"\x80\x02 truncated by a crash"


def test_checkpoint_of_another_configuration_is_refused(tmp_path):
    path = tmp_path / "checkpoint.pt"
    atomic_save({"fingerprint": "aaaaaaaaaaaaaaaa", "epoch": 1}, path)
    before = _snapshot(tmp_path)
    with pytest.raises(CheckpointMismatch, match=r"fingerprint aaaaaaaaaaaaaaaa, expected bbbbbbbbbbbbbbbb"):
        load_checkpoint(path, "bbbbbbbbbbbbbbbb")
    assert _snapshot(tmp_path) == before


def test_good_parameters_pass(tmp_path):
    """The checks are not refusing everything: the presets and edge values go through."""
    for name in memlib.PRESETS:
        p, dev = validate_run_parameters(name, "cpu", 0)
        assert p.name == name and dev == torch.device("cpu")
    assert check_lambda(0) == 0.0 and check_lambda(0.99) == 0.99
    assert check_epsilon(math.inf) == math.inf and check_epsilon(np.float64(8)) == 8.0
    p, _ = validate_run_parameters("smoke", dataset="digits", shared=1437 - 2 * 32)  # exactly fits
    assert p.shared == 1373
    assert _snapshot(tmp_path) == []


@pytest.mark.parametrize("name", ["digits", "mnist5k", "fashion_mnist"])
def test_split_sizes_match_the_loaders(name, tmp_path):
    """The table that lets sizes be checked before loading agrees with the real data."""
    if name == "fashion_mnist":
        import os

        if not os.path.isdir("/usr/share/datasets/fashion-mnist"):
            pytest.skip("Fashion-MNIST missing: sudo apt-get install dataset-fashion-mnist")
    for split, n in SPLIT_SIZES[name].items():
        assert len(memlib.load_dataset(name, split, root=tmp_path / "data")) == n


def _fake_repo(tmp_path, monkeypatch):
    """A folder with notebooks/ and book/chapters/ (holding a previous chapter), as the CWD."""
    (tmp_path / "notebooks").mkdir()
    (tmp_path / "notebooks" / "01_x.ipynb").write_text("{}")
    chapters = tmp_path / "book" / "chapters"
    chapters.mkdir(parents=True)
    (chapters / "01_x.ipynb").write_text("previous")
    monkeypatch.chdir(tmp_path)
    return chapters


@NO_GPU
def test_main_job_refuses_cuda_before_any_notebook(tmp_path, monkeypatch, capsys):
    from memlib.experiments import notebooks

    chapters = _fake_repo(tmp_path, monkeypatch)
    before = _snapshot(tmp_path)
    monkeypatch.setattr(notebooks, "execute", lambda *a, **k: pytest.fail("a notebook ran"))
    assert notebooks.main(["--device", "cuda"]) == 1
    assert "device='cuda' but no CUDA GPU is available here" in capsys.readouterr().err
    assert _snapshot(tmp_path) == before and (chapters / "01_x.ipynb").read_text() == "previous"


def test_failed_notebook_keeps_its_partial_output(tmp_path, monkeypatch, capsys):
    import papermill as pm

    from memlib.experiments import notebooks

    chapters = _fake_repo(tmp_path, monkeypatch)

    def fails_in_cell_3(inp, out, **kw):
        open(out, "w").write("partial")
        raise pm.PapermillExecutionError(0, 3, "boom", "RuntimeError", "planted", [])

    monkeypatch.setattr(pm, "execute_notebook", fails_in_cell_3)
    assert notebooks.main([]) == 1
    err = capsys.readouterr().err
    m = re.search(r"01_x\.ipynb failed in cell 3 \(RuntimeError: planted\); the partial output is in (\S+)", err)
    assert m, err
    partial = m.group(1)
    assert open(partial).read() == "partial"  # the path the message names really holds it
    assert (chapters / "01_x.ipynb").read_text() == "previous"  # the book is not touched
    import shutil
    from pathlib import Path

    shutil.rmtree(Path(partial).parent)
