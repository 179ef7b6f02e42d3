"""Experiments: presets and end-to-end runs that the notebooks call."""

from .presets import PRESETS, Preset, get_preset, preset_table
from .sslmem_run import SSLMemRun, default_cache_dir, run_sslmem

__all__ = ["PRESETS", "Preset", "SSLMemRun", "default_cache_dir", "get_preset", "preset_table", "run_sslmem"]
