"""``vgg11``: spiking VGG-11 of the CIFAR10-DVS / N-Caltech101 recipe.

Stages of ``blocks=(1, 1, 2, 4)`` ``Conv3x3 -> BN -> neuron`` blocks with widths
``widths=(64, 128, 256, 512)``, ``AvgPool 2x2`` between stages (skipped when the map's smaller
side is already below 2, so any input size works), global average pooling and a linear head
applied at every step. Default input ``2 x 48 x 48`` (event frames, 2 polarities).
"""

from __future__ import annotations

from torch import nn

from .cnn import _check_image
from .common import SpikingNet, Stack
from .registry import register_model


@register_model("vgg11", description="spiking VGG-11: [1, 1, 2, 4] Conv3x3-BN-neuron blocks, "
                                     "widths 64-512, AvgPool between stages, GAP, Linear head")
def vgg11(*, in_shape, num_classes, neuron, neuron_kwargs, blocks=(1, 1, 2, 4),
          widths=(64, 128, 256, 512), readout: str = "mean"):
    """Spiking VGG-11 (CIFAR10-DVS style)."""
    _check_image("vgg11", in_shape)
    if len(blocks) != len(widths) or not blocks:
        raise ValueError(f"blocks {tuple(blocks)} and widths {tuple(widths)} must have the "
                         "same non-zero length")
    s = Stack(in_shape, neuron, neuron_kwargs)
    c_in = in_shape[0]
    for i, (n, c) in enumerate(zip(blocks, widths, strict=True)):
        if i > 0 and min(s.shape[1:]) >= 2:
            s.add(nn.AvgPool2d(2))
        for _ in range(n):
            s.add(nn.Conv2d(c_in, c, 3, padding=1, bias=False)).add(nn.BatchNorm2d(c)).spike()
            c_in = c
    s.add(nn.AdaptiveAvgPool2d(1)).add(nn.Flatten(2), time_distributed=False)
    s.add(nn.Linear(c_in, num_classes))
    return SpikingNet("vgg11", s.build(), in_shape, num_classes, readout)
