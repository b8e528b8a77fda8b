"""Analyses and reports: spike-pattern counts, the IMP study runner and its report (figures
from :mod:`membra.plotting`)."""

from .imp_report import aggregate, imp_report, load_runs
from .patterns import (
    GRID_A_WEIGHTS,
    GRID_B_POTENTIALS,
    GRID_B_WEIGHTS,
    PatternCounts,
    format_train,
    pattern_counts,
    pattern_table,
    spec_grids,
    spike_trains,
    train_code,
)
from .study import ARMS, load_study_config, run_arm

__all__ = ["ARMS", "run_arm", "load_study_config", "imp_report", "load_runs", "aggregate",
           "pattern_counts", "PatternCounts", "spike_trains", "train_code", "format_train",
           "GRID_A_WEIGHTS", "GRID_B_WEIGHTS", "GRID_B_POTENTIALS", "spec_grids", "pattern_table"]
