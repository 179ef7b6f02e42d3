"""Experiments registered by name: one section of the papers, one config, a design and an analysis.

An :class:`Experiment` names its chapter's notebook, the claims it decides,
how to resolve its config at a preset (:attr:`Experiment.config`), the encoder
designs that config needs (:attr:`Experiment.design`, which the evidence
store answers) and how to run it (:attr:`Experiment.run`: train what the
store lacks, append, analyse from stored rows). :func:`run_experiment` is
the one entry point; the notebooks, ``memlib-evidence`` and scripts reach
the same parameters through it. A section registers itself with
:func:`register_experiment` in its own module, listed in ``_MODULES``.

Seeds, for every experiment: ``seed`` shifts every split seed of the
config (``seed=10`` runs splits 10, 11, 12 where the preset has 0, 1, 2);
member ``i`` of family f, g or f′ of a split seeded ``s`` trains with
:func:`~memlib.experiments.encoders.model_seed` ``(s, family, i)``.
"""

from __future__ import annotations

import difflib
import importlib
from dataclasses import dataclass
from typing import Callable

#: Modules whose import registers an experiment (imported on first lookup, so ``import memlib`` stays light).
_MODULES = (
    "memlib.experiments.sslmem_study",
    "memlib.experiments.subset_study",
    "memlib.experiments.removal_evidence",
    "memlib.experiments.regularization_evidence",
    "memlib.experiments.dp_evidence",
    "memlib.experiments.localization_evidence",
    "memlib.experiments.mae_regime",
    "memlib.experiments.arch_size",
    "memlib.experiments.setups_evidence",
)

#: Registered experiments by name (filled by :func:`register_experiment`).
EXPERIMENTS: dict[str, "Experiment"] = {}


@dataclass(frozen=True)
class Experiment:
    """One registered section.

    Attributes
    ----------
    name
        Registry name (``"sslmem"``).
    chapter
        The chapter's number (``"01"``); :func:`get_experiment` accepts it too.
    notebook
        The chapter's notebook, without extension (``"01_sslmem"``).
    title
        A line for listings.
    claims
        Scoreboard ids the experiment decides.
    config
        ``(preset, seed=0, **params) → config``: resolves and validates every setting once; refuses unknown ones.
    design
        ``(config, data_root=None) → list`` of designs; each has ``name`` and ``keys()`` (the encoder keys it
        needs from the store).
    run
        ``(config, *, store, train, device, cache_dir, data_root, progress) → result``: computes and appends
        what the store lacks (only with ``train=True``), then analyses from stored rows.
    fill
        ``(design, *, store, device, cache_dir=None, data_root=None, progress=True)``: compute one design's rows
        and append them (one batch), training what the cache lacks; ``memlib-evidence add`` goes design by design.
    minutes_per_encoder
        CPU minutes one encoder of the design trains at ``cpu`` on one worker (for plans and budgets).
    missing
        ``(store, design) → list`` of what the store lacks for a design (empty: nothing to compute), or
        ``None``, where a design lacks only encoders.
    bind
        ``(design, store) → design`` completed from rows already in the store (a design whose encoders depend on
        another experiment's rows, e.g. chapter 02's ranking), computing nothing; it raises ``LookupError`` while
        those rows are missing. ``None``: every design is complete as given.
    """

    name: str
    chapter: str
    notebook: str
    title: str
    claims: tuple[str, ...]
    config: Callable
    design: Callable
    run: Callable
    fill: Callable
    minutes_per_encoder: float = 1.7
    missing: Callable | None = None
    bind: Callable | None = None


def check_parameters(params: dict, known, experiment: str) -> None:
    """Refuse parameters not in ``known``, each with the closest known name."""
    unknown = sorted(k for k in params if k not in known)
    if unknown:
        hints = [
            f"{u!r} (did you mean {m[0]!r}?)" if (m := difflib.get_close_matches(u, sorted(known), n=1)) else repr(u)
            for u in unknown
        ]
        raise TypeError(f"unknown parameter(s) {', '.join(hints)} for the {experiment} experiment")


def register_experiment(exp: Experiment) -> Experiment:
    """Add ``exp`` to :data:`EXPERIMENTS` (a second experiment of one name or chapter is refused)."""
    for other in EXPERIMENTS.values():
        if other.name != exp.name and other.chapter == exp.chapter:
            raise ValueError(f"chapter {exp.chapter} is already registered as {other.name!r}")
    EXPERIMENTS[exp.name] = exp
    return exp


def _load() -> None:
    for m in _MODULES:
        importlib.import_module(m)


def experiments() -> dict[str, Experiment]:
    """Every registered experiment, by name."""
    _load()
    return dict(EXPERIMENTS)


def get_experiment(name: str) -> Experiment:
    """The experiment named ``name`` (or whose chapter is ``name``, e.g. ``"01"``)."""
    exps = experiments()
    if name in exps:
        return exps[name]
    for e in exps.values():
        if name in (e.chapter, e.notebook):
            return e
    known = sorted(exps) + sorted(e.chapter for e in exps.values())
    close = difflib.get_close_matches(str(name), known, n=1)
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    raise KeyError(f"experiment={name!r} is not registered{hint}; registered: {', '.join(sorted(exps))}")


def run_experiment(
    name: str,
    preset="smoke",
    *,
    device="cpu",
    seed: int = 0,
    store=None,
    train: bool = True,
    cache_dir=None,
    data_root=None,
    progress: bool = True,
    **params,
):
    """Run experiment ``name`` at ``preset``: resolve its config (unknown parameters refused with the closest
    name), compute what the evidence store ``store`` lacks (only with ``train=True``), and return the
    analysis of stored rows (e.g. :class:`~memlib.experiments.sslmem_study.SSLMemStudy` for ``"sslmem"``)."""
    exp = get_experiment(name)
    cfg = exp.config(preset, seed=seed, **params)
    return exp.run(
        cfg, store=store, train=train, device=device, cache_dir=cache_dir, data_root=data_root, progress=progress
    )
