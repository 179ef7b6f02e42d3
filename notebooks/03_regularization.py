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
# # An alignment regulariser against memorisation
#
# The SSLMem paper's §4.4 (Fig. 4) adds a term to the SSL loss that rewards the
# two views of an image for being *far apart* in representation space:
#
# $$L_{total} = (1 - \lambda)\, L_{SSL} - \lambda\, \mathbb{E}_{x', x''}\, d(f(x'), f(x''))$$
#
# with f(·) the encoder's whole representation (flattened, L2-normalised), d
# the Euclidean distance, two fresh views of each image and the mean over the
# mini-batch. Since SSLMem measures how much better f aligns a point's views
# than g does, a larger λ should lower memorisation (S22), and accuracy with
# it (S23). The official code has the sign of the term reversed and never
# switches it on; here the paper's sign is used.
#
# For each method and λ, f and g families train as in chapter 01 (f on
# S_S ∪ S_C, g on S_S ∪ S_I, both with the same λ); the candidates S_C are
# scored and f is linear-probed on Fashion-MNIST. λ = 0 is the plain method (its
# SimCLR encoders are those of chapter 01 at the same preset and seed).

# %% tags=["parameters"]
device = "cpu"  # "cpu", "cuda" or "auto"
preset = "smoke"  # smoke | cpu | gpu | paper
seed = 0
lambdas = None  # λ values, e.g. [0, 0.1, 0.2, 0.4, 0.6]; None = preset default
methods = None  # e.g. ["simclr", "mae"]; None = preset default
epochs = None  # training epochs; None = preset default
models_per_family = None  # encoders per family (f and g); None = preset default
progress = False  # progress bars (off for papermill runs)

# %% tags=["remove-input"]
import matplotlib.pyplot as plt
from IPython.display import Markdown, display
from myst_nb import glue

from memlib.experiments.notebooks import refuse_unknown_parameters
from memlib.experiments.page import glue_claims, smoke_banner
from memlib.experiments.regularization_run import run_regularization
from memlib.provenance import provenance_markdown

refuse_unknown_parameters()  # papermill only warns about a misspelt -p name

run = run_regularization(preset, device=device, seed=seed, lambdas=lambdas, methods=methods, epochs=epochs,
                         models_per_family=models_per_family, progress=progress)
p, s = run.preset, run.settings
smoke_banner(p)
glue("preset", p.name, display=False)
glue("epochs", p.epochs, display=False)
glue("n_models", p.models_per_family, display=False)
glue("lambdas", ", ".join(f"{x:g}" for x in s["lambdas"]), display=False)
glue("methods", ", ".join(s["methods"]), display=False)
glue("archs", ", ".join(f"{m} on {a}" for m, a in run.results.groupby("method").arch.first().items()), display=False)
glue("n_candidate", len(next(iter(run.points.values()))), display=False)

# %% [markdown]
# ## Setup of this run
#
# Preset {glue:text}`preset`: {glue:text}`archs`, {glue:text}`epochs` epochs,
# {glue:text}`n_models` encoder(s) per family, λ ∈ {glue:text}`lambdas`;
# {glue:text}`n_candidate` candidates scored per setup.
#
# ## Memorisation and accuracy against λ (Fig. 4)

# %% tags=["remove-input"]
summary = run.summary()
display(summary.style.format({c: "{:.4f}" for c in summary.columns if c != "n encoders"}))
fig, axes = plt.subplots(1, 2, figsize=(9, 3.4))
for method, g in summary.groupby(level="method"):
    lam = g.index.get_level_values("lam")
    line, = axes[0].plot(lam, g["sslmem raw"], "o-", label=method)
    axes[0].fill_between(lam, g["ci95 low"], g["ci95 high"], color=line.get_color(), alpha=0.2)
    axes[1].plot(lam, g["linear acc"], "o-", color=line.get_color(), label=method)
axes[0].set(xlabel="λ", ylabel="mean SSLMem on S_C (raw)")
axes[1].set(xlabel="λ", ylabel="linear-probe accuracy")
axes[0].legend()
fig.tight_layout()
glue("fig_lambda", fig, display=False)
plt.close(fig)
for method, g in summary.groupby(level="method"):
    lo, hi = g.iloc[0], g.iloc[-1]
    glue(f"{method}_mem_lo", float(lo["sslmem raw"]), display=False)
    glue(f"{method}_mem_hi", float(hi["sslmem raw"]), display=False)
    glue(f"{method}_acc_lo", float(lo["linear acc"]), display=False)
    glue(f"{method}_acc_hi", float(hi["linear acc"]), display=False)
glue("lam_max", f"{s['lambdas'][-1]:g}", display=False)

# %% [markdown]
# ```{glue:figure} fig_lambda
# :name: fig-regularization
# Left: mean SSLMem of the candidates (raw, g's alignment loss minus f's) with
# its 95 % confidence band over the candidates; right: linear-probe accuracy of
# f, mean over f's family; per method, against λ.
# ```
#
# From λ = 0 to λ = {glue:text}`lam_max`, SimCLR's mean SSLMem goes from
# {glue:text}`simclr_mem_lo:+.4f` to {glue:text}`simclr_mem_hi:+.4f` and its
# accuracy from {glue:text}`simclr_acc_lo:.3f` to {glue:text}`simclr_acc_hi:.3f`;
# MAE's SSLMem from {glue:text}`mae_mem_lo:+.4f` to {glue:text}`mae_mem_hi:+.4f`
# and its accuracy from {glue:text}`mae_acc_lo:.3f` to {glue:text}`mae_acc_hi:.3f`.
#
# ## Verdicts on the claims
#
# One-sided Kendall's τ between λ and each f encoder's SSLMem (S22) or accuracy
# (S23), per method (H1: it falls as λ grows; a `smoke` run decides nothing).

# %% tags=["remove-input"]
display(run.trends().style.format({"tau": "{:+.2f}", "p": "{:.2g}"}).hide(axis="index"))
claims = run.claims()
display(claims.style)
glue_claims(claims)

# %% [markdown]
# ## Provenance

# %% tags=["remove-input"]
display(Markdown(provenance_markdown(run.provenance)))
display(Markdown(f"Per-encoder results are in `{run.run_dir}` (`results.csv`)."))
