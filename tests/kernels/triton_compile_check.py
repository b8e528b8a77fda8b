"""Compile membra's Triton kernels for a GPU target without a GPU (the ptxas in the triton
wheel builds the cubin): every kind x reset x trace x saved h / surrogate code x tau-gradient
in float32, every kind in float64 / bfloat16 / float16, and the inference forward (no h, byte
spikes). Run by test_triton_interpret.py in a subprocess without TRITON_INTERPRET; prints
'compiled N' or raises."""

from __future__ import annotations

import itertools
import sys

import triton
from triton.backends.compiler import GPUTarget
from triton.compiler import ASTSource

from membra.kernels import _triton_kernels as k

FWD_PTRS = ("x", "v0", "c0", "tau", "prm", "s", "h", "th", "v", "vT", "cT")
BWD_PTRS = ("gs", "gvT", "gcT", "h", "th", "x", "v0", "tau", "prm", "gx", "gv0", "gc0", "gtau",
            "dsg", "ghx", "gvx")
#: pointers in the input's dtype; the others are in the state dtype
X_PTRS = {"x", "s", "gs", "gx"}


def signature(ptrs, xdt, acc, ints, consts):
    sig = {f"{p}_ptr": "*" + (xdt if p in X_PTRS else acc) for p in ptrs}
    sig.update(ints)
    sig.update({c: "constexpr" for c in consts})
    return sig


def compile_all(target, dtypes, full):
    n = 0
    for xdt, acc in dtypes:
        kinds = range(4)
        fwd = itertools.product(kinds, (True, False), (True, False), (True, False)) if full \
            else ((kind, True, False, True) for kind in kinds)
        for kind, soft, trace, save_h in fwd:
            consts = dict(KIND=kind, SOFT=soft, TRACE_V=trace, BLOCK=512, SAVE_H=save_h,
                          SPIKE_U8=False)
            sig = signature(FWD_PTRS, xdt, acc, {"T": "i32", "M": "i32"}, consts)
            triton.compile(ASTSource(k.fwd_kernel, sig, constexprs=consts), target=target,
                           options={"enable_fp_fusion": False})
            n += 1
        bwd = itertools.product(kinds, (True, False), range(6), (True, False)) if full else \
            ((kind, False, 0, kind == 0) for kind in kinds)
        for kind, soft, sg, need_tau in bwd:
            if need_tau and kind != 0:
                continue
            consts = dict(KIND=kind, SOFT=soft, SG=sg, NEED_TAU=need_tau, BLOCK=512)
            sig = signature(BWD_PTRS, xdt, acc, {"T": "i32", "M": "i32", "last": "i64"},
                            consts)
            triton.compile(ASTSource(k.bwd_kernel, sig, constexprs=consts), target=target,
                           options={"enable_fp_fusion": False})
            n += 1
    return n


def compile_inference(target, dtypes):
    """The inference forward: no h, spikes as bytes (LIF and IF)."""
    n = 0
    for (xdt, acc), kind in itertools.product(dtypes, (0, 1)):
        consts = dict(KIND=kind, SOFT=True, TRACE_V=False, BLOCK=512, SAVE_H=False,
                      SPIKE_U8=True)
        sig = signature(FWD_PTRS, xdt, acc, {"T": "i32", "M": "i32"}, consts)
        sig["s_ptr"] = "*u8"
        triton.compile(ASTSource(k.fwd_kernel, sig, constexprs=consts), target=target,
                       options={"enable_fp_fusion": False})
        n += 1
    return n


if __name__ == "__main__":
    arch = int(sys.argv[1]) if len(sys.argv) > 1 else 90
    target = GPUTarget("cuda", arch, 32)
    n = compile_all(target, [("fp32", "fp32")], full=True)
    n += compile_all(target, [("fp64", "fp64"), ("bf16", "fp32"), ("fp16", "fp32")], full=False)
    n += compile_inference(target, [("fp32", "fp32"), ("fp64", "fp64"), ("bf16", "fp32")])
    print("compiled", n)
