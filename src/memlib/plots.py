"""Figures of the papers, from memlib results.

Each function returns a matplotlib Figure that is already closed: it renders
when returned or glued in a notebook, but is not shown a second time by the
inline backend, and loops that make many figures do not leak memory.
"""

from __future__ import annotations

import functools

import matplotlib
import matplotlib.pyplot as plt
import numpy as np
import torch

from .data.splits import SUBSET_LABELS, SUBSETS
from .stats import fraction_above


def _closed(fn):
    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        fig = fn(*args, **kwargs)
        plt.close(fig)
        return fig

    return wrapper


def _show(ax, image: torch.Tensor) -> None:
    """Draw one uint8 (C, H, W) image, grayscale or RGB."""
    img = image.permute(1, 2, 0).cpu().numpy()
    ax.imshow(img.squeeze(-1) if img.shape[-1] == 1 else img, cmap="gray", vmin=0, vmax=255)


SUBSET_COLORS = {"candidate": "tab:red", "shared": "tab:gray", "extra": "tab:green", "independent": "tab:blue"}


@_closed
def score_distributions(
    scores: dict[str, np.ndarray],
    title: str = "",
    bins: int = 30,
    null=None,
    xlabel: str = "memorisation score m (normalised)",
):
    """Fig. 2c: histogram of the memorisation scores of each subset, with their means.

    ``null``: scores of the null family (f′ against f, same data, other seeds) on the same points, drawn filled
    in grey: what chance alone gives.
    """
    fig, ax = plt.subplots(figsize=(6.4, 3.6))
    allv = np.concatenate([np.asarray(v) for v in scores.values()] + ([np.asarray(null)] if null is not None else []))
    edges = np.linspace(allv.min(), allv.max(), bins + 1)
    for s in SUBSETS:
        v = np.asarray(scores[s])
        ax.hist(
            v,
            bins=edges,
            histtype="step",
            lw=1.8,
            color=SUBSET_COLORS[s],
            label=f"{SUBSET_LABELS[s]} (mean {v.mean():+.3f}, n={len(v)})",
        )
        ax.axvline(v.mean(), color=SUBSET_COLORS[s], ls="--", lw=1)
    if null is not None:
        v = np.asarray(null)
        w = np.full(len(v), len(np.asarray(scores["candidate"])) / len(v))  # scaled to S_C's count
        ax.hist(
            v,
            bins=edges,
            weights=w,
            color="0.6",
            alpha=0.35,
            label=f"null f′ vs f, all points (mean {v.mean():+.3f}; scaled to n={len(scores['candidate'])})",
        )
    ax.axvline(0, color="k", lw=0.6)
    ax.set_xlabel(xlabel)
    ax.set_ylabel("points")
    ax.set_title(title)
    ax.legend(fontsize=8, frameon=False)
    fig.tight_layout()
    return fig


@_closed
def fraction_above_curves(scores: dict[str, np.ndarray], thresholds=None, title: str = ""):
    """Fig. 5: fraction of each subset whose score exceeds a threshold, over thresholds."""
    t = np.linspace(-0.5, 1.0, 61) if thresholds is None else np.asarray(thresholds, float)
    fig, ax = plt.subplots(figsize=(5.5, 3.2))
    for s in SUBSETS:
        ax.plot(t, fraction_above(scores[s], t), color=SUBSET_COLORS[s], label=SUBSET_LABELS[s])
    ax.set_xlabel("threshold on the memorisation score m (normalised)")
    ax.set_ylabel("fraction above")
    ax.set_title(title)
    ax.legend(fontsize=8, frameon=False)
    fig.tight_layout()
    return fig


@_closed
def alignment_scatter(align_f: np.ndarray, align_g: np.ndarray, score: np.ndarray, title: str = ""):
    """Fig. 2a: alignment loss on f vs on g per candidate, coloured by the score."""
    fig, ax = plt.subplots(figsize=(4.8, 4.2))
    lim = [min(align_f.min(), align_g.min()), max(align_f.max(), align_g.max())]
    sc = ax.scatter(
        align_f, align_g, c=score, cmap="coolwarm", s=14, vmin=-np.abs(score).max(), vmax=np.abs(score).max()
    )
    ax.plot(lim, lim, "k--", lw=0.8, label="f = g")
    ax.set_xlabel("alignment loss on f (trained with x)")
    ax.set_ylabel("alignment loss on g (trained without x)")
    ax.set_title(title)
    ax.legend(frameon=False, fontsize=8)
    fig.colorbar(sc, ax=ax, label="memorisation score")
    fig.tight_layout()
    return fig


@_closed
def gallery(images: torch.Tensor, scores: np.ndarray, labels=None, classes=None, k: int = 8, title: str = ""):
    """Fig. 1: the ``k`` most and ``k`` least memorised images with their scores."""
    order = np.argsort(-np.asarray(scores), kind="stable")
    rows = (("most memorised", order[:k]), ("least memorised", order[::-1][:k]))
    fig, axes = plt.subplots(2, k, figsize=(1.3 * k, 3.3))
    for r, (name, idx) in enumerate(rows):
        for c, i in enumerate(idx):
            ax = axes[r, c]
            _show(ax, images[i])
            lab = "" if labels is None else (classes[labels[i]] if classes else str(labels[i]))
            ax.set_title(f"{scores[i]:+.2f}\n{lab}", fontsize=7)
            ax.set_xticks([])
            ax.set_yticks([])
        axes[r, 0].set_ylabel(name, fontsize=8)
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    return fig


@_closed
def training_curves(histories: dict[str, list[dict]], keys=("loss", "knn_acc")):
    """Per-epoch training log of each encoder: one panel per key."""
    fig, axes = plt.subplots(1, len(keys), figsize=(4.2 * len(keys), 3.2), squeeze=False)
    for ax, key in zip(axes[0], keys):
        for name, hist in histories.items():
            pts = [(e["epoch"], e[key]) for e in hist if key in e]
            if pts:
                x, y = zip(*pts)
                ax.plot(
                    x,
                    y,
                    marker="o" if len(pts) < 15 else None,
                    ms=3,
                    lw=1,
                    color="tab:red" if name.startswith("f") else "tab:blue",
                    label=name,
                )
        ax.set_xlabel("epoch")
        ax.set_ylabel(key)
    handles, labels = axes[0][0].get_legend_handles_labels()
    if handles:
        axes[0][-1].legend(handles, labels, fontsize=7, frameon=False, ncol=2)
    fig.tight_layout()
    return fig


@_closed
def class_examples(images: torch.Tensor, labels, classes, per_class: int = 6):
    """A grid with the first ``per_class`` images of every class (one row per class)."""
    labels = np.asarray(labels)
    fig, axes = plt.subplots(len(classes), per_class, figsize=(0.9 * per_class, 0.95 * len(classes)))
    for c, name in enumerate(classes):
        idx = np.flatnonzero(labels == c)[:per_class]
        for j in range(per_class):
            ax = axes[c, j]
            ax.set_xticks([])
            ax.set_yticks([])
            if j < len(idx):
                _show(ax, images[idx[j]])
        axes[c, 0].set_ylabel(name, fontsize=7, rotation=0, ha="right", va="center")
    fig.tight_layout(pad=0.2)
    return fig


@_closed
def pair_contrasts(per_pair, paper: dict | None = None, title: str = ""):
    """One dot per encoder pair for each contrast (columns of ``per_pair``), its mean with a 95 % t-interval,
    and the paper's value (``paper``: column → value) as a cross."""
    from scipy import stats as st

    cols = list(per_pair.columns)
    fig, ax = plt.subplots(figsize=(7.5, 3.8))
    for i, c in enumerate(cols):
        x = np.asarray(per_pair[c], float)
        jitter = np.linspace(-0.12, 0.12, len(x)) if len(x) > 1 else np.zeros(1)
        ax.scatter(i + jitter, x, s=12, color="tab:blue", alpha=0.7, label="encoder pair" if i == 0 else None)
        if len(x) > 1:
            h = st.sem(x) * st.t.ppf(0.975, len(x) - 1)
            ax.errorbar(
                i + 0.3,
                x.mean(),
                yerr=h,
                fmt="s",
                color="k",
                ms=4,
                capsize=3,
                label="mean, 95 % CI over pairs" if i == 0 else None,
            )
        if paper and c in paper:
            ax.scatter(i + 0.3, paper[c], marker="x", color="tab:red", s=40, label="paper" if i == 0 else None)
    ax.axhline(0, color="gray", lw=0.8)
    ax.set_xticks(range(len(cols)), cols, fontsize=8, rotation=30, ha="right")
    ax.set_ylabel("per-pair mean (normalised)")
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=7, frameon=False, loc="best")
    fig.tight_layout()
    return fig


@_closed
def scaling_gap(table, y: str = "gap normalised", mark: dict | None = None, title: str = ""):
    """The S_C − S_I gap per encoder pair against training-set size (epochs annotated), with the mean per
    size; ``mark`` adds vertical lines at named sizes (e.g. a preset that was not run)."""
    fig, ax = plt.subplots(figsize=(6.0, 3.4))
    ax.scatter(table["train size"], table[y], s=14, color="tab:red", alpha=0.6, label="encoder pair")
    g = table.groupby("train size").agg(mean=(y, "mean"), epochs=("epochs", "first")).reset_index()
    ax.plot(g["train size"], g["mean"], "k-o", ms=4, lw=1, label="mean over pairs")
    for r in g.itertuples():
        ax.annotate(f"{r.epochs} ep.", (r[1], r.mean), textcoords="offset points", xytext=(4, 6), fontsize=7)
    for name, x in (mark or {}).items():
        ax.axvline(x, color="tab:purple", ls=":", lw=1)
        ax.annotate(
            name,
            (x, ax.get_ylim()[1]),
            textcoords="offset points",
            xytext=(-4, -12),
            ha="right",
            fontsize=7,
            color="tab:purple",
        )
    ax.axhline(0, color="gray", lw=0.8)
    ax.set_xscale("log")
    ax.set_xlabel("training points per encoder (log scale); epochs chosen so size × epochs is constant")
    ax.set_ylabel("S_C − S_I, per pair (normalised)")
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=7, frameon=False)
    fig.tight_layout()
    return fig


@_closed
def arch_size(pairs, absent=(), title: str = ""):
    """Per encoder pair, calibrated memorisation of S_C (left) and f's linear accuracy (right) against the
    encoder's parameters (log scale), with the mean per architecture; ``absent`` names declared architectures
    not run yet (listed under the panels)."""
    fig, axes = plt.subplots(1, 2, figsize=(7.2, 3.2))
    g = pairs.groupby("params", sort=True)
    for ax, col, label in (
        (axes[0], "memorisation", "calibrated memorisation of S_C, per pair"),
        (axes[1], "linear_acc", "linear-probe accuracy of f"),
    ):
        jitter = 1 + 0.04 * (pairs["pair"] - pairs["pair"].mean()) / max(pairs["pair"].max(), 1)
        ax.scatter(pairs["params"] * jitter, pairs[col], s=12, color="tab:red", alpha=0.6, label="encoder pair")
        m = g[col].mean()
        ax.plot(m.index, m.to_numpy(), "k-o", ms=4, lw=1, label="mean per architecture")
        for x, arch in g["arch"].first().items():
            ax.annotate(arch.replace("resnet_", ""), (x, m[x]), textcoords="offset points", xytext=(4, 6), fontsize=7)
        if col == "memorisation":
            ax.axhline(0, color="gray", lw=0.8)
        ax.set_xscale("log")
        ax.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())  # minor labels collide on one decade
        ax.set_xlabel("encoder parameters (log scale)")
        ax.set_ylabel(label, fontsize=8)
    axes[0].legend(fontsize=7, frameon=False)
    note = f"not run yet: {', '.join(absent)}" if len(absent) else ""
    fig.suptitle(" — ".join(x for x in (title, note) if x), fontsize=9)
    fig.tight_layout()
    return fig


@_closed
def reliability_curves(curve, threshold: float | None = None, declared: float | None = None, title: str = ""):
    """Per-point ranking reliability (Spearman–Brown) against encoders trained, one line per design and point
    set; hollow markers and dashed lines are projections (Spearman–Brown from the measured point), not runs."""
    fig, ax = plt.subplots(figsize=(6.0, 3.4))
    styles = {"subset (in/out)": "tab:red", "paper (fixed split)": "tab:blue"}
    for (design, points), g in curve.groupby(["design", "points"], sort=False):
        g = g.sort_values("encoders")
        color = styles.get(design, "k")
        ls = "-" if points == "pool" else "--"
        ax.plot(g["encoders"], g["reliability (Spearman–Brown)"], ls, color=color, lw=1, label=f"{design}, {points}")
        m = g["measured"].astype(bool)
        ax.scatter(g.loc[m, "encoders"], g.loc[m, "reliability (Spearman–Brown)"], color=color, s=18, zorder=3)
        ax.scatter(
            g.loc[~m, "encoders"],
            g.loc[~m, "reliability (Spearman–Brown)"],
            facecolors="none",
            edgecolors=color,
            s=30,
            zorder=3,
        )
    for y, name in ((threshold, "target"), (declared, "declared threshold")):
        if y is not None:
            ax.axhline(y, color="gray", ls=":", lw=1)
            ax.annotate(name, (ax.get_xlim()[0], y), textcoords="offset points", xytext=(2, 2), fontsize=7)
    ax.set_xlabel("encoders trained")
    ax.set_ylabel("reliability of the per-point ranking")
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=7, frameon=False)
    fig.tight_layout()
    return fig
