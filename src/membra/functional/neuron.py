r"""Single-step neuron dynamics: charge, fire, reset.

Per element and time step :math:`t` (``x`` the input current, ``v`` the potential after the
previous reset, :math:`v_0` the initial potential):

.. math::

    \text{LIF charge:}\quad h_t &= v_{t-1} + \frac{x_t - (v_{t-1} - v_{reset})}{\tau} \\
    \text{IF charge:}\quad  h_t &= v_{t-1} + x_t \\
    \text{fire:}\quad       s_t &= \Theta(h_t - v_{th}) \quad (\text{fires at } h_t = v_{th}) \\
    \text{soft reset:}\quad v_t &= h_t - v_{th}\, \hat s_t \\
    \text{hard reset:}\quad v_t &= h_t (1 - \hat s_t) + v_{reset}\, \hat s_t

with :math:`\hat s_t = \mathrm{detach}(s_t)` when ``detach_reset=True``. For soft reset the LIF
leaks towards ``v_reset`` (0 by default), i.e. :math:`h_t = v_{t-1} + (x_t - v_{t-1})/\tau`.

These functions are the definition every kernel backend is tested against.
"""

from __future__ import annotations

import torch

from .surrogate import spike

__all__ = ["RESETS", "lif_charge", "if_charge", "fire_and_reset", "lif_step", "if_step"]

RESETS = ("soft", "hard")


def check_reset(reset: str) -> None:
    if reset not in RESETS:
        raise ValueError(f"reset={reset!r} is not known; choose one of {list(RESETS)}")


def lif_charge(x: torch.Tensor, v: torch.Tensor, tau, v_reset: float = 0.0) -> torch.Tensor:
    """:math:`h = v + (x - (v - v_{reset})) / \\tau` (leak with decaying input)."""
    return v + (x - (v - v_reset)) / tau


def if_charge(x: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """:math:`h = v + x` (integrate, no leak)."""
    return v + x


def fire_and_reset(
    h: torch.Tensor,
    *,
    v_th: float = 1.0,
    v_reset: float = 0.0,
    reset: str = "soft",
    surrogate: str = "sigmoid",
    alpha: float | None = None,
    detach_reset: bool = True,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Fire :math:`s = \\Theta(h - v_{th})`, then reset; returns ``(s, v)``."""
    s = spike(h - v_th, surrogate, alpha)
    s_r = s.detach() if detach_reset else s
    if reset == "soft":
        v = h - v_th * s_r
    elif reset == "hard":
        v = h * (1.0 - s_r) + v_reset * s_r
    else:
        check_reset(reset)
    return s, v


def lif_step(
    x: torch.Tensor,
    v: torch.Tensor,
    *,
    tau=2.0,
    v_th: float = 1.0,
    v_reset: float = 0.0,
    reset: str = "soft",
    surrogate: str = "sigmoid",
    alpha: float | None = None,
    detach_reset: bool = True,
) -> tuple[torch.Tensor, torch.Tensor]:
    """One LIF step ``(x_t, v_{t-1}) -> (s_t, v_t)``; see the module docstring."""
    h = lif_charge(x, v, tau, v_reset)
    return fire_and_reset(
        h, v_th=v_th, v_reset=v_reset, reset=reset, surrogate=surrogate, alpha=alpha,
        detach_reset=detach_reset,
    )


def if_step(
    x: torch.Tensor,
    v: torch.Tensor,
    *,
    v_th: float = 1.0,
    v_reset: float = 0.0,
    reset: str = "hard",
    surrogate: str = "atan",
    alpha: float | None = None,
    detach_reset: bool = False,
) -> tuple[torch.Tensor, torch.Tensor]:
    """One IF step ``(x_t, v_{t-1}) -> (s_t, v_t)``; see the module docstring."""
    h = if_charge(x, v)
    return fire_and_reset(
        h, v_th=v_th, v_reset=v_reset, reset=reset, surrogate=surrogate, alpha=alpha,
        detach_reset=detach_reset,
    )
