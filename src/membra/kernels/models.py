r"""Sequence kernels of the further neuron models: CubaLIF, ALIF, RLIF (equations in
:mod:`membra.functional.models`).

- :func:`cuba_lif_sequence` / :func:`alif_sequence`: a ``reference`` loop over the functional
  step (the oracle) and a fused ``cpu`` kernel (``csrc/models_cpu.cpp``: one forward and one
  BPTT backward, the custom ops ``membra::model_cpu_fwd`` / ``membra::model_cpu_bwd`` with a
  registered autograd formula). Differentiable in ``x`` and both initial states.
- :func:`rlif_sequence`: the recurrence ``W s_{t-1}`` needs the previous step's spikes of
  *all* neurons of a sample, so it cannot run inside a per-neuron time loop; each step is one
  ATen GEMM plus one fused LIF step (``membra.kernels.lif_sequence`` with ``T = 1``), and
  autograd chains the steps. Planned: one op that keeps the [B, N] state in cache across
  steps and runs the GEMM and the LIF update per step in C++.

No Triton kernels yet: on CUDA every model runs the ``reference`` loop (one warning). The
kernels would be the LIF Triton kernel with a second state register; they are left for a
machine with a GPU to test them on.

Non-finite values follow LIF (``docs/kernels.md``): a NaN/inf potential spikes NaN, and the
neuron's later spikes and final state are NaN.
"""

from __future__ import annotations

import ctypes
import math
import warnings
from pathlib import Path

import torch

from ..functional.models import alif_step, cuba_lif_step, keep_fraction, rlif_step
from ..functional.surrogate import get_surrogate
from . import _validate, neuron_sequence
from ._prep import SURROGATE_CODES, flatten_inputs
from .dispatch import select_backend

__all__ = ["cuba_lif_sequence", "alif_sequence", "rlif_sequence", "models_cpu_available"]

_SOURCE = Path(__file__).with_name("csrc") / "models_cpu.cpp"
_DTYPE_CODES = {torch.float32: 0, torch.float64: 1, torch.bfloat16: 2}
_MODEL_CODES = {"cuba_lif": 0, "alif": 1}
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
def model_cpu_fwd(x: torch.Tensor, v0: torch.Tensor, c0: torch.Tensor, model: str, reset: str,
                  tau: float, rho: float, beta: float, v_th: float, v_reset: float,
                  surrogate: str, alpha: float, detach_reset: bool
                  ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Fused forward on ``x [T, M]`` from ``v0, c0 [M]`` (state dtype): ``(s, v_T, c_T)``."""
    s, vT, cT = torch.empty_like(x), torch.empty_like(v0), torch.empty_like(c0)
    T, M = x.shape
    if M:
        _check_rc(_load().membra_model_forward(
            _MODEL_CODES[model], x.data_ptr(), v0.data_ptr(), c0.data_ptr(), s.data_ptr(),
            vT.data_ptr(), cT.data_ptr(), T, M, _DTYPE_CODES[x.dtype], reset == "soft", tau,
            rho, beta, v_th, v_reset), "forward")
    return s, vT, cT


@model_cpu_fwd.register_fake
def _(x, v0, c0, *args):
    return torch.empty_like(x), torch.empty_like(v0), torch.empty_like(c0)


@torch.library.custom_op("membra::model_cpu_bwd", mutates_args=(), device_types="cpu")
def model_cpu_bwd(gs: torch.Tensor, gvT: torch.Tensor, gcT: torch.Tensor, x: torch.Tensor,
                  v0: torch.Tensor, c0: torch.Tensor, model: str, reset: str, tau: float,
                  rho: float, beta: float, v_th: float, v_reset: float, surrogate: str,
                  alpha: float, detach_reset: bool
                  ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Fused BPTT backward: ``(grad_x [T, M], grad_v0 [M], grad_c0 [M])``."""
    gx, gv0, gc0 = torch.empty_like(x), torch.empty_like(v0), torch.empty_like(c0)
    T, M = x.shape
    if M:
        _check_rc(_load().membra_model_backward(
            _MODEL_CODES[model], x.data_ptr(), v0.data_ptr(), c0.data_ptr(), gs.data_ptr(),
            gvT.data_ptr(), gcT.data_ptr(), gx.data_ptr(), gv0.data_ptr(), gc0.data_ptr(), T, M,
            _DTYPE_CODES[x.dtype], reset == "soft", SURROGATE_CODES[surrogate], alpha,
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


def _fused(model, x, v0, c0, *, reset, tau, rho, beta, v_th, v_reset, surrogate, alpha,
           detach_reset):
    """The fused op on ``x`` flattened to ``[T, M]``; states back to ``x[0]``'s shape."""
    xk = x if x.dtype in _DTYPE_CODES else x.float()  # float16: computed in float32
    x2, v, _ = flatten_inputs(xk, v0, None)
    c = flatten_inputs(xk, c0, None)[1]
    s2, vT, cT = model_cpu_fwd(x2, v, c, model, reset, tau, rho, beta, v_th, v_reset,
                               surrogate, alpha, detach_reset)
    shape = x.shape[1:]
    return s2.to(x.dtype).reshape(x.shape), (vT.reshape(shape).to(x.dtype),
                                             cT.reshape(shape).to(x.dtype))


def _reference(step, x, v0, c0, **kw):
    """Loop ``step`` over time from ``(v0, c0)``; autograd builds the backward pass."""
    state = (v0.to(x.dtype).expand_as(x[0]), c0.to(x.dtype).expand_as(x[0]))
    spikes = []
    for t in range(x.shape[0]):
        s, state = step(x[t], state, **kw)
        spikes.append(s)
    return torch.stack(spikes), state


def _prepare(op, x, state, *, tau, v_th, v_reset, reset, surrogate, alpha, check_finite):
    """Validate the shared arguments; returns ``(v0, c0, tau, alpha)`` (states as tensors)."""
    v0, c0 = (None, None) if state is None else _pair(op, state)
    v0, tau = _validate(x, v0, tau, v_th=v_th, v_reset=v_reset, reset=reset,
                        surrogate=surrogate, alpha=alpha, check_finite=check_finite, op=op)
    c0, _ = _validate(x, c0, None, v_th=v_th, v_reset=v_reset, reset=reset,
                      surrogate=surrogate, alpha=alpha, check_finite=False,
                      op=f"{op} (second state)")
    return v0, c0, float(tau), get_surrogate(surrogate).alpha_or_default(alpha)


def _pair(op, state):
    if not isinstance(state, (tuple, list)) or len(state) != 2:
        raise ValueError(f"{op}: state must be a pair (v, second state) or None, got "
                         f"{type(state).__name__}")
    return state


def _use_fused(backend, x) -> bool:
    name = select_backend(backend, x.device).name
    return name == "cpu" and x.device.type == "cpu" and models_cpu_available()


def cuba_lif_sequence(x, state=None, *, tau=2.0, tau_syn=2.0, v_th=1.0, v_reset=0.0,
                      reset="soft", surrogate="sigmoid", alpha=None, detach_reset=True,
                      backend=None, check_finite=False):
    r"""Run CubaLIF neurons over ``x [T, B, ...]`` from ``state = (v0, i0)`` (``None``:
    zeros; each a number or a tensor broadcastable to ``x[0]``); returns
    ``(spikes, (v_T, i_T))``. :math:`i_t = (1 - 1/\tau_{syn}) i_{t-1} + x_t`, then LIF on
    :math:`i_t` (arguments as :func:`membra.kernels.lif_sequence`; ``tau_syn`` finite,
    ``>= 1``)."""
    op = "cuba_lif_sequence"
    v0, c0, tau, alpha = _prepare(op, x, state, tau=tau, v_th=v_th, v_reset=v_reset,
                                  reset=reset, surrogate=surrogate, alpha=alpha,
                                  check_finite=check_finite)
    rho = keep_fraction(tau_syn, "tau_syn")
    kw = dict(tau=tau, v_th=float(v_th), v_reset=float(v_reset), reset=reset,
              surrogate=surrogate, alpha=alpha, detach_reset=bool(detach_reset))
    if _use_fused(backend, x):
        return _fused("cuba_lif", x, v0, c0, rho=rho, beta=0.0, **kw)
    return _reference(cuba_lif_step, x, v0, c0, tau_syn=float(tau_syn), **kw)


def alif_sequence(x, state=None, *, tau=2.0, tau_adapt=20.0, beta=0.2, v_th=1.0, v_reset=0.0,
                  reset="soft", surrogate="sigmoid", alpha=None, detach_reset=True,
                  backend=None, check_finite=False):
    r"""Run ALIF neurons over ``x [T, B, ...]`` from ``state = (v0, a0)`` (``None``: zeros;
    ``a0`` the adaptation the first step uses); returns ``(spikes, (v_T, a_{T+1}))``.
    Threshold :math:`v_{th} + \beta a_t`, :math:`a_{t+1} = (1 - 1/\tau_a) a_t + s_t`
    (``tau_adapt`` finite, ``>= 1``; ``beta`` a finite number)."""
    op = "alif_sequence"
    v0, c0, tau, alpha = _prepare(op, x, state, tau=tau, v_th=v_th, v_reset=v_reset,
                                  reset=reset, surrogate=surrogate, alpha=alpha,
                                  check_finite=check_finite)
    rho = keep_fraction(tau_adapt, "tau_adapt")
    beta = check_beta(beta)
    kw = dict(tau=tau, v_th=float(v_th), v_reset=float(v_reset), reset=reset,
              surrogate=surrogate, alpha=alpha, detach_reset=bool(detach_reset))
    if _use_fused(backend, x):
        return _fused("alif", x, v0, c0, rho=rho, beta=beta, **kw)
    return _reference(alif_step, x, v0, c0, tau_adapt=float(tau_adapt), beta=beta, **kw)


def check_beta(beta) -> float:
    """ALIF's threshold gain: a finite number (``ValueError`` naming ``beta`` otherwise)."""
    if not isinstance(beta, (int, float)) or isinstance(beta, bool) or \
            not torch.isfinite(torch.tensor(float(beta))):
        raise ValueError(f"beta must be a finite number, got {beta!r}")
    return float(beta)


def rlif_sequence(x, weight, state=None, *, tau=2.0, v_th=1.0, v_reset=0.0, reset="soft",
                  surrogate="sigmoid", alpha=None, detach_reset=True, backend=None,
                  check_finite=False):
    r"""Run recurrent LIF neurons over ``x [T, B, *S]`` with ``weight [N, N]``
    (``N = prod(S)``) from ``state = (v0, s0)`` (``None``: zeros); returns
    ``(spikes, (v_T, s_T))``. :math:`h_t` charges with :math:`x_t + W s_{t-1}`. Each step is
    a GEMM plus one LIF step of the selected backend (the ``reference`` backend loops over
    :func:`membra.functional.models.rlif_step`)."""
    op = "rlif_sequence"
    v0, s0 = (None, None) if state is None else _pair(op, state)
    v0, tau = _validate(x, v0, tau, v_th=v_th, v_reset=v_reset, reset=reset,
                        surrogate=surrogate, alpha=alpha, check_finite=check_finite, op=op)
    s0, _ = _validate(x, s0, None, v_th=v_th, v_reset=v_reset, reset=reset,
                      surrogate=surrogate, alpha=alpha, check_finite=False,
                      op=f"{op} (s0)")
    n = math.prod(x.shape[2:])
    if not isinstance(weight, torch.Tensor) or tuple(weight.shape) != (n, n):
        got = tuple(weight.shape) if isinstance(weight, torch.Tensor) else type(weight).__name__
        raise ValueError(f"{op}: weight must be [N, N] = [{n}, {n}] for per-sample shape "
                         f"{tuple(x.shape[2:])}, got {got}")
    kw = dict(tau=tau, v_th=float(v_th), v_reset=float(v_reset), reset=reset,
              surrogate=surrogate, alpha=alpha, detach_reset=bool(detach_reset))
    v = v0.to(x.dtype).expand_as(x[0])
    s = s0.to(x.dtype).expand_as(x[0])
    w = weight.to(x.dtype)
    spikes = []
    ref = select_backend(backend, x.device).name == "reference"
    for t in range(x.shape[0]):
        if ref:
            s, (v, _) = rlif_step(x[t], (v, s), w, **kw)
        else:
            rec = (s.flatten(1) @ w.t()).view_as(x[t])
            st, v = neuron_sequence((x[t] + rec).unsqueeze(0), v, neuron="lif",
                                    backend=backend, **kw)
            s = st[0]
        spikes.append(s)
    return torch.stack(spikes), (v, s)

