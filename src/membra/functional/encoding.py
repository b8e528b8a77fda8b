r"""Encoders: static tensors ``[B, ...]`` to time-first sequences ``[T, B, ...]``.

- :func:`direct`:  :math:`x_t = x` for every step (the analog input drives the first layer).
- :func:`rate`:    :math:`x_t \sim \mathrm{Bernoulli}(x)`, ``x`` in ``[0, 1]`` (Poisson-like).
- :func:`latency`: one spike at :math:`t = \mathrm{round}((1 - x)(T - 1))` for ``x > 0``:
  brighter fires earlier, ``x = 0`` never fires.
"""

from __future__ import annotations

import torch

__all__ = ["direct", "rate", "latency", "ENCODERS", "encode"]


def _check(x: torch.Tensor, T: int, unit_range: bool) -> None:
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"x must be a torch.Tensor, got {type(x).__name__}")
    if not x.is_floating_point():
        raise TypeError(f"x must be a floating-point tensor, got dtype {x.dtype}")
    if not isinstance(T, int) or isinstance(T, bool) or T < 1:
        raise ValueError(f"T must be a positive int, got {T!r}")
    if unit_range and x.numel() and (x.min() < 0 or x.max() > 1):
        raise ValueError(
            f"x must lie in [0, 1] for this encoder, got range [{x.min().item():.4g}, "
            f"{x.max().item():.4g}]"
        )


def direct(x: torch.Tensor, T: int) -> torch.Tensor:
    """Repeat ``x`` ``T`` times along a new leading time axis: ``[B, ...] -> [T, B, ...]``."""
    _check(x, T, unit_range=False)
    return x.unsqueeze(0).expand(T, *x.shape).contiguous()


def rate(x: torch.Tensor, T: int, generator: torch.Generator | None = None) -> torch.Tensor:
    """Bernoulli spikes with probability ``x`` per step (``x`` in ``[0, 1]``)."""
    _check(x, T, unit_range=True)
    p = x.unsqueeze(0).expand(T, *x.shape)
    return torch.bernoulli(p, generator=generator)


def latency(x: torch.Tensor, T: int) -> torch.Tensor:
    """Single spike at step ``round((1 - x) * (T - 1))``; ``x = 0`` gives no spike."""
    _check(x, T, unit_range=True)
    t_fire = torch.round((1.0 - x) * (T - 1)).long()
    steps = torch.arange(T, device=x.device).view(T, *([1] * x.dim()))
    return ((steps == t_fire.unsqueeze(0)) & (x > 0).unsqueeze(0)).to(x.dtype)


ENCODERS = {"direct": direct, "rate": rate, "latency": latency}


def encode(x: torch.Tensor, T: int, method: str = "direct", generator=None) -> torch.Tensor:
    """Encode by name (``direct`` | ``rate`` | ``latency``)."""
    if method not in ENCODERS:
        raise ValueError(f"encoding={method!r} is not known; choose one of {sorted(ENCODERS)}")
    if method == "rate":
        return rate(x, T, generator=generator)
    return ENCODERS[method](x, T)
