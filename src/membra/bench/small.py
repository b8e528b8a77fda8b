"""Small inputs, where per-call overhead is the cost: ``python -m membra.bench.small [CALLS]``.

A PopSAN control actor (``PopSANActor(3, 1)``: three ``[5, 1, 256]``-sized LIF layers) runs
one observation per call under ``torch.no_grad()``; the DWAM sweeps make millions of such
calls. A recurrent layer (:class:`membra.nn.RLIF`) calls the fused LIF op once per step, and
a small layer's training step is dominated by what surrounds its kernels. Prints one JSON
line: microseconds per call (median of 5 rounds of CALLS calls), each case with the kernels
called directly (:mod:`membra.kernels.direct`) and through the ops' dispatch
(``..._via_op_us``): ``lif_sequence`` inference on ``[5, 1, 256]``, the actor's forward, a
``LIF`` layer's forward + backward on ``[4, 1, 16]`` and an ``RLIF(64)`` layer's forward +
backward on ``[16, 8, 64]``.
"""

from __future__ import annotations

import functools
import json
import statistics
import sys
import time

import torch


def per_call_us(fn, calls: int, rounds: int = 5) -> float:
    """Median over ``rounds`` of the mean wall time of ``calls`` calls of ``fn``, in us."""
    for _ in range(max(10, calls // 10)):
        fn()
    times = []
    for _ in range(rounds):
        t0 = time.perf_counter()
        for _ in range(calls):
            fn()
        times.append((time.perf_counter() - t0) / calls * 1e6)
    return statistics.median(times)


def measure(calls: int) -> dict:
    from membra.control.actor import PopSANActor
    from membra.kernels import lif_sequence
    from membra.kernels.direct import through_the_ops
    from membra.nn import LIF, RLIF

    from .models import fwd_bwd

    torch.manual_seed(0)
    actor, obs = PopSANActor(3, 1), torch.randn(1, 3)
    x = torch.randn(5, 1, 256)
    no_grad = {"lif_sequence_5x1x256_us": lambda: lif_sequence(x, tau=4.0, v_th=0.5,
                                                               reset="hard", backend="cpu"),
               "popsan_actor_forward_us": lambda: actor(obs)}
    training = {"lif_fwd_bwd_4x1x16_us": functools.partial(
                    fwd_bwd, LIF(shape=(16,), backend="cpu"),
                    torch.randn(4, 1, 16, requires_grad=True)),
                "rlif_fwd_bwd_16x8x64_us": functools.partial(
                    fwd_bwd, RLIF(shape=(64,), backend="cpu"),
                    torch.randn(16, 8, 64, requires_grad=True))}
    out = {"threads": torch.get_num_threads()}
    for grad, cases in ((False, no_grad), (True, training)):
        with torch.set_grad_enabled(grad):
            for name, fn in cases.items():
                out[name] = round(per_call_us(fn, calls), 1)
                with through_the_ops():
                    out[name.replace("_us", "_via_op_us")] = round(per_call_us(fn, calls), 1)
    return out


if __name__ == "__main__":
    print(json.dumps(measure(int(sys.argv[1]) if len(sys.argv) > 1 else 1000)))
