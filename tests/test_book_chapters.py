"""The committed book: every executed chapter keeps its figures as images, and the results at a glance are
what the committed chapters say."""

from pathlib import Path

import pytest

from memlib.experiments.glance import figure_stand_ins, glance_markdown

ROOT = Path(__file__).resolve().parents[1]
CHAPTERS = sorted((ROOT / "book" / "chapters").glob("0*.ipynb"))


@pytest.mark.parametrize("path", CHAPTERS, ids=lambda p: p.stem)
def test_every_figure_of_a_committed_chapter_is_an_image(path):
    assert not figure_stand_ins(path), f"{path.name}: figures without image/png (re-execute the chapter)"


def test_the_stand_in_check_finds_a_lost_figure(tmp_path):
    import nbformat

    nb = nbformat.v4.new_notebook()
    cell = nbformat.v4.new_code_cell("fig")
    cell.outputs = [nbformat.v4.new_output("display_data", data={"text/plain": "<Figure size 640x480 with 1 Axes>"})]
    nb.cells = [cell]
    nbformat.write(nb, tmp_path / "nb.ipynb")
    assert figure_stand_ins(tmp_path / "nb.ipynb") == ["cell 0"]


def test_the_committed_glance_is_what_the_committed_chapters_say():
    committed = (ROOT / "book" / "_generated" / "glance.md").read_text()
    assert committed == glance_markdown(ROOT / "book" / "chapters"), (
        "book/_generated/glance.md is stale: run "
        "`python -c \"from memlib.experiments.glance import write_glance; write_glance('book')\"`"
    )


def test_every_glance_row_sums_to_its_claims_and_the_rows_to_the_total():
    import re

    text = glance_markdown(ROOT / "book" / "chapters")
    total = int(re.search(r"Of the (\d+) claims", text).group(1))
    rows = [line.split("|")[2:-1] for line in text.splitlines() if line.startswith("| [")]
    assert rows, "the glance lists no chapter"
    for cells in rows:
        claims, *by_status = (int(c) for c in cells)
        assert claims == sum(by_status), f"a glance row does not sum: {cells}"
    assert sum(int(cells[0]) for cells in rows) == total


def test_the_committed_scoreboard_is_what_the_catalogue_and_the_chapters_say():
    from memlib.experiments.scoreboard import scoreboard_markdown

    committed = (ROOT / "book" / "_generated" / "scoreboard.md").read_text()
    assert committed == scoreboard_markdown(ROOT / "book" / "_data" / "claims.yml", ROOT / "book" / "chapters"), (
        "book/_generated/scoreboard.md is stale: run "
        "`python -c \"from memlib.experiments.scoreboard import write_scoreboard; write_scoreboard('book')\"`"
    )


def test_every_scoreboard_claim_has_one_row_one_badge_and_one_details_block():
    import re

    from memlib.experiments.scoreboard import load_claims

    text = (ROOT / "book" / "_generated" / "scoreboard.md").read_text()
    ids = [c["id"] for c in load_claims(ROOT / "book" / "_data" / "claims.yml")]
    assert len(ids) == len(set(ids)) >= 38
    rows = re.findall(r'^\| <a href="#claim-(\w+)">', text, re.M)
    assert rows == [i.lower() for i in ids]
    assert text.count('class="memlib-verdict ') == 7 + 2 * len(ids)  # legend, top table, details
    assert re.findall(r"^:name: claim-(\w+)$", text, re.M) == rows


def test_the_verdict_badge_colours_by_kind_and_the_claims_tables_use_it():
    import pandas as pd

    from memlib.experiments.page import table, verdict_badge, verdict_kind

    assert verdict_kind("partly reproduced (1 of 2 parts) (cpu)") == "partly reproduced"
    assert verdict_kind("not reproduced yet") == "not tested yet"
    assert verdict_kind("not reproduced (cpu)") == "not reproduced"
    assert 'class="memlib-verdict memlib-verdict-inconclusive" href="a.html#b"' in verdict_badge(
        "inconclusive (cpu)", "a.html#b"
    )
    claims = pd.DataFrame({"status": ["reproduced (cpu)"], "statistic": ["t = 3"]}, index=["S1"])
    assert "memlib-verdict-reproduced" in table(claims, wrap=["statistic"]).to_html()
