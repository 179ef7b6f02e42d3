"""One run context: every runner validates, times, trains, records provenance and saves through it.

:meth:`RunContext.start` checks every parameter and folder before any
compute (one validation entry point for every experiment), takes the memlib
commit at the start (code may change while a long run trains), and opens
the run folder (stale temporary files removed, the ``COMPLETE`` marker of an
earlier run dropped). :meth:`RunContext.fit` trains encoders through
:func:`~memlib.experiments.encoders.fit` and remembers the commits that
trained them; :meth:`RunContext.save` writes the results atomically and
then the marker, so a half-written run is never read as finished.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd
import torch

from ..atomic import mark_complete, save_json, start_run, write_csv
from ..memorization.options import ScoringOptions
from ..provenance import git_commit, provenance
from ..training.loop import fingerprint
from .artifacts import ArtifactKind
from .encoders import EncoderSpec, Fitted, family_specs, fit
from .presets import Preset
from .validate import check_run_folders, validate_run_parameters


def scoring_options(p: Preset, seed: int, device, progress: bool = False) -> ScoringOptions:
    """How a run scores at preset ``p``: its views, mode and scoring batch size, with the run's seed, device
    and progress bar (pass it to a metric as ``options=``)."""
    return ScoringOptions(
        views=p.views, mode=p.mode, batch_size=p.score_batch_size, seed=seed, device=device, progress=progress
    )


@dataclass
class RunContext:
    """The frame of one experiment run: validated settings, device, cache, run folder, commit and clock."""

    preset: Preset
    seed: int
    device: torch.device
    cache: Path
    data_root: Path | str | None
    run_dir: Path
    commit: str
    progress: bool = True
    t0: float = field(default_factory=time.perf_counter)
    trained_at: list[str] = field(default_factory=list)

    @classmethod
    def start(
        cls,
        kind: ArtifactKind,
        preset: Preset,
        device,
        seed: int,
        key: dict,
        cache_dir=None,
        data_root=None,
        progress: bool = True,
        *,
        splits: bool = True,
        **checks,
    ) -> "RunContext":
        """Validate everything, then open the run folder ``kind/<fingerprint of key, preset and seed>``.

        ``splits`` also checks the SSLMem split sizes; ``checks`` are passed
        to :func:`~memlib.experiments.validate.validate_run_parameters`
        (``lam=``, ``epsilon=``).
        """
        p, dev = validate_run_parameters(preset, device, seed, splits=splits, **checks)
        cache = check_run_folders(cache_dir, data_root, p.dataset)
        commit = git_commit()
        run_dir = start_run(kind.folder(cache, fingerprint({"preset": p.to_dict(), "seed": seed, **key})))
        return cls(p, seed, dev, cache, data_root, run_dir, commit, progress)

    def fit(self, specs: list[EncoderSpec], train_set, **kw) -> list[Fitted]:
        """Train or load ``specs`` (:func:`~memlib.experiments.encoders.fit`) on this run's device and cache."""
        out = fit(specs, train_set, self.cache, self.device, progress=self.progress, **kw)
        for f in out:
            self.trained_at.extend(f.commits)
        return out

    def fit_named(self, named: dict[str, EncoderSpec], train_set, *, eval_fn=None) -> dict[str, Fitted]:
        """:meth:`fit` for specs by name (the names label the progress bars); all share one worker pool."""
        return dict(zip(named, self.fit(list(named.values()), train_set, eval_fn=eval_fn, labels=list(named))))

    def fit_families(
        self, p: Preset, train_set, splits, families=("f", "g"), *, eval_fn=None, **spec_kw
    ) -> dict[str, list[Fitted]]:
        """Train or load f's and g's families at preset ``p`` (:func:`~memlib.experiments.encoders.family_specs`)
        in one :meth:`fit`; members labelled ``f0``, ``g0``, …"""
        fitted = self.fit_named(
            named_families(family_specs(p, splits, self.seed, families, **spec_kw)), train_set, eval_fn=eval_fn
        )
        return {fam: members(fitted, fam) for fam in families}

    def scoring(self, p: Preset | None = None) -> dict:
        """Keyword arguments for scoring at preset ``p`` (default the run's): :func:`scoring_options` of the run."""
        return scoring_options(p or self.preset, self.seed, self.device, self.progress).given()

    def elapsed(self) -> float:
        """Seconds since the run started."""
        return time.perf_counter() - self.t0

    def provenance(self, config: dict) -> dict:
        """The provenance of the run's results (preset, seed and ``config`` recorded)."""
        return provenance(
            {"preset": self.preset.name, "seed": self.seed, **config},
            self.device,
            self.elapsed(),
            commit=self.commit,
            trained_at=self.trained_at,
        )

    def save(
        self, tables: dict[str, pd.DataFrame] | None = None, jsons: dict[str, object] | None = None, index: bool = False
    ) -> None:
        """Write ``tables`` as CSV and ``jsons`` as JSON into the run folder, atomically, then mark it complete."""
        for name, df in (tables or {}).items():
            write_csv(df, self.run_dir / f"{name}.csv", index=index)
        for name, obj in (jsons or {}).items():
            save_json(obj, self.run_dir / f"{name}.json", indent=1, default=_json_default)
        mark_complete(self.run_dir)


def named_families(families: dict[str, list[EncoderSpec]], prefix: str = "") -> dict[str, EncoderSpec]:
    """``{"f": [a, b], "g": [c]}`` as ``{"<prefix>f0": a, "<prefix>f1": b, "<prefix>g0": c}``."""
    return {f"{prefix}{fam}{i}": s for fam, specs in families.items() for i, s in enumerate(specs)}


def members(fitted: dict[str, Fitted], prefix: str) -> list[Fitted]:
    """The fitted encoders whose name is ``prefix`` followed by a member number, in order."""
    return [f for name, f in fitted.items() if name[len(prefix) :].isdigit() and name.startswith(prefix)]


def _json_default(o):
    """numpy scalars as numbers, anything else JSON cannot take as its string."""
    return o.item() if hasattr(o, "item") and getattr(o, "ndim", None) == 0 else str(o)
