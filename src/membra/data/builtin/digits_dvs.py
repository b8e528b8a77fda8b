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

from ..base import FrameDataset, require_direct, resolve_T
from ..events import split_event_frames
from ..registry import DatasetInfo, register_dataset
from .digits import digits_arrays

__all__ = ["generate_digits_dvs"]


@lru_cache(maxsize=8)
def generate_digits_dvs(split: str, T: int, seed: int = 0, size: int = 16, steps: int = 96,
                        threshold: float = 0.25, threshold_noise: float = 0.1,
                        noise: float = 1e-3, jitter: float = 0.5):
    """Frames ``[N, T, 2, size, size]`` (uint8 event counts, saturating at 255) and labels
    ``[N]`` of ``split`` (method in the module docstring; the simulator is
    :func:`membra.data.events.saccade_event_frames` with margin and amplitude ``size // 8``).
    Cached per argument set."""
    if not isinstance(size, int) or size < 8:
        raise ValueError(f"size must be an int >= 8, got {size!r}")
    imgs, labels = digits_arrays(split)
    m = size // 8
    frames = split_event_frames(imgs, T, split, seed, size=size, margin=m, amplitude=float(m),
                                steps=steps, threshold=threshold,
                                threshold_noise=threshold_noise, noise=noise, jitter=jitter)
    return frames, labels


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
