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
# # Differential privacy against memorisation
#
# The SSLMem paper's §4.6 (Table 5) trains MAE with differential privacy as in
# ViP (Yu et al. 2023) at ε = ∞, 20 and 8 and finds that memorisation (S24) and
# linear-probe accuracy (S25) both fall as ε shrinks; the localisation paper
# adds that UnitMem falls too (L9).
#
# **Settings compared.** MAE encoders (a BatchNorm-free ViT) train at several
# privacy levels, each with f's family on S_S ∪ S_C and g's on S_S ∪ S_I:
#
# - **MAE (no DP)**: the ordinary trainer, no clipping, no noise (the paper's
#   non-private baseline, the ε = ∞ end of the ordering);
# - **clip only**: DP-SGD's per-sample clipping with no noise (σ = 0, ε spent ∞),
#   which separates what clipping does from what the noise does;
# - **ε = …**: DP-SGD (Poisson-sampled batches, each sample's own MAE loss
#   gradient computed with `torch.func`, clipped to norm C, summed, plus
#   Gaussian noise of standard deviation σ·C). σ for a target ε comes from
#   opacus' RDP accountant at δ, which also reports the ε actually spent.
#
# **Public pretraining, as ViP does.** The noise on DP-SGD's averaged gradient
# has standard deviation σ·C/(q·N) per coordinate; with the few private points a
# CPU run affords it drowns every gradient, and encoders trained privately from
# scratch learned nothing (they probed at the random floor). ViP pretrains on
# public synthetic images before its private training; here each member first
# trains an ordinary MAE on public Fashion-MNIST training images that no split
# holds, and f and g of every setting start from it, so the settings differ only
# in the private training. (The `gpu` and `paper` presets, whose splits use the
# whole training split, train from scratch.)
#
# **Floors.** Untrained encoders of the same ViT, probed on the same sets, give
# the random floor. A setting whose f and g encoders do not beat it (one-sided
# Welch t-test) is **uninformative**: it is shown, but its numbers enter no
# claim. The public-pretrained encoders are a second floor, reported beside the
# first: it tells whether the private training moved the accuracy at all, but it
# excludes nothing, since an encoder that DP kept at its public start has a real
# representation. It is not read as the effect itself: the non-private setting
# need not move beyond its public start either, and the settings differ in
# their number of private steps, so "the private points did not change the
# encoder" is reported beside the claims, not tested as one.
#
# **Declared score: calibrated SSLMem.** The candidates S_C and the extra points
# S_E (test points no encoder trained on) are scored with the same views; per
# f encoder, the mean over S_C of (align_g − align_f) minus the same mean over
# S_E, so that an encoder's chance offset does not count.
#
# **Why only MAE.** DP-SGD bounds each sample's influence by clipping that
# sample's gradient. MAE's loss is a sum of per-sample reconstruction losses, so
# each sample has a gradient of its own. A contrastive loss such as SimCLR's
# NT-Xent compares every sample with the others of its batch, and its projector's
# BatchNorm mixes them too: one sample's gradient then depends on the whole
# batch, clipping it does not bound that sample's influence, and the DP-SGD
# guarantee does not hold. The paper, following ViP, trains only MAE privately.

# %% tags=["parameters"]
device = "cpu"  # "cpu", "cuda" or "auto"
preset = "smoke"  # smoke | cpu | gpu | paper
seed = 0
epsilons = None  # finite target ε values, e.g. [20, 8]; None = preset default (the baselines always train)
delta = None  # δ of the accountant, below 1/N; None = preset default (1e-5 at smoke and cpu)
max_grad_norm = None  # per-sample clipping norm C; None = preset default
epochs = None  # private training epochs; None = preset default
models_per_family = None  # encoders per family (f and g) and setting; None = preset default
public = None  # public pretraining images per member (0 = train from scratch); None = preset default
progress = False  # progress bars (off for papermill runs)

# %% tags=["remove-input"]
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from IPython.display import Markdown, display
from myst_nb import glue

from memlib.experiments.dp_run import CLIP, PLAIN
from memlib.experiments.evidence_report import store_markdown
from memlib.experiments.notebooks import refuse_unknown_parameters
from memlib.experiments.page import glue_claims, smoke_banner, table
from memlib.experiments.registry import run_experiment
from memlib.provenance import provenance_markdown

refuse_unknown_parameters()  # papermill only warns about a misspelt -p name

# Every number below is analysed from the evidence store's rows; what the store lacks is computed first.
run = run_experiment("dp", preset, device=device, seed=seed, progress=progress, epsilons=epsilons, delta=delta,
                     max_grad_norm=max_grad_norm, epochs=epochs, models_per_family=models_per_family, public=public)
p, s = run.preset, run.settings
smoke_banner(p)
r, lv = run.results, run.levels
n_private = int(p.shared) + int(p.candidate)
dp_rows = r[r.kind == "dp"]
glue("preset", p.name, display=False)
glue("arch", r.arch.iloc[0], display=False)
glue("epochs", p.epochs, display=False)
glue("n_models", p.models_per_family, display=False)
glue("n_private", n_private, display=False)
glue("clip", s["max_grad_norm"], display=False)
glue("delta", s["delta"], display=False)
glue("one_over_n", 1 / n_private, display=False)
glue("dp_batch", s["dp_batch_size"] or n_private, display=False)
glue("dp_steps", int(dp_rows.steps.iloc[0]), display=False)
glue("plain_batch", min(p.batch_size, n_private), display=False)
glue("plain_steps", int(r.loc[r.kind == "plain", "steps"].iloc[0]), display=False)
glue("settings_text", ", ".join(lv.index), display=False)
glue("public_text", f"{s['public']:,} public images, {s['public_epochs']} epoch(s) of batch {s['public_batch_size']}"
     if s["public"] else "none (every encoder trains from scratch)", display=False)
glue("privacy_text", "; ".join(f"{name}: ε spent {g.epsilon.max():.2f} with σ = {g.noise_multiplier.iloc[0]:.3f}"
                               for name, g in dp_rows.groupby("setting", sort=False)), display=False)

# %% [markdown]
# ## Setup of this run
#
# Preset {glue:text}`preset`: MAE on {glue:text}`arch`, {glue:text}`n_models`
# encoder(s) per family and setting, each trained privately on
# N = {glue:text}`n_private` points for {glue:text}`epochs` epochs. Settings:
# {glue:text}`settings_text`. Public pretraining per member:
# {glue:text}`public_text`.
#
# DP-SGD draws Poisson batches of expected size {glue:text}`dp_batch`
# ({glue:text}`dp_steps` noisy steps), clips each sample's gradient to
# C = {glue:text}`clip` and accounts at δ = {glue:text}`delta:.0e`, below
# 1/N = {glue:text}`one_over_n:.2g` as DP needs (δ ≪ 1/N: a δ of 1/N would
# allow publishing a whole point). The ordinary trainer of MAE (no DP) takes
# batches of {glue:text}`plain_batch` ({glue:text}`plain_steps` steps).
# Privacy actually spent: {glue:text}`privacy_text`.

# %% tags=["remove-input"]
summary = run.summary()
privacy = summary[["ε spent", "σ", "δ", "steps", "f encoders"]].copy()
privacy.insert(3, "C", [np.nan if n == PLAIN else s["max_grad_norm"] for n in privacy.index])
display(table(privacy, 3, index_name="setting"))

# %% [markdown]
# ### Planned n
#
# Declared before the run: 3 encoders per family and setting, the chapter's
# compute at `cpu` (about 30 minutes on two workers). The SESOI of every claim
# is a weak monotone trend, Kendall |τ| = 0.2. The table gives, per claim, the
# f encoders a one-sided Kendall test needs for 80 % power to detect it at the
# chapter's Holm level (`memlib.verdicts.plan_n_kendall`) and the smallest p any
# order of this run's encoders can reach: at this n only a trend far stronger
# than the SESOI can be reproduced.

# %% tags=["remove-input"]
display(table(run.planned_n(), digits=3))

# %% [markdown]
# ### Does the non-private MAE memorise? (the regime these claims need)
#
# "DP lowers memorisation" can only be seen where the non-private encoder
# memorises. Beside this chapter's own baseline (its MAE (no DP) f encoders,
# calibrated SSLMem over encoders, one-sided t-test), the pilot of chapter 01
# trained MAE from scratch in two regimes of equal compute per encoder (150
# points × 200 epochs, 11 pairs after its planned top-up; 50 points × 600
# epochs, 3 pairs) to find one where it does.

# %% tags=["remove-input"]
base = run.baseline_memorisation()
spread = f"sd {base['sd']:.4f} over" if np.isfinite(base["sd"]) else "no spread with"
glue("base_text", f"{base['mean']:+.4f} ({spread} {base['n']} f encoder(s), one-sided p = {base['p']:.2g})",
     display=False)
pilot = run_experiment("mae-regime", preset, device=device, seed=seed, progress=progress)
display(table(pilot.table(), digits=3))
chosen = pilot.chosen()
glue("pilot_text", "none of the pilot's regimes memorises by the rule" if chosen is None else
     f"the pilot's regime {chosen[0]} points × {chosen[1]} epochs memorises by the rule", display=False)

# %% [markdown]
# This chapter's non-private baseline: calibrated SSLMem {glue:text}`base_text`.
# In the pilot, {glue:text}`pilot_text`. Where neither memorises significantly,
# S24 and L9 cannot be seen at this scale whatever DP does, and stay
# inconclusive for that reason; the claims below are still tested as declared.

# %% [markdown]
# ## The floors: which settings learned something

# %% tags=["remove-input"]
floors = {"random (untrained)": run.floor, "public (pretrained start)": run.public}
ft = {name: {"encoders": len(d), "linear acc": d.linear_acc.mean() if len(d) else np.nan,
             "sd": d.linear_acc.std(ddof=1) if len(d) > 1 else np.nan, "kNN acc": d.knn_acc.mean() if len(d) else np.nan}
      for name, d in floors.items()}
display(table(pd.DataFrame(ft).T, 3, index_name="floor"))
display(table(summary[["linear acc (f, g)", "random floor p", "informative", "public floor p", "ranked in claims"]],
              3, index_name="setting"))
informative = [n for n in lv.index if lv.loc[n, "informative"]]
below = [n for n in lv.index if not lv.loc[n, "informative"]]
glue("floor_acc", float(run.floor.linear_acc.mean()), display=False)
glue("n_floor", len(run.floor), display=False)
glue("public_acc_text", f"{run.public.linear_acc.mean():.3f}" if len(run.public) else "— (no public pretraining)",
     display=False)
glue("informative_text", ", ".join(informative) or "none", display=False)
glue("below_text", ", ".join(f"{n} ({lv.loc[n, 'acc']:.3f}, p = {lv.loc[n, 'floor_p']:.2g})" for n in below)
     or "none", display=False)

# %% [markdown]
# The {glue:text}`n_floor` untrained encoders probe at
# {glue:text}`floor_acc:.3f` on average; the public-pretrained encoders at
# {glue:text}`public_acc_text`. Settings that beat the random floor
# (informative): {glue:text}`informative_text`. Below it (shown, left out of
# every claim): {glue:text}`below_text`. "Public floor p" tests whether the
# private training raised the accuracy above the public start; it is reported,
# not used to exclude a setting.
#
# ## Memorisation, accuracy and UnitMem per setting (Table 5)

# %% tags=["remove-input"]
display(table(summary[["calibrated SSLMem", "sd over f", "raw SSLMem", "linear acc (f, g)", "UnitMem"]], 4,
              index_name="setting"))
names = list(lv.index)
fig, axes = plt.subplots(1, 2, figsize=(9, 3.4))
for k, name in enumerate(names):
    hollow = not lv.loc[name, "informative"]
    g = r[r.setting == name]
    axes[0].scatter(np.full(len(g), k), g.sslmem_calibrated, facecolors="none" if hollow else "C0", edgecolors="C0")
    axes[0].hlines(g.sslmem_calibrated.mean(), k - 0.25, k + 0.25, color="k")
    e = run.encoders[run.encoders.setting == name]
    axes[1].scatter(np.full(len(e), k), e.linear_acc, facecolors="none" if hollow else "C1", edgecolors="C1")
axes[0].axhline(0, color="grey", lw=0.8)
axes[0].set(ylabel="calibrated SSLMem of S_C (per f)")
axes[1].axhline(run.floor.linear_acc.mean(), color="grey", ls="--", label="random floor")
if len(run.public):
    axes[1].axhline(run.public.linear_acc.mean(), color="C2", ls=":", label="public start")
axes[1].set(ylabel="linear-probe accuracy (f and g)")
axes[1].legend(fontsize=7)
for ax in axes:
    ax.set_xticks(range(len(names)), names, rotation=20, fontsize=8)
fig.tight_layout()
glue("fig_dp", fig, display=False)
plt.close(fig)
glue("mem_text", "; ".join(f"{n} {summary.loc[n, 'calibrated SSLMem']:+.4f}" for n in names), display=False)
glue("acc_text", "; ".join(f"{n} {summary.loc[n, 'linear acc (f, g)']:.3f}" for n in names), display=False)
glue("clip_label", CLIP, display=False)
glue("ranking_text", " > ".join(lv[lv.ranked].sort_values("privacy_rank", ascending=False).index), display=False)

# %% [markdown]
# ```{glue:figure} fig_dp
# :name: fig-dp
# Left: calibrated SSLMem of the candidates, one point per f encoder (bar: the
# mean); right: linear-probe accuracy of every f and g encoder, with the random
# floor (dashed) and the public-pretrained start (dotted). Hollow markers: a
# setting that does not beat the random floor.
# ```
#
# Mean calibrated SSLMem per setting: {glue:text}`mem_text`. Linear-probe
# accuracy: {glue:text}`acc_text`.
#
# ## Verdicts on the claims
#
# One-sided Kendall's τ between the privacy level ({glue:text}`ranking_text`)
# and each f encoder's calibrated SSLMem (S24), linear-probe
# accuracy (S25) or mean UnitMem of its MLP units (L9), in both directions, over
# the informative settings only (exact p, or a permutation test where settings
# tie), with Holm's correction over the three claims, decided by the one
# verdict rule of `memlib.verdicts` (unit: f encoder). {glue:text}`clip_label` is not ranked:
# its ε is ∞ like the non-private baseline, so ranking it below that would
# assert that clipping alone lowers memorisation, which no claim says. A
# setting with one f encoder carries no estimate of training noise, so the rule
# counts the fewest f encoders of any ranked setting; fewer than two informative
# settings leave a claim inconclusive. A `smoke` run decides nothing.

# %% tags=["remove-input"]
claims = run.claims()
display(table(claims, wrap=["statistic"]))
glue_claims(claims)

# %% [markdown]
# ## Provenance

# %% tags=["remove-input"]
display(Markdown(provenance_markdown(run.provenance)))
display(Markdown("This page's analysis read every number from the evidence store: each encoder's alignment losses "
                 "on S_C and S_E, probe accuracies, privacy spent and UnitMem, and the floors' probes. Load them "
                 "with `memlib.evidence.EvidenceStore('results').load('results')`."))
display(Markdown(store_markdown(run.store, run.encoder_keys)))
