"""The same LIF layer in peer libraries, when importable: a callable ``x -> spikes`` per
library (tau = 2, v_th = 1, soft reset to 0, sigmoid surrogate alpha = 4, detached reset
where the library offers it). Missing libraries are reported, not fatal."""

from __future__ import annotations

import torch


def spikingjelly_lif(device: str):
    from spikingjelly.activation_based import functional, neuron, surrogate

    node = neuron.LIFNode(tau=2.0, v_threshold=1.0, v_reset=None, detach_reset=True,
                          surrogate_function=surrogate.Sigmoid(alpha=4.0),
                          step_mode="m").to(device)
    # the torch backend is SpikingJelly's only CPU path (its fused kernels are CUDA-only)
    if device == "cuda" and "triton" in getattr(node, "supported_backends", ()):
        node.backend = "triton"

    def run(x):
        functional.reset_net(node)
        return node(x)

    return run


def snntorch_leaky(device: str):
    import snntorch
    from snntorch import surrogate

    leaky = snntorch.Leaky(beta=0.5, threshold=1.0, spike_grad=surrogate.sigmoid(slope=4),
                           reset_mechanism="subtract").to(device)

    def run(x):
        mem = torch.zeros_like(x[0])
        out = []
        for t in range(x.shape[0]):
            spk, mem = leaky(x[t] * 0.5, mem)  # beta = 1 - 1/tau, input scaled by 1/tau
            out.append(spk)
        return torch.stack(out)

    return run


def norse_lif_box(device: str):
    from norse.torch import LIFBoxCell, LIFBoxParameters

    # dt * tau_mem_inv = 1/tau = 0.5; Norse resets to v_reset (hard reset)
    cell = LIFBoxCell(LIFBoxParameters(tau_mem_inv=torch.tensor(500.0), v_th=torch.tensor(1.0),
                                       v_leak=torch.tensor(0.0), v_reset=torch.tensor(0.0)),
                      dt=0.001).to(device)

    def run(x):
        state = None
        out = []
        for t in range(x.shape[0]):
            z, state = cell(x[t], state)
            out.append(z)
        return torch.stack(out)

    return run


PEERS = {
    "spikingjelly": ("SpikingJelly LIFNode(step_mode='m')", spikingjelly_lif),
    "snntorch": ("snnTorch Leaky (per-step loop)", snntorch_leaky),
    "norse": ("Norse LIFBoxCell (per-step loop)", norse_lif_box),
}


def load_peers(device: str) -> tuple[dict, dict]:
    """``({name: (label, run)}, {name: why it is missing})``."""
    found, missing = {}, {}
    for name, (label, make) in PEERS.items():
        try:
            found[name] = (label, make(device))
        except Exception as e:  # ImportError, or an API that changed
            missing[name] = f"{type(e).__name__}: {e}"
    return found, missing
