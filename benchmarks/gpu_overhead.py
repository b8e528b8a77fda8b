"""Per-call overhead on CUDA, where a small layer's time is the Python side: each case with
the kernels called directly (``membra.kernels.direct``) and through the ops' dispatch.

    python benchmarks/gpu_overhead.py [ROUNDS]      (a CUDA machine; membra from src/ is fine)

Prints one line per shape: LIF fwd+bwd with the built-in and a custom surrogate
(``sigmoid(4u)``, the bench's), the no-grad forward with bool spikes, one copy of ``x`` (the
inference path's limit), each in ms (median over ROUNDS rounds of 50 back-to-back calls, the
cases interleaved per round); then RLIF fwd+bwd as one node and as per-step ops.
"""

from __future__ import annotations

import statistics
import sys
import time

import torch

from membra.bench.neurons import _custom_sigmoid
from membra.kernels import direct, lif_sequence
from membra.kernels.models import rlif_sequence


def _ms(fn, n: int) -> float:
    torch.cuda.synchronize()
    t = time.perf_counter()
    for _ in range(n):
        fn()
    torch.cuda.synchronize()
    return (time.perf_counter() - t) / n * 1e3


def _via_op(fn):
    def run():
        with direct.through_the_ops():
            fn()
    return run


def _fwd_bwd(x, gs, **kw):
    def run():
        s, _ = lif_sequence(x, backend="triton", **kw)
        s.backward(gs)
    return run


def _infer(x):
    def run():
        with torch.no_grad():
            lif_sequence(x, backend="triton", spike_dtype=torch.bool)
    return run


def timed(cases: dict, rounds: int, n: int = 50) -> dict:
    for fn in cases.values():
        for _ in range(5):
            fn()
    times: dict = {k: [] for k in cases}
    for _ in range(rounds):
        for k, fn in cases.items():
            times[k].append(_ms(fn, n))
    return {k: round(statistics.median(v), 3) for k, v in times.items()}


def main(rounds: int = 5) -> None:
    print("device:", torch.cuda.get_device_name(), "| torch", torch.__version__)
    for shape in [(16, 64, 16384), (64, 64, 16384), (16, 64, 262144), (64, 64, 262144)]:
        x = (torch.randn(*shape, device="cuda") + 0.5).requires_grad_()
        gs = torch.randn(*shape, device="cuda")
        xi = x.detach()
        builtin, custom = _fwd_bwd(x, gs), _fwd_bwd(x, gs, surrogate=_custom_sigmoid)
        r = timed({"builtin": builtin, "custom": custom, "builtin_via_op": _via_op(builtin),
                   "custom_via_op": _via_op(custom), "infer_bool": _infer(xi),
                   "infer_bool_via_op": _via_op(_infer(xi)), "one_copy": xi.clone}, rounds)
        print(list(shape), r, f"custom/builtin {r['custom'] / r['builtin']:.2f}",
              f"(via op {r['custom_via_op'] / r['builtin_via_op']:.2f});",
              f"inference: {r['one_copy'] / r['infer_bool']:.2f} of one copy", flush=True)
    for T, B, N in [(100, 32, 256), (16, 64, 1024)]:
        x = torch.randn(T, B, N, device="cuda", requires_grad=True)
        w = torch.randn(N, N, device="cuda") * 0.1

        def rlif(x=x, w=w):
            s, _ = rlif_sequence(x, w, backend="triton")
            s.sum().backward()
        r = timed({"one_node": rlif, "per_step_ops": _via_op(rlif)}, rounds, n=10)
        print("RLIF", [T, B, N], r, flush=True)


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 5)
