"""The random-subset (in/out) design for chapter 01: per-point scores that rank reliably, and per-encoder
memorisation without family offsets (:mod:`memlib.memorization.subset`).

A pool of ``pool`` training points (split 0's S_C and S_I first, so the paper's design and this one score
some points in common, then other training points drawn from the seed) and ``encoders`` encoders, each
trained on a random half of the pool with the preset's recipe (so each trains on as many points, for as many
epochs, as one encoder of the paper's design: equal compute per encoder). The design is balanced within
blocks of four encoders (:func:`~memlib.memorization.subset.balanced_inclusion`), so any union of blocks is
balanced: the reliability curve uses the first 2k blocks, split k against k.

Everything goes through the evidence store: the run's rows are ``encoders``, ``roles`` (role ``subset``,
member i), ``alignments`` (every encoder × pool point), ``point_stats`` (``included`` 1/0 per encoder ×
point, the design; ``atypicality`` per encoder among the pool), ``probes`` and ``history``. The analysis
(:class:`SubsetStudy`) reads only those rows.

Declared before the run: the adopted per-point design is the one whose full-set Spearman–Brown reliability is
higher; the reliability threshold is :data:`~memlib.verdicts.MIN_RELIABILITY`.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import ClassVar

import numpy as np
import pandas as pd
from scipy import stats as st
from statsmodels.stats.power import TTestPower

from ..data.augment import build_augmentation
from ..evidence import EvidenceStore, batch_provenance, open_store
from ..memorization.sslmem import alignment_loss
from ..memorization.subset import SubsetSSLMemResult, balanced_inclusion, subset_sslmem_from_alignment
from ..probing import atypicality, embed
from ..training.loop import fingerprint
from .artifacts import SSLMEM
from .context import RunContext
from .encoders import EncoderSpec
from .inputs import load_with_splits, probe_rng, probe_sets
from .presets import Preset
from .probes import probe_encoder
from .settings import Settings
from .stored import StoredContexts, encoder_row

EXPERIMENT = "sslmem-subset"
_PROBES = ("linear_acc", "linear_train_acc", "knn_acc")

# fmt: off
SUBSET_SETTINGS = {
    "smoke": {"pool": 48, "encoders": 8},
    # 2 cores: encoders of 150 points × 400 epochs (each the compute of one encoder of the paper's design).
    # Grown by whole blocks, so earlier encoders and their rows are kept. 24 encoders gave a full-set
    # (Spearman–Brown) reliability of 0.37. The gate on rankings is the split-half ρ (half the encoders against
    # the other half) ≥ 0.5, so each half needs a reliability of 0.5: about 41 encoders per half by
    # Spearman–Brown, 88 in all (22 blocks). That is the planned n, reached in two steps: 48 (one session's
    # spare core; chapter 02 ranks with these first 48, fixed in its own config), then 88.
    "cpu": {"pool": 300, "encoders": 88, "planned": 88},
    "gpu": {"pool": 10000, "encoders": 32},
    "paper": {"pool": 10000, "encoders": 32},
}
# fmt: on


@dataclass(frozen=True)
class SubsetSettings(Settings):
    """The in/out design at a preset.

    Attributes
    ----------
    pool
        Points in the pool (even); each encoder trains on half of them, so ``pool / 2`` should match the
        paper design's points per encoder for equal compute.
    encoders
        Encoders (a multiple of ``block``).
    block
        The design is balanced within each block of this many encoders.
    planned
        Encoders the gate on rankings needs (split-half ρ ≥ 0.5), planned from a pilot; ``None``: not planned.
    """

    TABLE: ClassVar[dict[str, dict]] = SUBSET_SETTINGS

    pool: int
    encoders: int
    block: int = 4
    planned: int | None = None

    def __post_init__(self):
        if self.pool < 4 or self.pool % 2:
            raise ValueError(f"pool={self.pool!r} must be an even number ≥ 4: each encoder trains on half of it")
        if self.block < 2 or self.block % 2 or self.encoders % self.block or self.encoders < 2 * self.block:
            raise ValueError(
                f"encoders={self.encoders!r} must be a multiple of block={self.block!r} (even), at least two blocks"
            )


def subset_seed(seed: int, i: int) -> int:
    """Model seed of encoder ``i`` of the subset design of split seed ``seed`` (seeds f, g, f′ and the floor never
    use: f/g < 100, f′ 700+, floor 900+)."""
    return seed * 1000 + 300 + i


@dataclass(frozen=True)
class SubsetDesign(StoredContexts):
    """The encoders, pool and inclusion of one subset design (trains nothing)."""

    preset: Preset
    settings: SubsetSettings
    seed: int
    ids: np.ndarray  # pool point ids (training-split indices)
    inclusion: np.ndarray  # bool (encoders, pool)
    specs: list[EncoderSpec]
    common: np.ndarray  # positions in the pool of split `seed`'s candidates (scored by both designs)
    label: str = ""  # names a variant of the design (another setup on the same pool and inclusion)
    experiment: str = EXPERIMENT  # the experiment its ``roles`` rows name
    measure: str | None = None  # the measuring augmentation, if not the training one

    @property
    def name(self) -> str:
        s = self.settings
        return (
            (f"{self.label}: " if self.label else "")
            + f"subset design seed {self.seed}: pool {s.pool}, {s.encoders} encoders in blocks of {s.block}, "
            f"{self.preset.epochs} epochs"
        )

    @property
    def scoring(self) -> dict:
        return {**super().scoring, **({"augmentation": self.measure} if self.measure else {})}

    @property
    def members(self) -> dict[str, list[EncoderSpec]]:
        return {"subset": self.specs}

    def keys(self) -> list[str]:
        return [s.key() for s in self.specs]

    def trained_keys(self) -> list[str]:
        """The keys of the encoders the design trains (all of them)."""
        return self.keys()

    @property
    def context(self) -> str:
        """The ``point_stats`` context: the pool and the way its inclusion is drawn, not the encoder count, so a
        study grown by whole blocks keeps its first encoders' rows (blocks are drawn in sequence from the seed)."""
        s = self.settings
        return (
            f"subset pool seed {self.seed}: pool {s.pool}, blocks of {s.block}, {self.preset.epochs} epochs "
            f"{fingerprint(self.ids.tolist())}"
        )

    def lacking(self, store: EvidenceStore) -> dict[str, list[int]]:
        """Per kind of row (``encoders``, ``alignments``, ``point_stats``, ``probes``, ``roles``): the members
        whose rows the store lacks."""
        keys = self.keys()
        held = set(store.load("encoders").encoder)
        n_al = self.stored_alignments(store).groupby("encoder").size()
        ps = store.load("point_stats")
        n_ps = ps[ps.context == self.context].groupby("encoder").size()
        pr = store.load("probes")
        n_pr = pr[pr.context == self.probe_context].groupby("encoder").size()
        ro = store.load("roles")
        has_role = set(ro[(ro.experiment == self.experiment) & (ro.design == self.name)].encoder)
        return {
            "encoders": [i for i, k in enumerate(keys) if k not in held],
            "alignments": [i for i, k in enumerate(keys) if n_al.get(k, 0) < len(self.ids)],
            "point_stats": [i for i, k in enumerate(keys) if n_ps.get(k, 0) < 2 * len(self.ids)],
            "probes": [i for i, k in enumerate(keys) if n_pr.get(k, 0) < len(_PROBES)],
            "roles": [i for i, k in enumerate(keys) if k not in has_role],
        }


def subset_design(p: Preset, s: SubsetSettings, seed: int = 0, data_root=None) -> SubsetDesign:
    """The :class:`SubsetDesign` at ``p`` and ``s`` for split seed ``seed`` (loads the data set, trains nothing)."""
    train_set, _, splits = load_with_splits(p, seed, data_root)
    head = np.concatenate([splits.candidate, splits.independent]).astype(np.int64)
    rng = np.random.default_rng(seed + 4242)
    rest = np.setdiff1d(np.arange(len(train_set)), head)
    ids = np.concatenate([head, rng.permutation(rest)])[: s.pool]
    inc = balanced_inclusion(s.pool, s.encoders, seed, block=s.block)
    specs = [EncoderSpec.from_preset(p, np.sort(ids[inc[i]]), subset_seed(seed, i)) for i in range(s.encoders)]
    common = np.flatnonzero(np.isin(ids, splits.candidate))
    return SubsetDesign(p, s, seed, ids, inc, specs, common)


def missing(store: EvidenceStore, d: SubsetDesign) -> list[str]:
    """What the store lacks for ``d`` (empty: analyse from the store)."""
    n = len(d.keys())
    what = {"encoders": "encoders", "alignments": "alignments", "point_stats": "inclusion and atypicality",
            "probes": "probe accuracies", "roles": "roles"}  # fmt: skip
    return [f"{what[k]} of {len(v)} of {n} encoders" for k, v in d.lacking(store).items() if v]


def fill(d: SubsetDesign, *, store, device="cpu", cache_dir=None, data_root=None, progress=True) -> None:
    """Train (or load) the encoders whose rows the store lacks, compute only those rows, and append them as one
    batch (a study grown by whole blocks trains and scores only its new encoders)."""
    store = open_store(store, d.preset.name)
    lack = d.lacking(store)
    if not any(lack.values()):
        return
    p = d.preset
    ctx = RunContext.start(SSLMEM, p, device, d.seed, {"subset": d.context}, cache_dir, data_root, progress)
    train_set, test_set, _ = load_with_splits(p, d.seed, data_root)
    todo = sorted({i for k, v in lack.items() if k != "roles" for i in v})
    fitted = dict(zip(todo, ctx.fit([d.specs[i] for i in todo], train_set))) if todo else {}
    images = train_set.images[d.ids]
    labels = train_set.labels[d.ids]
    aug = build_augmentation(d.scoring["augmentation"], train_set.image_size)
    scored = lack["alignments"]
    y = dict(zip(scored, alignment_loss([fitted[i].encoder for i in scored], images, aug, ids=d.ids,
                                        **ctx.scoring(p)))) if scored else {}  # fmt: skip
    probe_tr, probe_te = probe_sets(p, train_set, test_set, probe_rng(d.seed))
    rows = {k: [] for k in ("encoders", "roles", "alignments", "point_stats", "probes", "history")}
    keys = d.keys()
    for i in lack["roles"]:
        rows["roles"].append(
            pd.DataFrame(
                [{"experiment": d.experiment, "design": d.name, "encoder": keys[i], "role": "subset", "member": i}]
            )  # fmt: skip
        )
    for i in lack["encoders"]:
        rows["encoders"].append(pd.DataFrame([encoder_row(d.specs[i], ctx.cache)]))
        rows["history"].append(
            pd.DataFrame(
                [
                    {"encoder": keys[i], "epoch": int(e["epoch"]), "metric": k, "value": float(v)}
                    for e in fitted[i].history
                    for k, v in e.items()
                    if k != "epoch" and v is not None and np.isfinite(v)
                ],
                columns=["encoder", "epoch", "metric", "value"],
            )
        )
    for i, yi in y.items():
        rows["alignments"].append(
            pd.DataFrame(
                {"encoder": keys[i], "dataset": p.dataset, "point_id": d.ids, "tap": "", **d.scoring, "alignment": yi}
            )
        )
    for i in lack["point_stats"]:
        enc = fitted[i].encoder
        aty = atypicality(embed(enc, images), labels, 5).cpu().numpy().astype(np.float64)
        for stat, v in (("included", d.inclusion[i].astype(np.float64)), ("atypicality", aty)):
            rows["point_stats"].append(
                pd.DataFrame(
                    {
                        "encoder": keys[i],
                        "dataset": p.dataset,
                        "point_id": d.ids,
                        "stat": stat,
                        "context": d.context,
                        "value": v,
                    }
                )
            )
    for i in lack["probes"]:
        acc = probe_encoder(fitted[i].encoder, probe_tr, probe_te, p.probe_epochs, d.seed, ctx.device)
        rows["probes"].append(
            pd.DataFrame(
                [{"encoder": keys[i], "probe": k, "context": d.probe_context, "value": acc[k]} for k in _PROBES]
            )
        )
    prov = batch_provenance(d.experiment, d.name, p.name, d.seed, ctx.device, ctx.elapsed(), commit=ctx.commit)
    store.append({k: pd.concat(v, ignore_index=True) for k, v in rows.items() if v}, prov)


@dataclass
class SubsetStudy:
    """The in/out design's analysis, from store rows only."""

    design: SubsetDesign
    result: SubsetSSLMemResult
    atypicality: np.ndarray  # per pool point: mean over the encoders that did not train on it
    probe: pd.DataFrame  # per encoder: linear_acc, linear_train_acc, knn_acc
    provenance: dict

    @property
    def blocks(self) -> int:
        return self.design.settings.encoders // self.design.settings.block

    def block_scores(self, blocks) -> np.ndarray:
        """Per-point offset-removed scores from the encoders of ``blocks`` only."""
        b = self.design.settings.block
        rows = np.concatenate([np.arange(k * b, (k + 1) * b) for k in blocks])
        return subset_sslmem_from_alignment(self.result.alignment[rows], self.result.inclusion[rows]).score

    def reliability_curve(self, points=None, repeats: int = 20) -> pd.DataFrame:
        """Split-half Spearman ρ of the per-point ranking against the number of encoders: for k = 1 … blocks/2,
        2k blocks drawn at random (``repeats`` times, seeded), split k against k; the Spearman–Brown value is
        the reliability of all 2k blocks' encoders. ``points``: positions in the pool to rank (default all)."""
        rng = np.random.default_rng(self.design.seed)
        idx = np.arange(len(self.design.ids)) if points is None else np.asarray(points)
        rows = []
        for k in range(1, self.blocks // 2 + 1):
            rhos = []
            for _ in range(repeats if 2 * k < self.blocks else 1):
                order = rng.permutation(self.blocks)[: 2 * k]
                a, b = self.block_scores(order[:k])[idx], self.block_scores(order[k:])[idx]
                rhos.append(st.spearmanr(a, b).statistic)
            rho = float(np.mean(rhos))
            b = self.design.settings.block
            rows.append(
                {
                    "design": "subset (in/out)",
                    "encoders": 2 * k * b,
                    "rho halves": rho,
                    "reliability (Spearman–Brown)": 2 * rho / (1 + rho),
                    "measured": True,
                }
            )
        return pd.DataFrame(rows)

    def rank_reliability(self) -> tuple[float, float]:
        """(full-set Spearman–Brown reliability, split-half ρ) of the pool's ranking with all encoders."""
        row = self.reliability_curve().iloc[-1]
        return float(row["reliability (Spearman–Brown)"]), float(row["rho halves"])

    def block_taus(self) -> np.ndarray:
        """Per block of encoders: Kendall τ between the block's own per-point scores and the points'
        atypicality over the pool (S9 with the block as unit: blocks share no encoder)."""
        return np.array([st.kendalltau(self.block_scores([k]), self.atypicality).statistic for k in range(self.blocks)])

    def encoder_table(self) -> pd.DataFrame:
        """Per encoder: its memorisation estimate (in vs out after point effects), offset and probe accuracy."""
        keys = self.design.keys()
        df = pd.DataFrame(
            {
                "encoder": [f"s{i}" for i in range(len(keys))],
                "memorisation": self.result.encoder_memorization,
                "offset": self.result.encoder_offset,
            }
        ).set_index("encoder")
        return df.join(self.probe) if len(self.probe) else df

    def encoder_power(self, alpha: float = 0.05, power: float = 0.8) -> dict:
        """Mean and sd over encoders of the per-encoder memorisation, its one-sided t-test against 0, and the
        number of encoders (trainings) for ``power`` at its own standardised effect."""
        x = self.result.encoder_memorization
        sd = float(x.std(ddof=1))
        d = float(x.mean() / sd) if sd > 0 else float("nan")
        n80 = (
            TTestPower().solve_power(effect_size=d, alpha=alpha, power=power, alternative="larger") if d > 0 else np.nan
        )
        mde = TTestPower().solve_power(nobs=len(x), alpha=alpha, power=power, alternative="larger") * sd
        return {
            "design": "subset (in/out)",
            "unit": "encoder",
            "n": len(x),
            "trainings": len(x),
            "mean": float(x.mean()),
            "sd": sd,
            "p (one-sided)": float(st.ttest_1samp(x, 0.0, alternative="greater").pvalue),
            "MDE (80 %)": float(mde),
            "trainings for 80 % power": float(n80),
        }

    def point_table(self) -> pd.DataFrame:
        """Every pool point: id, score, standard error, rank, raw, normalised, atypicality, in split 0's S_C."""
        t = self.result.table()
        t["atypicality"] = self.atypicality
        t["in both designs"] = np.isin(np.arange(len(t)), self.design.common)
        return t


def subset_from_store(store: EvidenceStore, d: SubsetDesign) -> SubsetStudy:
    """The :class:`SubsetStudy` of design ``d`` from stored rows (weights never loaded)."""
    keys = d.keys()
    al = d.stored_alignments(store)
    y = (
        al[al.encoder.isin(keys)]
        .pivot(index="encoder", columns="point_id", values="alignment")
        .loc[keys, d.ids]
        .to_numpy()
    )
    ps = store.load("point_stats")
    ps = ps[(ps.context == d.context) & ps.encoder.isin(keys)]
    inc = ps[ps.stat == "included"].pivot(index="encoder", columns="point_id", values="value").loc[keys, d.ids]
    inc = inc.to_numpy() > 0.5
    if not np.array_equal(inc, d.inclusion):
        raise ValueError(f"the stored inclusion of {d.name} differs from the design's; the store or the design changed")
    aty = ps[ps.stat == "atypicality"].pivot(index="encoder", columns="point_id", values="value").loc[keys, d.ids]
    aty = np.where(~inc, aty.to_numpy(), np.nan)
    pr = store.load("probes")
    pr = pr[(pr.context == d.probe_context) & pr.encoder.isin(keys)].pivot(
        index="encoder", columns="probe", values="value"
    )
    probe = pd.DataFrame(
        {k: pr.loc[keys, k].to_numpy() for k in _PROBES if k in pr}, index=[f"s{i}" for i in range(len(keys))]
    )
    ro = store.load("roles")
    batches = sorted(set(ro[(ro.experiment == d.experiment) & ro.encoder.isin(keys)].batch))
    prov = store.batches().set_index("batch").loc[batches] if batches else pd.DataFrame()
    return SubsetStudy(
        d,
        subset_sslmem_from_alignment(y, inc, d.ids),
        np.nanmean(aty, axis=0),
        probe,
        {"batches": batches, "commit": sorted(set(prov.commit)) if len(prov) else []},
    )


def run_subset_study(
    preset="smoke",
    *,
    device="cpu",
    seed=0,
    store=None,
    train=True,
    cache_dir=None,
    data_root=None,
    progress=True,
    **overrides,
) -> SubsetStudy:
    """The in/out design of chapter 01 at ``preset`` from the evidence store, computing (``train=True``) what it
    lacks first. ``overrides``: ``pool=``, ``encoders=``, ``block=`` or preset fields; ``seed`` is the split seed
    whose candidates the pool includes."""
    cfg = _subset_config(preset, seed=seed, **overrides)
    return _subset_run(
        cfg, store=store, train=train, device=device, cache_dir=cache_dir, data_root=data_root, progress=progress
    )


def _subset_config(preset="smoke", *, seed: int = 0, **overrides):
    p, s = SubsetSettings.for_preset(preset, **overrides)
    return {"preset": p, "settings": s, "seed": seed}


def _subset_run(cfg, *, store=None, train=True, device="cpu", cache_dir=None, data_root=None, progress=True):
    t0 = time.perf_counter()
    p = cfg["preset"]
    store = open_store(store, p.name)
    d = subset_design(p, cfg["settings"], cfg["seed"], data_root)
    lack = missing(store, d)
    if lack:
        if not train:
            raise LookupError(
                f"the evidence store {store.path} lacks {', '.join(lack)} of {d.name}; run with train=True"
            )
        fill(d, store=store, device=device, cache_dir=cache_dir, data_root=data_root, progress=progress)
    out = subset_from_store(store, d)
    out.provenance["wall_s"] = time.perf_counter() - t0
    return out


def _register():
    from .registry import Experiment, register_experiment

    register_experiment(
        Experiment(
            name=EXPERIMENT,
            chapter="01b",
            notebook="01_sslmem",
            title="SSLMem from random-subset encoders (in/out design): per-point reliability, per-encoder memorisation",
            claims=(),
            config=_subset_config,
            design=lambda cfg, data_root=None: [subset_design(cfg["preset"], cfg["settings"], cfg["seed"], data_root)],
            run=_subset_run,
            fill=fill,
            minutes_per_encoder=3.3,
        )
    )


_register()


def compare_designs(study, sub: SubsetStudy, alpha: float = 0.05) -> dict[str, object]:
    """Chapter 01's paper design (``study``, an :class:`~memlib.experiments.sslmem_study.SSLMemStudy`) against
    the subset design ``sub`` at equal compute (encoders trained).

    Returns ``reliability`` (per-point split-half ρ and Spearman–Brown reliability against encoders: measured
    points, and the paper design's Spearman–Brown projection to the subset design's encoder count, marked
    ``measured = False``), ``paper_reliability`` (the paper design's measured full-set reliability, what the in/out
    design must beat to be adopted), ``agreement`` (Spearman ρ of the two designs' scores on the points both score,
    split ``sub.design.seed``'s candidates) and ``encoder_level`` (the spread over units of each design's
    memorisation estimate: S_C − S_S per pair, raw; per-encoder in-vs-out memorisation; with the trainings each
    needs for 80 % power at its own standardised effect)."""
    rel = study.reliability()
    r_pairs = float(rel["rho all pairs (Spearman–Brown)"].mean())
    pairs = int(rel["pairs"].iloc[0])
    m_sub = sub.design.settings.encoders
    k = m_sub / (2 * pairs)  # how many times the paper design's encoders the subset design trains
    proj = k * r_pairs / (1 + (k - 1) * r_pairs)
    paper_rows = pd.DataFrame(
        [
            {
                "design": "paper (fixed split)",
                "encoders": 2 * pairs,
                "rho halves": float(rel["rho halves"].mean()),
                "reliability (Spearman–Brown)": r_pairs,
                "measured": True,
            },
            {
                "design": "paper (fixed split)",
                "encoders": m_sub,
                "rho halves": np.nan,
                "reliability (Spearman–Brown)": proj,
                "measured": False,
            },
        ]
    )
    curve = pd.concat(
        [
            sub.reliability_curve().assign(points="pool"),
            sub.reliability_curve(points=sub.design.common).assign(points="split's candidates"),
            paper_rows.assign(points="split's candidates"),
        ],
        ignore_index=True,
    )
    run = next(r for r in study.runs if r.seed == sub.design.seed)
    c = run.subset == "candidate"
    paper_score = run.pair_scores("calibrated")[:, c].mean(0)
    cand_ids = np.asarray(run.result.ids)[c]
    pos = {int(i): j for j, i in enumerate(sub.design.ids)}
    sub_score = sub.result.score[[pos[int(i)] for i in cand_ids]]
    agree = st.spearmanr(paper_score, sub_score)
    x = study.pair_means("raw")
    x = (x["S_C"] - x["S_S"]).to_numpy(dtype=np.float64)
    sd = float(x.std(ddof=1))
    d = float(x.mean() / sd) if sd > 0 else float("nan")
    n80 = TTestPower().solve_power(effect_size=d, alpha=alpha, power=0.8, alternative="larger") if d > 0 else np.nan
    mde = TTestPower().solve_power(nobs=len(x), alpha=alpha, power=0.8, alternative="larger") * sd
    enc = pd.DataFrame(
        [
            {
                "design": "paper (fixed split)",
                "unit": "encoder pair (S_C − S_S, raw)",
                "n": len(x),
                "trainings": 2 * len(x),
                "mean": float(x.mean()),
                "sd": sd,
                "p (one-sided)": float(st.ttest_1samp(x, 0.0, alternative="greater").pvalue),
                "MDE (80 %)": float(mde),
                "trainings for 80 % power": 2 * float(n80),
            },
            sub.encoder_power(alpha),
        ]
    ).set_index("design")
    return {
        "reliability": curve,
        "paper_reliability": r_pairs,
        "agreement": {"rho": float(agree.statistic), "p": float(agree.pvalue), "n": int(c.sum())},
        "encoder_level": enc,
    }
