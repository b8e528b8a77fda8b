r"""The ``triton`` backend: fused forward and BPTT backward for LIF and IF neurons on CUDA.

The same op as the ``cpu`` backend (equations in :mod:`membra.kernels.cpu` and
``docs/kernels.md``), written in Triton: one program per block of ``BLOCK`` neurons, the
time loop inside, the potential in float32 (float64 for float64 input). The forward reads
``x`` and writes ``s`` and ``h`` (the saved tensor, float32); the backward reads ``gs`` and
``h`` and writes ``gx`` (plus ``x`` when ``tau`` needs a gradient): 6 passes over ``[T, M]``,
the traffic of three tensor copies. ``s`` is recomputed from ``h`` as ``h >= v_th``.

Registered as the ``torch.library`` custom ops ``membra::neuron_triton_fwd`` /
``membra::neuron_triton_bwd``; Triton itself is imported at first use only. Selected by
default for CUDA tensors when Triton imports.
"""

from __future__ import annotations

import importlib.util
import math

import torch

from ._prep import SURROGATE_CODES, flatten_inputs, unflatten_outputs
from .dispatch import register_backend

__all__ = ["triton_sequence", "triton_available"]

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


def _forward(x, v0, tau, neuron, reset, v_th, v_reset):
    """Launch the forward kernel: ``(spikes, v_T, h)`` (also used by the interpreter test)."""
    T, M = x.shape
    s = torch.empty_like(x)
    h = torch.empty((T, M), dtype=v0.dtype, device=x.device)
    v_final = torch.empty_like(v0)
    if M:
        fwd, _ = _kernels()
        fwd[(math.ceil(M / BLOCK),)](x, v0, tau, s, h, v_final, T, M, v_th, v_reset,
                                     LIF=neuron == "lif", SOFT=reset == "soft", BLOCK=BLOCK)
    return s, v_final, h


def _backward_kernel(grad_spikes, grad_v_final, h, x, v0, tau, neuron, reset, v_th, v_reset,
                     surrogate, alpha, detach_reset, need_tau):
    """Launch the backward kernel: ``(grad_x, grad_v0, grad_tau)``."""
    T, M = h.shape
    gx = torch.empty_like(grad_spikes)
    gv0 = torch.empty_like(v0)
    need_tau = need_tau and neuron == "lif"
    grid = math.ceil(M / BLOCK)
    partial = torch.zeros(max(grid, 1), dtype=v0.dtype, device=h.device)
    if M:
        _, bwd = _kernels()
        bwd[(grid,)](grad_spikes, grad_v_final, h, x, v0, tau, gx, gv0, partial, T, M,
                     (T - 1) * M, v_th, v_reset, alpha, 0.0 if detach_reset else 1.0,
                     LIF=neuron == "lif", SOFT=reset == "soft", SG=SURROGATE_CODES[surrogate],
                     NEED_TAU=need_tau, BLOCK=BLOCK)
    return gx, gv0, partial.sum().to(tau.dtype).reshape(())


@torch.library.custom_op("membra::neuron_triton_fwd", mutates_args=(), device_types="cuda")
def neuron_triton_fwd(x: torch.Tensor, v0: torch.Tensor, tau: torch.Tensor, neuron: str,
                      reset: str, v_th: float, v_reset: float, surrogate: str, alpha: float,
                      detach_reset: bool) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Fused forward on ``x [T, M]`` from ``v0 [M]``: ``(spikes, v_T, h)``."""
    return _forward(x.contiguous(), v0.contiguous(), tau, neuron, reset, v_th, v_reset)


@neuron_triton_fwd.register_fake
def _(x, v0, tau, neuron, reset, v_th, v_reset, surrogate, alpha, detach_reset):
    return (torch.empty_like(x), torch.empty_like(v0),
            x.new_empty(x.shape, dtype=v0.dtype))


@torch.library.custom_op("membra::neuron_triton_bwd", mutates_args=(), device_types="cuda")
def neuron_triton_bwd(grad_spikes: torch.Tensor, grad_v_final: torch.Tensor, h: torch.Tensor,
                      x: torch.Tensor, v0: torch.Tensor, tau: torch.Tensor, neuron: str,
                      reset: str, v_th: float, v_reset: float, surrogate: str, alpha: float,
                      detach_reset: bool,
                      need_tau: bool) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Fused BPTT backward: ``(grad_x [T, M], grad_v0 [M], grad_tau [])``; ``x`` is read
    only when ``need_tau`` (any ``[T, M]`` tensor otherwise); ``grad_x`` has the dtype of
    ``grad_spikes``, which is the input's."""
    return _backward_kernel(grad_spikes.contiguous(), grad_v_final.contiguous(), h,
                            x.contiguous(), v0, tau, neuron, reset, v_th, v_reset, surrogate,
                            alpha, detach_reset, need_tau)


@neuron_triton_bwd.register_fake
def _(grad_spikes, grad_v_final, h, x, v0, tau, neuron, reset, v_th, v_reset, surrogate,
      alpha, detach_reset, need_tau):
    return torch.empty_like(grad_spikes), torch.empty_like(v0), torch.empty_like(tau)


def _setup_context(ctx, inputs, output):
    x, v0, tau, *args = inputs
    _, _, h = output
    ctx.mark_non_differentiable(h)
    ctx.set_materialize_grads(False)
    # x is needed only for the gradient of a learnable tau
    ctx.save_for_backward(h, x if tau.requires_grad else None, v0, tau)
    ctx.x_dtype = x.dtype
    ctx.args = tuple(args)


def _backward(ctx, grad_spikes, grad_v_final, _grad_h):
    h, x, v0, tau = ctx.saved_tensors
    need_tau = bool(ctx.needs_input_grad[2]) and x is not None
    xx = x if need_tau else h  # read only for the tau gradient
    gs = (torch.zeros(h.shape, dtype=ctx.x_dtype, device=h.device) if grad_spikes is None
          else grad_spikes.to(ctx.x_dtype).contiguous())
    gv = torch.zeros_like(v0) if grad_v_final is None else grad_v_final.to(v0.dtype).contiguous()
    gx, gv0, gtau = neuron_triton_bwd(gs, gv, h, xx, v0, tau, *ctx.args, need_tau)
    return (gx, gv0, gtau if need_tau else None) + (None,) * len(ctx.args)


neuron_triton_fwd.register_autograd(_backward, setup_context=_setup_context)


def triton_sequence(x, v0, tau, *, neuron, v_th, v_reset, reset, surrogate, alpha,
                    detach_reset):
    """Backend entry (see :mod:`membra.kernels.dispatch`): fused op on flattened input."""
    x2, v, tau_t = flatten_inputs(x, v0, tau)
    s2, v_final, _ = neuron_triton_fwd(x2, v, tau_t, neuron, reset, float(v_th),
                                       float(v_reset), surrogate, float(alpha),
                                       bool(detach_reset))
    return unflatten_outputs(x, s2, v_final)


register_backend("triton", triton_sequence, available=triton_available, devices=("cuda",))
