"""Results at a glance: what the executed chapters say, read back from their glued values.

The book's landing page and scoreboard include ``book/_generated/glance.md``,
which :func:`write_glance` writes from the executed chapters in
``book/chapters`` (``memlib-run-notebooks --replace-chapters`` calls it; a test
checks that the committed file is what the committed chapters give). Nothing
in it is typed by hand: the counts come from each chapter's glued
``claim_<id>_status`` values, the preset from its glued ``preset``.

:func:`figure_stand_ins` finds figure outputs that lost their image (a
``<Figure size …>`` text and no ``image/png``), which a reader would see as a
grey box.
"""

from __future__ import annotations

import ast
import json
import re
from collections import Counter
from pathlib import Path

from ..verdicts import RULE_VERSION

#: The statuses in the order the glance lists them (a status is matched by its first words).
STATUSES = ("reproduced", "partly reproduced", "not reproduced", "inconclusive", "not attempted", "decided in")
RECORD = "application/papermill.record/"


def glued_values(notebook: str | Path) -> dict[str, str]:
    """Every value a notebook glued as text (``glue(name, value)``), by name."""
    nb = json.loads(Path(notebook).read_text())
    out = {}
    for cell in nb.get("cells", []):
        for o in cell.get("outputs", []):
            name = o.get("metadata", {}).get("scrapbook", {}).get("name")
            text = o.get("data", {}).get(RECORD + "text/plain")
            if name and text is not None:
                text = "".join(text)
                try:  # glue stores the repr of a string
                    value = ast.literal_eval(text)
                except (ValueError, SyntaxError):
                    value = text
                out[name] = value if isinstance(value, str) else text
    return out


def figure_stand_ins(notebook: str | Path) -> list[str]:
    """Outputs of ``notebook`` that show a figure's text stand-in (``<Figure size …>``) without an ``image/png``:
    the glue name, or the cell number for a displayed figure."""
    nb = json.loads(Path(notebook).read_text())
    bad = []
    for i, cell in enumerate(nb.get("cells", [])):
        for o in cell.get("outputs", []):
            data = o.get("data", {})
            text = "".join(data.get("text/plain", "") or data.get(RECORD + "text/plain", ""))
            has_png = "image/png" in data or RECORD + "image/png" in data
            if "<Figure size" in text and not has_png:
                bad.append(o.get("metadata", {}).get("scrapbook", {}).get("name") or f"cell {i}")
    return bad


def _parameter(notebook: Path, name: str) -> str | None:
    """The value papermill injected for ``name`` (else the ``parameters`` cell's), as a string."""
    cells = json.loads(Path(notebook).read_text()).get("cells", [])
    for tag in ("injected-parameters", "parameters"):
        for cell in cells:
            if tag in cell.get("metadata", {}).get("tags", []):
                m = re.search(rf"^{name}\s*=\s*(.+?)\s*(#.*)?$", "".join(cell["source"]), re.M)
                if m:
                    try:
                        return str(ast.literal_eval(m.group(1)))
                    except (ValueError, SyntaxError):
                        return m.group(1)
    return None


def _kind(status: str) -> str:
    s = status.lower()
    if s.startswith("not reproduced yet"):
        return "not tested yet"
    for k in STATUSES:
        if s.startswith(k):
            return "decided in another chapter" if k == "decided in" else k
    return "other"


def chapter_summary(chapters: str | Path) -> list[dict]:
    """Per executed chapter: its file, preset, claims by status, and whether its claims carry test, unit and n
    (the encoder-level rule)."""
    rows = []
    for nb in sorted(Path(chapters).glob("0*.ipynb")):
        g = glued_values(nb)
        statuses = {k[len("claim_") : -len("_status")]: v for k, v in g.items() if re.fullmatch(r"claim_\w+_status", k)}
        rows.append(
            {
                "chapter": nb.stem,
                "preset": g.get("preset") or _parameter(nb, "preset") or "—",
                "claims": statuses,
                "rule": any(k.endswith("_test") for k in g),
                "rule_version": int(g.get("verdict_rule_version", 1 if any(k.endswith("_test") for k in g) else 0)),
            }
        )
    return rows


def glance_markdown(chapters: str | Path) -> str:
    """The results-at-a-glance box as MyST markdown (an admonition with counts and a per-chapter table)."""
    rows = chapter_summary(chapters)
    counts = Counter(_kind(s) for r in rows for s in r["claims"].values())
    order = [
        "reproduced",
        "partly reproduced",
        "not reproduced",
        "inconclusive",
        "not attempted",
        "not tested yet",
        "decided in another chapter",
    ]
    total = sum(v for k, v in counts.items() if k != "decided in another chapter")
    presets = sorted({r["preset"] for r in rows if r["claims"]})
    missing = [x for x in ("gpu", "paper") if x not in presets]
    # The preset goes in the table only when chapters differ in it; otherwise the sentence names it.
    show_preset = len(presets) > 1
    lines = [
        "```{admonition} Results at a glance",
        ":class: tip",
        "",
        f"Of the {total} claims the chapters test, "
        + ", ".join(f"**{counts[k]}** {k}" for k in order[:-1] if counts.get(k))
        + f". The chapters ran at the {' and '.join(f'`{x}`' for x in presets)} preset"
        + (
            " (2 CPU cores, Fashion-MNIST, 150 training points per encoder, `resnet_narrow`)"
            if presets == ["cpu"]
            else ""
        )
        + "; "
        + (
            f"the {' and '.join(f'`{x}`' for x in missing)} presets have not been run, so no claim is decided at "
            "the papers' scale. "
            if missing
            else ""
        )
        + "Statuses follow the {ref}`verdict rule <verdicts>`; the [scoreboard](scoreboard.md) gives each claim's "
        "test, unit, n and statistic.",
        "```",
        "",
        f"| chapter{' (preset)' if show_preset else ''} | claims | reproduced | partly | not reproduced | "
        "inconclusive | not attempted |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    earlier = []
    for r in rows:
        if not r["claims"]:
            continue
        c = Counter(_kind(s) for s in r["claims"].values())
        star = "" if r["rule"] else " *"
        earlier += [] if r["rule"] else [r["chapter"][:2]]
        # A claim decided in another chapter is counted there, and one no run has tested yet goes with the
        # not-attempted ones, so every row sums to its claims.
        n = len(r["claims"]) - c["decided in another chapter"]
        preset = f" (`{r['preset']}`)" if show_preset else ""
        lines.append(
            f"| [{r['chapter'][:2]}](chapters/{r['chapter']}.ipynb){star}{preset} | {n} | "
            f"{c['reproduced']} | {c['partly reproduced']} | {c['not reproduced']} | {c['inconclusive']} | "
            f"{c['not attempted'] + c['not tested yet']} |"
        )
    older = [r["chapter"][:2] for r in rows if r["claims"] and r["rule"] and r["rule_version"] < RULE_VERSION]
    if older:
        lines += [
            "",
            f"Chapter{'s' if len(older) > 1 else ''} {', '.join(older)} {'were' if len(older) > 1 else 'was'} "
            "executed under the previous version of the verdict rule (refutation by power for the paper's "
            "effect, Holm only over chapter 01's contrasts); the code now decides by the rule on the reading "
            "page, and their statuses may change when they are re-executed.",
        ]
    if earlier:
        lines += [
            "",
            (
                f"\\* Chapters {', '.join(earlier)} were executed before verdicts were decided over encoder pairs; "
                "their statuses follow the earlier rule (points as replicates) until they are re-executed."
                if len(earlier) > 1
                else f"\\* Chapter {earlier[0]} was executed before verdicts were decided over encoder pairs; its "
                "statuses follow the earlier rule (points as replicates) until it is re-executed."
            ),
        ]
    lines += [""]
    return "\n".join(lines)


def write_glance(book: str | Path) -> Path:
    """Write ``<book>/_generated/glance.md`` from ``<book>/chapters`` and return its path."""
    book = Path(book)
    out = book / "_generated" / "glance.md"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(glance_markdown(book / "chapters"))
    return out
