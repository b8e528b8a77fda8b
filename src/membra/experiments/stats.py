r"""Statistics over seeds for the study's reports: Student-t confidence intervals, paired
differences and the three-way verdict on a claim.

- :func:`t_interval`: ``mean ± t_{1-α/2, n-1} · s / √n`` with the sample std ``s`` (``n - 1``
  in the denominator) and Student's t quantile with ``n - 1`` degrees of freedom
  (:func:`t_quantile`, exact for integer degrees of freedom, no scipy needed).
- :func:`paired_difference`: the per-seed differences ``a_s - b_s`` over the seeds both arms
  ran, and their t-interval (two arms with the same seed saw the same batches in the same
  order, so the difference removes the seed's own luck).
- :func:`verdict`: a claim "``a - b`` is positive" (or negative) is *supported* when the 95%
  interval excludes 0 in the claimed direction, *not supported* when it excludes 0 in the
  other direction, else *not distinguishable at this size* (always so with one seed).
- :func:`epochs_to_reach`: the first epoch whose test accuracy reaches a threshold.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

__all__ = ["Interval", "t_cdf_two_sided", "t_quantile", "t_interval", "paired_difference",
           "verdict", "epochs_to_reach", "VERDICTS", "RULE"]

VERDICTS = ("supported", "not supported", "not distinguishable at this size")
RULE = ("95% CI excludes 0 in the claimed direction ⇒ supported; excludes 0 in the other "
        "direction ⇒ not supported; contains 0 (or n = 1) ⇒ not distinguishable at this size")


def t_cdf_two_sided(t: float, df: int) -> float:
    """``P(|T| < t)`` for Student's t with integer ``df`` (Abramowitz & Stegun 26.7.3-4):
    with ``θ = atan(t / √df)``, odd ``df``: ``(2/π)(θ + sinθ Σ_k c_k cos^{2k+1}θ)``,
    even ``df``: ``sinθ Σ_k d_k cos^{2k}θ``, finite sums up to power ``df - 2``."""
    if not isinstance(df, int) or isinstance(df, bool) or df < 1:
        raise ValueError(f"degrees of freedom must be an int >= 1, got {df!r}")
    t = abs(float(t))
    th = math.atan(t / math.sqrt(df))
    s, c = math.sin(th), math.cos(th)
    if df % 2:
        total, term = 0.0, c
        for k in range(1, (df - 1) // 2 + 1):     # powers 1, 3, ..., df - 2
            total += term
            term *= c * c * (2 * k) / (2 * k + 1)
        return 2 / math.pi * (th + s * total) if df > 1 else 2 / math.pi * th
    total, term = 0.0, 1.0
    for k in range(1, df // 2 + 1):                # powers 0, 2, ..., df - 2
        total += term
        term *= c * c * (2 * k - 1) / (2 * k)
    return s * total


def t_quantile(p: float, df: int) -> float:
    """The ``p`` quantile of Student's t with ``df`` degrees of freedom, ``p`` in (0.5, 1):
    the ``t`` with ``P(|T| < t) = 2p - 1``, found by bisection to 1e-12."""
    if not 0.5 < p < 1:
        raise ValueError(f"quantile level must be in (0.5, 1), got {p!r}")
    target, lo, hi = 2 * p - 1, 0.0, 1.0
    while t_cdf_two_sided(hi, df) < target:
        hi *= 2
    while hi - lo > 1e-12 * max(1.0, hi):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if t_cdf_two_sided(mid, df) < target else (lo, mid)
    return (lo + hi) / 2


@dataclass(frozen=True)
class Interval:
    """A mean over ``n`` values with its two-sided ``level`` t-interval ``[lo, hi]`` (both
    ``None`` for one value: no interval)."""

    mean: float
    lo: float | None
    hi: float | None
    n: int
    level: float = 0.95

    @property
    def half(self) -> float | None:
        """Half-width ``t · s / √n`` (``None`` for ``n = 1``)."""
        return None if self.lo is None else (self.hi - self.lo) / 2

    def fmt(self, scale: float = 100.0, digits: int = 1, sign: bool = False) -> str:
        """``"97.1 ± 0.4"`` (mean ± half-width, times ``scale``), ``"97.1 (n=1)"`` for one
        value; ``sign`` writes ``+``/``−`` on the mean."""
        m = f"{scale * self.mean:{'+' if sign else ''}.{digits}f}"
        if self.half is None:
            return f"{m} (n={self.n})"
        return f"{m} ± {scale * self.half:.{digits}f}"

    def fmt_ci(self, scale: float = 100.0, digits: int = 1) -> str:
        """``"[+9.0, +15.2]"``, or ``"no CI (n=1)"``."""
        if self.lo is None:
            return f"no CI (n={self.n})"
        return f"[{scale * self.lo:+.{digits}f}, {scale * self.hi:+.{digits}f}]"


def t_interval(values, level: float = 0.95) -> Interval:
    """``mean ± t_{(1+level)/2, n-1} · s / √n`` over ``values`` (``s``: sample std, ``n - 1``);
    one value gives no interval. Non-finite values are a ``ValueError``."""
    v = [float(x) for x in values]
    if not v:
        raise ValueError("no values to average")
    if not all(math.isfinite(x) for x in v):
        raise ValueError(f"values must be finite, got {v}")
    n, mean = len(v), math.fsum(v) / len(v)
    if n == 1:
        return Interval(mean, None, None, 1, level)
    s = math.sqrt(math.fsum((x - mean) ** 2 for x in v) / (n - 1))
    half = t_quantile((1 + level) / 2, n - 1) * s / math.sqrt(n)
    return Interval(mean, mean - half, mean + half, n, level)


def paired_difference(a: dict, b: dict, level: float = 0.95) -> tuple[dict, Interval]:
    """``({seed: a[seed] - b[seed]}, t_interval of those)`` over the seeds in both ``a`` and
    ``b`` (``{seed: value}``); no common seed is a ``ValueError``."""
    common = sorted(set(a) & set(b), key=lambda s: (s is None, s))
    if not common:
        raise ValueError(f"no seed in common between {sorted(a, key=str)} and "
                         f"{sorted(b, key=str)}: a paired difference needs the same seeds")
    diffs = {s: a[s] - b[s] for s in common}
    return diffs, t_interval(diffs.values(), level)


def verdict(iv: Interval, direction: int = +1) -> str:
    """:data:`RULE` applied to ``iv`` for the claim ``sign(difference) == direction``."""
    if direction not in (1, -1):
        raise ValueError(f"direction must be +1 or -1, got {direction!r}")
    if iv.lo is None:
        return VERDICTS[2]
    lo, hi = (iv.lo, iv.hi) if direction == 1 else (-iv.hi, -iv.lo)
    if lo > 0:
        return VERDICTS[0]
    if hi < 0:
        return VERDICTS[1]
    return VERDICTS[2]


def epochs_to_reach(curve, threshold: float) -> int | None:
    """The first epoch (1-based) whose accuracy in ``curve`` (one value per epoch) is
    ``>= threshold``; ``None`` when none reaches it."""
    for epoch, acc in enumerate(curve, start=1):
        if acc >= threshold:
            return epoch
    return None
