"""Small inputs, where per-call overhead is the cost: ``python -m membra.bench.small [CALLS]``.

A PopSAN control actor (``PopSANActor(3, 1)``: three ``[5, 1, 256]``-sized LIF layers) runs
one observation per call under ``torch.no_grad()``; the DWAM sweeps make millions of such
calls. Prints one JSON line: microseconds per call (median of 5 rounds of CALLS calls) of
``lif_sequence`` on ``[5, 1, 256]`` with the cpu backend's direct inference call and through
the op's dispatch (``INFER_DIRECT`` emptied), and of the actor's forward both ways.
"""

from __future__ import annotations

import contextlib
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


@contextlib.contextmanager
def through_the_op():
    """Run inference through ``membra::neuron_infer``'s dispatch, as before the direct call."""
    from membra.kernels import fused

    saved = dict(fused.INFER_DIRECT)
    fused.INFER_DIRECT.clear()
    try:
        yield
    finally:
        fused.INFER_DIRECT.update(saved)


def measure(calls: int) -> dict:
    from membra.control.actor import PopSANActor
    from membra.kernels import lif_sequence

    torch.manual_seed(0)
    actor, obs = PopSANActor(3, 1), torch.randn(1, 3)
    x = torch.randn(5, 1, 256)
    cases = {"lif_sequence_5x1x256_us": lambda: lif_sequence(x, tau=4.0, v_th=0.5,
                                                             reset="hard", backend="cpu"),
             "popsan_actor_forward_us": lambda: actor(obs)}
    out = {"threads": torch.get_num_threads()}
    with torch.no_grad():
        for name, fn in cases.items():
            out[name] = round(per_call_us(fn, calls), 1)
            with through_the_op():
                out[name.replace("_us", "_via_op_us")] = round(per_call_us(fn, calls), 1)
    return out


if __name__ == "__main__":
    print(json.dumps(measure(int(sys.argv[1]) if len(sys.argv) > 1 else 1000)))
