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
# ViP (Yu et al. 2023) at ε = ∞, 20 and 8 and finds that memorisation and
# linear-probe accuracy both fall as ε shrinks (S24, S25).
#
# Here MAE encoders (a BatchNorm-free ViT) train with DP-SGD: Poisson-sampled
# batches, each sample's own MAE loss gradient (computed with `torch.func`),
# clipped to norm C, summed, plus Gaussian noise of standard deviation σ·C.
# σ for a target ε comes from opacus' RDP accountant with δ = 1/N, which also
# reports the ε actually spent. ε = ∞ keeps the clipping and drops the noise.
# f's and g's families train at the same ε (f on S_S ∪ S_C, g on S_S ∪ S_I);
# the candidates S_C are scored and f is linear-probed on Fashion-MNIST.
#
# **Why only MAE.** DP-SGD bounds each sample's influence by clipping that
# sample's gradient. MAE's loss is a sum of per-sample reconstruction losses, so
# each sample has a gradient of its own. A contrastive loss such as SimCLR's
# NT-Xent compares every sample with the others of its batch (its negatives),
# and its projector's BatchNorm mixes them too: one sample's gradient then
# depends on the whole batch, clipping it does not bound that sample's
# influence, and the DP-SGD guarantee does not hold. The paper, following ViP,
# trains only MAE privately.

# %% tags=["parameters"]
device = "cpu"  # "cpu", "cuda" or "auto"
preset = "smoke"  # smoke | cpu | gpu | paper
seed = 0
epsilons = None  # target ε values, e.g. [float("inf"), 20, 8]; None = preset default
max_grad_norm = None  # per-sample clipping norm C; None = preset default
epochs = None  # training epochs; None = preset default
models_per_family = None  # encoders per family (f and g); None = preset default
progress = False  # progress bars (off for papermill runs)

# %% tags=["remove-input"]
import math

import matplotlib.pyplot as plt
from IPython.display import Markdown, display
from myst_nb import glue

from memlib.experiments.dp_run import run_dp
from memlib.experiments.notebooks import refuse_unknown_parameters
from memlib.experiments.page import glue_claims, smoke_banner
from memlib.provenance import provenance_markdown

refuse_unknown_parameters()  # papermill only warns about a misspelt -p name

run = run_dp(preset, device=device, seed=seed, epsilons=epsilons, max_grad_norm=max_grad_norm, epochs=epochs,
             models_per_family=models_per_family, progress=progress)
p, s = run.preset, run.settings
smoke_banner(p)
r = run.results
glue("preset", p.name, display=False)
glue("arch", r.arch.iloc[0], display=False)
glue("epochs", p.epochs, display=False)
glue("n_models", p.models_per_family, display=False)
glue("clip", s["max_grad_norm"], display=False)
glue("delta", float(r.delta.iloc[0]), display=False)
glue("steps", int(r.steps.iloc[0]), display=False)

# %% [markdown]
# ## Setup of this run
#
# Preset {glue:text}`preset`: MAE on {glue:text}`arch`, {glue:text}`epochs`
# epochs ({glue:text}`steps` noisy steps), {glue:text}`n_models` encoder(s) per
# family, clipping norm C = {glue:text}`clip`, δ = {glue:text}`delta:.2g`.
#
# ## Memorisation and accuracy per ε (Table 5)

# %% tags=["remove-input"]
summary = run.summary()
display(summary.style.format({"ε spent": "{:.2f}", "σ": "{:.3f}", "sslmem raw": "{:+.4f}", "ci95 low": "{:+.4f}",
                              "ci95 high": "{:+.4f}", "sslmem score": "{:+.4f}", "linear acc": "{:.3f}",
                              "unitmem": "{:.3f}"}))
labels = ["∞" if math.isinf(e) else f"{e:g}" for e in summary.index]
fig, axes = plt.subplots(1, 2, figsize=(8, 3.2))
axes[0].errorbar(labels, summary["sslmem raw"], yerr=[summary["sslmem raw"] - summary["ci95 low"],
                                                      summary["ci95 high"] - summary["sslmem raw"]], fmt="o-", capsize=3)
axes[0].set(xlabel="target ε", ylabel="mean SSLMem on S_C (raw)")
axes[1].plot(labels, summary["linear acc"], "o-")
axes[1].set(xlabel="target ε", ylabel="linear-probe accuracy")
fig.tight_layout()
glue("fig_dp", fig, display=False)
plt.close(fig)
for e, row in summary.iterrows():
    key = "inf" if math.isinf(e) else f"{e:g}"
    glue(f"eps_spent_{key}", float(row["ε spent"]), display=False)
    glue(f"sigma_{key}", float(row["σ"]), display=False)
    glue(f"mem_{key}", float(row["sslmem raw"]), display=False)
    glue(f"acc_{key}", float(row["linear acc"]), display=False)

# %% [markdown]
# ```{glue:figure} fig_dp
# :name: fig-dp
# Left: mean SSLMem of the candidates (raw) with its 95 % confidence interval;
# right: linear-probe accuracy of f; per target ε (∞ = no noise).
# ```
#
# At target ε = 20 the run spent ε = {glue:text}`eps_spent_20:.2f` (σ =
# {glue:text}`sigma_20:.3f`), at ε = 8 it spent {glue:text}`eps_spent_8:.2f`
# (σ = {glue:text}`sigma_8:.3f`). Mean SSLMem: {glue:text}`mem_inf:+.4f` at
# ε = ∞, {glue:text}`mem_20:+.4f` at 20, {glue:text}`mem_8:+.4f` at 8;
# accuracy {glue:text}`acc_inf:.3f`, {glue:text}`acc_20:.3f`,
# {glue:text}`acc_8:.3f`.
#
# ## Verdicts on the claims
#
# One-sided Kendall's τ between ε and each f encoder's SSLMem (S24), accuracy
# (S25) or mean UnitMem of its MLP units (L9, from the localisation paper)
# (H1: each falls as ε shrinks; a `smoke` run decides nothing).

# %% tags=["remove-input"]
claims = run.claims()
display(claims.style)
glue_claims(claims)

# %% [markdown]
# ## Provenance

# %% tags=["remove-input"]
display(Markdown(provenance_markdown(run.provenance)))
display(Markdown(f"Per-encoder results (with ε spent, σ and δ) are in `{run.run_dir}` (`results.csv`)."))
