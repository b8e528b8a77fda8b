"""Every membra figure, drawn on ``matplotlib.figure.Figure`` (never ``pyplot`` state, never
``matplotlib.use()``), so plotting leaves the caller's backend and open figures alone.

Each ``*_figure`` function takes plain data (histories, traces, report dicts) and returns a
``Figure``; :func:`save` writes it. matplotlib is imported only when a figure is drawn; when it
is missing, every figure function raises one ``ImportError`` naming ``pip install
'membra[plot]'``. Importing this package and the trace statistics need no matplotlib.

A package, not one file, because the figures of six families (training runs, neuron traces,
conversion, construct, control sweeps, studies) come to about 640 lines; each family is a
small module and they share :mod:`.core`.
"""

from .construct import circuit_raster_figure, scaling_figure
from .control import sweep_firing_figure, sweep_returns_figure
from .convert import latency_figure, layers_figure, naive_curve_figure, stages_figure
from .core import INSTALL_HINT, accuracy_limits, integer_ticks, require_matplotlib, save
from .run import (
    curves_figure,
    firing_rate_figure,
    init_potential_figure,
    per_step_figure,
)
from .study import pattern_heatmaps_figure, seed_curves_figure
from .traces import (
    dead_saturated,
    dead_saturated_figure,
    potential_figure,
    raster_figure,
    rate_heatmap_figure,
    rate_matrix,
    trace_arrays,
)

__all__ = [
    "INSTALL_HINT", "require_matplotlib", "save", "accuracy_limits", "integer_ticks",
    "curves_figure", "per_step_figure", "firing_rate_figure", "init_potential_figure",
    "trace_arrays", "rate_matrix", "dead_saturated", "raster_figure", "potential_figure",
    "rate_heatmap_figure", "dead_saturated_figure",
    "naive_curve_figure", "layers_figure", "stages_figure", "latency_figure",
    "circuit_raster_figure", "scaling_figure",
    "sweep_returns_figure", "sweep_firing_figure",
    "pattern_heatmaps_figure", "seed_curves_figure",
]
