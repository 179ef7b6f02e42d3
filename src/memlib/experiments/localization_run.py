"""Localising memorisation (Wang et al., NeurIPS 2024): LayerMem, UnitMem, ClassMem end to end.

One run takes the SSLMem experiment's encoders (:func:`~memlib.experiments.encoders.family_specs`,
so the same cache entries: a run after ``run_sslmem`` at the same preset and
seed trains nothing) and adds

- a ViT family (``vit_arch``) trained on the same splits, for attention vs MLP;
- one supervised encoder (method ``"supervised"``) on f's training points, for ClassMem vs UnitMem;

then measures (the book's Methods page):

- LayerMem and ΔLayerMem of every tapped layer on the candidates S_C, f vs g;
- UnitMem of every unit of f (ResNet: every block's channels; ViT: MLP
  hidden neurons) and of the supervised encoder, over f's training points,
  and ClassMem over their class means;
- fine-tuning the layers with the largest ΔLayerMem against as many last layers;
- pruning the top / bottom / random units by UnitMem (output channels zeroed by
  a forward hook) and the linear-probe accuracy that is lost.

:meth:`LocalizationRun.claims` turns each claim of the localisation paper into a status
and its statistic. Notebook ``05_localization`` only plots what it returns.
"""

from __future__ import annotations

import copy
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from scipy import stats as st
from torch import nn
from tqdm import tqdm

from ..atomic import write_csv
from ..data.augment import build_augmentation, to_float
from ..data.datasets import ImageDataset
from ..data.splits import Splits
from ..memorization.layermem import LayerMemResult, layermem
from ..memorization.unitmem import UnitMemResult, unitmem
from ..models import ENCODERS
from ..probing import embed, linear_probe
from ..stats import ttest_greater, ttest_vs_zero
from .artifacts import LOCALIZATION
from .claims import Claim, claims_table
from .context import RunContext, members, named_families
from .encoders import family_specs
from .inputs import load_with_splits, sample_subset
from .presets import Preset, claim_status
from .settings import Settings
from .validate import check_positive_int

#: The encoders whose units UnitMem reads (ResNet f, ViT f and the supervised ResNet).
UNIT_ENCODERS = ("resnet", "vit", "supervised")


#: The test and unit of replication behind each claim of :meth:`LocalizationRun.claims`.
LOCALIZATION_TESTS = {
    "L1": ("Spearman ρ(depth, LayerMem) and ΔLayerMem < 0", "layer"),
    "L2": ("Welch t-test, MLP vs attention LayerMem", "point × block"),
    "L3": ("top-10 % UnitMem units per layer; Fisher's exact test", "unit"),
    "L4": ("Welch t-test on UnitMem − ClassMem", "unit"),
    "L5": ("Welch t-test, top vs bottom quartile by SSLMem, per layer", "point"),
    "L6": ("Spearman ρ(UnitMem index, SSLMem)", "point"),
    "L7": ("exact binomial test on discordant test points", "test point"),
    "L8": ("top-unit drop above every random draw", "pruning draw"),
}


@dataclass
class LocalizationRun:
    """Everything one localisation run produced (see :func:`run_localization`)."""

    preset: Preset
    seed: int
    splits: Splits
    layer: dict[str, LayerMemResult]  # "resnet", "vit": LayerMem of the candidates, f vs g
    units: dict[str, UnitMemResult]  # UNIT_ENCODERS: UnitMem over f's training points
    unit_labels: np.ndarray  # class of each UnitMem point
    unit_candidate_pos: np.ndarray  # position of each candidate (in the order of ``layer``) among the UnitMem points
    finetune: pd.DataFrame
    pruning: pd.DataFrame
    provenance: dict
    run_dir: Path
    timings: dict = field(default_factory=dict)
    encoders: dict[str, list] = field(default_factory=dict, repr=False)

    # --- LayerMem -------------------------------------------------------------------------------------
    def blocks(self, arch: str) -> list[str]:
        """The tapped layers in depth order: ResNet stem and residual blocks, or ViT blocks."""
        taps = self.layer[arch].taps
        if arch == "vit":
            return [t for t in taps if t.count(".") == 2]  # vit.blocks.i
        return list(taps)

    def layer_table(self, arch: str = "resnet", points=None) -> pd.DataFrame:
        """LayerMem and ΔLayerMem per block of ``arch``.

        See :meth:`~memlib.memorization.layermem.LayerMemResult.table`.
        """
        return self.layer[arch].table(points, taps=self.blocks(arch))

    def attention_vs_mlp(self) -> pd.DataFrame:
        """ViT LayerMem of each block's attention and MLP sub-layer (mean normalised score)."""
        res = self.layer["vit"]
        rows = [
            {"block": i, "attention": res.layer(f"{b}.attn").mean(), "mlp": res.layer(f"{b}.mlp").mean()}
            for i, b in enumerate(self.blocks("vit"))
        ]
        return pd.DataFrame(rows).set_index("block")

    def sslmem_score(self) -> np.ndarray:
        """Each candidate's SSLMem: LayerMem of the ResNet's last block, whose output is the representation."""
        return self.layer["resnet"].layer(self.layer["resnet"].taps[-1])

    def atypical(self, q: float = 0.25) -> pd.DataFrame:
        """LayerMem per block on the most vs the least memorised candidates (top / bottom ``q`` by SSLMem).

        Columns ``most``, ``least``, and a one-sided Welch test of most > least per block.
        """
        s = self.sslmem_score()
        k = max(2, int(round(q * len(s))))
        order = np.argsort(s)
        hi, lo = order[-k:], order[:k]
        res = self.layer["resnet"]
        rows = []
        for t in self.blocks("resnet"):
            v = res.layer(t)
            r = ttest_greater(v[hi], v[lo])
            rows.append({"tap": t, "most": r["mean_a"], "least": r["mean_b"], "t": r["t"], "p": r["p"]})
        return pd.DataFrame(rows).set_index("tap")

    # --- UnitMem --------------------------------------------------------------------------------------
    def unit_table(self, which: str = "resnet") -> pd.DataFrame:
        """One row per unit of ``which`` (one of :data:`UNIT_ENCODERS`), with UnitMem and ClassMem."""
        res = self.units[which]
        df = res.table()
        cm = res.classmem(self.unit_labels)
        df["classmem"] = np.concatenate([cm[t] for t in res.taps])
        return df

    def unit_summary(self, top: float = 0.1) -> pd.DataFrame:
        """Per encoder and layer: mean UnitMem, mean ClassMem, and the layer's share of the top ``top`` units."""
        rows = []
        for which in UNIT_ENCODERS:
            df = self.unit_table(which)
            cut = df["unitmem"].quantile(1 - top)
            n_top = int((df["unitmem"] >= cut).sum())
            for (layer, tap), g in df.groupby(["layer", "tap"]):
                rows.append(
                    {
                        "encoder": which,
                        "layer": layer,
                        "tap": tap,
                        "units": len(g),
                        "mean unitmem": g["unitmem"].mean(),
                        "mean classmem": g["classmem"].mean(),
                        "share of top units": (g["unitmem"] >= cut).sum() / n_top,
                    }
                )
        return pd.DataFrame(rows)

    def unit_vs_sslmem(self) -> dict:
        """Spearman correlation of the candidates' SSLMem with how strongly some ResNet unit singles them out.

        Per point, the largest UnitMem-style index over the units of f
        (:func:`~memlib.memorization.unitmem.point_selectivity`), restricted to the candidates.
        """
        sel = self.units["resnet"].point_selectivity()[self.unit_candidate_pos]
        r = st.spearmanr(sel, self.sslmem_score(), alternative="greater")
        return {"rho": float(r.statistic), "p": float(r.pvalue), "n": int(len(sel))}

    # --- Claims ---------------------------------------------------------------------------------------
    def claims(self, alpha: float = 0.05) -> pd.DataFrame:
        """Verdicts on the localisation claims (ids L1–L9), each with its statistic.

        A run at a preset that is not ``meaningful`` (``smoke``) decides nothing.

        Returns
        -------
        pandas.DataFrame
            Indexed by claim id: ``claim``, ``status``, ``statistic``.
        """
        rows = {}
        # L1: LayerMem rises with depth, not monotonically (Spearman over the ResNet's blocks).
        lt = self.layer_table("resnet")
        rho = st.spearmanr(np.arange(len(lt)), lt["layermem"], alternative="greater")
        drops = int((lt["delta"].iloc[1:] < 0).sum())
        rows["L1"] = (
            "LayerMem rises with depth, but not monotonically",
            (rho.pvalue < alpha, drops > 0),
            f"Spearman ρ(depth, LayerMem) = {rho.statistic:+.2f}, p = {rho.pvalue:.2g} over {len(lt)} "
            f"ResNet layers; ΔLayerMem < 0 at {drops} of {len(lt) - 1}",
        )
        # L2: in ViTs the MLP sub-layers memorise more than attention (per candidate, mean over blocks).
        res, blocks = self.layer["vit"], self.blocks("vit")
        diff = np.mean([res.layer(f"{b}.mlp") - res.layer(f"{b}.attn") for b in blocks], axis=0)
        t = ttest_vs_zero(diff, "greater")
        rows["L2"] = (
            "ViT: MLP sub-layers memorise more than attention",
            (t["p"] < alpha,),
            f"mean LayerMem(MLP) − LayerMem(attention) = {t['mean_a']:+.4f} over {len(diff)} candidates, "
            f"t = {t['t']:.2f}, p = {t['p']:.2g}",
        )
        # L3: top units spread over all layers in SSL; in supervised learning they gather in the last layer.
        us = self.unit_summary()
        last = {
            w: float(us[us.encoder == w].sort_values("layer")["share of top units"].iloc[-1])
            for w in ("resnet", "supervised")
        }
        spread = int((us[us.encoder == "resnet"]["share of top units"] > 0).sum())
        n_layers = int((us.encoder == "resnet").sum())
        k_ssl, k_sup = self._top_in_last()
        fisher = st.fisher_exact(
            [[k_sup[0], k_sup[1] - k_sup[0]], [k_ssl[0], k_ssl[1] - k_ssl[0]]], alternative="greater"
        )
        rows["L3"] = (
            "Highly memorising units are spread over all layers in SSL, in the last layers in supervised learning",
            (spread == n_layers, fisher.pvalue < alpha),
            f"top-10% UnitMem units in {spread} of {n_layers} SSL layers; share in the last layer SSL "
            f"{last['resnet']:.2f} vs supervised {last['supervised']:.2f}, Fisher p = {fisher.pvalue:.2g}",
        )
        # L4: SSL units single out points (UnitMem > ClassMem) more than supervised units do.
        d = {
            w: (lambda df: (df["unitmem"] - df["classmem"]).to_numpy())(self.unit_table(w))
            for w in ("resnet", "supervised")
        }
        t4 = ttest_greater(d["resnet"], d["supervised"])
        rows["L4"] = (
            "SSL has more units selective for single points, supervised more for classes",
            (t4["p"] < alpha,),
            f"mean UnitMem − ClassMem per unit: SSL {t4['mean_a']:+.3f} vs supervised {t4['mean_b']:+.3f}, "
            f"Welch t = {t4['t']:.2f}, p = {t4['p']:.2g}, d = {t4['cohens_d']:.2f}",
        )
        # L5: atypical (most memorised) candidates have higher LayerMem in every layer.
        at = self.atypical().iloc[:-1]  # the last block is SSLMem itself, which ranked the points
        n_sig = int((at["p"] < alpha).sum())
        rows["L5"] = (
            "Atypical points have higher LayerMem",
            (n_sig == len(at),),
            f"top vs bottom quartile by SSLMem: higher LayerMem at p < {alpha} in {n_sig} of {len(at)} "
            f"earlier layers (min t = {at['t'].min():.2f})",
        )
        # L6: UnitMem correlates with SSLMem.
        c = self.unit_vs_sslmem()
        rows["L6"] = (
            "UnitMem correlates with SSLMem",
            (c["p"] < alpha,),
            f"Spearman ρ = {c['rho']:+.2f}, p = {c['p']:.2g} (n = {c['n']} candidates)",
        )
        # L7: fine-tuning the most memorising layers beats fine-tuning the last layers.
        ft = self.finetune.set_index("layers")
        a, b = ft.loc["most memorising"], ft.loc["last"]
        rows["L7"] = (
            "Fine-tuning the most memorising layers beats fine-tuning the last layers",
            (a["accuracy"] > b["accuracy"] and a["p"] < alpha,),
            f"accuracy {a['accuracy']:.3f} ({a['taps']}) vs {b['accuracy']:.3f} ({b['taps']}); "
            f"exact binomial test on discordant test points p = {a['p']:.2g}",
        )
        # L8: pruning the most memorising units hurts more than pruning random ones.
        pr = self.pruning
        parts, ok = [], []
        for frac, g in pr.groupby("fraction"):
            top = float(g.loc[g.strategy == "top", "drop"].iloc[0])
            rnd = g.loc[g.strategy == "random", "drop"].to_numpy()
            z = (top - rnd.mean()) / rnd.std(ddof=1) if len(rnd) > 1 and rnd.std(ddof=1) > 0 else float("nan")
            ok.append(bool(top > rnd.max()))
            parts.append(
                f"{frac:.0%}: drop top {top:+.3f} vs random {rnd.mean():+.3f} ± {rnd.std(ddof=1):.3f} "
                f"(z = {z:.1f}, {len(rnd)} draws)"
            )
        rows["L8"] = ("Pruning the most memorising units hurts more than random units", tuple(ok), "; ".join(parts))
        rows["L9"] = ("DP training lowers UnitMem", None, "measured in the DP chapter (04), not here")
        out = []
        for cid, (text, ok, stat) in rows.items():
            # L9 is decided by the DP chapter; this chapter only points there, so the two cannot disagree.
            status = "decided in chapter 04" if ok is None else claim_status(self.preset, self.seed, list(ok))
            out.append(Claim(cid, status, stat, *LOCALIZATION_TESTS.get(cid, ("", "")), text=text))
        return claims_table(out)

    def _top_in_last(self, top: float = 0.1) -> tuple[tuple[int, int], tuple[int, int]]:
        """(top units in the last layer, top units) for SSL and for supervised."""
        out = []
        for which in ("resnet", "supervised"):
            df = self.unit_table(which)
            is_top = df["unitmem"] >= df["unitmem"].quantile(1 - top)
            out.append((int((is_top & (df["layer"] == df["layer"].max())).sum()), int(is_top.sum())))
        return out[0], out[1]


@contextmanager
def pruned(encoder: nn.Module, units: dict[str, np.ndarray]):
    """Zero the given units of the given layers with forward hooks (channel dim 1 of conv maps, last dim of tokens).

    Parameters
    ----------
    encoder
        The encoder; its weights are not changed.
    units
        Tap name → indices of the units to zero.
    """
    modules = dict(encoder.named_modules())
    missing = [t for t in units if t not in modules]
    if missing:
        raise ValueError(f"unknown tap name(s) {missing}; known: {list(getattr(encoder, 'tap_names', []))}")
    handles = []
    for tap, idx in units.items():
        idx = torch.tensor(np.asarray(idx, dtype=np.int64))

        def hook(_mod, _inp, out, idx=idx):
            out = out.clone()  # never write into a tensor the block may still use
            if out.ndim == 4:
                out[:, idx.to(out.device)] = 0
            else:
                out[..., idx.to(out.device)] = 0
            return out

        handles.append(modules[tap].register_forward_hook(hook))
    try:
        yield encoder
    finally:
        for h in handles:
            h.remove()


def finetune_layers(
    encoder: nn.Module,
    taps: list[str],
    train_set: ImageDataset,
    test_set: ImageDataset,
    epochs: int,
    lr: float = 1e-3,
    batch_size: int = 256,
    seed: int = 0,
    device: str | torch.device = "cpu",
    progress: bool = False,
) -> np.ndarray:
    """Fine-tune only the layers ``taps`` of a copy of ``encoder``, with a new linear head; return test hits.

    Every other parameter stays frozen and BatchNorm keeps its running
    statistics (eval mode), so only the chosen layers' weights move. The
    head's input is standardised with the starting encoder's feature mean and
    std on ``train_set`` (as :func:`~memlib.probing.linear.linear_probe` does), and
    training uses the clean images (no augmentation).

    Returns
    -------
    numpy.ndarray
        Per test point, whether the fine-tuned classifier got it right (bool).
    """
    enc = copy.deepcopy(encoder).to(device).eval()
    modules = dict(enc.named_modules())
    for p in enc.parameters():
        p.requires_grad_(False)
    params = [p for t in taps for p in modules[t].parameters()]
    for p in params:
        p.requires_grad_(True)
    gen = torch.Generator().manual_seed(seed)
    # Standardise the head's input with the starting features' statistics, as linear_probe does.
    feats = embed(enc, train_set.images, device=device)
    mu, sd = feats.mean(0), feats.std(0).clamp_min(1e-6)
    head = nn.Linear(enc.pooled_dim, train_set.num_classes).to(device)
    logits = lambda imgs: head((enc.pooled(to_float(imgs.to(device))) - mu) / sd)  # noqa: E731
    opt = torch.optim.Adam(params + list(head.parameters()), lr=lr)
    x, y = train_set.images, train_set.labels
    for _ in tqdm(range(epochs), desc="fine-tune", disable=not progress, leave=False):
        perm = torch.randperm(len(x), generator=gen)
        for s in range(0, len(x), batch_size):
            i = perm[s : s + batch_size]
            loss = F.cross_entropy(logits(x[i]), y[i].to(device))
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
    with torch.inference_mode():
        pred = torch.cat([logits(test_set.images[s : s + 1024]).argmax(1).cpu() for s in range(0, len(test_set), 1024)])
    return (pred == test_set.labels).numpy()


@dataclass(frozen=True)
class LocalizationSettings(Settings):
    """The localisation experiment's own settings (the same at every preset).

    Attributes
    ----------
    vit_arch
        The ViT trained beside the ResNet (one of ``memlib.models.ENCODERS`` whose name starts with ``vit``).
    unit_views
        K augmentations averaged per point for UnitMem (the official code: 10).
    n_finetune
        How many layers to fine-tune: the ``n_finetune`` largest ΔLayerMem vs the ``n_finetune`` last.
    finetune_epochs
        Epochs of each fine-tuning run; ``None`` = the preset's ``probe_epochs``. Fine-tuning runs the
        encoder forward and backward over the downstream set every epoch, far costlier than a linear probe.
    prune_fractions
        Shares of all ResNet units to prune, each in (0, 1).
    random_draws
        Random prunings per fraction (the control).
    """

    TABLE: ClassVar[dict[str, dict]] = {name: {} for name in ("smoke", "cpu", "gpu", "paper")}

    vit_arch: str = "vit_micro"
    unit_views: int = 10
    n_finetune: int = 2
    finetune_epochs: int | None = None
    prune_fractions: tuple[float, ...] = (0.1, 0.2)
    random_draws: int = 5

    def __post_init__(self):
        if self.vit_arch not in ENCODERS or not self.vit_arch.startswith("vit"):
            raise ValueError(
                f"vit_arch={self.vit_arch!r} must be a ViT; choose one of "
                f"{sorted(a for a in ENCODERS if a.startswith('vit'))}"
            )
        check_positive_int("unit_views", self.unit_views)
        check_positive_int("n_finetune", self.n_finetune)
        if self.finetune_epochs is not None:
            check_positive_int("finetune_epochs", self.finetune_epochs)
        r = self.random_draws
        if isinstance(r, bool) or not isinstance(r, int) or r < 2:
            raise ValueError(f"random_draws={r!r} must be an int ≥ 2 (the control needs a spread)")
        fracs = tuple(self.prune_fractions)
        if not fracs or not all(isinstance(f, (int, float)) and 0 < f < 1 for f in fracs):
            raise ValueError(f"prune_fractions={self.prune_fractions!r} must be numbers in (0, 1), e.g. (0.1, 0.2)")
        self._set("prune_fractions", fracs)


def run_localization(
    preset="smoke", *, device="cpu", seed=0, cache_dir=None, data_root=None, progress=True, **overrides
) -> LocalizationRun:
    """Run the localisation experiments (LayerMem, UnitMem, fine-tuning, pruning) at a preset.

    ``preset`` and ``seed`` as in :func:`~memlib.experiments.sslmem_experiment.run_sslmem`: the ResNet families
    are that run's encoders (same cache entries). ``overrides`` set :class:`LocalizationSettings` fields
    (``vit_arch``, ``unit_views``, ``n_finetune``, ``finetune_epochs``, ``prune_fractions``, ``random_draws``)
    or preset fields; ``None`` is ignored. Device, folders and progress bars as in
    :meth:`~memlib.experiments.context.RunContext.start`. Returns a :class:`LocalizationRun`.
    """
    # Every parameter is checked before any data is loaded or anything written.
    p, ls = LocalizationSettings.for_preset(preset, **overrides)
    vit_arch, unit_views, n_finetune = ls.vit_arch, ls.unit_views, ls.n_finetune
    fracs, random_draws = ls.prune_fractions, ls.random_draws
    finetune_epochs = p.probe_epochs if ls.finetune_epochs is None else ls.finetune_epochs
    key = {
        "vit_arch": vit_arch,
        "unit_views": unit_views,
        "n_finetune": n_finetune,
        "finetune_epochs": finetune_epochs,
        "prune_fractions": fracs,
        "random_draws": random_draws,
    }
    ctx = RunContext.start(LOCALIZATION, p, device, seed, key, cache_dir, data_root, progress)
    p, dev = ctx.preset, ctx.device
    train_set, test_set, splits = load_with_splits(p, seed, data_root)

    # The same encoders as run_sslmem (ResNet), a ViT family, and one supervised ResNet: one fit, one pool.
    t = time.perf_counter()
    named = {
        **named_families(family_specs(p, splits, seed), "resnet "),
        **named_families(family_specs(p.replace(arch=vit_arch), splits, seed), "vit "),
        **named_families(family_specs(p.replace(method="supervised"), splits, seed, ("f",)), "supervised "),
    }
    fitted = ctx.fit_named(named, train_set)
    fams, vit_fams, sup = (
        {fam: [f.encoder for f in members(fitted, f"{name} {fam}")] for fam in ("f", "g")}
        for name in ("resnet", "vit", "supervised")
    )
    t_train = time.perf_counter() - t

    aug = build_augmentation(p.augmentation, train_set.image_size)
    cand = train_set.subset(splits.candidate)
    t = time.perf_counter()
    kw = dict(views=p.views, mode=p.mode, batch_size=p.score_batch_size, seed=seed, device=dev, progress=progress)
    layer = {
        "resnet": layermem(fams["f"], fams["g"], cand.images, aug, ids=splits.candidate, **kw),
        "vit": layermem(vit_fams["f"], vit_fams["g"], cand.images, aug, ids=splits.candidate, **kw),
    }
    t_layer = time.perf_counter() - t

    # UnitMem over f's training points (the first encoder of each family).
    pts = train_set.subset(splits.f_train)
    # Where each candidate sits among f's training points, in the order of the LayerMem result.
    order = {int(i): k for k, i in enumerate(splits.f_train)}
    cand_pos = np.array([order[int(i)] for i in splits.candidate])
    # The same views as LayerMem's: view k of a point is keyed by (seed, dataset index, k).
    ukw = dict(views=unit_views, ids=splits.f_train, seed=seed, device=dev, progress=progress)
    t = time.perf_counter()
    units = {
        "resnet": unitmem(fams["f"][0], pts.images, aug, **ukw),
        "vit": unitmem(vit_fams["f"][0], pts.images, aug, **ukw),
        "supervised": unitmem(sup["f"][0], pts.images, aug, **ukw),
    }
    t_unit = time.perf_counter() - t

    rng = np.random.default_rng(seed + 54321)
    down_tr, down_te = sample_subset(train_set, p.probe_train, rng), sample_subset(test_set, p.probe_test, rng)
    run = LocalizationRun(
        p,
        seed,
        splits,
        layer,
        units,
        pts.labels.numpy(),
        cand_pos,
        pd.DataFrame(),
        pd.DataFrame(),
        {},
        ctx.run_dir,
        encoders={
            "f": fams["f"],
            "g": fams["g"],
            "vit_f": vit_fams["f"],
            "vit_g": vit_fams["g"],
            "supervised": sup["f"],
        },
    )

    t = time.perf_counter()
    run.finetune = _finetune(run, fams["f"][0], down_tr, down_te, n_finetune, finetune_epochs, seed, dev, progress)
    t_ft = time.perf_counter() - t
    t = time.perf_counter()
    run.pruning = _prune(run, fams["f"][0], down_tr, down_te, fracs, random_draws, p, seed, dev, progress)
    t_prune = time.perf_counter() - t

    run.timings = {
        "train_s": t_train,
        "layermem_s": t_layer,
        "unitmem_s": t_unit,
        "finetune_s": t_ft,
        "prune_s": t_prune,
        "total_s": ctx.elapsed(),
    }
    run.provenance = ctx.provenance(
        {"vit_arch": vit_arch, "unit_views": unit_views, "finetune_epochs": finetune_epochs, **p.to_dict()}
    )
    _save(run, ctx)
    return run


def _finetune(run: LocalizationRun, enc, down_tr, down_te, n, epochs, seed, dev, progress) -> pd.DataFrame:
    """Fine-tune the ``n`` layers with the largest ΔLayerMem vs the ``n`` last layers; paired exact test."""
    lt = run.layer_table("resnet")
    n = min(n, len(lt))
    most = list(lt["delta"].nlargest(n).index)
    last = list(lt.index[-n:])
    hits = {
        name: finetune_layers(enc, taps, down_tr, down_te, epochs=epochs, seed=seed, device=dev, progress=progress)
        for name, taps in (("most memorising", most), ("last", last))
    }
    a, b = hits["most memorising"], hits["last"]
    wins, losses = int((a & ~b).sum()), int((~a & b).sum())
    # Exact binomial (McNemar) test on the test points where the two disagree.
    pval = st.binomtest(wins, wins + losses, 0.5, alternative="greater").pvalue if wins + losses else 1.0
    return pd.DataFrame(
        [
            {"layers": "most memorising", "taps": ", ".join(most), "accuracy": a.mean(), "p": pval},
            {"layers": "last", "taps": ", ".join(last), "accuracy": b.mean(), "p": float("nan")},
        ]
    )


def _prune(run: LocalizationRun, enc, down_tr, down_te, fracs, draws, p: Preset, seed, dev, progress) -> pd.DataFrame:
    """Linear-probe accuracy after zeroing the top / bottom / random units by UnitMem (probe refit each time)."""
    df = run.units["resnet"].table()
    order = df["unitmem"].to_numpy().argsort(kind="stable")
    rng = np.random.default_rng(seed + 777)

    def accuracy(rows: np.ndarray | None) -> float:
        units = {} if rows is None else {t: g["unit"].to_numpy() for t, g in df.iloc[rows].groupby("tap")}
        with pruned(enc, units):
            ftr, fte = embed(enc, down_tr.images, device=dev), embed(enc, down_te.images, device=dev)
        return linear_probe(ftr, down_tr.labels, fte, down_te.labels, epochs=p.probe_epochs, seed=seed)["test_acc"]

    base = accuracy(None)
    rows = []
    jobs = [(f, s, d) for f in fracs for s, d in (("top", 0), ("bottom", 0), *(("random", i) for i in range(draws)))]
    for frac, strategy, draw in tqdm(jobs, desc="pruning", disable=not progress, leave=False):
        k = max(1, int(round(frac * len(df))))
        sel = {"top": order[-k:], "bottom": order[:k]}.get(strategy)
        if sel is None:
            sel = rng.choice(len(df), size=k, replace=False)
        acc = accuracy(sel)
        rows.append(
            {"fraction": frac, "strategy": strategy, "draw": draw, "units": k, "accuracy": acc, "drop": base - acc}
        )
    out = pd.DataFrame(rows)
    out.attrs["base_accuracy"] = base
    return out


def _save(run: LocalizationRun, ctx: RunContext) -> None:
    """Write the LayerMem tables, unit tables, fine-tuning, pruning and claims (CSV / JSON) to the run folder,
    then its ``COMPLETE`` marker."""
    for arch in run.layer:
        write_csv(run.layer_table(arch), run.run_dir / f"layermem_{arch}.csv")
    summary = {
        "claims": run.claims().reset_index().to_dict(orient="records"),
        "finetune": run.finetune.to_dict(orient="records"),
        "base_accuracy": run.pruning.attrs.get("base_accuracy"),
        "timings": run.timings,
        "provenance": run.provenance,
    }
    ctx.save(
        tables={**{f"units_{which}": run.unit_table(which) for which in run.units}, "pruning": run.pruning},
        jsons={"summary": summary},
    )
