r"""Neuron-sequence kernels: one entry point per op, several backends.

:func:`lif_sequence` and :func:`if_sequence` run a layer of neurons over a whole sequence,

.. math:: (s_{1..T},\ v_T) = \mathrm{neuron}(x_{1..T},\ v_0)

with the charge/fire/reset equations of :mod:`membra.functional.neuron`, and are
differentiable in ``x``, ``v0`` (reduced back to ``v0``'s shape) and ``tau`` when it is a
tensor that requires grad. Backends: ``reference`` (the loop, always present) and the fused
``cpu`` / ``triton`` backends when built; see :mod:`membra.kernels.dispatch`.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import torch

from ..functional.kinds import NeuronKind
from ..functional.neuron import as_scalar, check_reset, check_tau, exported_scalar
from ..functional.surrogate import as_surrogate
from .dispatch import (
    PREFERENCE,
    available_backends,
    list_backends,
    register_backend,
    select_backend,
    unregister_backend,
)
from .fused import SPIKE_DTYPES
from .memory import reuse_freed_memory
from .reference import reference_sequence

__all__ = ["lif_sequence", "if_sequence", "neuron_sequence", "neuron_trace", "NeuronTrace",
           "register_backend", "unregister_backend", "available_backends", "list_backends",
           "select_backend", "PREFERENCE", "reuse_freed_memory"]


class NeuronTrace(NamedTuple):
    """Every step of a layer, each ``[T, B, *S]``: ``spikes``; ``v`` the potential after the
    reset (``v[-1]`` is ``v_T``); ``h`` the charged potential before the spike test."""

    spikes: torch.Tensor
    v: torch.Tensor
    h: torch.Tensor

register_backend("reference", reference_sequence)


def _broadcasts_to(shape, target) -> bool:
    """Whether ``shape`` broadcasts to ``target`` unchanged: no more dims, and each trailing
    dim 1 or equal (what ``torch.broadcast_shapes(shape, target) == target`` says, without its
    cost, which is larger than a small layer's kernel)."""
    return len(shape) <= len(target) and all(
        a == 1 or a == b for a, b in zip(reversed(shape), reversed(target), strict=False))


def _validate(x, v0, tau, *, v_th, v_reset, reset, check_finite, op):
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{op}: x must be a torch.Tensor, got {type(x).__name__}")
    if not x.is_floating_point():
        raise TypeError(f"{op}: x must be a floating-point tensor, got dtype {x.dtype}")
    if x.dim() < 2 or x.shape[0] == 0:
        raise ValueError(f"{op}: x must be time-first [T, B, ...] with T >= 1, "
                         f"got shape {tuple(x.shape)}")
    if v0 is None:
        v0 = x.new_zeros(())
    elif not isinstance(v0, torch.Tensor):
        if not isinstance(v0, (int, float)) or isinstance(v0, bool):
            raise TypeError(f"{op}: v0 must be a tensor or a number, got {type(v0).__name__}")
        v0 = x.new_tensor(float(v0))
    else:
        if not v0.is_floating_point():
            raise TypeError(f"{op}: v0 must be floating point, got dtype {v0.dtype}")
        if not _broadcasts_to(v0.shape, x.shape[1:]):
            raise ValueError(f"{op}: v0 of shape {tuple(v0.shape)} does not broadcast to one "
                             f"time step of x, shape {tuple(x.shape[1:])}")
        if v0.device != x.device:
            raise ValueError(f"{op}: v0 is on {v0.device} but x is on {x.device}")
    if tau is not None:
        # a tensor's value is read on the CPU (free: the cpu kernel reads it anyway), on an
        # accelerator only when asked (check_finite), as that costs a device sync
        tau = check_tau(tau, where=f"{op}: ", read_tensor=check_finite or not isinstance(
            tau, torch.Tensor) or tau.device.type == "cpu")
    for name, val in (("v_th", v_th), ("v_reset", v_reset)):
        if exported_scalar(val):
            if val.numel() != 1 or not val.is_floating_point():
                raise ValueError(f"{op}: {name} must be a one-element floating-point tensor, "
                                 f"got shape {tuple(val.shape)}, dtype {val.dtype}")
            continue
        if not isinstance(val, (int, float)) or isinstance(val, bool) or not math.isfinite(val):
            raise ValueError(f"{op}: {name} must be a finite number, got {val!r}")
    check_reset(reset)
    if check_finite and not bool(torch.isfinite(x).all()):
        raise ValueError(f"{op}: x contains NaN or infinite values")
    return v0, tau


def _check_spike_dtype(spike_dtype, x, v0, tau, op):
    """``spike_dtype`` is ``None``, ``torch.bool`` or ``torch.uint8``, and only without a
    gradient to compute (a 0/1 integer spike carries none)."""
    if spike_dtype is None:
        return
    if spike_dtype not in SPIKE_DTYPES:
        raise ValueError(f"{op}: spike_dtype must be None (spikes in x's dtype), torch.bool "
                         f"or torch.uint8, got {spike_dtype!r}")
    if torch.is_grad_enabled() and any(isinstance(t, torch.Tensor) and t.requires_grad
                                       for t in (x, v0, tau)):
        raise ValueError(f"{op}: spike_dtype={spike_dtype} gives spikes without a gradient; "
                         "use it under torch.no_grad() or with inputs that do not require grad")


def _run(x, v0, *, neuron, tau, v_th, v_reset, reset, surrogate, alpha, detach_reset,
         backend, check_finite, trace, spike_dtype=None):
    """Validate once, pick the backend, run it."""
    kind = NeuronKind.parse(neuron)
    if kind not in (NeuronKind.LIF, NeuronKind.IF):
        raise ValueError(f"neuron_sequence runs 'lif' and 'if' neurons; {kind.value!r} has its "
                         f"own entry, membra.kernels.models.{kind.value}_sequence")
    surrogate = as_surrogate(surrogate, alpha)
    op = f"{kind.value}_sequence"
    v0, tau = _validate(x, v0, tau if kind.has_tau else None, v_th=v_th, v_reset=v_reset,
                        reset=reset, check_finite=check_finite, op=op)
    _check_spike_dtype(spike_dtype, x, v0, tau, op)
    exported = exported_scalar(v_th) or exported_scalar(v_reset)
    impl = select_backend("reference" if exported else backend, x.device)
    extra = {} if spike_dtype is None else {"spike_dtype": spike_dtype}
    return impl.run(x, v0, tau, kind=kind, v_th=as_scalar(v_th), v_reset=as_scalar(v_reset),
                    reset=reset, surrogate=surrogate, detach_reset=bool(detach_reset),
                    trace=trace, **extra)


def neuron_sequence(x, v0=None, *, neuron=NeuronKind.LIF, tau=2.0, v_th=1.0, v_reset=0.0,
                    reset="soft", surrogate="sigmoid", alpha=None, detach_reset=True,
                    backend=None, check_finite=False, spike_dtype=None):
    """Shared entry of :func:`lif_sequence` / :func:`if_sequence`: ``neuron`` is a
    :class:`membra.functional.NeuronKind` or its name (``"lif"``, ``"if"``); anything else
    raises ``ValueError``. Returns ``(spikes, v_T)``."""
    return _run(x, v0, neuron=neuron, tau=tau, v_th=v_th, v_reset=v_reset, reset=reset,
                surrogate=surrogate, alpha=alpha, detach_reset=detach_reset, backend=backend,
                check_finite=check_finite, trace=False, spike_dtype=spike_dtype)


def neuron_trace(x, v0=None, *, neuron=NeuronKind.LIF, tau=2.0, v_th=1.0, v_reset=0.0,
                 reset="soft", surrogate="sigmoid", alpha=None, detach_reset=True, backend=None,
                 check_finite=False) -> NeuronTrace:
    """As :func:`neuron_sequence`, but every step: :class:`NeuronTrace` ``(spikes, v, h)``,
    each ``[T, B, ...]``, differentiable in ``x``, ``v0`` and ``tau`` through all three (the
    fused backends write ``h`` and ``v`` in their forward pass)."""
    s, _, h, v = _run(x, v0, neuron=neuron, tau=tau, v_th=v_th, v_reset=v_reset, reset=reset,
                      surrogate=surrogate, alpha=alpha, detach_reset=detach_reset,
                      backend=backend, check_finite=check_finite, trace=True)
    return NeuronTrace(s, v, h)


def lif_sequence(x, v0=None, *, tau=2.0, v_th=1.0, v_reset=0.0, reset="soft",
                 surrogate="sigmoid", alpha=None, detach_reset=True, backend=None,
                 check_finite=False, spike_dtype=None):
    r"""Run LIF neurons over ``x[T, B, ...]`` from ``v0``; returns ``(spikes, v_T)``.

    .. math::
        h_t = v_{t-1} + (x_t - (v_{t-1} - v_{reset}))/\tau,\quad
        s_t = \Theta(h_t - v_{th}),\quad
        v_t = h_t - v_{th}\hat s_t \ \text{(soft)} \ |\ h_t(1-\hat s_t) + v_{reset}\hat s_t
        \ \text{(hard)}

    Args:
        x: input current ``[T, B, ...]``, floating point.
        v0: initial potential, ``None`` (zero), a number, or a tensor broadcastable to
            ``x[0]`` (e.g. a learnable ``(1, *S)`` IMP); its gradient is reduced to its shape.
        tau: membrane time constant, finite and ``>= 1``: a float or a scalar tensor
            (learnable). A tensor's value is checked on the CPU; on an accelerator only with
            ``check_finite=True`` (it costs a device sync), and not under ``torch.compile``.
        v_th, v_reset: threshold and reset potential.
        reset: ``"soft"`` (subtract ``v_th``) or ``"hard"`` (set to ``v_reset``).
        surrogate: the surrogate gradient: a built-in name (``"sigmoid"``, ``"atan"``,
            ``"rectangular"``, ``"triangle"``), a :class:`membra.functional.Surrogate`, or any
            elementwise callable ``f(u)`` whose autograd derivative is the surrogate gradient
            (its value is unused: the spike is the Heaviside step of ``u = h - v_th``).
        alpha: a built-in's sharpness (``None``: its default); an error for a callable.
        detach_reset: treat the spike inside the reset as a constant in backward.
        backend: force a backend (else ``MEMBRA_BACKEND``, else the device's default).
        check_finite: raise ``ValueError`` if ``x`` holds NaN/inf (costs one pass and a sync,
            so it is opt-in). Without it a NaN/inf never disappears: it makes the neuron's
            spikes NaN from that step on and its ``v_T`` NaN (``docs/kernels.md``).
        spike_dtype: ``None`` (spikes in ``x``'s dtype), or ``torch.bool`` / ``torch.uint8``
            for 0/1 spikes (``s != 0``: a NaN spike gives 1), written directly by the ``cpu``
            kernel; only without a gradient to compute (else ``ValueError``). Without a
            gradient to compute the fused backends save nothing, whatever the dtype.

    Shape:
        spikes ``[T, B, ...]`` like ``x``; ``v_T`` ``[B, ...]``.
    """
    return neuron_sequence(x, v0, neuron=NeuronKind.LIF, tau=tau, v_th=v_th, v_reset=v_reset,
                           reset=reset, surrogate=surrogate, alpha=alpha,
                           detach_reset=detach_reset, backend=backend,
                           check_finite=check_finite, spike_dtype=spike_dtype)


def if_sequence(x, v0=None, *, v_th=1.0, v_reset=0.0, reset="hard", surrogate="atan",
                alpha=None, detach_reset=False, backend=None, check_finite=False,
                spike_dtype=None):
    r"""Run IF neurons (:math:`h_t = v_{t-1} + x_t`) over ``x[T, B, ...]``; see
    :func:`lif_sequence` for the arguments. Returns ``(spikes, v_T)``."""
    return neuron_sequence(x, v0, neuron=NeuronKind.IF, tau=None, v_th=v_th, v_reset=v_reset,
                           reset=reset, surrogate=surrogate, alpha=alpha,
                           detach_reset=detach_reset, backend=backend,
                           check_finite=check_finite, spike_dtype=spike_dtype)

# Fused backends register themselves on import (built lazily, at first use).
from . import cpu as _cpu  # noqa: E402,F401
from . import triton_backend as _triton_backend  # noqa: E402,F401
