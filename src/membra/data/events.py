r"""Event streams and their binning into frames.

An event stream is a numpy structured array of dtype :data:`EVENT_DTYPE` with fields ``t``
(timestamp, integer, e.g. microseconds), ``x`` (column), ``y`` (row) and ``p`` (polarity:
1 = ON, brighter; 0 = OFF, darker), in time order.

:func:`events_to_frames` counts events per pixel, polarity and time bin into
``frames [T, 2, H, W]`` (channel 0 = OFF, channel 1 = ON):

- ``split="count"`` (equal-count frames, the CIFAR10-DVS recipe): with ``N`` events in time
  order, event ``k`` (0-based) goes to frame :math:`\lfloor kT/N \rfloor`, so frames hold
  :math:`\lfloor N/T \rfloor` or :math:`\lceil N/T \rceil` events each.
- ``split="time"`` (equal-time frames): with :math:`t_0 = \min t`,
  :math:`\Delta = \max t - t_0 + 1`, event ``k`` goes to frame
  :math:`\lfloor (t_k - t_0) T / \Delta \rfloor`.

``size=(H', W')`` resizes by mapping coordinates, :math:`y' = \lfloor y H'/H \rfloor`,
:math:`x' = \lfloor x W'/W \rfloor`, before counting, so every event is kept (sum pooling
when ``H`` is a multiple of ``H'``).
"""

from __future__ import annotations

import numpy as np
import torch

__all__ = ["EVENT_DTYPE", "make_events", "events_to_frames", "SPLIT_METHODS"]

EVENT_DTYPE = np.dtype([("t", "<i8"), ("x", "<i2"), ("y", "<i2"), ("p", "<i1")])
SPLIT_METHODS = ("count", "time")


def make_events(t, x, y, p) -> np.ndarray:
    """Pack four equal-length sequences into an :data:`EVENT_DTYPE` array."""
    t, x, y, p = (np.asarray(a) for a in (t, x, y, p))
    if not (len(t) == len(x) == len(y) == len(p)):
        raise ValueError(f"t, x, y, p must have equal lengths, got "
                         f"{[len(t), len(x), len(y), len(p)]}")
    ev = np.empty(len(t), dtype=EVENT_DTYPE)
    ev["t"], ev["x"], ev["y"], ev["p"] = t, x, y, p
    return ev


def _pair(size, what: str) -> tuple[int, int]:
    if isinstance(size, int) and not isinstance(size, bool):
        size = (size, size)
    try:
        h, w = (int(v) for v in size)
    except (TypeError, ValueError):
        raise ValueError(f"{what} must be (H, W) or an int, got {size!r}") from None
    if h < 1 or w < 1:
        raise ValueError(f"{what} must be positive, got {size!r}")
    return h, w


def events_to_frames(events: np.ndarray, T: int, sensor_size, *, split: str = "count",
                     size=None) -> torch.Tensor:
    """Bin ``events`` into float32 ``frames [T, 2, H', W']`` of event counts.

    Args:
        events: structured array with fields ``t, x, y, p`` (:data:`EVENT_DTYPE`).
        T: number of frames.
        sensor_size: ``(H, W)`` of the sensor; coordinates outside it are an error.
        split: ``"count"`` (equal-count frames) or ``"time"`` (equal-time frames).
        size: output ``(H', W')`` (default: the sensor size).
    """
    if not isinstance(T, int) or isinstance(T, bool) or T < 1:
        raise ValueError(f"T must be a positive int, got {T!r}")
    if split not in SPLIT_METHODS:
        raise ValueError(f"split={split!r} is not known; choose one of {list(SPLIT_METHODS)}")
    H, W = _pair(sensor_size, "sensor_size")
    Ho, Wo = (H, W) if size is None else _pair(size, "size")
    if not isinstance(events, np.ndarray) or events.dtype.names is None or \
            not {"t", "x", "y", "p"} <= set(events.dtype.names):
        raise TypeError("events must be a numpy structured array with fields t, x, y, p")
    n = len(events)
    if n == 0:
        return torch.zeros(T, 2, Ho, Wo)
    t = events["t"].astype(np.int64)
    x = events["x"].astype(np.int64)
    y = events["y"].astype(np.int64)
    p = events["p"].astype(np.int64)
    if x.min() < 0 or x.max() >= W or y.min() < 0 or y.max() >= H:
        raise ValueError(f"event coordinates x in [{x.min()}, {x.max()}], y in [{y.min()}, "
                         f"{y.max()}] fall outside the sensor (H, W) = {(H, W)}")
    if not np.isin(p, (0, 1)).all():
        raise ValueError(f"event polarities must be 0 or 1, got values {np.unique(p)[:5]}")
    if np.any(np.diff(t) < 0):
        order = np.argsort(t, kind="stable")
        t, x, y, p = t[order], x[order], y[order], p[order]
    if split == "count":
        frame = np.arange(n, dtype=np.int64) * T // n
    else:
        t0 = t[0]
        span = t[-1] - t0 + 1
        frame = (t - t0) * T // span
    yo = y * Ho // H
    xo = x * Wo // W
    flat = ((frame * 2 + p) * Ho + yo) * Wo + xo
    counts = np.bincount(flat, minlength=T * 2 * Ho * Wo)
    return torch.from_numpy(counts.astype(np.float32)).view(T, 2, Ho, Wo)
