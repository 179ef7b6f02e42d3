"""Localising memorisation (Wang et al., NeurIPS 2024): LayerMem, UnitMem, ClassMem, with encoders as the unit.

One run takes the SSLMem experiment's encoders (:func:`~memlib.experiments.encoders.family_specs`,
so the same cache entries: a run after ``run_sslmem`` at the same preset and
seed trains no ResNet) and adds, on the same splits and with as many members,

- a ViT family (``vit_arch``) for attention vs MLP;
- a supervised ResNet family (method ``"supervised"``, f's training points) for ClassMem vs UnitMem;

then measures, **per encoder pair or encoder** (the replicate of every claim):

- LayerMem of every tapped layer on the candidates S_C and on the extra points
  S_E (neither f nor g trained on them), per pair f_i / g_i. Depth claims use
  the *standardised* LayerMem ``z = (mean_C − mean_E) / sd_E`` of the raw
  score: the pair's chance offset is removed and the layer's own scale divided
  out, so layers compare (the paper's per-layer range normalisation does not);
- UnitMem of every unit of each f_i (ResNet block channels, ViT MLP hidden
  neurons) and of each supervised encoder over f's training points, ClassMem
  over their class means, and the same encoders' UnitMem on as many test
  points no encoder trained on (UnitMem without memorisation); the ViT under
  each activation handling of :data:`~memlib.memorization.unitmem.ACTIVATIONS`
  (the sensitivity table);
- where the top units sit, as layer enrichment (:func:`~memlib.memorization.enrichment.layer_enrichment`);
- an atypicality of each candidate that does not come from SSLMem: its kNN
  distance to its own class in the embeddings of g's encoders, which never
  trained on it;
- fine-tuning each f_i's layers with the largest ΔLayerMem against as many last layers;
- pruning each f_i's top / bottom / random units by UnitMem (output channels
  zeroed by a forward hook) and the linear-probe accuracy that is lost.

:meth:`LocalizationRun.claims` decides each claim with :mod:`memlib.verdicts`
over encoders (n = members per family), never over points or units. Notebook
``05_localization`` only plots what it returns.
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
from ..data.datasets import ImageDataset, test_point_ids
from ..data.splits import Splits
from ..memorization.enrichment import layer_enrichment
from ..memorization.layermem import LayerMemResult, layermem
from ..memorization.unitmem import ACTIVATIONS, UnitMemResult, unitmem
from ..models import ENCODERS
from ..probing import atypicality, embed, linear_probe, untrained_encoder
from ..verdicts import (
    Evidence,
    Sesoi,
    decide,
    mean_effect,
    mean_evidence,
    one_sided_pair,
    parts_count,
    parts_status,
    plan_table,
    preset_status,
    standardised_sesoi,
)
from .artifacts import LOCALIZATION
from .claims import Claim, claims_table
from .context import RunContext, members, named_families
from .encoders import EncoderSpec, family_specs
from .inputs import load_with_splits, sample_subset
from .presets import Preset
from .settings import Settings
from .validate import check_positive_int

#: The encoder kinds whose units UnitMem reads (ResNet f, ViT f, the supervised ResNet and untrained ResNets).
UNIT_ENCODERS = ("resnet", "vit", "supervised", "untrained")
#: Fraction of units counted as "top" (the paper's top 10 %).
TOP_UNITS = 0.1

#: The test and unit of replication behind each claim of :meth:`LocalizationRun.claims`.
LOCALIZATION_TESTS = {
    "L1": ("one-sample t over pairs of Spearman ρ(depth, standardised LayerMem); some layer's ΔLayerMem < 0 "
           "(Bonferroni over layers) against every layer's > 0 (intersection–union); Holm over the chapter",
           "ResNet encoder pair"),
    "L2": ("one-sample t over pairs of mean standardised LayerMem, MLP − attention", "ViT encoder pair"),
    "L3": ("paired t over members of the top units' last-layer share: SSL − untrained below the SESOI "
           "(non-inferiority), supervised − SSL > 0", "encoder (member i)"),
    "L4": ("paired t over members of mean UnitMem − ClassMem, SSL − supervised; of mean ClassMem, supervised − SSL",
           "encoder (member i)"),
    "L5": ("one-sample t over pairs of mean Spearman ρ(independent atypicality, LayerMem)", "ResNet encoder pair"),
    "L6": ("one-sample t over encoders of Spearman ρ(point selectivity, SSLMem)", "ResNet encoder pair"),
    "L7": ("one-sample t over encoders of accuracy, most memorising − last layers fine-tuned", "ResNet f encoder"),
    "L8": ("one-sample t over encoders of accuracy drop, top units − mean of random units", "ResNet f encoder"),
}  # fmt: skip


def _standardised(raw: np.ndarray, cand: np.ndarray) -> dict[str, np.ndarray]:
    """Per layer (rows of ``raw``, shape (L, N)): mean raw score on the candidates and on S_E, and z."""
    c, e = raw[:, cand], raw[:, ~cand]
    sd = e.std(axis=1, ddof=1)
    calibrated = c.mean(1) - e.mean(1)
    return {
        "raw": c.mean(1),
        "raw_extra": e.mean(1),
        "calibrated": calibrated,
        "z": calibrated / np.where(sd > 0, sd, np.nan),
    }


def _spearman(x, y) -> float:
    r = st.spearmanr(x, y).statistic
    return float(r) if np.isfinite(r) else 0.0


@dataclass
class LocalizationRun:
    """Everything one localisation run produced (see :func:`run_localization`)."""

    preset: Preset
    seed: int
    splits: Splits
    layer: dict[str, LayerMemResult]  # "resnet", "vit": LayerMem of S_C then S_E, per pair in .pair_raw(i)
    n_candidates: int  # the first n_candidates points of ``layer`` are S_C, the rest S_E
    units: dict[str, list[UnitMemResult]]  # UNIT_ENCODERS → one result per member, over f's training points
    unseen_units: dict[str, list[UnitMemResult]]  # the same encoders on test points no encoder trained on
    vit_activations: dict[str, tuple[list[UnitMemResult], list[UnitMemResult]]]  # handling → (seen, unseen)
    unit_labels: np.ndarray  # class of each UnitMem point
    unit_candidate_pos: np.ndarray  # position of each candidate among the UnitMem points
    atypicality: np.ndarray  # per candidate, in g's embeddings (independent of every LayerMem score)
    finetune: pd.DataFrame
    pruning: pd.DataFrame
    provenance: dict
    run_dir: Path
    timings: dict = field(default_factory=dict)
    encoders: dict[str, list] = field(default_factory=dict, repr=False)
    atypicality_members: list = field(default_factory=list, repr=False)  # per g member (``atypicality`` averages)
    store: object = None  # the evidence store the run was read from (None: computed, not stored)
    encoder_keys: list = field(default_factory=list, repr=False)  # store keys of every encoder behind the run

    @property
    def n_pairs(self) -> int:
        return len(self.layer["resnet"].align_f_models)

    @property
    def is_candidate(self) -> np.ndarray:
        n = self.layer["resnet"].raw.shape[1]
        return np.arange(n) < self.n_candidates

    # --- LayerMem -------------------------------------------------------------------------------------
    def blocks(self, arch: str) -> list[str]:
        """The tapped layers in depth order: ResNet stem and residual blocks, or ViT blocks."""
        taps = self.layer[arch].taps
        if arch == "vit":
            return [t for t in taps if t.count(".") == 2]  # vit.blocks.i
        return list(taps)

    def pair_layers(self, arch: str = "resnet", taps=None) -> pd.DataFrame:
        """One row per encoder pair and layer: mean raw LayerMem on S_C and S_E, calibrated and standardised (z).

        ``delta_z`` is z minus the previous layer's z of the same pair (ΔLayerMem), over ``taps`` in order
        (default :meth:`blocks`).
        """
        res = self.layer[arch]
        taps = self.blocks(arch) if taps is None else list(taps)
        rows = [res.taps.index(t) for t in taps]
        out = []
        for i in range(len(res.align_f_models)):
            v = _standardised(res.pair_raw(i)[rows], self.is_candidate)
            out.append(
                pd.DataFrame({"pair": i, "tap": taps, "depth": np.arange(len(taps)), **v}).assign(
                    delta_z=lambda d: np.diff(d["z"], prepend=0.0)
                )
            )
        return pd.concat(out, ignore_index=True)

    def layer_table(self, arch: str = "resnet") -> pd.DataFrame:
        """Per layer: the paper's LayerMem (normalised, family means, S_C), and the mean and sd over pairs of
        the standardised LayerMem z and of its ΔLayerMem."""
        res, taps = self.layer[arch], self.blocks(arch)
        paper = res.table(np.flatnonzero(self.is_candidate), taps=taps)
        g = self.pair_layers(arch).groupby("tap", sort=False)
        return pd.DataFrame(
            {
                "LayerMem (paper)": paper["layermem"],
                "z": g["z"].mean(),
                "z sd": g["z"].std(ddof=1),
                "ΔLayerMem z": g["delta_z"].mean(),
                "calibrated raw": g["calibrated"].mean(),
                "pairs": g.size(),
            }
        ).rename_axis("layer")

    def attention_vs_mlp(self) -> pd.DataFrame:
        """Per ViT block: standardised LayerMem of the attention and the MLP sub-layer, mean and sd over pairs."""
        blocks = self.blocks("vit")
        att = self.pair_layers("vit", [f"{b}.attn" for b in blocks])
        mlp = self.pair_layers("vit", [f"{b}.mlp" for b in blocks])
        out = pd.DataFrame({"attention": att.groupby("depth")["z"].mean(), "mlp": mlp.groupby("depth")["z"].mean()})
        out["attention sd"] = att.groupby("depth")["z"].std(ddof=1)
        out["mlp sd"] = mlp.groupby("depth")["z"].std(ddof=1)
        return out.rename_axis("block")

    def pair_sslmem(self, i: int) -> np.ndarray:
        """Each candidate's raw SSLMem under pair i: LayerMem of the ResNet's last block (the representation)."""
        res = self.layer["resnet"]
        return res.pair_raw(i)[res.taps.index(res.taps[-1])][self.is_candidate]

    def _atypicality_rho(self) -> np.ndarray:
        """Spearman ρ between the candidates' independent atypicality and their raw LayerMem, shape (layers,
        pairs), layers as :meth:`blocks`."""
        res = self.layer["resnet"]
        return np.array(
            [
                [_spearman(self.atypicality, res.pair_raw(i)[res.taps.index(t)][self.is_candidate])
                 for i in range(self.n_pairs)]
                for t in self.blocks("resnet")
            ]
        )  # fmt: skip

    def atypical(self) -> pd.DataFrame:
        """Per ResNet layer: Spearman ρ between the candidates' independent atypicality and their raw LayerMem,
        mean and sd over pairs (each pair's LayerMem against the same atypicality)."""
        rho = self._atypicality_rho()
        sd = rho.std(axis=1, ddof=1) if rho.shape[1] > 1 else np.full(len(rho), np.nan)
        return pd.DataFrame({"ρ": rho.mean(axis=1), "ρ sd": sd}, index=pd.Index(self.blocks("resnet"), name="layer"))

    # --- UnitMem --------------------------------------------------------------------------------------
    def unit_table(self, which: str = "resnet", member: int = 0) -> pd.DataFrame:
        """One row per unit of member ``member`` of ``which`` (:data:`UNIT_ENCODERS`): UnitMem and ClassMem."""
        res = self.units[which][member]
        df = res.table()
        cm = res.classmem(self.unit_labels)
        df["classmem"] = np.concatenate([cm[t] for t in res.taps])
        return df

    def enrichment(self, which: str, member: int, within_layer: bool = False) -> pd.DataFrame:
        """Layer enrichment of the top :data:`TOP_UNITS` units of one encoder
        (:func:`~memlib.memorization.enrichment.layer_enrichment`)."""
        return layer_enrichment(self.units[which][member].unitmem, TOP_UNITS, within_layer=within_layer)

    def unit_summary(self) -> pd.DataFrame:
        """Per encoder kind and layer, means over members: UnitMem, ClassMem, UnitMem on unseen points, and
        the enrichment of top units (pooled over layers, and within the layer)."""
        rows = []
        for which in UNIT_ENCODERS:
            for m in range(len(self.units[which])):
                ut = self.unit_table(which, m)
                pooled, within = self.enrichment(which, m), self.enrichment(which, m, within_layer=True)
                unseen = self.unseen_units[which][m].unitmem
                for k, (tap, g) in enumerate(ut.groupby("tap", sort=False)):
                    rows.append(
                        {
                            "encoder": which,
                            "member": m,
                            "layer": tap,
                            "units": len(g),
                            "UnitMem": g["unitmem"].mean(),
                            "UnitMem unseen": float(unseen[tap].mean()),
                            "ClassMem": g["classmem"].mean(),
                            "enrichment": float(pooled["enrichment"].iloc[k]),
                            "enrichment within layer": float(within["enrichment"].iloc[k]),
                        }
                    )
        df = pd.DataFrame(rows)
        return df.groupby(["encoder", "layer"], sort=False).mean(numeric_only=True).drop(columns="member")

    def member_units(self, which: str, activation: str | None = None) -> pd.DataFrame:
        """Per member of ``which``: mean UnitMem (seen, unseen), mean UnitMem − ClassMem, last-layer enrichment,
        share of negative per-point means, and ρ(point selectivity, memorisation of its pair at the last tapped
        layer: the ResNet's last block; for the ViT the last block's MLP hidden units, the units UnitMem reads);
        for the ViT under ``activation`` (default: the run's)."""
        seen, unseen = (
            (self.units[which], self.unseen_units[which])
            if activation is None or which != "vit"
            else self.vit_activations[activation]
        )
        arch = "vit" if which == "vit" else "resnet"
        rows = []
        for m, (a, b) in enumerate(zip(seen, unseen)):
            cm = a.classmem(self.unit_labels)
            um, cmv = (np.concatenate([x[t] for t in a.taps]) for x in (a.unitmem, cm))
            pooled = layer_enrichment(a.unitmem, TOP_UNITS)
            sel = a.point_selectivity()[self.unit_candidate_pos]
            res = self.layer[arch]
            trained = which in ("resnet", "vit") and m < self.n_pairs  # SSL members, each with its own pair
            mem = res.pair_raw(m)[len(res.taps) - 1][self.is_candidate] if trained else None
            rows.append(
                {
                    "member": m,
                    "UnitMem": float(um.mean()),
                    "UnitMem unseen": float(np.concatenate([b.unitmem[t] for t in b.taps]).mean()),
                    "UnitMem − ClassMem": float((um - cmv).mean()),
                    "last-layer enrichment": float(pooled["enrichment"].iloc[-1]),
                    "last-layer share": float(pooled["share"].iloc[-1]),
                    "ClassMem": float(cmv.mean()),
                    "negative means": float(max(a.clamped.values())),
                    "ρ(selectivity, SSLMem)": _spearman(sel, mem) if mem is not None else np.nan,
                }
            )
        return pd.DataFrame(rows).set_index("member")

    def vit_sensitivity(self) -> pd.DataFrame:
        """The ViT's UnitMem numbers under every activation handling, with the encoder-level verdicts of
        "UnitMem is higher on trained points than on unseen ones", L4's SSL half and L6 for the ViT."""
        rows = []
        for act in self.vit_activations:
            mu = self.member_units("vit", act)
            seen = mean_effect(mu["UnitMem"] - mu["UnitMem unseen"])
            l4 = mean_effect(mu["UnitMem − ClassMem"])
            l6 = mean_effect(mu["ρ(selectivity, SSLMem)"])
            rows.append(
                {
                    "activation": act,
                    "UnitMem": mu["UnitMem"].mean(),
                    "UnitMem unseen": mu["UnitMem unseen"].mean(),
                    "seen > unseen": seen.status,
                    "UnitMem − ClassMem": mu["UnitMem − ClassMem"].mean(),
                    "> 0 (L4, SSL half)": l4.status,
                    "ρ(selectivity, SSLMem)": mu["ρ(selectivity, SSLMem)"].mean(),
                    "> 0 (L6)": l6.status,
                    "negative means": mu["negative means"].mean(),
                    "encoders": len(mu),
                }
            )
        return pd.DataFrame(rows).set_index("activation")

    # --- Claims ---------------------------------------------------------------------------------------
    def claims(self, alpha: float = 0.05) -> pd.DataFrame:
        """Verdicts on the localisation claims L1–L8 by :mod:`memlib.verdicts`, each over encoders (L9 is
        decided in chapter 04).

        A run at a preset that is not ``meaningful`` (``smoke``) decides nothing.

        Returns
        -------
        pandas.DataFrame
            Indexed by claim id: ``claim``, ``status``, ``statistic``, ``test``, ``unit``, ``n``.
        """
        return localization_claims(self.claim_values(), self.preset, alpha)

    def planned_n(self, alpha: float = 0.05) -> pd.DataFrame:
        """Per claim, the encoders (pairs) a one-sided test needs for 80 % power to detect its SESOI at α/m (m:
        every test of the chapter), with this run's spread over encoders as the pilot
        (:func:`~memlib.verdicts.plan_table`); a claim of two parts takes the harder part."""
        return plan_table(localization_evidence(self.claim_values()), CLAIM_PARTS, alpha=alpha)

    @property
    def n_tests(self) -> int:
        """Tests in the chapter's Holm family (claims and parts)."""
        return sum(len(parts) for parts in CLAIM_PARTS.values())

    def claim_values(self) -> dict:
        """The per-encoder values every claim is tested on (see :func:`localization_claims`)."""
        pl = self.pair_layers("resnet")
        rho = pl.groupby("pair").apply(lambda d: _spearman(d["depth"], d["z"]), include_groups=False)
        ssl, sup, unt = (self.member_units(w) for w in ("resnet", "supervised", "untrained"))
        ft = self.finetune.pivot(index="member", columns="layers", values="accuracy")
        values = {
            "L1 rho": rho.to_numpy(),
            "L1 deltas": pl[pl["depth"] > 0].pivot(index="pair", columns="tap", values="delta_z"),
            "L2": self._vit_mlp_minus_attention(),
            "L3 share": {w: t["last-layer share"].to_numpy() for w, t in (("SSL", ssl), ("supervised", sup),
                                                                          ("untrained", unt))},
            "L4 UnitMem − ClassMem": {"SSL": ssl["UnitMem − ClassMem"].to_numpy(),
                                      "supervised": sup["UnitMem − ClassMem"].to_numpy(),
                                      "untrained": unt["UnitMem − ClassMem"].to_numpy()},
            "L4 ClassMem": {"SSL": ssl["ClassMem"].to_numpy(), "supervised": sup["ClassMem"].to_numpy()},
            "L5": self._atypicality_rho().mean(axis=0),
            "L6": ssl["ρ(selectivity, SSLMem)"].dropna().to_numpy(),
            "L7": (ft["most memorising"] - ft["last"]).to_numpy(),
            "L8": self.pruning_effect(),
        }  # fmt: skip
        return values

    def _vit_mlp_minus_attention(self) -> np.ndarray:
        blocks = self.blocks("vit")
        att = self.pair_layers("vit", [f"{b}.attn" for b in blocks]).groupby("pair")["z"].mean()
        mlp = self.pair_layers("vit", [f"{b}.mlp" for b in blocks]).groupby("pair")["z"].mean()
        return (mlp - att).to_numpy()

    def pruning_effect(self) -> np.ndarray:
        """Per f encoder: accuracy drop after pruning its top units minus the mean drop of its random draws,
        averaged over the pruned fractions."""
        pr = self.pruning
        top = pr[pr.strategy == "top"].groupby(["member", "fraction"])["drop"].mean()
        rnd = pr[pr.strategy == "random"].groupby(["member", "fraction"])["drop"].mean()
        return (top - rnd).groupby("member").mean().to_numpy()


#: L3's SESOI, a tenth of the top units (about 3 of 26 at ``cpu``) moved into or out of the last layer.
L3_SESOI = Sesoi(0.1, "a tenth of the top units in or out of the last layer (about 3 of 26 at cpu), declared")
_STANDARD = "the paper's effects are at another scale (full training); standardised over encoders"


def _paired(a, b) -> np.ndarray:
    """``a − b`` member by member over the members both have."""
    n = min(len(a), len(b))
    return np.asarray(a, float)[:n] - np.asarray(b, float)[:n]


#: The tests behind each claim (a claim of two parts plans for the harder one).
CLAIM_PARTS = {
    "L1": ("L1 rise", "L1 drop"),
    "L2": ("L2",),
    "L3": ("L3 spread", "L3 supervised"),
    "L4": ("L4 points", "L4 classes"),
    **{c: (c,) for c in ("L5", "L6", "L7", "L8")},
}


def localization_evidence(values: dict) -> dict[str, Evidence]:
    """Every test of L1–L8 (parts included) from the per-encoder ``values`` of :func:`localization_claims`,
    uncorrected, each with its SESOI."""

    def ev(x, direction=1):
        return mean_evidence(x, direction=direction, sesoi=standardised_sesoi(x, why=_STANDARD))

    # L1 part 2, "not monotonically": some layer's ΔLayerMem < 0 (union: Bonferroni over layers) against
    # "every layer rises" (intersection–union: the largest of the layers' one-sided p).
    deltas = values["L1 deltas"]
    p_pairs = [one_sided_pair(deltas[c].to_numpy(), direction=-1) for c in deltas]
    n_l = len(p_pairs)
    p_drop = min(1.0, n_l * min((q[0] for q in p_pairs), default=1.0))
    p_mono = max((q[1] for q in p_pairs), default=1.0)
    share, um, cm = values["L3 share"], values["L4 UnitMem − ClassMem"], values["L4 ClassMem"]
    return {
        "L1 rise": ev(values["L1 rho"]),
        "L1 drop": Evidence(len(deltas), p_drop, p_mono, None, float(deltas.to_numpy().min()) if n_l else None),
        "L2": ev(values["L2"]),
        # non-inferiority: SSL's last-layer share exceeds untrained encoders' by less than the SESOI
        "L3 spread": mean_evidence(L3_SESOI.value - _paired(share["SSL"], share["untrained"])),
        "L3 supervised": mean_evidence(_paired(share["supervised"], share["SSL"]), sesoi=L3_SESOI),
        "L4 points": ev(_paired(um["SSL"], um["supervised"])),
        "L4 classes": ev(_paired(cm["supervised"], cm["SSL"])),
        **{c: ev(values[c]) for c in ("L5", "L6", "L7", "L8")},
    }


def localization_claims(values: dict, preset: Preset, alpha: float = 0.05) -> pd.DataFrame:
    """The verdicts on L1–L8 from their per-encoder values (as :meth:`LocalizationRun.claims` collects them):
    every test and part, Holm over the chapter (:func:`~memlib.verdicts.decide`), each with its SESOI.

    ``values``: ``"L1 rho"`` (ρ(depth, z) per pair), ``"L1 deltas"`` (pairs × layers ΔLayerMem), ``"L2"``,
    ``"L5"``–``"L8"`` (one value per encoder or pair), ``"L3 share"`` (the top units' last-layer share per member,
    for ``SSL``, ``supervised`` and ``untrained``), ``"L4 UnitMem − ClassMem"`` (per member, same keys) and
    ``"L4 ClassMem"`` (per member, ``SSL`` and ``supervised``).
    """
    out = []

    def add(cid, text, status, stat, n):
        test, unit = LOCALIZATION_TESTS.get(cid, ("", ""))
        out.append(Claim(cid, preset_status(preset, status), stat, test, unit, n, text=text))

    evidence = localization_evidence(values)
    deltas = values["L1 deltas"]
    n_l = deltas.shape[1]
    p_drop, p_mono = evidence["L1 drop"].p, evidence["L1 drop"].p_opposite
    share, um, cm = values["L3 share"], values["L4 UnitMem − ClassMem"], values["L4 ClassMem"]
    l3a = _paired(share["SSL"], share["untrained"])
    v = decide(evidence, alpha=alpha)
    m = len(v)

    def why(k):
        x = v[k]
        s = f"Holm p = {x.p:.2g} over {m}"
        if x.sesoi is not None:
            s += f", SESOI {x.sesoi.value:.3g}"
        if x.p_smaller is not None:
            s += f", smaller than it p = {x.p_smaller:.2g}"
        if x.power is not None:
            s += f", power {x.power:.0%} for it"
        return f"{s}: {x.reason}"

    def over_units(cid, text, what, spec="+.2f"):
        x = values[cid]
        add(cid, text, v[cid].status, f"{what}: {_fmt(x, spec)} ({why(cid)})", len(x))

    rho = values["L1 rho"]
    parts = [v["L1 rise"].status, v["L1 drop"].status]
    add(
        "L1",
        "LayerMem rises with depth, but not monotonically",
        parts_status(parts),
        f"{parts_count(parts)}. ρ(depth, z) per pair: {_fmt(rho)}, mean {np.mean(rho):+.2f} ({why('L1 rise')}); "
        f"some layer's ΔLayerMem < 0: Bonferroni p over {n_l} layers {p_drop:.2g}, every layer rising p "
        f"{p_mono:.2g} ({why('L1 drop')})",
        len(rho),
    )
    over_units("L2", "ViT: MLP sub-layers memorise more than attention", "mean z(MLP) − z(attention) per pair")
    parts = [v["L3 spread"].status, v["L3 supervised"].status]
    add(
        "L3",
        "Highly memorising units are spread over all layers in SSL, in the last layers in supervised learning",
        parts_status(parts),
        f"{parts_count(parts)}. Last-layer share of the top {TOP_UNITS:.0%} units: SSL {_fmt(share['SSL'], '.2f')}, "
        f"supervised {_fmt(share['supervised'], '.2f')}, untrained {_fmt(share['untrained'], '.2f')}; "
        f"SSL − untrained below {L3_SESOI.value:g} ({L3_SESOI.reason}): {why('L3 spread')}; "
        f"supervised − SSL > 0: {why('L3 supervised')}",
        len(l3a),
    )
    parts = [v["L4 points"].status, v["L4 classes"].status]
    add(
        "L4",
        "SSL has more units selective for single points, supervised more for classes",
        parts_status(parts),
        f"{parts_count(parts)}. Mean UnitMem − ClassMem per encoder: SSL {_fmt(um['SSL'])}, supervised "
        f"{_fmt(um['supervised'])}, untrained {_fmt(um.get('untrained', []))}; SSL − supervised: {why('L4 points')}; "
        f"mean ClassMem, supervised {_fmt(cm['supervised'])} − SSL {_fmt(cm['SSL'])}: {why('L4 classes')}",
        len(_paired(um["SSL"], um["supervised"])),
    )
    over_units("L5", "Atypical points have higher LayerMem",
               "mean over layers of ρ(atypicality in g's embeddings, LayerMem) per pair")  # fmt: skip
    over_units("L6", "UnitMem correlates with SSLMem", "Spearman ρ per encoder")
    over_units("L7", "Fine-tuning the most memorising layers beats fine-tuning the last layers",
               "accuracy most memorising − last per encoder", "+.3f")  # fmt: skip
    over_units("L8", "Pruning the most memorising units hurts more than random units",
               "drop after pruning top units − mean drop of random units, per encoder (mean over fractions)",
               "+.3f")  # fmt: skip
    out.append(Claim("L9", "decided in chapter 04", "measured in the DP chapter (04), not here", "", "", None,
                     text="DP training lowers UnitMem"))  # fmt: skip
    return claims_table(out)


def _fmt(x, spec: str = "+.2f") -> str:
    return ", ".join(format(float(v), spec) for v in np.asarray(x, dtype=float))


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
    # The head starts from ``seed``, not from the global RNG, so a fine-tuning gives the same result whatever
    # ran before it (the store refuses a recomputed row with another value).
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
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

    # smoke: two members per family, so the encoder-level code runs. cpu: 16 pairs. The first 8 were the ResNet
    # pairs of chapter 01's 8-pair measurement with 24 new encoders (8 ViT f, 8 ViT g, 8 supervised f); the
    # planned n is 52 per claim, so the chapter is topped up toward it within each session's budget: pairs 9–16
    # are 40 new encoders (ResNet and ViT f and g, supervised f), about 46 minutes on two workers, and scoring
    # all 16 pairs about an hour on one. Fine-tuning: 2 runs per encoder (2 layer choices) over 5000 images,
    # 20 epochs each instead of the probe's 100.
    TABLE: ClassVar[dict[str, dict]] = {
        "smoke": {"models_per_family": 2},
        "cpu": {"models_per_family": 16, "finetune_epochs": 20},
        "gpu": {},
        "paper": {},
    }

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


def localization_specs(p: Preset, vit_arch: str, splits: Splits, seed: int) -> dict[str, EncoderSpec]:
    """Every encoder a localisation run trains, by name (``"resnet f0"``, ``"vit g1"``, ``"supervised f0"``): the
    SSLMem run's ResNet families (same cache and store entries), a ViT family and a supervised ResNet f family."""
    return {
        **named_families(family_specs(p, splits, seed), "resnet "),
        **named_families(family_specs(p.replace(arch=vit_arch), splits, seed), "vit "),
        **named_families(family_specs(p.replace(method="supervised"), splits, seed, ("f",)), "supervised "),
    }


def untrained_seeds(seed: int, n: int) -> list[int]:
    """Seeds of the untrained ResNets beside ``n`` f members (seeds no trained encoder uses)."""
    return [seed * 1000 + 900 + m for m in range(n)]


def unseen_points(n_test: int, splits: Splits, seed: int) -> np.ndarray:
    """Test-split indices of the unseen points UnitMem is also read on: as many as f's training points, outside
    S_E, drawn with ``seed``."""
    pool = np.setdiff1d(np.arange(n_test), splits.extra)
    return np.sort(np.random.default_rng(seed + 4242).choice(pool, len(splits.f_train), replace=False))


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
        "design": 2,  # encoder-level: every member scored, S_E scored, UnitMem per member
    }
    ctx = RunContext.start(LOCALIZATION, p, device, seed, key, cache_dir, data_root, progress)
    p, dev = ctx.preset, ctx.device
    train_set, test_set, splits = load_with_splits(p, seed, data_root)

    # The same encoders as run_sslmem (ResNet), a ViT family and a supervised family: one fit, one pool.
    t = time.perf_counter()
    fitted = ctx.fit_named(localization_specs(p, vit_arch, splits, seed), train_set)
    fams, vit_fams, sup = (
        {fam: [f.encoder for f in members(fitted, f"{name} {fam}")] for fam in ("f", "g")}
        for name in ("resnet", "vit", "supervised")
    )
    t_train = time.perf_counter() - t

    aug = build_augmentation(p.augmentation, train_set.image_size)
    # LayerMem of the candidates and of S_E (test points no encoder trained on), which calibrates each pair.
    images = torch.cat([train_set.images[splits.candidate], test_set.images[splits.extra]])
    ids = np.concatenate([splits.candidate, test_point_ids(splits.extra, train_set)])
    t = time.perf_counter()
    kw = ctx.scoring()
    layer = {
        "resnet": layermem(fams["f"], fams["g"], images, aug, ids=ids, **kw),
        "vit": layermem(vit_fams["f"], vit_fams["g"], images, aug, ids=ids, **kw),
    }
    t_layer = time.perf_counter() - t

    # UnitMem of every f member (and supervised member) over f's training points, and over as many test
    # points outside S_E that no encoder trained on (UnitMem without memorisation).
    pts = train_set.subset(splits.f_train)
    order = {int(i): k for k, i in enumerate(splits.f_train)}
    cand_pos = np.array([order[int(i)] for i in splits.candidate])
    unseen_idx = unseen_points(len(test_set), splits, seed)
    unseen = test_set.images[unseen_idx]
    t = time.perf_counter()

    def units_of(encs, imgs, point_ids, activation="positive_part"):
        return [
            unitmem(e, imgs, aug, views=unit_views, ids=point_ids, seed=seed, device=dev, progress=progress,
                    activation=activation)
            for e in encs
        ]  # fmt: skip

    # Untrained ResNets (seeds no trained encoder uses): where top units sit by architecture alone.
    untrained = [untrained_encoder(p.arch, train_set.images, s, dev) for s in untrained_seeds(seed, len(fams["f"]))]
    unit_encs = {"resnet": fams["f"], "vit": vit_fams["f"], "supervised": sup["f"], "untrained": untrained}
    unseen_ids = test_point_ids(unseen_idx, train_set)
    units = {w: units_of(e, pts.images, splits.f_train) for w, e in unit_encs.items()}
    unseen_units = {w: units_of(e, unseen, unseen_ids) for w, e in unit_encs.items()}
    vit_act = {"positive_part": (units["vit"], unseen_units["vit"])}
    for act in ACTIVATIONS:
        if act not in vit_act:
            vit_act[act] = (units_of(vit_fams["f"], pts.images, splits.f_train, act),
                            units_of(vit_fams["f"], unseen, unseen_ids, act))  # fmt: skip
    t_unit = time.perf_counter() - t

    # Atypicality independent of LayerMem: each candidate's kNN distance to its own class among f's
    # training points and S_E, in the embeddings of g's encoders (which never trained on a candidate).
    ref = torch.cat([pts.images, test_set.images[splits.extra]])
    ref_labels = torch.cat([pts.labels, test_set.labels[splits.extra]])
    atyp_members = [atypicality(embed(g, ref, device=dev), ref_labels).cpu().numpy()[cand_pos] for g in fams["g"]]
    atyp = np.mean(atyp_members, axis=0)

    rng = np.random.default_rng(seed + 54321)
    down_tr, down_te = sample_subset(train_set, p.probe_train, rng), sample_subset(test_set, p.probe_test, rng)
    run = LocalizationRun(
        p,
        seed,
        splits,
        layer,
        len(splits.candidate),
        units,
        unseen_units,
        vit_act,
        pts.labels.numpy(),
        cand_pos,
        atyp,
        pd.DataFrame(),
        pd.DataFrame(),
        {},
        ctx.run_dir,
        encoders={"f": fams["f"], "g": fams["g"], "vit_f": vit_fams["f"], "vit_g": vit_fams["g"],
                  "supervised": sup["f"]},
        atypicality_members=atyp_members,
    )  # fmt: skip

    t = time.perf_counter()
    run.finetune = pd.concat(
        [
            _finetune(run, m, enc, down_tr, down_te, n_finetune, finetune_epochs, seed, dev, progress)
            for m, enc in enumerate(fams["f"][: run.n_pairs])
        ],
        ignore_index=True,
    )
    t_ft = time.perf_counter() - t
    t = time.perf_counter()
    run.pruning = pd.concat(
        [
            _prune(run, m, enc, down_tr, down_te, fracs, random_draws, p, seed, dev, progress)
            for m, enc in enumerate(fams["f"])
        ],
        ignore_index=True,
    )
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


def _finetune(run: LocalizationRun, member, enc, down_tr, down_te, n, epochs, seed, dev, progress) -> pd.DataFrame:
    """Fine-tune f member ``member``'s ``n`` layers with the largest ΔLayerMem (its own pair's, standardised)
    vs its ``n`` last layers; the exact binomial test on discordant test points is the single encoder's."""
    pl = run.pair_layers("resnet")
    pl = pl[pl["pair"] == member].set_index("tap")
    n = min(n, len(pl))
    most = list(pl["delta_z"].nlargest(n).index)
    last = list(pl.index[-n:])
    hits = {
        name: finetune_layers(enc, taps, down_tr, down_te, epochs=epochs, seed=seed, device=dev, progress=progress)
        for name, taps in (("most memorising", most), ("last", last))
    }
    a, b = hits["most memorising"], hits["last"]
    wins, losses = int((a & ~b).sum()), int((~a & b).sum())
    pval = st.binomtest(wins, wins + losses, 0.5, alternative="greater").pvalue if wins + losses else 1.0
    return pd.DataFrame(
        [
            {"member": member, "layers": "most memorising", "taps": ", ".join(most), "accuracy": a.mean(), "p": pval},
            {"member": member, "layers": "last", "taps": ", ".join(last), "accuracy": b.mean(), "p": float("nan")},
        ]
    )


def _prune(run: LocalizationRun, member, enc, down_tr, down_te, fracs, draws, p: Preset, seed, dev, progress):
    """Linear-probe accuracy of f member ``member`` after zeroing its top / bottom / random units by UnitMem
    (probe refit each time)."""
    df = run.units["resnet"][member].table()
    order = df["unitmem"].to_numpy().argsort(kind="stable")
    rng = np.random.default_rng(seed + 777 + member)

    def accuracy(rows: np.ndarray | None) -> float:
        units = {} if rows is None else {t: g["unit"].to_numpy() for t, g in df.iloc[rows].groupby("tap")}
        with pruned(enc, units):
            ftr, fte = embed(enc, down_tr.images, device=dev), embed(enc, down_te.images, device=dev)
        return linear_probe(ftr, down_tr.labels, fte, down_te.labels, epochs=p.probe_epochs, seed=seed)["test_acc"]

    base = accuracy(None)
    rows = []
    jobs = [(f, s, d) for f in fracs for s, d in (("top", 0), ("bottom", 0), *(("random", i) for i in range(draws)))]
    for frac, strategy, draw in tqdm(jobs, desc=f"pruning f{member}", disable=not progress, leave=False):
        k = max(1, int(round(frac * len(df))))
        sel = {"top": order[-k:], "bottom": order[:k]}.get(strategy)
        if sel is None:
            sel = rng.choice(len(df), size=k, replace=False)
        acc = accuracy(sel)
        rows.append(
            {"member": member, "fraction": frac, "strategy": strategy, "draw": draw, "units": k,
             "base_accuracy": base, "accuracy": acc, "drop": base - acc}
        )  # fmt: skip
    return pd.DataFrame(rows)


def _save(run: LocalizationRun, ctx: RunContext) -> None:
    """Write the per-pair LayerMem tables, unit tables, fine-tuning, pruning and claims (CSV / JSON) to the run
    folder, then its ``COMPLETE`` marker."""
    for arch in run.layer:
        write_csv(run.pair_layers(arch), run.run_dir / f"layermem_{arch}.csv")
    summary = {
        "claims": run.claims().reset_index().to_dict(orient="records"),
        "finetune": run.finetune.to_dict(orient="records"),
        "timings": run.timings,
        "provenance": run.provenance,
    }
    ctx.save(
        tables={
            **{f"units_{w}_f{m}": run.unit_table(w, m) for w in run.units for m in range(len(run.units[w]))},
            "unit_summary": run.unit_summary().reset_index(),
            "vit_sensitivity": run.vit_sensitivity().reset_index(),
            "pruning": run.pruning,
        },
        jsons={"summary": summary},
    )
