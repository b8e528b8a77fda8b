r"""A custom surrogate's derivative as one fused loop: :func:`derivative_at`.

The fused backward needs :math:`\sigma'(h - v_{th})` of a custom surrogate at every step. In
eager PyTorch that is the subtraction, every op of ``f`` and every op of its autograd backward,
each a pass over ``[T, M]`` (about 14x the time of the built-in, evaluated inline by the kernel,
at ``[16, 64, 16384]`` on CPU). For large layers (CPU or CUDA), :func:`derivative_at` instead
compiles

.. math:: d(h, v_{th}) = \mathrm{vjp}(f, h - v_{th})(1)

with :func:`torch.compile` (``torch.func.vjp``: the derivative of an elementwise ``f``), which
inductor fuses into one loop that reads ``h`` and writes ``d``. It is made lazily, the first
time a custom surrogate meets a layer of at least :data:`MIN_ELEMENTS` values, so
``import membra`` never imports ``torch._dynamo``; dynamo's guards re-trace it when ``f``'s
closure, a module parameter it reads or the dtype change, so the result is always
``f``'s derivative now. ``f`` must be a pure elementwise function (as for the eager path);
Python side effects in ``f`` run when it is traced, not at every call.

The same cache serves every compiled function of a surrogate (:func:`run_compiled`, keyed per
use: the derivative here, the whole walk back of :mod:`membra.kernels.compiled_backward`).
Where compiling is not possible (no C++ compiler, an ``f`` dynamo cannot trace through
``torch.func``) that use falls back to the eager code for the rest of the process, after one
warning. ``MEMBRA_COMPILE_SURROGATE=0`` turns compiling off.
"""

from __future__ import annotations

import os
import warnings
import weakref

import torch

from .surrogate import Surrogate

__all__ = ["derivative_at", "derivative_of", "eligible", "run_compiled", "FAILED",
           "MIN_ELEMENTS", "RECOMPILE_LIMIT", "compile_enabled"]

#: layers (``T * M`` values) from this size on get compiled code; below it the eager
#: derivative costs less than the first compilation (seconds) could ever save
MIN_ELEMENTS = 1 << 22
#: traces dynamo keeps per compiled function before it gives up on it (its default, 8, is
#: reached by a walk back traced once per step count, see :mod:`membra.kernels.compiled_backward`)
RECOMPILE_LIMIT = 256
#: devices whose layers get compiled code (inductor writes a C++ loop on CPU, a Triton kernel
#: on CUDA)
COMPILED_DEVICES = ("cpu", "cuda")
#: what :func:`run_compiled` returns when the compiled code could not run
FAILED = object()
#: per surrogate function ``f`` (held weakly where ``f`` allows it: a layer or a call makes a
#: new :class:`Surrogate` around the same ``f``): ``{key: compiled function, or None once
#: compiling it failed}``, one key per use (``"derivative"``, the walk back ...)
_ENTRIES: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
_ENTRIES_STRONG: dict = {}
NOT_ELEMENTWISE = "not elementwise"


def _entries(f) -> dict:
    """The compiled functions of ``f`` by key (held weakly when ``f`` can be weakly
    referenced)."""
    try:
        weakref.ref(f)
    except TypeError:
        return _ENTRIES_STRONG.setdefault(f, {})
    entries = _ENTRIES.get(f)
    if entries is None:
        entries = _ENTRIES[f] = {}
    return entries


def compile_enabled() -> bool:
    """``False`` when ``MEMBRA_COMPILE_SURROGATE=0``."""
    return os.environ.get("MEMBRA_COMPILE_SURROGATE", "1") != "0"


def eligible(s: Surrogate, h: torch.Tensor, layer_elements: int, key: str) -> bool:
    """Whether to run ``s``'s compiled ``key``: a custom surrogate on a large CPU or CUDA layer
    of real tensors (not while ``torch.compile`` or ``torch.export`` trace the caller: they
    see the eager code), unless compiling ``key`` for ``s`` failed before."""
    return (not s.builtin and layer_elements >= MIN_ELEMENTS
            and h.device.type in COMPILED_DEVICES
            and type(h) is torch.Tensor and compile_enabled()
            and not torch.compiler.is_compiling()
            and _entries(s.function).get(key, True) is not None)


def derivative_of(f):
    r"""``u -> vjp(f, u)(1)``: :math:`f'(u)` of an elementwise ``f``, traceable by dynamo;
    raises ``ValueError(NOT_ELEMENTWISE)`` when ``f(u)`` is not a tensor of ``u``'s shape."""
    def d(u: torch.Tensor) -> torch.Tensor:
        y, vjp = torch.func.vjp(f, u)
        if not isinstance(y, torch.Tensor) or y.shape != u.shape:
            raise ValueError(NOT_ELEMENTWISE)
        return vjp(torch.ones_like(y))[0]

    return d


def _elementwise(f) -> bool:
    """Whether ``f`` maps a small tensor to one of its shape (an ``f`` that does not is named
    by the eager path; a trace with ``fullgraph`` reports it only as unsupported)."""
    try:
        with torch.no_grad():
            y = f(torch.zeros(2, 3))
    except Exception:  # noqa: BLE001 - the eager path raises it again, with its message
        return False
    return isinstance(y, torch.Tensor) and y.shape == (2, 3)


def run_compiled(s: Surrogate, key: str, make, *args):
    """``s``'s compiled ``key`` (made once by ``make(s.function)``, then cached per ``f``)
    applied to ``args`` without autograd; :data:`FAILED`, after one warning, when it cannot be
    compiled or run (no C++ compiler, an ``f`` dynamo cannot trace through ``torch.func``), and
    from then on :func:`eligible` is ``False`` for ``s`` and ``key``. An ``f`` that is not
    elementwise fails silently: the eager path names it."""
    entries = _entries(s.function)
    fn = entries.get(key)
    if fn is None:
        fn = entries[key] = make(s.function)
    try:
        with torch.no_grad(), torch._dynamo.config.patch(recompile_limit=RECOMPILE_LIMIT):
            return fn(*args)
    except Exception as e:  # noqa: BLE001 - whatever failed, run the eager code from now on
        entries[key] = None
        if _elementwise(s.function):
            why = str(e).strip().splitlines()[-1] if str(e).strip() else ""
            warnings.warn(f"membra: the {key} of surrogate {s.name!r} could not be compiled "
                          f"({type(e).__name__}: {why}); running it eagerly",
                          RuntimeWarning, stacklevel=3)
        return FAILED


def _make_derivative(f):
    """``d(out, h, v_th)``, compiled (dynamic shapes: one trace for every block width): the
    derivative into ``out``, which must not overlap ``h`` (a compiled graph is not re-checked
    for aliasing when it is loaded from inductor's cache)."""
    df = derivative_of(f)

    def d(out: torch.Tensor, h: torch.Tensor, v_th: torch.Tensor) -> None:
        out.copy_(df(h - v_th))

    return torch.compile(d, dynamic=True)


def derivative_at(s: Surrogate, h: torch.Tensor, v_th: float, layer_elements: int | None = None,
                  *, out: torch.Tensor | None = None) -> torch.Tensor:
    """:math:`\\sigma'(h - v_{th})` in ``h``'s dtype, contiguous. For a custom surrogate on a
    large layer (``layer_elements`` values, default ``h.numel()``) compiled, and then written
    into ``out`` when given (contiguous, like ``h``, not overlapping it): nothing new is
    allocated. Otherwise, and when compiling fails, the eager :meth:`Surrogate.derivative`."""
    n = h.numel() if layer_elements is None else layer_elements
    if eligible(s, h, n, "derivative"):
        if out is None:
            out = torch.empty_like(h, memory_format=torch.contiguous_format)
        # (v_th by a fill, not a host-to-device copy, which would wait for the device)
        v = torch.full((), float(v_th), dtype=h.dtype, device=h.device)
        if run_compiled(s, "derivative", _make_derivative, out, h, v) is not FAILED:
            return out
    # (a surrogate that is not elementwise raises here, with the eager path's full message)
    return s.derivative(h - v_th).to(h.dtype).contiguous()
