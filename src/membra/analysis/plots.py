"""Figures for membra's reports. matplotlib is imported here only (``pip install
membra[plot]``), with the non-interactive Agg backend so reports render on headless machines."""

from __future__ import annotations

from pathlib import Path


def pyplot():
    """``matplotlib.pyplot`` on the Agg backend, or a clear error naming the extra."""
    try:
        import matplotlib
    except ImportError as err:  # pragma: no cover - depends on the environment
        raise ImportError("membra's plots need matplotlib: pip install 'membra[plot]'") from err
    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def pattern_heatmaps(results: dict, path: str | Path, T: int = 4) -> Path:
    """Side-by-side 0/1 heatmaps of :class:`~membra.analysis.patterns.PatternCounts`
    (``{title: counts}``), rows = input train, columns = output train; saved to ``path``."""
    from .patterns import format_train

    plt = pyplot()
    n = 2 ** T
    labels = [format_train(c, T) for c in range(n)]
    fig, axes = plt.subplots(1, len(results), figsize=(5.2 * len(results), 5.0), squeeze=False)
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
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
