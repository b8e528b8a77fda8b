"""Timing helpers: median of repeats after warm-up, device-synchronised."""

from __future__ import annotations

import statistics
import time

import torch


def _sync(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


def median_ms(fn, *, device: str = "cpu", warmup: int = 2, repeats: int = 5) -> dict:
    """Run ``fn`` ``warmup`` times, then ``repeats`` times; milliseconds (median, min, all)."""
    for _ in range(warmup):
        fn()
    _sync(device)
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        _sync(device)
        times.append((time.perf_counter() - t0) * 1e3)
    return {"median_ms": statistics.median(times), "min_ms": min(times),
            "times_ms": [round(t, 3) for t in times]}
