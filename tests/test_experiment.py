import json

import numpy as np
import pytest

from memlib.atomic import is_complete
from memlib.experiments import get_preset, run_sslmem
from memlib.experiments.cache import list_artifacts
from memlib.experiments.validate import validate_run_parameters


@pytest.fixture(scope="module")
def smoke_run(tmp_path_factory):
    import os

    if not os.path.isdir("/usr/share/datasets/fashion-mnist"):
        pytest.skip("Fashion-MNIST missing: sudo apt-get install dataset-fashion-mnist")
    return run_sslmem(
        "smoke", cache_dir=tmp_path_factory.mktemp("cache"), data_root=tmp_path_factory.mktemp("data"), progress=False
    )


def test_smoke_run_end_to_end(smoke_run):
    r = smoke_run
    sizes = r.splits.sizes()
    assert {s: int((r.subset == s).sum()) for s in sizes} == sizes
    assert np.all(np.abs(r.result.score) <= 1)
    assert set(r.tests()["null hypothesis"]) >= {"m(S_C) ≤ m(S_S)", "m(S_E) ≤ m(S_I)"}
    assert r.probe["linear_acc"].between(0, 1).all()
    saved = json.loads((r.run_dir / "summary.json").read_text())
    assert saved["provenance"]["config"]["preset"] == "smoke"
    assert saved["provenance"]["trained_at"] and saved["provenance"]["commit"]
    assert (r.run_dir / "scores.csv").exists() and (r.run_dir / "splits.json").exists()
    # Finished: the COMPLETE marker lists every result, and the cache lists the run as complete.
    assert is_complete(r.run_dir)
    assert set(json.loads((r.run_dir / "COMPLETE").read_text())["files"]) == {
        "scores.csv",
        "splits.json",
        "summary.json",
    }
    assert [a.status for a in list_artifacts(r.run_dir.parents[1], "sslmem")] == ["complete"]
    assert not [f for f in r.run_dir.iterdir() if ".tmp" in f.name]


def test_interrupted_rerun_leaves_the_folder_incomplete(smoke_run, monkeypatch):
    import memlib.experiments.sslmem_experiment as S

    def interrupted(*a, **k):
        raise KeyboardInterrupt

    monkeypatch.setattr(S, "sslmem", interrupted)  # stops the rerun after its splits, before any result
    with pytest.raises(KeyboardInterrupt):
        run_sslmem("smoke", cache_dir=smoke_run.run_dir.parents[1], progress=False)
    assert not is_complete(smoke_run.run_dir)
    assert [a.status for a in list_artifacts(smoke_run.run_dir.parents[1], "sslmem")] == ["incomplete"]
    monkeypatch.undo()
    run_sslmem("smoke", cache_dir=smoke_run.run_dir.parents[1], progress=False)  # a rerun finishes it
    assert is_complete(smoke_run.run_dir)


def test_rerun_reuses_cached_encoders(smoke_run, tmp_path):
    again = run_sslmem("smoke", cache_dir=smoke_run.run_dir.parents[1], progress=False)
    np.testing.assert_array_equal(again.result.raw, smoke_run.result.raw)  # same seed → identical scores
    assert again.timings["train_s"] < smoke_run.timings["train_s"]  # loaded, not retrained


@pytest.mark.parametrize(
    "overrides,msg",
    [
        (dict(method="byol"), "method='byol' is unknown"),
        (dict(arch="resnet9"), "arch='resnet9' is unknown"),
        (dict(dataset="imagenet21k"), "dataset='imagenet21k' is unknown"),
        (dict(epochs=0), "epochs=0 must be a positive int"),
        (dict(views=0), "views=0 must be a positive int"),
        (dict(mode="cosine"), "mode='cosine' is unknown"),
        (dict(augmentation="blur"), "augmentation='blur' is unknown"),
        (dict(candidate=0), "candidate=0"),
    ],
)
def test_bad_settings_fail_before_compute(overrides, msg, tmp_path):
    with pytest.raises(ValueError, match=msg):
        run_sslmem("smoke", cache_dir=tmp_path / "c", **overrides)
    assert not (tmp_path / "c").exists()  # nothing written


def test_unknown_preset_and_field():
    with pytest.raises(ValueError, match="preset='huge' is unknown"):
        get_preset("huge")
    with pytest.raises(ValueError, match=r"unknown preset field\(s\) \['epoch'\]"):
        get_preset("smoke", epoch=3)


def test_cuda_refused_without_gpu():
    import torch

    if torch.cuda.is_available():
        pytest.skip("a GPU is present")
    with pytest.raises(ValueError, match="no CUDA GPU is available here; use device='cpu'"):
        validate_run_parameters(get_preset("smoke"), "cuda")


def test_impossible_split_sizes(tmp_path):
    with pytest.raises(ValueError, match="exceeds the 60000 training points"):
        run_sslmem("smoke", cache_dir=tmp_path / "c", shared=59000, candidate=1000, progress=False)


def test_null_family_and_calibrated_pair_scores(tmp_path):
    import os

    if not os.path.isdir("/usr/share/datasets/fashion-mnist"):
        pytest.skip("Fashion-MNIST missing: sudo apt-get install dataset-fashion-mnist")
    r = run_sslmem("smoke", cache_dir=tmp_path / "c", data_root=tmp_path / "d", progress=False, epochs=1, null_models=1)
    assert r.null is not None and r.null.raw.shape == r.result.raw.shape
    assert not np.array_equal(r.null.raw, r.result.raw)  # f′ is another encoder than g
    assert "f'0" in r.probe.index and "f'0" in r.histories
    cal = r.pair_scores("calibrated")
    assert cal.shape == (1, len(r.subset))
    np.testing.assert_allclose(cal[:, r.subset == "extra"].mean(1), 0.0, atol=1e-12)
    np.testing.assert_allclose(r.pair_scores("raw")[0] - cal[0], cal[0] * 0 + (r.pair_scores("raw")[0] - cal[0])[0])
    import pandas as pd

    assert "null_raw" in pd.read_csv(r.run_dir / "scores.csv").columns
    with pytest.raises(ValueError, match="null_models=-1 must be an int ≥ 0"):
        validate_run_parameters("smoke", null_models=-1)
