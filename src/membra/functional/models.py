r"""Single-step dynamics of membra's further neuron models and of the axonal delay.

Every model reuses the LIF charge and the fire/reset rule of :mod:`membra.functional.neuron`
(:math:`\rho_x = 1 - 1/\tau_x` the fraction a state keeps per step; fire at
:math:`h_t \ge \theta_t`; NaN spikes where the potential is not finite):

**CubaLIF** (current-based synapse; snnTorch ``Synaptic``, NIR ``CubaLIF``), state
:math:`(v, i)`:

.. math::
    i_t = \rho_{syn}\, i_{t-1} + x_t,\qquad
    h_t = v_{t-1} + (i_t - (v_{t-1} - v_{reset}))/\tau,\qquad
    s_t = \Theta(h_t - v_{th}),\ v_t = \mathrm{reset}(h_t, s_t)

**ALIF** (adaptive threshold, LSNN of Bellec et al. 2018), state :math:`(v, a)` where ``a``
is the adaptation the *next* step uses (so the state after step ``t`` holds :math:`a_{t+1}`):

.. math::
    \theta_t = v_{th} + \beta a_t,\qquad h_t = v_{t-1} + (x_t - (v_{t-1} - v_{reset}))/\tau,
    \qquad s_t = \Theta(h_t - \theta_t),

    v_t = h_t - \theta_t \hat s_t\ (\text{soft}) \ |\ h_t (1 - \hat s_t) + v_{reset} \hat s_t
    \ (\text{hard}),\qquad a_{t+1} = \rho_a a_t + s_t

The spike feeding the adaptation is never detached (its surrogate gradient flows into
:math:`a`); ``detach_reset`` only concerns the reset, as for LIF.

**RLIF** (recurrent LIF; snnTorch ``RLeaky``), state :math:`(v, s)`, ``W`` of shape
``[N, N]`` over the flattened neurons:

.. math:: h_t = v_{t-1} + (x_t + W s_{t-1} - (v_{t-1} - v_{reset}))/\tau,\ \text{then LIF}

**Delay** (NIR ``Delay``), per neuron an integer :math:`d \in [0, D]`:
:math:`y_t = x_{t-d}`, with :math:`x_{t} = ` the carried history for :math:`t \le 0`
(zeros at the start).
"""

from __future__ import annotations

import math

import torch

from .neuron import as_scalar, check_tau, fire_and_reset, lif_charge

__all__ = ["keep_fraction", "cuba_lif_step", "alif_step", "rlif_step", "check_delays",
           "delay_sequence"]


def keep_fraction(tau: float, name: str = "tau") -> float:
    """:math:`\\rho = 1 - 1/\\tau`, the fraction of a state kept per step; ``tau`` is checked
    (finite, ``>= 1``; errors name ``name``)."""
    try:
        tau = check_tau(tau)
    except (TypeError, ValueError) as err:
        raise type(err)(str(err).replace("tau must", f"{name} must", 1)) from None
    return 1.0 - 1.0 / as_scalar(tau)


def cuba_lif_step(x, state, *, tau=2.0, tau_syn=2.0, v_th=1.0, v_reset=0.0, reset="soft",
                  surrogate="sigmoid", alpha=None, detach_reset=True, trace=False):
    """One CubaLIF step ``(x_t, (v_{t-1}, i_{t-1})) -> (s_t, (v_t, i_t))``: the synaptic
    current :math:`i_t = (1 - 1/\tau_{syn}) i_{t-1} + x_t` charges a LIF neuron. With
    ``trace=True`` also the charged potential :math:`h_t`: ``(s_t, (v_t, i_t), h_t)``."""
    v, i = state
    i = i * keep_fraction(tau_syn, "tau_syn") + x
    h = lif_charge(i, v, tau, v_reset)
    s, v = fire_and_reset(h, v_th=v_th, v_reset=v_reset, reset=reset, surrogate=surrogate,
                          alpha=alpha, detach_reset=detach_reset)
    return (s, (v, i), h) if trace else (s, (v, i))


def alif_step(x, state, *, tau=2.0, tau_adapt=20.0, beta=0.2, v_th=1.0, v_reset=0.0,
              reset="soft", surrogate="sigmoid", alpha=None, detach_reset=True, trace=False):
    """One ALIF step ``(x_t, (v_{t-1}, a_t)) -> (s_t, (v_t, a_{t+1}))`` with the threshold
    :math:`\theta_t = v_{th} + \beta a_t` and :math:`a_{t+1} = (1 - 1/\tau_a) a_t + s_t`;
    the soft reset subtracts :math:`\theta_t`. With ``trace=True`` also :math:`h_t`."""
    v, a = state
    theta = v_th + beta * a
    h = lif_charge(x, v, tau, v_reset)
    s, v = fire_and_reset(h, v_th=theta, v_reset=v_reset, reset=reset, surrogate=surrogate,
                          alpha=alpha, detach_reset=detach_reset)
    a = a * keep_fraction(tau_adapt, "tau_adapt") + s
    return (s, (v, a), h) if trace else (s, (v, a))


def rlif_step(x, state, weight, *, tau=2.0, v_th=1.0, v_reset=0.0, reset="soft",
              surrogate="sigmoid", alpha=None, detach_reset=True, trace=False):
    """One RLIF step ``(x_t, (v_{t-1}, s_{t-1})) -> (s_t, (v_t, s_t))``: LIF on
    :math:`x_t + W s_{t-1}` (``weight`` ``[N, N]`` over the flattened neurons of a sample).
    With ``trace=True`` also :math:`h_t`."""
    v, s_prev = state
    rec = (s_prev.flatten(1) @ weight.t()).view_as(x)
    h = lif_charge(x + rec, v, tau, v_reset)
    s, v = fire_and_reset(h, v_th=v_th, v_reset=v_reset, reset=reset, surrogate=surrogate,
                          alpha=alpha, detach_reset=detach_reset)
    return (s, (v, s), h) if trace else (s, (v, s))


def check_delays(delays, shape: tuple[int, ...], max_delay: int) -> torch.Tensor:
    """Validate integer delays: a number or an integer tensor broadcastable to ``shape``
    (per neuron, or e.g. ``(C, 1, 1)`` per channel), each in ``[0, max_delay]``; returns an
    int64 tensor of ``shape``. Errors name ``delays`` / ``max_delay``."""
    if not isinstance(max_delay, int) or isinstance(max_delay, bool) or max_delay < 0:
        raise ValueError(f"max_delay must be an int >= 0, got {max_delay!r}")
    if delays is None:
        delays = max_delay
    if isinstance(delays, (int, float)) and not isinstance(delays, bool):
        if not (math.isfinite(delays) and float(delays).is_integer()):
            raise ValueError(f"delays must be whole numbers, got {delays!r}")
        delays = torch.tensor(int(delays))
    if not isinstance(delays, torch.Tensor):
        raise TypeError(f"delays must be an int or an integer tensor, got "
                        f"{type(delays).__name__}")
    if delays.is_floating_point():
        if not bool((torch.isfinite(delays) & (delays == delays.round())).all()):
            raise ValueError("delays must be whole numbers (got non-integer values)")
    elif delays.dtype == torch.bool or delays.is_complex():
        raise TypeError(f"delays must be integers, got dtype {delays.dtype}")
    delays = delays.detach().to(torch.int64)
    try:
        ok = torch.broadcast_shapes(delays.shape, tuple(shape)) == tuple(shape)
    except RuntimeError:
        ok = False
    if not ok:
        raise ValueError(f"delays of shape {tuple(delays.shape)} do not broadcast to the "
                         f"neuron shape {tuple(shape)} (per neuron, or e.g. (C, 1, 1) per "
                         "channel)")
    if delays.numel() and int(delays.min()) < 0:
        raise ValueError(f"delays must be >= 0, got a minimum of {int(delays.min())}")
    if delays.numel() and int(delays.max()) > max_delay:
        raise ValueError(f"delays must be <= max_delay={max_delay}, got a maximum of "
                         f"{int(delays.max())}")
    return delays.expand(tuple(shape)).clone()


def delay_sequence(x: torch.Tensor, history: torch.Tensor, delays: torch.Tensor):
    """Delay ``x [T, B, *S]`` per neuron: ``y_t = x_{t-d}``, reading steps ``t - d <= 0``
    from ``history [D, B, *S]`` (the last ``D`` inputs before ``x``, oldest first). Returns
    ``(y, new_history)``; one gather over the joined sequence, differentiable in ``x`` and
    ``history``."""
    T, D = x.shape[0], history.shape[0]
    joined = torch.cat([history.to(x.dtype), x], 0)  # [D + T, B, *S]
    t = torch.arange(T, device=x.device).view(T, *([1] * (x.dim() - 1)))
    idx = (t + D - delays.to(x.device)).expand_as(x)  # [T, 1, *S] -> [T, B, *S]
    y = torch.gather(joined, 0, idx)
    return y, joined[T:]
