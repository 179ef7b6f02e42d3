"""What every chapter notebook shows besides its own results: the smoke banner, its glued claims, its tables
and the verdict badges.

Kept here so that the notebooks stay thin and say the same thing the same way. :func:`verdict_badge` is the
one renderer of a verdict: the chapters' claims tables (through :func:`table`, which shows a ``status``
column as badges) and the scoreboard (:mod:`memlib.experiments.scoreboard`) both use it, and
``book/_static/memlib.css`` gives each kind its colour.
"""

from __future__ import annotations

import html
import re

import numpy as np
import pandas as pd

from .presets import Preset


def smoke_banner(p: Preset) -> None:
    """Display a MyST warning at the top of a page executed at a preset that is not ``meaningful``."""
    from IPython.display import Markdown, display

    if not p.meaningful:
        display(
            Markdown(
                f"```{{warning}}\nThis page was executed at the `{p.name}` preset: its numbers are "
                "meaningless (a CI smoke test). The committed book shows a real preset.\n```"
            )
        )


def glue_claims(claims: pd.DataFrame, *, rule_version: bool = True) -> None:
    """Glue each claim's ``status``, ``statistic`` and evidence for the scoreboard.

    The names are ``claim_<id>_status``, ``claim_<id>_stat`` and ``claim_<id>_test`` (the test, its unit of
    replication and n, as one phrase, e.g. "one-sided t-test over pairs; unit: encoder pair, n = 12"), and
    ``verdict_rule_version`` unless ``rule_version=False`` (a page's second table of claims: glue keys are
    unique per page).
    """
    from myst_nb import glue

    from ..verdicts import RULE_VERSION

    if rule_version:
        glue("verdict_rule_version", RULE_VERSION, display=False)
    for cid, row in claims.iterrows():
        glue(f"claim_{cid}_status", row.status, display=False)
        glue(f"claim_{cid}_stat", row.statistic, display=False)
        glue(f"claim_{cid}_test", evidence(row), display=False)


def evidence(row) -> str:
    """A claim's test, unit and n as one phrase ("—" when the claim has no test)."""
    test = getattr(row, "test", "") or ""
    if not test:
        return "—"
    unit, n = getattr(row, "unit", "") or "", getattr(row, "n", None)
    n_text = "" if n is None or pd.isna(n) else f", n = {int(n)}"
    return f"{test}; unit: {unit}{n_text}" if unit else test


#: The kinds of verdict, in the order the book lists them, and the CSS class each badge carries.
VERDICT_KINDS = {
    "reproduced": "memlib-verdict-reproduced",
    "partly reproduced": "memlib-verdict-partly",
    "not reproduced": "memlib-verdict-not-reproduced",
    "inconclusive": "memlib-verdict-inconclusive",
    "not attempted": "memlib-verdict-not-attempted",
    "not tested yet": "memlib-verdict-not-tested",
    "decided in another chapter": "memlib-verdict-elsewhere",
}


def verdict_kind(status: str) -> str:
    """The kind of a verdict (a key of :data:`VERDICT_KINDS`) from its text, e.g. ``"partly reproduced (1 of 2
    parts) (cpu)"`` → ``"partly reproduced"``; ``"other"`` for text that names none."""
    s = str(status).strip().lower()
    if s.startswith("not reproduced yet"):
        return "not tested yet"
    if s.startswith("decided in"):
        return "decided in another chapter"
    for kind in VERDICT_KINDS:
        if s.startswith(kind):
            return kind
    return "other"


def verdict_badge(status: str, href: str | None = None) -> str:
    """A verdict as an HTML badge coloured by its kind (a link to ``href`` when given); the text is the status
    as the chapter glued it, so its preset stays visible."""
    status = str(status)
    cls = f"memlib-verdict {VERDICT_KINDS.get(verdict_kind(status), 'memlib-verdict-other')}"
    # Keep short asides such as "(1 of 2 parts)" and "(cpu)" together when the badge wraps.
    text = re.sub(r"\(([^()]{1,16})\)", lambda m: "(" + m.group(1).replace(" ", "\u00a0") + ")", html.escape(status))
    if href:
        return f'<a class="{cls}" href="{html.escape(href)}">{text}</a>'
    return f'<span class="{cls}">{text}</span>'


#: Cell padding and borders of every table a chapter shows (pandas' Styler sets none, so cells run together).
TABLE_STYLES = [
    {"selector": "th, td", "props": "padding: 0.25em 0.7em; text-align: right; border-bottom: 1px solid #ddd;"},
    {"selector": "th", "props": "font-weight: 600; background: #f6f6f6;"},
    {"selector": "", "props": "border-collapse: collapse; margin: 0.5em 0; font-size: 0.9em;"},
]


#: How a column of long text is shown (read from the left, wrapped, wide enough to read).
WRAPPED = "text-align: left; white-space: normal; min-width: 22em;"


def table(
    df: pd.DataFrame,
    digits: int = 3,
    *,
    index_name: str | None = None,
    hide_index: bool = False,
    percent=(),
    wrap=(),
):
    """A DataFrame as a readable table: padded cells, numbers to ``digits`` significant places, "—" for
    missing values, ``percent`` columns as percentages, ``wrap`` columns left-aligned and wrapped, a ``status``
    column of text as verdict badges (:func:`verdict_badge`)."""
    df = df.copy()
    if isinstance(df.columns, pd.MultiIndex):
        df.columns = [" ".join(str(c) for c in col if str(c)) for col in df.columns]
    if index_name is not None:
        df.index.name = index_name

    def fmt(v):
        if v is None or (isinstance(v, float) and np.isnan(v)) or v is pd.NA:
            return "—"
        if isinstance(v, (bool, np.bool_)):
            return "yes" if v else "no"
        if isinstance(v, (int, np.integer)):
            return f"{int(v):,}"
        if isinstance(v, (float, np.floating)):
            if abs(v) < 1e-12:  # zero up to rounding (e.g. a calibrated mean on the points it calibrates)
                return "0"
            if float(v).is_integer() and abs(v) < 1e6:
                return f"{int(v):,}"
            return f"{v:.{digits}g}" if abs(v) < 1e-3 or abs(v) >= 1e4 else f"{v:.{digits}f}"
        return str(v)

    styler = df.style.format(fmt, na_rep="—").format_index(fmt, axis=0).set_table_styles(TABLE_STYLES)
    for col in percent:
        styler = styler.format(lambda v: "—" if pd.isna(v) else f"{v:.1%}", subset=[col])
    if "status" in df.columns and not pd.api.types.is_numeric_dtype(df["status"]):
        styler = styler.format(lambda v: "—" if pd.isna(v) else verdict_badge(v), subset=["status"])
    # Column styles (selector "td.colN") outrank the table's "td": text reads from the left, long text wraps.
    columns = {
        c: [{"selector": "td", "props": "text-align: left;"}]
        for c in df.columns
        if not pd.api.types.is_numeric_dtype(df[c])
    }
    columns.update({c: [{"selector": "td", "props": WRAPPED}] for c in wrap})
    styler = styler.set_table_styles(columns, overwrite=False) if columns else styler
    return styler.hide(axis="index") if hide_index else styler
