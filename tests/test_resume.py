"""Fault tolerance of training (issue 7): step checkpoints survive a SIGKILL, content hashes,
NaN stops, provenance, and legacy checkpoints."""

import json
import os
import signal
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest
import torch

import memlib
from memlib.data.augment import SimCLRAugment
from memlib.methods import SSLMethod, build_method
from memlib.models import build_encoder
from memlib.training import CheckpointMismatch, TrainConfig, train
from memlib.training.loop import content_hash

# Trains a tiny SimCLR with a checkpoint every step; argv: images.pt checkpoint.pt out_prefix.
SCRIPT = textwrap.dedent("""
    import json, sys
    import torch
    torch.set_num_threads(1)
    from memlib.methods import build_method
    from memlib.models import build_encoder
    from memlib.training import TrainConfig, train

    images, ckpt, out = torch.load(sys.argv[1]), sys.argv[2], sys.argv[3]
    torch.manual_seed(0)
    method = build_method("simclr", build_encoder("resnet_narrow", 1, 28))
    cfg = TrainConfig(epochs=3, batch_size=16, warmup_epochs=1, checkpoint_every=100, checkpoint_every_steps=1)
    res = train(method, images, None, cfg, checkpoint_path=ckpt, progress=False)
    torch.save(method.encoder.state_dict(), out + ".pt")
    json.dump({"resumed_from_step": res.resumed_from_step, "history": res.history}, open(out + ".json", "w"))
""")
TOTAL_STEPS = 3 * 64 // 16


@pytest.fixture(autouse=True)
def _one_thread():
    # Tiny models on a shared 2-core machine: a second OpenMP thread only waits at barriers.
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _run(script, *args, **kw):
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.Popen([sys.executable, str(script), *map(str, args)], env=env, **kw)


def test_sigkill_then_resume_is_bit_identical(fmnist_small, tmp_path):
    script, data = tmp_path / "train_tiny.py", tmp_path / "images.pt"
    script.write_text(SCRIPT)
    imgs = fmnist_small.images[:64].clone()
    torch.save(imgs, data)

    straight = _run(script, data, tmp_path / "a.pt", tmp_path / "straight")
    ckpt = tmp_path / "b.pt"
    victim = _run(script, data, ckpt, tmp_path / "victim")
    deadline = time.monotonic() + 120
    while not ckpt.exists():  # the first step checkpoint
        assert victim.poll() is None, "the training subprocess ended before its first checkpoint"
        assert time.monotonic() < deadline, "no checkpoint within 120 s"
        time.sleep(0.005)
    victim.send_signal(signal.SIGKILL)
    assert victim.wait(60) == -signal.SIGKILL
    assert not (tmp_path / "victim.pt").exists()  # it really died before finishing

    assert _run(script, data, ckpt, tmp_path / "resumed").wait(300) == 0
    assert straight.wait(300) == 0
    info = json.loads((tmp_path / "resumed.json").read_text())
    assert 1 <= info["resumed_from_step"] < TOTAL_STEPS  # resumed mid-run, from a step checkpoint
    assert info["history"] == json.loads((tmp_path / "straight.json").read_text())["history"]

    a, b = torch.load(tmp_path / "straight.pt"), torch.load(tmp_path / "resumed.pt")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)

    encs = []
    for sd in (a, b):
        enc = build_encoder("resnet_narrow", 1, 28)
        enc.load_state_dict(sd)
        encs.append(enc)
    torch.manual_seed(1)
    g = build_encoder("resnet_narrow", 1, 28)
    aug = SimCLRAugment(size=28)
    s1, s2 = (memlib.sslmem(f, g, imgs[:32], aug, views=3, batch_size=48) for f in encs)
    np.testing.assert_array_equal(s1.raw, s2.raw)
    np.testing.assert_array_equal(s1.score, s2.score)
    assert np.ptp(s1.raw) > 0  # real, non-constant scores


def _method(seed=0):
    torch.manual_seed(seed)
    return build_method("simclr", build_encoder("resnet_narrow", 1, 28))


def test_step_checkpoint_resume_in_process(fmnist_small, tmp_path):
    # Every way of cutting the run (mid-epoch step checkpoints) resumes to the same weights.
    imgs = fmnist_small.images[:24]
    cfg = TrainConfig(epochs=2, batch_size=8, warmup_epochs=1, checkpoint_every=5, checkpoint_every_steps=2)
    straight = _method()
    ref = train(straight, imgs, None, cfg, progress=False)

    class Boom(Exception):
        pass

    calls = [0]

    class Dying(type(straight)):  # raises at the 4th step: the step-2 checkpoint is on disk
        def training_step(self, *a, **kw):
            calls[0] += 1
            if calls[0] == 4:
                raise Boom
            return super().training_step(*a, **kw)

    torch.manual_seed(0)
    dying = Dying(build_encoder("resnet_narrow", 1, 28))
    with pytest.raises(Boom):
        train(dying, imgs, None, cfg, checkpoint_path=tmp_path / "c.pt", progress=False)
    assert torch.load(tmp_path / "c.pt", weights_only=False)["step"] == 2
    resumed = _method(seed=7)  # another init: everything must come from the checkpoint
    res = train(resumed, imgs, None, cfg, checkpoint_path=tmp_path / "c.pt", progress=False)
    assert res.resumed_from_step == 2 and res.resumed_from_epoch == 0
    assert [h["loss"] for h in res.history] == [h["loss"] for h in ref.history]
    a, b = straight.state_dict(), resumed.state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)


def _checkpoint(tmp_path, fmnist_small, **kw):
    path, cfg = tmp_path / "c.pt", TrainConfig(epochs=1, batch_size=32, **kw)
    train(_method(), fmnist_small.images[:32], None, cfg, checkpoint_path=path, progress=False)
    return path, cfg


def test_tampered_checkpoint_refused_and_kept(fmnist_small, tmp_path):
    path, cfg = _checkpoint(tmp_path, fmnist_small)
    ckpt = torch.load(path, weights_only=False)
    assert ckpt["content_sha256"] == content_hash({k: v for k, v in ckpt.items() if k != "content_sha256"})
    key = next(k for k, v in ckpt["method"].items() if v.is_floating_point())
    ckpt["method"][key] = ckpt["method"][key].clone()
    ckpt["method"][key].view(-1)[0] += 1e-3  # loads fine, but is not what was written
    torch.save(ckpt, path)
    before = path.read_bytes()
    with pytest.raises(CheckpointMismatch, match=r"content hash .* delete it .* another cache dir"):
        train(_method(), torch.zeros(32, 1, 28, 28, dtype=torch.uint8), None, cfg, checkpoint_path=path, progress=False)
    assert path.read_bytes() == before  # refused, never overwritten


def test_legacy_checkpoint_without_hash_still_loads(fmnist_small, tmp_path):
    path, cfg = _checkpoint(tmp_path, fmnist_small)
    ckpt = torch.load(path, weights_only=False)
    for k in ("content_sha256", "epoch_step", "step", "perm", "loss_sum", "provenance", "aug_gen_ranks"):
        del ckpt[k]  # as written before step checkpoints and hashes existed
    torch.save(ckpt, path)
    m = _method(seed=5)
    res = train(m, fmnist_small.images[:32], None, cfg, checkpoint_path=path, progress=False)
    assert res.resumed_from_epoch == 1 and res.resumed_from_step == 1
    assert all(torch.equal(v, ckpt["method"][k]) for k, v in m.state_dict().items())


def test_checkpoint_carries_provenance(fmnist_small, tmp_path):
    path, _ = _checkpoint(tmp_path, fmnist_small)
    ckpt = torch.load(path, weights_only=False)
    prov = ckpt["provenance"]
    assert prov["config"]["train"]["batch_size"] == 32
    assert prov["config"]["fingerprint"] == ckpt["fingerprint"]
    assert prov["commit"] and torch.__version__.startswith(prov["versions"]["torch"]) and prov["wall_time_s"] >= 0


def test_train_config_round_trips_and_keys_are_versioned():
    from memlib.experiments.encoders import CACHE_SCHEMA, EncoderSpec
    from memlib.experiments.presets import get_preset

    cfg = TrainConfig(epochs=3, batch_size=8)
    assert cfg.to_dict()["checkpoint_every_steps"] == 0  # every field is covered, none left out
    assert TrainConfig(**cfg.to_dict()) == cfg
    spec = EncoderSpec.from_preset(get_preset("smoke"), range(10), 0)
    assert spec.run_config()["schema"] == CACHE_SCHEMA  # a change of what keys cover bumps one number
    with pytest.raises(ValueError, match="checkpoint_every_steps=-1"):
        TrainConfig(epochs=3, batch_size=8, checkpoint_every_steps=-1)


class _NaNAfter(SSLMethod):
    """Finite loss for two steps, then NaN."""

    name = "nan_after"

    def __init__(self, encoder):
        super().__init__(encoder)
        self.calls = 0

    def training_step(self, images, indices, labels, generator=None):
        self.calls += 1
        loss = self.encoder.pooled(images.float() / 255).pow(2).mean()
        return {"loss": loss * (float("nan") if self.calls > 2 else 1.0)}


def test_nan_stops_with_step_and_keeps_last_good_checkpoint(fmnist_small, tmp_path):
    path = tmp_path / "n.pt"
    cfg = TrainConfig(epochs=2, batch_size=8, checkpoint_every_steps=2)
    m = _NaNAfter(build_encoder("resnet_narrow", 1, 28))
    with pytest.raises(FloatingPointError, match=r"at step 3 \(epoch 1, step 3\).*last good checkpoint"):
        train(m, fmnist_small.images[:32], None, cfg, checkpoint_path=path, progress=False)
    ckpt = torch.load(path, weights_only=False)
    assert ckpt["step"] == 2 and all(torch.isfinite(v).all() for v in ckpt["method"].values() if v.is_floating_point())


def test_pipeline_twice_from_scratch_gives_identical_scores(tmp_path):
    # Same seed, two empty caches: training and scoring are both deterministic on the CPU.
    if not os.path.isdir("/usr/share/datasets/fashion-mnist"):
        pytest.skip("Fashion-MNIST missing: sudo apt-get install dataset-fashion-mnist")
    from memlib.experiments import run_sslmem

    runs = [
        run_sslmem(
            "smoke",
            cache_dir=tmp_path / f"cache{i}",
            data_root=tmp_path / "data",
            progress=False,
            epochs=1,
            models_per_family=1,
        )
        for i in range(2)
    ]
    assert runs[0].timings["train_s"] > 0 and runs[1].timings["train_s"] > 0
    np.testing.assert_array_equal(runs[0].result.raw, runs[1].result.raw)
    np.testing.assert_array_equal(runs[0].result.score, runs[1].result.score)
    assert np.ptp(runs[0].result.raw) > 0
