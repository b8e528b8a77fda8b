"""Reuse of freed memory for large CPU tensors (glibc ``malloc``).

PyTorch's CPU allocator asks ``malloc`` for every tensor. glibc serves requests above
``M_MMAP_THRESHOLD`` (128 KiB, adjusted up to 32 MiB) with a fresh ``mmap`` and unmaps them on
free, so every large activation, spike tensor and gradient of every step is fresh memory, and
the kernel pays a page fault for each of its pages on first touch. On virtual machines that
costs more than the computation: three copies of an ``x`` of 64 MiB into fresh tensors take
about 6x as long as three copies into preallocated ones (``membra bench``, the ``clone`` row).

:func:`reuse_freed_memory` raises the mmap and trim thresholds with ``mallopt`` so that large
blocks come from the heap and stay there when freed: the next step reuses pages that are
already mapped. The price is that the process keeps its peak heap instead of returning freed
memory to the system. The ``membra`` command (training, evaluation, benchmarks) turns it on at
start unless ``MEMBRA_MALLOC_CACHE=0``; a library user calls it explicitly. The environment
variables ``MALLOC_MMAP_THRESHOLD_`` / ``MALLOC_TRIM_THRESHOLD_`` do the same for any program.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os

__all__ = ["reuse_freed_memory", "reuse_enabled_by_env", "reuse_applied"]

_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3
_APPLIED: dict[str, int] = {}


def reuse_enabled_by_env() -> bool:
    """``False`` when ``MEMBRA_MALLOC_CACHE=0`` (the opt-out of the ``membra`` command)."""
    return os.environ.get("MEMBRA_MALLOC_CACHE", "1") != "0"


def reuse_freed_memory(threshold_bytes: int = 1 << 30) -> bool:
    """Serve ``malloc`` requests below ``threshold_bytes`` from the heap and keep freed heap
    memory mapped (``mallopt(M_MMAP_THRESHOLD)`` and ``mallopt(M_TRIM_THRESHOLD)``).

    Returns ``True`` when applied (glibc), ``False`` where ``mallopt`` is unavailable (macOS,
    musl, Windows); calling it again is harmless.
    """
    if not isinstance(threshold_bytes, int) or isinstance(threshold_bytes, bool):
        raise TypeError(f"threshold_bytes must be an int, got {type(threshold_bytes).__name__}")
    if not 0 < threshold_bytes < 2**31:
        raise ValueError(f"threshold_bytes must be in (0, 2**31), got {threshold_bytes}")
    if _APPLIED.get("threshold") == threshold_bytes:
        return True
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    ok = (mallopt(_M_MMAP_THRESHOLD, threshold_bytes) == 1
          and mallopt(_M_TRIM_THRESHOLD, threshold_bytes) == 1)
    if ok:
        _APPLIED["threshold"] = threshold_bytes
    return ok


def reuse_applied() -> int | None:
    """The threshold applied by :func:`reuse_freed_memory` in this process, or ``None``."""
    return _APPLIED.get("threshold")
