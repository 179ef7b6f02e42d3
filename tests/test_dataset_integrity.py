"""Fashion-MNIST idx files are checked before they are read: magic number, size, labels, MD5.

Every case builds small idx files in ``tmp_path`` (as tests/test_data_loaders.py does) and
corrupts one; the error must name the file and the fix, and nothing on disk may be lost or
left half-written.
"""

from __future__ import annotations

import gzip
import hashlib
import os
import struct
from pathlib import Path

import numpy as np
import pytest
import torchvision

from memlib.data import datasets as D
from memlib.data.datasets import CorruptFileError, check_data_root, load_dataset

REAL = Path("/usr/share/datasets/fashion-mnist")
REINSTALL = "sudo apt-get install --reinstall dataset-fashion-mnist"
ROOT = os.geteuid() == 0


@pytest.fixture(autouse=True)
def _isolated(tmp_path, monkeypatch):
    """No real Debian folder, no default data root, and no verdict remembered from another test."""
    monkeypatch.setenv("MEMLIB_DATA", str(tmp_path / "default_root"))
    monkeypatch.setenv("MEMLIB_FASHION_MNIST_DIR", str(tmp_path / "no_debian"))
    monkeypatch.setattr(D, "_VERIFIED", {})


def _images(n: int, seed: int = 0) -> bytes:
    pixels = np.random.default_rng(seed).integers(0, 256, (n, 28, 28), dtype=np.uint8)
    return struct.pack(">IIII", 2051, n, 28, 28) + pixels.tobytes()


def _labels(n: int, seed: int = 0) -> bytes:
    return struct.pack(">II", 2049, n) + np.random.default_rng(seed).integers(0, 10, n, dtype=np.uint8).tobytes()


def _files(n_train: int = 12, n_test: int = 5) -> dict[str, bytes]:
    return {
        "train-images-idx3-ubyte": _images(n_train),
        "train-labels-idx1-ubyte": _labels(n_train),
        "t10k-images-idx3-ubyte": _images(n_test, 1),
        "t10k-labels-idx1-ubyte": _labels(n_test, 1),
    }


def _raw(tmp_path, **replace) -> Path:
    """A data root in torchvision's layout, with ``replace`` (file name with _ for -) swapped in."""
    raw = tmp_path / "root" / "FashionMNIST" / "raw"
    raw.mkdir(parents=True)
    files = {**_files(), **{k.replace("_", "-"): v for k, v in replace.items()}}
    for name, data in files.items():
        (raw / name).write_bytes(data)
    return raw


def _debian(tmp_path, monkeypatch, **replace) -> Path:
    """A Debian package folder of gzipped idx files, ``replace`` (raw bytes, or a .gz's bytes) swapped in."""
    deb = tmp_path / "debian"
    deb.mkdir()
    for name, data in _files().items():
        (deb / f"{name}.gz").write_bytes(gzip.compress(data))
    for key, data in replace.items():
        (deb / f"{key.replace('_', '-')}.gz").write_bytes(data)
    monkeypatch.setenv("MEMLIB_FASHION_MNIST_DIR", str(deb))
    return deb


def _snapshot(folder: Path):
    return sorted(
        (p.relative_to(folder).as_posix(), p.stat().st_size if p.is_file() else -1) for p in folder.rglob("*")
    )


@pytest.mark.parametrize(
    "name, data, match",
    [
        (
            "train-images-idx3-ubyte",
            _images(12)[:-100],
            r"is truncated: 9324 bytes, but its header says 12 x 28 x 28 "
            r"images = 9424 bytes",
        ),
        ("train-images-idx3-ubyte", _images(12) + b"\0", r"is too long: 9425 bytes"),
        (
            "train-labels-idx1-ubyte",
            b"",
            r"is truncated: 0 bytes, shorter than the 8-byte header of an idx labels file",
        ),
        (
            "train-labels-idx1-ubyte",
            struct.pack(">II", 2049, 12) + bytes(range(250, 256)) * 2,
            r"holds label 255, outside 0..9: its labels are garbage",
        ),
        (
            "train-images-idx3-ubyte",
            struct.pack(">I", 2049) + _images(12)[4:],
            r"is not an idx images file: magic number 0x00000801, expected 0x00000803",
        ),
    ],
    ids=["truncated-images", "too-long-images", "empty-labels", "garbage-labels", "bad-magic"],
)
def test_corrupt_raw_file_names_itself_and_the_fix(tmp_path, name, data, match):
    raw = _raw(tmp_path, **{name.replace("-", "_"): data})
    before = _snapshot(tmp_path)
    with pytest.raises(CorruptFileError, match=match) as e:
        load_dataset("fashion_mnist", "train", root=tmp_path / "root")
    msg = str(e.value)
    assert f"{raw / name} " in msg  # the file
    assert f"Fix: delete {raw / name} and load again" in msg and REINSTALL in msg and "download=True" in msg
    assert _snapshot(tmp_path) == before  # nothing deleted, rewritten or left behind
    load_dataset("fashion_mnist", "test", root=tmp_path / "root")  # the sound split still loads


def test_images_and_labels_must_agree_in_count(tmp_path):
    raw = _raw(tmp_path, train_labels_idx1_ubyte=_labels(11))
    with pytest.raises(CorruptFileError, match=r"holds 12 images but .*train-labels-idx1-ubyte 11 labels"):
        load_dataset("fashion_mnist", "train", root=raw.parents[1])


def test_file_of_the_real_size_must_have_the_real_md5(tmp_path):
    # 10,000 labels in 0..9: every check but the MD5 passes.
    raw = _raw(tmp_path, t10k_labels_idx1_ubyte=_labels(10000))
    with pytest.raises(
        CorruptFileError,
        match=r"has the size of Fashion-MNIST's t10k-labels-idx1-ubyte but not "
        r"its content \(MD5 [0-9a-f]{32}, published 15d484375f8d",
    ):
        load_dataset("fashion_mnist", "test", root=raw.parents[1])


@pytest.mark.parametrize(
    "bad, match",
    [
        ("truncated-gz", r"train-labels-idx1-ubyte.gz is damaged \(EOFError"),
        ("garbage-labels", r"train-labels-idx1-ubyte.gz holds label 200, outside 0..9"),
    ],
)
def test_bad_debian_file_is_not_copied(tmp_path, monkeypatch, bad, match):
    good = gzip.compress(_labels(12))
    data = (
        good[: len(good) // 2]
        if bad == "truncated-gz"
        else gzip.compress(struct.pack(">II", 2049, 12) + bytes([200] * 12))
    )
    deb = _debian(tmp_path, monkeypatch, train_labels_idx1_ubyte=data)
    before = _snapshot(deb)
    with pytest.raises(CorruptFileError, match=match) as e:
        load_dataset("fashion_mnist", "train", root=tmp_path / "root")
    assert str(deb / "train-labels-idx1-ubyte.gz") in str(e.value) and REINSTALL in str(e.value)
    raw = tmp_path / "root" / "FashionMNIST" / "raw"
    # The bad file is not copied and no temporary file is left; the Debian folder is untouched.
    assert "train-labels-idx1-ubyte" not in os.listdir(raw)
    assert not [n for n in os.listdir(raw) if n.endswith(".tmp")]
    assert _snapshot(deb) == before
    # Once the package is good again, the next load copies the rest and works.
    (deb / "train-labels-idx1-ubyte.gz").write_bytes(good)
    assert len(load_dataset("fashion_mnist", "train", root=tmp_path / "root")) == 12


def test_verdict_is_cached_by_size_and_mtime(tmp_path, monkeypatch):
    raw = _raw(tmp_path)
    reads = []
    real = D._chunks
    monkeypatch.setattr(D, "_chunks", lambda path, fix, *a: reads.append(Path(path).name) or real(path, fix, *a))
    load_dataset("fashion_mnist", "train", root=raw.parents[1])
    assert sorted(reads) == ["train-images-idx3-ubyte", "train-labels-idx1-ubyte"]
    reads.clear()
    load_dataset("fashion_mnist", "train", root=raw.parents[1])
    assert reads == []  # read once per process
    os.utime(raw / "train-labels-idx1-ubyte", ns=(0, 123))  # a changed file is checked again
    load_dataset("fashion_mnist", "train", root=raw.parents[1])
    assert reads == ["train-labels-idx1-ubyte"]


def test_real_debian_package_matches_the_published_content():
    """The Debian .gz files are recompressed (torchvision's .gz MD5s cannot match them); their content matches."""
    if not all((REAL / f"{f}.gz").is_file() for f in D._FASHION_MNIST_FILES):
        pytest.skip(f"{REAL} is absent: sudo apt-get install dataset-fashion-mnist")
    gz_md5 = dict(torchvision.datasets.FashionMNIST.resources)
    for f in D._FASHION_MNIST_FILES:
        data = (REAL / f"{f}.gz").read_bytes()
        assert hashlib.md5(data).hexdigest() != gz_md5[f"{f}.gz"]  # why the content is what is checked
        assert hashlib.md5(gzip.decompress(data)).hexdigest() == D._FASHION_MNIST_MD5[f]


# --------------------------------------------------------------------------- #
# The data root itself


def test_data_root_under_a_file(tmp_path):
    (tmp_path / "afile").write_text("keep")
    root = tmp_path / "afile" / "data"
    with pytest.raises(ValueError) as e:
        load_dataset("fashion_mnist", "train", root=root)
    msg = str(e.value)
    assert f"root='{root}' lies under {tmp_path / 'afile'}, which is a file" in msg
    assert "Fix: pass root= a writable folder (or set MEMLIB_DATA)" in msg
    with pytest.raises(ValueError, match=r"data_root='.*' lies under"):
        check_data_root("fashion_mnist", root, param="data_root")
    assert os.listdir(tmp_path) == ["afile"] and (tmp_path / "afile").read_text() == "keep"
    assert check_data_root("digits", root) == root  # data sets shipped in packages use no root


def test_read_only_data_root_simulated(tmp_path, monkeypatch):
    # Simulated with os.access: tests run as root, where chmod does not stop writes.
    _debian(tmp_path, monkeypatch)
    root = tmp_path / "root"
    root.mkdir()
    real = os.access
    monkeypatch.setattr(os, "access", lambda p, mode, **kw: False if str(p) == str(root) else real(p, mode, **kw))
    with pytest.raises(PermissionError) as e:
        load_dataset("fashion_mnist", "train", root=root)
    assert f"root='{root}' is not writable by this user" in str(e.value) and "Fix: pass root=" in str(e.value)
    assert os.listdir(root) == []
    # Once the files are there, a read-only root is fine: nothing needs writing.
    monkeypatch.setattr(os, "access", real)
    load_dataset("fashion_mnist", "train", root=root)
    monkeypatch.setattr(os, "access", lambda p, mode, **kw: False if str(p) == str(root) else real(p, mode, **kw))
    assert len(load_dataset("fashion_mnist", "test", root=root)) == 5


@pytest.mark.skipif(ROOT, reason="runs as root, where chmod does not stop writes (see the simulated test above)")
def test_read_only_data_root_for_real(tmp_path, monkeypatch):
    _debian(tmp_path, monkeypatch)
    root = tmp_path / "root"
    root.mkdir()
    root.chmod(0o555)
    try:
        with pytest.raises(PermissionError, match="is not writable by this user"):
            load_dataset("fashion_mnist", "train", root=root)
    finally:
        root.chmod(0o755)
