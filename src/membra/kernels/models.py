r"""Sequence kernels of the further neuron models: CubaLIF, ALIF, RLIF (equations in
:mod:`membra.functional.models`).

- :func:`cuba_lif_sequence` / :func:`alif_sequence`: a ``reference`` loop over the functional
  step (the oracle) and a fused ``cpu`` kernel (``csrc/models_cpu.cpp``: one forward and one
  BPTT backward, the custom ops ``membra::model_cpu_fwd`` / ``membra::model_cpu_bwd`` with a
  registered autograd formula, the model given by its :attr:`membra.functional.NeuronKind.code`
  and the surrogate by :func:`membra.kernels.fused.surrogate_token`). Differentiable in ``x``
  and both initial states. Any surrogate and ``trace=True`` run fused, as for LIF: with a
  custom surrogate or a trace the forward also writes ``h_t`` (and ALIF's threshold
  ``theta_t``; with a trace ``v_t``) ``[T, M]``, and the backward evaluates
  ``surrogate.derivative(h - theta)`` over all steps in one torch call and hands it to the
  kernel (the ``PRECOMPUTED`` codes of ``csrc/neuron_cpu.cpp``; with a trace, the trace's
  own gradients join the recurrence). A built-in surrogate without a trace saves only ``x``.
- :func:`rlif_sequence`: the recurrence ``W s_{t-1}`` needs the previous step's spikes of
  *all* neurons of a sample, so it cannot run inside a per-neuron time loop; each step is one
  ``addmm`` (the GEMM and the input add in one call) plus one fused LIF step
  (``membra.kernels.neuron_sequence`` with ``T = 1``; any surrogate and traces included), and
  autograd chains the steps; the weight's gradient is one GEMM over all steps
  (:class:`_RecurrentWeightGrad`).
- :func:`delay_sequence_fused`: :class:`membra.nn.Delay`'s per-neuron shift as an exact copy
  kernel (``membra_delay_shift``), forward and backward.

On CUDA, CubaLIF and ALIF run Triton kernels (:mod:`membra.kernels.triton_models`: any
surrogate and traces fused) when the ``triton`` backend is selected (the default there).

Non-finite values follow LIF (``docs/kernels.md``): a NaN/inf potential spikes NaN, and the
neuron's later spikes and final state are NaN.

Length (about 460 lines): the ctypes binding of ``csrc/models_cpu.cpp``, its two custom ops
with their autograd formula and the CubaLIF, ALIF, RLIF and Delay entry points share the loaded
library and one argument check (``_prepare``); the Triton side is
:mod:`membra.kernels.triton_models`.
"""

from __future__ import annotations

import ctypes
import math
import warnings
from pathlib import Path

import torch

from ..functional.kinds import NeuronKind
from ..functional.models import (
    alif_step,
    cuba_lif_step,
    delay_sequence,
    keep_fraction,
    rlif_step,
)
from ..functional.neuron import as_scalar, exported_scalar
from ..functional.surrogate import as_surrogate
from . import NeuronTrace, _validate, direct, neuron_sequence, neuron_trace
from ._prep import flatten_inputs
from .dispatch import select_backend
from .fused import _surrogate_of as surrogate_of
from .fused import kernel_surrogate_code, new_output, surrogate_token, trace_buffer
from .recurrent import rlif_fusable, rlif_fused
from .triton_models import triton_model_sequence, use_triton

__all__ = ["cuba_lif_sequence", "alif_sequence", "rlif_sequence", "delay_sequence_fused",
           "models_cpu_available"]

_SOURCE = Path(__file__).with_name("csrc") / "models_cpu.cpp"
_DTYPE_CODES = {torch.float32: 0, torch.float64: 1, torch.bfloat16: 2}
_LIB: dict[str, object] = {}


def _load():
    """The compiled ``models_cpu`` library (built at first use), or ``None`` with one warning
    when it cannot be built."""
    if "ok" not in _LIB:
        try:
            from .build import build_extension

            lib = build_extension("membra_models_cpu", _SOURCE)
            p, i64, i32, f64 = ctypes.c_void_p, ctypes.c_int64, ctypes.c_int, ctypes.c_double
            lib.membra_model_forward.argtypes = [i32, p, p, p, p, p, p, p, p, p, i64, i64, i32,
                                                 i32, f64, f64, f64, f64, f64]
            lib.membra_model_backward.argtypes = [i32, p, p, p, p, p, p, p, p, p, p, p, p, i64,
                                                  i64, i32, i32, i32, f64, i32, f64, f64, f64,
                                                  f64, f64]
            lib.membra_delay_shift.argtypes = [p, i64, p, i64, p, p, i64, i64, i64, i32]
            lib.membra_model_forward.restype = lib.membra_model_backward.restype = i32
            lib.membra_delay_shift.restype = i32
            _LIB.update(lib=lib, ok=True)
        except Exception as e:  # no compiler, a failed build: fall back to the reference
            _LIB["ok"] = False
            warnings.warn(f"membra: the fused 'cpu' kernels of CubaLIF/ALIF could not be built "
                          f"({type(e).__name__}: {e}); using the 'reference' loop",
                          RuntimeWarning, stacklevel=3)
    return _LIB.get("lib")


def models_cpu_available() -> bool:
    """Whether the fused CubaLIF/ALIF CPU kernels are built (builds them on first call)."""
    return _load() is not None


def _check_rc(rc: int, what: str) -> None:
    if rc != 0:
        raise RuntimeError(f"membra models cpu kernel {what} failed with code {rc}")


def _ptr(t: torch.Tensor | None):
    """A tensor's data pointer for the C entries (``None``: absent or empty)."""
    return t.data_ptr() if t is not None and t.numel() else None


@torch.library.custom_op("membra::model_cpu_fwd", mutates_args=(), device_types="cpu")
def model_cpu_fwd(x: torch.Tensor, v0: torch.Tensor, c0: torch.Tensor, kind: int, soft: bool,
                  tau: float, rho: float, beta: float, v_th: float, v_reset: float,
                  surrogate: int, alpha: float, detach_reset: bool, save_h: bool, trace_v: bool
                  ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor,
                             torch.Tensor, torch.Tensor]:
    """Fused forward on ``x [T, M]`` from ``v0, c0 [M]`` (state dtype):
    ``(s, v_T, c_T, h, theta, v)``; ``kind`` a :attr:`NeuronKind.code` (CubaLIF, ALIF),
    ``surrogate`` a token of :func:`membra.kernels.fused.surrogate_token`. ``h`` and (ALIF)
    ``theta`` ``[T, M]`` are written when ``save_h or trace_v``, ``v`` when ``trace_v``; each
    is an empty ``[0]`` otherwise."""
    s, vT, cT = new_output(x.shape, x.dtype, x.device), torch.empty_like(v0), torch.empty_like(c0)
    h, theta, v = _trace_buffers(x, v0, kind, save_h, trace_v, pooled=True)
    T, M = x.shape
    if M:
        _check_rc(_load().membra_model_forward(
            kind, x.data_ptr(), v0.data_ptr(), c0.data_ptr(), s.data_ptr(), vT.data_ptr(),
            cT.data_ptr(), _ptr(h), _ptr(theta), _ptr(v), T, M, _DTYPE_CODES[x.dtype], soft,
            tau, rho, beta, v_th, v_reset), "forward")
    return s, vT, cT, h, theta, v


def _trace_buffers(x, v0, kind: int, save_h: bool, trace_v: bool, pooled: bool = False):
    """``(h, theta, v)``: ``[T, M]`` in the state dtype where written, else empty (theta is
    written for ALIF only: CubaLIF's threshold is ``v_th``); ``pooled``: from the cpu
    backend's pool (the kernel's real outputs; never for fake tensors)."""
    save = save_h or trace_v

    def buffer(wanted: bool) -> torch.Tensor:
        if pooled and wanted:
            return new_output(x.shape, v0.dtype, x.device)
        return trace_buffer(x, v0, wanted)

    return buffer(save), buffer(save and kind == NeuronKind.ALIF.code), buffer(trace_v)


@model_cpu_fwd.register_fake
def _(x, v0, c0, kind, soft, tau, rho, beta, v_th, v_reset, surrogate, alpha, detach_reset,
      save_h, trace_v):
    return (torch.empty_like(x), torch.empty_like(v0), torch.empty_like(c0),
            *_trace_buffers(x, v0, kind, save_h, trace_v))


@torch.library.custom_op("membra::model_cpu_bwd", mutates_args=(), device_types="cpu")
def model_cpu_bwd(gs: torch.Tensor, gvT: torch.Tensor, gcT: torch.Tensor, x: torch.Tensor,
                  v0: torch.Tensor, c0: torch.Tensor, dsg: torch.Tensor | None,
                  grad_h: torch.Tensor | None, grad_v: torch.Tensor | None, kind: int,
                  soft: bool, tau: float, rho: float, beta: float, v_th: float, v_reset: float,
                  surrogate: int, alpha: float, detach_reset: bool
                  ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Fused BPTT backward: ``(grad_x [T, M], grad_v0 [M], grad_c0 [M])``. ``dsg`` is the
    surrogate derivative at every step (``None``: the built-in ``surrogate`` inline);
    ``grad_h`` / ``grad_v`` the gradients of a trace (both or neither, with ``dsg``)."""
    gx = new_output(x.shape, x.dtype, x.device)
    gv0, gc0 = torch.empty_like(v0), torch.empty_like(c0)
    T, M = x.shape
    if M:
        _check_rc(_load().membra_model_backward(
            kind, x.data_ptr(), v0.data_ptr(), c0.data_ptr(), gs.data_ptr(), gvT.data_ptr(),
            gcT.data_ptr(), _ptr(dsg), _ptr(grad_h), _ptr(grad_v), gx.data_ptr(),
            gv0.data_ptr(), gc0.data_ptr(), T, M, _DTYPE_CODES[x.dtype], soft,
            kernel_surrogate_code(surrogate, dsg, grad_h), alpha, detach_reset, tau, rho, beta,
            v_th, v_reset), "backward")
    return gx, gv0, gc0


@model_cpu_bwd.register_fake
def _(gs, gvT, gcT, x, v0, c0, *args):
    return torch.empty_like(x), torch.empty_like(v0), torch.empty_like(c0)


def _setup_context(ctx, inputs, output):
    x, v0, c0, kind, soft, tau, rho, beta, v_th, v_reset, sg, alpha, detach, _, trace_v = inputs
    _, _, _, h, theta, _ = output
    ctx.mark_non_differentiable(*(output[3:] if not trace_v else (theta,)))
    ctx.set_materialize_grads(False)
    ctx.save_for_backward(x, v0, c0, h, theta)
    ctx.surrogate = surrogate_of(sg, alpha)  # holds a custom surrogate until backward
    ctx.args = (kind, soft, tau, rho, beta, v_th, v_reset, sg, alpha, detach)
    ctx.trace_v = trace_v


def _backward(ctx, gs, gvT, gcT, grad_h, _grad_theta, grad_v):
    """The fused backward; a custom surrogate's (or a trace's) derivative is evaluated at
    ``u_t = h_t - theta_t`` over all steps in one torch call (as LIF's: ``.fused``)."""
    x, v0, c0, h, theta = ctx.saved_tensors
    kind, v_th = ctx.args[0], ctx.args[5]
    gs = torch.zeros_like(x) if gs is None else gs.to(x.dtype).contiguous()
    gvT = torch.zeros_like(v0) if gvT is None else gvT.to(v0.dtype).contiguous()
    gcT = torch.zeros_like(c0) if gcT is None else gcT.to(c0.dtype).contiguous()
    traced = ctx.trace_v and (grad_h is not None or grad_v is not None)
    dsg = None
    if traced or not ctx.surrogate.builtin:
        u = h - (theta if kind == NeuronKind.ALIF.code else v_th)
        dsg = ctx.surrogate.derivative(u).to(h.dtype).contiguous()
    if traced:
        grad_h, grad_v = (torch.zeros_like(h) if g is None else g.to(h.dtype).contiguous()
                          for g in (grad_h, grad_v))
    else:
        grad_h = grad_v = None
    gx, gv0, gc0 = direct.call(model_cpu_bwd, gs, gvT, gcT, x, v0, c0, dsg, grad_h, grad_v,
                               *ctx.args)
    return (gx, gv0, gc0) + (None,) * 12


model_cpu_fwd.register_autograd(_backward, setup_context=_setup_context)
_FWD_DIRECT = direct.autograd_function(model_cpu_fwd, _setup_context, _backward)


def _fused(kind: NeuronKind, x, v0, c0, *, reset, tau, rho, beta, v_th, v_reset, surrogate,
           detach_reset, trace=False):
    """The fused op on ``x`` flattened to ``[T, M]``; states back to ``x[0]``'s shape; with
    ``trace`` ``(NeuronTrace(spikes, v, h), state)`` as :func:`_loop`."""
    xk = x if x.dtype in _DTYPE_CODES else x.float()  # float16: computed in float32
    x2, v, _ = flatten_inputs(xk, v0, None)
    c = flatten_inputs(xk, c0, None)[1]
    s2, vT, cT, h, _, vs = direct.apply(
        model_cpu_fwd, _FWD_DIRECT, x2, v, c, kind.code, reset == "soft", tau, rho, beta, v_th,
        v_reset, surrogate_token(surrogate), float(surrogate.alpha or 0.0), detach_reset,
        not surrogate.builtin, trace)
    shape = x.shape[1:]
    spikes = s2.to(x.dtype).reshape(x.shape)
    state = (vT.reshape(shape).to(x.dtype), cT.reshape(shape).to(x.dtype))
    if trace:
        return NeuronTrace(spikes, vs.to(x.dtype).reshape(x.shape),
                           h.to(x.dtype).reshape(x.shape)), state
    return spikes, state


def _loop(step, x, state, trace: bool, **kw):
    """Loop ``step`` over time from ``state``; autograd builds the backward pass. Returns
    ``(spikes, state_T)``, or ``(NeuronTrace(spikes, v, h), state_T)`` with ``trace``.
    ``x`` is split with ``unbind`` (its backward stacks the step gradients once; indexing
    ``x[t]`` would zero-fill and add a full ``[T, ...]`` gradient per step)."""
    spikes, vs, hs = [], [], []
    for x_t in x.unbind(0):
        out = step(x_t, state, trace=trace, **kw)
        s, state = out[0], out[1]
        spikes.append(s)
        if trace:
            vs.append(state[0])
            hs.append(out[2])
    if trace:
        return NeuronTrace(torch.stack(spikes), torch.stack(vs), torch.stack(hs)), state
    return torch.stack(spikes), state


def _reference(step, x, v0, c0, trace=False, **kw):
    """:func:`_loop` from ``(v0, c0)`` broadcast to one step of ``x``."""
    state = (v0.to(x.dtype).expand_as(x[0]), c0.to(x.dtype).expand_as(x[0]))
    return _loop(step, x, state, trace, **kw)


def _prepare(op, x, state, *, tau, v_th, v_reset, reset, surrogate, alpha, detach_reset,
             check_finite, second="second state"):
    """Validate the arguments every model shares; returns ``(v0, c0, kw)``: the initial states
    as tensors and the keyword arguments of the kernels (``tau`` as validated, the surrogate a
    :class:`membra.functional.Surrogate` with its alpha bound)."""
    v0, c0 = (None, None) if state is None else _pair(op, state)
    v0, tau = _validate(x, v0, tau, v_th=v_th, v_reset=v_reset, reset=reset,
                        check_finite=check_finite, op=op)
    c0, _ = _validate(x, c0, None, v_th=v_th, v_reset=v_reset, reset=reset,
                      check_finite=False, op=f"{op} ({second})")
    kw = dict(tau=tau, v_th=as_scalar(v_th), v_reset=as_scalar(v_reset), reset=reset,
              surrogate=as_surrogate(surrogate, alpha), detach_reset=bool(detach_reset))
    return v0, c0, kw


def _two_state(kind: NeuronKind, step, x, state, *, rho, backend, trace, common, **loop_kw):
    """CubaLIF / ALIF from the ``common`` arguments (validated here): the Triton kernels for
    the ``triton`` backend, the fused kernel for the ``cpu`` backend on CPU tensors (any
    surrogate, traces included), else the reference
    loop over ``step``; ``loop_kw`` are the model's own (its second time constant, ALIF's
    ``beta``), ``rho`` the fraction of the second state kept per step."""
    op = f"{kind.value}_sequence"
    v0, c0, kw = _prepare(op, x, state, **common)
    kw["tau"] = as_scalar(kw["tau"])
    beta = loop_kw.get("beta", 0.0)
    if any(exported_scalar(v) for v in (*kw.values(), *loop_kw.values())):
        return _reference(step, x, v0, c0, trace, **loop_kw, **kw)
    if use_triton(backend, x.device):
        return triton_model_sequence(kind, x, v0, c0, rho=rho, beta=beta, trace=trace, **kw)
    if (select_backend(backend, x.device).name == "cpu" and x.device.type == "cpu"
            and models_cpu_available()):
        return _fused(kind, x, v0, c0, rho=rho, beta=beta, trace=trace, **kw)
    return _reference(step, x, v0, c0, trace, **loop_kw, **kw)


def _pair(op, state):
    if not isinstance(state, (tuple, list)) or len(state) != 2:
        raise ValueError(f"{op}: state must be a pair (v, second state) or None, got "
                         f"{type(state).__name__}")
    return state


def cuba_lif_sequence(x, state=None, *, tau=2.0, tau_syn=2.0, v_th=1.0, v_reset=0.0,
                      reset="soft", surrogate="sigmoid", alpha=None, detach_reset=True,
                      backend=None, check_finite=False, trace=False):
    r"""Run CubaLIF neurons over ``x [T, B, ...]`` from ``state = (v0, i0)`` (``None``:
    zeros; each a number or a tensor broadcastable to ``x[0]``); returns
    ``(spikes, (v_T, i_T))``, with ``trace=True`` ``(NeuronTrace(spikes, v, h), (v_T, i_T))``.
    :math:`i_t = (1 - 1/\tau_{syn}) i_{t-1} + x_t`, then LIF on :math:`i_t` (arguments as
    :func:`membra.kernels.lif_sequence`, any surrogate; ``tau_syn`` finite, ``>= 1``)."""
    rho = keep_fraction(tau_syn, "tau_syn")
    return _two_state(NeuronKind.CUBA_LIF, cuba_lif_step, x, state, rho=rho,
                      backend=backend, trace=trace, tau_syn=as_scalar(tau_syn), common=dict(
                          tau=tau, v_th=v_th, v_reset=v_reset, reset=reset,
                          surrogate=surrogate, alpha=alpha, detach_reset=detach_reset,
                          check_finite=check_finite))


def alif_sequence(x, state=None, *, tau=2.0, tau_adapt=20.0, beta=0.2, v_th=1.0, v_reset=0.0,
                  reset="soft", surrogate="sigmoid", alpha=None, detach_reset=True,
                  backend=None, check_finite=False, trace=False):
    r"""Run ALIF neurons over ``x [T, B, ...]`` from ``state = (v0, a0)`` (``None``: zeros;
    ``a0`` the adaptation the first step uses); returns ``(spikes, (v_T, a_{T+1}))``, with
    ``trace=True`` ``(NeuronTrace(spikes, v, h), (v_T, a_{T+1}))``.
    Threshold :math:`v_{th} + \beta a_t`, :math:`a_{t+1} = (1 - 1/\tau_a) a_t + s_t`
    (``tau_adapt`` finite, ``>= 1``; ``beta`` a finite number)."""
    rho = keep_fraction(tau_adapt, "tau_adapt")
    beta = check_beta(beta)
    return _two_state(NeuronKind.ALIF, alif_step, x, state, rho=rho, backend=backend,
                      trace=trace, tau_adapt=as_scalar(tau_adapt), beta=beta, common=dict(
                          tau=tau, v_th=v_th, v_reset=v_reset, reset=reset,
                          surrogate=surrogate, alpha=alpha, detach_reset=detach_reset,
                          check_finite=check_finite))


def check_beta(beta) -> float:
    """ALIF's threshold gain: a finite number (``ValueError`` naming ``beta`` otherwise)."""
    if exported_scalar(beta):
        return beta
    if not isinstance(beta, (int, float)) or isinstance(beta, bool) or \
            not torch.isfinite(torch.tensor(float(beta))):
        raise ValueError(f"beta must be a finite number, got {beta!r}")
    return float(beta)


class _RecurrentWeightGrad(torch.autograd.Function):
    r"""Identity on ``x [T, B, *S]`` whose backward also gives the recurrent weight its whole
    gradient in one GEMM: :math:`\partial L/\partial W = \sum_t g_t^\top s_{t-1}`, ``g_t``
    the gradient of the step's input :math:`x_t + W s_{t-1}` (what reaches ``x_t``) and
    ``s_{t-1}`` the previous spikes, which the loop stores in ``spikes_prev[0]`` once it has
    run. The steps themselves use ``W`` detached, so autograd does not add ``T`` small GEMMs."""

    @staticmethod
    def forward(ctx, x, weight, spikes_prev: list):
        ctx.spikes_prev = spikes_prev
        ctx.w_meta = (weight.shape[0], weight.dtype)
        return x.view_as(x)

    @staticmethod
    def backward(ctx, gx):
        (prev,) = ctx.spikes_prev
        n, w_dtype = ctx.w_meta
        gw = gx.reshape(-1, n).t().mm(prev.reshape(-1, n).to(gx.dtype))
        return gx, gw.to(w_dtype), None


def _fused_rlif(x, weight, state, trace, backend, **kw):
    """RLIF on a fused LIF backend through the ops (what ``torch.compile``, ``torch.export``
    and dispatch modes see; eager calls run :func:`.recurrent.rlif_fused`): per step one GEMM
    fused with the input add (``addmm``) and one LIF step of the kernel (``T = 1``); ``W``'s
    gradient is one GEMM over all steps (:class:`_RecurrentWeightGrad`)."""
    spikes_prev: list = []
    w = weight
    if weight.requires_grad and torch.is_grad_enabled():
        x = _RecurrentWeightGrad.apply(x, weight, spikes_prev)
        w = weight.detach()
    wt, n = w.t(), w.shape[0]
    run = neuron_trace if trace else neuron_sequence
    prev = [state[1]]

    def step(x_t, st, *, trace=False, **kw):
        v, s = st
        r = torch.addmm(x_t.reshape(x_t.shape[0], n), s.reshape(s.shape[0], n), wt)
        out = run(r.view_as(x_t).unsqueeze(0), v, neuron=NeuronKind.LIF, backend=backend, **kw)
        s_t = out.spikes[0] if trace else out[0][0]
        prev.append(s_t)
        if trace:
            return s_t, (out.v[0], s_t), out.h[0]
        return s_t, (out[1], s_t)

    result = _loop(step, x, state, trace, **kw)
    spikes_prev.append(torch.stack(prev[:-1]).detach())
    return result


def rlif_sequence(x, weight, state=None, *, tau=2.0, v_th=1.0, v_reset=0.0, reset="soft",
                  surrogate="sigmoid", alpha=None, detach_reset=True, backend=None,
                  check_finite=False, trace=False):
    r"""Run recurrent LIF neurons over ``x [T, B, *S]`` with ``weight [N, N]``
    (``N = prod(S)``) from ``state = (v0, s0)`` (``None``: zeros); returns
    ``(spikes, (v_T, s_T))``, with ``trace=True`` ``(NeuronTrace(spikes, v, h), (v_T, s_T))``.
    :math:`h_t` charges with :math:`x_t + W s_{t-1}`. Each step is a GEMM plus one LIF step
    of the selected backend (the ``reference`` backend loops over
    :func:`membra.functional.models.rlif_step`)."""
    op = "rlif_sequence"
    v0, s0, kw = _prepare(op, x, state, tau=tau, v_th=v_th, v_reset=v_reset, reset=reset,
                          surrogate=surrogate, alpha=alpha, detach_reset=detach_reset,
                          check_finite=check_finite, second="s0")
    n = math.prod(x.shape[2:])
    if not isinstance(weight, torch.Tensor) or tuple(weight.shape) != (n, n):
        got = tuple(weight.shape) if isinstance(weight, torch.Tensor) else type(weight).__name__
        raise ValueError(f"{op}: weight must be [N, N] = [{n}, {n}] for per-sample shape "
                         f"{tuple(x.shape[2:])}, got {got}")
    w = weight.to(x.dtype)
    name = select_backend(backend, x.device).name
    exported = any(exported_scalar(v) for v in kw.values())
    if not exported and rlif_fusable(x, name):
        spikes, v_final, s_final, *traced = rlif_fused(x, w, v0, s0, trace=trace, **kw)
        out = NeuronTrace(spikes, traced[1], traced[0]) if trace else spikes
        return out, (v_final, s_final)
    state = (v0.to(x.dtype).expand_as(x[0]), s0.to(x.dtype).expand_as(x[0]))
    if name == "reference" or exported:
        return _loop(lambda x_t, st, **k: rlif_step(x_t, st, w, **k), x, state, trace, **kw)
    return _fused_rlif(x, w, state, trace, backend, **kw)


def _shift(a, b, off, steps: int):
    """``dst[t, r, n] = seq[t + off[n], r, n]`` for ``t < steps`` over the sequence
    ``seq = a`` then ``b`` (each ``[L, R, *S]`` contiguous, one dtype; ``b`` may be ``None``),
    0 outside it: an exact copy (``membra_delay_shift`` in ``csrc/models_cpu.cpp``)."""
    dst = new_output((steps, *a.shape[1:]), a.dtype, a.device)
    R, N = a.shape[1], math.prod(a.shape[2:])
    if dst.numel():
        lb = 0 if b is None else b.shape[0]
        _check_rc(_load().membra_delay_shift(
            _ptr(a), a.shape[0], _ptr(b), lb, off.data_ptr(), dst.data_ptr(), steps, R, N,
            a.element_size()), "delay")
    return dst


class _DelayShift(torch.autograd.Function):
    """:func:`membra.functional.models.delay_sequence` as two exact copies: ``y_t = x_{t-d}``
    and the new history (the last ``D`` steps of history then ``x``); the backward copies the
    output gradient back by ``d`` (into ``x``) and ``d - D`` (into the history)."""

    @staticmethod
    def forward(ctx, x, history, delays):
        T, D = x.shape[0], history.shape[0]
        d = delays.reshape(-1).to(torch.int64)
        ctx.save_for_backward(d)
        ctx.set_materialize_grads(False)
        ctx.meta = (T, D, x.shape, x.dtype, history.dtype)
        x, history = x.contiguous(), history.to(x.dtype).contiguous()
        y = _shift(history, x, (D - d).contiguous(), T)
        new_hist = _shift(history, x, torch.full_like(d, T), D)
        return y, new_hist

    @staticmethod
    def backward(ctx, gy, g_hist):
        (d,) = ctx.saved_tensors
        T, D, shape, dtype, hist_dtype = ctx.meta
        gy = gy.to(dtype).contiguous() if gy is not None else torch.zeros(shape, dtype=dtype)
        gx = _shift(gy, None, d.contiguous(), T)
        gh = _shift(gy, None, (d - D).contiguous(), D)
        if g_hist is not None:  # the new history is history then x, from step T on
            joined = torch.cat([gh, gx])
            joined[T:] += g_hist
            gh, gx = joined[:D], joined[D:]
        return gx, gh.to(hist_dtype), None


def delay_sequence_fused(x, history, delays):
    """:func:`membra.functional.models.delay_sequence` (same arguments and results) as the
    fused copy kernel on CPU tensors when the models kernels are built (bit for bit the
    same values and gradients), else that function itself."""
    if (x.device.type == "cpu" and history.device.type == "cpu" and models_cpu_available()
            and not torch.compiler.is_compiling()):  # (compile and export trace the gather)
        return _DelayShift.apply(x, history, delays)
    return delay_sequence(x, history, delays)
