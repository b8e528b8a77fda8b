r"""The DWAM rule as pure functions (no modules, no hooks, no in-place updates).

Per postsynaptic neuron ``i`` of a layer, with ``c`` the firing rate in this control step and
``c_pre`` the rate of the layer input, the running statistics are updated in this order:

.. math::
    d &= c - \mu,\qquad \mu \leftarrow \mu + a_s d,\qquad
    \sigma^2 \leftarrow (1-a_s)(\sigma^2 + a_s d^2) \\
    \theta_M &\leftarrow \theta_M + a_\theta (c^2/c_0 - \theta_M) \\
    CV &= \mathrm{clamp}(\sigma / (\mu + \epsilon), 0, 1/\zeta),\qquad k = \zeta\, CV \\
    \phi &= k\, c\, (c - \theta_M)
          \;=\; c\,(c - \theta),\quad \theta = k\,\theta_M + (1-k)\, c \\
    W &\leftarrow \mathrm{clamp}(W + \eta\, \phi\, c_{pre}^\top,\; W_{ref} - b,\; W_{ref} + b)

``zeta = 0`` gives ``k = 0`` and leaves ``W`` bit-identical.
"""

from __future__ import annotations

from typing import NamedTuple

import torch

GAIN_MODES = ("cv", "constant")

__all__ = ["GAIN_MODES", "BCMState", "init_state", "update_stats", "gain", "bcm_phi",
           "bcm_phi_two_threshold", "apply_update", "dwam_step"]


class BCMState(NamedTuple):
    """Running statistics of one layer: rate mean ``mu``, variance ``var``, threshold
    ``theta`` (``theta_M``), each of shape ``[n_post]``."""

    mu: torch.Tensor
    var: torch.Tensor
    theta: torch.Tensor


def init_state(c0: torch.Tensor) -> BCMState:
    """Statistics at reset: ``mu = c0``, ``var = 0``, ``theta_M = c0`` (the fixed point
    ``c0^2 / c0``)."""
    return BCMState(c0.clone(), torch.zeros_like(c0), c0.clone())


def update_stats(state: BCMState, c: torch.Tensor, c0: torch.Tensor, a_stat: float,
                 a_theta: float) -> BCMState:
    """One EMA update of ``mu``, ``var`` (rate ``a_stat``) and ``theta_M`` (``a_theta``)."""
    d = c - state.mu
    mu = state.mu + a_stat * d
    var = (1.0 - a_stat) * (state.var + a_stat * d * d)
    theta = state.theta + a_theta * (c * c / c0 - state.theta)
    return BCMState(mu, var, theta)


def gain(state: BCMState, zeta: float, eps: float = 1e-3, mode: str = "cv") -> torch.Tensor:
    """``k = zeta * clamp(sqrt(var) / (mu + eps), 0, 1/zeta)`` (so ``0 <= k <= 1``);
    ``mode="constant"``: plain BCM, ``k = zeta`` everywhere (comparison arm)."""
    if mode not in GAIN_MODES:
        raise ValueError(f"gain mode {mode!r} is not known; choose one of {list(GAIN_MODES)}")
    if zeta == 0:
        return torch.zeros_like(state.mu)
    if mode == "constant":
        return torch.full_like(state.mu, float(zeta))
    cv = torch.sqrt(state.var.clamp_min(0)) / (state.mu + eps)
    return zeta * cv.clamp(0.0, 1.0 / zeta)


def bcm_phi(c: torch.Tensor, theta_m: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
    """``phi = k c (c - theta_M)``."""
    return k * c * (c - theta_m)


def bcm_phi_two_threshold(c: torch.Tensor, theta_m: torch.Tensor,
                          k: torch.Tensor) -> torch.Tensor:
    """The published form ``phi = c (c - theta)``, ``theta = theta_M k + c (1 - k)``."""
    theta = theta_m * k + c * (1.0 - k)
    return c * (c - theta)


def apply_update(w: torch.Tensor, phi: torch.Tensor, c_pre: torch.Tensor, eta: float,
                 w_ref: torch.Tensor, bound: float) -> torch.Tensor:
    """``clamp(W + eta * outer(phi, c_pre), W_ref - bound, W_ref + bound)`` (new tensor)."""
    w = w + eta * torch.outer(phi, c_pre)
    return torch.minimum(torch.maximum(w, w_ref - bound), w_ref + bound)


def dwam_step(w: torch.Tensor, state: BCMState, c: torch.Tensor, c_pre: torch.Tensor,
              c0: torch.Tensor, *, zeta: float, eta: float, a_stat: float, a_theta: float,
              eps: float, w_ref: torch.Tensor, bound: float, gain_mode: str = "cv"):
    """One DWAM update; returns ``(W_new, state_new, k, phi)``. ``W`` is returned unchanged
    (the same tensor) when ``phi`` is all zero."""
    state = update_stats(state, c, c0, a_stat, a_theta)
    k = gain(state, zeta, eps, gain_mode)
    phi = bcm_phi(c, state.theta, k)
    if not bool(phi.any()):
        return w, state, k, phi
    return apply_update(w, phi, c_pre, eta, w_ref, bound), state, k, phi
