"""Analyses: spike-pattern counts (figures from :mod:`membra.plotting`; the IMP study lives in
:mod:`membra.experiments`)."""

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

__all__ = ["pattern_counts", "PatternCounts", "spike_trains", "train_code", "format_train",
           "GRID_A_WEIGHTS", "GRID_B_WEIGHTS", "GRID_B_POTENTIALS", "spec_grids", "pattern_table"]
