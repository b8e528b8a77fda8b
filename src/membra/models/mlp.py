"""``mlp``: spiking multilayer perceptron, ``Flatten -> [Linear -> BN -> neuron] x n -> Linear``.

The default ``hidden=(128, 128)`` on ``in_shape=(64,)`` is the 64-128-128-10 digits network
of the membrane-dynamics experiment.
"""

from __future__ import annotations

import math

from torch import nn

from .common import SpikingNet, Stack
from .registry import register_model


@register_model("mlp", description="spiking MLP: Flatten, [Linear-BN-neuron] x len(hidden), "
                                   "Linear head per step (default hidden=(128, 128))")
def mlp(*, in_shape, num_classes, neuron, neuron_kwargs, hidden=(128, 128), norm: bool = True,
        readout: str = "mean"):
    """Spiking MLP on any input shape (flattened per step)."""
    hidden = tuple(hidden)
    if not hidden or not all(isinstance(h, int) and h > 0 for h in hidden):
        raise ValueError(f"hidden must be a non-empty tuple of positive ints, got {hidden!r}")
    s = Stack(in_shape, neuron, neuron_kwargs)
    if len(in_shape) > 1:
        s.add(nn.Flatten(2), time_distributed=False)
    width = math.prod(in_shape)
    for h in hidden:
        s.add(nn.Linear(width, h, bias=not norm))
        if norm:
            s.add(nn.BatchNorm1d(h))
        s.spike()
        width = h
    s.add(nn.Linear(width, num_classes))
    return SpikingNet("mlp", s.build(), in_shape, num_classes, readout)
