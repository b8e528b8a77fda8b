"""Figures of the membrane-dynamics studies: spike-pattern heatmaps (``membra report
patterns``) and per-step accuracy over seeds (``membra report imp``)."""

from __future__ import annotations

from .core import new_figure

__all__ = ["pattern_heatmaps_figure", "seed_curves_figure"]


def pattern_heatmaps_figure(results: dict, labels: list[str]):
    """Side-by-side 0/1 heatmaps of pattern counts (``{title: counts}``, each with
    ``matrix``, ``pairs``, ``mean_outputs``): rows = input train, columns = output train,
    both labelled by ``labels``."""
    n = len(labels)
    fig, axes = new_figure(1, len(results), figsize=(5.2 * len(results), 5.0), squeeze=False)
    for ax, (title, res) in zip(axes[0], results.items(), strict=True):
        ax.imshow(res.matrix.numpy(), cmap="Greys", vmin=0, vmax=1, interpolation="nearest")
        ax.set_title(f"{title}\n{res.pairs} pairs ({res.mean_outputs:.3g} outputs / input)",
                     fontsize=10)
        ax.set_xticks(range(n), labels, rotation=90, fontsize=7, family="monospace")
        ax.set_yticks(range(n), labels, fontsize=7, family="monospace")
        ax.set_xlabel("output train (t=1..T)")
        ax.set_ylabel("input train (t=1..T)")
        ax.set_xticks([i - 0.5 for i in range(1, n)], minor=True)
        ax.set_yticks([i - 0.5 for i in range(1, n)], minor=True)
        ax.grid(which="minor", color="0.85", linewidth=0.5)
        ax.tick_params(which="minor", length=0)
    return fig


def seed_curves_figure(curves: dict, title: str):
    """Per-step accuracy (%) per arm: the mean line and a band ``mean ± half``. ``curves``
    maps a label to ``(mean [T], half [T], dashed)`` in %; ``half`` is whatever half-width
    the caller chose (``membra report imp`` passes the 95% Student-t CI half-width over seeds)
    and the figure does not name it, so ``title`` must say what the band is."""
    fig, ax = new_figure(figsize=(6, 4))
    for label, (m, half, dashed) in curves.items():
        t = list(range(1, len(m) + 1))
        line, = ax.plot(t, m, "--" if dashed else "-", marker="o", ms=3, label=label)
        ax.fill_between(t, [a - b for a, b in zip(m, half, strict=True)],
                        [a + b for a, b in zip(m, half, strict=True)],
                        color=line.get_color(), alpha=0.15)
    ax.set_xticks(range(1, max(len(m) for m, _, _ in curves.values()) + 1))
    ax.set_xlabel("time step t")
    ax.set_ylabel("test accuracy of step t alone (%)")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return fig
