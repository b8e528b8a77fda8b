r"""Triton kernels of CubaLIF and ALIF (equations in :mod:`membra.functional.models`): the
``triton`` backend of :func:`membra.kernels.models.cuba_lif_sequence` /
:func:`~membra.kernels.models.alif_sequence` on CUDA.

The kernels are LIF's (:mod:`._triton_kernels`) with a second state register ``c`` (the
synaptic current ``i`` of CubaLIF, the adaptation ``a`` of ALIF) selected by the kind's
``code``. The forward writes spikes, ``h`` (and for ALIF the threshold ``theta_t``), which the
backward reads; any surrogate runs fused (a custom one's derivative, and a trace's gradients,
reach the backward as tensors: kernel codes 4 / 5, as for LIF) and ``trace=True`` returns
``NeuronTrace(spikes, v, h)`` from the same kernel.

Two ``torch.library`` ops, ``membra::model_triton_fwd`` / ``membra::model_triton_bwd``,
registered for ``"cuda"`` (and for ``"cpu"`` inside
:func:`membra.kernels.triton_backend.interpret_on_cpu` only), with an autograd formula:
differentiable in ``x`` and both initial states (``tau``, ``tau_syn``/``tau_adapt`` and
``beta`` are constants here, as in the ``cpu`` kernel).

RLIF has no kernel of its own: its recurrence ``W s_{t-1}`` needs the spikes of all neurons
of a sample from the previous step, i.e. a GEMM between two steps, which a per-neuron time
loop cannot do; on CUDA it runs one GEMM plus one Triton LIF step per time step
(:func:`membra.kernels.models.rlif_sequence`). Delay has none either: it is one
``torch.gather`` over the joined sequence, which is already one fused pass on every device.
"""

from __future__ import annotations

import torch

from ..functional.kinds import NeuronKind
from . import NeuronTrace, direct
from ._prep import flatten_inputs
from .dispatch import select_backend
from .fused import _surrogate_of as surrogate_of
from .fused import surrogate_token, trace_buffer
from .triton_backend import (
    device_constant,
    interpreting_on_cpu,
    kernel_params,
    launch_backward,
    launch_forward,
)

__all__ = ["use_triton", "triton_model_sequence"]

_ALIF = NeuronKind.ALIF.code
#: CUDA; CPU tensors only inside interpret_on_cpu() (checked per call)
_DEVICES = ("cuda", "cpu")


def use_triton(backend: str | None, device: torch.device) -> bool:
    """Whether the CubaLIF/ALIF sequence runs these kernels: the ``triton`` backend selected
    for ``device`` (the default on CUDA when Triton imports)."""
    return select_backend(backend, device).name == "triton"


def _check_device(x: torch.Tensor, op: str) -> None:
    if x.device.type == "cpu" and not interpreting_on_cpu():
        raise NotImplementedError(f"{op} runs on CUDA tensors (on CPU only inside "
                                  "membra.kernels.triton_backend.interpret_on_cpu())")


def _tau(v0: torch.Tensor, tau: float) -> torch.Tensor:
    return device_constant((float(tau),), v0.dtype, v0.device)


@torch.library.custom_op("membra::model_triton_fwd", mutates_args=(), device_types=_DEVICES)
def model_triton_fwd(x: torch.Tensor, v0: torch.Tensor, c0: torch.Tensor, kind: int, soft: bool,
                     tau: float, rho: float, beta: float, v_th: float, v_reset: float,
                     surrogate: int, alpha: float, detach_reset: bool, trace_v: bool
                     ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor,
                                torch.Tensor, torch.Tensor]:
    """Fused CubaLIF/ALIF forward on ``x [T, M]`` from ``v0, c0 [M]`` (state dtype):
    ``(s, v_T, c_T, h, theta, v)``; ``theta`` is ``[T, M]`` for ALIF (else empty), ``v``
    with ``trace_v`` (else empty)."""
    _check_device(x, "membra::model_triton_fwd")
    x, v0, c0 = x.contiguous(), v0.contiguous(), c0.contiguous()
    prm = kernel_params(v0, v_th, v_reset, rho, beta)
    return launch_forward(kind, x, v0, c0, _tau(v0, tau), prm, soft, trace_v)


@model_triton_fwd.register_fake
def _(x, v0, c0, kind, soft, tau, rho, beta, v_th, v_reset, surrogate, alpha, detach_reset,
      trace_v):
    return (torch.empty_like(x), torch.empty_like(v0), torch.empty_like(c0),
            trace_buffer(x, v0, True), trace_buffer(x, v0, kind == _ALIF),
            trace_buffer(x, v0, trace_v))


@torch.library.custom_op("membra::model_triton_bwd", mutates_args=(), device_types=_DEVICES)
def model_triton_bwd(gs: torch.Tensor, gvT: torch.Tensor, gcT: torch.Tensor, h: torch.Tensor,
                     th: torch.Tensor, v0: torch.Tensor, dsg: torch.Tensor | None,
                     grad_h: torch.Tensor | None, grad_v: torch.Tensor | None, kind: int,
                     soft: bool, tau: float, rho: float, beta: float, v_th: float,
                     v_reset: float, surrogate: int, alpha: float, detach_reset: bool
                     ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Fused BPTT backward: ``(grad_x [T, M], grad_v0 [M], grad_c0 [M])``; ``dsg`` the
    surrogate derivative at every step (``None``: the built-in ``surrogate`` inline),
    ``grad_h`` / ``grad_v`` a trace's gradients (both or neither, with ``dsg``)."""
    _check_device(h, "membra::model_triton_bwd")
    dsg, grad_h, grad_v = (None if t is None else t.to(h.dtype).contiguous()
                           for t in (dsg, grad_h, grad_v))
    code = surrogate if dsg is None else 4 if grad_h is None else 5
    prm = kernel_params(v0, v_th, v_reset, rho, beta, alpha, detach_reset)
    gx, gv0, gc0, _ = launch_backward(
        kind, gs.contiguous(), gvT.contiguous(), gcT.contiguous(), h,
        th if kind == _ALIF else None, h, v0, _tau(v0, tau), prm, dsg, grad_h, grad_v, soft,
        code, False)
    return gx, gv0, gc0


@model_triton_bwd.register_fake
def _(gs, gvT, gcT, h, th, v0, *args):
    return torch.empty_like(gs), torch.empty_like(v0), torch.empty_like(v0)


def _setup_context(ctx, inputs, output):
    x, v0, c0, kind, soft, tau, rho, beta, v_th, v_reset, sg, alpha, detach, trace_v = inputs
    _, _, _, h, th, _ = output
    ctx.mark_non_differentiable(*(output[3:] if not trace_v else output[4:5]))
    ctx.set_materialize_grads(False)
    ctx.save_for_backward(h, th, v0)
    ctx.surrogate = surrogate_of(sg, alpha)  # holds a custom surrogate until backward
    ctx.x_meta = (x.shape, x.dtype)
    ctx.args = (kind, soft, tau, rho, beta, v_th, v_reset, sg, alpha, detach)
    ctx.trace_v = trace_v


def _backward(ctx, gs, gvT, gcT, grad_h, _grad_th, grad_v):
    """Zeros for absent gradients; the surrogate derivative ``f'(h - theta)`` over all steps
    in one torch call when the surrogate is custom or a trace has gradients."""
    h, th, v0 = ctx.saved_tensors
    shape, dtype = ctx.x_meta
    kind, v_th = ctx.args[0], ctx.args[5]
    gs = h.new_zeros(shape, dtype=dtype) if gs is None else gs.to(dtype)
    gvT = torch.zeros_like(v0) if gvT is None else gvT.to(v0.dtype)
    gcT = torch.zeros_like(v0) if gcT is None else gcT.to(v0.dtype)
    traced = ctx.trace_v and (grad_h is not None or grad_v is not None)
    dsg = None
    if traced or not ctx.surrogate.builtin:
        dsg = ctx.surrogate.derivative(h - (th if kind == _ALIF else v_th))
    if traced:
        grad_h = torch.zeros_like(h) if grad_h is None else grad_h
        grad_v = torch.zeros_like(h) if grad_v is None else grad_v
    else:
        grad_h = grad_v = None
    gx, gv0, gc0 = direct.call(model_triton_bwd, gs, gvT, gcT, h, th, v0, dsg, grad_h, grad_v,
                               *ctx.args)
    return (gx, gv0, gc0) + (None,) * 11


model_triton_fwd.register_autograd(_backward, setup_context=_setup_context)
_FWD_DIRECT = direct.autograd_function(model_triton_fwd, _setup_context, _backward)


def triton_model_sequence(kind: NeuronKind, x, v0, c0, *, tau, rho, beta, v_th, v_reset,
                          reset, surrogate, detach_reset, trace=False):
    """Run the fused op on ``x [T, B, ...]`` from ``(v0, c0)`` broadcast to ``x[0]``:
    ``(spikes, (v_T, c_T))``, with ``trace`` ``(NeuronTrace(spikes, v, h), (v_T, c_T))``."""
    x2, v, _ = flatten_inputs(x, v0, None)
    c = flatten_inputs(x, c0, None)[1]
    s2, v_final, c_final, h, _, vs = direct.apply(
        model_triton_fwd, _FWD_DIRECT, x2, v, c, kind.code, reset == "soft", float(tau),
        float(rho), float(beta), float(v_th), float(v_reset), surrogate_token(surrogate),
        float(surrogate.alpha or 0.0), bool(detach_reset), bool(trace))
    shape = x.shape[1:]
    state = (v_final.reshape(shape).to(x.dtype), c_final.reshape(shape).to(x.dtype))
    s = s2.reshape(x.shape)
    if trace:
        return NeuronTrace(s, vs.reshape(x.shape).to(x.dtype),
                           h.reshape(x.shape).to(x.dtype)), state
    return s, state
