"""Experiments: presets and end-to-end runs that the notebooks call."""

from .artifacts import default_cache_dir
from .dp_run import DPRun, run_dp
from .localization_run import LocalizationRun, run_localization
from .presets import PRESETS, Preset, get_preset, preset_table
from .regularization_run import RegularizationRun, run_regularization
from .removal_run import RemovalRun, run_removal
from .sslmem_experiment import SSLMemRun, run_sslmem
from .validate import check_epsilon, check_lambda, validate_run_parameters

__all__ = [
    "DPRun",
    "LocalizationRun",
    "PRESETS",
    "Preset",
    "RegularizationRun",
    "RemovalRun",
    "SSLMemRun",
    "check_epsilon",
    "check_lambda",
    "default_cache_dir",
    "get_preset",
    "preset_table",
    "run_dp",
    "run_localization",
    "run_regularization",
    "run_removal",
    "run_sslmem",
    "validate_run_parameters",
]
