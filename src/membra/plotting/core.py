"""What every membra figure shares: the matplotlib guard, a fresh ``Figure``, saving, and the
axis rules (integer ticks, accuracy limits).

Figures are ``matplotlib.figure.Figure`` objects made directly: no ``pyplot`` figure manager
and no ``matplotlib.use()``, so membra never changes the backend or the open figures of the
process it runs in, and a figure is freed when it goes out of scope.
"""

from __future__ import annotations

from pathlib import Path

INSTALL_HINT = "pip install 'membra[plot]'"

__all__ = ["INSTALL_HINT", "require_matplotlib", "new_figure", "save", "integer_ticks",
           "accuracy_limits"]


def require_matplotlib():
    """The ``matplotlib`` module, or ``ImportError`` naming the extra that installs it."""
    try:
        import matplotlib
        import matplotlib.figure  # noqa: F401  (the one class every plot uses)
    except ImportError as err:
        raise ImportError(f"membra's plots need matplotlib: {INSTALL_HINT}") from err
    return matplotlib


def new_figure(nrows: int = 1, ncols: int = 1, *, figsize, squeeze: bool = True, **kw):
    """``(fig, axes)`` of a new ``Figure`` (``Figure.subplots`` with the same arguments)."""
    mpl = require_matplotlib()
    fig = mpl.figure.Figure(figsize=figsize)
    return fig, fig.subplots(nrows, ncols, squeeze=squeeze, **kw)


def save(fig, path, *, dpi: int = 110, tight: bool = True, **kw) -> Path:
    """Lay out (``tight_layout`` unless ``tight=False``) and write ``fig`` to ``path``,
    creating its folder; returns the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if tight:
        fig.tight_layout()
    fig.savefig(path, dpi=dpi, **kw)
    return path


def integer_ticks(axis, values=None, *, most: int = 12) -> None:
    """Major ticks of ``axis`` (e.g. ``ax.xaxis``) at integers only (epochs, time steps):
    at each of ``values`` when there are at most ``most`` of them (one epoch gets one tick,
    not 0.96, 0.98, ...), else at matplotlib's choice of integers."""
    from matplotlib.ticker import MaxNLocator

    if values is not None and 0 < len(set(values)) <= most:
        axis.set_ticks(sorted({int(v) for v in values}))
    else:
        axis.set_major_locator(MaxNLocator(integer=True))


def accuracy_limits(values, *, pad: float = 0.1, min_pad: float = 1.0) -> tuple[float, float]:
    """y-limits (in %) for accuracy curves: the data range ``[lo, hi]`` widened by
    ``max(pad * (hi - lo), min_pad)`` on each side and clamped to ``[0, 100]``, so curves
    between 92 and 98 % get an axis of 91..99 % instead of 0..100 %. NaNs are ignored; no
    finite value gives ``(0, 100)``."""
    vals = [float(v) for v in values if v == v and abs(float(v)) != float("inf")]
    if not vals:
        return 0.0, 100.0
    lo, hi = min(vals), max(vals)
    margin = max(pad * (hi - lo), min_pad)
    return max(0.0, lo - margin), min(100.0, hi + margin)
