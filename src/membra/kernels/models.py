r"""Sequence kernels of the further neuron models: CubaLIF, ALIF, RLIF (equations in
:mod:`membra.functional.models`).

- :func:`cuba_lif_sequence` / :func:`alif_sequence`: a ``reference`` loop over the functional
  step (the oracle) and a fused ``cpu`` kernel (``csrc/models_cpu.cpp``: one forward and one
  BPTT backward, the custom ops ``membra::model_cpu_fwd`` / ``membra::model_cpu_bwd`` with a
  registered autograd formula, the model given by its :attr:`membra.functional.NeuronKind.code`
  and the surrogate by its built-in ``code``). Differentiable in ``x`` and both initial states.
  A custom surrogate (a callable or ``Surrogate.custom``) and ``trace=True`` run the
  ``reference`` loop instead: their backward needs the surrogate derivative at every step,
  i.e. ``h_t`` and the threshold saved by the forward, which this kernel does not write yet
  (LIF's kernel does: ``membra.kernels.fused``). The gradients are the same either way
  (``tests/kernels/test_models_kernels.py``); only the speed differs.
- :func:`rlif_sequence`: the recurrence ``W s_{t-1}`` needs the previous step's spikes of
  *all* neurons of a sample, so it cannot run inside a per-neuron time loop; each step is one
  ATen GEMM plus one fused LIF step (``membra.kernels.neuron_sequence`` with ``T = 1``; any
  surrogate and traces included), and autograd chains the steps. Planned: one op that keeps
  the [B, N] state in cache across steps and runs the GEMM and the LIF update per step in C++.

On CUDA, CubaLIF and ALIF run Triton kernels (:mod:`membra.kernels.triton_models`: any
surrogate and traces fused) when the ``triton`` backend is selected (the default there).

Non-finite values follow LIF (``docs/kernels.md``): a NaN/inf potential spikes NaN, and the
neuron's later spikes and final state are NaN.
"""

from __future__ import annotations

import ctypes
import math
import warnings
from pathlib import Path

import torch

from ..functional.kinds import NeuronKind
from ..functional.models import alif_step, cuba_lif_step, keep_fraction, rlif_step
from ..functional.surrogate import as_surrogate
from . import NeuronTrace, _validate, neuron_sequence, neuron_trace
from ._prep import flatten_inputs
from .dispatch import select_backend
from .triton_models import triton_model_sequence, use_triton

__all__ = ["cuba_lif_sequence", "alif_sequence", "rlif_sequence", "models_cpu_available"]

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
            lib.membra_model_forward.argtypes = [i32, p, p, p, p, p, p, i64, i64, i32, i32,
                                                 f64, f64, f64, f64, f64]
            lib.membra_model_backward.argtypes = [i32, p, p, p, p, p, p, p, p, p, i64, i64, i32,
                                                  i32, i32, f64, i32, f64, f64, f64, f64, f64]
            lib.membra_model_forward.restype = lib.membra_model_backward.restype = i32
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


@torch.library.custom_op("membra::model_cpu_fwd", mutates_args=(), device_types="cpu")
def model_cpu_fwd(x: torch.Tensor, v0: torch.Tensor, c0: torch.Tensor, kind: int, soft: bool,
                  tau: float, rho: float, beta: float, v_th: float, v_reset: float,
                  surrogate: int, alpha: float, detach_reset: bool
                  ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Fused forward on ``x [T, M]`` from ``v0, c0 [M]`` (state dtype): ``(s, v_T, c_T)``;
    ``kind`` a :attr:`NeuronKind.code` (CubaLIF, ALIF), ``surrogate`` a built-in's code."""
    s, vT, cT = torch.empty_like(x), torch.empty_like(v0), torch.empty_like(c0)
    T, M = x.shape
    if M:
        _check_rc(_load().membra_model_forward(
            kind, x.data_ptr(), v0.data_ptr(), c0.data_ptr(), s.data_ptr(),
            vT.data_ptr(), cT.data_ptr(), T, M, _DTYPE_CODES[x.dtype], soft, tau,
            rho, beta, v_th, v_reset), "forward")
    return s, vT, cT


@model_cpu_fwd.register_fake
def _(x, v0, c0, *args):
    return torch.empty_like(x), torch.empty_like(v0), torch.empty_like(c0)


@torch.library.custom_op("membra::model_cpu_bwd", mutates_args=(), device_types="cpu")
def model_cpu_bwd(gs: torch.Tensor, gvT: torch.Tensor, gcT: torch.Tensor, x: torch.Tensor,
                  v0: torch.Tensor, c0: torch.Tensor, kind: int, soft: bool, tau: float,
                  rho: float, beta: float, v_th: float, v_reset: float, surrogate: int,
                  alpha: float, detach_reset: bool
                  ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Fused BPTT backward: ``(grad_x [T, M], grad_v0 [M], grad_c0 [M])``."""
    gx, gv0, gc0 = torch.empty_like(x), torch.empty_like(v0), torch.empty_like(c0)
    T, M = x.shape
    if M:
        _check_rc(_load().membra_model_backward(
            kind, x.data_ptr(), v0.data_ptr(), c0.data_ptr(), gs.data_ptr(),
            gvT.data_ptr(), gcT.data_ptr(), gx.data_ptr(), gv0.data_ptr(), gc0.data_ptr(), T, M,
            _DTYPE_CODES[x.dtype], soft, surrogate, alpha,
            detach_reset, tau, rho, beta, v_th, v_reset), "backward")
    return gx, gv0, gc0


@model_cpu_bwd.register_fake
def _(gs, gvT, gcT, x, v0, c0, *args):
    return torch.empty_like(x), torch.empty_like(v0), torch.empty_like(c0)


def _setup_context(ctx, inputs, output):
    x, v0, c0, *args = inputs
    ctx.save_for_backward(x, v0, c0)
    ctx.args = tuple(args)


def _backward(ctx, gs, gvT, gcT):
    x, v0, c0 = ctx.saved_tensors
    gs = torch.zeros_like(x) if gs is None else gs.to(x.dtype).contiguous()
    gvT = torch.zeros_like(v0) if gvT is None else gvT.to(v0.dtype).contiguous()
    gcT = torch.zeros_like(c0) if gcT is None else gcT.to(c0.dtype).contiguous()
    gx, gv0, gc0 = model_cpu_bwd(gs, gvT, gcT, x, v0, c0, *ctx.args)
    return (gx, gv0, gc0) + (None,) * len(ctx.args)


model_cpu_fwd.register_autograd(_backward, setup_context=_setup_context)


def _fused(kind: NeuronKind, x, v0, c0, *, reset, tau, rho, beta, v_th, v_reset, surrogate,
           detach_reset):
    """The fused op on ``x`` flattened to ``[T, M]``; states back to ``x[0]``'s shape."""
    xk = x if x.dtype in _DTYPE_CODES else x.float()  # float16: computed in float32
    x2, v, _ = flatten_inputs(xk, v0, None)
    c = flatten_inputs(xk, c0, None)[1]
    s2, vT, cT = model_cpu_fwd(x2, v, c, kind.code, reset == "soft", tau, rho, beta, v_th,
                               v_reset, surrogate.code, float(surrogate.alpha), detach_reset)
    shape = x.shape[1:]
    return s2.to(x.dtype).reshape(x.shape), (vT.reshape(shape).to(x.dtype),
                                             cT.reshape(shape).to(x.dtype))


def _loop(step, x, state, trace: bool, **kw):
    """Loop ``step`` over time from ``state``; autograd builds the backward pass. Returns
    ``(spikes, state_T)``, or ``(NeuronTrace(spikes, v, h), state_T)`` with ``trace``."""
    spikes, vs, hs = [], [], []
    for t in range(x.shape[0]):
        out = step(x[t], state, trace=trace, **kw)
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


def _prepare(op, x, state, *, tau, v_th, v_reset, reset, surrogate, alpha, check_finite):
    """Validate the shared arguments; returns ``(v0, c0, tau, surrogate)`` (states as
    tensors, the surrogate a :class:`membra.functional.Surrogate` with its alpha bound)."""
    v0, c0 = (None, None) if state is None else _pair(op, state)
    surrogate = as_surrogate(surrogate, alpha)
    v0, tau = _validate(x, v0, tau, v_th=v_th, v_reset=v_reset, reset=reset,
                        check_finite=check_finite, op=op)
    c0, _ = _validate(x, c0, None, v_th=v_th, v_reset=v_reset, reset=reset,
                      check_finite=False, op=f"{op} (second state)")
    return v0, c0, float(tau), surrogate


def _pair(op, state):
    if not isinstance(state, (tuple, list)) or len(state) != 2:
        raise ValueError(f"{op}: state must be a pair (v, second state) or None, got "
                         f"{type(state).__name__}")
    return state


def _use_fused(backend, x, surrogate, trace: bool) -> bool:
    """The fused CubaLIF/ALIF kernel runs for the ``cpu`` backend on CPU tensors with a
    built-in surrogate and no trace (module doc); everything else loops the reference."""
    name = select_backend(backend, x.device).name
    return (name == "cpu" and x.device.type == "cpu" and surrogate.builtin and not trace
            and models_cpu_available())


def cuba_lif_sequence(x, state=None, *, tau=2.0, tau_syn=2.0, v_th=1.0, v_reset=0.0,
                      reset="soft", surrogate="sigmoid", alpha=None, detach_reset=True,
                      backend=None, check_finite=False, trace=False):
    r"""Run CubaLIF neurons over ``x [T, B, ...]`` from ``state = (v0, i0)`` (``None``:
    zeros; each a number or a tensor broadcastable to ``x[0]``); returns
    ``(spikes, (v_T, i_T))``, with ``trace=True`` ``(NeuronTrace(spikes, v, h), (v_T, i_T))``.
    :math:`i_t = (1 - 1/\tau_{syn}) i_{t-1} + x_t`, then LIF on :math:`i_t` (arguments as
    :func:`membra.kernels.lif_sequence`, any surrogate; ``tau_syn`` finite, ``>= 1``)."""
    op = "cuba_lif_sequence"
    v0, c0, tau, surrogate = _prepare(op, x, state, tau=tau, v_th=v_th, v_reset=v_reset,
                                      reset=reset, surrogate=surrogate, alpha=alpha,
                                      check_finite=check_finite)
    rho = keep_fraction(tau_syn, "tau_syn")
    kw = dict(tau=tau, v_th=float(v_th), v_reset=float(v_reset), reset=reset,
              surrogate=surrogate, detach_reset=bool(detach_reset))
    if use_triton(backend, x.device):
        return triton_model_sequence(NeuronKind.CUBA_LIF, x, v0, c0, rho=rho, beta=0.0,
                                     trace=trace, **kw)
    if _use_fused(backend, x, surrogate, trace):
        return _fused(NeuronKind.CUBA_LIF, x, v0, c0, rho=rho, beta=0.0, **kw)
    return _reference(cuba_lif_step, x, v0, c0, trace, tau_syn=float(tau_syn), **kw)


def alif_sequence(x, state=None, *, tau=2.0, tau_adapt=20.0, beta=0.2, v_th=1.0, v_reset=0.0,
                  reset="soft", surrogate="sigmoid", alpha=None, detach_reset=True,
                  backend=None, check_finite=False, trace=False):
    r"""Run ALIF neurons over ``x [T, B, ...]`` from ``state = (v0, a0)`` (``None``: zeros;
    ``a0`` the adaptation the first step uses); returns ``(spikes, (v_T, a_{T+1}))``, with
    ``trace=True`` ``(NeuronTrace(spikes, v, h), (v_T, a_{T+1}))``.
    Threshold :math:`v_{th} + \beta a_t`, :math:`a_{t+1} = (1 - 1/\tau_a) a_t + s_t`
    (``tau_adapt`` finite, ``>= 1``; ``beta`` a finite number)."""
    op = "alif_sequence"
    v0, c0, tau, surrogate = _prepare(op, x, state, tau=tau, v_th=v_th, v_reset=v_reset,
                                      reset=reset, surrogate=surrogate, alpha=alpha,
                                      check_finite=check_finite)
    rho = keep_fraction(tau_adapt, "tau_adapt")
    beta = check_beta(beta)
    kw = dict(tau=tau, v_th=float(v_th), v_reset=float(v_reset), reset=reset,
              surrogate=surrogate, detach_reset=bool(detach_reset))
    if use_triton(backend, x.device):
        return triton_model_sequence(NeuronKind.ALIF, x, v0, c0, rho=rho, beta=beta,
                                     trace=trace, **kw)
    if _use_fused(backend, x, surrogate, trace):
        return _fused(NeuronKind.ALIF, x, v0, c0, rho=rho, beta=beta, **kw)
    return _reference(alif_step, x, v0, c0, trace, tau_adapt=float(tau_adapt), beta=beta, **kw)


def check_beta(beta) -> float:
    """ALIF's threshold gain: a finite number (``ValueError`` naming ``beta`` otherwise)."""
    if not isinstance(beta, (int, float)) or isinstance(beta, bool) or \
            not torch.isfinite(torch.tensor(float(beta))):
        raise ValueError(f"beta must be a finite number, got {beta!r}")
    return float(beta)


def _fused_rlif_step(weight, backend):
    """One RLIF step on the selected fused backend: a GEMM, then the LIF kernel with
    ``T = 1`` (:func:`membra.kernels.neuron_trace` when tracing)."""
    def step(x_t, state, *, trace=False, **kw):
        v, s = state
        rec = (s.flatten(1) @ weight.t()).view_as(x_t)
        run = neuron_trace if trace else neuron_sequence
        out = run((x_t + rec).unsqueeze(0), v, neuron=NeuronKind.LIF, backend=backend, **kw)
        if trace:
            return out.spikes[0], (out.v[0], out.spikes[0]), out.h[0]
        return out[0][0], (out[1], out[0][0])
    return step


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
    v0, s0 = (None, None) if state is None else _pair(op, state)
    surrogate = as_surrogate(surrogate, alpha)
    v0, tau = _validate(x, v0, tau, v_th=v_th, v_reset=v_reset, reset=reset,
                        check_finite=check_finite, op=op)
    s0, _ = _validate(x, s0, None, v_th=v_th, v_reset=v_reset, reset=reset,
                      check_finite=False, op=f"{op} (s0)")
    n = math.prod(x.shape[2:])
    if not isinstance(weight, torch.Tensor) or tuple(weight.shape) != (n, n):
        got = tuple(weight.shape) if isinstance(weight, torch.Tensor) else type(weight).__name__
        raise ValueError(f"{op}: weight must be [N, N] = [{n}, {n}] for per-sample shape "
                         f"{tuple(x.shape[2:])}, got {got}")
    kw = dict(tau=tau, v_th=float(v_th), v_reset=float(v_reset), reset=reset,
              surrogate=surrogate, detach_reset=bool(detach_reset))
    w = weight.to(x.dtype)
    state = (v0.to(x.dtype).expand_as(x[0]), s0.to(x.dtype).expand_as(x[0]))
    if select_backend(backend, x.device).name == "reference":
        return _loop(lambda x_t, st, **k: rlif_step(x_t, st, w, **k), x, state, trace, **kw)
    return _loop(_fused_rlif_step(w, backend), x, state, trace, **kw)
