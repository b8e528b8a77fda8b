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

The time constant: :math:`h_t = (1 - 1/\tau)\, v_{t-1} + (x_t + v_{reset})/\tau` keeps the
fraction :math:`1 - 1/\tau` of the potential, a leak in :math:`[0, 1)` exactly when ``tau`` is
finite and :math:`\ge 1` (:func:`check_tau`). A learnable ``tau`` is parametrised as
:math:`\tau = 1 + \mathrm{softplus}(r)` (:func:`tau_from_raw`), valid for every finite ``r``.

Non-finite values are never hidden: where :math:`h_t` is NaN or +-inf the spike is NaN
(:func:`membra.functional.heaviside`), so both resets give a NaN :math:`v_t`, and with it every
later :math:`h`, spike and the final potential of that neuron are NaN.

These functions are the definition every kernel backend is tested against.
"""

from __future__ import annotations

import math

import torch

from .surrogate import spike

__all__ = ["RESETS", "check_tau", "exported_scalar", "as_scalar", "tau_from_raw", "raw_from_tau",
           "lif_charge", "if_charge", "fire_and_reset", "lif_step", "if_step"]

RESETS = ("soft", "hard")
#: softplus(r) == r from here on (torch's default ``threshold=20``), so its inverse is r too
_SOFTPLUS_LINEAR = 20.0


def check_reset(reset: str) -> None:
    if reset not in RESETS:
        raise ValueError(f"reset={reset!r} is not known; choose one of {list(RESETS)}")


def check_tau(tau, *, where: str = "", read_tensor: bool = True):
    """Validate a LIF time constant; returns it as a float or a 0-d tensor.

    ``tau`` must be finite and ``>= 1`` (the leak ``1 - 1/tau`` in ``[0, 1)``), as a number or
    a one-element floating-point tensor. A tensor's value is read (one scalar read, a device
    sync on an accelerator) when ``read_tensor`` is true and not while ``torch.compile``
    traces. Errors name ``tau`` (after the prefix ``where``).
    """
    if isinstance(tau, torch.Tensor):
        if tau.numel() != 1:
            raise ValueError(f"{where}tau must be a scalar, got shape {tuple(tau.shape)}")
        if not tau.is_floating_point():
            raise TypeError(f"{where}tau must be floating point, got dtype {tau.dtype}")
        tau = tau.reshape(())
        if read_tensor and not torch.compiler.is_compiling():
            _check_tau_value(float(tau.detach()), where)
        return tau
    if not isinstance(tau, (int, float)) or isinstance(tau, bool):
        raise TypeError(f"{where}tau must be a number or a scalar tensor, got "
                        f"{type(tau).__name__}")
    _check_tau_value(float(tau), where)
    return float(tau)


def exported_scalar(value) -> bool:
    """Whether ``value`` is a neuron module's 0-d buffer met while ``torch.export`` traces
    (the module hands its thresholds and time constants over as tensors then: reading their
    values would make the export guard on them). The kernel entries then run the ``reference``
    loop, whose torch ops read them in the exported graph."""
    return isinstance(value, torch.Tensor) and torch.compiler.is_exporting()


def as_scalar(value):
    """``float(value)``, or ``value`` itself when :func:`exported_scalar`."""
    return value if exported_scalar(value) else float(value)


def _check_tau_value(value: float, where: str) -> None:
    if not (math.isfinite(value) and value >= 1.0):
        raise ValueError(f"{where}tau must be finite and >= 1 (a positive time constant of at "
                         f"least one step: each step keeps 1 - 1/tau of the potential), got "
                         f"{value!r}")


def tau_from_raw(raw: torch.Tensor) -> torch.Tensor:
    """The parametrisation of a learnable time constant, :math:`\\tau = 1 + \\mathrm{softplus}(r)`:
    finite and ``>= 1`` for every finite ``r`` (``softplus(r) <= max(r, 0) + log 2``)."""
    return 1.0 + torch.nn.functional.softplus(raw)


def raw_from_tau(tau: float, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """The 0-d ``raw`` of ``dtype`` with ``tau_from_raw(raw) == tau`` up to rounding: the
    inverse ``log(expm1(tau - 1))`` computed in float64. Needs a finite ``tau > 1``."""
    if not (math.isfinite(tau) and tau > 1.0):
        raise ValueError(f"a learnable tau must be finite and > 1 (tau = 1 + softplus(raw_tau) "
                         f"never reaches 1), got {tau!r}")
    y = tau - 1.0
    return torch.tensor(y if y > _SOFTPLUS_LINEAR else math.log(math.expm1(y)), dtype=dtype)


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
    surrogate="sigmoid",
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
    surrogate="sigmoid",
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
    surrogate="atan",
    alpha: float | None = None,
    detach_reset: bool = False,
) -> tuple[torch.Tensor, torch.Tensor]:
    """One IF step ``(x_t, v_{t-1}) -> (s_t, v_t)``; see the module docstring."""
    h = if_charge(x, v)
    return fire_and_reset(
        h, v_th=v_th, v_reset=v_reset, reset=reset, surrogate=surrogate, alpha=alpha,
        detach_reset=detach_reset,
    )
