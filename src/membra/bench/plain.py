"""The LIF layer in a plain script: ``python -m membra.bench.plain T NEURONS REPEATS``.

A separate process that never calls :func:`membra.kernels.reuse_freed_memory`, so every
large tensor that is not a kernel output is fresh memory, as in a user's own script. Prints
one JSON line: the three-copy limit (``copy_x3``, preallocated) and, for x = [T, 64, NEURONS]
float32, membra's fwd+bwd, forward (float spikes, from the output pool and without it) and
inference with bool spikes, and SpikingJelly's fwd+bwd when it is installed. ``kernel_only``
times the C++ forward and backward alone (sigmoid surrogate, soft reset, preallocated outputs,
no Python or autograd): where the time of ``membra-cpu`` goes.
"""

from __future__ import annotations

import json
import sys

import torch

from .neurons import _no_pool, limits, time_method
from .peers import load_peers
from .timing import median_ms


def kernel_only(x: torch.Tensor, gs: torch.Tensor, repeats: int) -> dict:
    """The cpu kernels' LIF forward and backward (``membra_neuron_forward`` /
    ``membra_neuron_backward``, tau 2, sigmoid surrogate, soft reset) into preallocated
    outputs, called directly: the time of the passes over memory and their arithmetic."""
    from membra.kernels import cpu

    lib = cpu._load()
    x2, g2 = x.reshape(x.shape[0], -1), gs.reshape(x.shape[0], -1)
    T, M = x2.shape
    v0, vT, gv0 = torch.zeros(M), torch.empty(M), torch.empty(M)
    s, gx = torch.empty_like(x2), torch.empty_like(x2)
    tail = (T, M, 0, True, True)

    def fwd():
        lib.membra_neuron_forward(x2.data_ptr(), v0.data_ptr(), s.data_ptr(), vT.data_ptr(),
                                  None, None, *tail, 2.0, 1.0, 0.0)

    def bwd():
        lib.membra_neuron_backward(x2.data_ptr(), v0.data_ptr(), g2.data_ptr(), None,
                                   gx.data_ptr(), gv0.data_ptr(), None, None, None, None,
                                   *tail, 0, 4.0, True, 2.0, 1.0, 0.0)

    return {"fwd": median_ms(fwd, device="cpu", repeats=repeats),
            "bwd": median_ms(bwd, device="cpu", repeats=repeats)}


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
    out["kernel_only"] = kernel_only(x, gs, repeats)
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
