"""The LIF layer in a plain script: ``python -m membra.bench.plain T NEURONS REPEATS``.

A separate process that never calls :func:`membra.kernels.reuse_freed_memory`, so every
large tensor that is not a kernel output is fresh memory, as in a user's own script. Prints
one JSON line: the three-copy limit (``copy_x3``, preallocated) and, for x = [T, 64, NEURONS]
float32, membra's fwd+bwd, forward (float spikes, from the output pool and without it) and
inference with bool spikes, and SpikingJelly's fwd+bwd when it is installed.
"""

from __future__ import annotations

import json
import sys

import torch

from .neurons import _no_pool, limits, time_method
from .peers import load_peers


def measure(T: int, neurons: int, repeats: int) -> dict:
    from membra.kernels import lif_sequence

    g = torch.Generator().manual_seed(T)
    x = torch.randn(T, 64, neurons, generator=g) + 0.5
    gs = torch.randn(T, 64, neurons, generator=g)
    out = {"T": T, "shape": [64, neurons], "copy_x3": limits(x, device="cpu",
                                                             repeats=repeats)["copy_x3"]}

    def cpu(x):
        return lif_sequence(x, backend="cpu")[0]

    r = time_method(cpu, x, gs, device="cpu", repeats=repeats)
    out["membra-cpu"] = r
    with _no_pool():
        out["membra-cpu-nopool"] = time_method(cpu, x, gs, device="cpu", repeats=repeats,
                                               fwd_only=True)
    out["membra-cpu-infer-bool"] = time_method(
        lambda x: lif_sequence(x, backend="cpu", spike_dtype=torch.bool)[0], x, gs,
        device="cpu", repeats=repeats, fwd_only=True)
    peers, _ = load_peers("cpu")
    if "spikingjelly" in peers:
        out["spikingjelly"] = time_method(peers["spikingjelly"][1], x, gs, device="cpu",
                                          repeats=repeats, budget_s=60.0)
    return out


if __name__ == "__main__":
    T, neurons, repeats = (int(a) for a in sys.argv[1:4])
    print(json.dumps(measure(T, neurons, repeats)))
