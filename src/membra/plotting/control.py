"""Figures of a DWAM degradation sweep (``membra control sweep``), from its pairs
``[(condition, no-DWAM stats, DWAM stats)]``."""

from __future__ import annotations

import numpy as np

from .core import new_figure

__all__ = ["sweep_returns_figure", "sweep_firing_figure"]

_ARMS = (("no DWAM", 1), ("DWAM", 2))


def sweep_returns_figure(pairs: list, env_id: str):
    """Episode return (mean ± std bars) per condition, without and with DWAM."""
    labels = [p[0] for p in pairs]
    x = np.arange(len(pairs))
    fig, ax = new_figure(figsize=(max(6, 0.7 * len(pairs) + 2), 4))
    for i, (name, idx) in enumerate(_ARMS):
        m = [p[idx]["mean"] for p in pairs]
        s = [p[idx]["std"] for p in pairs]
        ax.bar(x + (i - 0.5) * 0.4, m, 0.4, yerr=s, capsize=3, label=name)
    ax.set_xticks(x, labels, rotation=45, ha="right")
    ax.set_ylabel("episode return (mean ± std)")
    ax.set_title(f"{env_id}: return under degradation")
    # outside the axes: returns can be negative (Pendulum) or large, so no corner is free
    ax.legend(loc="upper left", bbox_to_anchor=(1.0, 1.0), frameon=False)
    ax.grid(axis="y", alpha=0.3)
    return fig


def sweep_firing_figure(pairs: list, env_id: str):
    """Per layer (columns): temporal CV of rates (top) and |rate - healthy rate| (bottom)
    per condition, without and with DWAM."""
    labels = [p[0] for p in pairs]
    x = np.arange(len(pairs))
    layer_names = list(pairs[0][1]["layers"])
    fig, axes = new_figure(2, len(layer_names), figsize=(4 * len(layer_names), 6.5),
                           squeeze=False)
    for j, ln in enumerate(layer_names):
        for r, (stat, lab) in enumerate((("cv", "temporal CV of rates"),
                                         ("rate_dev", "|rate - healthy rate|"))):
            ax = axes[r, j]
            for i, (name, idx) in enumerate(_ARMS):
                v = [p[idx]["layers"][ln].get(stat, np.nan) for p in pairs]
                ax.bar(x + (i - 0.5) * 0.4, v, 0.4, label=name)
            ax.set_title(f"{ln}: {lab}", fontsize=9)
            ax.set_xticks(x, labels if r == 1 else [""] * len(x), rotation=60, ha="right",
                          fontsize=7)
            ax.grid(axis="y", alpha=0.3)
    axes[0, 0].legend(fontsize=8)
    fig.suptitle(f"{env_id}: firing-rate variability per layer")
    return fig
