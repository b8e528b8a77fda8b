"""membra.kernels.memory: large tensors reuse freed heap memory once it is applied."""

from __future__ import annotations

import ctypes
import subprocess
import sys

import pytest

from membra.kernels.memory import reuse_enabled_by_env, reuse_freed_memory

HAS_MALLOPT = hasattr(ctypes.CDLL(None), "mallopt") if sys.platform == "linux" else False

# A 64 MiB tensor: with glibc's default it is its own mmap (fresh pages, unmapped on free);
# after reuse_freed_memory() it lies in the brk heap, which keeps its pages when it is freed.
PROBE = """
import ctypes, sys, torch
from membra.kernels.memory import reuse_freed_memory
if sys.argv[1] == "on":
    assert reuse_freed_memory()
sbrk = ctypes.CDLL(None).sbrk
sbrk.restype, sbrk.argtypes = ctypes.c_void_p, [ctypes.c_ssize_t]
torch.empty(1)  # allocator warm-up
b = torch.empty(16 << 20)
in_heap = b.data_ptr() < sbrk(0)
end = sbrk(0)
del b
print(int(in_heap), int(sbrk(0) == end))
"""


@pytest.mark.skipif(not HAS_MALLOPT, reason="needs glibc mallopt")
def test_large_blocks_come_from_the_heap_and_stay_mapped_after_reuse():
    def run(mode):
        out = subprocess.run([sys.executable, "-c", PROBE, mode], capture_output=True,
                             text=True, timeout=120)
        assert out.returncode == 0, out.stderr[-2000:]
        return [int(v) for v in out.stdout.split()]

    in_heap_on, kept_on = run("on")
    in_heap_off, _ = run("off")
    assert in_heap_on == 1 and kept_on == 1   # heap block, not trimmed when freed
    assert in_heap_off == 0                   # default: a 64 MiB block is its own mmap


def test_bad_threshold_is_named():
    with pytest.raises(ValueError, match="threshold_bytes"):
        reuse_freed_memory(0)
    with pytest.raises(TypeError, match="threshold_bytes"):
        reuse_freed_memory(1.5)


def test_env_opt_out(monkeypatch):
    monkeypatch.setenv("MEMBRA_MALLOC_CACHE", "0")
    assert not reuse_enabled_by_env()
    monkeypatch.delenv("MEMBRA_MALLOC_CACHE")
    assert reuse_enabled_by_env()
