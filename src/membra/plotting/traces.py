"""Figures of neuron traces: what each spiking layer did on a few inputs.

A trace is ``(spikes, v, h)`` of one layer, each ``[T, B, *S]`` (a tensor or an array, or any
object with ``.spikes``, ``.v``, ``.h``): the spikes, the potential after reset ``v_t`` and
the charged potential before firing ``h_t``. Every function takes ``{layer: trace}``, so
traces from any source (``membra.nn`` recording, forward hooks, a simulator) plot the same.

Statistics (no matplotlib needed):

- firing rate of layer ``l`` at step ``t``: ``R[l, t] = mean over samples and neurons of
  s[t]``;
- a neuron is *dead* when it never fires (rate over all steps and samples = 0) and
  *saturated* when it fires at every step of every sample (rate = 1).
"""

from __future__ import annotations

import numpy as np

from .core import integer_ticks, new_figure

__all__ = ["trace_arrays", "rate_matrix", "dead_saturated", "raster_figure",
           "potential_figure", "rate_heatmap_figure", "dead_saturated_figure"]


def _np(a) -> np.ndarray:
    if hasattr(a, "detach"):
        a = a.detach().float().cpu().numpy()
    return np.asarray(a, dtype=float)


def trace_arrays(traces: dict) -> dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """``{layer: (spikes, v, h)}`` as float arrays ``[T, B, N]`` (neurons flattened); a
    trace whose parts differ in shape or have fewer than 3 dimensions is a ``ValueError``."""
    if not traces:
        raise ValueError("no traces to plot: expected {layer: (spikes, v, h)}, got none")
    out = {}
    for name, tr in traces.items():
        parts = (tr.spikes, tr.v, tr.h) if hasattr(tr, "spikes") else tuple(tr)
        if len(parts) != 3:
            raise ValueError(f"trace of layer {name!r} must be (spikes, v, h), got "
                             f"{len(parts)} parts")
        s, v, h = (_np(p) for p in parts)
        if not s.shape == v.shape == h.shape or s.ndim < 3:
            raise ValueError(f"trace of layer {name!r}: spikes, v and h must share one shape "
                             f"[T, B, *S]; got {s.shape}, {v.shape}, {h.shape}")
        T, B = s.shape[:2]
        out[name] = tuple(a.reshape(T, B, -1) for a in (s, v, h))
    return out


def rate_matrix(traces: dict) -> tuple[list[str], np.ndarray]:
    """Layer names and ``R[l, t]``, the mean spike count per neuron of layer ``l`` at step
    ``t`` (over samples and neurons); layers may have different ``T`` (NaN-padded)."""
    arrs = trace_arrays(traces)
    T = max(s.shape[0] for s, _, _ in arrs.values())
    R = np.full((len(arrs), T), np.nan)
    for i, (s, _, _) in enumerate(arrs.values()):
        R[i, :s.shape[0]] = s.mean(axis=(1, 2))
    return list(arrs), R


def dead_saturated(traces: dict) -> dict[str, tuple[float, float]]:
    """``{layer: (dead, saturated)}``: fractions of neurons whose rate over all steps and
    samples is 0 (never fire) and 1 (fire at every step)."""
    out = {}
    for name, (s, _, _) in trace_arrays(traces).items():
        rate = s.mean(axis=(0, 1))
        out[name] = (float(np.mean(rate == 0)), float(np.mean(rate == 1)))
    return out


def raster_figure(traces: dict, *, samples: int = 4, max_neurons: int | None = 256):
    """Spike raster: one row of panels per layer, one column per sample (the first
    ``samples``), a point at ``(t, neuron)`` for every spike of the first ``max_neurons``
    neurons (all with ``None``). Time steps count from 1."""
    arrs = trace_arrays(traces)
    B = min(samples, min(s.shape[1] for s, _, _ in arrs.values()))
    fig, axes = new_figure(len(arrs), B, figsize=(2.6 * B + 1, 2.0 * len(arrs) + 0.6),
                           squeeze=False)
    for row, (name, (s, _, _)) in zip(axes, arrs.items(), strict=True):
        n = s.shape[2] if max_neurons is None else min(max_neurons, s.shape[2])
        for b, ax in enumerate(row):
            t, k = np.nonzero(s[:, b, :n])
            ax.scatter(t + 1, k, marker="|", s=20, color="k", linewidths=0.8)
            ax.set_xlim(0.5, s.shape[0] + 0.5)
            ax.set_ylim(n - 0.5, -0.5)
            integer_ticks(ax.xaxis, range(1, s.shape[0] + 1))
            ax.set_title(f"{name}, sample {b}", fontsize=8)
            if b == 0:
                ax.set_ylabel(f"neuron (of {s.shape[2]})", fontsize=8)
        row[0].figure.supxlabel("time step t", fontsize=9)
    return fig


def _per_neuron(value, name: str, shape_bn: tuple[int, int], what: str) -> np.ndarray:
    """``value`` (a number, ``{layer: value}``, or an array broadcastable to ``[B, *S]``)
    as ``[B, N]``."""
    if isinstance(value, dict):
        value = value[name]
    a = _np(value)
    B, N = shape_bn
    if a.size == 1:
        return np.full((B, N), float(a.reshape(())))
    a = a.reshape(-1, N) if a.size % N == 0 else None
    if a is None or a.shape[0] not in (1, B):
        raise ValueError(f"{what} of layer {name!r} must be a number or one value per neuron "
                         f"({N}), got shape {_np(value).shape}")
    return np.broadcast_to(a, (B, N))


def potential_figure(traces: dict, *, v_th=1.0, v0=0.0, neurons: int = 4, sample: int = 0):
    """Membrane potential of ``neurons`` neurons per layer (those whose charged potential
    ``h`` varies most over time, in sample ``sample``): ``v_t`` for ``t = 0..T`` as a line
    starting at the initial potential ``v0`` (a diamond at ``t = 0``), ``h_t`` as dots, a
    cross where the neuron fired, and the threshold ``v_th`` as a red dashed line.
    ``v_th``/``v0``: a number, ``{layer: value}``, or one value per neuron."""
    arrs = trace_arrays(traces)
    fig, axes = new_figure(1, len(arrs), figsize=(4.2 * len(arrs), 3.4), squeeze=False)
    for ax, (name, (s, v, h)) in zip(axes[0], arrs.items(), strict=True):
        T, B, N = s.shape
        start = _per_neuron(v0, name, (B, N), "v0")[sample]
        th = _per_neuron(v_th, name, (B, N), "v_th")[sample]
        pick = np.argsort(-h[:, sample].std(axis=0), kind="stable")[:neurons]
        t = np.arange(1, T + 1)
        for j, n in enumerate(pick):
            c = f"C{j}"
            ax.plot(np.arange(T + 1), np.r_[start[n], v[:, sample, n]], "-", color=c, lw=1.2,
                    label=f"neuron {n}")
            ax.plot(t, h[:, sample, n], ".", color=c, ms=5)
            fired = s[:, sample, n] > 0
            ax.plot(t[fired], h[fired, sample, n], "x", color=c, ms=7)
        ax.plot(np.zeros(len(pick)), start[pick], "D", color="k", ms=5, ls="none",
                label="initial potential V0")
        for level in np.unique(th[pick]):
            ax.axhline(level, color="tab:red", ls="--", lw=1, label=f"threshold {level:g}")
        integer_ticks(ax.xaxis, range(T + 1))
        ax.set(xlabel="time step t (0 = initial)", ylabel="membrane potential",
               title=f"{name}, sample {sample}")
        ax.legend(fontsize=6)
    return fig


def rate_heatmap_figure(traces: dict):
    """Heatmap of :func:`rate_matrix`: layers down, time steps across, colour = spikes per
    neuron at that step."""
    names, R = rate_matrix(traces)
    fig, ax = new_figure(figsize=(1.2 + 0.5 * R.shape[1], 1.0 + 0.45 * len(names)))
    im = ax.imshow(R, aspect="auto", cmap="viridis", vmin=0, vmax=max(1e-9, np.nanmax(R)),
                   interpolation="nearest")
    ax.set_xticks(range(R.shape[1]), [str(t + 1) for t in range(R.shape[1])])
    ax.set_yticks(range(len(names)), names)
    ax.set(xlabel="time step t", title="firing rate per layer and step")
    fig.colorbar(im, ax=ax, label="spikes per neuron")
    return fig


def dead_saturated_figure(traces: dict):
    """Bars of the dead and saturated fractions (%) of each layer (:func:`dead_saturated`)."""
    frac = dead_saturated(traces)
    names = list(frac)
    x = np.arange(len(names))
    fig, ax = new_figure(figsize=(1.5 + 0.9 * len(names), 3.4))
    ax.bar(x - 0.2, [100 * d for d, _ in frac.values()], 0.4, label="dead (never fire)")
    ax.bar(x + 0.2, [100 * s for _, s in frac.values()], 0.4,
           label="saturated (fire every step)")
    ax.set_xticks(x, names, rotation=30, ha="right", fontsize=8)
    ax.set(ylabel="neurons (%)", ylim=(0, 100), title="dead and saturated neurons")
    ax.legend(fontsize=7)
    return fig
