"""Claims as data (memlib.experiments.claims): one record, one table builder for every chapter."""

import pandas as pd

from memlib.experiments.claims import Claim, claims_table
from memlib.experiments.page import glue_claims
from memlib.verdicts import RULE_VERSION


def test_claims_table_keeps_every_field_and_the_order():
    t = claims_table(
        [
            Claim("S2", "reproduced (cpu, seed 0)", "t = 3.1", "Welch t-test", "encoder pair", 4),
            Claim("S1", "inconclusive", "—"),
        ]
    )
    assert list(t.index) == ["S2", "S1"] and t.index.name == "claim"
    assert list(t.columns) == ["status", "statistic", "test", "unit", "n"]
    assert t.loc["S2", "n"] == 4 and pd.isna(t.loc["S1", "n"])  # no count is missing, not 0
    assert t.loc["S2", "unit"] == "encoder pair"


def test_claim_words_become_a_column_when_given():
    t = claims_table([Claim("L1", "x", "y", text="LayerMem rises with depth")])
    assert t.index.name == "claim id" and t.loc["L1", "claim"] == "LayerMem rises with depth"


def test_glue_takes_status_and_statistic(monkeypatch):
    glued = {}
    import myst_nb

    monkeypatch.setattr(myst_nb, "glue", lambda name, value, display=True: glued.__setitem__(name, value))
    glue_claims(
        claims_table(
            [
                Claim("S5", "not reproduced (cpu)", "t = -1.0", "t-test over pairs", "encoder pair", 12),
                Claim("S20", "not attempted", "—"),
            ]
        )
    )
    assert glued == {
        "claim_S5_status": "not reproduced (cpu)",
        "claim_S5_stat": "t = -1.0",
        "claim_S5_test": "t-test over pairs; unit: encoder pair, n = 12",
        "claim_S20_status": "not attempted",
        "claim_S20_stat": "—",
        "claim_S20_test": "—",
        "verdict_rule_version": RULE_VERSION,  # which version of the rule decided the chapter (the glance reads it)
    }
