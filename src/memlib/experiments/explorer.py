"""The point explorer's data: one row per point that chapter 01's study scored, with its image.

:func:`point_table` turns a study (:class:`~memlib.experiments.sslmem_study.SSLMemStudy`, whatever it was read
from) into the table the explorer page shows; :func:`load_points` gets that study the way chapter 01 does
(``memlib.experiments.registry.run_experiment``, which reads the evidence store; :func:`load_points` never
trains unless asked to), so the page's numbers are the chapter's. A point's score is its
**calibrated** SSLMem averaged over the study's encoder pairs (the score chapter 01 ranks points by), with
the standard error over pairs; ``rank`` is 1 for the most memorised point of its split.

Only chapter 01's study is read: Feldman's supervised score, Déjà Vu and chapter 06's setups score other
candidates under other designs, and join the table once the evidence store keys them by point.
"""

from __future__ import annotations

import base64
import io

import numpy as np
import pandas as pd

#: The table's columns, in the order the explorer shows them.
COLUMNS = [
    "image",
    "split",
    "point",
    "class",
    "subset",
    "score",
    "se",
    "pairs",
    "rank",
    "normalised",
    "atypicality",
]


def thumbnail(image) -> str:
    """A uint8 image (C×H×W or H×W, tensor or array) as a PNG ``data:`` URI."""
    from PIL import Image

    a = np.asarray(image.cpu() if hasattr(image, "cpu") else image)
    if a.ndim == 3:
        a = a[0] if a.shape[0] == 1 else np.moveaxis(a, 0, -1)
    if a.dtype != np.uint8:
        a = np.clip(a * (255 if a.max() <= 1 else 1), 0, 255).astype(np.uint8)
    buf = io.BytesIO()
    Image.fromarray(a).save(buf, format="PNG", optimize=True)
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()


def point_table(study) -> pd.DataFrame:
    """One row per (split, scored point) of ``study``: ``image`` (a PNG data URI), ``split``, ``point`` (its
    position among the run's scored points), ``class``, ``subset`` (S_C, S_S, S_E, S_I), ``score`` (mean
    calibrated SSLMem over the encoder pairs) with ``se`` (standard error over ``pairs``), ``rank`` within the
    split (1 = highest score), ``normalised`` (mean range-normalised score) and ``atypicality`` (where the run
    has one, else missing)."""
    from ..data.splits import SUBSET_LABELS
    from .sslmem_study import pair_scores

    frames = []
    for run in study.runs:
        sc = pair_scores(run)
        cal, norm = sc["calibrated"], sc["normalised"]
        n = cal.shape[0]
        score = cal.mean(axis=0)
        se = cal.std(axis=0, ddof=1) / np.sqrt(n) if n > 1 else np.full(cal.shape[1], np.nan)
        aty = run.atypicality() if run.has_atypicality() else np.full(cal.shape[1], np.nan)
        frames.append(
            pd.DataFrame(
                {
                    "image": [thumbnail(img) for img in run.images],
                    "split": run.seed,
                    "point": np.arange(cal.shape[1]),
                    "class": [run.classes[int(y)] for y in run.labels],
                    "subset": [SUBSET_LABELS.get(s, s) for s in run.subset],
                    "score": score,
                    "se": se,
                    "pairs": n,
                    "rank": pd.Series(score).rank(ascending=False, method="min").astype(int).to_numpy(),
                    "normalised": norm.mean(axis=0),
                    "atypicality": np.asarray(aty, dtype=float),
                }
            )
        )
    return pd.concat(frames, ignore_index=True)[COLUMNS]


def load_points(preset: str = "cpu", *, train: bool = False, **params) -> pd.DataFrame:
    """:func:`point_table` of chapter 01's study at ``preset``, read as the chapter reads it (``params`` go to
    ``memlib.experiments.registry.run_experiment``: ``store=``, ``device=``, ``seed=``, ``seeds=``,
    ``epochs=`` …).

    Read only by default: with ``train=False`` nothing is trained or scored, and a row the store lacks is a
    ``LookupError`` naming it (run chapter 01, or ``memlib-evidence add``, first)."""
    from .registry import run_experiment

    return point_table(run_experiment("sslmem", preset, train=train, **params))


def gallery(points: pd.DataFrame, k: int = 4, subset: str = "S_C") -> pd.DataFrame:
    """Per class, the ``k`` most and ``k`` least memorised points of ``subset`` (by ``score``, over every
    split): columns ``class``, ``end`` ("most" or "least"), then the points' rows."""
    pts = points[points["subset"] == subset]
    out = []
    for cls, g in pts.groupby("class", sort=True):
        g = g.sort_values("score", ascending=False)
        out.append(g.head(k).assign(end="most"))
        out.append(g.tail(k).iloc[::-1].assign(end="least"))
    return pd.concat(out, ignore_index=True) if out else pts.assign(end=[])
