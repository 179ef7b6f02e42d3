# ---
# jupyter:
#   jupytext:
#     formats: ipynb,py:percent
#     text_representation:
#       extension: .py
#       format_name: percent
#       format_version: '1.3'
#       jupytext_version: 1.19.6
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # SSLMem: do encoders memorise their training points?
#
# SSLMem (Wang et al., ICLR 2024, §3) compares the *alignment loss* of a point
# (the mean distance between representations of its augmented views) on an
# encoder f trained with the point and on an encoder g trained without it:
# $m(x) = \mathbb{E}_g L_{align}(g, x) - \mathbb{E}_f L_{align}(f, x)$. The
# paper's §4.2 (paper Fig. 2c, Tables 2 and 16) expects the mean score to be
# clearly positive on the candidates S_C (seen by f only), about 0 on the shared
# points S_S, slightly positive on the extra points S_E (seen by neither) and
# negative on the independent points S_I (seen by g only), and the most atypical
# points to score highest (paper Fig. 1).
#
# Two encoders trained on the same data with different seeds differ, and that
# difference moves every point's score alike. The unit of evidence here is
# therefore the **encoder pair** (f_i, g_i): the chapter trains several pairs on
# each of several splits, and every claim is tested over pairs, never over
# points. A **null family** f′, trained on exactly f's points with other seeds,
# shows what the score looks like when nothing but the seed differs.

# %% tags=["parameters"]
device = "cpu"  # "cpu", "cuda" or "auto"
preset = "smoke"  # smoke | cpu | gpu | paper
seed = 0  # added to every split seed (0: the preset's seeds)
seeds = None  # split seeds, e.g. (0, 1, 2); None = preset default
epochs = None  # training epochs; None = preset default
models_per_family = None  # encoders per family (f and g); None = preset default
progress = False  # progress bars (off for papermill runs)

# %% tags=["remove-input"]
import numpy as np
import pandas as pd
from IPython.display import Markdown, display
from myst_nb import glue

from memlib import plots
from memlib.data.splits import SUBSET_LABELS, SUBSETS
from memlib.experiments.evidence_report import store_markdown
from memlib.experiments.notebooks import refuse_unknown_parameters
from memlib.experiments.page import glue_claims, smoke_banner, table
from memlib.experiments.registry import run_experiment
from memlib.experiments.sslmem_study import PAPER_MEANS, pair_scores
from memlib.experiments.subset_study import compare_designs
from memlib.provenance import provenance_markdown

refuse_unknown_parameters()  # papermill only warns about a misspelt -p name

# Every number below is computed from the evidence store's rows; runs the store lacks are trained and appended first.
study = run_experiment(
    "sslmem",
    preset,
    device=device,
    seed=seed,
    seeds=seeds,
    epochs=epochs,
    models_per_family=models_per_family,
    progress=progress,
)
# The in/out design (section "Per-point scores from random-subset encoders"), from the same store; the design
# with the more reliable per-point ranking decides S9 (declared before the run).
sub = run_experiment("sslmem-subset", preset, device=device, seed=seed, progress=progress)
cmp = compare_designs(study, sub)
paper_full = cmp["paper_reliability"]
study.adopt_per_point(sub, paper_full)
s, p, first = study.settings, study.preset, study.runs[0]
smoke_banner(p)
sizes = first.splits.sizes()
for name, value in {
    "preset": p.name,
    "arch": p.arch,
    "epochs": p.epochs,
    "n_models": p.models_per_family,
    "n_null": p.null_models,
    "views": p.views,
    "n_train_f": len(first.splits.f_train),
    "n_splits": len(s.seeds),
    "n_pairs": study.n_pairs(),
    "overlap": f"{sizes['shared'] / len(first.splits.f_train):.0%}",
    "margin": s.margin,
    "rel_threshold": s.reliability_threshold,
    **{f"n_{k}": v for k, v in sizes.items()},
}.items():
    glue(name, value, display=False)

# %% [markdown]
# ## Setup of this run, and what was declared before it
#
# Preset {glue:text}`preset`: architecture {glue:text}`arch`, SimCLR,
# {glue:text}`epochs` epochs on {glue:text}`n_train_f` training points per
# encoder, of which {glue:text}`n_shared` are shared by f and g
# ({glue:text}`overlap`; the paper's CIFAR-10 split shares 89 %).
# {glue:text}`n_splits` splits (seeds), each with {glue:text}`n_models` f and
# {glue:text}`n_models` g encoders and {glue:text}`n_null` null encoders f′:
# {glue:text}`n_pairs` encoder pairs in all. K = {glue:text}`views` views per
# point. Scored per split: S_C {glue:text}`n_candidate`, S_S {glue:text}`n_shared`,
# S_E {glue:text}`n_extra`, S_I {glue:text}`n_independent` points.
#
# Declared before the run (in `memlib.experiments.sslmem_study`):
#
# - **Scores.** For one pair, the *raw* score of a point is g_i's alignment
#   loss minus f_i's; the *normalised* score divides it by its range over the
#   pair's scored points (the paper's normalisation, applied to one pair); the
#   *calibrated* score subtracts the pair's mean raw score on S_E, which
#   neither encoder trained on. Claims S1–S8 are judged on each pair's mean
#   **normalised** score per subset, so they can be set beside the paper's
#   means; per-point rankings (S9, S11) use **calibrated** scores.
# - **Tests.** One-sided one-sample t-tests over encoder pairs, α = 0.05,
#   with Holm's correction over all eleven tests the chapter decides (the seven
#   directional contrasts, S2, S9, S11 and S12); S2 ("≈ 0") by TOST with a
#   margin of ±{glue:text}`margin` at the paper's scale, scaled by this run's
#   own S_C − S_S; verdicts by the one rule of `memlib.verdicts` (see
#   [How to read a chapter](../reading.md)).
# - **Smallest effects of interest.** Each contrast's SESOI is half the
#   paper's effect, scaled by this run's S_C − S_S over the paper's; a claim is
#   refuted when its effect is significant in the opposite direction or
#   significantly smaller than its SESOI. S11 and S12 are judged against their
#   null at this run's n (random top tenths of the same candidates; as many
#   independent normal scores), in null standard deviations.
# - **Reliability.** A claim that uses a ranking of points is inconclusive when
#   the split-half Spearman ρ of that ranking is below
#   {glue:text}`rel_threshold`.

# %% [markdown]
# ## Scores per subset, and what chance alone gives (paper Fig. 2c)
#
# Per subset, the mean over encoder pairs of each pair's mean score (and its
# standard deviation over pairs), beside the paper's mean; below it, the raw
# scores of f against g and of the null family f′ against f.

# %% tags=["remove-input"]
pt = study.pair_table()
summary = pt.groupby("subset", sort=False)[["normalised", "calibrated", "raw"]].agg(["mean", "std"])
summary.columns = [f"{k} {'mean' if a == 'mean' else 'sd'}" for k, a in summary.columns]
summary.insert(0, "paper", [PAPER_MEANS[k] for k in SUBSETS])
display(table(summary, digits=4, index_name="subset"))
null = study.null_table()
if len(null):
    nt = null.groupby("subset", sort=False)[["f vs g", "f′ vs f (null)"]].mean()
    display(table(nt, digits=4, index_name="subset (mean raw score over splits)"))
    glue("null_shared", float(nt.loc["S_S", "f′ vs f (null)"]), display=False)
    glue("null_candidate", float(nt.loc["S_C", "f′ vs f (null)"]), display=False)
norm = {
    k: np.concatenate([pair_scores(r)["normalised"][:, r.subset == k].ravel() for r in study.runs]) for k in SUBSETS
}
null_norm = None
if first.null is not None:  # the null family's scores, normalised by the same pairs' ranges
    null_norm = np.concatenate([r.null.raw / np.ptp(pair_scores(r)["raw"], axis=1).mean() for r in study.runs])
glue(
    "fig_dist",
    plots.score_distributions(
        norm, null=null_norm, title=f"every pair's score of every point ({study.n_pairs()} pairs, preset {p.name})"
    ),
    display=False,
)
means = summary["normalised mean"]
for k in SUBSETS:
    glue(f"mean_{k}", float(means[SUBSET_LABELS[k]]), display=False)

# %% [markdown]
# ```{glue:figure} fig_dist
# :name: fig-sslmem-dist
# Every encoder pair's normalised score of every point, per subset (dashed:
# means). Grey: the null family f′ against f on the same points: both trained on
# the same data, so its spread is what seed noise alone gives.
# ```
#
# Mean normalised scores over pairs: S_C {glue:text}`mean_candidate:+.3f`, S_E
# {glue:text}`mean_extra:+.3f`, S_S {glue:text}`mean_shared:+.3f`, S_I
# {glue:text}`mean_independent:+.3f` (the paper: +0.307, +0.100, −0.001,
# −0.312 for MAE with a ViT-tiny on CIFAR-10, 5,000 points per subset; here
# SimCLR with a small ResNet on Fashion-MNIST. A range over 275 points instead
# of 20,000 changes what a normalised value means, so the paper's numbers are
# not on this run's scale: each claim's SESOI rescales them by this run's own
# S_C − S_S).
#
# ## The claims over encoder pairs (paper Tables 2 and 16)
#
# Each dot is one encoder pair's mean over the subset's points. The table gives,
# per contrast, the mean over pairs and its spread, one-sided p-values in the
# claimed and the opposite direction (Holm over the chapter), the power this
# run had for the paper's raw effect and its **minimum detectable effect** at
# 80 % power; these two are shown for orientation and decide nothing (each
# claim's row gives its SESOI and the power for it at the corrected level). The
# mixed model (statsmodels `MixedLM`, a random intercept per pair) is a second
# view from the points themselves; it does not decide the claims.

# %% tags=["remove-input"]
con = study.contrasts()
cm = study.pair_means("normalised")
per_pair = pd.DataFrame(
    {
        "S_C": cm["S_C"],
        "S_E": cm["S_E"],
        "S_S": cm["S_S"],
        "S_I": cm["S_I"],
        "S_C − S_S": cm["S_C"] - cm["S_S"],
        "S_C − S_E": cm["S_C"] - cm["S_E"],
        "S_S − S_I": cm["S_S"] - cm["S_I"],
        "S_E − S_I": cm["S_E"] - cm["S_I"],
    }
)
paper = {**{SUBSET_LABELS[k]: v for k, v in PAPER_MEANS.items()}, **dict(zip(con["contrast"], con["paper effect"]))}
glue(
    "fig_pairs",
    plots.pair_contrasts(per_pair, paper, title="per-pair mean normalised score and contrasts"),
    display=False,
)
shown = pd.DataFrame(
    {
        "contrast": con["contrast"] + " " + con["direction"],
        "pairs": con["pairs"],
        "mean": con["mean"],
        "sd": con["sd over pairs"],
        "paper": con["paper effect"],
        "Holm p": con["p (Holm)"],
        "Holm p, opposite": con["p opposite (Holm)"],
        "power for paper": con["power for paper"],
        "MDE (80 % power)": con["MDE (80 %)"],
        "mixed model": con["mixed-model estimate"],
        "mixed-model p": con["mixed-model p (two-sided)"],
    }
)
display(table(shown, digits=3, index_name="claim"))
glue("mde_cs", float(con.loc["S5", "MDE (80 %)"]), display=False)
glue("paper_cs", float(con.loc["S5", "paper effect"]), display=False)
glue("power_cs", f"{con.loc['S5', 'power for paper']:.0%}", display=False)
glue("est_cs", float(con.loc["S5", "mean"]), display=False)

# %% [markdown]
# ```{glue:figure} fig_pairs
# :name: fig-sslmem-pairs
# Each encoder pair's mean normalised score per subset and the four contrasts
# of paper Table 2 (blue dots), their mean with a 95 % interval over pairs
# (black) and the paper's value (red cross).
# ```
#
# For S_C − S_S, the contrast at the heart of the paper, this run estimates
# {glue:text}`est_cs:+.3f`; its minimum detectable effect at 80 % power is
# {glue:text}`mde_cs:.3f` against the paper's {glue:text}`paper_cs:.3f` (power
# for the paper's effect: {glue:text}`power_cs`).
#
# For comparison only, the paper's own test: Welch t-tests over **points**
# (all pairs' mean scores pooled, as in paper Table 2), per split. Points of one
# pair share that pair's offset, so these p-values overstate the evidence; they
# decide nothing here.

# %% tags=["remove-input"]
pointwise = pd.concat([r.tests().assign(split=r.seed) for r in study.runs])
pointwise = pointwise[["split", "null hypothesis", "t", "p", "cohens_d"]].rename(
    columns={"null hypothesis": "null hypothesis (points as replicates)", "cohens_d": "Cohen's d"}
)
display(table(pointwise, digits=3, hide_index=True))

# %% [markdown]
# ## Verdicts on the claims
#
# Claims S1–S8 from the contrasts above; S9, S11 and S12 over pairs from each
# pair's own ranking: S9 (atypical points score highest: Kendall's τ between a
# candidate's score and its atypicality, one minus its mean cosine similarity to
# its five nearest same-class neighbours in g's representation), S11 (the most
# memorised tenth of S_C spans at least half of the candidates' range of
# alignment loss on f), S12 (the fraction above a threshold never drops by more
# than 10 % of S_C between neighbouring thresholds; our criterion for
# "smoothly"). A `smoke` run decides nothing. The scoreboard page shows these
# same cells.

# %% tags=["remove-input"]
claims = study.claims()
display(table(claims, index_name="claim", wrap=["statistic"]))
glue_claims(claims)

# %% [markdown]
# ### Planned n for the next run
#
# Per claim, the units a one-sided test needs for 80 % power to detect its
# SESOI at the chapter's corrected level, with this run's spread as the pilot
# (`memlib.verdicts.plan_n`); the unit is the encoder pair, or for S9, when the
# in/out design decides it, the block of four in/out encoders. A claim whose planned n exceeds the
# units above stays undecided until the store holds that many
# (`memlib-evidence status` lists both).

# %% tags=["remove-input"]
plan = study.planned_n()
display(table(plan, digits=4, index_name="claim"))
for cid, row in plan.iterrows():
    if np.isfinite(row["planned n"]):
        glue(f"claim_{cid}_planned_n", int(row["planned n"]), display=False)

# %% [markdown]
# ## How stable is a point's score? (test–retest)
#
# Per split, the encoder pairs are divided into two disjoint halves; each half
# ranks the candidates by its mean calibrated score, and the table gives the
# Spearman ρ between the two rankings (and, by the Spearman–Brown formula, what
# it implies for all pairs together). The threshold {glue:text}`rel_threshold`
# was declared before the run.

# %% tags=["remove-input"]
rel = study.reliability()
display(table(rel, digits=2, index_name="split"))
glue("rel_mean", float(rel["rho halves"].mean()), display=False)
glue("rel_verdict", "reaches" if study.ranking_reliable() else "does not reach", display=False)

# %% [markdown]
# The mean split-half ρ is {glue:text}`rel_mean:.2f`: it
# **{glue:text}`rel_verdict`** the declared threshold, so rankings of single
# points are used accordingly (S9 and S11 above; chapter 02 measures its own;
# chapter 06's rankings of single points come from one split and decide no
# claim).
#
# ## Per-point scores from random-subset encoders (the in/out design)
#
# The paper's design informs only the candidates about memorisation, and each
# family's chance offset moves them all together. The **in/out design**
# (Feldman and Zhang 2020; LiRA) trains each of {glue:text}`sub_encoders`
# encoders on a random half of a pool of {glue:text}`sub_pool` points (split
# {glue:text}`sub_seed`'s S_C and S_I, then other training points), balanced so
# every point is in for exactly half the encoders, with the same recipe and
# points per encoder as above (equal compute per encoder). A point's score is
# its mean alignment over the encoders that did not train on it minus the mean
# over those that did, after each encoder's offset is removed by least squares
# (`memlib.memorization.subset`); each encoder's own in-versus-out contrast is
# a memorisation estimate with the encoder as unit.
#
# Declared before the run: the per-point claims use the design whose full-set
# reliability is higher; the target reliability is 0.8 and the threshold that
# gates rankings stays {glue:text}`rel_threshold`.

# %% tags=["remove-input"]
curve = cmp["reliability"]
rank_reliability, rank_reliability_halves = sub.rank_reliability()
adopted = "the in/out design" if study.per_point is not None else "the paper's design"
for name, value in {
    "sub_encoders": sub.design.settings.encoders,
    "sub_planned": sub.design.settings.planned or "not planned",
    "sub_pool": sub.design.settings.pool,
    "sub_seed": sub.design.seed,
    "rank_reliability": rank_reliability,
    "rank_reliability_halves": rank_reliability_halves,
    "paper_reliability": paper_full,
    "adopted_design": adopted,
    "agree_rho": cmp["agreement"]["rho"],
    "agree_p": cmp["agreement"]["p"],
    "agree_n": cmp["agreement"]["n"],
}.items():
    glue(name, value, display=False)
glue(
    "fig_subset_reliability",
    plots.reliability_curves(curve, threshold=0.8, declared=0.5, title=f"preset {p.name}"),
    display=False,
)
shown = curve.assign(measured=curve.measured.map({True: "measured", False: "projected"}))
display(table(shown.set_index(["design", "points", "encoders"]), digits=3))

# %% [markdown]
# ```{glue:figure} fig_subset_reliability
# :name: fig-subset-reliability
# Reliability of the per-point ranking against the encoders trained. Red: the
# in/out design (solid: its whole pool; dashed: only split
# {glue:text}`sub_seed`'s candidates); blue: the paper's design, measured with
# its pairs per split (filled) and projected by Spearman–Brown to the in/out
# design's encoder count (hollow).
# ```
#
# With all {glue:text}`sub_encoders` encoders the in/out ranking of the pool has
# reliability **{glue:text}`rank_reliability:.2f`** (split-half ρ
# {glue:text}`rank_reliability_halves:.2f`), against
# {glue:text}`paper_reliability:.2f` for the paper's design with its pairs per
# split; per-point claims therefore use **{glue:text}`adopted_design`**. On the
# {glue:text}`agree_n` candidates both designs score, their scores agree with
# Spearman ρ = {glue:text}`agree_rho:.2f` (p = {glue:text}`agree_p:.2g`).
#
# A ranking gates a claim through its split-half ρ (half the encoders against
# the other half), which must reach {glue:text}`rel_threshold`. Planned from
# the first 24 encoders by Spearman–Brown, the in/out design needs
# {glue:text}`sub_planned` encoders for that (declared before its top-up); this
# run has {glue:text}`sub_encoders`.
#
# At the encoder level, the table compares the spread of each design's
# memorisation estimate over its units, and the trainings each needs for 80 %
# power at its own standardised effect.

# %% tags=["remove-input"]
display(table(cmp["encoder_level"], digits=4, index_name="design"))

# %% [markdown]
# ## Which points are significant, against the null family
#
# Each point's calibrated score (its split's mean raw score over pairs, minus
# that mean on S_E) is tested one-sided against the calibrated scores of the
# null family f′ vs f on all of the split's points, with a Benjamini–Hochberg
# correction at 5 %. The null family saw exactly f's data, so a point beats it
# only by more than seed noise.

# %% tags=["remove-input"]
sig = study.significance()
if len(sig):
    display(table(sig, digits=3, index_name="subset", percent=["share"]))
else:
    display(Markdown("(Needs a null family: `null_models` > 0.)"))

# %% [markdown]
# ## Independent or paired seeds?
#
# With paired seeds g_i starts from f_i's seed (same initial weights, data
# order and augmentation draws); each family's distribution is unchanged, so
# the estimate keeps its meaning. Declared before the run: the split below is
# run with {glue:text}`paired_pairs` pairs each way (the f family is shared by
# both designs), and paired seeds become the default for contrasts between
# families only if the 95 % interval of the variance ratio excludes 1.

# %% tags=["remove-input"]
glue("paired_pairs", study.settings.paired_pairs or study.preset.models_per_family, display=False)
spread = study.paired_spread()
vr = study.paired_variance_ratio()
if len(spread) == 2 and spread["pairs"].min() >= 2 and len(vr):
    display(table(vr, digits=4, index_name="contrast (raw, over pairs)"))
    core = vr.loc["S_C − S_S"]
    excludes = core["95% CI high"] < 1 or core["95% CI low"] > 1
    glue("paired_ratio", float(core["variance ratio (paired / independent)"]), display=False)
    glue("paired_ci_low", float(core["95% CI low"]), display=False)
    glue("paired_ci_high", float(core["95% CI high"]), display=False)
    glue("paired_n", int(core["pairs paired"]), display=False)
    glue(
        "paired_decision",
        "excludes 1: paired seeds shrink the spread, and become the default for contrasts between families"
        if excludes
        else "includes 1: the measurement cannot tell paired from independent seeds, so the chapters keep "
        "independent seeds, the paper's design",
        display=False,
    )
else:
    display(Markdown("(Needs at least 2 pairs each way; not run at this preset.)"))
    for name in ("paired_ratio", "paired_ci_low", "paired_ci_high"):
        glue(name, float("nan"), display=False)
    glue("paired_n", 0, display=False)
    glue("paired_decision", "was not measured at this preset", display=False)

# %% [markdown]
# The variance of S_C − S_S over pairs with paired seeds is
# {glue:text}`paired_ratio:.2f` times that with independent seeds (95 %
# interval {glue:text}`paired_ci_low:.2f` to {glue:text}`paired_ci_high:.2f`,
# {glue:text}`paired_n` pairs each way). The interval
# {glue:text}`paired_decision`. `Preset.paired_seeds=True` switches a run to
# paired seeds.

# %% [markdown]
# ## Where memorisation appears: training-set size against epochs
#
# Not in the papers: the S_C − S_I gap per pair when the same compute (training
# points × epochs) is spent on fewer points for longer or more points for
# shorter, on the first split. The `gpu` preset's 55,000 points sit far to the
# right and were not run.

# %% tags=["remove-input"]
sc_tab = study.scaling()
glue(
    "fig_scaling",
    plots.scaling_gap(
        sc_tab, mark={"gpu preset (not run)": 55000}, title=f"S_C − S_I gap per encoder pair (preset {p.name})"
    ),
    display=False,
)
display(
    table(
        sc_tab.groupby(["train size", "epochs"])[["gap raw", "gap normalised"]].agg(["mean", "std", "count"]), digits=4
    )
)

# %% [markdown]
# ```{glue:figure} fig_scaling
# :name: fig-sslmem-scaling
# The S_C − S_I gap (normalised) per encoder pair against the number of
# training points per encoder; each size is trained for as many epochs as keeps
# size × epochs constant.
# ```
#
# ### MAE at this scale: which regime memorises? (the pilot for chapter 04)
#
# Chapter 04 asks whether DP lowers memorisation, which needs a regime where
# the *non-private* encoder memorises; its MAE at `cpu` did not. Declared
# before the run: MAE (its own ViT and augmentation, from scratch) in two
# regimes of equal compute per encoder, 150 points × 200 epochs (chapter 04's
# private set size; the encoders of chapter 03's λ = 0) and 50 points × 600
# epochs, three pairs each; then the 150 × 200 regime was topped up to 11
# pairs, the n its pilot planned (80 % power at Holm over the two regimes),
# declared before the top-up. A regime *memorises* when the rule reproduces
# "calibrated memorisation of S_C > 0" over pairs (Holm over the regimes,
# SESOI d = 0.5) and f's linear probe beats untrained ViTs. The table gives,
# per regime, the calibrated memorisation of S_C (mean and sd over pairs), the
# rule's verdict on "> 0", and f's linear accuracy against the floor's.

# %% tags=["remove-input"]
mae = run_experiment("mae-regime", preset, device=device, seed=seed, progress=progress)
mae_tab = mae.table()
chosen = mae.chosen()
glue("mae_regime_chosen", "none" if chosen is None else f"{chosen[0]} points × {chosen[1]} epochs", display=False)
display(table(mae_tab, digits=3))

# %% [markdown]
# Regime that memorises (the largest memorisation among those that do):
# **{glue:text}`mae_regime_chosen`**. Chapter 04's private training is to run
# in it; where none does, its claims stay inconclusive for that reason.
#
# ## Architecture size: do encoders with more parameters memorise more? (S14, paper Table 15)
#
# The paper trains SimCLR on ResNet-18, ResNet-50 and WRN-50-2 (11 M to 69 M
# parameters) and finds normalised SSLMem rising from 0.315 to 0.350 and linear
# accuracy from 71 % to 81 %. Declared before the run: this chapter's SimCLR
# recipe on one depth of ResNet at growing width (`resnet_narrow` and its ×2,
# ×4 and ×8 widths), each an SSLMem run with its own f and g families, S_E and
# untrained floor, on a split of its own. Two parts, both of which must hold,
# Holm over the two (this study's own family):
#
# - **memorisation**: one-sided Kendall τ between parameters and each encoder
#   pair's calibrated memorisation of S_C (unit: the encoder pair), over the
#   architectures whose f encoders beat their untrained floor;
# - **accuracy**: one-sided Kendall τ between parameters and each f encoder's
#   linear-probe accuracy (unit: the f encoder).
#
# P-values are permutation tests (the architecture ties pairs); the SESOI, a
# weak trend of τ 0.2, is reported beside the verdict. The claim is decided
# only on every declared architecture.

# %% tags=["remove-input"]
size = run_experiment("arch-size", preset, device=device, seed=seed, progress=progress)
size_claims = size.claims()
glue_claims(size_claims, rule_version=False)
size_plan = size.planned_n()
glue("claim_S14_planned_n", int(size_plan["planned n"].max()), display=False)
glue("size_archs_stored", len(size.runs), display=False)
glue("size_archs_declared", len(size.runs) + len(size.absent), display=False)
glue("size_absent", ", ".join(size.absent) if size.absent else "none", display=False)
enc_rows = size.store.load("encoders").set_index("encoder")
hw = enc_rows.loc[[k for k in size.encoder_keys if k in enc_rows.index and enc_rows.kind[k] != "untrained"]]
glue("size_hardware", ", ".join(sorted(set(hw.trained_hardware))) or "(none)", display=False)
glue("fig_arch_size", plots.arch_size(size.pairs(), size.absent, title=f"preset {p.name}"), display=False)
display(table(size.table(), digits=4, index_name="architecture"))
display(table(size_plan, digits=3, index_name="part"))
display(table(size_claims, index_name="claim", wrap=["statistic"]))

# %% [markdown]
# ```{glue:figure} fig_arch_size
# :name: fig-arch-size
# Per encoder pair, calibrated memorisation of S_C (left) and f's linear-probe
# accuracy (right) against the encoder's parameters; black: the mean per
# architecture.
# ```
#
# {glue:text}`size_archs_stored` of the {glue:text}`size_archs_declared`
# declared architectures are in the store (not yet: {glue:text}`size_absent`);
# the stored ones were trained on {glue:text}`size_hardware`. On a 2-core CPU
# the ×4 and ×8 widths take about 14 and 70 minutes per encoder (a training
# step of each width was timed; `memlib.experiments.arch_size`), so they are
# left to a GPU session (`scripts/gpu_session.sh`). Until every declared
# architecture is stored, S14 stays inconclusive and its statistic is marked
# interim. The normalised SSLMem
# (the paper's statistic) is shown beside the calibrated one: it divides by
# each point's range of alignment, which itself changes with the architecture.
#
# ## Memorisation as a spectrum (paper Fig. 5) and alignment on f vs g (paper Fig. 2a)
#
# From the first split: the fraction of each subset above a threshold, and each
# candidate's alignment loss on f and on g.

# %% tags=["remove-input"]
glue("fig_fraction_above", plots.fraction_above_curves(first.scores(), title=f"split {first.seed}"), display=False)
cand = first.result.subset(np.flatnonzero(first.subset == "candidate"))
glue(
    "fig_scatter",
    plots.alignment_scatter(cand.align_f, cand.align_g, cand.score, title=f"S_C, split {first.seed}"),
    display=False,
)
glue("corr_f_score", float(np.corrcoef(cand.align_f, cand.score)[0, 1]), display=False)

# %% [markdown]
# ```{glue:figure} fig_fraction_above
# :name: fig-fraction-above
# Fraction of each subset above a threshold on the normalised score (paper Fig. 5
# shows S_C).
# ```
#
# ```{glue:figure} fig_scatter
# :name: fig-sslmem-scatter
# Alignment loss of each candidate on f and on g (means over each family),
# coloured by its memorisation score. Points above the diagonal align better on
# f, which trained on them.
# ```
#
# The correlation between a candidate's alignment loss on f and its score is
# {glue:text}`corr_f_score:.2f` (Pearson, one split).
#
# ## Most and least memorised candidates (paper Fig. 1)

# %% tags=["remove-input"]
ci = np.flatnonzero(first.subset == "candidate")
glue(
    "fig_gallery",
    plots.gallery(first.images[ci], first.result.score[ci], first.labels[ci], first.classes, k=min(8, len(ci))),
    display=False,
)

# %% [markdown]
# ```{glue:figure} fig_gallery
# :name: fig-sslmem-gallery
# The candidates of the first split with the highest (top row) and lowest
# (bottom row) scores, with score and class.
# ```
#
# ## Downstream accuracy and training

# %% tags=["remove-input"]
probe = pd.concat([r.probe.assign(split=r.seed) for r in study.runs])
floor = pd.concat([r.floor.assign(family="untrained (random floor)") for r in study.runs if len(r.floor)])
acc = pd.concat([probe, floor]).groupby("family", sort=False)[["linear_acc", "knn_acc"]].agg(["mean", "std", "count"])
acc.columns = [f"{'linear probe' if k == 'linear_acc' else 'kNN'} {a}" for k, a in acc.columns]
display(table(acc, digits=3, index_name="encoders"))
fc = study.floor_check()
glue("floor_acc", float(floor["linear_acc"].mean()), display=False)
glue(
    "floor_verdict", ("beat" if fc["informative"] else "do not beat") if fc else "were not compared with", display=False
)
glue("floor_p", float(fc.get("p", float("nan"))), display=False)
glue("f_linear_acc", float(probe.loc[probe.family == "f", "linear_acc"].mean()), display=False)
glue("f_linear_sd", float(probe.loc[probe.family == "f", "linear_acc"].std(ddof=1)), display=False)
glue("probe_train_n", p.probe_train if p.probe_train is not None else "all", display=False)
glue("fig_curves", plots.training_curves(first.histories), display=False)

# %% [markdown]
# Linear-probe accuracy of the f encoders on held-out Fashion-MNIST test images:
# {glue:text}`f_linear_acc:.3f` (standard deviation over f's encoders
# {glue:text}`f_linear_sd:.3f`), probe trained on {glue:text}`probe_train_n`
# training images. Untrained encoders of the same architecture (three per
# split, the **random floor**) reach {glue:text}`floor_acc:.3f`: random
# convolutional features already separate Fashion-MNIST's classes well. The f
# encoders **{glue:text}`floor_verdict`** the floor (one-sided Welch test over
# encoders, p = {glue:text}`floor_p:.2g`); a run whose encoders did not beat it
# would decide no claim.
#
# ```{glue:figure} fig_curves
# :name: fig-sslmem-curves
# Training loss and kNN accuracy (2,000-image bank) per epoch of each encoder
# of the first split (red: f, blue: g).
# ```
#
# ## Provenance

# %% tags=["remove-input"]
display(Markdown(provenance_markdown(study.provenance)))
display(
    Markdown(
        f"This page's analysis (above) read every run from the evidence store: the "
        f"{len(study.designs)} runs (splits, paired seeds, scaling) need the encoders below, and every "
        "verdict, table and figure comes from their stored rows. Load them with "
        "`memlib.evidence.EvidenceStore('results').load('alignments')`."
    )
)
display(Markdown(store_markdown(study.store, study.encoder_keys() + mae.encoder_keys + size.encoder_keys)))
