"""Backend registry and selection for the neuron-sequence kernels.

A backend is a function ``fn(x, v0, tau, *, neuron, v_th, v_reset, reset, surrogate, alpha,
detach_reset) -> (spikes, v_final)`` computing the op of ``docs/kernels.md`` on validated
input (``x`` ``[T, *N]`` floating point, ``v0`` broadcastable to ``x[0]``, ``tau`` a float or a
0-d tensor, ``None`` for IF). Backends register themselves with :func:`register_backend`;
``reference`` always exists and is the oracle the others are tested against.

Selection order: the ``backend=`` argument, else the ``MEMBRA_BACKEND`` environment variable,
else the first available backend in :data:`PREFERENCE` for the input's device. A backend that
was asked for but cannot run (no compiler, no GPU) falls back to ``reference`` with one warning.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Callable
from dataclasses import dataclass

import torch

__all__ = ["Backend", "register_backend", "available_backends", "list_backends",
           "select_backend", "PREFERENCE"]


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

#: Preferred backends per device type, best first; ``reference`` runs everywhere.
PREFERENCE: dict[str, tuple[str, ...]] = {
    "cpu": ("cpu", "reference"),
    "cuda": ("triton", "reference"),
}


def register_backend(name: str, run: Callable, *, available: Callable[[], bool] = lambda: True,
                     devices: tuple[str, ...] = ("cpu", "cuda")) -> None:
    """Register (or replace) backend ``name``."""
    _BACKENDS[name] = Backend(name, run, available, tuple(devices))


def list_backends() -> list[str]:
    """Names of all registered backends, available or not."""
    return sorted(_BACKENDS)


def available_backends(device: str | torch.device = "cpu") -> list[str]:
    """Registered backends that can run on ``device`` now."""
    dev = torch.device(device).type
    return [n for n, b in sorted(_BACKENDS.items()) if dev in b.devices and b.available()]


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
        if dev in b.devices and b.available():
            return b
        _warn_once(f"membra kernel backend {name!r} cannot run on {dev} here; "
                   "using 'reference' instead")
        return _BACKENDS["reference"]
    for candidate in PREFERENCE.get(dev, ("reference",)):
        b = _BACKENDS.get(candidate)
        if b is not None and dev in b.devices and b.available():
            return b
    return _BACKENDS["reference"]
