"""The PNG plots of a run folder, written by ``membra train`` at the end and by ``membra eval
RUN --plots`` (figures from :mod:`membra.plotting`; ``pip install 'membra[plot]'``).

Into ``<run>/plots/`` (or ``out``):

- from the metric history: ``curves.png`` (loss and accuracy per epoch),
  ``per_step_accuracy.png`` (each step alone and the mean readout over steps ``1..t``, the
  first epochs faint, the chance line), ``firing_rate.png`` (mean rate per layer per epoch);
- from the model: ``init_potential.png`` (learned ``V_0`` per layer against its
  initialisation band and the threshold; only with ``init_potential="learnable"``);
- from neuron traces on a few test inputs (:func:`membra.nn.record`, every neuron model):
  ``raster.png``, ``potential.png``, ``rate_heatmap.png`` (layer x time step) and
  ``dead_saturated.png``.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from .. import plotting
from ..nn import NeuronTrace, SpikingNeuron, record

__all__ = ["write_run_plots", "sample_traces", "learned_potentials", "first_inputs"]

TRACE_SAMPLES = 4  # test inputs whose traces are plotted


def learned_potentials(model: nn.Module) -> dict[str, torch.Tensor]:
    """Flattened learnable initial potentials of the spiking layers, by layer name."""
    return {name: m.init_potential.detach().float().cpu().flatten()
            for name, m in _neurons(model).items() if m.learnable_potential}


def _neurons(model: nn.Module) -> dict[str, SpikingNeuron]:
    return {name or "<model>": m for name, m in model.named_modules()
            if isinstance(m, SpikingNeuron)}


@torch.no_grad()
def sample_traces(model: nn.Module, x: torch.Tensor) -> dict[str, NeuronTrace]:
    """:func:`membra.nn.record` of ``model`` in eval mode on ``x [T, B, ...]`` (its mode is
    restored), every neuron model included, as float CPU tensors, the model itself named
    ``"<model>"``: the traces the plots draw."""
    was_training = model.training
    model.eval()
    try:
        traces = record(model, x)
    finally:
        model.train(was_training)
    return {name or "<model>": NeuronTrace(*(t.float().cpu() for t in tr))
            for name, tr in traces.items()}


def _layer_of(layers: dict[str, SpikingNeuron], key: str) -> SpikingNeuron:
    """The layer of a trace key (``"name#1"``: the second call of a shared layer)."""
    return layers[key.split("#", 1)[0]]


def first_inputs(ds, n: int = TRACE_SAMPLES) -> torch.Tensor:
    """The first ``n`` inputs of dataset ``ds`` (items ``(x[T, ...], y)``) as ``[T, n, ...]``."""
    return torch.stack([ds[i][0] for i in range(min(n, len(ds)))]).transpose(0, 1)


def write_run_plots(run_dir, history=(), model: nn.Module | None = None, *, sample=None,
                    num_classes: int | None = None, out=None) -> list[Path]:
    """Write the run's plots (module doc) to ``out`` (default ``<run_dir>/plots``) and
    return the files written. ``history``: the metric history (history plots when not
    empty); ``model``: for ``V_0`` histograms and, with ``sample`` (inputs ``[T, B, ...]`` on
    the model's device), the trace plots; ``num_classes``: draws the chance line. Raises
    ``ImportError`` naming ``membra[plot]`` when matplotlib is missing."""
    plotting.require_matplotlib()
    out = Path(out) if out is not None else Path(run_dir) / "plots"
    figs = {}
    history = list(history)
    if history:
        figs["curves.png"] = plotting.curves_figure(history)
        figs["per_step_accuracy.png"] = plotting.per_step_figure(history, num_classes)
        figs["firing_rate.png"] = plotting.firing_rate_figure(history)
    if model is not None:
        v0, layers = learned_potentials(model), _neurons(model)
        if v0:
            figs["init_potential.png"] = plotting.init_potential_figure(
                v0, v_th={k: float(layers[k].v_th) for k in v0})
    if model is not None and sample is not None:
        traces = sample_traces(model, sample) if _neurons(model) else {}
        if traces:
            layers = _neurons(model)
            figs["raster.png"] = plotting.raster_figure(traces)
            figs["potential.png"] = plotting.potential_figure(
                traces, v_th={k: float(_layer_of(layers, k).v_th) for k in traces},
                v0={k: _layer_of(layers, k).init_potential for k in traces})
            figs["rate_heatmap.png"] = plotting.rate_heatmap_figure(traces)
            figs["dead_saturated.png"] = plotting.dead_saturated_figure(traces)
    return [plotting.save(fig, out / name) for name, fig in figs.items() if fig is not None]
