r"""The ``cpu`` kernels of the fused op: C++/OpenMP forward and BPTT backward for LIF and IF.

Registered as the ``"cpu"`` kernels of ``membra::neuron_fwd`` / ``membra::neuron_bwd``
(:mod:`membra.kernels.fused`), so autograd, ``torch.compile`` and ``torch.export`` see a
single op. The equations are those of
``docs/kernels.md`` (source: ``csrc/neuron_cpu.cpp``):

.. math::
    h_t = v_{t-1} + (x_t - (v_{t-1} - v_{reset}))/\tau \ (\text{LIF}) \ |\ v_{t-1} + x_t\
    (\text{IF}),\quad s_t = \Theta(h_t - v_{th}),\quad
    v_t = h_t - v_{th} s_t \ (\text{soft}) \ |\ h_t (1 - s_t) + v_{reset} s_t \ (\text{hard})

The forward reads ``x`` and writes ``s``; the only tensor saved for backward is ``x`` itself
(with a custom surrogate, ``h`` in its place: see :func:`.fused._blockwise_backward`).
The backward recomputes ``h`` block by block into a cache-resident buffer and walks back in
time, reading ``gs`` and writing ``gx``: 5 passes over ``[T, M]`` in all, no ``[T, M]``
activation kept alive. Input float32/bfloat16 with float32 state, float64 with float64 state
(float16 input is upcast to float32). The extension is built at first use
(:mod:`membra.kernels.build`); when that fails, the backend reports itself unavailable and the
dispatcher uses ``reference`` after one warning.
"""

from __future__ import annotations

import ctypes
import math
import os
import sys
import warnings
from pathlib import Path

import torch

from ..functional.kinds import NeuronKind
from ._prep import state_dtype
from .dispatch import register_backend
from .fused import (
    BLOCK_KERNELS,
    NEW_OUTPUT,
    fused_sequence,
    kernel_surrogate_code,
    neuron_bwd,
    neuron_bwd_cols,
    neuron_fwd,
    neuron_h,
    neuron_infer,
)
from .recurrent import STEP_KERNELS

__all__ = ["cpu_available", "pool_limit"]

_SOURCE = Path(__file__).with_name("csrc") / "neuron_cpu.cpp"
_DTYPE_CODES = {torch.float32: 0, torch.float64: 1, torch.bfloat16: 2}
_LIB: dict[str, object] = {}
#: Outputs from this size on are advised onto huge pages; ``MEMBRA_HUGEPAGES=0`` turns it off.
_HUGE_MIN_BYTES = 8 << 20 if os.environ.get("MEMBRA_HUGEPAGES", "1") != "0" else -1
#: Outputs from this size on come from the kernels' pool (``membra_pool_tensor`` in the C++
#: source): memory freed by earlier outputs, already mapped. ``MEMBRA_KERNEL_POOL=0`` turns
#: it off (every output is then a fresh ``torch.empty``).
_POOL_MIN_BYTES = 1 << 20 if os.environ.get("MEMBRA_KERNEL_POOL", "1") != "0" else -1
#: DLPack (type code, bits) of the dtypes the pool hands out
_DLPACK = {torch.float32: (2, 32), torch.float64: (2, 64), torch.bfloat16: (4, 16),
           torch.uint8: (1, 8), torch.bool: (6, 8)}
_CAPSULE = ctypes.pythonapi.PyCapsule_New
_CAPSULE.restype, _CAPSULE.argtypes = ctypes.py_object, [ctypes.c_void_p, ctypes.c_char_p,
                                                         ctypes.c_void_p]


def _declare(lib) -> None:
    """ctypes signatures of the two C entry points of ``csrc/neuron_cpu.cpp``."""
    p, i64, i32, f64 = ctypes.c_void_p, ctypes.c_int64, ctypes.c_int, ctypes.c_double
    lib.membra_neuron_forward.argtypes = [p, p, p, p, p, p, i64, i64, i32, i32, i32, f64, f64,
                                          f64]
    lib.membra_neuron_forward.restype = i32
    lib.membra_neuron_backward.argtypes = [p, p, p, p, p, p, p, p, p, p, i64, i64, i32, i32, i32,
                                           i32, f64, i32, f64, f64, f64]
    lib.membra_neuron_backward.restype = i32
    lib.membra_advise_hugepages.argtypes = [p, i64]
    lib.membra_advise_hugepages.restype = i32
    lib.membra_neuron_forward_u8.argtypes = [p, p, p, p, i64, i64, i32, i32, i32, f64, f64, f64]
    lib.membra_neuron_forward_u8.restype = i32
    lib.membra_pool_tensor.argtypes = [i32, ctypes.POINTER(i64), i32, i32]
    lib.membra_pool_tensor.restype = p
    lib.membra_pool_limit.argtypes = [i64]
    lib.membra_pool_limit.restype = i64
    lib.membra_neuron_recompute_h.argtypes = [p, p, p, i64, i64, i64, i64, i32, i32, i32, f64,
                                              f64, f64]
    lib.membra_neuron_recompute_h.restype = i32
    lib.membra_neuron_backward_cols.argtypes = [p, p, p, p, p, p, p, p, p, i64, i64, i64, i64,
                                                i64, i32, i32, i32, i32, f64, f64, f64]
    lib.membra_neuron_backward_cols.restype = i32


def _new_output(shape, dtype: torch.dtype, lib) -> torch.Tensor:
    """An uninitialised contiguous CPU tensor for a kernel output (``[T, M]``, and the ``[M]``
    state and its gradient): from the pool when large (memory freed by earlier outputs,
    already mapped; see ``membra_pool_tensor``), else
    ``torch.empty``, advised onto transparent huge pages when large (fewer page faults on
    first touch; see ``membra_advise_hugepages``)."""
    shape = tuple(shape)
    nbytes = math.prod(shape) * dtype.itemsize
    if 0 <= _POOL_MIN_BYTES <= nbytes and len(shape) <= 8 and dtype in _DLPACK:
        code, bits = _DLPACK[dtype]
        dims = (ctypes.c_int64 * len(shape))(*shape)
        ptr = lib.membra_pool_tensor(len(shape), dims, code, bits)
        if ptr:
            return torch.from_dlpack(_CAPSULE(ptr, b"dltensor", None))
    out = torch.empty(shape, dtype=dtype)
    if 0 <= _HUGE_MIN_BYTES <= nbytes:
        lib.membra_advise_hugepages(out.data_ptr(), nbytes)
    return out


def pool_limit(nbytes: int) -> int:
    """Keep at most ``nbytes`` of freed kernel outputs for reuse (default 1 GiB; 0 gives
    every freed output back to the system at once); returns the idle bytes held now."""
    lib = _load()
    return int(lib.membra_pool_limit(int(nbytes))) if lib is not None else 0


def _check(rc: int, what: str) -> None:
    if rc != 0:
        raise RuntimeError(f"membra cpu kernel {what} failed with code {rc}")


def _load():
    """The compiled extension (built on first call), or ``None`` if it cannot be built.

    Kept out of ``torch.compile`` tracing (when ``torch._dynamo`` is loaded at all: importing
    it just for a decorator costs seconds at every start); once built, :func:`cpu_available`
    answers from the cache without calling it, so compiled code has no graph break here."""
    if "ok" not in _LIB and "torch._dynamo" in sys.modules:
        return torch.compiler.disable(_build)()
    return _build()


def _build():
    if "ok" not in _LIB:
        try:
            from .build import build_extension

            lib = build_extension("membra_neuron_cpu", _SOURCE)
            _declare(lib)
            _LIB["lib"] = lib
            _LIB["ok"] = True
        except Exception as e:  # no compiler, no ninja, a failed build: fall back, once
            _LIB["ok"] = False
            why = str(e).strip().splitlines()[-1] if str(e).strip() else repr(e)
            warnings.warn(f"membra: the fused 'cpu' kernels could not be built "
                          f"({type(e).__name__}: {why}); using the 'reference' backend",
                          RuntimeWarning, stacklevel=3)
    return _LIB.get("lib")


def cpu_available() -> bool:
    """Whether the fused CPU kernels are built (builds them on the first call)."""
    if "ok" in _LIB:
        return bool(_LIB["ok"])
    return _load() is not None


def _as_kernel_input(x: torch.Tensor, v0: torch.Tensor):
    """What the C++ kernels read: ``x [T, M]`` contiguous in a supported dtype and ``v0 [M]``
    contiguous in the state dtype (no-ops for what :func:`cpu_sequence` passes)."""
    if x.dim() != 2 or v0.shape != (x.shape[1],) or x.dtype not in _DTYPE_CODES:
        raise ValueError(f"membra::neuron_cpu ops need x [T, M] (float32/float64/bfloat16) and "
                         f"v0 [M], got {tuple(x.shape)} {x.dtype} and {tuple(v0.shape)}")
    return x.contiguous(), v0.to(state_dtype(x.dtype)).contiguous()


@neuron_fwd.register_kernel("cpu")
def _neuron_fwd_cpu(x, v0, tau, kind, soft, v_th, v_reset, surrogate, alpha, detach_reset,
                    save_h, trace_v):
    """``membra::neuron_fwd`` on CPU: ``(spikes, v_T, h, v)`` (see :mod:`.fused`)."""
    x, v0 = _as_kernel_input(x, v0)
    lib = _load()
    s = _new_output(x.shape, x.dtype, lib)
    v_final = _new_output(v0.shape, v0.dtype, lib)
    h, v = (_new_output(x.shape if wanted else (0,), v0.dtype, lib)
            for wanted in (save_h or trace_v, trace_v))
    T, M = x.shape
    if M:
        _forward_into(x, v0, s, v_final, h, v, T, M, kind == NeuronKind.LIF.code, soft, tau,
                      v_th, v_reset)
    return s, v_final, h, v


def _forward_into(x, v0, s, v_final, h, v, T, M, lif, soft, tau, v_th, v_reset) -> None:
    """The C++ forward on ``x [T, M]`` from ``v0 [M]`` into given contiguous buffers (``h``,
    ``v``: ``None`` or empty when not wanted)."""
    _check(_load().membra_neuron_forward(
        x.data_ptr(), v0.data_ptr(), s.data_ptr(), v_final.data_ptr(), _out_ptr(h), _out_ptr(v),
        T, M, _DTYPE_CODES[x.dtype], lif, soft, float(tau), v_th, v_reset), "forward")


@neuron_infer.register_kernel("cpu")
def _neuron_infer_cpu(x, v0, tau, kind, soft, v_th, v_reset, spike_dtype):
    """``membra::neuron_infer`` on CPU: one pass that reads ``x`` and writes the spikes (as
    0/1 bytes directly when ``spike_dtype`` is bool or uint8) and ``v_T``; nothing else is
    allocated. Also called directly, without the op's dispatch, by
    :func:`membra.kernels.fused.fused_sequence` (:mod:`membra.kernels.direct`)."""
    x, v0 = _as_kernel_input(x, v0)
    lib = _load()
    integer = spike_dtype in (torch.bool, torch.uint8)
    s = _new_output(x.shape, spike_dtype if integer else x.dtype, lib)
    v_final = _new_output(v0.shape, v0.dtype, lib)
    T, M = x.shape
    if M:
        args = (x.data_ptr(), v0.data_ptr(), s.data_ptr(), v_final.data_ptr())
        tail = (T, M, _DTYPE_CODES[x.dtype], kind == NeuronKind.LIF.code, soft,
                1.0 if tau is None else float(tau), v_th, v_reset)
        if integer:
            _check(lib.membra_neuron_forward_u8(*args, *tail), "inference forward")
        else:
            _check(lib.membra_neuron_forward(*args, None, None, *tail), "inference forward")
    return s.to(spike_dtype), v_final


def _ptr(t: torch.Tensor | None):
    return None if t is None else t.data_ptr()


def _out_ptr(t: torch.Tensor | None):
    """An optional output's pointer: ``None`` when absent or empty (not written)."""
    return None if t is None or not t.numel() else t.data_ptr()


def _check_cols(x, m0, m1):
    if not 0 <= m0 <= m1 <= x.shape[1]:
        raise ValueError(f"membra cpu kernel: neurons [{m0}, {m1}) are not in [0, {x.shape[1]}]")


@neuron_h.register_kernel("cpu")
def _neuron_h_cpu(x, v0, tau, kind, soft, v_th, v_reset, m0, m1, out):
    """``membra::neuron_h`` on CPU: ``h`` of neurons ``[m0, m1)`` into ``out [T, m1 - m0]``."""
    x, v0 = _as_kernel_input(x, v0)
    _check_cols(x, m0, m1)
    want = (x.shape[0], m1 - m0)
    if tuple(out.shape) != want or out.dtype != v0.dtype or not out.is_contiguous():
        raise ValueError(f"membra::neuron_h: out must be contiguous {v0.dtype} {list(want)}, "
                         f"got {out.dtype} {list(out.shape)}")
    if m1 > m0:
        _check(_load().membra_neuron_recompute_h(
            x.data_ptr(), v0.data_ptr(), out.data_ptr(), x.shape[0], x.shape[1], m0, m1,
            _DTYPE_CODES[x.dtype], kind == NeuronKind.LIF.code, soft, float(tau), v_th,
            v_reset), "recompute")


def _check_cols_args(x, m0, m1, named) -> None:
    """``ValueError`` unless neurons ``[m0, m1)`` are in ``x`` and every ``(name, tensor,
    dtype, shape)`` of ``named`` (``None`` tensors skipped) is contiguous with that dtype and
    shape (``None``: any)."""
    _check_cols(x, m0, m1)
    for name, t, want, shape in named:
        if t is None:
            continue
        if not t.is_contiguous() or (want is not None and t.dtype != want):
            raise ValueError(f"membra::neuron_bwd_cols: {name} must be contiguous "
                             f"{want or 'float'}, got {t.dtype}")
        if shape is not None and tuple(t.shape) != shape:
            raise ValueError(f"membra::neuron_bwd_cols: {name} must be {list(shape)}, "
                             f"got {list(t.shape)}")


def _walk_back_cols(lib, grad_spikes, grad_v_final, x, v0, tau, dsg, gx, gv0, gtau, kind, soft,
                    v_th, v_reset, detach_reset, m0, m1, h) -> None:
    """The backward of neurons ``[m0, m1)`` with their derivative ``dsg`` and charged
    potential ``h`` (``[T, m1 - m0]`` with unit column stride, or ``None``; arguments already
    checked)."""
    if m1 > m0:
        _check(lib.membra_neuron_backward_cols(
            x.data_ptr(), v0.data_ptr(), grad_spikes.data_ptr(), _ptr(grad_v_final),
            gx.data_ptr(), gv0.data_ptr(), _ptr(gtau), dsg.data_ptr(), _ptr(h),
            0 if h is None else h.stride(0) if h.shape[0] > 1 else h.shape[1], x.shape[0],
            x.shape[1], m0, m1, _DTYPE_CODES[x.dtype], kind == NeuronKind.LIF.code, soft,
            detach_reset, float(tau), v_th, v_reset), "blockwise backward")


@neuron_bwd_cols.register_kernel("cpu")
def _neuron_bwd_cols_cpu(grad_spikes, grad_v_final, x, v0, tau, dsg, gx, gv0, gtau, kind, soft,
                         v_th, v_reset, detach_reset, m0, m1, h=None):
    """``membra::neuron_bwd_cols`` on CPU (every tensor as the op's own backward passes it:
    contiguous, ``x``'s dtype or the state dtype)."""
    block = (x.shape[0], m1 - m0)
    _check_cols_args(x, m0, m1, (
        ("x", x, None, None), ("grad_spikes", grad_spikes, x.dtype, None),
        ("gx", gx, x.dtype, None), ("dsg", dsg, v0.dtype, block), ("h", h, v0.dtype, block)))
    _walk_back_cols(_load(), grad_spikes, grad_v_final, x, v0, tau, dsg, gx, gv0, gtau, kind,
                    soft, v_th, v_reset, detach_reset, m0, m1, h)


def _block_kernel(x, v0, tau, kind, soft, v_th, v_reset, detach, gs, gv, gx, gv0, gtau):
    """The walk back of one block of a custom surrogate's blockwise backward
    (:data:`.fused.BLOCK_KERNELS`) as a direct call of the C++ kernel: the layer's tensors are
    checked once here, each block then costs one foreign call instead of an op dispatch.
    ``x`` may be ``None`` (it is read only for a tau gradient, and then it is given)."""
    lib = _load()
    xk = gs if x is None else x  # (not read when h is given: only its dtype and shape count)
    _check_cols_args(xk, 0, xk.shape[1], (
        ("x", x, gs.dtype, tuple(gs.shape)), ("grad_spikes", gs, None, None),
        ("gx", gx, gs.dtype, tuple(gs.shape)), ("grad_v_final", gv, v0.dtype, tuple(v0.shape)),
        ("v0", v0, None, (gs.shape[1],)), ("gv0", gv0, v0.dtype, tuple(v0.shape)),
        ("gtau", gtau, v0.dtype, tuple(v0.shape))))
    if xk.dtype not in _DTYPE_CODES or v0.dtype != state_dtype(xk.dtype):
        raise ValueError(f"membra blockwise backward: x {xk.dtype} with state {v0.dtype}")

    def back(m0, m1, dsg, h):
        block = (xk.shape[0], m1 - m0)
        _check_cols_args(xk, m0, m1, (("dsg", dsg, v0.dtype, block),))
        if h is not None and (h.dtype != v0.dtype or tuple(h.shape) != block
                              or (m1 > m0 and h.stride(1) != 1)):
            raise ValueError(f"membra blockwise backward: h must be {v0.dtype} {list(block)} "
                             f"with unit column stride, got {h.dtype} {list(h.shape)}")
        _walk_back_cols(lib, gs, gv, xk, v0, tau, dsg, gx, gv0, gtau, kind, soft, v_th, v_reset,
                        detach, m0, m1, h)

    return back


@neuron_bwd.register_kernel("cpu")
def _neuron_bwd_cpu(grad_spikes, grad_v_final, x, h, v0, tau, dsg, grad_h, grad_v, kind, soft,
                    v_th, v_reset, surrogate, alpha, detach_reset, need_tau):
    """``membra::neuron_bwd`` on CPU; recomputes ``h`` from ``x`` block by block (``h`` is
    not read)."""
    x, v0 = _as_kernel_input(x, v0)
    grad_spikes = grad_spikes.to(x.dtype).contiguous()
    if grad_v_final is not None:
        grad_v_final = grad_v_final.to(v0.dtype).contiguous()
    dsg, grad_h, grad_v = (None if t is None else t.to(v0.dtype).contiguous()
                           for t in (dsg, grad_h, grad_v))
    lib = _load()
    gx = _new_output(x.shape, x.dtype, lib)
    gv0 = _new_output(v0.shape, v0.dtype, lib)
    T, M = x.shape
    need_tau = need_tau and kind == NeuronKind.LIF.code
    gtau_m = torch.empty_like(v0) if need_tau else None
    if M:
        _backward_into(x, v0, grad_spikes, grad_v_final, gx, gv0, gtau_m, dsg, grad_h, grad_v,
                       T, M, kind == NeuronKind.LIF.code, soft,
                       kernel_surrogate_code(surrogate, dsg, grad_h), alpha, detach_reset, tau,
                       v_th, v_reset)
    if need_tau and M:
        gtau = gtau_m.sum(dtype=torch.float64).to(tau.dtype).reshape(())
    else:
        gtau = torch.zeros_like(tau)
    return gx, gv0, gtau


def _backward_into(x, v0, gs, gv_final, gx, gv0, gtau, dsg, gh, gv, T, M, lif, soft, code,
                   alpha, detach, tau, v_th, v_reset) -> None:
    """The C++ backward into given contiguous buffers (``gv_final``, ``gtau``, ``dsg``,
    ``gh``, ``gv``: ``None`` when absent); ``code`` the kernel's surrogate code."""
    _check(_load().membra_neuron_backward(
        x.data_ptr(), v0.data_ptr(), gs.data_ptr(), _ptr(gv_final), gx.data_ptr(),
        gv0.data_ptr(), _ptr(gtau), _ptr(dsg), _ptr(gh), _ptr(gv), T, M, _DTYPE_CODES[x.dtype],
        lif, soft, code, alpha, detach, float(tau), v_th, v_reset), "backward")


def _forward_step(r, v, s, v_next, h, args):
    """One LIF step of RLIF into given ``[M]`` buffers (:data:`.recurrent.STEP_KERNELS`)."""
    tau, soft, v_th, v_reset = args[:4]
    _forward_into(r, v, s, v_next, h, None, 1, r.numel(), True, soft, tau, v_th, v_reset)


def _backward_step(gs, gv_next, r, v, gr, gv, gtau, dsg, gh, gvt, args):
    """The backward of one LIF step of RLIF into given ``[M]`` buffers
    (:data:`.recurrent.STEP_KERNELS`)."""
    tau, soft, v_th, v_reset, token, alpha, detach = args
    _backward_into(r, v, gs, gv_next, gr, gv, gtau, dsg, gh, gvt, 1, r.numel(), True, soft,
                   kernel_surrogate_code(token, dsg, gh), alpha, detach, tau, v_th, v_reset)


NEW_OUTPUT["cpu"] = lambda shape, dtype: _new_output(shape, dtype, _load())
#: the C++ kernel of ``membra::neuron_bwd_cols`` as registered above: the direct block kernel
#: is active while it serves the op (not while Triton's interpreter does,
#: :func:`.triton_backend.interpret_on_cpu`)
_COLS_KERNEL = neuron_bwd_cols._backend_fns.get("cpu")
BLOCK_KERNELS["cpu"] = (lambda: neuron_bwd_cols._backend_fns.get("cpu") is _COLS_KERNEL,
                        _block_kernel)
_FWD_KERNEL = neuron_fwd._backend_fns.get("cpu")
STEP_KERNELS["cpu"] = (lambda: neuron_fwd._backend_fns.get("cpu") is _FWD_KERNEL
                       and cpu_available(), _forward_step, _backward_step)
register_backend("cpu", fused_sequence, available=cpu_available, devices=("cpu",))
