r"""A custom surrogate's derivative as one fused loop: :func:`derivative_at`.

The fused backward needs :math:`\sigma'(h - v_{th})` of a custom surrogate at every step. In
eager PyTorch that is the subtraction, every op of ``f`` and every op of its autograd backward,
each a pass over ``[T, M]`` (about 14x the time of the built-in, evaluated inline by the kernel,
at ``[16, 64, 16384]``). For large layers on the CPU, :func:`derivative_at` instead compiles

.. math:: d(h, v_{th}) = \mathrm{vjp}(f, h - v_{th})(1)

with :func:`torch.compile` (``torch.func.vjp``: the derivative of an elementwise ``f``), which
inductor fuses into one loop that reads ``h`` and writes ``d``. It is made lazily, the first
time a custom surrogate meets a layer of at least :data:`MIN_ELEMENTS` values, so
``import membra`` never imports ``torch._dynamo``; dynamo's guards re-trace it when ``f``'s
closure, a module parameter it reads or the dtype change, so the result is always
``f``'s derivative now. ``f`` must be a pure elementwise function (as for the eager path);
Python side effects in ``f`` run when it is traced, not at every call.

Where compiling is not possible (no C++ compiler, an ``f`` dynamo cannot trace through
``torch.func``) the surrogate falls back to the eager derivative for the rest of the process,
after one warning. ``MEMBRA_COMPILE_SURROGATE=0`` turns compiling off.
"""

from __future__ import annotations

import os
import warnings
import weakref

import torch

from .surrogate import Surrogate

__all__ = ["derivative_at", "MIN_ELEMENTS", "compile_enabled"]

#: layers (``T * M`` values) from this size on get the compiled derivative; below it the eager
#: derivative costs less than the first compilation (seconds) could ever save
MIN_ELEMENTS = 1 << 22
#: per surrogate function ``f`` (held weakly where ``f`` allows it: a layer or a call makes a
#: new :class:`Surrogate` around the same ``f``): its compiled derivative, ``None`` once
#: compiling failed
_COMPILED: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
_COMPILED_STRONG: dict = {}


def _cache(f) -> dict:
    """The cache that can hold ``f`` (weakly when ``f`` can be weakly referenced)."""
    try:
        weakref.ref(f)
    except TypeError:
        return _COMPILED_STRONG
    return _COMPILED


def compile_enabled() -> bool:
    """``False`` when ``MEMBRA_COMPILE_SURROGATE=0``."""
    return os.environ.get("MEMBRA_COMPILE_SURROGATE", "1") != "0"


def _eligible(s: Surrogate, h: torch.Tensor, layer_elements: int) -> bool:
    """Compile for a custom surrogate on a large CPU layer of real tensors (not while
    ``torch.compile`` or ``torch.export`` trace the caller: they see the eager derivative)."""
    return (not s.builtin and layer_elements >= MIN_ELEMENTS and h.device.type == "cpu"
            and type(h) is torch.Tensor and compile_enabled()
            and not torch.compiler.is_compiling()
            and _cache(s.function).get(s.function, True) is not None)


def _make(s: Surrogate):
    """``d(out, h, v_th)`` of ``s``, compiled (dynamic shapes: one trace for every block width):
    the derivative into ``out``, which must not overlap ``h`` (a compiled graph is not
    re-checked for aliasing when it is loaded from inductor's cache)."""
    f = s.function

    def d(out: torch.Tensor, h: torch.Tensor, v_th: torch.Tensor) -> None:
        y, vjp = torch.func.vjp(f, h - v_th)
        if not isinstance(y, torch.Tensor) or y.shape != h.shape:
            raise ValueError(_NOT_ELEMENTWISE)
        out.copy_(vjp(torch.ones_like(y))[0])

    return torch.compile(d, dynamic=True)


_NOT_ELEMENTWISE = "not elementwise"


def derivative_at(s: Surrogate, h: torch.Tensor, v_th: float, layer_elements: int | None = None,
                  *, out: torch.Tensor | None = None) -> torch.Tensor:
    """:math:`\\sigma'(h - v_{th})` in ``h``'s dtype, contiguous. For a custom surrogate on a
    large layer (``layer_elements`` values, default ``h.numel()``) compiled, and then written
    into ``out`` when given (contiguous, like ``h``, not overlapping it): nothing new is
    allocated. Otherwise, and when compiling fails, the eager :meth:`Surrogate.derivative`."""
    n = h.numel() if layer_elements is None else layer_elements
    if _eligible(s, h, n):
        cache = _cache(s.function)
        fn = cache.get(s.function)
        if fn is None:
            fn = cache[s.function] = _make(s)
        if out is None:
            out = torch.empty_like(h, memory_format=torch.contiguous_format)
        try:
            with torch.no_grad():
                fn(out, h, h.new_tensor(v_th))
            return out
        except Exception as e:  # noqa: BLE001 - whatever failed, evaluate eagerly from now on
            cache[s.function] = None
            if not (isinstance(e, ValueError) and str(e) == _NOT_ELEMENTWISE):
                why = str(e).strip().splitlines()[-1] if str(e).strip() else ""
                warnings.warn(f"membra: the derivative of surrogate {s.name!r} could not be "
                              f"compiled ({type(e).__name__}: {why}); evaluating it eagerly",
                              RuntimeWarning, stacklevel=2)
    # (a surrogate that is not elementwise raises here, with the eager path's full message)
    return s.derivative(h - v_th).to(h.dtype).contiguous()
