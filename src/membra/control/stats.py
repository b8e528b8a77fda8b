"""Statistics of degradation sweeps: percentile bootstrap CIs over degradation draws and the
fraction of the lost return that DWAM recovers, per draw and in aggregate.

Definitions (one weight-degradation *draw* ``d`` = one seeded damaged copy of the controller,
evaluated on the same env seeds with and without DWAM; ``H`` = healthy return without DWAM on
those env seeds):

- ``loss_d = H - off_d``; a draw *loses* when ``loss_d > min_loss`` (default 2 % of ``|H|``,
  at least 1 return point). A draw that loses nothing is reported, never put in a ratio.
- per draw: ``recovered_d = (on_d - off_d) / loss_d`` (losing draws only).
- aggregate: ``recovered = sum_d (on_d - off_d) / sum_d loss_d`` over the losing draws
  (the mean gain over the mean loss), with a percentile-bootstrap CI that resamples draws
  (the losing set is recomputed in every resample).
"""

from __future__ import annotations

import numpy as np

__all__ = ["bootstrap_ci", "min_loss", "recovered_fraction", "recovered_ci", "draw_table",
           "episode_recovered", "episode_recovered_ci"]

N_BOOT, LEVEL, BOOT_SEED = 10_000, 0.95, 0


def bootstrap_ci(x, stat=np.mean, n_boot: int = N_BOOT, level: float = LEVEL,
                 seed: int = BOOT_SEED) -> tuple[float, float]:
    """Percentile bootstrap CI of ``stat`` over the first axis of ``x``: resample rows with
    replacement ``n_boot`` times (numpy ``default_rng(seed)``), take the ``(1-level)/2`` and
    ``(1+level)/2`` quantiles of the statistic. ``stat`` maps an array ``[k, ...]`` to a
    float (NaN results are dropped). One row gives ``(stat, stat)``."""
    x = np.asarray(x, dtype=float)
    if x.ndim == 0 or len(x) == 0:
        raise ValueError("bootstrap_ci needs at least one value")
    if not 0 < level < 1:
        raise ValueError(f"level must be in (0, 1), got {level!r}")
    if len(x) == 1:
        v = float(stat(x))
        return v, v
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, len(x), size=(n_boot, len(x)))
    vals = np.array([stat(x[i]) for i in idx], dtype=float)
    vals = vals[np.isfinite(vals)]
    if len(vals) == 0:
        return float("nan"), float("nan")
    a = (1 - level) / 2
    return float(np.quantile(vals, a)), float(np.quantile(vals, 1 - a))


def min_loss(healthy: float) -> float:
    """Smallest return loss that counts as a loss: 2 % of ``|healthy|``, at least 1."""
    return max(0.02 * abs(healthy), 1.0)


def recovered_fraction(off, on, healthy: float) -> float:
    """``sum (on - off) / sum (healthy - off)`` over the draws that lose (module docstring);
    NaN when no draw loses."""
    off, on = np.asarray(off, float), np.asarray(on, float)
    loss = healthy - off
    m = loss > min_loss(healthy)
    if not m.any():
        return float("nan")
    return float((on[m] - off[m]).sum() / loss[m].sum())


def recovered_ci(off, on, healthy: float, **kw) -> tuple[float, float]:
    """Bootstrap CI (over draws) of :func:`recovered_fraction`."""
    pairs = np.stack([np.asarray(off, float), np.asarray(on, float)], 1)
    return bootstrap_ci(pairs, lambda p: recovered_fraction(p[:, 0], p[:, 1], healthy), **kw)


def draw_table(off, on, healthy: float) -> list[dict]:
    """One row per draw: ``off``, ``on``, ``loss``, ``loses`` and ``recovered`` (None when
    the draw loses nothing)."""
    out = []
    for d, (a, b) in enumerate(zip(off, on, strict=True)):
        loss = healthy - a
        loses = bool(loss > min_loss(healthy))
        out.append({"draw": d, "off": float(a), "on": float(b), "loss": float(loss),
                    "loses": loses, "recovered": float((b - a) / loss) if loses else None})
    return out


def episode_recovered(off, on, healthy) -> float:
    """One-draw conditions (sensor noise): ``(mean on - mean off) / (mean healthy - mean
    off)`` over paired episodes (same env seeds); NaN when the mean loss is below
    :func:`min_loss`."""
    off, on, h = (np.asarray(v, float) for v in (off, on, healthy))
    loss = h.mean() - off.mean()
    return float((on.mean() - off.mean()) / loss) if loss > min_loss(h.mean()) else float("nan")


def episode_recovered_ci(off, on, healthy, **kw) -> tuple[float, float]:
    """Bootstrap CI (over paired episodes) of :func:`episode_recovered`."""
    t = np.stack([np.asarray(v, float) for v in (off, on, healthy)], 1)
    return bootstrap_ci(t, lambda x: episode_recovered(x[:, 0], x[:, 1], x[:, 2]), **kw)
