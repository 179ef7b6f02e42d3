"""Data-parallel training (issue 6): 2 processes under torchrun with gloo on the CPU take the same
step as one process on the same global batch."""

import os
import subprocess
import sys
import textwrap

import pytest
import torch

from memlib.training.distributed import rank_and_world, shard_bounds

# One SimCLR step on the global batch; under torchrun each of the ranks takes its half.
# The augmentation is deterministic (second view = mirror image) so both runs see the same views.
# channels_last=False: on the CPU, torch's channels_last BatchNorm takes its batch variance in a less
# accurate way (measured: 20x the float32 error of the contiguous kernel), enough to move a step's
# gradients by ~1 % in this small net; the contiguous reference agrees with float64 to ~1e-6.
SCRIPT = textwrap.dedent("""
    import os, sys
    import torch
    torch.set_num_threads(1)
    from memlib.data.augment import to_float
    from memlib.methods import build_method
    from memlib.models import build_encoder
    from memlib.training import TrainConfig, train
    from memlib.training import distributed as D

    def mirror_second_half(x, generator=None):
        x = to_float(x)
        h = x.shape[0] // 2
        return torch.cat([x[:h], x[h:].flip(-1)])

    images, out = torch.load(sys.argv[1]), sys.argv[2]
    rank, world = 0, 1
    if "RANK" in os.environ:
        rank, world, _ = D.init_from_env("gloo")
    torch.manual_seed(0)
    method = build_method("simclr", build_encoder("resnet_narrow", 1, 28), augmentation=mirror_second_half)
    res = train(method, images, None, TrainConfig(epochs=1, batch_size=16, warmup_epochs=0, channels_last=False),
                progress=False)
    # per-point results sharded over ranks and gathered back in order
    a, b = D.shard_bounds(5)
    rows = D.gather_rows(torch.arange(a, b, dtype=torch.float64)[:, None] * 10, 5)
    # scoring and UnitMem shard over ranks by whole batches, so they see the same views as one process
    from memlib.data.augment import SimCLRAugment
    from memlib.memorization import alignment_loss, unit_means
    enc = method.encoder
    align = alignment_loss(enc, images, SimCLRAugment(size=28), views=3, batch_size=9, seed=1)  # 3 points/batch
    units = unit_means(enc, images, SimCLRAugment(size=28), views=2, batch_size=3, seed=1)
    if rank == 0:
        torch.save({"state": method.state_dict(), "loss": res.history[0]["loss"], "world": world, "rows": rows,
                    "align": align, "units": units,
                    "grads": {k: p.grad.clone() for k, p in method.named_parameters() if p.grad is not None}}, out)
    if world > 1:
        torch.distributed.destroy_process_group()
""")


# A bias that feeds a BatchNorm: its true gradient is 0, both runs' are rounding noise, and Adam
# turns noise into steps of ±lr, so neither its gradient nor its value after the step can agree.
NOISE_ONLY = {"projector.0.bias"}


@pytest.fixture(scope="module")
def runs(fmnist_small, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("ddp")
    script, data = tmp / "step.py", tmp / "images.pt"
    script.write_text(SCRIPT)
    torch.save(fmnist_small.images[:16].clone(), data)
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    ddp = subprocess.run(
        [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--standalone",
            "--nproc_per_node=2",
            str(script),
            str(data),
            str(tmp / "ddp.pt"),
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert ddp.returncode == 0, ddp.stderr[-3000:]
    single = subprocess.run(
        [sys.executable, str(script), str(data), str(tmp / "single.pt")],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert single.returncode == 0, single.stderr[-3000:]
    return (
        torch.load(tmp / "ddp.pt", weights_only=False),
        torch.load(tmp / "single.pt", weights_only=False),
        torch.load(data),
    )


def test_two_ranks_match_one_process_on_the_global_batch(runs):
    ddp, single, _ = runs
    assert ddp["world"] == 2 and single["world"] == 1
    # NT-Xent over the gathered global batch: same loss as one process, not the mean of two half-batch losses
    assert ddp["loss"] == pytest.approx(single["loss"], rel=1e-5)
    # gradients (scale included: Adam's first step would hide a wrong scale) and weights after the step
    assert ddp["grads"].keys() == single["grads"].keys() and len(single["grads"]) > 10
    for k, g in single["grads"].items():  # errors relative to the tensor's scale (float32 sums differ in order)
        if k not in NOISE_ONLY:
            err = (ddp["grads"][k] - g).abs().max() / g.abs().max()
            assert err < 1e-3, f"grad {k}: relative error {err:.2e}"
    for k, v in single["state"].items():
        if k in NOISE_ONLY:
            continue
        if v.is_floating_point():  # BatchNorm running statistics included: taken over the global batch
            # Adam's first step moves a weight by ~lr = 1e-3 whatever its gradient's size, so a weight whose
            # gradient is at the rounding level may move a little differently: allow lr / 10.
            torch.testing.assert_close(ddp["state"][k], v, rtol=1e-4, atol=1e-4, msg=lambda m: f"{k}: {m}")
        else:
            assert torch.equal(ddp["state"][k], v), k


def test_step_changed_the_weights(runs):
    # guards the comparison above against a run that trained nothing
    ddp, _, _ = runs
    torch.manual_seed(0)
    from memlib.methods import build_method
    from memlib.models import build_encoder

    init = build_method("simclr", build_encoder("resnet_narrow", 1, 28)).state_dict()
    moved = [k for k, v in init.items() if v.is_floating_point() and not torch.equal(v, ddp["state"][k])]
    assert len(moved) > 10


def test_per_point_results_gathered_in_order(runs):
    ddp, single, _ = runs
    expected = torch.arange(5, dtype=torch.float64)[:, None] * 10
    assert torch.equal(ddp["rows"], expected) and torch.equal(single["rows"], expected)


def test_scoring_sharded_over_ranks_equals_one_process(runs):
    import numpy as np

    ddp, single, _ = runs
    assert ddp["align"].shape == single["align"].shape == (1, 16)
    np.testing.assert_allclose(ddp["align"], single["align"], rtol=1e-4)  # weights agree to ~1e-4 (above)
    assert ddp["units"].keys() == single["units"].keys()
    for t, u in single["units"].items():
        assert ddp["units"][t].shape == u.shape == (16, u.shape[1])
        np.testing.assert_allclose(ddp["units"][t], u, rtol=1e-3, atol=1e-4, err_msg=t)


def test_shard_bounds_cover_every_point_once():
    assert rank_and_world() == (0, 1)
    for n, w in [(10, 3), (2, 4), (7, 1)]:
        bounds = [shard_bounds(n, r, w) for r in range(w)]
        assert bounds[0][0] == 0 and bounds[-1][1] == n
        assert all(a[1] == b[0] for a, b in zip(bounds, bounds[1:]))
        assert max(b - a for a, b in bounds) - min(b - a for a, b in bounds) <= 1
    for n, w, unit in [(16, 2, 3), (16, 3, 5), (4, 3, 3)]:  # whole batches of `unit` points per rank
        bounds = [shard_bounds(n, r, w, unit) for r in range(w)]
        assert bounds[0][0] == 0 and bounds[-1][1] == n
        assert all(a[1] == b[0] and (b[0] % unit == 0 or b[0] == n) for a, b in zip(bounds, bounds[1:]))
    with pytest.raises(ValueError, match="rank=3 must be in"):
        shard_bounds(5, 3, 2)


def test_batch_must_split_evenly_over_ranks(monkeypatch, fmnist_small):
    import memlib.training.loop as loop
    from memlib.methods import build_method
    from memlib.models import build_encoder
    from memlib.training import TrainConfig, train

    monkeypatch.setattr(loop.dist_utils, "rank_and_world", lambda: (0, 2))
    m = build_method("simclr", build_encoder("resnet_narrow", 1, 28))
    with pytest.raises(ValueError, match="batch_size=15 must be divisible by the number of processes"):
        train(m, fmnist_small.images[:15], None, TrainConfig(epochs=1, batch_size=15), progress=False)


def test_init_from_env_outside_torchrun(monkeypatch):
    from memlib.training.distributed import init_from_env

    monkeypatch.delenv("RANK", raising=False)
    with pytest.raises(RuntimeError, match="launch the script with torchrun"):
        init_from_env()
