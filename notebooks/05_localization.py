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
# # Localising memorisation: LayerMem, UnitMem and ClassMem
#
# Wang et al. (NeurIPS 2024) ask *where* in an SSL encoder memorisation lives.
# **LayerMem** is SSLMem computed on the output of one layer of f and g
# instead of the final representation; **ΔLayerMem** is what a layer adds to
# the one before it. **UnitMem** asks how strongly a single unit (a conv
# channel, or a hidden neuron of a ViT MLP) singles out one training point:
# with μ the unit's activation on a point, averaged over positions and K
# augmentations, UnitMem = (μ_max − μ_rest) / (μ_max + μ_rest), 1 for a unit
# that fires on one point only and 0 for a unit that fires equally on all.
# **ClassMem** is the same index over class means (class selectivity).
#
# **The unit of evidence is the encoder.** Every family has several members
# trained with different seeds; f_i and g_i form encoder pair i. Every claim is
# tested over pairs or encoders with the book's one verdict rule (see
# [How to read a chapter](../reading.md)), never over points or units, which
# share their encoder's training noise.
#
# **Scores that compare across layers.** The paper normalises LayerMem per
# layer by its range over the scored points, so values of different layers do
# not compare. Here each pair also scores the extra points S_E, which neither f
# nor g trained on, and the depth claims use the **standardised LayerMem**
# z = (mean raw score on S_C − mean on S_E) / (sd of the raw score on S_E): the
# pair's chance offset is removed and the layer's own scale divided out. The
# paper's normalised LayerMem is shown beside it.
#
# **UnitMem on GELU units.** A ViT's MLP units are GELU outputs and can be
# negative. memlib takes each position's positive part before averaging
# (`activation="positive_part"`), so UnitMem stays in [0, 1] and does not hinge
# on the sign of a background-dominated mean; the sensitivity table below
# shows the ViT's numbers under the two other handlings as well. The authors'
# public code measures one post-ReLU block of a ResNet-9 with the *median* of
# the other points, in train mode, without hooks on residual outputs; memlib
# reads every block's output (residual addition included) in eval mode and uses
# the mean of the other points. Each encoder's UnitMem is also measured on as
# many test points that no encoder trained on: UnitMem without memorisation.
#
# The ResNet families f and g are the SSLMem chapter's encoders (the same
# cache entries); a ViT family and a supervised ResNet family are trained on
# the same splits.

# %% tags=["parameters"]
device = "cpu"  # "cpu", "cuda" or "auto"
preset = "smoke"  # smoke | cpu | gpu | paper
seed = 0
shared = None  # size of S_S; None = preset default
candidate = None  # size of S_C (= S_I = S_E); None = preset default
epochs = None  # training epochs; None = preset default
models_per_family = None  # encoders per family (f and g); None = preset default
views = None  # K augmented views per point for LayerMem; None = preset default
vit_arch = "vit_micro"  # the ViT trained beside the ResNets
unit_views = 10  # K augmentations per point for UnitMem (official code: 10)
finetune_epochs = None  # epochs of each layer fine-tuning; None = the preset's probe_epochs
progress = False  # progress bars (off for papermill runs)

# %% tags=["remove-input"]
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from IPython.display import Markdown, display
from myst_nb import glue

from memlib.experiments.evidence_report import store_markdown
from memlib.experiments.notebooks import refuse_unknown_parameters
from memlib.experiments.page import glue_claims, smoke_banner, table
from memlib.experiments.registry import run_experiment
from memlib.provenance import provenance_markdown

refuse_unknown_parameters()  # papermill only warns about a misspelt -p name

# Every number below is analysed from the evidence store's rows; what the store lacks is computed first.
run = run_experiment(
    "localization",
    preset,
    device=device,
    seed=seed,
    progress=progress,
    vit_arch=vit_arch,
    unit_views=unit_views,
    shared=shared,
    candidate=candidate,
    epochs=epochs,
    models_per_family=models_per_family,
    views=views,
    finetune_epochs=finetune_epochs,
)
p = run.preset
smoke_banner(p)
glue("loc_preset", p.name, display=False)
glue("loc_arch", p.arch, display=False)
glue("loc_vit", vit_arch, display=False)
glue("loc_epochs", p.epochs, display=False)
glue("loc_n_models", p.models_per_family, display=False)
glue("loc_views", p.views, display=False)
glue("loc_unit_views", unit_views, display=False)
glue("loc_n_candidates", len(run.splits.candidate), display=False)
glue("loc_n_extra", len(run.splits.extra), display=False)
glue("loc_n_unit_points", len(run.unit_labels), display=False)
claims = run.claims()
glue_claims(claims)

# %% [markdown]
# ## Setup of this run
#
# Preset {glue:text}`loc_preset`: SimCLR encoders {glue:text}`loc_arch` and
# {glue:text}`loc_vit`, and a supervised {glue:text}`loc_arch`, all trained
# {glue:text}`loc_epochs` epochs, {glue:text}`loc_n_models` members per family.
# LayerMem is scored per pair on the {glue:text}`loc_n_candidates` candidates
# S_C and the {glue:text}`loc_n_extra` extra points S_E with K =
# {glue:text}`loc_views` views; UnitMem over f's {glue:text}`loc_n_unit_points`
# training points (and as many unseen test points) with K =
# {glue:text}`loc_unit_views` augmentations.
#
# ### Planned n
#
# Declared before the run: at `cpu` the chapter first took the 8 ResNet encoder
# pairs of chapter 01's paired-seed measurement (already in the store) and
# trained 8 ViT pairs and 8 supervised encoders beside them, about 30 minutes
# on two workers. Its planned n (below) is far above that, so it is topped up
# toward it within each session's budget, declared before the top-up: pairs
# 9–16 are 40 new encoders (ResNet and ViT f and g, supervised f), about 46
# minutes of training on two workers and an hour of scoring on one. This run
# has {glue:text}`loc_n_models` pairs. The SESOI of every claim without a counterpart at this scale
# is half a standard deviation over encoders (d = 0.5); L3's is a tenth of the
# top units. The table gives, per claim, the encoders a one-sided test needs
# for 80 % power to detect its SESOI at the chapter's Holm level (all
# {glue:text}`loc_n_tests` tests), with this run's spread as the pilot
# (`memlib.verdicts.plan_table`); a claim of two parts plans for the harder
# part, and a part without a SESOI (L1's "some layer falls", a union test; L3's
# non-inferiority part) has no plan. Effects far larger than the SESOI are
# detected with fewer encoders; to show the effect *smaller* than a d = 0.5
# SESOI (and so refute a claim) takes the planned n.

# %% tags=["remove-input"]
plan = run.planned_n()
glue("loc_n_tests", run.n_tests, display=False)
display(table(plan, digits=4, index_name="claim"))
for cid, row in plan.iterrows():
    if np.isfinite(row["planned n"]):
        glue(f"claim_{cid}_planned_n", int(row["planned n"]), display=False)

# %% [markdown]
# ## LayerMem and ΔLayerMem per layer

# %% tags=["remove-input"]
fig, axes = plt.subplots(1, 2, figsize=(11, 3.4))
for ax, arch in zip(axes, ("resnet", "vit")):
    pl = run.pair_layers(arch)
    lt = run.layer_table(arch)
    x = np.arange(len(lt))
    ax.bar(x, lt["ΔLayerMem z"], color="tab:orange", alpha=0.5, label="ΔLayerMem (mean over pairs)")
    for i, g in pl.groupby("pair"):
        ax.plot(
            g["depth"], g["z"], "-", color="tab:red", alpha=0.35, lw=1, label="one encoder pair" if i == 0 else None
        )
    ax.errorbar(x, lt["z"], yerr=lt["z sd"].fillna(0), fmt="o-", color="tab:red", capsize=3, label="mean over pairs")
    ax.set_xticks(x, [t.replace("vit.blocks.", "block ") for t in lt.index], rotation=30, ha="right")
    ax.axhline(0, color="k", lw=0.5)
    ax.set_ylabel("standardised LayerMem z")
    ax.set_title(f"{p.arch if arch == 'resnet' else vit_arch}")
axes[0].legend(fontsize=7)
fig.tight_layout()
plt.close(fig)
glue("fig_loc_layermem", fig, display=False)
display(table(run.layer_table("resnet"), 3))

# %% [markdown]
# ```{glue:figure} fig_loc_layermem
# :name: fig-loc-layermem
# Standardised LayerMem z of each layer (thin lines: one encoder pair each;
# dots: mean ± sd over pairs) and ΔLayerMem (bars): the ResNet's stem and
# residual blocks (outputs include the residual addition), and the ViT's blocks.
# ```
#
# The paper: memorisation rises with depth, but not monotonically. Here:
# {glue:text}`claim_L1_stat` (**{glue:text}`claim_L1_status`**).
#
# ## ViT: attention vs MLP

# %% tags=["remove-input"]
avm = run.attention_vs_mlp()
fig, ax = plt.subplots(figsize=(5.5, 3.2))
w = 0.38
ax.bar(avm.index - w / 2, avm["attention"], w, yerr=avm["attention sd"].fillna(0), capsize=3, label="attention")
ax.bar(avm.index + w / 2, avm["mlp"], w, yerr=avm["mlp sd"].fillna(0), capsize=3, label="MLP")
ax.set_xlabel("block")
ax.set_ylabel("standardised LayerMem z")
ax.axhline(0, color="k", lw=0.5)
ax.legend()
fig.tight_layout()
plt.close(fig)
glue("fig_loc_attn_mlp", fig, display=False)

# %% [markdown]
# ```{glue:figure} fig_loc_attn_mlp
# :name: fig-loc-attn-mlp
# Standardised LayerMem of each ViT block's attention and MLP sub-layer (their
# outputs before the residual addition), mean ± sd over encoder pairs.
# ```
#
# The paper: the MLP (fully connected) sub-layers memorise more than attention.
# Here: {glue:text}`claim_L2_stat` (**{glue:text}`claim_L2_status`**).
#
# ## UnitMem per layer, and where the most memorising units are

# %% tags=["remove-input"]
us = run.unit_summary()
fig, axes = plt.subplots(1, 3, figsize=(13, 3.4), sharey=True)
for ax, which in zip(axes, ("resnet", "vit", "supervised")):
    ut = run.unit_table(which, 0)
    taps = list(dict.fromkeys(ut["tap"]))
    ax.violinplot([ut.loc[ut.tap == t, "unitmem"] for t in taps], showmeans=True)
    unseen = us.loc[which, "UnitMem unseen"].reindex(taps)
    ax.plot(np.arange(1, len(taps) + 1), unseen, "k_", ms=14, mew=2, label="mean on unseen points")
    ax.set_xticks(
        np.arange(1, len(taps) + 1),
        [t.replace("vit.blocks.", "").replace(".mlp.act", "") for t in taps],
        rotation=30,
        ha="right",
    )
    ax.set_title(
        {"resnet": f"SSL {p.arch}", "vit": f"SSL {vit_arch} (MLP units)", "supervised": f"supervised {p.arch}"}[which]
    )
axes[0].set_ylabel("UnitMem")
axes[0].legend(fontsize=7)
fig.tight_layout()
plt.close(fig)
glue("fig_loc_unitmem", fig, display=False)

fig, ax = plt.subplots(figsize=(6.5, 3.2))
kinds = (
    ("resnet", "tab:blue", "SSL"),
    ("supervised", "tab:green", "supervised"),
    ("untrained", "tab:gray", "untrained"),
)
for k, (which, color, label) in enumerate(kinds):
    e = us.loc[which, "enrichment"]
    x = np.arange(len(e)) + (k - 1) * 0.27
    ax.bar(x, e, 0.27, color=color, label=label)
    taps = list(e.index)
    for m in range(len(run.units[which])):
        ax.plot(x, run.enrichment(which, m)["enrichment"], "k.", ms=3)
ax.axhline(1, color="k", lw=0.5, ls="--")
ax.set_xticks(np.arange(len(taps)), taps, rotation=30, ha="right")
ax.set_ylabel("enrichment of top-10 % units")
ax.legend(fontsize=7)
fig.tight_layout()
plt.close(fig)
glue("fig_loc_enrichment", fig, display=False)
display(table(us, 3))

# %% [markdown]
# ```{glue:figure} fig_loc_unitmem
# :name: fig-loc-unitmem
# Distribution of UnitMem over the units of each layer of the first member of
# each family (means marked), and each layer's mean UnitMem on test points no
# encoder trained on (black bars), averaged over members.
# ```
#
# The table gives, per encoder kind and layer (means over members), UnitMem on
# f's training points and on unseen points, ClassMem, and two enrichments of
# the 10 % most memorising units: pooled (the layer's share of the top units
# over its share of all units; 1 = as its size predicts) and within the layer
# (its own top 10 % against a random layer of the same size).
#
# ```{glue:figure} fig_loc_enrichment
# :name: fig-loc-enrichment
# Pooled enrichment of the top-10 % UnitMem units per layer: SSL, supervised
# and untrained ResNets (bars: mean over members; dots: each member). 1
# (dashed) is what the layer's share of all units predicts; the untrained
# encoders show what the architecture alone gives.
# ```
#
# The paper: highly memorising units are spread over all layers in SSL,
# whereas supervised learning gathers them in the last layers. Judged on the
# share of each encoder's top units that lie in the last layer: SSL's must not
# exceed untrained encoders' (what the architecture alone gives) by more than a
# tenth of the top units, and supervised's must exceed SSL's. Here:
# {glue:text}`claim_L3_stat` (**{glue:text}`claim_L3_status`**).
#
# ### How the ViT's UnitMem depends on the handling of negative activations

# %% tags=["remove-input"]
display(table(run.vit_sensitivity(), 3))

# %% [markdown]
# Per handling (see the Methods page): the ViT members' mean UnitMem on their
# training points and on unseen points, whether the first exceeds the second
# over encoders, UnitMem − ClassMem and its test, ρ between how strongly some
# unit singles a candidate out and the candidate's memorisation by the ViT
# pair (L6 for the ViT; the column says SSLMem, but for the ViT it is LayerMem
# at the last block's MLP hidden units, the very units UnitMem reads, not at
# the final representation), and the share of per-point means of raw
# activations that are negative.
#
# ## SSL vs supervised: UnitMem and ClassMem

# %% tags=["remove-input"]
fig, axes = plt.subplots(1, 2, figsize=(9, 3.4), sharex=True, sharey=True)
for ax, which in zip(axes, ("resnet", "supervised")):
    ut = run.unit_table(which, 0)
    ax.scatter(ut["classmem"], ut["unitmem"], s=6, alpha=0.5)
    ax.plot([0, 1], [0, 1], "k--", lw=0.5)
    ax.set_xlabel("ClassMem")
    ax.set_title("SSL" if which == "resnet" else "supervised")
axes[0].set_ylabel("UnitMem")
fig.tight_layout()
plt.close(fig)
glue("fig_loc_classmem", fig, display=False)
mu = pd.concat(
    {
        "SSL": run.member_units("resnet"),
        "supervised": run.member_units("supervised"),
        "untrained": run.member_units("untrained"),
    }
)
display(table(mu.drop(columns=["negative means"]), 3))

# %% [markdown]
# ```{glue:figure} fig_loc_classmem
# :name: fig-loc-classmem
# Each unit's UnitMem against its ClassMem, for the first SSL and the first
# supervised ResNet (same architecture and training points).
# ```
#
# The table has one row per encoder (untrained ResNets as the reference). The paper: SSL has more units that single
# out data points, supervised learning more units that single out classes.
# The second part is judged on mean ClassMem, supervised against SSL: untrained
# encoders already give UnitMem − ClassMem well above 0, so that difference
# alone cannot show class selectivity. Here: {glue:text}`claim_L4_stat` (**{glue:text}`claim_L4_status`**).
#
# ## Atypical points

# %% tags=["remove-input"]
at = run.atypical()
fig, axes = plt.subplots(1, 2, figsize=(9.5, 3.2))
axes[0].errorbar(np.arange(len(at)), at["ρ"], yerr=at["ρ sd"].fillna(0), fmt="o-", capsize=3)
axes[0].axhline(0, color="k", lw=0.5)
axes[0].set_xticks(np.arange(len(at)), at.index, rotation=30, ha="right")
axes[0].set_ylabel("ρ(atypicality, LayerMem)")
axes[1].scatter(run.pair_sslmem(0), run.units["resnet"][0].point_selectivity()[run.unit_candidate_pos], s=10)
axes[1].set_xlabel("SSLMem of pair 0 (raw)")
axes[1].set_ylabel("largest unit index on the point")
fig.tight_layout()
plt.close(fig)
glue("fig_loc_atypical", fig, display=False)

# %% [markdown]
# A candidate's atypicality here does not come from SSLMem: it is one minus
# its mean cosine similarity to its nearest same-class neighbours among f's
# training points and S_E, in the embeddings of g's encoders, which never
# trained on it (mean over g's members).
#
# ```{glue:figure} fig_loc_atypical
# :name: fig-loc-atypical
# Left: per ResNet layer, Spearman ρ between the candidates' atypicality and
# their LayerMem, mean ± sd over encoder pairs. Right: for pair 0, each
# candidate's SSLMem against the largest UnitMem-style index any unit of f
# gives it.
# ```
#
# The paper: atypical points have higher LayerMem. Here:
# {glue:text}`claim_L5_stat` (**{glue:text}`claim_L5_status`**). The paper:
# UnitMem correlates with SSLMem. Here: {glue:text}`claim_L6_stat`
# (**{glue:text}`claim_L6_status`**).
#
# ## Fine-tuning the most memorising layers

# %% tags=["remove-input"]
display(table(run.finetune, 3, hide_index=True))

# %% [markdown]
# A copy of each f encoder is fine-tuned on Fashion-MNIST training images with
# a new linear head, training only its layers with the largest ΔLayerMem (from
# its own pair), or as many of the last layers (everything else frozen,
# BatchNorm statistics fixed), and tested on held-out images; p is the exact
# binomial test on that encoder's discordant test points (not a verdict). The
# head starts from the run's seed, so both fine-tunings of an encoder start
# alike; where an encoder's most memorising layers are its last ones, the two
# fine-tunings are the same and their difference is exactly 0. The paper:
# fine-tuning the most memorising layers gives better downstream accuracy.
# Here: {glue:text}`claim_L7_stat` (**{glue:text}`claim_L7_status`**).
#
# ## Pruning units by UnitMem

# %% tags=["remove-input"]
pr = run.pruning
glue("loc_base_acc", float(pr.groupby("member")["base_accuracy"].first().mean()), display=False)
fig, ax = plt.subplots(figsize=(5.5, 3.2))
for strategy, color in (("top", "tab:red"), ("bottom", "tab:blue"), ("random", "tab:gray")):
    per_member = pr[pr.strategy == strategy].groupby(["fraction", "member"])["drop"].mean().unstack()
    for m in per_member:
        ax.plot(per_member.index * 100, per_member[m], "-", color=color, alpha=0.3, lw=1)
    ax.plot(per_member.index * 100, per_member.mean(axis=1), "o-", color=color, label=strategy)
ax.axhline(0, color="k", lw=0.5)
ax.set_xlabel("% of units pruned")
ax.set_ylabel("linear-probe accuracy drop")
ax.legend()
fig.tight_layout()
plt.close(fig)
glue("fig_loc_pruning", fig, display=False)

# %% [markdown]
# Units of each f encoder are pruned (their outputs zeroed by a forward hook)
# by UnitMem: the top, the bottom, or random ones; a linear probe is refit on
# the pruned features. Unpruned accuracy, mean over encoders:
# {glue:text}`loc_base_acc:.3f`.
#
# ```{glue:figure} fig_loc_pruning
# :name: fig-loc-pruning
# Drop in linear-probe accuracy after pruning units of f (thin lines: one
# encoder each, random pruning averaged over its draws; dots: mean over encoders).
# ```
#
# The paper: pruning the most memorising units hurts more than pruning random
# ones. Here: {glue:text}`claim_L8_stat` (**{glue:text}`claim_L8_status`**).
#
# ## Verdicts on the claims
#
# The scoreboard's claims L1–L9, each decided over encoders by the verdict rule
# (a `smoke` run decides nothing). The scoreboard page shows these same cells.

# %% tags=["remove-input"]
display(table(claims, wrap=["claim", "statistic", "test"]))

# %% [markdown]
# ## Provenance

# %% tags=["remove-input"]
display(Markdown(provenance_markdown(run.provenance)))
display(
    Markdown(
        "This page's analysis read every number from the evidence store: per-layer alignments, per-unit "
        "UnitMem and ClassMem, point selectivities, atypicality, fine-tuning and pruning accuracies of the "
        "encoders below. Load them with `memlib.evidence.EvidenceStore('results').load('units')`."
    )
)
display(Markdown(store_markdown(run.store, run.encoder_keys)))
