"""The ``reference`` backend: a Python loop over :func:`membra.functional.lif_charge` /
:func:`membra.functional.if_charge` and :func:`membra.functional.fire_and_reset`; autograd
builds the backward pass. It is the oracle that every fused backend is tested against, not a
fast path."""

from __future__ import annotations

import torch

from ..functional.kinds import NeuronKind
from ..functional.neuron import fire_and_reset, if_charge, lif_charge


def reference_sequence(x, v0, tau, *, kind, v_th, v_reset, reset, surrogate, detach_reset,
                       trace=False, spike_dtype=None):
    v = v0.to(x.dtype).expand_as(x[0])
    spikes, hs, vs = [], [], []
    for t in range(x.shape[0]):
        h = lif_charge(x[t], v, tau, v_reset) if kind is NeuronKind.LIF else if_charge(x[t], v)
        s, v = fire_and_reset(h, v_th=v_th, v_reset=v_reset, reset=reset, surrogate=surrogate,
                              detach_reset=detach_reset)
        spikes.append(s)
        if trace:
            hs.append(h)
            vs.append(v)
    s = torch.stack(spikes)
    out = (s if spike_dtype is None else s.ne(0).to(spike_dtype), v)
    return out + (torch.stack(hs), torch.stack(vs)) if trace else out
