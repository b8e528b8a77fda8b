"""The PNG plots of a run folder, written by ``membra train`` at the end and by ``membra eval
RUN --plots`` (figures from :mod:`membra.plotting`; ``pip install 'membra[plot]'``).

Into ``<run>/plots/`` (or ``out``):

- from the metric history: ``curves.png`` (loss and accuracy per epoch),
  ``per_step_accuracy.png`` (each step alone and the mean readout over steps ``1..t``, the
  first epochs faint, the chance line), ``firing_rate.png`` (mean rate per layer per epoch);
- from the model: ``init_potential.png`` (learned ``V_0`` per layer against its
  initialisation band and the threshold; only with ``init_potential="learnable"``);
- from neuron traces on a few test inputs: ``raster.png``, ``potential.png``,
  ``rate_heatmap.png`` (layer x time step) and ``dead_saturated.png``.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import torch
from torch import nn

from .. import plotting
from ..functional.neuron import fire_and_reset, if_charge, lif_charge
from ..nn import SpikingNeuron

__all__ = ["write_run_plots", "record_traces", "learned_potentials", "first_inputs"]

TRACE_SAMPLES = 4  # test inputs whose traces are plotted


def learned_potentials(model: nn.Module) -> dict[str, torch.Tensor]:
    """Flattened learnable initial potentials of the spiking layers, by layer name."""
    return {name: m.init_potential.detach().float().cpu().flatten()
            for name, m in _neurons(model).items() if m.learnable_potential}


def _neurons(model: nn.Module) -> dict[str, SpikingNeuron]:
    return {name or "<model>": m for name, m in model.named_modules()
            if isinstance(m, SpikingNeuron)}


def _replay(m: SpikingNeuron, x: torch.Tensor):
    """``(v, h)`` ``[T, B, *S]`` of layer ``m`` on its input ``x``, by the functional step:
    ``h_t = charge(x_t, v_{t-1})``, ``(s_t, v_t) = fire_and_reset(h_t)``, ``v_0`` = the
    layer's initial potential."""
    if m.neuron == "lif":
        def charge(x_t, v):
            return lif_charge(x_t, v, m.tau, m.v_reset)
    else:
        charge = if_charge
    v = m.init_potential.expand_as(x[0])
    vs, hs = [], []
    for x_t in x:
        h = charge(x_t, v)
        _, v = fire_and_reset(h, v_th=m.v_th, v_reset=m.v_reset, reset=m.reset,
                              surrogate=m.surrogate, alpha=m.alpha)
        vs.append(v)
        hs.append(h)
    return torch.stack(vs), torch.stack(hs)


@torch.no_grad()
def record_traces(model: nn.Module, x: torch.Tensor) -> dict[str, tuple]:
    """``{layer: (spikes, v, h)}`` of every :class:`~membra.nn.SpikingNeuron` (LIF/IF) of
    ``model`` on input ``x[T, B, ...]``: forward hooks take each layer's input and spikes,
    :func:`_replay` gives ``v`` and ``h``. Other neuron kinds are skipped with a warning.
    (To be replaced by ``membra.nn.record`` when the neuron core records traces itself.)"""
    inputs, hooks = {}, []
    layers = _neurons(model)
    for name, m in layers.items():
        if m.neuron not in ("lif", "if"):
            warnings.warn(f"no trace for layer {name!r} ({type(m).__name__}): only LIF and "
                          "IF neurons are replayed", stacklevel=2)
            continue
        hooks.append(m.register_forward_hook(
            lambda mod, args, out, name=name: inputs.__setitem__(name, (args[0], out))))
    try:
        model.eval()(x)
    finally:
        for h in hooks:
            h.remove()
    return {name: (out.float().cpu(), *(a.float().cpu() for a in _replay(layers[name], x_in)))
            for name, (x_in, out) in inputs.items()}


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
                v0, v_th={k: layers[k].v_th for k in v0})
    if model is not None and sample is not None:
        traces = record_traces(model, sample)
        if traces:
            layers = _neurons(model)
            figs["raster.png"] = plotting.raster_figure(traces)
            figs["potential.png"] = plotting.potential_figure(
                traces, v_th={k: layers[k].v_th for k in traces},
                v0={k: layers[k].init_potential for k in traces})
            figs["rate_heatmap.png"] = plotting.rate_heatmap_figure(traces)
            figs["dead_saturated.png"] = plotting.dead_saturated_figure(traces)
    return [plotting.save(fig, out / name) for name, fig in figs.items() if fig is not None]
