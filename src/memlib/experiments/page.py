"""What every chapter notebook shows besides its own results: the smoke banner and its glued claims.

Kept here so that the notebooks stay thin and say the same thing the same way.
"""

from __future__ import annotations

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


def glue_claims(claims: pd.DataFrame) -> None:
    """Glue each claim's ``status`` and ``statistic`` for the scoreboard.

    The names are ``claim_<id>_status`` and ``claim_<id>_stat``.
    """
    from myst_nb import glue

    for cid, row in claims.iterrows():
        glue(f"claim_{cid}_status", row.status, display=False)
        glue(f"claim_{cid}_stat", row.statistic, display=False)
