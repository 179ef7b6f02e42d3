"""DP-SGD for MAE, as in ViP (Yu et al. 2023), the setting of the SSLMem paper's §4.6.

Each step samples a Poisson batch (every point with probability q =
batch_size / N, as the accountant assumes), computes every sample's own MAE
loss gradient, clips each to norm ``max_grad_norm``, sums them, adds Gaussian
noise of standard deviation ``noise_multiplier · max_grad_norm`` and divides
by the expected batch size q·N; AdamW then steps on that gradient, as ViP does.
The privacy spent is tracked by opacus' RDP accountant at δ (default 1e-5,
which must lie below 1/N: a δ of 1/N or more allows a mechanism that
publishes a whole training point); the noise multiplier for a target ε comes
from opacus' ``get_noise_multiplier``. No accountant is written here.

Per-sample gradients come from ``torch.func`` (``vmap`` over ``grad`` of a
functional call), not from opacus' ``GradSampleModule``: timm's
VisionTransformer holds bare parameters (CLS token, position embeddings) and
fused attention that opacus' per-layer hooks do not cover. This is exact only
for models without BatchNorm (a ViT has none; :func:`dp_train` refuses any
BatchNorm), where one sample's loss depends on that sample alone.

The random masks and augmented views of a batch are drawn before the
per-sample computation (``vmap`` cannot draw from a seeded generator), with
the same generator calls as :meth:`~memlib.methods.mae.MAE.per_sample_loss`.
"""

from __future__ import annotations

import functools
import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
from torch import nn
from torch.func import functional_call, grad_and_value, vmap
from tqdm import tqdm

from ..losses.mae import masked_patch_mse, patchify
from ..methods.mae import MAE
from ..provenance import git_commit
from .loop import (
    TrainConfig,
    _lr_lambda,
    at_config_threads,
    atomic_save,
    fingerprint,
    load_checkpoint,
    nonfinite_tensors,
)


@dataclass
class DPConfig:
    """Privacy settings of one DP-SGD run.

    Parameters
    ----------
    epsilon
        Target ε > 0; ``math.inf`` trains without noise (per-sample clipping
        is kept, so ε = ∞ differs from the private runs by the noise alone).
    delta
        δ of the (ε, δ) guarantee, in (0, 1); :func:`dp_train` also requires
        δ < 1/N (N training points). The default 1e-5 is at most 1/(10·N) for
        N up to 10,000.
    max_grad_norm
        Per-sample clipping norm C.
    noise_multiplier
        σ; ``None`` = the smallest σ that spends at most ``epsilon`` over the
        run (opacus ``get_noise_multiplier``, RDP accountant). Given
        explicitly, it overrides ``epsilon`` (which is then only reported).
    """

    epsilon: float = math.inf
    delta: float = 1e-5
    max_grad_norm: float = 1.0
    noise_multiplier: float | None = None

    def __post_init__(self):
        e = self.epsilon
        if isinstance(e, bool) or not isinstance(e, (int, float)) or math.isnan(e) or not e > 0:
            raise ValueError(f"DPConfig: epsilon={e!r} must be > 0 (math.inf for no noise), e.g. 8")
        d = self.delta
        if isinstance(d, bool) or not isinstance(d, (int, float)) or not 0 < d < 1:
            raise ValueError(f"DPConfig: delta={d!r} must be in (0, 1) and below 1/N, e.g. 1e-5")
        if not self.max_grad_norm > 0:
            raise ValueError(f"DPConfig: max_grad_norm={self.max_grad_norm!r} must be > 0, e.g. 1.0")
        if self.noise_multiplier is not None and not self.noise_multiplier >= 0:
            raise ValueError(f"DPConfig: noise_multiplier={self.noise_multiplier!r} must be ≥ 0, or None")

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class DPResult:
    """What a DP-SGD run leaves: the log and the privacy actually spent.

    Attributes
    ----------
    epsilon
        ε spent (RDP accountant at ``delta``); ``inf`` without noise.
    noise_multiplier, sample_rate, delta, steps
        σ, q, δ and the number of noisy steps taken.
    """

    epsilon: float
    noise_multiplier: float
    sample_rate: float
    delta: float
    steps: int
    history: list[dict] = field(default_factory=list)
    wall_time_s: float = 0.0
    commits: list[str] = field(default_factory=list)


class _OneSampleLoss(nn.Module):
    """MAE's loss of one sample given its view and mask: what ``torch.func`` differentiates per sample."""

    def __init__(self, method: MAE):
        super().__init__()
        self.method = method

    def forward(self, x, keep_idx, mask, restore):
        m = self.method
        # The body of MAE.per_sample_loss, with the mask drawn outside (a batch of one).
        pred = m.decode(m.encoder.forward_masked(x[None], keep_idx[None]), restore[None])
        return masked_patch_mse(pred, patchify(x[None], m.patch_size), mask[None], m.norm_pix)[0]


def noise_for(dp: DPConfig, sample_rate: float, steps: int, delta: float) -> float:
    """σ of a run: the given one, 0 for ε = ∞, else the smallest σ that spends ``dp.epsilon`` (opacus)."""
    if dp.noise_multiplier is not None:
        return float(dp.noise_multiplier)
    if math.isinf(dp.epsilon):
        return 0.0
    return _sigma(float(dp.epsilon), float(delta), float(sample_rate), int(steps))


@functools.lru_cache(maxsize=64)
def _sigma(epsilon: float, delta: float, sample_rate: float, steps: int) -> float:
    # opacus' binary search takes seconds; f's and g's encoders of one ε ask for the same σ.
    from opacus.accountants.utils import get_noise_multiplier  # opacus loads on first use

    return float(
        get_noise_multiplier(
            target_epsilon=epsilon, target_delta=delta, sample_rate=sample_rate, steps=steps, accountant="rdp"
        )
    )


def check_dp_method(method) -> None:
    """Refuse methods DP-SGD cannot train exactly here (not MAE, or with BatchNorm)."""
    if not isinstance(method, MAE):
        raise TypeError(
            f"dp_train: method must be memlib's MAE (per-sample losses), got {type(method).__name__}; "
            "contrastive methods' losses couple the samples of a batch"
        )
    bn = [n for n, m in method.named_modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    if bn:
        raise ValueError(f"dp_train: BatchNorm layers {bn[:3]} mix samples; use a BatchNorm-free ViT encoder")


@at_config_threads
def dp_train(
    method: MAE,
    images: torch.Tensor,
    config: TrainConfig,
    dp: DPConfig,
    *,
    device: str | torch.device = "cpu",
    checkpoint_path: str | Path | None = None,
    run_config: dict | None = None,
    progress: bool = True,
    desc: str = "dp-sgd",
) -> DPResult:
    """Train an MAE with DP-SGD (Poisson sampling, per-sample clipping, Gaussian noise).

    Parameters
    ----------
    method
        A :class:`~memlib.methods.mae.MAE` on a ViT (no BatchNorm).
    images
        Training images, uint8 (N, C, H, W).
    config
        Epochs, expected batch size (q = batch_size / N), learning rate,
        warm-up, weight decay and seed as in :func:`~memlib.training.loop.train`
        (``amp`` and ``channels_last`` are ignored: fp32 throughout).
    dp
        :class:`DPConfig`.
    device
        Where to train.
    checkpoint_path, run_config
        As in :func:`~memlib.training.loop.train`: a checkpoint of the same
        configuration is resumed (including the accountant), another one is
        refused.
    progress, desc
        Progress bar and its label.

    Returns
    -------
    DPResult
        With the ε actually spent. ``method`` is trained in place.
    """
    check_dp_method(method)
    if images.dtype != torch.uint8 or images.ndim != 4:
        raise TypeError(f"dp_train: images must be uint8 (N, C, H, W), got {images.dtype} {tuple(images.shape)}")
    device = torch.device(device)
    n = images.shape[0]
    q = min(1.0, config.batch_size / n)
    steps_per_epoch = max(1, round(1 / q))
    total = steps_per_epoch * config.epochs
    delta = float(dp.delta)
    if not delta < 1.0 / n:
        raise ValueError(
            f"dp_train: delta={delta!r} must be below 1/N = {1.0 / n:.3g} for N = {n} training points "
            "(δ ≥ 1/N allows publishing a whole point); use e.g. 1e-5"
        )
    sigma = noise_for(dp, q, total, delta)
    c = dp.max_grad_norm
    fp = fingerprint(
        {"train": config.to_dict(), "dp": dp.to_dict(), "run": run_config or {}, "n": n, "method": method.name}
    )

    images = images.to(device)
    method.to(device)
    params = {k: p for k, p in method.named_parameters() if p.requires_grad}
    opt = torch.optim.AdamW(params.values(), lr=config.lr, weight_decay=config.weight_decay)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, _lr_lambda(config.warmup_epochs * steps_per_epoch, total))
    from opacus.accountants import RDPAccountant  # opacus loads on first use

    acct = RDPAccountant()
    data_gen = torch.Generator().manual_seed(config.seed)
    aug_gen = torch.Generator(device=device).manual_seed(config.seed + 1)
    noise_gen = torch.Generator(device=device).manual_seed(config.seed + 2)
    res = DPResult(math.inf, sigma, q, delta, 0, commits=[git_commit()])
    start = 0
    path = Path(checkpoint_path) if checkpoint_path is not None else None
    if path is not None and path.exists():
        ck = load_checkpoint(path, fp)
        method.load_state_dict(ck["method"])
        opt.load_state_dict(ck["optimizer"])
        sched.load_state_dict(ck["scheduler"])
        for g, k in ((data_gen, "data_gen"), (aug_gen, "aug_gen"), (noise_gen, "noise_gen")):
            g.set_state(ck[k].to(g.get_state().device))
        acct.history = [tuple(h) for h in ck["accountant"]]
        res.history, start = ck["history"], ck["epoch"]
        # List every commit that trained these weights; loading a finished run adds none.
        more = res.commits if start < config.epochs else []
        res.commits = list(dict.fromkeys(ck.get("commits", ["unknown"]) + more))

    def save(epoch):
        bad = nonfinite_tensors(method.state_dict())
        if bad:  # checked before writing: the checkpoint on disk keeps the last finite weights
            raise FloatingPointError(
                f"dp_train: {len(bad)} weight tensors (e.g. {bad[0]}) are NaN or inf at epoch "
                f"{epoch}; the checkpoint on disk ({path}) is the last finite one. Lower lr."
            )
        if path is not None:
            atomic_save(
                {
                    "fingerprint": fp,
                    "epoch": epoch,
                    "method": method.state_dict(),
                    "optimizer": opt.state_dict(),
                    "scheduler": sched.state_dict(),
                    "data_gen": data_gen.get_state(),
                    "aug_gen": aug_gen.get_state(),
                    "noise_gen": noise_gen.get_state(),
                    "accountant": acct.history,
                    "history": res.history,
                    "commits": res.commits,
                    "train_config": config.to_dict(),
                    "dp_config": dp.to_dict(),
                    "run_config": run_config or {},
                },
                path,
            )

    one = _OneSampleLoss(method)
    buffers = {f"method.{k}": b for k, b in method.named_buffers()}
    names = list(params)

    def loss_fn(p, x, keep, mask, restore):
        return functional_call(one, ({f"method.{k}": v for k, v in p.items()}, buffers), (x, keep, mask, restore))

    per_sample = vmap(grad_and_value(loss_fn), in_dims=(None, 0, 0, 0, 0))
    # timm's fused attention has no vmap rule (a slow per-sample fallback); the explicit form does.
    fused = [(a, a.fused_attn) for a in method.modules() if hasattr(a, "fused_attn")]
    for a, _ in fused:
        a.fused_attn = False
    t0 = time.perf_counter()
    bar = tqdm(
        range(start, config.epochs), desc=desc, disable=not progress, initial=start, total=config.epochs, leave=False
    )
    for epoch in bar:
        method.train()
        losses, seen = 0.0, 0
        for _ in range(steps_per_epoch):
            idx = (torch.rand(n, generator=data_gen) < q).nonzero().flatten().to(device)  # Poisson sampling
            summed = {k: torch.zeros_like(v) for k, v in params.items()}
            if len(idx):
                x = method.augmentation(images[idx], aug_gen)
                keep, mask, restore = method.random_masking(len(idx), device, aug_gen)
                detached = {k: v.detach() for k, v in params.items()}
                g, vals = per_sample(detached, x, keep, mask, restore)
                # Clip each sample's whole gradient to norm C, then sum over the batch.
                norms = torch.stack([g[k].flatten(1).norm(dim=1) for k in names]).norm(dim=0)
                scale = (c / (norms + 1e-6)).clamp(max=1.0)
                summed = {k: torch.einsum("b,b...->...", scale, g[k]) for k in names}
                losses += float(vals.mean())
                seen += 1
            for k, p in params.items():
                noise = torch.randn(p.shape, generator=noise_gen, device=device) * (sigma * c) if sigma > 0 else 0
                p.grad = (summed[k] + noise) / (q * n)  # divide by the expected batch size, as opacus does
            opt.step()
            sched.step()
            acct.step(noise_multiplier=sigma, sample_rate=q)
        if not math.isfinite(losses):
            raise FloatingPointError(f"dp_train: loss is {losses} at epoch {epoch + 1}; lower lr or check the data")
        res.history.append({"epoch": epoch + 1, "loss": losses / max(1, seen), "lr": sched.get_last_lr()[0]})
        bar.set_postfix(loss=round(res.history[-1]["loss"], 4))
        if epoch + 1 == config.epochs or (epoch + 1) % config.checkpoint_every == 0:
            save(epoch + 1)
    for a, f in fused:
        a.fused_attn = f
    method.eval()
    res.steps = sum(h[2] for h in acct.history)
    res.epsilon = float(acct.get_epsilon(delta)) if sigma > 0 and res.steps else math.inf
    res.wall_time_s = time.perf_counter() - t0
    return res
