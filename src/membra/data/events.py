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

:func:`saccade_event_frames` makes event frames from static images the way N-MNIST was
recorded: a simulated event camera watches each image move along three small saccades and
emits ON/OFF events where the log intensity changes by a contrast threshold (the method is in
its docstring; ``digits-dvs`` and ``mnist-5k`` with ``encoding="events"`` use it).
"""

from __future__ import annotations

import numpy as np
import torch

__all__ = ["EVENT_DTYPE", "make_events", "events_to_frames", "SPLIT_METHODS", "saccade_path",
           "render_shifted", "saccade_event_frames", "split_event_frames"]

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


def saccade_path(steps: int, amplitude: float, jitter: float, n: int,
                 gen: torch.Generator) -> torch.Tensor:
    """Offsets ``[steps, n, 2]`` (x, y) px along a closed triangle of three straight saccades
    through :math:`(0, 0) \to (a, a/2) \to (0, a) \to (0, 0)`, ``a = amplitude``, centred on
    its mean, sampled at ``steps`` equally spaced instants (instant ``k`` is at position
    ``3k/steps`` along the three segments). Each of the ``n`` paths moves its three vertices
    by a uniform draw in ``[-jitter, jitter]`` px per coordinate."""
    a = float(amplitude)
    verts = torch.tensor([[0.0, 0.0], [a, a / 2], [0.0, a]])
    verts = verts - verts.mean(0)
    v = verts.unsqueeze(0) + (torch.rand(n, 3, 2, generator=gen) * 2 - 1) * jitter
    v = torch.cat([v, v[:, :1]], dim=1)                       # close the loop: [n, 4, 2]
    s = torch.arange(steps, dtype=torch.float32) * 3 / steps  # position along 3 saccades
    seg = s.floor().long().clamp(max=2)
    frac = (s - seg).view(steps, 1, 1)
    return v[:, seg].transpose(0, 1) * (1 - frac) + v[:, seg + 1].transpose(0, 1) * frac


def _interp_weights(offset: torch.Tensor, n_in: int, size: int, margin: int) -> torch.Tensor:
    """Bilinear weights ``[n, size, n_in]`` from input pixels to canvas pixels along one axis:
    canvas pixel centre ``u + 0.5`` samples the image at input coordinate
    ``(u + 0.5 - offset - margin) * n_in / (size - 2 margin) - 0.5``, weight
    ``max(0, 1 - |coord - j|)`` (zero outside the image)."""
    u = torch.arange(size, dtype=torch.float32) + 0.5
    coord = (u.view(1, -1) - offset.view(-1, 1) - margin) * n_in / (size - 2 * margin) - 0.5
    j = torch.arange(n_in, dtype=torch.float32)
    return (1 - (coord.unsqueeze(-1) - j).abs()).clamp(min=0)


def render_shifted(img: torch.Tensor, offset: torch.Tensor, size: int,
                   margin: int) -> torch.Tensor:
    """Images ``img [n, h, w]`` drawn on a ``size x size`` canvas, scaled to fill its central
    ``size - 2 margin`` pixels and shifted by ``offset [n, 2]`` (x, y) px, with separable
    bilinear interpolation: ``W_y @ img @ W_x^T`` (zero outside the image)."""
    wx = _interp_weights(offset[:, 0], img.shape[-1], size, margin)
    wy = _interp_weights(offset[:, 1], img.shape[-2], size, margin)
    return wy @ img @ wx.transpose(1, 2)


def saccade_event_frames(imgs: torch.Tensor, T: int, gen: torch.Generator, *, size: int,
                         margin: int = 0, amplitude: float = 2.0, steps: int = 96,
                         threshold: float = 0.25, threshold_noise: float = 0.1,
                         noise: float = 1e-3, jitter: float = 0.5,
                         eps: float = 0.1) -> torch.Tensor:
    r"""Event frames ``[n, T, 2, size, size]`` (uint8 counts, saturating at 255; channel 0 =
    OFF, 1 = ON) of a simulated event camera watching ``imgs [n, h, w]`` (intensities in
    ``[0, 1]``) make three saccades, like the N-MNIST recordings:

    1. **Rendering and saccades.** Each image is drawn by :func:`render_shifted` (bilinear,
       filling the central ``size - 2 margin`` pixels) at the offsets of
       :func:`saccade_path` (triangle of side ``amplitude`` px, ``steps`` instants, vertex
       ``jitter``).
    2. **Events.** With log intensity :math:`L = \log(I + \epsilon)` (``eps``), every pixel
       keeps a reference level :math:`L_{ref}` (set at the first instant). At each later
       instant it emits :math:`\lfloor (L - L_{ref}) / C \rfloor` ON events when positive or
       :math:`\lfloor (L_{ref} - L) / C \rfloor` OFF events when negative, and moves
       :math:`L_{ref}` by that many :math:`\pm C`. The contrast threshold is drawn per pixel
       and image as :math:`C = \max(c(1 + \sigma \xi), 0.2c)`, :math:`\xi \sim N(0, 1)`,
       ``c = threshold``, :math:`\sigma` = ``threshold_noise``. Each pixel also fires a noise
       event of random polarity with probability ``noise`` per instant.
    3. **Frames.** Instant ``k`` goes to frame :math:`\lfloor kT/\text{steps} \rfloor`.

    Draws from ``gen``, in this order: the jitter ``[n, 3, 2]``, the thresholds
    ``[n, size, size]``, then per instant the noise shots and their polarities. An image
    that does not change gives only the noise events (none with ``noise=0``).
    """
    if imgs.dim() != 3:
        raise ValueError(f"imgs must be [n, h, w], got shape {tuple(imgs.shape)}")
    if not isinstance(T, int) or isinstance(T, bool) or T < 1:
        raise ValueError(f"T must be a positive int, got {T!r}")
    if not isinstance(size, int) or size <= 2 * margin:
        raise ValueError(f"size must be an int > 2 * margin = {2 * margin}, got {size!r}")
    if not isinstance(steps, int) or isinstance(steps, bool) or steps < T:
        raise ValueError(f"steps must be an int >= T={T}, got {steps!r}")
    if not threshold > 0:
        raise ValueError(f"threshold must be > 0, got {threshold!r}")
    if not (0 <= noise < 1 and threshold_noise >= 0 and jitter >= 0 and amplitude >= 0):
        raise ValueError(f"noise must be in [0, 1), threshold_noise, jitter and amplitude "
                         f">= 0; got {noise!r}, {threshold_noise!r}, {jitter!r}, "
                         f"{amplitude!r}")
    n = len(imgs)
    imgs = imgs.float()
    path = saccade_path(steps, float(amplitude), float(jitter), n, gen)
    c = threshold * (1 + threshold_noise * torch.randn(n, size, size, generator=gen))
    c = c.clamp(min=0.2 * threshold)
    out = torch.zeros(n, T, 2, size, size, dtype=torch.uint8)
    acc = torch.zeros(n, 2, size, size)          # counts of the frame being filled
    frame = 0
    l_ref = torch.log(render_shifted(imgs, path[0], size, margin) + eps)
    for k in range(1, steps):
        lk = torch.log(render_shifted(imgs, path[k], size, margin) + eps)
        d = lk - l_ref
        n_on = torch.floor(d.clamp(min=0) / c)
        n_off = torch.floor((-d).clamp(min=0) / c)
        l_ref = l_ref + (n_on - n_off) * c
        shot = torch.rand(n, size, size, generator=gen) < noise
        pol = torch.rand(n, size, size, generator=gen) < 0.5
        f = k * T // steps
        if f != frame:
            out[:, frame] = acc.clamp(max=255).to(torch.uint8)
            acc.zero_()
            frame = f
        acc[:, 1] += n_on + (shot & pol)
        acc[:, 0] += n_off + (shot & ~pol)
    out[:, frame] = acc.clamp(max=255).to(torch.uint8)
    return out


def split_event_frames(imgs: torch.Tensor, T: int, split: str, seed: int,
                       **kwargs) -> torch.Tensor:
    """:func:`saccade_event_frames` of a dataset split: the generator is seeded with
    ``2 seed + (split == "test")`` (train and test draw different saccades and noise) and the
    frames are made on one thread; ``kwargs`` (``size``, ``margin``, ``amplitude``, ...) go
    to :func:`saccade_event_frames`."""
    from .base import single_thread

    gen = torch.Generator().manual_seed(seed * 2 + (split == "test"))
    with single_thread():
        return saccade_event_frames(imgs, T, gen, **kwargs)
