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
# paper's §4.2 (Fig. 2c, Tables 2 and 16) expects the mean score to be clearly
# positive on the candidates S_C (seen by f only), about 0 on the shared points
# S_S, slightly positive on the extra points S_E (seen by neither) and negative
# on the independent points S_I (seen by g only), and the most atypical points
# to score highest (Fig. 1).
#
# Here f and g are SimCLR encoders trained on Fashion-MNIST; each family
# (f's and g's) holds one or more encoders trained from different seeds, and
# the expectations over f and g are means over each family. Scores are
# normalised by their range over all scored points (so they lie in [-1, 1]);
# raw differences are reported too.

# %% tags=["parameters"]
device = "cpu"  # "cpu", "cuda" or "auto"
preset = "smoke"  # smoke | cpu | gpu | paper
seed = 0
shared = None  # size of S_S; None = preset default
candidate = None  # size of S_C (= S_I = S_E); None = preset default
epochs = None  # training epochs; None = preset default
models_per_family = None  # encoders per family (f and g); None = preset default
views = None  # K augmented views per point; None = preset default
progress = False  # progress bars (off for papermill runs)

# %% tags=["remove-input"]
import matplotlib.pyplot as plt
import numpy as np
from IPython.display import Markdown, display
from myst_nb import glue

from memlib import plots
from memlib.data.splits import SUBSET_LABELS, SUBSETS
from memlib.experiments import run_sslmem
from memlib.experiments.notebooks import refuse_unknown_parameters
from memlib.experiments.page import glue_claims, smoke_banner
from memlib.provenance import provenance_markdown

refuse_unknown_parameters()  # papermill only warns about a misspelt -p name

run = run_sslmem(preset, device=device, seed=seed, shared=shared, candidate=candidate, epochs=epochs,
                 models_per_family=models_per_family, views=views, progress=progress)
p = run.preset
smoke_banner(p)
glue("preset", p.name, display=False)
glue("arch", p.arch, display=False)
glue("epochs", p.epochs, display=False)
glue("n_models", p.models_per_family, display=False)
glue("views", p.views, display=False)
glue("n_train_f", len(run.splits.f_train), display=False)
sizes = run.splits.sizes()
for s in SUBSETS:
    glue(f"n_{s}", sizes[s], display=False)

# %% [markdown]
# ## Setup of this run
#
# Preset {glue:text}`preset`: architecture {glue:text}`arch`, SimCLR,
# {glue:text}`epochs` epochs on {glue:text}`n_train_f` training points per
# encoder, {glue:text}`n_models` encoder(s) per family, K = {glue:text}`views`
# views per point (pairwise form of eq. 1). Scored subsets: S_C
# {glue:text}`n_candidate`, S_S {glue:text}`n_shared`, S_E {glue:text}`n_extra`,
# S_I {glue:text}`n_independent` points.
#
# ## Scores per subset (Fig. 2c)

# %% tags=["remove-input"]
summary = run.summary()
display(summary.style.format("{:.4f}", subset=[c for c in summary.columns if c != "n"]))
means = summary["mean score"]
for s in SUBSETS:
    glue(f"mean_{s}", float(means[SUBSET_LABELS[s]]), display=False)
order = " > ".join(means.sort_values(ascending=False).index)
glue("observed_order", order, display=False)
glue("order_verdict", "holds" if run.order_holds() else "does not hold", display=False)
glue("fig_dist", plots.score_distributions(run.scores(), title=f"preset {p.name}"), display=False)

# %% [markdown]
# Mean normalised scores: S_C {glue:text}`mean_candidate:+.4f`, S_E
# {glue:text}`mean_extra:+.4f`, S_S {glue:text}`mean_shared:+.4f`, S_I
# {glue:text}`mean_independent:+.4f`. The observed order of the means is
# {glue:text}`observed_order`; the paper's order S_C > S_E > S_S > S_I
# **{glue:text}`order_verdict`** in this run.
#
# ```{glue:figure} fig_dist
# :name: fig-sslmem-dist
# Distribution of the memorisation scores per subset (dashed: means).
# ```
#
# ## Memorisation as a spectrum (Fig. 5), and which points are significant
#
# The share of each subset whose score exceeds a threshold, over thresholds.
# The paper reads a smooth fall as memorisation being a continuous spectrum
# rather than a few outliers. Per point, the paper gives no uncertainty; here
# each candidate's score is tested one-sided against the shared points S_S as
# the null distribution, with a Benjamini–Hochberg false-discovery-rate
# correction at 5 % (statsmodels).

# %% tags=["remove-input"]
glue("fig_fraction_above", plots.fraction_above_curves(run.scores(), title=f"preset {p.name}"), display=False)
sig = run.significance()
display(sig.style.format({"share": "{:.1%}"}))
glue("n_sig_candidates", int(sig.loc["S_C", "significant"]), display=False)
glue("n_candidates", int(sig.loc["S_C", "n"]), display=False)
glue("n_sig_independent", int(sig.loc["S_I", "significant"]), display=False)

# %% [markdown]
# ```{glue:figure} fig_fraction_above
# :name: fig-fraction-above
# Fraction of each subset above a threshold on the normalised score (Fig. 5 of
# the paper shows S_C).
# ```
#
# {glue:text}`n_sig_candidates` of the {glue:text}`n_candidates` candidates
# score significantly above the shared points after the FDR correction
# ({glue:text}`n_sig_independent` of S_I do, which f never saw).
#
# A second view of per-point uncertainty: how much a candidate's score depends
# on which encoders were drawn. Each candidate's raw score gets a 95 %
# percentile-bootstrap interval that resamples f's and g's encoders (the views
# stay fixed); the figure shows every candidate, most memorised first.

# %% tags=["remove-input"]
if p.models_per_family >= 2:
    iv = run.point_intervals()
    fig, ax = plt.subplots(figsize=(8, 3))
    x = np.arange(len(iv))
    ax.errorbar(x, iv["raw"], yerr=[iv["raw"] - iv["low"], iv["high"] - iv["raw"]], fmt="o", ms=3, lw=0.8,
                color="tab:red")
    ax.axhline(0, color="gray", lw=0.8)
    ax.set(xlabel="candidate (most memorised first)", ylabel="raw SSLMem, 95 % interval")
    ax.set_title("raw score of each candidate with its 95 % bootstrap interval over f's and g's encoders",
                 fontsize=8)
    fig.tight_layout()
    display(fig)
    plt.close(fig)
    glue("n_above_zero", int(iv["above_zero"].sum()), display=False)
    display(Markdown(f"{int(iv['above_zero'].sum())} of {len(iv)} candidates have an interval entirely above 0."))
else:
    display(Markdown(f"(Needs ≥ 2 encoders per family; this run has {p.models_per_family}.)"))
#
# ## One-sided t-tests (Tables 2 and 16)
#
# Welch t-tests of each null hypothesis on the normalised scores, with Cohen's
# d and Holm's correction over the ten tests (`reject` at 5 % after Holm). The
# last two-sample row, S_C against S_I, is not in the paper's table.

# %% tags=["remove-input"]
tests = run.tests()
display(tests.style.format({"t": "{:.2f}", "p": "{:.2g}", "p_holm": "{:.2g}", "df": "{:.0f}", "cohens_d": "{:.2f}",
                            "mean_a": "{:+.4f}", "mean_b": "{:+.4f}"}).hide(axis="index"))
rej = tests.set_index("null hypothesis")
paper_four = ["m(S_C) ≤ m(S_S)", "m(S_C) ≤ m(S_E)", "m(S_S) ≤ m(S_I)", "m(S_E) ≤ m(S_I)"]
n_rej = int(rej.loc[paper_four, "reject"].sum())
glue("n_paper_rejected", n_rej, display=False)
glue("p_cs", float(rej.loc["m(S_C) ≤ m(S_S)", "p"]), display=False)
glue("d_cs", float(rej.loc["m(S_C) ≤ m(S_S)", "cohens_d"]), display=False)
glue("p_si", float(rej.loc["m(S_S) ≤ m(S_I)", "p"]), display=False)
glue("shared_lo", float(summary.loc["S_S", "ci95 low"]), display=False)
glue("shared_hi", float(summary.loc["S_S", "ci95 high"]), display=False)
glue("p_ci", float(rej.loc["m(S_C) ≤ m(S_I)", "p"]), display=False)

# %% [markdown]
# Of the paper's four null hypotheses of Table 2, {glue:text}`n_paper_rejected`
# are rejected at 5 % after Holm's correction. For m(S_C) ≤ m(S_S): p =
# {glue:text}`p_cs:.2g`, Cohen's d = {glue:text}`d_cs:.2f`; for m(S_S) ≤ m(S_I):
# p = {glue:text}`p_si:.2g`. The most direct check of memorisation, S_C (seen
# only by f) against S_I (seen only by g), gives p = {glue:text}`p_ci:.2g`
# (one-sided, before Holm's correction).
#
# The shared points S_S, which both families trained on, have mean score
# {glue:text}`mean_shared:+.4f` (95 % CI [{glue:text}`shared_lo:+.4f`,
# {glue:text}`shared_hi:+.4f`]) where the paper has about 0. A difference
# between the two families that is the same for every point shifts all subsets
# alike: it leaves the comparisons between subsets (Table 2) unchanged but moves
# the tests against 0 (Table 16).
#
# ## Verdicts on the claims
#
# The scoreboard's claims S1–S8, decided from the tests above, and three
# claims about the spectrum of scores, decided from the figures below: S9
# (atypical points score highest: one-sided Kendall's τ between a candidate's
# score and its atypicality, one minus its mean cosine similarity to its five
# nearest same-class neighbours in g's representation), S11 (the most memorised
# tenth of S_C spans at least half of the candidates' range of alignment loss
# on f, and the candidate with the lowest loss on f is not among them) and S12
# (the fraction above a threshold in Fig. 5 never drops by more than 10 % of
# S_C between neighbouring thresholds; our criterion for "smoothly"). A `smoke` run
# decides nothing). The scoreboard page shows these same cells.

# %% tags=["remove-input"]
claims = run.claims()
display(claims.style)  # a Styler shows the statistic strings untruncated
glue_claims(claims)

# %% [markdown]
# ## Alignment on f vs g (Fig. 2a)

# %% tags=["remove-input"]
cand = run.result.subset(np.flatnonzero(run.subset == "candidate"))
glue("fig_scatter", plots.alignment_scatter(cand.align_f, cand.align_g, cand.score, title="candidates S_C"),
     display=False)
glue("corr_f_score", float(np.corrcoef(cand.align_f, cand.score)[0, 1]), display=False)

# %% [markdown]
# ```{glue:figure} fig_scatter
# :name: fig-sslmem-scatter
# Alignment loss of each candidate on f and on g, coloured by its memorisation
# score. Points above the diagonal align better on f, which trained on them.
# ```
#
# The correlation between a candidate's alignment loss on f and its score is
# {glue:text}`corr_f_score:.2f` (Pearson). The paper (Fig. 2a) finds high
# memorisation over a wide range of alignment losses on f: the score is the gap
# to g, not the loss on f.
#
# ## Most and least memorised candidates (Fig. 1)

# %% tags=["remove-input"]
ci = np.flatnonzero(run.subset == "candidate")
glue("fig_gallery", plots.gallery(run.images[ci], run.result.score[ci], run.labels[ci], run.classes,
                                  k=min(8, len(ci))), display=False)

# %% [markdown]
# ```{glue:figure} fig_gallery
# :name: fig-sslmem-gallery
# The candidates with the highest (top row) and lowest (bottom row) scores, with
# score and class.
# ```
#
# ## Downstream accuracy and training

# %% tags=["remove-input"]
display(run.probe.style.format({"linear_acc": "{:.3f}", "linear_train_acc": "{:.3f}", "knn_acc": "{:.3f}"}))
f_acc = run.probe.loc[run.probe.family == "f", "linear_acc"]
glue("f_linear_acc", float(f_acc.mean()), display=False)
glue("f_linear_sd", float(f_acc.std(ddof=1)) if len(f_acc) > 1 else float("nan"), display=False)
glue("probe_train_n", p.probe_train if p.probe_train is not None else "all", display=False)
glue("fig_curves", plots.training_curves(run.histories), display=False)

# %% [markdown]
# Linear-probe accuracy of the f encoders on held-out Fashion-MNIST test images:
# {glue:text}`f_linear_acc:.3f` (standard deviation over f's family
# {glue:text}`f_linear_sd:.3f`), probe trained on {glue:text}`probe_train_n`
# training images.
#
# ```{glue:figure} fig_curves
# :name: fig-sslmem-curves
# Training loss and kNN accuracy (2,000-image bank) per epoch of each encoder (red: f, blue: g).
# ```
#
# ## Provenance

# %% tags=["remove-input"]
display(Markdown(provenance_markdown(run.provenance)))
display(Markdown(f"Per-point scores, splits and this summary are in `{run.run_dir}` "
                 f"(`scores.csv`, `splits.json`, `summary.json`)."))
