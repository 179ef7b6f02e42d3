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
# # SSLMem across methods, supervision, augmentations and training time
#
# Chapter 01 measured SSLMem for one setup (SimCLR on a ResNet). This chapter
# asks the SSLMem paper's questions that compare setups:
#
# - **Table 1**: SSLMem and linear-probe accuracy for SimCLR, DINO, MAE and
#   VICReg on ResNets and ViTs. Does more memorisation go with more accuracy (S13)?
# - **Tables 11–13**: a supervised encoder (classifier removed) beside the SSL
#   ones (S17); Feldman's supervised memorisation, the softmax probability of a
#   point's label under f minus under g, against SSLMem (S18); and how far the
#   setups agree on *which* candidates are memorised (S16).
# - **Table 7**: how much of f's training set g shares (S15).
# - **Tables 8–9**: measuring with augmentations other than the training one
#   (S27), training with other augmentations (S28), and MAE's mask ratio (S29).
# - **Table 4**: Déjà Vu memorisation (Meehan et al. 2023) beside SSLMem (S26).
# - **Fig. 2b**: loss, accuracy and SSLMem over training (S10).
#
# Every setup uses the same seeded splits, so all of them score the **same
# candidates** (the first seed for the ablations). Each setup is an SSLMem run as in
# chapter 01, with a few preset fields changed; the encoders are cached and
# shared, so SimCLR's first f and g here are chapter 01's.

# %% tags=["parameters"]
device = "cpu"  # "cpu", "cuda" or "auto"
preset = "smoke"  # smoke | cpu | gpu | paper
seed = 0  # added to every seed (0: the preset's seeds; 10 runs 10, 11, 12 where the preset has 0, 1, 2)
seeds = None  # Table 1 seeds before the shift, e.g. [0, 1] (the ablations run the first); None = preset default
setups = None  # Table 1 setups, e.g. ["SimCLR-ResNet", "MAE-ViT"]; None = all
epochs = None  # training epochs; None = preset default
progress = False  # progress bars (off for papermill runs)

# %% tags=["remove-input"]
import matplotlib.pyplot as plt
from IPython.display import Markdown, display
from myst_nb import glue

from memlib.experiments.evidence_report import store_markdown
from memlib.experiments.notebooks import refuse_unknown_parameters
from memlib.experiments.page import glue_claims, smoke_banner, table
from memlib.experiments.registry import run_experiment
from memlib.provenance import provenance_markdown

refuse_unknown_parameters()  # papermill only warns about a misspelt -p name

# Every number below is analysed from the evidence store's rows; what the store lacks is computed first.
run = run_experiment("setups", preset, device=device, seed=seed, progress=progress, seeds=seeds, setups=setups,
                     epochs=epochs)
p, s = run.preset, run.settings
smoke_banner(p)
glue("preset", p.name, display=False)
glue("epochs", p.epochs, display=False)
glue("seeds", ", ".join(map(str, s["seeds"])), display=False)
glue("seed0", s["seeds"][0], display=False)
only_first = [n for n in s["setups"] if s["seed_setups"] is not None and n not in s["seed_setups"]]
glue("seed_note", f"{', '.join(only_first)} ran the first seed only (the preset's `seed_setups`)" if only_first
     else "every setup ran every seed", display=False)
glue("n_candidates", len(run.candidate_scores), display=False)
glue("train_size", int(p.shared) + int(p.candidate), display=False)
glue("n_runs", run.timings["sslmem_experiments"], display=False)

# %% [markdown]
# ## Setup of this run
#
# Preset {glue:text}`preset`: every encoder trains on {glue:text}`train_size`
# Fashion-MNIST images for {glue:text}`epochs` epochs, one f and one g per
# setup and seed ({glue:text}`n_runs` SSLMem runs in all). Table 1 uses seeds
# {glue:text}`seeds` ({glue:text}`seed_note`); everything else uses the first.
#
# Three scores per run, as in chapter 01: **normalised** (the paper's: divided
# by the range over the run's four subsets), **raw** (g's alignment loss minus
# f's, comparable across runs of one method) and **calibrated** (normalised,
# minus the pair's mean on S_E, points neither f nor g trained on, which removes
# the pair's chance offset). Declared before the run: S13 and S17 are judged on
# calibrated SSLMem. Probe accuracies are f's.
#
# **Random floor.** Each architecture is also probed untrained (3 seeds, same
# probe sets). A setup whose encoders (f and g, over its seeds) do not beat that
# floor (one-sided Welch t-test, p < 0.05) learned nothing measurable; its runs
# are shown but left out of S13 and S17.
#
# ## Planned n (declared with the design)
#
# Each claim's unit of replication, the units this run has, the smallest
# effect of interest (SESOI), and the units a one-sided test needs for 80 %
# power at α = 0.05 over the chapter's tests (Holm: its 10 claims, or the
# {glue:text}`n_tests` tests with the in/out parts below), planned once in
# `memlib.verdicts`. The last column prices the planned n at this run's median
# training time per encoder ({glue:text}`min_per_encoder:.1f` minutes on one
# core).
#
# The budget of this chapter at `cpu` is the design below: one encoder pair per
# setup, seed and level, and the in/out levels,
# {glue:text}`n_encoders` trained encoders in all. For the pair designs every
# planned n lies far beyond it, so those ablations stay inconclusive by design
# and S13 is tested at the n it has. S17 and S27 reach their planned n with
# in/out encoders; S10, S28 and S29 are tested at the rows the budget allowed. The
# table says what each would need.

# %% tags=["remove-input"]
plan = run.planned_n()
display(table(plan, 3, index_name="claim"))
glue("min_per_encoder", run.minutes_per_encoder(), display=False)
glue("n_tests", len(run.evidence()), display=False)
glue("n_encoders", run.n_trained(), display=False)
for cid, r in plan.iterrows():
    glue(f"claim_{cid}_planned_n", int(r["planned n"]), display=False)

# %% [markdown]
# ## Memorisation and accuracy per setup (Table 1, Table 11)

# %% tags=["remove-input"]
t1 = run.table1()
display(table(t1, 3, index_name="setup"))
fl = run.floor.groupby("arch")[["linear_acc", "knn_acc"]].agg(["mean", "std"])
fl.columns = ["linear acc", "linear acc sd", "kNN acc", "kNN acc sd"]
display(table(fl, 3, index_name="untrained architecture (random floor)"))
tr = run.table1_runs
fig, ax = plt.subplots(figsize=(5.6, 3.8))
for i, (name, g) in enumerate(tr.groupby("setup", sort=False)):
    # A hollow marker needs its edge coloured, or it vanishes.
    ax.scatter(g["sslmem_calibrated"], g["linear_acc"], label=name, edgecolors=f"C{i}",
               marker="s" if g["method"].iloc[0] == "supervised" else "o",
               facecolors=f"C{i}" if g["beats_floor"].all() else "none")
ax.set(xlabel="mean calibrated SSLMem of S_C", ylabel="linear-probe accuracy of f")
ax.legend(fontsize=7, loc="best")
fig.tight_layout()
glue("fig_table1", fig, display=False)
plt.close(fig)
for name, r in t1.iterrows():
    key = name.replace("-", "_")
    glue(f"t1_{key}_mem", float(r["SSLMem calibrated"]), display=False)
    glue(f"t1_{key}_acc", float(r["linear acc"]), display=False)

# %% [markdown]
# ```{glue:figure} fig_table1
# :name: fig-setups-table1
# Mean calibrated SSLMem of the candidates against f's linear-probe accuracy,
# one point per setup and seed; squares are the supervised encoder (classifier
# removed), hollow markers a setup that does not beat its random floor.
# ```
#
# In calibrated SSLMem, SimCLR on the ResNet scores {glue:text}`t1_SimCLR_ResNet_mem:+.4f` at accuracy
# {glue:text}`t1_SimCLR_ResNet_acc:.3f`; MAE on the ViT
# {glue:text}`t1_MAE_ViT_mem:+.4f` at {glue:text}`t1_MAE_ViT_acc:.3f`; the
# supervised ResNet {glue:text}`t1_Supervised_ResNet_mem:+.4f` at
# {glue:text}`t1_Supervised_ResNet_acc:.3f`. The verdicts on S13 (rank
# correlation over the SSL runs) and S17 (supervised vs SimCLR, over seeds)
# are at the end of the page.
#
# ## Which candidates are memorised: agreement between setups (Tables 12, 13)
#
# Kendall's τ between every pair of setups' scores of the same
# {glue:text}`n_candidates` candidates (seed {glue:text}`seed0`), with
# Feldman's supervised memorisation as one more column.

# %% tags=["remove-input"]
tau, tau_p = run.tau_matrix()
fig, ax = plt.subplots(figsize=(5.8, 4.6))
im = ax.imshow(tau.values, cmap="RdBu_r", vmin=-1, vmax=1)
ax.set_xticks(range(len(tau)), tau.columns, rotation=60, ha="right", fontsize=7)
ax.set_yticks(range(len(tau)), tau.index, fontsize=7)
for i in range(len(tau)):
    for j in range(len(tau)):
        if i != j:
            ax.text(j, i, f"{tau.values[i, j]:+.2f}" + ("*" if tau_p.values[i, j] < 0.05 else ""), ha="center",
                    va="center", fontsize=6)
fig.colorbar(im, ax=ax, label="Kendall's τ")
fig.tight_layout()
glue("fig_tau", fig, display=False)
plt.close(fig)
display(table(run.feldman.rename(columns={"tau": "Kendall τ", "p": "τ p"}), 2, hide_index=True))

# %% [markdown]
# ```{glue:figure} fig_tau
# :name: fig-setups-tau
# Kendall's τ between setups' rankings of the same candidates (Table 13);
# \* marks p < 0.05 (uncorrected).
# ```
#
# The table above compares SimCLR's SSLMem with Feldman's memorisation: the
# share of SimCLR's top-k candidates that are also Feldman's top k, its
# expectation for unrelated rankings ("chance", from 2000 permutations) and the
# permutation p-value.
#
# ## Overlap of f's and g's training data (Table 7)
#
# S_S / (S_S + S_C) at the same training-set size; S_I and S_E have S_C's size.

# %% tags=["remove-input"]
display(table(run.overlap, 3, index_name="overlap"))

# %% [markdown]
# ## Augmentations: measuring (Table 8) and training (Table 9a)
#
# Measuring: SimCLR's encoders (trained with SimCLR's crops and intensity
# jitter) scored with other augmentations. Fashion-MNIST has no colour, so
# "intensity" (brightness and contrast jitter) stands in for the paper's colour
# augmentations. Training: SimCLR trained (and measured) with crop + flip only,
# Gaussian noise only, or patch masking only.

# %% tags=["remove-input"]
display(table(run.measure_aug, 3, index_name="measuring augmentation"))
display(table(run.train_aug, 3, index_name="training augmentation"))

# %% [markdown]
# ## MAE's mask ratio (Table 9b)

# %% tags=["remove-input"]
display(table(run.mask_ratio, 3, index_name="mask ratio"))
fig, axes = plt.subplots(1, 2, figsize=(8, 3))
mr = run.mask_ratio
axes[0].plot(mr.index, mr["SSLMem"], "o-")
axes[0].set(xlabel="mask ratio", ylabel="mean SSLMem of S_C (normalised)")
axes[1].plot(mr.index, mr["linear acc"], "o-")
axes[1].set(xlabel="mask ratio", ylabel="linear-probe accuracy")
fig.tight_layout()
glue("fig_mask_ratio", fig, display=False)
plt.close(fig)

# %% [markdown]
# ```{glue:figure} fig_mask_ratio
# :name: fig-setups-mask-ratio
# MAE on the ViT: memorisation (left) and accuracy (right) against the share of
# patches masked in training.
# ```
#
# ## Déjà Vu beside SSLMem (Table 4)
#
# Déjà Vu asks whether an encoder links a training image's *background* to its
# label: from a crop without the object, a kNN vote over a labelled public set
# (here {glue:text}`public` test images outside S_E, k = {glue:text}`dv_k`)
# predicts the label. Fashion-MNIST has no bounding boxes and its objects fill
# the frame, so the crop is the image with its central
# {glue:text}`dv_centre` × {glue:text}`dv_centre` square blanked; parts of the
# object remain at the border. The Déjà Vu score is the accuracy of f on the
# crops minus g's ("gap"), and the share of candidates f gets right and g wrong.

# %% tags=["remove-input"]
glue("public", s["public"], display=False)
glue("dv_k", s["dejavu_k"], display=False)
glue("dv_centre", s["dejavu_centre"], display=False)
display(table(run.dejavu.drop(columns="method").rename(columns={
    "sslmem": "SSLMem", "dejavu_gap": "Déjà Vu gap", "dejavu_memorised": "Déjà Vu memorised",
    "crop_acc_f": "crop acc f", "crop_acc_g": "crop acc g", "linear_acc": "linear acc"}), 3, index_name="setup"))

# %% [markdown]
# ## Memorisation over training (Fig. 2b)
#
# SimCLR's first f and g pair, retrained with snapshots of the encoder at every
# tenth of training (and before the first step); at each snapshot the
# candidates are scored (raw, so epochs compare) and f is probed.

# %% tags=["remove-input"]
d = run.dynamics
fig, axes = plt.subplots(1, 3, figsize=(11, 3))
axes[0].plot(d["epoch"], d["loss"], "o-")
axes[0].set(xlabel="epoch", ylabel="training loss of f")
axes[1].plot(d["epoch"], d["linear_acc"], "o-", label="linear")
axes[1].plot(d["epoch"], d["knn_acc"], "s--", label="kNN")
axes[1].set(xlabel="epoch", ylabel="probe accuracy of f")
axes[1].legend()
axes[2].plot(d["epoch"], d["sslmem_raw"], "o-", label="all of S_C")
axes[2].plot(d["epoch"], d["sslmem_top10"], "s--", label="top 10% of S_C")
axes[2].plot(d["epoch"], d["shared_raw"], ":", color="gray", label="S_S")
axes[2].set(xlabel="epoch", ylabel="mean SSLMem (raw)")
axes[2].legend(fontsize=7)
fig.tight_layout()
glue("fig_dynamics", fig, display=False)
plt.close(fig)

# %% [markdown]
# ```{glue:figure} fig_dynamics
# :name: fig-setups-dynamics
# Over training: f's loss, its probe accuracy, and the mean SSLMem of all
# candidates, of their top 10 %, and of the shared points (which should stay near 0).
# ```
#
# ## The ablations from in/out encoders
#
# One encoder pair per level cannot separate a level's effect from training
# noise. The in/out (random-subset) design of chapter 01 can: every encoder
# trains on a random half of a pool of {glue:text}`inout_pool` points, so each
# encoder has its own in-versus-out contrast, its **memorisation** (the mean
# alignment loss of the pool points it did not train on minus that of the
# points it did, after each point's difficulty is removed). The encoder is then
# the unit of replication, with no f/g family offset.
#
# Each level below reuses chapter 01's pool and the first rows of its
# inclusion, with the same model seed per row: row i of every level trains on
# the same points from the same seed, so levels are compared row by row
# (paired). Because alignment losses differ in scale between methods and
# augmentations, the tests use the **relative memorisation**: an encoder's
# memorisation divided by its mean alignment loss over the pool. Declared
# before any of these encoders trained:
#
# - **S10**: chapter 01's first encoders retrained keeping a snapshot every
#   tenth of training, each snapshot an in/out level: relative memorisation at
#   the last snapshot minus at the accuracy plateau (the first snapshot whose
#   mean linear accuracy is within 1 point of the best).
# - **S17**: supervised − SimCLR, per row (SimCLR's encoders are chapter 01's).
# - **S27**: chapter 01's encoders measured with their training augmentation
#   minus each other measuring augmentation, per encoder (nothing trains).
# - **S28**: crop + flip minus noise and minus masking, in relative
#   memorisation and in linear accuracy ("in step with probe accuracy").
# - **S29**: MAE at a 75 % mask ratio minus each other ratio, likewise.
#
# Every part is a one-sided paired t-test over rows against 0 and against a
# SESOI of d = 0.5, in the chapter's one Holm family; a claim holds when all its
# parts do. This adds {glue:text}`inout_new` trained encoders.

# %% tags=["remove-input"]
lv = run.inout_levels()
glue("inout_pool", len(next(iter(run.inout.values())).design.ids) if run.inout else 0, display=False)
glue("inout_new", int(sum(len(d.design.keys()) for (t, _), d in run.inout.items()
                          if t in ("supervised", "train_aug", "mask_ratio"))), display=False)
if len(lv):
    panels = [t for t in ("dynamics", "supervised", "measure_aug", "train_aug", "mask_ratio")
              if (lv["table"] == t).any()]
    titles = {"dynamics": "S10: epoch (line: linear acc)", "supervised": "S17: supervised vs SimCLR",
              "measure_aug": "S27: measuring augmentation", "train_aug": "S28: training augmentation",
              "mask_ratio": "S29: MAE mask ratio"}
    fig, axes = plt.subplots(1, len(panels), figsize=(3.2 * len(panels), 3.2), squeeze=False)
    for ax, t in zip(axes[0], panels):
        g = lv[lv["table"].isin([t, "base"] if t == "supervised" else [t])]
        m = g["relative memorisation"]
        x = g["level"].astype(float) if t == "dynamics" else [str(v) for v in g["level"]]
        ax.errorbar(x, m, yerr=[m - g["ci95 low"], g["ci95 high"] - m], fmt="o", capsize=3)
        if t == "dynamics":
            ax.twinx().plot(x, g["linear acc"], color="gray", lw=1)
        ax.axhline(0, color="gray", lw=0.5)
        ax.set_title(titles[t], fontsize=9)
        ax.tick_params(axis="x", rotation=30, labelsize=8)
    axes[0][0].set_ylabel("relative memorisation")
    fig.tight_layout()
    glue("fig_inout", fig, display=False)
    plt.close(fig)
    display(table(lv.rename(columns={"encoders": "encoders (rows)"}), 4))

# %% [markdown]
# ```{glue:figure} fig_inout
# :name: fig-setups-inout
# Relative memorisation per in/out level: mean over encoders with its 95 %
# interval (t). Each panel's levels share their rows (points and seeds); in
# the first, the gray line is the mean linear accuracy (right axis).
# ```
#
# **The scale matters.** Relative memorisation was declared because alignment
# losses differ in scale between augmentations (the table's "mean alignment"
# column), and it can change which level ranks first: among the measuring augmentations, the
# highest relative memorisation is {glue:text}`s27_rel_top`'s and the highest
# raw contrast (not declared; shown for comparison) is
# {glue:text}`s27_raw_top`'s; among the training augmentations, the highest
# relative memorisation is {glue:text}`s28_rel_top`'s and the highest raw
# contrast {glue:text}`s28_raw_top`'s. The verdicts follow the declared
# statistic.

# %% tags=["remove-input"]
def top(table, col):
    g = lv[lv["table"] == table] if len(lv) else lv
    return str(g.loc[g[col].idxmax(), "level"]) if len(g) else "none (no in/out levels)"


for t, key in (("measure_aug", "s27"), ("train_aug", "s28")):
    glue(f"{key}_rel_top", top(t, "relative memorisation"), display=False)
    glue(f"{key}_raw_top", top(t, "memorisation"), display=False)

# %% [markdown]
# ## Verdicts on the claims
#
# Verdicts follow the one rule of `memlib.verdicts` over each claim's unit of
# replication (see [How to read a chapter](../reading.md)). Table 1 has one
# encoder pair per setup and seed, so S13 is tested over the SSL runs (setup ×
# seed). S10, S17, S27, S28 (and S29 at a preset that trains its in/out
# levels; `cpu` does not) are decided from the in/out encoders above (encoder
# rows as units); S17's pairs per seed are still reported. The other
# ablations (S15, S16, S18, S26) train one encoder pair per level at the
# first seed: one pair carries no estimate of training noise, so they are
# inconclusive at this preset whatever their tests say; the statistic column
# still reports the test alone.
#
# - **S10**: the in/out part listed above (without in/out levels: the
#   plateau of one pair's snapshots and a Wilcoxon test over its candidates,
#   inconclusive).
# - **S13**: one-sided Kendall's τ between mean calibrated SSLMem and accuracy
#   over the SSL runs (setup × seed) above the random floor, in both directions
#   (exact p); S13 and every in/out part share one Holm correction.
# - **S15**: the candidates' mean score at 70, 80 and 85 % overlap (one pair each).
# - **S16**: Kendall's τ between setups' rankings, among SSL setups and between
#   SSL and supervised (one split).
# - **S17**: one-sided paired t-test over in/out rows of the supervised
#   encoder's relative memorisation minus SimCLR's (the pairs per seed, mean
#   calibrated S_C score, supervised minus SimCLR, are listed beside it).
# - **S18**: top-k overlap of SimCLR's SSLMem and Feldman's memorisation
#   against permutations (one split).
# - **S26**: ranks of MAE among the SSL setups by Déjà Vu gap and SSLMem; the
#   paper's dataset comparison is not run.
# - **S27**, **S28**, **S29**: the in/out parts listed above; with no in/out
#   levels (a preset without them), which level gives the highest mean score
#   of one pair each, inconclusive.

# %% tags=["remove-input"]
claims = run.claims()
display(table(claims, wrap=["statistic"]))
glue_claims(claims)

# %% [markdown]
# ## Provenance

# %% tags=["remove-input"]
display(Markdown(provenance_markdown(run.provenance)))
display(Markdown("This page's analysis read every number from the evidence store: each encoder's alignment losses "
                 "(with the training augmentation and, for SimCLR's pair, the measuring ones), probe accuracies, "
                 "the supervised classifiers' label probabilities, the Déjà Vu hits and the training snapshots. "
                 "Load them with `memlib.evidence.EvidenceStore('results').load('alignments')`."))
display(Markdown(store_markdown(run.store, run.encoder_keys)))
