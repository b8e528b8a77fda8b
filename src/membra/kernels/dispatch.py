"""Backend registry and selection for the neuron-sequence kernels.

A backend is a function ``fn(x, v0, tau, *, kind, v_th, v_reset, reset, surrogate,
detach_reset, trace) -> (spikes, v_final)`` (``(spikes, v_final, h, v)`` with ``trace=True``)
computing the op of ``docs/kernels.md`` on validated input (``x`` ``[T, *N]`` floating point,
``v0`` broadcastable to ``x[0]``, ``tau`` a float or a 0-d tensor, ``None`` for IF, ``kind`` a
:class:`membra.functional.NeuronKind`, ``surrogate`` a :class:`membra.functional.Surrogate`
with its alpha bound). Backends register themselves with :func:`register_backend`, once per
name; ``reference`` always exists and is the oracle the others are tested against.

The fused backends ``cpu`` and ``triton`` are one ``torch.library`` op whose kernel PyTorch
picks by device (:mod:`membra.kernels.fused`); the names remain so that a backend can be forced
and compared. Selection order: the ``backend=`` argument, else the ``MEMBRA_BACKEND``
environment variable, else the device's fused kernel when it can run (:data:`PREFERENCE`).
A backend that was asked for but cannot run (no compiler, no GPU) falls back to ``reference``
with one warning.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Callable
from dataclasses import dataclass

import torch

__all__ = ["Backend", "register_backend", "unregister_backend", "available_backends",
           "list_backends", "select_backend", "PREFERENCE"]


@dataclass
class Backend:
    """A kernel implementation: ``run`` the op; ``available()`` says whether it can run;
    ``devices`` the device types it accepts."""

    name: str
    run: Callable
    available: Callable[[], bool]
    devices: tuple[str, ...]


_BACKENDS: dict[str, Backend] = {}
_WARNED: set[str] = set()
#: each backend's last eager answer to ``available()``, read instead of calling it while
#: ``torch.compile`` traces a call (an availability check may build or search for a module,
#: which the tracer cannot follow: it would break the graph at every call)
_AVAILABLE: dict[str, bool] = {}

#: Preferred backends per device type, best first; ``reference`` runs everywhere.
PREFERENCE: dict[str, tuple[str, ...]] = {
    "cpu": ("cpu", "reference"),
    "cuda": ("triton", "reference"),
}


def register_backend(name: str, run: Callable, *, available: Callable[[], bool] = lambda: True,
                     devices: tuple[str, ...] = ("cpu", "cuda")) -> None:
    """Register backend ``name``; a name that is taken raises ``ValueError`` (remove it with
    :func:`unregister_backend` first)."""
    if name in _BACKENDS:
        raise ValueError(f"a membra kernel backend named {name!r} is already registered; "
                         f"taken names: {list_backends()}")
    _BACKENDS[name] = Backend(name, run, available, tuple(devices))


def unregister_backend(name: str) -> None:
    """Remove backend ``name`` (``reference`` stays: it is the fallback)."""
    if name == "reference":
        raise ValueError("the 'reference' backend cannot be removed")
    _AVAILABLE.pop(name, None)
    if _BACKENDS.pop(name, None) is None:
        raise ValueError(f"no membra kernel backend named {name!r}; known: {list_backends()}")


def list_backends() -> list[str]:
    """Names of all registered backends, available or not."""
    return sorted(_BACKENDS)


def _available(b: Backend) -> bool:
    """``b.available()``; while ``torch.compile`` traces, ``True`` when the last eager answer
    was (the graph then has no break in the backend choice). A ``False`` is asked again: a
    backend can become available (its kernels built), and a stale ``False`` would compile the
    fallback in."""
    if torch.compiler.is_compiling() and _AVAILABLE.get(b.name):
        return True
    ok = _AVAILABLE[b.name] = bool(b.available())
    return ok


def available_backends(device: str | torch.device = "cpu") -> list[str]:
    """Registered backends that can run on ``device`` now."""
    dev = torch.device(device).type
    return [n for n, b in sorted(_BACKENDS.items()) if dev in b.devices and _available(b)]


def _warn_once(msg: str) -> None:
    if msg not in _WARNED:
        _WARNED.add(msg)
        warnings.warn(msg, RuntimeWarning, stacklevel=4)


def select_backend(backend: str | None, device: torch.device) -> Backend:
    """Resolve the backend for ``device`` (argument, then ``MEMBRA_BACKEND``, then default)."""
    name = backend if backend is not None else (os.environ.get("MEMBRA_BACKEND") or None)
    dev = device.type
    if name is not None:
        if name not in _BACKENDS:
            source = "backend" if backend is not None else "MEMBRA_BACKEND"
            raise ValueError(f"{source}={name!r} is not a membra kernel backend; "
                             f"choose one of {list_backends()}")
        b = _BACKENDS[name]
        if dev in b.devices and _available(b):
            return b
        _warn_once(f"membra kernel backend {name!r} cannot run on {dev} here; "
                   "using 'reference' instead")
        return _BACKENDS["reference"]
    for candidate in PREFERENCE.get(dev, ("reference",)):
        b = _BACKENDS.get(candidate)
        if b is not None and dev in b.devices and _available(b):
            return b
    return _BACKENDS["reference"]
