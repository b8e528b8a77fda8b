r"""``digits-dvs``: an event-camera version of ``digits``, generated offline.

Method (a simulated DVS watching the digit move, like N-MNIST's saccades):

1. **Rendering.** Each 8x8 digit (same fixed split as ``digits``) is drawn with bilinear
   interpolation on a ``size x size`` canvas (default 16), filling the central
   ``size - 2m`` pixels, ``m = size // 8`` (the margin the motion uses).
2. **Saccades.** The image moves along a closed triangle of three straight saccades through
   the offsets :math:`(0, 0) \to (m, m/2) \to (0, m) \to (0, 0)` pixels (x, y), centred on
   the canvas, sampled at ``steps`` (default 96) equally spaced instants. Per sample, the seed
   adds a uniform jitter of :math:`\pm` ``jitter`` px (default 0.5) to each vertex.
3. **Events.** With intensity :math:`I` and log intensity :math:`L = \log(I + 0.1)`, every
   pixel keeps a reference level :math:`L_{ref}` (set at the first instant). At each later
   instant it emits :math:`n = \lfloor (L - L_{ref}) / C \rfloor` ON events when positive or
   :math:`\lfloor (L_{ref} - L) / C \rfloor` OFF events when negative, and moves
   :math:`L_{ref}` by :math:`\pm nC`. The contrast threshold :math:`C` (default 0.25) varies
   per pixel and sample as :math:`C (1 + \sigma \xi)`, :math:`\xi \sim N(0, 1)`,
   :math:`\sigma` = ``threshold_noise`` (default 0.1, floored at 0.2 C). Each pixel also fires
   a noise event of random polarity with probability ``noise`` (default 1e-3) per instant.
4. **Frames.** Events are binned by time into ``T`` equal-time frames (instant ``k`` of
   ``steps`` goes to frame :math:`\lfloor kT/\text{steps} \rfloor`) with 2 channels
   (0 = OFF, 1 = ON) of event counts: items ``[T, 2, size, size]``.

All randomness comes from one generator seeded by ``(seed, split)``: the same seed gives the
same frames, another seed different noise, jitter and thresholds (the digits and split stay).
"""

from __future__ import annotations

from functools import lru_cache

import torch

from ..base import FrameDataset, require_direct, resolve_T, single_thread
from ..registry import DatasetInfo, register_dataset
from .digits import digits_arrays

__all__ = ["generate_digits_dvs"]

_EPS = 0.1


def _path(steps: int, m: float, jitter: float, n: int, gen: torch.Generator) -> torch.Tensor:
    """Offsets ``[steps, n, 2]`` (x, y) along the jittered triangle, centred on 0."""
    verts = torch.tensor([[0.0, 0.0], [m, m / 2], [0.0, m]])
    verts = verts - verts.mean(0)
    v = verts.unsqueeze(0) + (torch.rand(n, 3, 2, generator=gen) * 2 - 1) * jitter
    v = torch.cat([v, v[:, :1]], dim=1)                       # close the loop: [n, 4, 2]
    s = torch.arange(steps, dtype=torch.float32) * 3 / steps  # position along 3 saccades
    seg = s.floor().long().clamp(max=2)
    frac = (s - seg).view(steps, 1, 1)
    return v[:, seg].transpose(0, 1) * (1 - frac) + v[:, seg + 1].transpose(0, 1) * frac


def _interp_weights(offset: torch.Tensor, size: int, m: int) -> torch.Tensor:
    """Bilinear weights ``[n, size, 8]`` from input pixels to canvas pixels along one axis:
    canvas pixel centre ``u + 0.5`` samples the image at input coordinate
    ``(u + 0.5 - offset - m) * 8 / (size - 2m) - 0.5``, weight ``max(0, 1 - |coord - j|)``
    (zero outside the image)."""
    u = torch.arange(size, dtype=torch.float32) + 0.5
    coord = (u.view(1, -1) - offset.view(-1, 1) - m) * 8 / (size - 2 * m) - 0.5
    j = torch.arange(8, dtype=torch.float32)
    return (1 - (coord.unsqueeze(-1) - j).abs()).clamp(min=0)


def _render(img: torch.Tensor, offset: torch.Tensor, size: int, m: int) -> torch.Tensor:
    """Bilinear rendering of ``img [n, 8, 8]`` shifted by ``offset [n, 2]`` (x, y) px:
    ``W_y @ img @ W_x^T`` (separable bilinear interpolation)."""
    wx = _interp_weights(offset[:, 0], size, m)
    wy = _interp_weights(offset[:, 1], size, m)
    return wy @ img @ wx.transpose(1, 2)


@lru_cache(maxsize=8)
def generate_digits_dvs(split: str, T: int, seed: int = 0, size: int = 16, steps: int = 96,
                        threshold: float = 0.25, threshold_noise: float = 0.1,
                        noise: float = 1e-3, jitter: float = 0.5):
    """Frames ``[N, T, 2, size, size]`` (uint8 event counts, saturating at 255) and labels
    ``[N]`` of ``split`` (method in the module docstring). Cached per argument set."""
    if not isinstance(size, int) or size < 8:
        raise ValueError(f"size must be an int >= 8, got {size!r}")
    if not isinstance(steps, int) or steps < T:
        raise ValueError(f"steps must be an int >= T={T}, got {steps!r}")
    if not threshold > 0:
        raise ValueError(f"threshold must be > 0, got {threshold!r}")
    if not 0 <= noise < 1 or threshold_noise < 0 or jitter < 0:
        raise ValueError(f"noise must be in [0, 1), threshold_noise and jitter >= 0; got "
                         f"{noise!r}, {threshold_noise!r}, {jitter!r}")
    with single_thread():
        return _generate(split, T, seed, size, steps, threshold, threshold_noise, noise, jitter)


def _generate(split, T, seed, size, steps, threshold, threshold_noise, noise, jitter):
    imgs, labels = digits_arrays(split)
    n = len(labels)
    gen = torch.Generator().manual_seed(seed * 2 + (split == "test"))
    m = size // 8
    path = _path(steps, float(m), float(jitter), n, gen)
    c = threshold * (1 + threshold_noise * torch.randn(n, size, size, generator=gen))
    c = c.clamp(min=0.2 * threshold)
    counts = torch.zeros(n, T, 2, size, size)
    l_ref = torch.log(_render(imgs, path[0], size, m) + _EPS)
    for k in range(1, steps):
        lk = torch.log(_render(imgs, path[k], size, m) + _EPS)
        d = lk - l_ref
        n_on = torch.floor(d.clamp(min=0) / c)
        n_off = torch.floor((-d).clamp(min=0) / c)
        l_ref = l_ref + (n_on - n_off) * c
        shot = torch.rand(n, size, size, generator=gen) < noise
        pol = torch.rand(n, size, size, generator=gen) < 0.5
        f = k * T // steps
        counts[:, f, 1] += n_on + (shot & pol)
        counts[:, f, 0] += n_off + (shot & ~pol)
    return counts.clamp(max=255).to(torch.uint8), labels


@register_dataset("digits-dvs", description="event-camera digits generated from `digits` by "
                                            "saccades (ON/OFF frames [T, 2, 16, 16]), 10 classes")
def digits_dvs(*, split, T, root, seed, encoding, size: int = 16, steps: int = 96,
               threshold: float = 0.25, threshold_noise: float = 0.1, noise: float = 1e-3,
               jitter: float = 0.5):
    """Event-camera digits (default T=8, frames 2 x 16 x 16 of event counts)."""
    require_direct("digits-dvs", encoding)
    T = resolve_T(T, 8)
    frames, labels = generate_digits_dvs(split, T, seed, size, steps, float(threshold),
                                         float(threshold_noise), float(noise), float(jitter))
    info = DatasetInfo("digits-dvs", (2, size, size), 10, T)
    return FrameDataset(frames, labels, info)
