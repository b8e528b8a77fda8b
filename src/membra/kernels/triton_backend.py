r"""The ``triton`` backend: fused forward and BPTT backward for LIF and IF neurons on CUDA.

The same op as the ``cpu`` backend (equations in :mod:`membra.kernels.cpu` and
``docs/kernels.md``), written in Triton: one program per block of ``BLOCK`` neurons, the
time loop inside, the potential in float32 (float64 for float64 input). The forward reads
``x`` and writes ``s`` and ``h`` (the saved tensor, float32); the backward reads ``gs`` and
``h`` and writes ``gx`` (plus ``x`` when ``tau`` needs a gradient): 6 passes over ``[T, M]``,
the traffic of three tensor copies. ``s`` is recomputed from ``h`` as ``h >= v_th``.

Registered as the ``"cuda"`` kernels of ``membra::neuron_fwd`` / ``membra::neuron_bwd``
(:mod:`membra.kernels.fused`); Triton itself is imported at first use only. A custom
surrogate's derivative (or a trace's gradients) reaches the backward kernel as tensors
(``SG`` 4 / 5). Selected by
default for CUDA tensors when Triton imports.
"""

from __future__ import annotations

import importlib.util
import math

import torch

from ..functional.kinds import NeuronKind
from .dispatch import register_backend
from .fused import (
    fused_sequence,
    kernel_surrogate_code,
    neuron_bwd,
    neuron_fwd,
    trace_buffer,
)

__all__ = ["triton_available"]

BLOCK = 512
_KERNELS: dict[str, object] = {}


def triton_available() -> bool:
    """Whether a CUDA device and Triton are present."""
    return torch.cuda.is_available() and importlib.util.find_spec("triton") is not None


def _kernels():
    """The Triton kernels (imports triton on first use)."""
    if not _KERNELS:
        from . import _triton_kernels as k

        _KERNELS["fwd"], _KERNELS["bwd"] = k.fwd_kernel, k.bwd_kernel
    return _KERNELS["fwd"], _KERNELS["bwd"]


def _forward(x, v0, tau, kind, soft, v_th, v_reset, save_h=True, trace_v=False):
    """Launch the forward kernel: ``(spikes, v_T, h, v)`` (also used by the interpreter test);
    ``h`` is always written (the backward reads it), ``v`` with ``trace_v``."""
    T, M = x.shape
    s = torch.empty_like(x)
    h, v = trace_buffer(x, v0, True), trace_buffer(x, v0, trace_v)
    v_final = torch.empty_like(v0)
    if M:
        fwd, _ = _kernels()
        fwd[(math.ceil(M / BLOCK),)](x, v0, tau, s, h, v if trace_v else h, v_final, T, M, v_th,
                                     v_reset, LIF=kind == NeuronKind.LIF.code, SOFT=soft,
                                     TRACE_V=trace_v, BLOCK=BLOCK)
    return s, v_final, h, v


def _backward_kernel(grad_spikes, grad_v_final, h, x, v0, tau, dsg, grad_h, grad_v, kind, soft,
                     v_th, v_reset, surrogate, alpha, detach_reset, need_tau):
    """Launch the backward kernel: ``(grad_x, grad_v0, grad_tau)``."""
    T, M = h.shape
    gx = torch.empty_like(grad_spikes)
    gv0 = torch.empty_like(v0)
    need_tau = need_tau and kind == NeuronKind.LIF.code
    grid = math.ceil(M / BLOCK)
    partial = torch.zeros(max(grid, 1), dtype=v0.dtype, device=h.device)
    if M:
        _, bwd = _kernels()
        # unused pointers get h (never read: the constexpr SG / NEED_TAU turn the loads off)
        bwd[(grid,)](grad_spikes, grad_v_final, h, x, v0, tau, gx, gv0, partial,
                     h if dsg is None else dsg, h if grad_h is None else grad_h,
                     h if grad_v is None else grad_v, T, M, (T - 1) * M, v_th, v_reset, alpha,
                     0.0 if detach_reset else 1.0, LIF=kind == NeuronKind.LIF.code, SOFT=soft,
                     SG=kernel_surrogate_code(surrogate, dsg, grad_h), NEED_TAU=need_tau,
                     BLOCK=BLOCK)
    return gx, gv0, partial.sum().to(tau.dtype).reshape(())


@neuron_fwd.register_kernel("cuda")
def _neuron_fwd_cuda(x, v0, tau, kind, soft, v_th, v_reset, surrogate, alpha, detach_reset,
                     save_h, trace_v):
    """``membra::neuron_fwd`` on CUDA (see :mod:`.fused`); ``h`` is always written."""
    s, v_final, h, v = _forward(x.contiguous(), v0.contiguous(), tau, kind, soft, v_th,
                                v_reset, True, trace_v)
    return s, v_final, h if (save_h or trace_v) else h.new_empty(0), v


@neuron_bwd.register_kernel("cuda")
def _neuron_bwd_cuda(grad_spikes, grad_v_final, x, h, v0, tau, dsg, grad_h, grad_v, kind, soft,
                     v_th, v_reset, surrogate, alpha, detach_reset, need_tau):
    """``membra::neuron_bwd`` on CUDA: reads ``h`` (and ``x`` only for the tau gradient);
    ``grad_x`` has the dtype of ``grad_spikes``, which is the input's."""
    dsg, grad_h, grad_v = (None if t is None else t.to(h.dtype).contiguous()
                           for t in (dsg, grad_h, grad_v))
    return _backward_kernel(grad_spikes.contiguous(), grad_v_final.contiguous(), h,
                            x.contiguous(), v0, tau, dsg, grad_h, grad_v, kind, soft, v_th,
                            v_reset, surrogate, alpha, detach_reset, need_tau)


register_backend("triton", fused_sequence, available=triton_available, devices=("cuda",))
