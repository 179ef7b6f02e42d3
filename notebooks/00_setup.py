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
# # Setup: environment, data, splits and presets
#
# This chapter checks the machine and the data every other chapter uses, draws
# the SSLMem splits at the chosen preset and lists the presets. Nothing here is
# a result of the papers.

# %% tags=["parameters"]
device = "cpu"  # "cpu", "cuda" or "auto"
preset = "smoke"  # smoke | cpu | gpu | paper
seed = 0
shared = None  # size of S_S; None = preset default
candidate = None  # size of S_C (= S_I = S_E); None = preset default

# %% tags=["remove-input"]
import time

import numpy as np
import pandas as pd
from IPython.display import Markdown, display
from myst_nb import glue

import memlib
from memlib import plots
from memlib.data.splits import SUBSET_LABELS
from memlib.device import resolve_device
from memlib.experiments import get_preset, preset_table
from memlib.experiments.notebooks import refuse_unknown_parameters
from memlib.experiments.page import smoke_banner, table
from memlib.provenance import hardware, provenance, provenance_markdown, versions

refuse_unknown_parameters()  # papermill only warns about a misspelt -p name

t0 = time.perf_counter()
p = get_preset(preset, shared=shared, candidate=candidate)
dev = resolve_device(device)
smoke_banner(p)

# %% [markdown]
# ## Environment

# %% tags=["remove-input"]
display(table(pd.DataFrame({"version": versions()}), index_name="package"))
glue("hardware", hardware(dev), display=False)

# %% [markdown]
# Hardware: {glue:text}`hardware`.
#
# ## Data
#
# Fashion-MNIST (Xiao et al. 2017): 70,000 real 28×28 grayscale images of 10
# clothing classes, read offline from the Debian package
# `dataset-fashion-mnist` (or downloaded by torchvision where the internet is
# reachable).

# %% tags=["remove-input"]
train_set = memlib.load_dataset(p.dataset, "train")
test_set = memlib.load_dataset(p.dataset, "test")
glue("dataset_name", p.dataset, display=False)
glue("n_train", len(train_set), display=False)
glue("n_test", len(test_set), display=False)
counts = pd.DataFrame({
    "train": np.bincount(train_set.labels.numpy(), minlength=train_set.num_classes),
    "test": np.bincount(test_set.labels.numpy(), minlength=test_set.num_classes),
}, index=train_set.classes)
display(table(counts.T))
glue("fig_examples", plots.class_examples(train_set.images, train_set.labels, train_set.classes), display=False)

# %% [markdown]
# The dataset {glue:text}`dataset_name` has {glue:text}`n_train` training and
# {glue:text}`n_test` test images.
#
# ```{glue:figure} fig_examples
# :name: fig-examples
# The first six training images of each class.
# ```

# %% [markdown]
# ## Splits
#
# Encoder f trains on S_S ∪ S_C, encoder g on S_S ∪ S_I; S_E comes from the
# test split and neither saw it. The draw is seeded and stratified by class, so
# S_C and S_I hold the same class mixture.

# %% tags=["remove-input"]
splits = memlib.make_splits(len(train_set), len(test_set), p.shared, p.candidate, p.extra, seed=seed,
                            train_labels=train_set.labels.numpy())
rows = []
for name, idx in splits.to_dict().items():
    if name in SUBSET_LABELS:
        lab = (test_set if name == "extra" else train_set).labels.numpy()[idx]
        rows.append({"subset": SUBSET_LABELS[name], "from": "test" if name == "extra" else "train", "size": len(idx),
                     "classes present": len(np.unique(lab))})
display(table(pd.DataFrame(rows).set_index("subset")))
splits.check_disjoint()  # raises if two training subsets overlap
glue("splits_disjoint", "yes", display=False)

# %% [markdown]
# Training subsets pairwise disjoint: {glue:text}`splits_disjoint`.
#
# ## Presets
#
# `smoke` exists for tests and CI (its numbers mean nothing); `cpu` is sized
# as [Methods](../methods.md) explains: memorisation only became measurable with
# small training sets trained far past the loss plateau; `gpu` and `paper` use
# the paper's proportions.

# %% tags=["remove-input"]
presets = preset_table().rename(columns={"arch": "architecture", "batch_size": "batch size",
                                         "models_per_family": "encoders per family", "candidate": "S_C",
                                         "shared": "S_S"})
display(table(presets, index_name="preset", wrap=["description"]))

# %% [markdown]
# ## Provenance

# %% tags=["remove-input"]
display(Markdown(provenance_markdown(provenance({"preset": p.name, "seed": seed}, dev, time.perf_counter() - t0))))
