r"""RLIF's whole sequence as one autograd node: :func:`rlif_fused`.

Per step :math:`r_t = x_t + W s_{t-1}` (one ``addmm`` into a preallocated ``[T, B, N]``
buffer) and one LIF step of the fused kernel (``membra::neuron_fwd``'s kernel for the device,
called directly: the C++ kernel on CPU, Triton on CUDA). The backward walks the steps back
with the same kernels' backward:

.. math::
    g^r_t = \mathrm{bwd}(g^s_t + g^r_{t+1} W,\ g^v_t),\qquad
    \frac{\partial L}{\partial W} = \sum_t (g^r_t)^\top s_{t-1},

``g^v_t`` the gradient into the potential that step ``t + 1`` received, ``W``'s gradient one
GEMM over all steps. A custom surrogate's derivative (and a trace's) is evaluated over all
steps in one call before the walk back. Compared with chaining ``T`` single-step ops through
autograd, this saves per step an op dispatch forward and backward, autograd's nodes for the
slicing, the ``addmm`` and the stacking, and their intermediate tensors: on a speech-sized
layer (``[100, 32, 256]``) that was most of RLIF's time (``python -m membra.bench.models``).

It runs where the kernels may be called directly (:func:`.direct.unobserved`, the ``cpu`` or
``triton`` backend, float32 / float64): ``torch.compile``, ``torch.export`` and dispatch modes
see the per-step ops of :func:`membra.kernels.models.rlif_sequence` instead.
"""

from __future__ import annotations

import torch
from torch.autograd.function import once_differentiable

from ..functional.kinds import NeuronKind
from ..functional.surrogate import Surrogate
from ..functional.surrogate_compiled import derivative_at
from . import direct
from .fused import neuron_bwd, neuron_fwd, new_output, surrogate_token

__all__ = ["rlif_fusable", "rlif_fused"]

_LIF = NeuronKind.LIF.code
_DTYPES = (torch.float32, torch.float64)
#: per device type, ``(active, forward_step, backward_step)``: one step's kernels writing into
#: given buffers, no allocation (the cpu backend installs its C++ kernels; ``active()`` says
#: whether they serve ``membra::neuron_fwd`` now). Elsewhere :func:`_op_steps` adapts the
#: ops' kernels. ``forward_step(r, v, s, v_next, h, args)``: ``r, v, s, v_next [M]``, ``h [M]``
#: or ``None``; ``backward_step(gs, gv_next, r, v, gr, gv, gtau, dsg, gh, gvt, args)``: the
#: gradients into the step's input ``gr`` and potential ``gv``, ``gtau [M]`` (per-neuron terms)
#: or ``None``; ``gv_next``, ``dsg``, ``gh``, ``gvt`` may be ``None``. ``args``:
#: ``(tau, soft, v_th, v_reset, token, alpha, detach)``, ``tau`` a 0-d tensor.
STEP_KERNELS: dict = {}


def _row(t):
    """``t`` as one row ``[1, M]`` (``None`` stays ``None``)."""
    return None if t is None else t.view(1, -1)


def _flat(t, i):
    """Step ``i`` of ``t [T, ...]`` as ``[M]`` (``None`` stays ``None``)."""
    return None if t is None else t[i].view(-1)


def _op_steps(device_type: str):
    """:data:`STEP_KERNELS`' two functions from the ops' kernels for ``device_type`` (which
    allocate their outputs: copied into the buffers)."""
    fwd = direct._device_kernel(neuron_fwd, device_type)
    bwd = direct._device_kernel(neuron_bwd, device_type)

    def forward_step(r, v, s, v_next, h, args):
        tau, soft, v_th, v_reset, token, alpha, detach = args
        s_t, v_t, h_t, _ = fwd(r.view(1, -1), v, tau, _LIF, soft, v_th, v_reset, token, alpha,
                               detach, h is not None, False)
        s.copy_(s_t.view(-1))
        v_next.copy_(v_t)
        if h is not None:
            h.copy_(h_t.view(-1))

    def backward_step(gs, gv_next, r, v, gr, gv, gtau, dsg, gh, gvt, args):
        tau, soft, v_th, v_reset, token, alpha, detach = args
        g_r, g_v, g_tau = bwd(_row(gs), gv_next, _row(r), r.new_empty(0), v, tau, _row(dsg),
                              _row(gh), _row(gvt), _LIF, soft, v_th, v_reset, token, alpha,
                              detach, gtau is not None)
        gr.copy_(g_r.view(-1))
        gv.copy_(g_v)
        if gtau is not None:  # (the op gives the sum: put it in the first neuron's term)
            gtau.zero_()[0] = g_tau

    return forward_step, backward_step


def _steps(device_type: str):
    entry = STEP_KERNELS.get(device_type)
    if entry is not None and entry[0]():
        return entry[1], entry[2]
    return _op_steps(device_type)


def rlif_fusable(x: torch.Tensor, backend_name: str) -> bool:
    """Whether :func:`rlif_fused` serves ``x`` on the selected backend."""
    return (backend_name in ("cpu", "triton") and x.dtype in _DTYPES and x.dim() >= 2
            and x.shape[0] > 0 and x[0].numel() > 0 and direct.unobserved(x)
            and direct.kernel(neuron_fwd, x) is not None
            and direct.kernel(neuron_bwd, x) is not None)


class _RLIFSequence(torch.autograd.Function):
    """``(spikes, v_T, h, v)`` of RLIF over ``x [T, B, N]`` from ``v0, s0 [B, N]``; ``h`` and
    ``v`` (every step) are written with ``trace``, else they are empty."""

    @staticmethod
    def forward(ctx, x, v0, s0, weight, tau, cfg):
        soft, v_th, v_reset, surrogate, detach, trace = cfg
        T, B, n = x.shape
        forward_step, _ = _steps(x.device.type)
        # h is read by the Triton backward and by a derivative evaluated over all steps
        save_h = trace or x.device.type != "cpu" or not surrogate.builtin
        args = (tau, soft, v_th, v_reset, surrogate_token(surrogate),
                float(surrogate.alpha or 0.0), detach)
        r, spikes, v_prev = (new_output(x.shape, x.dtype, x.device) for _ in range(3))
        h = new_output(x.shape, x.dtype, x.device) if save_h else x.new_empty(0)
        v_final = torch.empty_like(v0)
        v_prev[0].copy_(v0)
        wt, s = weight.t(), s0
        for t in range(T):
            torch.addmm(x[t], s, wt, out=r[t])
            forward_step(r[t].view(-1), v_prev[t].view(-1), spikes[t].view(-1),
                         (v_prev[t + 1] if t + 1 < T else v_final).view(-1),
                         h[t].view(-1) if save_h else None, args)
            s = spikes[t]
        # the potential after each step's reset is the next step's starting potential
        vs = new_output(x.shape, x.dtype, x.device) if trace else x.new_empty(0)
        if trace:
            vs[:-1].copy_(v_prev[1:])
            vs[-1].copy_(v_final)
        if not trace:
            ctx.mark_non_differentiable(h, vs)
        ctx.set_materialize_grads(False)
        ctx.save_for_backward(weight, r, v_prev, spikes, s0, h if save_h else None)
        ctx.cfg, ctx.args = cfg, args
        return spikes, v_final, h, vs

    @staticmethod
    @once_differentiable
    def backward(ctx, g_spikes, g_v_final, g_h, g_v):
        weight, r, v_prev, spikes, s0, h = ctx.saved_tensors
        soft, v_th, v_reset, surrogate, detach, trace = ctx.cfg
        T, B, n = r.shape
        _, backward_step = _steps(r.device.type)
        traced = trace and (g_h is not None or g_v is not None)
        dsg = derivative_at(surrogate, h, v_th) if traced or not surrogate.builtin else None
        if traced:
            g_h, g_v = (torch.zeros_like(r) if g is None else g.to(r.dtype).contiguous()
                        for g in (g_h, g_v))
        need_tau = ctx.needs_input_grad[4]
        g_r = new_output(r.shape, r.dtype, r.device)
        gs = torch.empty_like(r[0])
        gv = [None if g_v_final is None else g_v_final.to(r.dtype).contiguous().view(-1),
              torch.empty_like(r[0]).view(-1), torch.empty_like(r[0]).view(-1)]
        gtau = torch.empty_like(r[0]).view(-1) if need_tau else None
        gtau_sum = torch.zeros_like(r[0]).view(-1) if need_tau else None
        g_rec = None
        for t in range(T - 1, -1, -1):
            if g_spikes is None:
                gs.copy_(g_rec) if g_rec is not None else gs.zero_()
            elif g_rec is None:
                gs.copy_(g_spikes[t])
            else:
                torch.add(g_spikes[t], g_rec, out=gs)
            gv_in, gv_out = gv[0], gv[1 + (t % 2)]
            backward_step(gs.view(-1), gv_in, r[t].view(-1), v_prev[t].view(-1),
                          g_r[t].view(-1), gv_out, gtau, _flat(dsg, t), _flat(g_h, t),
                          _flat(g_v, t), ctx.args)
            gv[0] = gv_out
            if need_tau:
                gtau_sum.add_(gtau)
            if t > 0 or ctx.needs_input_grad[2]:
                g_rec = g_r[t].mm(weight)  # d(s W^T)/ds: the gradient into s_{t-1}
        g_w = None
        if ctx.needs_input_grad[3]:
            g_w = g_r[0].t().mm(s0)
            if T > 1:
                g_w.addmm_(g_r[1:].reshape(-1, n).t(), spikes[:-1].reshape(-1, n))
        g_tau = gtau_sum.sum(dtype=torch.float64).to(r.dtype) if need_tau else None
        return (g_r, gv[0].view(B, n), g_rec if ctx.needs_input_grad[2] else None,
                g_w, g_tau, None)


def rlif_fused(x, weight, v0, s0, *, tau, v_th, v_reset, reset, surrogate: Surrogate,
               detach_reset, trace=False):
    """RLIF over ``x [T, B, *S]`` (``N = prod(S)``, ``weight [N, N]``) from ``v0, s0``
    (broadcastable to ``x[0]``): ``(spikes, v_T, s_T)``, with ``trace``
    ``(spikes, v_T, s_T, h, v)``, each in ``x``'s shapes (see the module doc)."""
    T, B = x.shape[:2]
    n = weight.shape[0]
    x3 = x.reshape(T, B, n).contiguous()
    v = v0.to(x.dtype).expand(x[0].shape).reshape(B, n).contiguous()
    s = s0.to(x.dtype).expand(x[0].shape).reshape(B, n).contiguous()
    dtype, device = x.dtype, x.device
    tau_t = (tau.to(device=device, dtype=dtype).reshape(()) if isinstance(tau, torch.Tensor)
             else torch.full((), float(tau), dtype=dtype, device=device))
    cfg = (reset == "soft", float(v_th), float(v_reset), surrogate, bool(detach_reset),
           bool(trace))
    spikes, v_final, h, vs = _RLIFSequence.apply(x3, v, s, weight, tau_t, cfg)
    spikes = spikes.view(x.shape)
    out = (spikes, v_final.view(x.shape[1:]), spikes[-1])
    if trace:
        out += (h.view(x.shape), vs.view(x.shape))
    return out
