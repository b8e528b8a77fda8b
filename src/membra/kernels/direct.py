"""Eager calls of membra's ops without their Python dispatch, where nothing can tell.

A ``torch.library.custom_op`` call goes through the dispatcher and the op's Python wrappers
(argument defaults, the autograd wrapper, a ``torch.compiler.disable`` frame per call): about
0.15 ms per fwd+bwd on this machine's CPU, more than the kernels themselves on a control
actor's ``[5, 1, 256]`` or a recurrent layer's per-step ``[64, 1024]``
(``python -m membra.bench.small``). In eager mode on plain tensors the same kernel can be
called directly (:func:`call`), and an op with an autograd formula can run as a plain
:class:`torch.autograd.Function` built from the same ``setup_context`` and ``backward``
(:func:`autograd_function`, :func:`apply`): same kernel, same saved tensors, same backward.

Whenever something could see the op, the op runs: ``torch.compile``/``torch.export`` tracing,
``torch.jit.trace``, a torch-function or dispatch mode (fake tensors, op counters), a functorch
transform, a tensor subclass, or (for ops without an autograd formula) an input that needs a
gradient, as in a double backward. Under the profiler the direct call is recorded under the
op's name. The kernel called is the op's current kernel for the device (``_backend_fns``), so a
kernel swapped in later (Triton's CPU interpreter) is the one called.
"""

from __future__ import annotations

import contextlib
import threading

import torch

__all__ = ["unobserved", "kernel", "call", "autograd_function", "apply", "through_the_ops",
           "enabled"]


class _State(threading.local):
    #: whether eager calls on this thread may skip the ops' dispatch
    on = True


_STATE = _State()


def enabled() -> bool:
    """Whether eager calls on this thread may skip the ops' dispatch (not inside
    :func:`through_the_ops`)."""
    return _STATE.on


def unobserved(x: torch.Tensor) -> bool:
    """Whether calling a kernel directly is indistinguishable from calling its op: eager
    mode on a plain tensor, with no torch-function or dispatch mode (fake tensors,
    ``torch.export``, op counters), no ``torch.jit.trace`` and no functorch transform
    active."""
    return (_STATE.on and type(x) is torch.Tensor and not torch.compiler.is_compiling()
            and torch._C._get_tracing_state() is None
            and not torch._C._is_torch_function_mode_enabled()
            and torch._C._len_torch_dispatch_stack() == 0
            and not torch._C._are_functorch_transforms_active())


def _device_kernel(op, device_type: str):
    """``op``'s kernel for ``device_type`` (``None`` if it has none) without the
    ``torch.compiler.disable`` frame ``register_kernel`` wraps it in: that frame costs a
    dynamo call (and, on the first, the import of ``torch._dynamo``), and nothing is being
    compiled when a kernel is called directly. What it wraps still honours
    ``op.set_kernel_enabled``."""
    fn = op._backend_fns.get(device_type)
    return getattr(fn, "__wrapped__", fn)


def kernel(op, x: torch.Tensor):
    """``op``'s kernel for ``x``'s device when it may be called directly, else ``None``."""
    return _device_kernel(op, x.device.type) if unobserved(x) else None


def _recorded(op, fn, args):
    if torch.autograd._profiler_enabled():
        with torch.autograd.profiler.record_function(f"{op._namespace}::{op._name}"):
            return fn(*args)
    return fn(*args)


def call(op, *args):
    """``op(*args)`` for an op without an autograd formula: its kernel directly when nothing
    can tell (no argument needs a gradient, see the module doc), else through the op. The
    first argument is the tensor that decides."""
    fn = kernel(op, args[0])
    if fn is None or (torch.is_grad_enabled() and any(
            isinstance(a, torch.Tensor) and a.requires_grad for a in args)):
        return op(*args)
    return _recorded(op, fn, args)


def autograd_function(op, setup_context, backward):
    """A :class:`torch.autograd.Function` that runs ``op``'s kernel for the input's device
    with ``op``'s own autograd formula (the functions given to ``op.register_autograd``).
    Its ``forward`` takes ``ctx`` and calls ``setup_context`` itself: a separate
    ``setup_context`` makes every ``apply`` bind the arguments with :mod:`inspect`."""

    def forward(ctx, *args):
        out = _device_kernel(op, args[0].device.type)(*args)
        setup_context(ctx, args, out)
        return out

    return type(f"Direct_{op._name}", (torch.autograd.Function,), {
        "forward": staticmethod(forward), "backward": staticmethod(backward)})


def apply(op, function, *args):
    """``op(*args)``, as ``function.apply(*args)`` (from :func:`autograd_function`) when the
    op's kernel may be called directly."""
    if kernel(op, args[0]) is None:
        return op(*args)
    return _recorded(op, function.apply, args)


@contextlib.contextmanager
def through_the_ops():
    """Every call on this thread through its op's dispatch, as before the direct calls (for
    benchmarks and tests that compare the two); other threads are not affected."""
    saved, _STATE.on = _STATE.on, False
    try:
        yield
    finally:
        _STATE.on = saved
