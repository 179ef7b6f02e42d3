import os

import pytest
import torch

torch.set_num_threads(min(2, os.cpu_count() or 1))

FMNIST = "/usr/share/datasets/fashion-mnist"


@pytest.fixture(scope="session")
def fmnist_small(tmp_path_factory):
    """600 real Fashion-MNIST training images (skips if the Debian package is absent)."""
    if not os.path.isdir(FMNIST):
        pytest.skip("Fashion-MNIST missing: sudo apt-get install dataset-fashion-mnist")
    from memlib.data.datasets import load_dataset

    root = tmp_path_factory.mktemp("data")
    ds = load_dataset("fashion_mnist", "train", root=root)
    return ds.subset(range(600))


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path, monkeypatch):
    # No test writes into the user's real cache.
    monkeypatch.setenv("MEMLIB_CACHE", str(tmp_path / "cache"))
    # … nor into the committed evidence store (results/) or the user's smoke store.
    monkeypatch.setenv("MEMLIB_RESULTS", str(tmp_path / "results"))


@pytest.fixture(scope="module")
def one_thread():
    """One torch thread for a module of tiny forward passes: on a loaded 2-core machine a second thread only
    waits at barriers. Use with ``pytestmark = pytest.mark.usefixtures("one_thread")``."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
