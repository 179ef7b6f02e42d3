"""Experiment settings: typed, frozen, checked, one constructor per preset.

Each experiment's own knobs (removal's ``half`` and ``fractions``, the DP
sweep's ``epsilons``, …) are the fields of a frozen :class:`Settings`
subclass whose ``__post_init__`` checks them, naming the field and the fix.
Its ``TABLE`` maps each preset name to those fields and to any
:class:`~memlib.experiments.presets.Preset` field that differs from the
SSLMem preset of the same name (e.g. fewer epochs); :meth:`Settings.for_preset`
splits a run's overrides between the two and returns the training preset
and the settings. Experiments are data: a new sweep is a new table row.
"""

from __future__ import annotations

import dataclasses
from typing import ClassVar

from .presets import Preset, get_preset


@dataclasses.dataclass(frozen=True)
class Settings:
    """Base of every experiment's settings (see the module docstring)."""

    #: Preset name → this experiment's fields and the Preset fields it changes at that preset.
    TABLE: ClassVar[dict[str, dict]] = {}

    @classmethod
    def for_preset(cls, preset: str | Preset, **overrides):
        """The training preset and these settings at ``preset``, with ``overrides`` applied (``None`` ignored).

        Returns
        -------
        tuple
            The :class:`~memlib.experiments.presets.Preset` and the settings.
        """
        name = preset if isinstance(preset, str) else preset.name
        if name not in cls.TABLE:
            raise ValueError(f"preset={name!r} has no settings for this experiment; choose one of {sorted(cls.TABLE)}")
        own = {f.name for f in dataclasses.fields(cls)}
        values = {**cls.TABLE[name], **{k: v for k, v in overrides.items() if v is not None}}
        settings = cls(**{k: v for k, v in values.items() if k in own})
        return get_preset(preset, **{k: v for k, v in values.items() if k not in own}), settings

    def to_dict(self) -> dict:
        """The fields as a dict (what run keys and provenance record)."""
        return dataclasses.asdict(self)

    def __getitem__(self, name: str):
        """Read access by name, as the notebooks do (``s["half"]``)."""
        if name not in {f.name for f in dataclasses.fields(self)}:
            raise KeyError(name)
        return getattr(self, name)

    def _set(self, name: str, value) -> None:
        """Normalise a field in ``__post_init__`` (the dataclass is frozen)."""
        object.__setattr__(self, name, value)
