import pytest
import torch

from memlib.methods import SSLMethod, build_method
from memlib.models import build_encoder
from memlib.training import CheckpointMismatch, TrainConfig, train


def _method(seed=0, name="simclr"):
    torch.manual_seed(seed)
    return build_method(name, build_encoder("resnet_narrow", 1, 28))


@pytest.mark.parametrize("name", ["simclr"])  # every other method: tests/test_methods.py
def test_loss_decreases_on_real_data(fmnist_small, name):
    m = _method(name=name)
    res = train(
        m,
        fmnist_small.images[:256],
        fmnist_small.labels[:256],
        TrainConfig(epochs=8, batch_size=128, warmup_epochs=1),
        progress=False,
    )
    losses = [h["loss"] for h in res.history]
    assert all(torch.isfinite(torch.tensor(losses)))
    assert sum(losses[-2:]) < sum(losses[:2])


class _Stop(Exception):
    pass


def test_resume_is_bit_identical(fmnist_small, tmp_path):
    imgs = fmnist_small.images[:128]
    cfg = TrainConfig(epochs=4, batch_size=64, warmup_epochs=1, eval_every=1, checkpoint_every=1)
    straight = _method()
    train(straight, imgs, None, cfg, checkpoint_path=tmp_path / "a.pt", eval_fn=lambda m: {}, progress=False)

    def crash_at_3(m, calls=[0]):
        calls[0] += 1
        if calls[0] == 3:
            raise _Stop  # dies during epoch 3: the epoch-2 checkpoint is on disk
        return {}

    interrupted = _method()
    with pytest.raises(_Stop):
        train(interrupted, imgs, None, cfg, checkpoint_path=tmp_path / "b.pt", eval_fn=crash_at_3, progress=False)
    resumed = _method(seed=123)  # different init: everything must come from the checkpoint
    res = train(resumed, imgs, None, cfg, checkpoint_path=tmp_path / "b.pt", eval_fn=lambda m: {}, progress=False)
    assert res.resumed_from_epoch == 2 and len(res.history) == 4
    a, b = straight.state_dict(), resumed.state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_foreign_or_corrupt_checkpoint_refused(fmnist_small, tmp_path):
    imgs, path = fmnist_small.images[:64], tmp_path / "c.pt"
    train(_method(), imgs, None, TrainConfig(epochs=1, batch_size=64), checkpoint_path=path, progress=False)
    before = path.read_bytes()
    with pytest.raises(CheckpointMismatch, match="another configuration"):
        train(
            _method(), imgs, None, TrainConfig(epochs=1, batch_size=64, lr=5e-3), checkpoint_path=path, progress=False
        )
    assert path.read_bytes() == before  # never overwritten
    path.write_bytes(before[: len(before) // 2])
    with pytest.raises(CheckpointMismatch, match="unreadable"):
        train(_method(), imgs, None, TrainConfig(epochs=1, batch_size=64), checkpoint_path=path, progress=False)


class _NaN(SSLMethod):
    name = "nan"

    def training_step(self, images, indices, labels, generator=None):
        return {"loss": self.encoder.pooled(images.float() / 255).sum() * float("nan")}


def test_nan_loss_stops_with_step(fmnist_small):
    m = _NaN(build_encoder("resnet_narrow", 1, 28))
    with pytest.raises(FloatingPointError, match="epoch 1, step 1"):
        train(m, fmnist_small.images[:32], None, TrainConfig(epochs=2, batch_size=16), progress=False)


@pytest.mark.parametrize(
    "kw,msg",
    [
        (dict(epochs=0, batch_size=8), "epochs=0"),
        (dict(epochs=2, batch_size=-1), "batch_size=-1"),
        (dict(epochs=2, batch_size=8, lr=0), "lr=0"),
    ],
)
def test_bad_config(kw, msg):
    with pytest.raises(ValueError, match=msg):
        TrainConfig(**kw)


def test_unknown_method():
    with pytest.raises(ValueError, match="method='byol' is unknown; choose one of"):
        build_method("byol", build_encoder("resnet_narrow", 1, 28))


def test_commits_recorded_and_not_added_by_loading(fmnist_small, tmp_path, monkeypatch):
    import memlib.training.loop as loop

    imgs, path, cfg = fmnist_small.images[:64], tmp_path / "c.pt", TrainConfig(epochs=1, batch_size=64)
    monkeypatch.setattr(loop, "git_commit", lambda: "aaa")
    assert train(_method(), imgs, None, cfg, checkpoint_path=path, progress=False).commits == ["aaa"]
    monkeypatch.setattr(loop, "git_commit", lambda: "bbb")
    # the run is complete: loading it trains nothing, so "bbb" did not train these weights
    assert train(_method(), imgs, None, cfg, checkpoint_path=path, progress=False).commits == ["aaa"]


def test_snapshots_hold_initial_and_final_weights(tmp_path):
    torch.manual_seed(0)
    enc = build_encoder("resnet_narrow", 1, 28)
    init = {k: v.clone() for k, v in enc.state_dict().items()}
    method = build_method("simclr", enc)
    train(
        method,
        _uint8_images(16),
        None,
        TrainConfig(epochs=2, batch_size=8, checkpoint_every=1, channels_last=False),
        checkpoint_path=tmp_path / "ck.pt",
        progress=False,
        snapshot_dir=tmp_path / "snaps",
    )
    files = sorted(f.name for f in (tmp_path / "snaps").iterdir())
    assert files == ["epoch0000.pt", "epoch0001.pt", "epoch0002.pt"]
    first = torch.load(tmp_path / "snaps" / "epoch0000.pt", weights_only=True)["encoder"]
    last = torch.load(tmp_path / "snaps" / "epoch0002.pt", weights_only=True)["encoder"]
    assert all(torch.equal(first[k], init[k]) for k in init)
    assert all(torch.equal(last[k], v) for k, v in enc.state_dict().items())
    assert any(not torch.equal(first[k], last[k]) for k in init)


def _uint8_images(n=8, s=28, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (n, 1, s, s), generator=g, dtype=torch.uint8)
