"""Figures of :mod:`membra.construct`: a circuit's spike raster and the scaling of circuit
size with the memory ``m``."""

from __future__ import annotations

import numpy as np

from .core import new_figure, require_matplotlib

__all__ = ["circuit_raster_figure", "scaling_figure"]


def circuit_raster_figure(rows: list[tuple[str, np.ndarray, str]], title: str):
    """Raster of ``rows`` = ``[(label, spike train [T], group)]`` top to bottom, a colour per
    group and a thin line between groups; time steps from 0."""
    mpl = require_matplotlib()
    palette = mpl.colormaps["tab10"]
    colours = {g: palette(k % 10) for k, g in enumerate(dict.fromkeys(r[2] for r in rows))}
    T = len(rows[0][1])
    fig, ax = new_figure(figsize=(min(3 + 0.22 * T, 16), 1 + 0.22 * len(rows)))
    for y, (_, train, group) in enumerate(rows):
        t = np.flatnonzero(train)
        ax.scatter(t, np.full(t.size, y), marker="|", s=90, color=colours[group])
    prev = None
    for y, (_, _, group) in enumerate(rows):
        if group != prev and y:
            ax.axhline(y - 0.5, color="0.85", lw=0.8)
        prev = group
    ax.set_yticks(range(len(rows)), [f"{name} [{g}]" for name, _, g in rows], fontsize=7)
    ax.set_ylim(len(rows) - 0.5, -0.5)
    ax.set_xlim(-0.5, T - 0.5)
    ax.set_xlabel("time step")
    ax.set_title(title, fontsize=9)
    return fig


def scaling_figure(rows: list[dict]):
    """Log-log neurons (left) and weights (right) against m: exact-gap baseline, compact
    exact-gap, and spiked-k-ago baseline (rows with m <= 16)."""
    m = np.array([r["m"] for r in rows], dtype=float)
    small = [r for r in rows if r["m"] <= 16]
    ms = [r["m"] for r in small]
    fig, axes = new_figure(1, 2, figsize=(9.6, 3.8))
    panels = [("neurons", "n", "2m+4", "15 (m >= 3)", "2m+3+2^(m-2)"),
              ("weights", "w", "8m+4", "41 (m >= 3)", "3+6m+2^(m-2)(2m+1)")]
    for ax, (what, key, base_f, comp_f, sa_f) in zip(axes, panels, strict=True):
        ax.loglog(m, [r[f"base_{key}"] for r in rows], "o-", ms=3,
                  label=f"baseline, exact gap: {base_f}")
        ax.loglog(m, [r[f"comp_{key}"] for r in rows], "s-", ms=3,
                  label=f"compact, exact gap: {comp_f}")
        ax.loglog(ms, [r[f"sa_{key}"] for r in small], "^-", ms=3,
                  label=f"baseline, spiked k ago: {sa_f}")
        ax.set_xlabel("memory m")
        ax.set_ylabel(what)
        ax.legend(fontsize=7, loc="upper left")
        ax.grid(True, which="both", lw=0.3)
    return fig
