"""Just-in-time build of membra's C++ kernels into a per-machine cache directory.

The extension is compiled once, at first use, with :func:`torch.utils.cpp_extension.load`
(``ninja`` from PyPI drives the build), into ``$MEMBRA_CACHE_DIR`` or
``~/.cache/membra/kernels/<key>``, where ``<key>`` hashes the source (its text and its path),
the compiler flags, the torch and Python versions, torch's install path and the CPU (the build
uses ``-march=native``). Later processes import the cached library without compiling.

Concurrent first uses (pytest-xdist workers, several ranks) are serialised by an ``flock`` on
a lock file in the cache directory; the lock is released by the kernel if a process dies, so a
killed build never leaves the others waiting. Nothing here goes through pip or its build
isolation, so the installed torch is the one compiled against.
"""

from __future__ import annotations

import ctypes
import hashlib
import os
import platform
import shutil
import sys
from pathlib import Path

import torch

__all__ = ["cache_root", "build_extension"]

#: Flags kept few so that the build stays fast; no -ffast-math (the kernels must round like
#: the reference) and no FMA contraction, for the same reason; -fno-trapping-math lets the
#: compiler vectorise the float-to-int step of the sigmoid surrogate's exp.
CFLAGS = ("-O3", "-march=native", "-fopenmp", "-ffp-contract=off", "-fno-math-errno",
          "-fno-trapping-math")
LDFLAGS = ("-fopenmp",)


def cache_root() -> Path:
    """Where built kernels live: ``$MEMBRA_CACHE_DIR`` or ``$XDG_CACHE_HOME/membra/kernels``."""
    env = os.environ.get("MEMBRA_CACHE_DIR")
    if env:
        return Path(env).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "membra" / "kernels"


def _machine_id() -> str:
    """CPU model and instruction-set flags (what -march=native depends on)."""
    parts = [platform.machine()]
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                key = line.split(":", 1)[0].strip()
                if key in ("model name", "flags", "Features", "CPU part"):
                    parts.append(line.strip())
                if key in ("flags", "Features"):
                    break
    except OSError:
        parts.append(platform.processor())
    return "\n".join(parts)


def _ensure_ninja() -> None:
    """Put the ``ninja`` of the PyPI package on PATH when none is there already."""
    if shutil.which("ninja"):
        return
    try:
        import ninja  # type: ignore[import-not-found]
    except ImportError as e:
        raise RuntimeError("the 'ninja' build tool is missing (pip install ninja)") from e
    os.environ["PATH"] = ninja.BIN_DIR + os.pathsep + os.environ.get("PATH", "")


def build_extension(name: str, source: Path) -> ctypes.CDLL:
    """Compile (or load from the cache) the shared library ``name`` from ``source`` and open
    it with :mod:`ctypes` (its entry points are plain ``extern "C"`` functions, which keeps
    pybind11 and the long compile it costs out of the build).

    Raises ``RuntimeError`` (or the build's own error) when no compiler or build tool works.
    """
    import fcntl

    from torch.utils import cpp_extension

    text = source.read_bytes()
    # The source path and torch's install path are in the key too: ninja rebuilds when the
    # command line it recorded changes, and that line names both, so two checkouts or two
    # venvs sharing one cache would otherwise keep rebuilding each other's library.
    key_src = b"\0".join([text, " ".join(CFLAGS + LDFLAGS).encode(), torch.__version__.encode(),
                          sys.version.encode(), _machine_id().encode(),
                          str(source.resolve()).encode(),
                          os.path.dirname(os.path.abspath(torch.__file__)).encode()])
    key = hashlib.sha256(key_src).hexdigest()[:16]
    build_dir = cache_root() / f"{name}-{key}"
    build_dir.mkdir(parents=True, exist_ok=True)
    _ensure_ninja()
    with open(build_dir / "membra.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            # torch's own "lock" file can only be left over from a killed build: we hold the lock
            stale = build_dir / "lock"
            if stale.exists():
                stale.unlink()
            path = cpp_extension.load(
                name=f"{name}_{key}", sources=[str(source)], build_directory=str(build_dir),
                extra_cflags=list(CFLAGS), extra_ldflags=list(LDFLAGS), verbose=False,
                is_python_module=False)
            return ctypes.CDLL(path)
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)
