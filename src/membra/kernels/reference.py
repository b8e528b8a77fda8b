"""The ``reference`` backend: a Python loop over :func:`membra.functional.lif_step` /
:func:`membra.functional.if_step`; autograd builds the backward pass. It is the oracle that
every fused backend is tested against, not a fast path."""

from __future__ import annotations

import torch

from ..functional.neuron import fire_and_reset, if_charge, lif_charge


def reference_sequence(x, v0, tau, *, neuron, v_th, v_reset, reset, surrogate, alpha,
                       detach_reset):
    v = v0.to(x.dtype).expand_as(x[0])
    spikes = []
    for t in range(x.shape[0]):
        h = lif_charge(x[t], v, tau, v_reset) if neuron == "lif" else if_charge(x[t], v)
        s, v = fire_and_reset(h, v_th=v_th, v_reset=v_reset, reset=reset, surrogate=surrogate,
                              alpha=alpha, detach_reset=detach_reset)
        spikes.append(s)
    return torch.stack(spikes), v
