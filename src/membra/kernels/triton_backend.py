r"""The ``triton`` backend: fused forward and BPTT backward for LIF and IF neurons on CUDA.

The same op as the ``cpu`` backend (equations in :mod:`membra.kernels.cpu` and
``docs/kernels.md``), written in Triton (:mod:`._triton_kernels`, shared with the CubaLIF /
ALIF kernels of :mod:`.triton_models`): one program per block of ``BLOCK`` neurons, the
time loop inside, the potential in float32 (float64 for float64 input). The forward reads
``x`` and writes ``s`` and ``h`` (the saved tensor, state dtype); the backward reads ``gs``
and ``h`` and writes ``gx`` (plus ``x`` when ``tau`` needs a gradient): 6 passes over
``[T, M]``, the traffic of three tensor copies. ``s`` is recomputed from ``h`` as
``h >= v_th``.

Registered as the ``"cuda"`` kernels of ``membra::neuron_fwd`` / ``membra::neuron_bwd``
(:mod:`membra.kernels.fused`); Triton itself is imported at first use only. A custom
surrogate's derivative (or a trace's gradients) reaches the backward kernel as tensors
(``SG`` 4 / 5). Selected by default for CUDA tensors when Triton imports.

For testing without a GPU, :func:`interpret_on_cpu` runs these kernels on CPU tensors in
Triton's interpreter (``TRITON_INTERPRET=1``); see its docstring and ``docs/kernels.md``.
"""

from __future__ import annotations

import contextlib
import functools
import importlib.util
import math
import os

import torch

from ..functional.kinds import NeuronKind
from ._prep import tau_tensor
from .dispatch import _BACKENDS, register_backend
from .fused import (
    fused_sequence,
    kernel_surrogate_code,
    neuron_bwd,
    neuron_bwd_cols,
    neuron_fwd,
    neuron_h,
    neuron_infer,
    trace_buffer,
)

__all__ = ["triton_available", "interpret_on_cpu", "interpreting_on_cpu"]

BLOCK = 512
_KERNELS: dict[str, object] = {}
#: whether :func:`interpret_on_cpu` is active
_ON_CPU = {"on": False}
#: launch options: no fused multiply-add, so that ``rho * c + x`` rounds as the reference's
#: two torch ops do and spikes match bit for bit
_LAUNCH = dict(enable_fp_fusion=False)


#: whether Triton is installed, looked up once at import (a module search, not an import of
#: Triton): ``torch.compile`` cannot trace ``importlib``, and the check runs at every call's
#: choice of backend
_TRITON_FOUND = importlib.util.find_spec("triton") is not None


def triton_available() -> bool:
    """Whether a CUDA device and Triton are present (or :func:`interpret_on_cpu` is on)."""
    return _TRITON_FOUND and (_ON_CPU["on"] or torch.cuda.is_available())


def interpreting_on_cpu() -> bool:
    """Whether :func:`interpret_on_cpu` is active (the Triton kernels run on CPU tensors)."""
    return _ON_CPU["on"]


def _kernels():
    """The Triton kernels (imports triton on first use)."""
    if not _KERNELS:
        from . import _triton_kernels as k

        _KERNELS["fwd"], _KERNELS["bwd"] = k.fwd_kernel, k.bwd_kernel
    return _KERNELS["fwd"], _KERNELS["bwd"]


def kernel_params(ref: torch.Tensor, v_th, v_reset, rho=0.0, beta=0.0, alpha=0.0,
                  detach_reset=True) -> torch.Tensor:
    """The kernels' scalar parameters ``[v_th, v_reset, rho, beta, alpha, nd]`` as a tensor of
    ``ref``'s dtype and device (Triton would round a Python float argument to float32, which
    moves a float64 threshold); ``nd = 0`` when the reset is detached, else 1."""
    vals = (v_th, v_reset, rho, beta, alpha, 0.0 if detach_reset else 1.0)
    return device_constant(tuple(float(v) for v in vals), ref.dtype, ref.device)


@functools.lru_cache(maxsize=256)
def device_constant(values: tuple[float, ...], dtype: torch.dtype,
                    device: torch.device) -> torch.Tensor:
    """``values`` as a tensor on ``device``, made once per distinct call (a host-to-device copy
    per launch would wait for the device; the kernels only read it)."""
    return torch.tensor(values, dtype=dtype, device=device)


def launch_forward(kind: int, x, v0, c0, tau, prm, soft: bool, trace_v: bool,
                   save_h: bool = True, spike_u8: bool = False):
    """Run the forward kernel on ``x [T, M]`` from ``v0`` (and the second state ``c0``, or
    ``None`` for LIF/IF), all contiguous: ``(s, v_T, c_T, h, theta, v)``; ``theta`` is
    written for ALIF only, ``v`` with ``trace_v`` and ``h`` unless ``save_h`` is false and
    nothing else needs it (else each is empty); ``s`` is ``uint8`` 0/1 with ``spike_u8``."""
    T, M = x.shape
    save_h = save_h or trace_v or kind == NeuronKind.ALIF.code
    s = torch.empty_like(x, dtype=torch.uint8 if spike_u8 else x.dtype)
    h = trace_buffer(x, v0, save_h)
    th = trace_buffer(x, v0, kind == NeuronKind.ALIF.code)
    v = trace_buffer(x, v0, trace_v)
    v_final = torch.empty_like(v0)
    c_final = None if c0 is None else torch.empty_like(c0)
    if M:
        fwd, _ = _kernels()
        # pointers a kind never touches get h / v_final (the constexpr branches skip them)
        hp = h if save_h else v_final
        fwd[(math.ceil(M / BLOCK),)](
            x, v0, v0 if c0 is None else c0, tau, prm, s, hp, th if th.numel() else hp,
            v if trace_v else hp, v_final, v_final if c0 is None else c_final, T, M,
            KIND=kind, SOFT=soft, TRACE_V=trace_v, BLOCK=BLOCK, SAVE_H=save_h,
            SPIKE_U8=spike_u8, **_LAUNCH)
    return s, v_final, c_final, h, th, v


def launch_backward(kind: int, gs, gv, gc, h, th, x, v0, tau, prm, dsg, grad_h, grad_v,
                    soft: bool, sg_code: int, need_tau: bool):
    """Run the backward kernel (tensors contiguous, ``gs`` in ``x``'s dtype, the rest in the
    state dtype; ``gc``/``th`` ``None`` where the kind has no such tensor): ``(grad_x,
    grad_v0, grad_c0, dL/dtau per neuron)`` (the last two ``None`` when not computed)."""
    T, M = h.shape
    gx = torch.empty_like(gs)
    gv0 = torch.empty_like(v0)
    gc0 = None if gc is None else torch.empty_like(v0)
    gtau = torch.empty_like(v0) if need_tau else None
    if M:
        _, bwd = _kernels()
        # unused pointers get h (never read or written: the constexpr branches turn them off)
        bwd[(math.ceil(M / BLOCK),)](
            gs, gv, h if gc is None else gc, h, h if th is None else th, x, v0, tau, prm, gx,
            gv0, h if gc0 is None else gc0, h if gtau is None else gtau,
            h if dsg is None else dsg, h if grad_h is None else grad_h,
            h if grad_v is None else grad_v, T, M, (T - 1) * M, KIND=kind, SOFT=soft,
            SG=sg_code, NEED_TAU=need_tau, BLOCK=BLOCK, **_LAUNCH)
    return gx, gv0, gc0, gtau


def _forward(x, v0, tau, kind, soft, v_th, v_reset):
    """The LIF/IF forward: ``(s, v_T, h, v)`` with every ``v_t`` (the kernels' test entry)."""
    s, v_final, _, h, _, v = launch_forward(kind, x, v0, None, tau,
                                            kernel_params(v0, v_th, v_reset), soft, True)
    return s, v_final, h, v


@neuron_fwd.register_kernel("cuda")
def _neuron_fwd_triton(x, v0, tau, kind, soft, v_th, v_reset, surrogate, alpha, detach_reset,
                       save_h, trace_v):
    """``membra::neuron_fwd`` with Triton (see :mod:`.fused`); ``h`` is written when
    ``save_h or trace_v`` (the backward reads it, or recomputes it from ``x``)."""
    x, v0 = x.contiguous(), v0.contiguous()
    s, v_final, _, h, _, v = launch_forward(kind, x, v0, None, tau,
                                            kernel_params(v0, v_th, v_reset), soft, trace_v,
                                            save_h)
    return s, v_final, h, v


@neuron_bwd.register_kernel("cuda")
def _neuron_bwd_triton(grad_spikes, grad_v_final, x, h, v0, tau, dsg, grad_h, grad_v, kind,
                       soft, v_th, v_reset, surrogate, alpha, detach_reset, need_tau):
    """``membra::neuron_bwd`` with Triton: reads ``h`` (and ``x`` only for the tau gradient);
    ``grad_x`` has the dtype of ``grad_spikes``, which is the input's. An empty ``h`` (the
    ``cpu`` device's op saves none: :func:`interpret_on_cpu`) is recomputed from ``x``."""
    x, v0 = x.contiguous(), v0.contiguous()
    if h.numel() != x.numel():
        h = _forward(x, v0, tau, kind, soft, v_th, v_reset)[2]
    dsg, grad_h, grad_v = (None if t is None else t.to(h.dtype).contiguous()
                           for t in (dsg, grad_h, grad_v))
    need_tau = need_tau and kind == NeuronKind.LIF.code
    prm = kernel_params(v0, v_th, v_reset, alpha=alpha, detach_reset=detach_reset)
    gx, gv0, _, gtau_m = launch_backward(
        kind, grad_spikes.contiguous(), _grad_v_final(grad_v_final, v0), None, h, None, x, v0,
        tau,
        prm, dsg, grad_h, grad_v, soft, kernel_surrogate_code(surrogate, dsg, grad_h), need_tau)
    gtau = (gtau_m.sum(dtype=torch.float64).to(tau.dtype).reshape(()) if gtau_m is not None
            else torch.zeros_like(tau))
    return gx, gv0, gtau


def _grad_v_final(g, v0):
    """``dL/dv_T`` for the kernels: the ops pass ``None`` when only the spikes have a
    gradient (the cpu kernels read no zeros; the Triton ones do)."""
    return torch.zeros_like(v0) if g is None else g.to(v0.dtype).contiguous()


@neuron_infer.register_kernel("cuda")
def _neuron_infer_triton(x, v0, tau, kind, soft, v_th, v_reset, spike_dtype):
    """``membra::neuron_infer`` with Triton (also on CPU tensors in the interpreter); a
    registered kernel, so eager calls skip the op's dispatch (:mod:`.direct`), which may pass
    ``tau`` as a number or ``None`` (IF). Nothing is saved: the kernel writes no ``h``, and
    bool / uint8 spikes directly as bytes."""
    if not isinstance(tau, torch.Tensor):
        tau = tau_tensor(tau, v0.dtype, x.device)
    integer = spike_dtype in (torch.bool, torch.uint8)
    x, v0 = x.contiguous(), v0.contiguous()
    s, v_final = launch_forward(kind, x, v0, None, tau, kernel_params(v0, v_th, v_reset), soft,
                                False, save_h=False, spike_u8=integer)[:2]
    if spike_dtype == torch.bool:
        return s.view(torch.bool), v_final
    return (s if integer or spike_dtype == s.dtype else s.to(spike_dtype)), v_final


def _neuron_h_triton(x, v0, tau, kind, soft, v_th, v_reset, m0, m1, out):
    """``membra::neuron_h`` with Triton (CPU interpreter only): ``h`` of neurons ``[m0, m1)``
    into ``out``."""
    out.copy_(_forward(x[:, m0:m1].contiguous(), v0[m0:m1].contiguous(), tau, kind, soft,
                       v_th, v_reset)[2])


def _neuron_bwd_cols_triton(grad_spikes, grad_v_final, x, v0, tau, dsg, gx, gv0, gtau, kind,
                            soft, v_th, v_reset, detach_reset, m0, m1, h=None):
    """``membra::neuron_bwd_cols`` with Triton (CPU interpreter only): the backward of
    neurons ``[m0, m1)`` with the derivative ``dsg`` (kernel code 4), into the outputs; ``h``
    (``[T, m1 - m0]``) when given, else the block's forward is re-run."""
    cols = slice(m0, m1)
    xs, vs = x[:, cols].contiguous(), v0[cols].contiguous()
    if h is None:
        h = _forward(xs, vs, tau, kind, soft, v_th, v_reset)[2]
    g = launch_backward(kind, grad_spikes[:, cols].contiguous(),
                        _grad_v_final(None if grad_v_final is None else grad_v_final[cols], vs),
                        None, h, None, xs, vs, tau,
                        kernel_params(vs, v_th, v_reset, detach_reset=detach_reset),
                        dsg.to(h.dtype).contiguous(), None, None, soft,
                        kernel_surrogate_code(0, dsg, None), gtau is not None)
    gx[:, cols], gv0[cols] = g[0], g[1]
    if gtau is not None:
        gtau[cols] = g[3]


#: the fused LIF ops and their Triton implementation on CPU tensors (interpreter only)
_CPU_SWAPS = ((neuron_fwd, _neuron_fwd_triton), (neuron_bwd, _neuron_bwd_triton),
              (neuron_infer, _neuron_infer_triton), (neuron_h, _neuron_h_triton),
              (neuron_bwd_cols, _neuron_bwd_cols_triton))


@contextlib.contextmanager
def interpret_on_cpu():
    """For testing without a GPU: inside, the Triton kernels run on CPU tensors in Triton's
    interpreter. The ``triton`` backend accepts CPU tensors, the fused LIF/IF ops' CPU kernels
    are the Triton ones (the C++ kernels are back on exit) and the CubaLIF/ALIF sequences
    with ``backend="triton"`` run :mod:`.triton_models`. Needs triton and
    ``TRITON_INTERPRET=1`` in the environment before the kernels are first imported (Triton
    reads it when it decorates them); ``RuntimeError`` otherwise. Slow (numpy per block op):
    for equivalence tests, never for training."""
    if importlib.util.find_spec("triton") is None:
        raise RuntimeError("interpret_on_cpu needs triton (`make triton-interp`)")
    if os.environ.get("TRITON_INTERPRET") != "1":
        raise RuntimeError("interpret_on_cpu needs TRITON_INTERPRET=1 in the environment "
                           "before the Triton kernels are imported")
    if type(_kernels()[0]).__name__ != "InterpretedFunction":
        raise RuntimeError("the Triton kernels were imported without TRITON_INTERPRET=1; "
                           "set it before membra first runs a Triton kernel")
    if _ON_CPU["on"]:
        raise RuntimeError("interpret_on_cpu is already active")
    backend = _BACKENDS["triton"]
    saved = [(op, op._backend_fns.get("cpu")) for op, _ in _CPU_SWAPS]
    devices = backend.devices
    try:
        for op, fn in _CPU_SWAPS:
            op.register_kernel("cpu", fn)
        backend.devices = devices + ("cpu",)
        _ON_CPU["on"] = True
        yield
    finally:
        _ON_CPU["on"] = False
        backend.devices = devices
        for op, fn in saved:
            # torch.library keeps one kernel per device type in this table, read per call
            if fn is None:
                op._backend_fns.pop("cpu", None)
            else:
                op._backend_fns["cpu"] = fn


register_backend("triton", fused_sequence, available=triton_available, devices=("cuda",))
