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
# # Removing the most memorised points
#
# The SSLMem paper's §4.4 (paper Figs. 3, 6, 7 and Table 14) trains an encoder f and a
# reference encoder g on disjoint halves of the training data, scores f's half
# with SSLMem, removes the k most memorised points (or, as a control, k random
# points) from f's half, retrains f from scratch on the rest and linear-probes
# it. Its claim (S19): removing memorised points hurts downstream accuracy more
# than removing random ones, also on data sets the encoder never saw.
#
# Here the encoders are SimCLR encoders trained on Fashion-MNIST, and the
# downstream sets are Fashion-MNIST itself and two digit sets they never saw:
# 5,000 real MNIST digits and scikit-learn's 8×8 digits (resized to 28×28).
# k is a fraction of f's half, as the paper's 500 … 16k of 25k (2 % … 64 %).
#
# **Segmentation (S20), a stand-in.** The paper also segments ADE20K. No
# segmentation labels are available offline, but a single-object image labels
# itself: every pixel brighter than a fifth of full intensity belongs to the
# image's object (its class), the rest is background. A linear read-out per
# location of the encoder's frozen spatial features (a 1×1 convolution, its
# logits upsampled to the image) is trained on these masks, and scored by mean
# IoU over the 11 classes, as the paper's mIoU (`memlib.probing.dense`). It
# asks the same question of a dense task; it is not ADE20K. Depth (S21) has
# no such stand-in.
#
# **The ranking.** The paper ranks f's half with one f and one g. Chapter 01
# measured that this ranking barely repeats over encoder pairs, and that the
# in/out design (every encoder trains on a random half of a pool, every point
# is scored by the encoders that did and did not see it) ranks the same points
# more reliably at equal compute. So f's half here is the first half of
# chapter 01's in/out pool, ranked by all of that design's encoders, and f and
# every retrain follow the same recipe (the preset's).
#
# Declared before the run: the unit is the retrained pair (top and random
# removal from the same retraining seed, at one k); for S19 each downstream
# set is a part of the claim, and a refuted set refutes it; S20 is the
# segmentation probe's mIoU. Tests are one-sided in both directions and
# against a SESOI of half a standard deviation over retrained pairs, with
# Holm's correction over the four tasks (the chapter's whole family); verdicts
# follow the one rule of `memlib.verdicts`. The planned n is
# {glue:text}`planned_pairs` retrained pairs (d = 0.5 at α = 0.05/4, 80 %
# power); a run with fewer is an interim look that can decide a claim only by
# The removed points come from a ranking, so S19 and S20 are inconclusive
# unless that ranking's split-half ρ over f's half reaches 0.5 (the threshold
# of chapter 01).

# %% tags=["parameters"]
device = "cpu"  # "cpu", "cuda" or "auto"
preset = "smoke"  # smoke | cpu | gpu | paper
seed = 0
half = None  # points in each half of the pool; None = preset default
fractions = None  # k as fractions of the half, e.g. [0.02, 0.08, 0.32]; None = preset default
seeds = None  # retraining seeds per (k, removal), e.g. [0, 1, 2]; None = preset default
epochs = None  # training epochs; None = preset default
progress = False  # progress bars (off for papermill runs)

# %% tags=["remove-input"]
import matplotlib.pyplot as plt
import numpy as np
from IPython.display import Markdown, display
from myst_nb import glue

from memlib.experiments.notebooks import refuse_unknown_parameters
from memlib.experiments.page import glue_claims, smoke_banner, table
from memlib.experiments.removal_run import PLANNED_PAIRS, run_removal
from memlib.provenance import provenance_markdown

refuse_unknown_parameters()  # papermill only warns about a misspelt -p name

# From the evidence store; what it lacks (the in/out ranking, the retrains) is computed first.
run = run_removal(
    preset, device=device, seed=seed, half=half, fractions=fractions, seeds=seeds, epochs=epochs, progress=progress
)
p, s = run.preset, run.settings
smoke_banner(p)
glue("preset", p.name, display=False)
glue("arch", p.arch, display=False)
glue("epochs", p.epochs, display=False)
glue("half", s["half"], display=False)
glue("ks", ", ".join(str(k) for k in sorted(run.results.loc[run.results.how == "top", "k"].unique())), display=False)
glue("n_seeds", len(s["seeds"]), display=False)
glue("n_inout", s["rank_encoders"], display=False)
rho = run.reliability()
glue("rho", "unknown (one encoder pair)" if rho != rho else f"{rho:.2f}", display=False)
glue("planned_pairs", PLANNED_PAIRS, display=False)
glue("n_retrained_pairs", len(s["fractions"]) * len(s["seeds"]), display=False)

# %% [markdown]
# ## Setup of this run
#
# Preset {glue:text}`preset`: architecture {glue:text}`arch`, SimCLR,
# {glue:text}`epochs` epochs. f's half is {glue:text}`half` points of chapter
# 01's in/out pool, ranked by the first {glue:text}`n_inout` encoders of that
# design (fixed by this chapter's config); the ranking's split-half ρ over
# these points (half the encoders against the other half) is
# **{glue:text}`rho`**.
# Removed: k = {glue:text}`ks` points, the most memorised or random ones, each
# retrained with {glue:text}`n_seeds` seed(s), so {glue:text}`n_retrained_pairs`
# retrained pairs per downstream set; a top-k and a random-k encoder share
# their retraining seed, so their accuracies pair up.

# %% tags=["remove-input"]
order = np.sort(run.scores)[::-1]
fig, ax = plt.subplots(figsize=(6, 2.8))
ax.plot(np.arange(1, len(order) + 1), order, ".", color="tab:red", ms=3)
for k in sorted(run.results.loc[run.results.how == "top", "k"].unique()):
    ax.axvline(k + 0.5, color="gray", ls="--", lw=1)
    ax.annotate(f"k = {k}", (k + 0.5, order.max()), xytext=(3, -10), textcoords="offset points", fontsize=8)
ax.axhline(0, color="k", lw=0.5)
ax.set(xlabel="rank in f's half (1 = most memorised)", ylabel="in/out score")
fig.tight_layout()
glue("fig_ranking", fig, display=False)
plt.close(fig)

# %% [markdown]
# ```{glue:figure} fig_ranking
# :name: fig-removal-ranking
# The in/out score of every point of f's half, sorted; left of a dashed line
# are the k points a top-k retrain loses.
# ```
#
# ## Accuracy against the number of points removed (paper Fig. 3)

# %% tags=["remove-input"]
curves = run.curves()
ncol = min(2, len(run.tasks))
nrow = -(-len(run.tasks) // ncol)
fig, axes = plt.subplots(nrow, ncol, figsize=(4.6 * ncol, 3.3 * nrow), squeeze=False)
base = run.results[run.results.how == "none"]
for ax in axes.ravel()[len(run.tasks) :]:
    ax.set_visible(False)
for ax, ds in zip(axes.ravel(), run.tasks):
    for how, colour in (("top", "tab:red"), ("random", "tab:blue")):
        c = curves[(curves.dataset == ds) & (curves.how == how)].sort_values("k")
        ax.plot(c.k, c["mean"], "o-", color=colour, label=f"{how} k removed")
        ax.fill_between(c.k, c["ci95 low"], c["ci95 high"], color=colour, alpha=0.2)
    ax.axhline(base[ds].mean(), color="gray", ls="--", label="nothing removed")
    if ds in run.floor:
        ax.axhline(run.floor[ds].mean(), color="k", ls=":", label="untrained encoder (floor)")
    seg = ds == "segmentation"
    ax.set(title=f"{p.dataset} segmentation (stand-in)" if seg else ds, xlabel="points removed k",
           ylabel="mIoU" if seg else "linear-probe accuracy")  # fmt: skip
axes[0][0].legend(fontsize=8)
fig.tight_layout()
glue("fig_removal", fig, display=False)
plt.close(fig)
fc = run.floor_check()
glue("dataset", p.dataset, display=False)
glue("trained_acc", float(fc.get("mean_trained", float("nan"))), display=False)
glue("floor_acc", float(fc.get("mean_floor", float("nan"))), display=False)
glue(
    "floor_verdict", ("beat" if fc["informative"] else "do not beat") if fc else "were not compared with", display=False
)
glue("floor_p", float(fc.get("p", float("nan"))), display=False)

# %% [markdown]
# ```{glue:figure} fig_removal
# :name: fig-removal-curves
# Linear-probe test accuracy (per downstream set) and segmentation mIoU (last
# panel) of the retrained encoders against the number of
# points removed from f's half (red: the most memorised, blue: random), mean
# over the retraining seeds with its 95 % confidence band (none with one seed);
# dashed: f itself; dotted: untrained encoders of the same architecture (the
# random floor, mean of three).
# ```
#
# On {glue:text}`dataset`, the trained encoders reach
# {glue:text}`trained_acc:.3f` and untrained ones {glue:text}`floor_acc:.3f`:
# the trained encoders **{glue:text}`floor_verdict`** the floor (one-sided Welch
# test over encoders, p = {glue:text}`floor_p:.2g`); a run whose encoders did
# not would decide nothing.
#
# ## Memorised against random removal, per k
#
# A one-sided paired t-test per task and k of H0: score(random removal) ≤
# score(top removal), pairs sharing their retraining seed (undefined with one
# seed).

# %% tags=["remove-input"]
tests = run.tests()
display(table(tests, hide_index=True))
glue("n_tests", len(tests), display=False)
glue("n_positive", int((tests["random − top"] > 0).sum()), display=False)
glue("n_significant", int((tests.p < 0.05).sum()), display=False)

# %% [markdown]
# In {glue:text}`n_positive` of the {glue:text}`n_tests` (task, k)
# pairs, removing random points left a better encoder than removing the most
# memorised ones; {glue:text}`n_significant` of these tests reject at 5 %
# (uncorrected).
#
# ## Verdicts on the claims
#
# S19 pools the paired differences over k and seeds per downstream set, S20
# over k and seeds of the segmentation mIoU (a `smoke` run decides nothing),
# Holm over the four tasks. S21 (depth) needs depth labels that no data set
# available offline has.

# %% tags=["remove-input"]
claims = run.claims()
display(table(claims, wrap=["statistic"]))
glue_claims(claims)
glue("claim_S19_planned_n", PLANNED_PAIRS, display=False)

# %% [markdown]
# ## Provenance

# %% tags=["remove-input"]
display(Markdown(provenance_markdown(run.provenance)))
display(
    Markdown(
        f"Every accuracy above is a row of the evidence store `{run.store.path.name}/` (table `probes`, "
        "experiment `removal`); the ranking's rows are chapter 01's in/out design (`sslmem-subset`)."
    )
)
