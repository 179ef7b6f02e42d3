"""Experiment settings: an experiment's own knobs per preset, split from the training preset they run on.

Each experiment keeps a table ``{preset name: settings}``: its own keys (e.g.
removal's ``half`` and ``fractions``) and any :class:`~memlib.experiments.presets.Preset`
field that differs from the SSLMem preset of the same name (e.g. fewer
epochs). :func:`experiment_settings` applies a run's overrides and returns
the two parts; each experiment then checks its own keys.
"""

from __future__ import annotations

from .presets import Preset, get_preset


def experiment_settings(table: dict[str, dict], own: tuple[str, ...], preset: str | Preset,
                        overrides: dict) -> tuple[Preset, dict]:
    """Split a preset's experiment settings from its training settings, with overrides applied.

    ``table[name]`` holds the experiment's own keys ``own`` (e.g. ``half``,
    ``fractions``) and any :class:`~memlib.experiments.presets.Preset` fields
    that differ from the SSLMem preset of the same name; ``overrides`` may
    change either (``None`` values are ignored).

    Returns
    -------
    tuple
        The training preset and the dict of the experiment's own settings.
    """
    name = preset if isinstance(preset, str) else preset.name
    if name not in table:
        raise ValueError(f"preset={name!r} has no settings for this experiment; choose one of {sorted(table)}")
    s = dict(table[name])
    s.update({k: overrides[k] for k in own if overrides.get(k) is not None})
    train_keys = {k: s.pop(k) for k in list(s) if k not in own}
    rest = {k: v for k, v in overrides.items() if k not in own and v is not None}
    return get_preset(preset, **{**train_keys, **rest}), s


