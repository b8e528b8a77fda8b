r"""The ``triton`` backend: fused forward and BPTT backward for LIF and IF neurons on CUDA.

The same op as the ``cpu`` backend (equations in :mod:`membra.kernels.cpu` and
``specs/kernels.md``), written in Triton: one program per block of ``BLOCK`` neurons, the
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
    """Define the Triton kernels (imports triton; cached)."""
    if _KERNELS:
        return _KERNELS["fwd"], _KERNELS["bwd"]
    import triton
    import triton.language as tl

    @triton.jit
    def _charge(v, x, tau, v_reset, LIF: tl.constexpr):
        if LIF:
            # IEEE division, as the reference's `/ tau`, so that spikes match bit for bit
            return v + tl.math.div_rn(x - (v - v_reset), tau)
        else:
            return v + x

    @triton.jit
    def _reset(h, fired, v_th, v_reset, SOFT: tl.constexpr):
        if SOFT:
            return h - tl.where(fired, v_th, 0.0)
        else:
            return tl.where(fired, v_reset, h)

    @triton.jit
    def _surrogate(u, a, SG: tl.constexpr):
        if SG == 0:  # sigmoid
            sig = tl.sigmoid(a * u)
            return a * sig * (1.0 - sig)
        elif SG == 1:  # atan
            w = 1.5707963267948966 * a * u
            return (a / 2.0) / (1.0 + w * w)
        elif SG == 2:  # rectangular
            return tl.where(tl.abs(u) < 1.0 / (2.0 * a), a, 0.0)
        else:  # triangle
            return tl.maximum(a - a * a * tl.abs(u), 0.0)

    @triton.jit
    def fwd_kernel(x_ptr, v0_ptr, tau_ptr, s_ptr, h_ptr, vT_ptr, T, M, v_th, v_reset,
                   LIF: tl.constexpr, SOFT: tl.constexpr, BLOCK: tl.constexpr):
        pid = tl.program_id(0)
        offs = pid.to(tl.int64) * BLOCK + tl.arange(0, BLOCK)
        mask = offs < M
        acc = v0_ptr.dtype.element_ty
        v = tl.load(v0_ptr + offs, mask=mask, other=0.0)
        tau = tl.load(tau_ptr).to(acc)
        v_th = v_th.to(acc)
        v_reset = v_reset.to(acc)
        xp = x_ptr + offs
        sp = s_ptr + offs
        hp = h_ptr + offs
        for _ in range(T):
            x = tl.load(xp, mask=mask, other=0.0).to(acc)
            h = _charge(v, x, tau, v_reset, LIF)
            fired = h - v_th >= 0.0
            tl.store(sp, tl.where(fired, 1.0, 0.0).to(s_ptr.dtype.element_ty), mask=mask)
            tl.store(hp, h, mask=mask)
            v = _reset(h, fired, v_th, v_reset, SOFT)
            xp += M
            sp += M
            hp += M
        tl.store(vT_ptr + offs, v, mask=mask)

    @triton.jit
    def bwd_kernel(gs_ptr, gvT_ptr, h_ptr, x_ptr, v0_ptr, tau_ptr, gx_ptr, gv0_ptr, gtau_ptr,
                   T, M, v_th, v_reset, alpha, nd, LIF: tl.constexpr, SOFT: tl.constexpr,
                   SG: tl.constexpr, NEED_TAU: tl.constexpr, BLOCK: tl.constexpr):
        pid = tl.program_id(0)
        offs = pid.to(tl.int64) * BLOCK + tl.arange(0, BLOCK)
        mask = offs < M
        acc = v0_ptr.dtype.element_ty
        tau = tl.load(tau_ptr).to(acc)
        v_th = v_th.to(acc)
        v_reset = v_reset.to(acc)
        a = alpha.to(acc)
        nd = nd.to(acc)
        gv = tl.load(gvT_ptr + offs, mask=mask, other=0.0).to(acc)
        gt = tl.zeros([BLOCK], dtype=acc)
        last = (T - 1).to(tl.int64) * M
        hp = h_ptr + last + offs
        gsp = gs_ptr + last + offs
        gxp = gx_ptr + last + offs
        xp = x_ptr + last + offs
        for i in range(T):
            h = tl.load(hp, mask=mask, other=0.0)
            u = h - v_th
            fired = u >= 0.0
            sg = _surrogate(u, a, SG)
            if SOFT:
                dvdh = 1.0 + nd * (-v_th * sg)
            else:
                dvdh = tl.where(fired, 0.0, 1.0) + nd * ((v_reset - h) * sg)
            gs = tl.load(gsp, mask=mask, other=0.0).to(acc)
            gh = gs * sg + gv * dvdh
            if LIF:
                g = gh / tau
                tl.store(gxp, g.to(gx_ptr.dtype.element_ty), mask=mask)
                gv = gh - g
                if NEED_TAU:
                    # q_t = x_t - (v_{t-1} - v_reset), v_{t-1} from h_{t-1} (or v0 at t = 0)
                    not_first = i < T - 1
                    h_prev = tl.load(hp - M, mask=mask & not_first, other=0.0)
                    v_prev = _reset(h_prev, h_prev - v_th >= 0.0, v_th, v_reset, SOFT)
                    v_prev = tl.where(not_first, v_prev,
                                      tl.load(v0_ptr + offs, mask=mask, other=0.0))
                    x = tl.load(xp, mask=mask, other=0.0).to(acc)
                    gt += -gh * (x - (v_prev - v_reset)) / (tau * tau)
            else:
                tl.store(gxp, gh.to(gx_ptr.dtype.element_ty), mask=mask)
                gv = gh
            hp -= M
            gsp -= M
            gxp -= M
            xp -= M
        tl.store(gv0_ptr + offs, gv, mask=mask)
        if NEED_TAU:
            tl.store(gtau_ptr + pid, tl.sum(tl.where(mask, gt, 0.0), axis=0))

    _KERNELS["fwd"], _KERNELS["bwd"] = fwd_kernel, bwd_kernel
    return fwd_kernel, bwd_kernel


@torch.library.custom_op("membra::neuron_triton_fwd", mutates_args=(), device_types="cuda")
def neuron_triton_fwd(x: torch.Tensor, v0: torch.Tensor, tau: torch.Tensor, neuron: str,
                      reset: str, v_th: float, v_reset: float, surrogate: str, alpha: float,
                      detach_reset: bool) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Fused forward on ``x [T, M]`` from ``v0 [M]``: ``(spikes, v_T, h)``."""
    T, M = x.shape
    s = torch.empty_like(x)
    h = torch.empty((T, M), dtype=v0.dtype, device=x.device)
    v_final = torch.empty_like(v0)
    if M:
        fwd, _ = _kernels()
        fwd[(math.ceil(M / BLOCK),)](x, v0, tau, s, h, v_final, T, M, v_th, v_reset,
                                     LIF=neuron == "lif", SOFT=reset == "soft", BLOCK=BLOCK)
    return s, v_final, h


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
    T, M = h.shape
    gx = torch.empty_like(grad_spikes)
    gv0 = torch.empty_like(v0)
    need_tau = need_tau and neuron == "lif"
    grid = math.ceil(M / BLOCK)
    partial = torch.zeros(max(grid, 1), dtype=v0.dtype, device=x.device)
    if M:
        _, bwd = _kernels()
        bwd[(grid,)](grad_spikes, grad_v_final, h, x, v0, tau, gx, gv0, partial, T, M, v_th,
                     v_reset, alpha, 0.0 if detach_reset else 1.0, LIF=neuron == "lif",
                     SOFT=reset == "soft", SG=SURROGATE_CODES[surrogate], NEED_TAU=need_tau,
                     BLOCK=BLOCK)
    return gx, gv0, partial.sum().to(tau.dtype).reshape(())


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
