"""``cnn``: small spiking CNN for ``C x H x W`` inputs (1x8x8 digits, 3x32x32 CIFAR-10,
2xHxW event frames).

Stages of ``Conv3x3 -> BN -> neuron`` with widths ``channels``; after a stage the map is
halved by ``AvgPool 2x2`` while its smaller side is at least 8; maps still larger than 4x4 are
then average-pooled to at most 4x4 (adaptive). Head: ``Flatten -> Linear(hidden) -> BN ->
neuron -> Linear(K)`` per step. On 1x8x8 the maps are 8x8 -> 4x4; on 3x32x32,
32 -> 16 -> 8 -> 4.
"""

from __future__ import annotations

import math

from torch import nn

from .common import SpikingNet, Stack
from .registry import register_model


def _check_image(name: str, in_shape) -> None:
    if len(in_shape) != 3:
        raise ValueError(f"{name} needs in_shape=(C, H, W), got {in_shape}")


@register_model("cnn", description="small spiking CNN: [Conv3x3-BN-neuron] stages "
                                   "(32, 64, 128) with AvgPool, Linear-BN-neuron, Linear head")
def cnn(*, in_shape, num_classes, neuron, neuron_kwargs, channels=(32, 64, 128),
        hidden: int = 256, readout: str = "mean"):
    """Spiking CNN for (C, H, W) inputs."""
    _check_image("cnn", in_shape)
    s = Stack(in_shape, neuron, neuron_kwargs)
    c_in = in_shape[0]
    for c in channels:
        s.add(nn.Conv2d(c_in, c, 3, padding=1, bias=False)).add(nn.BatchNorm2d(c)).spike()
        if min(s.shape[1:]) >= 8:
            s.add(nn.AvgPool2d(2))
        c_in = c
    if max(s.shape[1:]) > 4:
        s.add(nn.AdaptiveAvgPool2d((min(s.shape[1], 4), min(s.shape[2], 4))))
    s.add(nn.Flatten(2), time_distributed=False)
    s.add(nn.Linear(math.prod(s.shape), hidden, bias=False)).add(nn.BatchNorm1d(hidden)).spike()
    s.add(nn.Linear(hidden, num_classes))
    return SpikingNet("cnn", s.build(), in_shape, num_classes, readout)
