"""Presets: named bundles of sizes and settings for every experiment.

- ``smoke``: seconds on a CPU, for tests and CI. Its numbers mean nothing
  and every page that shows them says so.
- ``cpu``: 2 CPU cores, under an hour per section, sized as the book's Methods page explains
  (memorisation only shows once the encoder can fit its own training points:
  small training sets, many epochs, several seeds per family).
- ``gpu``: one H100, full Fashion-MNIST.
- ``paper``: the paper's CIFAR-10 settings (Table 6).

**Seeds.** Every runner takes one ``seed`` (default 0), and it means the same
everywhere. A runner of one run (``run_sslmem``, ``run_removal``,
``run_regularization``, ``run_dp``, ``run_localization``) uses it as the run's
seed: its split, the seeds of its encoders (through
:func:`~memlib.experiments.encoders.model_seed`) and every seed drawn within
the run derive from it. A runner of several runs (``run_sslmem_study``,
``run_setups``) adds it to every seed of its settings (:func:`shift_seeds`:
``seed=10`` runs seeds 10, 11, 12 where the settings say 0, 1, 2), so a new
``seed`` gives a whole new experiment and ``seed=0`` gives the preset's own.
A notebook passes its ``seed`` parameter to its runner and never shifts
seeds itself.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field


@dataclass(frozen=True)
class Preset:
    """Settings of an SSLMem run. Any field can be overridden by name."""

    name: str
    dataset: str = "fashion_mnist"
    arch: str = "resnet_narrow"
    method: str = "simclr"
    shared: int | float = 100
    candidate: int | float = 50
    extra: int | float | None = None  # defaults to the size of S_C
    epochs: int = 400
    batch_size: int = 150
    lr: float = 1e-3
    warmup_epochs: int = 10
    augmentation: str = "simclr"
    views: int = 5
    mode: str = "pairwise"
    models_per_family: int = 4
    #: Encoders of the null family f′ (f's data, other seeds); 0 = none. SSLMem(f′ vs f) is chance.
    null_models: int = 0
    #: g_i trains from f_i's seed (initial weights, data order, augmentation draws); see ``model_seed``.
    paired_seeds: bool = False
    probe_train: int | None = 5000  # None = the whole training split
    probe_test: int | None = 2000  # None = the whole test split
    probe_epochs: int = 100
    eval_every: int = 50
    score_batch_size: int = 512
    meaningful: bool = True
    description: str = ""
    #: Keyword arguments of the method, e.g. ``{"mask_ratio": 0.5}`` for MAE (empty: the method's defaults).
    method_kwargs: dict = field(default_factory=dict)

    def replace(self, **overrides) -> "Preset":
        """A copy with some fields changed; unknown names are a clear error."""
        known = {f.name for f in dataclasses.fields(self)}
        bad = sorted(set(overrides) - known)
        if bad:
            raise ValueError(f"unknown preset field(s) {bad}; known: {sorted(known)}")
        return dataclasses.replace(self, **overrides)

    def to_dict(self) -> dict:
        """Every field, as a dict (what run-folder keys cover)."""
        return dataclasses.asdict(self)


# fmt: off
PRESETS: dict[str, Preset] = {
    "smoke": Preset(
        name="smoke", shared=64, candidate=32, epochs=2, batch_size=64, warmup_epochs=1, views=3,
        models_per_family=1, probe_train=512, probe_test=256, probe_epochs=5, eval_every=0, meaningful=False,
        description="CI smoke test: seconds on a CPU; the numbers are meaningless.",
    ),
    "cpu": Preset(
        name="cpu", shared=125, candidate=25, extra=100, epochs=400, batch_size=50, warmup_epochs=10, views=5,
        models_per_family=3, null_models=2, probe_train=5000, probe_test=2000, probe_epochs=100, eval_every=100,
        # Batch 50 gives 3 steps per epoch: with batch 150 (one step per epoch, 400 steps) the
        # encoders were still far from fitting their own points and S_C barely separated from S_S.
        # S_S is 83 % of each encoder's 150 points (the paper: 89 %); S_E is larger than S_C because it
        # calibrates each pair's offset and costs only forward passes.
        description="2 CPU cores: 150 training points per encoder (125 shared), 400 epochs of batch 50, "
        "3 encoders per family and 2 in the null family.",
    ),
    "gpu": Preset(
        name="gpu", arch="resnet18", shared=50000, candidate=5000, extra=5000, epochs=100, batch_size=512,
        lr=2e-3, warmup_epochs=10, views=5, models_per_family=3, probe_train=None, probe_test=None,
        probe_epochs=100, eval_every=10, score_batch_size=2560,
        # 3 encoders per family: with one, every claim over encoder pairs is inconclusive by construction.
        description="One H100, full Fashion-MNIST with the paper's proportions (S_S 50k, S_C = S_I = S_E = 5k), "
        "3 encoders per family.",
    ),
    "paper": Preset(
        name="paper", dataset="cifar10", arch="resnet18", shared=40000, candidate=5000, extra=5000, epochs=600,
        batch_size=1024, lr=2e-3, warmup_epochs=10, views=5, models_per_family=3, probe_train=None,
        probe_test=None, probe_epochs=90, eval_every=50, score_batch_size=2560,
        description="The paper's CIFAR-10 settings (Table 6): S_S 40k, S_C = S_I = S_E = 5k, 600 epochs, batch 1024; "
        "3 encoders per family (the paper trains one), so that claims over encoder pairs can be decided.",
    ),
}
# fmt: on
def get_preset(preset: str | Preset, **overrides) -> Preset:
    """A preset by name (or as given) with ``overrides`` applied; ``None`` overrides are ignored."""
    if isinstance(preset, str):
        if preset not in PRESETS:
            raise ValueError(f"preset={preset!r} is unknown; choose one of {sorted(PRESETS)}")
        preset = PRESETS[preset]
    elif not isinstance(preset, Preset):
        raise TypeError(f"preset={preset!r} must be a preset name ({sorted(PRESETS)}) or a Preset")
    return preset.replace(**{k: v for k, v in overrides.items() if v is not None})


def shift_seeds(settings, seed: int, fields: tuple[str, ...] = ("seeds",)):
    """``settings`` (a dataclass) with every seed in ``fields`` shifted by ``seed``, as the runners of
    several runs do (the convention in this module's docstring); ``settings`` itself at ``seed=0``."""
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise TypeError(f"seed={seed!r} must be an int, e.g. seed=0 (the preset's own seeds)")
    if not seed:
        return settings
    return dataclasses.replace(settings, **{f: tuple(x + seed for x in getattr(settings, f)) for f in fields})


def preset_table():
    """All presets as a DataFrame (one row per preset), for the setup chapter."""
    import pandas as pd

    cols = [
        "dataset",
        "arch",
        "method",
        "shared",
        "candidate",
        "epochs",
        "batch_size",
        "views",
        "models_per_family",
        "description",
    ]
    return pd.DataFrame([{"preset": p.name, **{c: getattr(p, c) for c in cols}} for p in PRESETS.values()]).set_index(
        "preset"
    )
