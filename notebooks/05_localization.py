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
# Layer outputs are read with forward hooks, so a ResNet block's output
# includes its residual addition, and encoders run in eval mode (the official
# code did neither). A ViT's MLP units are GELU outputs and can be negative:
# each position's activation enters UnitMem through its positive part before
# averaging (memlib's `activation="positive_part"`), which keeps UnitMem in
# [0, 1]; the share of per-point means that were negative is reported below.
#
# The ResNet families f and g are the SSLMem chapter's encoders (the same
# cache entries); a ViT family and one supervised ResNet are trained on the
# same splits.

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
from IPython.display import Markdown, display
from myst_nb import glue

from memlib.experiments.localization_run import run_localization
from memlib.experiments.notebooks import refuse_unknown_parameters
from memlib.experiments.page import glue_claims, smoke_banner
from memlib.provenance import provenance_markdown

refuse_unknown_parameters()  # papermill only warns about a misspelt -p name

run = run_localization(preset, device=device, seed=seed, vit_arch=vit_arch, unit_views=unit_views, shared=shared,
                       candidate=candidate, epochs=epochs, models_per_family=models_per_family, views=views,
                       finetune_epochs=finetune_epochs, progress=progress)
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
glue("loc_n_unit_points", len(run.unit_labels), display=False)

# %% [markdown]
# ## Setup of this run
#
# Preset {glue:text}`loc_preset`: SimCLR encoders {glue:text}`loc_arch` and
# {glue:text}`loc_vit`, {glue:text}`loc_epochs` epochs,
# {glue:text}`loc_n_models` encoder(s) per family. LayerMem is scored on the
# {glue:text}`loc_n_candidates` candidates S_C with K = {glue:text}`loc_views`
# views; UnitMem over f's {glue:text}`loc_n_unit_points` training points with
# K = {glue:text}`loc_unit_views` augmentations.
#
# ## LayerMem and ΔLayerMem per layer

# %% tags=["remove-input"]
fig, axes = plt.subplots(1, 2, figsize=(11, 3.4))
for ax, arch in zip(axes, ("resnet", "vit")):
    lt = run.layer_table(arch)
    x = np.arange(len(lt))
    ax.bar(x, lt["delta"], color="tab:orange", alpha=0.6, label="ΔLayerMem")
    ax.plot(x, lt["layermem"], "o-", color="tab:red", label="LayerMem")
    ax.set_xticks(x, [t.replace("vit.blocks.", "block ") for t in lt.index], rotation=30, ha="right")
    ax.axhline(0, color="k", lw=0.5)
    ax.set_title(f"{p.arch if arch == 'resnet' else vit_arch} (mean normalised score on S_C)")
axes[0].legend()
fig.tight_layout()
plt.close(fig)
glue("fig_loc_layermem", fig, display=False)
display(run.layer_table("resnet").style.format("{:+.4f}", subset=["layermem", "delta", "layermem_raw", "delta_raw"]))
claims = run.claims()
glue_claims(claims)

# %% [markdown]
# ```{glue:figure} fig_loc_layermem
# :name: fig-loc-layermem
# LayerMem (line) and ΔLayerMem (bars) of each layer: the ResNet's stem and
# residual blocks (block outputs include the residual addition), and the ViT's
# blocks.
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
ax.bar(avm.index - w / 2, avm["attention"], w, label="attention")
ax.bar(avm.index + w / 2, avm["mlp"], w, label="MLP")
ax.set_xlabel("block")
ax.set_ylabel("LayerMem")
ax.axhline(0, color="k", lw=0.5)
ax.legend()
fig.tight_layout()
plt.close(fig)
glue("fig_loc_attn_mlp", fig, display=False)

# %% [markdown]
# ```{glue:figure} fig_loc_attn_mlp
# :name: fig-loc-attn-mlp
# LayerMem of each ViT block's attention and MLP sub-layer (their outputs before
# the residual addition).
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
    ut = run.unit_table(which)
    taps = list(dict.fromkeys(ut["tap"]))
    ax.violinplot([ut.loc[ut.tap == t, "unitmem"] for t in taps], showmeans=True)
    ax.set_xticks(np.arange(1, len(taps) + 1), [t.replace("vit.blocks.", "").replace(".mlp.act", "") for t in taps],
                  rotation=30, ha="right")
    ax.set_title({"resnet": f"SSL {p.arch}", "vit": f"SSL {vit_arch} (MLP units)",
                  "supervised": f"supervised {p.arch}"}[which])
axes[0].set_ylabel("UnitMem")
fig.tight_layout()
plt.close(fig)
glue("fig_loc_unitmem", fig, display=False)
display(us.style.format({"mean unitmem": "{:.3f}", "mean classmem": "{:.3f}", "share of top units": "{:.2f}"})
        .hide(axis="index"))
clamped = max(run.units["vit"].clamped.values())
glue("loc_vit_clamped", float(clamped), display=False)

# %% [markdown]
# ```{glue:figure} fig_loc_unitmem
# :name: fig-loc-unitmem
# Distribution of UnitMem over the units of each layer (means marked).
# ```
#
# The table gives, per layer, the share of the 10 % most memorising units of
# that encoder. The paper: highly memorising units are spread over all layers
# in SSL, whereas supervised learning gathers them in the last layers. Here:
# {glue:text}`claim_L3_stat` (**{glue:text}`claim_L3_status`**). At most
# {glue:text}`loc_vit_clamped:.1%` of the ViT's signed per-point means were
# negative in any layer.
#
# ## SSL vs supervised: UnitMem and ClassMem

# %% tags=["remove-input"]
fig, axes = plt.subplots(1, 2, figsize=(9, 3.4), sharex=True, sharey=True)
for ax, which in zip(axes, ("resnet", "supervised")):
    ut = run.unit_table(which)
    ax.scatter(ut["classmem"], ut["unitmem"], s=6, alpha=0.5)
    ax.plot([0, 1], [0, 1], "k--", lw=0.5)
    ax.set_xlabel("ClassMem")
    ax.set_title("SSL" if which == "resnet" else "supervised")
axes[0].set_ylabel("UnitMem")
fig.tight_layout()
plt.close(fig)
glue("fig_loc_classmem", fig, display=False)

# %% [markdown]
# ```{glue:figure} fig_loc_classmem
# :name: fig-loc-classmem
# Each unit's UnitMem against its ClassMem, for the SSL and the supervised
# ResNet (same architecture and training points).
# ```
#
# The paper: SSL has more units that single out data points, supervised
# learning more units that single out classes. Here: {glue:text}`claim_L4_stat`
# (**{glue:text}`claim_L4_status`**).
#
# ## Atypical points

# %% tags=["remove-input"]
at = run.atypical()
display(at.style.format({"most": "{:+.4f}", "least": "{:+.4f}", "t": "{:.2f}", "p": "{:.2g}"}))
corr = run.unit_vs_sslmem()
glue("loc_unit_sslmem_rho", corr["rho"], display=False)
fig, ax = plt.subplots(figsize=(4.5, 3.2))
ax.scatter(run.sslmem_score(), run.units["resnet"].point_selectivity()[run.unit_candidate_pos], s=10)
ax.set_xlabel("SSLMem (normalised)")
ax.set_ylabel("largest unit index on the point")
fig.tight_layout()
plt.close(fig)
glue("fig_loc_unit_vs_sslmem", fig, display=False)

# %% [markdown]
# LayerMem of each ResNet layer on the quarter of the candidates with the
# highest SSLMem against the quarter with the lowest (one-sided Welch tests).
# The paper: atypical points, the most memorised ones, have higher LayerMem.
# Here: {glue:text}`claim_L5_stat` (**{glue:text}`claim_L5_status`**). The
# last block's output is the representation SSLMem ranked the points by, so it
# is left out of the count.
#
# ```{glue:figure} fig_loc_unit_vs_sslmem
# :name: fig-loc-unit-vs-sslmem
# Per candidate, its SSLMem against the largest UnitMem-style index any unit of
# f gives it (how strongly some unit singles it out).
# ```
#
# The paper: UnitMem correlates with SSLMem. Here: {glue:text}`claim_L6_stat`
# (**{glue:text}`claim_L6_status`**).
#
# ## Fine-tuning the most memorising layers

# %% tags=["remove-input"]
display(run.finetune.style.format({"accuracy": "{:.3f}", "p": "{:.2g}"}, na_rep="").hide(axis="index"))

# %% [markdown]
# A copy of f is fine-tuned on Fashion-MNIST training images with a new linear
# head, training only the layers with the largest ΔLayerMem, or as many of the
# last layers (everything else frozen, BatchNorm statistics fixed), and tested
# on held-out images. The paper: fine-tuning the most memorising layers gives
# better downstream accuracy. Here: {glue:text}`claim_L7_stat`
# (**{glue:text}`claim_L7_status`**).
#
# ## Pruning units by UnitMem

# %% tags=["remove-input"]
pr = run.pruning
base = pr.attrs["base_accuracy"]
glue("loc_base_acc", float(base), display=False)
fig, ax = plt.subplots(figsize=(5.5, 3.2))
for strategy, color in (("top", "tab:red"), ("bottom", "tab:blue"), ("random", "tab:gray")):
    g = pr[pr.strategy == strategy].groupby("fraction")["drop"]
    ax.errorbar(g.mean().index * 100, g.mean(), yerr=g.std().fillna(0), marker="o", color=color, label=strategy,
                capsize=3)
ax.axhline(0, color="k", lw=0.5)
ax.set_xlabel("% of units pruned")
ax.set_ylabel("linear-probe accuracy drop")
ax.legend()
fig.tight_layout()
plt.close(fig)
glue("fig_loc_pruning", fig, display=False)

# %% [markdown]
# Units of f are pruned (their outputs zeroed by a forward hook) by UnitMem:
# the top, the bottom, or random ones (error bars: spread over the random
# draws); a linear probe is refit on the pruned features. Unpruned accuracy:
# {glue:text}`loc_base_acc:.3f`.
#
# ```{glue:figure} fig_loc_pruning
# :name: fig-loc-pruning
# Drop in linear-probe accuracy after pruning 10 % and 20 % of f's units.
# ```
#
# The paper: pruning the most memorising units hurts more than pruning random
# ones. Here: {glue:text}`claim_L8_stat` (**{glue:text}`claim_L8_status`**).
#
# ## Verdicts on the claims
#
# The scoreboard's claims L1–L9, decided from the statistics above (a `smoke`
# run decides nothing). The scoreboard page shows these same cells.

# %% tags=["remove-input"]
display(claims.style)

# %% [markdown]
# ## Provenance

# %% tags=["remove-input"]
display(Markdown(provenance_markdown(run.provenance)))
display(Markdown(f"Per-layer and per-unit tables and this summary are in `{run.run_dir}` "
                 f"(`layermem_*.csv`, `units_*.csv`, `pruning.csv`, `summary.json`)."))
