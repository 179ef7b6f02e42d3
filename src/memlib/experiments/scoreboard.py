"""The scoreboard in two layers, written from the claims catalogue and the executed chapters.

``book/_data/claims.yml`` holds what the papers say, one record per claim (copied from the papers, never
computed); the executed chapters in ``book/chapters`` hold what memlib found (their glued
``claim_<id>_status``, ``claim_<id>_stat`` and ``claim_<id>_test``, and any other ``claim_<id>_<field>``
such as a yardstick or a planned n). :func:`scoreboard_markdown` joins them into MyST:

- a legend of the verdict badges (:func:`~memlib.experiments.page.verdict_badge`, the one renderer, with the
  colours of ``book/_static/memlib.css``);
- per paper, a **top table** with one row per claim: id, the claim in one line, the paper's value, ours and
  the verdict as a badge linked to the chapter section that decides it ("Verdicts on the claims"); it has
  fixed column widths so that it fits the text column;
- per paper, the **details**: one sphinx-design dropdown per claim with the test, its unit of replication
  and n, the full statistic, the paper's full value and source.

:func:`write_scoreboard` writes it to ``book/_generated/scoreboard.md``, which ``book/scoreboard.md``
includes; ``memlib-run-notebooks --replace-chapters`` rewrites it with the glance, and a test checks that
the committed file is what the committed chapters give.
"""

from __future__ import annotations

import re
from pathlib import Path

from .glance import glued_values
from .page import VERDICT_KINDS, verdict_badge

#: Where the chapters' claims tables are (the heading every chapter gives its verdicts).
VERDICT_SECTION = "verdicts-on-the-claims"
#: The two papers in the order the scoreboard shows them (catalogue key → heading, what its sources mean).
PAPERS = {
    "SSLMem": (
        "SSLMem (ICLR 2024)",
        "Sources are sections, figures and tables of the SSLMem paper.",
    ),
    "Localisation": (
        "LayerMem and UnitMem (NeurIPS 2024)",
        "Sources refer to the localisation paper. The sources available to this project (its abstract and a "
        'summary) give no figure or table numbers, so each claim cites the finding it comes from: "finding (n)" '
        'is the n-th finding listed in the paper\'s abstract, and "paper body" a claim made in the text without a '
        "section number in those sources.",
    ),
}
#: How long "ours" may be in the top table before it is cut (the full statistic is in the details).
HEADLINE_CHARS = 56


def load_claims(path: str | Path) -> list[dict]:
    """The claims catalogue (``book/_data/claims.yml``) as a list of records."""
    import yaml

    return yaml.safe_load(Path(path).read_text())


def chapter_files(chapters: str | Path) -> dict[str, Path]:
    """The executed chapters by their two-digit number (``"01"`` → ``…/01_sslmem.ipynb``)."""
    return {nb.stem[:2]: nb for nb in sorted(Path(chapters).glob("0*.ipynb"))}


def _split_top(text: str, seps: str) -> list[str]:
    """``text`` split at the characters ``seps`` outside parentheses."""
    parts, depth, cur = [], 0, ""
    for ch in text:
        depth += ch == "("
        depth -= ch == ")"
        if ch in seps and depth == 0:
            parts.append(cur)
            cur = ""
        else:
            cur += ch
    return [*parts, cur]


def headline(statistic: str, limit: int = HEADLINE_CHARS) -> str:
    """The first clause of a glued statistic, without its asides, cut at a word to ``limit`` characters:
    ``"S_C = +0.071 (sd over pairs 0.042; paper +0.307); Holm p = 0.0025; …"`` → ``"S_C = +0.071"``.

    An aside is a parenthesis after a space, or one holding a list (``τ(privacy level, accuracy)``);
    ``z(MLP)`` and ``encoder(s)`` stay."""
    first = _split_top(str(statistic), ";")[0]
    text = first
    for _ in range(3):  # innermost parentheses first: "(neither direction significant (p = 0.18))"
        text = re.sub(r"\s\([^()]*\)|\([^()]*,[^()]*\)|\([^()]*\)(?=\))", "", text)
    text = re.sub(r"\s+", " ", text).replace(" :", ":").replace(" ,", ",").strip(" ,:")
    if len(text) > limit:
        text = text[: text.rfind(" ", 0, limit - 1)].rstrip(" ,:;") + " …"
    return text or "—"


def _cell(text: str) -> str:
    """Text safe in a pipe-table cell."""
    return str(text).replace("|", "\\|").replace("\n", " ")


def claim_rows(catalogue: str | Path, chapters: str | Path) -> list[dict]:
    """Each claim of the catalogue with what its chapter glued: ``status``, ``statistic``, ``test``, ``unit``
    (with n), ``href`` (the chapter's verdicts section) and ``extra`` (any other glued ``claim_<id>_<field>``)."""
    files = chapter_files(chapters)
    glued = {ch: glued_values(nb) for ch, nb in files.items()}
    rows = []
    for c in load_claims(catalogue):
        ch = c.get("chapter")
        g = glued.get(ch, {}) if ch else {}
        prefix = f"claim_{c['id']}_"
        status = g.get(prefix + "status") or c.get("status") or "not reproduced yet"
        test = g.get(prefix + "test", "—")
        test, _, unit = test.partition("; unit: ")
        extra = {
            k[len(prefix) :].replace("_", " "): v
            for k, v in g.items()
            if k.startswith(prefix) and k[len(prefix) :] not in ("status", "stat", "test")
        }
        rows.append(
            {
                **c,
                "status": status,
                "statistic": g.get(prefix + "stat") or c.get("statistic") or "—",
                "test": test or "—",
                "unit": unit or "—",
                "extra": extra,
                "href": f"chapters/{files[ch].stem}.html#{VERDICT_SECTION}" if ch in files else None,
                "chapter_doc": f"chapters/{files[ch].stem}.ipynb" if ch in files else None,
            }
        )
    return rows


def _legend() -> str:
    examples = {
        "reproduced": "reproduced",
        "partly reproduced": "partly reproduced (k of m parts)",
        "not reproduced": "not reproduced",
        "inconclusive": "inconclusive",
        "not attempted": "not attempted",
        "not tested yet": "not reproduced yet",
        "decided in another chapter": "decided in chapter NN",
    }
    return "Verdicts: " + " ".join(verdict_badge(examples[k]) for k in VERDICT_KINDS) + "\n"


def _top_table(rows: list[dict]) -> list[str]:
    lines = [
        "```{table}",
        ":class: memlib-scoreboard",  # its column widths are in book/_static/memlib.css
        "",
        "| id | claim | paper | ours | verdict |",
        "|---|---|---|---|---|",
    ]
    for r in rows:
        ours = "—" if r["statistic"] == "—" else headline(r["statistic"])
        lines.append(
            f'| <a href="#claim-{r["id"].lower()}">{r["id"]}</a> | {_cell(r["claim"])} | '
            f"{_cell(r.get('paper_short') or '—')} | {_cell(ours)} | {verdict_badge(r['status'], r['href'])} |"
        )
    lines += ["```", ""]
    return lines


def _details(r: dict) -> list[str]:
    chapter = f"[chapter {r['chapter']}]({r['chapter_doc']})" if r.get("chapter_doc") else "none yet"
    items = [
        ("verdict", verdict_badge(r["status"], r["href"])),
        ("ours", r["statistic"]),
        ("test", r["test"]),
        ("unit and n", r["unit"]),
        *((k, v) for k, v in r["extra"].items()),
        ("paper value", r.get("paper_value") or "—"),
        ("paper source", r.get("source") or "—"),
        ("decided in", chapter),
    ]
    return [
        f"::::{{dropdown}} {r['id']} · {r['claim']}",
        f":name: claim-{r['id'].lower()}",
        "",
        *(f"**{k}**: {v}\\" if i < len(items) - 1 else f"**{k}**: {v}" for i, (k, v) in enumerate(items)),
        "::::",
        "",
    ]


def scoreboard_markdown(catalogue: str | Path, chapters: str | Path) -> str:
    """The scoreboard's two layers as MyST markdown (see the module docstring)."""
    rows = claim_rows(catalogue, chapters)
    lines = [_legend()]
    for key, (heading, note) in PAPERS.items():
        mine = [r for r in rows if r.get("paper") == key]
        if not mine:
            continue
        lines += [f"## {heading}", "", note, ""]
        lines += _top_table(mine)
        lines += ["**Evidence per claim** (open a claim for its test, unit, n, statistic and the paper's source):", ""]
        for r in mine:
            lines += _details(r)
    return "\n".join(lines)


def write_scoreboard(book: str | Path) -> Path:
    """Write ``<book>/_generated/scoreboard.md`` from ``<book>/_data/claims.yml`` and ``<book>/chapters``."""
    book = Path(book)
    out = book / "_generated" / "scoreboard.md"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(scoreboard_markdown(book / "_data" / "claims.yml", book / "chapters"))
    return out
