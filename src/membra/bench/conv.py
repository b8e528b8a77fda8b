"""One training step of a small conv SNN, x = [T=4, B=32, 3, 32, 32]: two conv blocks
(conv, batch norm, LIF, max-pool) and a linear readout, mean over time, cross-entropy, SGD.

Each implementation runs in its own process (``python -m membra.bench.conv IMPL``), so that its
peak resident memory (``VmHWM``, reset before the first step) is its own; it prints one JSON
line: the median time per step and the peak memory above the resident size before the first
step.
"""

from __future__ import annotations

import json
import sys

import torch
from torch import nn

from .timing import median_ms

T, B, C, H, W = 4, 32, 3, 32, 32


def membra_model(backend: str) -> nn.Module:
    from membra.nn import LIF, TimeDistributed

    def lif():
        return LIF(tau=2.0, reset="soft", detach_reset=True, backend=backend)

    return nn.Sequential(
        TimeDistributed(nn.Sequential(nn.Conv2d(C, 32, 3, padding=1, bias=False),
                                      nn.BatchNorm2d(32))), lif(),
        TimeDistributed(nn.MaxPool2d(2)),
        TimeDistributed(nn.Sequential(nn.Conv2d(32, 64, 3, padding=1, bias=False),
                                      nn.BatchNorm2d(64))), lif(),
        TimeDistributed(nn.MaxPool2d(2)),
        TimeDistributed(nn.Sequential(nn.Flatten(), nn.Linear(64 * 8 * 8, 10))),
    )


def spikingjelly_model() -> nn.Module:
    from spikingjelly.activation_based import layer, neuron, surrogate

    def lif():
        return neuron.LIFNode(tau=2.0, v_reset=None, detach_reset=True,
                              surrogate_function=surrogate.Sigmoid(alpha=4.0), step_mode="m")

    return nn.Sequential(
        layer.SeqToANNContainer(nn.Conv2d(C, 32, 3, padding=1, bias=False), nn.BatchNorm2d(32)),
        lif(), layer.SeqToANNContainer(nn.MaxPool2d(2)),
        layer.SeqToANNContainer(nn.Conv2d(32, 64, 3, padding=1, bias=False), nn.BatchNorm2d(64)),
        lif(), layer.SeqToANNContainer(nn.MaxPool2d(2)),
        layer.SeqToANNContainer(nn.Flatten(), nn.Linear(64 * 8 * 8, 10)),
    )


def _status_bytes(key: str) -> int:
    """``VmRSS`` / ``VmHWM`` (peak) of this process from /proc/self/status."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1]) * 1024
    raise KeyError(key)


def _reset_peak() -> None:
    """Restart the peak-RSS counter (Linux >= 4.0); ``ru_maxrss`` cannot be reset and a
    child process inherits its parent's."""
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")


def measure(impl: str, repeats: int = 5) -> dict:
    torch.manual_seed(0)
    if impl == "spikingjelly":
        from spikingjelly.activation_based import functional

        model = spikingjelly_model()

        def reset():
            functional.reset_net(model)
    else:
        model = membra_model(impl.removeprefix("membra-"))

        def reset():
            pass

    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    g = torch.Generator().manual_seed(1)
    x = torch.rand(T, B, C, H, W, generator=g) * 2.0
    y = torch.randint(0, 10, (B,), generator=g)

    def step():
        reset()
        loss = nn.functional.cross_entropy(model(x).mean(0), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    _reset_peak()
    base = _status_bytes("VmRSS")
    t = median_ms(step, warmup=2, repeats=repeats)
    peak = _status_bytes("VmHWM")
    return {"impl": impl, "step": t, "peak_above_start_mb": (peak - base) / 2**20}


if __name__ == "__main__":
    from membra.kernels.memory import reuse_enabled_by_env, reuse_freed_memory

    if reuse_enabled_by_env():  # the same memory setting as the parent benchmark
        reuse_freed_memory()
    print(json.dumps(measure(sys.argv[1], int(sys.argv[2]) if len(sys.argv) > 2 else 5)))
