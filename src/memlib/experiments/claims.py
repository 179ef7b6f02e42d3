"""Claims as data: one record per scoreboard claim, one table builder for every chapter.

Each runner's ``claims()`` returns a table built by :func:`claims_table`
from :class:`Claim` records; the chapters glue its ``status`` and
``statistic`` columns, and the scoreboard shows the test, its unit of
replication and n beside them. The verdict comes from the one rule in
:mod:`memlib.verdicts` (:func:`~memlib.verdicts.verdict_rule`, applied over a
chapter's family by :func:`~memlib.verdicts.decide`).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import pandas as pd


@dataclass(frozen=True)
class Claim:
    """The verdict on one claim and the evidence behind it.

    Attributes
    ----------
    id
        The scoreboard id (``"S1"``, ``"L4"``, …).
    status
        The verdict, from :mod:`memlib.verdicts` (labelled with the preset by
        :func:`~memlib.verdicts.preset_status`).
    statistic
        The numbers the verdict rests on, as a sentence.
    test
        The test that decided it (e.g. ``"one-sided Welch t-test, Holm"``).
    unit
        The unit of replication (``"point"``, ``"encoder pair"``, …).
    n
        How many units the test had (``None``: not a count).
    text
        The claim in words, where the chapter shows it beside the id.
    """

    id: str
    status: str
    statistic: str
    test: str = ""
    unit: str = ""
    n: int | None = None
    text: str = ""


def claims_table(claims: list[Claim]) -> pd.DataFrame:
    """The claims as a DataFrame indexed by claim id: ``status``, ``statistic``, ``test``, ``unit``, ``n``
    (and the claim's words, ``claim``, with the index named ``claim id``, when the records carry them)."""
    rows = [asdict(c) for c in claims]
    ids = [r.pop("id") for r in rows]
    texts = [r.pop("text") for r in rows]
    cols = ["status", "statistic", "test", "unit", "n"]
    df = pd.DataFrame(rows, index=pd.Index(ids, name="claim"), columns=cols).astype({"n": "Int64"})
    if any(texts):
        df.insert(0, "claim", texts)
        df.index.name = "claim id"
    return df
