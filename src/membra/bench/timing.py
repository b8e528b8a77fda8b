"""Timing helpers: median of repeats after warm-up, device-synchronised."""

from __future__ import annotations

import statistics
import time

import torch


def _sync(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


def median_ms(fn, *, device: str = "cpu", warmup: int = 2, repeats: int = 5,
              budget_s: float | None = None) -> dict:
    """Run ``fn`` ``warmup`` times, then ``repeats`` times; milliseconds (median, min, all).

    With ``budget_s``, a method whose first call already takes more than the budget's share
    of one call (``budget_s / (warmup + repeats)``) gets no more warm-up and only as many
    timed calls as fit the budget (at least one): the result then says ``"capped"``."""
    t0 = time.perf_counter()
    fn()
    _sync(device)
    first = time.perf_counter() - t0
    capped = budget_s is not None and first * (warmup + repeats) > budget_s
    if capped:
        warmup, repeats = 0, max(1, min(repeats, int(budget_s // max(first, 1e-9)) - 1))
    for _ in range(warmup - 1):
        fn()
    _sync(device)
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        _sync(device)
        times.append((time.perf_counter() - t0) * 1e3)
    out = {"median_ms": statistics.median(times), "min_ms": min(times),
           "times_ms": [round(t, 3) for t in times]}
    if capped:
        out["capped"] = f"first call {first:.1f} s: {repeats} timed call(s), no more warm-up"
    return out
