r"""The fused neuron op: one ``torch.library`` op per operation, a kernel per device.

``membra::neuron_fwd`` runs a layer over ``x [T, M]`` from ``v0 [M]`` and returns
``(spikes, v_T, h, v)``; ``membra::neuron_bwd`` is its BPTT backward (``docs/kernels.md``).
The C++ kernels register for ``"cpu"`` (:mod:`membra.kernels.cpu`), the Triton kernels for
``"cuda"`` (:mod:`membra.kernels.triton_backend`), so PyTorch dispatches by the tensors'
device and autograd, ``torch.compile`` and ``torch.export`` see one op.

``h`` (the charged potential, state dtype) is written when ``save_h`` (the backward of the
Triton kernels and of custom surrogates reads it) and ``v`` (the potential after reset) when
``trace_v``; both are empty otherwise. With ``trace_v`` both are differentiable outputs.

The surrogate is an int: a built-in's ``code`` (evaluated inline by the kernels) or, for any
other :class:`membra.functional.Surrogate`, a token of :func:`surrogate_token`. Then, and for
traces, the backward evaluates ``surrogate.derivative(h - v_th)`` over all steps in one torch
call and hands the tensor to the kernel (``PRECOMPUTED`` codes 4 / 5 of the kernels).
"""

from __future__ import annotations

import itertools
import weakref

import torch

from ..functional.kinds import NeuronKind
from ..functional.surrogate import SURROGATES, Surrogate
from ..functional.surrogate_compiled import derivative_at
from . import compiled_backward, direct
from ._prep import flatten_inputs, tau_tensor

__all__ = ["OPS", "neuron_fwd", "neuron_bwd", "neuron_infer", "fused_sequence",
           "surrogate_token", "SPIKE_DTYPES",
           "trace_buffer", "kernel_surrogate_code", "KERNEL_PRECOMPUTED", "new_output",
           "KERNEL_PRECOMPUTED_TRACE"]

OPS = ("membra::neuron_fwd", "membra::neuron_bwd", "membra::neuron_infer", "membra::neuron_h",
       "membra::neuron_bwd_cols")
#: bytes of ``[T, block]`` state per thread per block of a custom surrogate's blockwise
#: backward (CPU): the most its derivative buffer takes. Large, because every block costs a
#: call of the (compiled) derivative and two parallel regions, and on the shared 2-core machine
#: fewer, larger blocks measured faster in wall and in CPU time than cache-sized ones (1 MiB:
#: 2.1x the built-in's CPU time, 8 MiB: 1.5x, 64 MiB: 1.4x at [16, 64, 16384], one thread)
BLOCK_BYTES = 64 << 20
#: per device type, ``(shape, dtype) -> uninitialised tensor`` for large outputs (the cpu
#: backend installs its pool here)
NEW_OUTPUT: dict = {}
#: per device type, ``(active, bind)``: the walk back of one block of :func:`_blockwise_backward`
#: without an op dispatch per block (the cpu backend installs its C++ kernel). ``active()``:
#: whether that kernel serves :func:`neuron_bwd_cols` now; ``bind(x, v0, tau, kind, soft, v_th,
#: v_reset, detach, gs, gv, gx, gv0, gtau)`` checks the layer's tensors once and returns
#: ``back(m0, m1, dsg, h)``; ``x`` may be ``None`` when ``h`` is given and tau needs no gradient
BLOCK_KERNELS: dict = {}
#: what ``spike_dtype=`` accepts besides ``None`` (spikes in x's dtype)
SPIKE_DTYPES = (torch.bool, torch.uint8)
#: kernel surrogate codes of a derivative given as a tensor (without / with trace gradients)
KERNEL_PRECOMPUTED, KERNEL_PRECOMPUTED_TRACE = 4, 5
_FIRST_TOKEN = 16
_BY_CODE = {s.code: s for s in SURROGATES.values()}
_TOKENS: weakref.WeakValueDictionary = weakref.WeakValueDictionary()
_TOKEN_OF: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
_COUNTER = itertools.count(_FIRST_TOKEN)


def new_output(shape, dtype: torch.dtype, device) -> torch.Tensor:
    """An uninitialised contiguous tensor for a kernel's output: from the device's pool of
    already mapped memory (:data:`NEW_OUTPUT`: the cpu backend's) when it has one, else
    ``torch.empty`` (a fresh large CPU tensor faults in every page on first touch)."""
    new = NEW_OUTPUT.get(torch.device(device).type)
    if new is not None:
        return new(tuple(shape), dtype)
    return torch.empty(tuple(shape), dtype=dtype, device=device)


def surrogate_token(s: Surrogate) -> int:
    """The int the op carries for ``s``: a built-in's code, else a token that maps back to
    ``s`` while it lives (held weakly; the autograd context holds it until backward)."""
    if s.builtin:
        return s.code
    tok = _TOKEN_OF.get(s)
    if tok is None:
        tok = next(_COUNTER)
        _TOKEN_OF[s], _TOKENS[tok] = tok, s
    return tok


def _surrogate_of(code: int, alpha: float) -> Surrogate:
    if code in _BY_CODE:
        return _BY_CODE[code].with_alpha(alpha)
    s = _TOKENS.get(code)
    if s is None:
        raise RuntimeError(f"membra::neuron_fwd: custom surrogate token {code} is no longer "
                           "alive; keep the Surrogate object until the backward pass")
    return s


def _no_kernel(x: torch.Tensor, op: str):
    raise NotImplementedError(f"{op} has no kernel for device {x.device.type!r} here "
                              "(cpu: the C++ kernels, cuda: Triton); use backend='reference'")


@torch.library.custom_op(OPS[0], mutates_args=())
def neuron_fwd(x: torch.Tensor, v0: torch.Tensor, tau: torch.Tensor, kind: int, soft: bool,
               v_th: float, v_reset: float, surrogate: int, alpha: float, detach_reset: bool,
               save_h: bool, trace_v: bool
               ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Fused forward on ``x [T, M]`` from ``v0 [M]``: ``(spikes, v_T, h, v)``."""
    _no_kernel(x, OPS[0])


@neuron_fwd.register_fake
def _(x, v0, tau, kind, soft, v_th, v_reset, surrogate, alpha, detach_reset, save_h, trace_v):
    return (torch.empty_like(x), torch.empty_like(v0), trace_buffer(x, v0, save_h or trace_v),
            trace_buffer(x, v0, trace_v))


@torch.library.custom_op(OPS[2], mutates_args=())
def neuron_infer(x: torch.Tensor, v0: torch.Tensor, tau: torch.Tensor, kind: int, soft: bool,
                 v_th: float, v_reset: float, spike_dtype: torch.dtype
                 ) -> tuple[torch.Tensor, torch.Tensor]:
    """Forward only, nothing saved, no autograd: ``(spikes [T, M] as spike_dtype, v_T [M])``;
    a bool/uint8 spike is ``s != 0`` (a NaN spike gives 1, as ``.to(torch.bool)`` does). This
    default (every device without its own kernel) runs :func:`neuron_fwd` and converts."""
    s, v_final, _, _ = neuron_fwd(x, v0, tau, kind, soft, v_th, v_reset, 0, 0.0, True,
                                  x.device.type != "cpu", False)
    return (s if spike_dtype == s.dtype else s.ne(0).to(spike_dtype)), v_final


@neuron_infer.register_fake
def _(x, v0, tau, kind, soft, v_th, v_reset, spike_dtype):
    return torch.empty_like(x, dtype=spike_dtype), torch.empty_like(v0)


@torch.library.custom_op(OPS[3], mutates_args=("out",))
def neuron_h(x: torch.Tensor, v0: torch.Tensor, tau: torch.Tensor, kind: int, soft: bool,
             v_th: float, v_reset: float, m0: int, m1: int, out: torch.Tensor) -> None:
    """Write the charged potential ``h`` of neurons ``[m0, m1)`` of ``x [T, M]`` into ``out``
    (contiguous ``[T, m1 - m0]``, state dtype): the forward re-run for one block."""
    _no_kernel(x, OPS[3])


@neuron_h.register_fake
def _(x, v0, tau, kind, soft, v_th, v_reset, m0, m1, out):
    return None


@torch.library.custom_op(OPS[4], mutates_args=("gx", "gv0", "gtau"))
def neuron_bwd_cols(grad_spikes: torch.Tensor, grad_v_final: torch.Tensor | None,
                    x: torch.Tensor, v0: torch.Tensor, tau: torch.Tensor, dsg: torch.Tensor,
                    gx: torch.Tensor, gv0: torch.Tensor, gtau: torch.Tensor | None, kind: int,
                    soft: bool, v_th: float, v_reset: float, detach_reset: bool, m0: int,
                    m1: int, h: torch.Tensor | None = None) -> None:
    """The backward of neurons ``[m0, m1)`` with their surrogate derivative ``dsg
    [T, m1 - m0]``, written into those neurons of ``gx [T, M]``, ``gv0 [M]`` and ``gtau [M]``
    (the per-neuron terms of the tau gradient; ``None`` when not wanted). ``grad_v_final``
    ``None`` is zero; ``h`` (their ``[T, m1 - m0]`` charged potential, or ``None``) is read
    instead of re-running the forward when no tau gradient is wanted."""
    _no_kernel(x, OPS[4])


@neuron_bwd_cols.register_fake
def _(grad_spikes, grad_v_final, x, v0, tau, dsg, gx, gv0, gtau, kind, soft, v_th, v_reset,
      detach_reset, m0, m1, h=None):
    return None


def _direct_block_kernel(device_type: str):
    """``bind`` of :data:`BLOCK_KERNELS` for this device when active, else ``None``."""
    entry = BLOCK_KERNELS.get(device_type)
    return entry[1] if entry is not None and entry[0]() else None


def _op_block_kernel(x, v0, tau, kind, soft, v_th, v_reset, detach, gs, gv, gx, gv0, gtau):
    """The walk back of one block through the op :func:`neuron_bwd_cols` (any kernel)."""
    if x is None:
        raise RuntimeError("membra::neuron_bwd_cols: the cpu kernels changed between forward "
                           "and backward; run the backward under the kernels of the forward")

    def back(m0, m1, dsg, h):  # (h unused: the kernel re-runs the forward of the block)
        neuron_bwd_cols(gs, gv, x, v0, tau, dsg, gx, gv0, gtau, kind, soft, v_th, v_reset,
                        detach, m0, m1)

    return back


def _blockwise_backward(ctx, gs, gv, x, h, v0, tau, need_tau):
    r"""A custom surrogate's backward from the forward's saved charged potential ``h [T, M]``:
    per block of neurons (at most ``BLOCK_BYTES`` of ``[T, block]`` per thread: one block for
    most layers) evaluate :math:`\sigma'(h - v_{th})` into one reused buffer, vectorised over
    all steps (:func:`membra.functional.surrogate_compiled.derivative_at`), and walk the block
    back in time with it and ``h`` in one kernel call (with a tau gradient the walk re-runs the
    forward from ``x`` for its charge terms). Where it can, the derivative and the walk back
    run as one compiled loop instead (:mod:`membra.kernels.compiled_backward`)."""
    kind, soft, v_th, v_reset, _, _, detach = ctx.args
    shape, dtype, device = ctx.x_meta
    # (the C++ kernels' walk back, in torch ops: not while other kernels serve the cpu)
    if (_direct_block_kernel(device.type) is not None
            and compiled_backward.usable(ctx.surrogate, gs, h, need_tau)):
        done = compiled_backward.walk_back(ctx.surrogate, gs, gv, h, tau, kind, soft, v_th,
                                           v_reset, detach)
        if done is not None:
            return (*done, torch.zeros_like(tau))
    T, M = shape
    gx = new_output(shape, dtype, device)
    gv0 = torch.empty_like(v0)
    gtau_m = torch.empty_like(v0) if need_tau else None
    width = max(1, min(M, BLOCK_BYTES * torch.get_num_threads()
                       // max(1, T * v0.element_size())))
    # one buffer for every block's derivative (never h's memory: a compiled derivative is
    # traced for distinct input and output)
    dbuf = new_output((T * width,), v0.dtype, device)
    args = (x, v0, tau, kind, soft, v_th, v_reset, detach, gs, gv, gx, gv0, gtau_m)
    back = (_direct_block_kernel(device.type) or _op_block_kernel)(*args)
    for m0 in range(0, M, width):
        m1 = min(M, m0 + width)
        hb = h[:, m0:m1]
        dsg = derivative_at(ctx.surrogate, hb, v_th, T * M,
                            out=dbuf[:T * (m1 - m0)].view(T, m1 - m0))
        back(m0, m1, dsg, None if need_tau else hb)
    gtau = (gtau_m.sum(dtype=torch.float64).to(tau.dtype).reshape(()) if need_tau and M
            else torch.zeros_like(tau))
    return gx, gv0, gtau


def trace_buffer(x: torch.Tensor, v0: torch.Tensor, wanted: bool) -> torch.Tensor:
    """``[T, M]`` in the state dtype when ``wanted``, else an empty ``[0]`` placeholder."""
    return x.new_empty(x.shape if wanted else (0,), dtype=v0.dtype)


@torch.library.custom_op(OPS[1], mutates_args=())
def neuron_bwd(grad_spikes: torch.Tensor, grad_v_final: torch.Tensor | None, x: torch.Tensor,
               h: torch.Tensor, v0: torch.Tensor, tau: torch.Tensor, dsg: torch.Tensor | None,
               grad_h: torch.Tensor | None, grad_v: torch.Tensor | None, kind: int, soft: bool,
               v_th: float, v_reset: float, surrogate: int, alpha: float, detach_reset: bool,
               need_tau: bool) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Fused BPTT backward: ``(grad_x [T, M], grad_v0 [M], grad_tau [])``; ``grad_v_final``
    ``None`` is zero (the cpu kernels; the cuda ones are given zeros). ``dsg`` is the
    surrogate derivative at every step (or ``None``: the built-in ``surrogate`` inline);
    ``grad_h`` / ``grad_v`` the gradients of a trace (both or neither, with ``dsg``)."""
    _no_kernel(x, OPS[1])


@neuron_bwd.register_fake
def _(grad_spikes, grad_v_final, x, h, v0, tau, dsg, grad_h, grad_v, kind, soft, v_th, v_reset,
      surrogate, alpha, detach_reset, need_tau):
    return torch.empty_like(grad_spikes), torch.empty_like(v0), torch.empty_like(tau)


def _blockwise(device: torch.device, surrogate: Surrogate, traced: bool) -> bool:
    """Whether the backward is :func:`_blockwise_backward`: a custom surrogate on CPU, no
    trace gradients."""
    return device.type == "cpu" and not traced and not surrogate.builtin


def _setup_context(ctx, inputs, output):
    x, v0, tau, kind, soft, v_th, v_reset, sg, alpha, detach, save_h, trace_v = inputs
    _, _, h, _ = output
    if not trace_v:
        ctx.mark_non_differentiable(*output[2:])
    ctx.set_materialize_grads(False)
    ctx.surrogate = _surrogate_of(sg, alpha)  # holds a custom surrogate until backward
    # the cpu kernels recompute from x, except a custom surrogate's blockwise backward, which
    # reads h; the Triton kernels read h; x only for tau
    keep_x = tau.requires_grad or (x.device.type == "cpu" and not (
        _blockwise(x.device, ctx.surrogate, trace_v)
        and _direct_block_kernel(x.device.type) is not None))
    ctx.save_for_backward(x if keep_x else None, h if (save_h or trace_v) else None, v0, tau)
    ctx.x_meta = (x.shape, x.dtype, x.device)
    ctx.args = (kind, soft, v_th, v_reset, sg, alpha, detach)
    ctx.trace_v = trace_v


def _backward(ctx, grad_spikes, grad_v_final, grad_h, grad_v):
    x, h, v0, tau = ctx.saved_tensors
    shape, dtype, device = ctx.x_meta
    kind, soft, v_th, v_reset, sg, alpha, detach = ctx.args
    need_tau = bool(ctx.needs_input_grad[2]) and kind == NeuronKind.LIF.code
    gs = (torch.zeros(shape, dtype=dtype, device=device) if grad_spikes is None
          else grad_spikes.to(dtype).contiguous())
    traced = ctx.trace_v and (grad_h is not None or grad_v is not None)
    if grad_v_final is not None:
        gv = grad_v_final.to(v0.dtype).contiguous()
    else:  # the cpu kernels take no gradient of v_T as zero: no [M] zero-fill
        gv = None if device.type == "cpu" else torch.zeros_like(v0)
    if _blockwise(device, ctx.surrogate, traced):
        gx, gv0, gtau = _blockwise_backward(ctx, gs, gv, x, h, v0, tau, need_tau)
        return (gx, gv0, gtau if need_tau else None) + (None,) * 9
    dsg = None
    if traced or not ctx.surrogate.builtin:
        dsg = derivative_at(ctx.surrogate, h, v_th)
    if traced:
        grad_h = torch.zeros_like(h) if grad_h is None else grad_h.to(h.dtype).contiguous()
        grad_v = torch.zeros_like(h) if grad_v is None else grad_v.to(h.dtype).contiguous()
    else:
        grad_h = grad_v = None
    xx = x if x is not None else h  # read only for the gradient of tau
    gx, gv0, gtau = direct.call(neuron_bwd, gs, gv, xx, h if h is not None else gs.new_empty(0),
                                v0, tau, dsg, grad_h, grad_v, kind, soft, v_th, v_reset, sg,
                                alpha, detach, need_tau)
    return (gx, gv0, gtau if need_tau else None) + (None,) * 9


neuron_fwd.register_autograd(_backward, setup_context=_setup_context)
#: :func:`neuron_fwd` with its autograd formula, without the op's dispatch (:mod:`.direct`)
_NEURON_FWD_DIRECT = direct.autograd_function(neuron_fwd, _setup_context, _backward)


def kernel_surrogate_code(surrogate: int, dsg, grad_h) -> int:
    """What the kernels evaluate: the built-in's code, or a precomputed derivative (with the
    trace's gradients when ``grad_h`` is given)."""
    if dsg is None:
        return surrogate
    return KERNEL_PRECOMPUTED if grad_h is None else KERNEL_PRECOMPUTED_TRACE


def _infer(x2, v, tau, kind: NeuronKind, soft: bool, v_th: float, v_reset: float,
           spike_dtype):
    """:func:`neuron_infer`, its kernel called directly where nothing can tell
    (:func:`.direct.call`). ``tau``: a 0-d tensor, a number, or ``None`` (IF); the op path
    gets a tensor."""
    if not isinstance(tau, torch.Tensor) and direct.kernel(neuron_infer, x2) is None:
        tau = tau_tensor(tau, v.dtype, x2.device)
    return direct.call(neuron_infer, x2, v, tau, kind.code, soft, v_th, v_reset, spike_dtype)


def _as(t: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """``t.to(dtype)``, skipping the call when it would return ``t`` (small-input overhead)."""
    return t if t.dtype == dtype else t.to(dtype)


def fused_sequence(x, v0, tau, *, kind: NeuronKind, v_th, v_reset, reset, surrogate: Surrogate,
                   detach_reset, trace=False, spike_dtype=None):
    """Backend entry (see :mod:`membra.kernels.dispatch`): the fused op on flattened input;
    ``(spikes, v_T)``, or ``(spikes, v_T, h, v)`` with ``trace``. Without a gradient to
    compute (``torch.no_grad()``, or no input that requires grad) and without ``trace`` it runs
    :func:`neuron_infer`, which saves nothing (and writes ``spike_dtype`` spikes directly)."""
    # the cpu kernels read float32 / float64 / bfloat16: float16 is computed in float32
    xk = x.float() if x.dtype == torch.float16 and x.device.type == "cpu" else x
    x2, v, tau_t = flatten_inputs(xk, v0, tau, tau_as_tensor=False,
                                  new=NEW_OUTPUT.get(x.device.type))
    needs_grad = torch.is_grad_enabled() and any(
        isinstance(t, torch.Tensor) and t.requires_grad for t in (x2, v, tau_t))
    if not (needs_grad or trace):
        s2, v_final = _infer(x2, v, tau_t, kind, reset == "soft", float(v_th), float(v_reset),
                             spike_dtype or x2.dtype)
        return (_as(s2.reshape(x.shape), spike_dtype or x.dtype),
                _as(v_final.reshape(x.shape[1:]), x.dtype))
    # h for the Triton kernels' backward and for a custom surrogate's (its derivative's input)
    save_h = trace or x.device.type != "cpu" or not surrogate.builtin
    if not isinstance(tau_t, torch.Tensor):
        tau_t = tau_tensor(tau_t, v.dtype, x.device)
    s2, v_final, h, vs = direct.apply(
        neuron_fwd, _NEURON_FWD_DIRECT, x2, v, tau_t, kind.code, reset == "soft", float(v_th),
        float(v_reset), surrogate_token(surrogate), float(surrogate.alpha or 0.0),
        bool(detach_reset), save_h, bool(trace))
    out = (s2.reshape(x.shape).to(x.dtype), v_final.reshape(x.shape[1:]).to(x.dtype))
    if trace:
        out += (h.reshape(x.shape).to(x.dtype), vs.reshape(x.shape).to(x.dtype))
    return out
