r"""``sew_resnet18`` / ``sew_resnet34``: spike-element-wise ResNets (ADD connection).

Basic block (Fang et al., SEW ResNet):

.. math::
    O = \mathrm{SN}(\mathrm{BN}(\mathrm{Conv}(\mathrm{SN}(\mathrm{BN}(\mathrm{Conv}(S))))))
    \quad \text{out} = g(O, \hat S), \quad
    \hat S = S \text{ or } \mathrm{SN}(\mathrm{BN}(\mathrm{Conv}_{1\times1}(S)))

with ``connect`` :math:`g`: ``"add"`` :math:`O + \hat S` (default), ``"and"`` :math:`O \hat S`,
``"iand"`` :math:`(1 - O)\hat S`. The downsampling shortcut (stride or width change) has its
own BN and neuron. Stages of ``(2, 2, 2, 2)`` (18) or ``(3, 4, 6, 3)`` (34) blocks, widths
``(64, 128, 256, 512)``, strides ``(1, 2, 2, 2)``; global average pooling and a linear head
per step.

Stem (``stem=``): ``"imagenet"`` = Conv7x7/2 -> BN -> neuron -> AvgPool 3x3/2 (the
ImageNet recipe replaces the max-pool by an average pool); ``"small"`` = Conv3x3/1 -> BN ->
neuron (CIFAR-size inputs); ``"auto"`` (default) picks ``"imagenet"`` when the input's smaller
side is at least 64, else ``"small"``. ``static_stem=True`` (direct encoding only, as in the
ImageNet recipe) computes the stem conv+BN once and repeats it over the ``T`` steps.
"""

from __future__ import annotations

import torch
from torch import nn

from ..nn import TimeDistributed
from .cnn import _check_image
from .common import SpikingNet, Stack, make_neuron, out_shape
from .registry import register_model

__all__ = ["SEWBlock", "StaticStem", "sew_resnet"]

CONNECT = {
    "add": lambda o, s: o + s,
    "and": lambda o, s: o * s,
    "iand": lambda o, s: (1.0 - o) * s,
}
STEMS = ("auto", "imagenet", "small")


def _conv_bn(c_in: int, c_out: int, k: int, stride: int) -> TimeDistributed:
    return TimeDistributed(nn.Sequential(
        nn.Conv2d(c_in, c_out, k, stride=stride, padding=k // 2, bias=False),
        nn.BatchNorm2d(c_out)))


class SEWBlock(nn.Module):
    """SEW basic block on ``[T, B, C, H, W]``; neurons built for the known input shape."""

    def __init__(self, in_shape: tuple[int, ...], width: int, stride: int, neuron: str,
                 neuron_kwargs: dict, connect: str = "add"):
        super().__init__()
        if connect not in CONNECT:
            raise ValueError(f"connect={connect!r} is not known; choose one of {list(CONNECT)}")
        self.connect = connect
        c_in = in_shape[0]
        self.conv1 = _conv_bn(c_in, width, 3, stride)
        shape = out_shape(self.conv1, in_shape)
        self.sn1 = make_neuron(neuron, shape, neuron_kwargs)
        self.conv2 = _conv_bn(width, width, 3, 1)
        self.sn2 = make_neuron(neuron, shape, neuron_kwargs)
        if stride != 1 or c_in != width:
            self.down = _conv_bn(c_in, width, 1, stride)
            self.down_sn = make_neuron(neuron, out_shape(self.down, in_shape), neuron_kwargs)
        else:
            self.down = self.down_sn = None
        self.out_shape = shape

    def forward(self, s: torch.Tensor) -> torch.Tensor:
        o = self.sn2(self.conv2(self.sn1(self.conv1(s))))
        identity = s if self.down is None else self.down_sn(self.down(s))
        return CONNECT[self.connect](o, identity)

    def extra_repr(self) -> str:
        return f"connect={self.connect!r}"


class StaticStem(nn.Module):
    """Stem conv+BN computed once for inputs that repeat the same image at every step
    (direct encoding) and repeated over ``T``: ``[T, B, ...] -> module(x[0])`` expanded to
    ``T`` steps. BatchNorm then sees ``B`` samples instead of ``T*B`` identical copies (same
    batch mean and variance). An input whose steps differ is a ``ValueError``."""

    def __init__(self, module: nn.Module):
        super().__init__()
        self.module = module

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[0] > 1 and not torch.equal(x[1:], x[:1].expand_as(x[1:])):
            raise ValueError("static_stem=True needs the same input at every step (direct "
                             "encoding); these steps differ")
        y = self.module(x[0])
        return y.unsqueeze(0).expand(x.shape[0], *y.shape).contiguous()


def sew_resnet(name: str, layers, *, in_shape, num_classes, neuron, neuron_kwargs,
               widths=(64, 128, 256, 512), connect: str = "add", stem: str = "auto",
               static_stem: bool = False, readout: str = "mean") -> SpikingNet:
    """SEW-ResNet with ``layers`` basic blocks per stage."""
    _check_image(name, in_shape)
    if stem not in STEMS:
        raise ValueError(f"stem={stem!r} is not known; choose one of {list(STEMS)}")
    if len(widths) != len(layers):
        raise ValueError(f"widths {tuple(widths)} must have {len(layers)} entries")
    if stem == "auto":
        stem = "imagenet" if min(in_shape[1:]) >= 64 else "small"
    s = Stack(in_shape, neuron, neuron_kwargs)
    w0 = widths[0]
    k, stride = (7, 2) if stem == "imagenet" else (3, 1)
    conv_bn = nn.Sequential(nn.Conv2d(in_shape[0], w0, k, stride=stride, padding=k // 2,
                                      bias=False), nn.BatchNorm2d(w0))
    s.add(StaticStem(conv_bn) if static_stem else TimeDistributed(conv_bn),
          time_distributed=False)
    s.spike()
    if stem == "imagenet":
        s.add(nn.AvgPool2d(3, stride=2, padding=1))
    for i, (n, w) in enumerate(zip(layers, widths, strict=True)):
        for j in range(n):
            stride = 2 if (i > 0 and j == 0) else 1
            block = SEWBlock(s.shape, w, stride, neuron, neuron_kwargs, connect)
            s.add(block, time_distributed=False)
    s.add(nn.AdaptiveAvgPool2d(1)).add(nn.Flatten(2), time_distributed=False)
    s.add(nn.Linear(widths[-1], num_classes))
    return SpikingNet(name, s.build(), in_shape, num_classes, readout)


@register_model("sew_resnet18", description="SEW-ResNet-18 (ADD connection, blocks 2-2-2-2, "
                                            "avg-pool stem; IF or LIF)")
def sew_resnet18(*, in_shape, num_classes, neuron, neuron_kwargs, widths=(64, 128, 256, 512),
                 connect: str = "add", stem: str = "auto", static_stem: bool = False,
                 readout: str = "mean"):
    """SEW-ResNet-18."""
    return sew_resnet("sew_resnet18", (2, 2, 2, 2), in_shape=in_shape, num_classes=num_classes,
                      neuron=neuron, neuron_kwargs=neuron_kwargs, widths=widths,
                      connect=connect, stem=stem, static_stem=static_stem, readout=readout)


@register_model("sew_resnet34", description="SEW-ResNet-34 (ADD connection, blocks 3-4-6-3, "
                                            "avg-pool stem; IF or LIF)")
def sew_resnet34(*, in_shape, num_classes, neuron, neuron_kwargs, widths=(64, 128, 256, 512),
                 connect: str = "add", stem: str = "auto", static_stem: bool = False,
                 readout: str = "mean"):
    """SEW-ResNet-34."""
    return sew_resnet("sew_resnet34", (3, 4, 6, 3), in_shape=in_shape, num_classes=num_classes,
                      neuron=neuron, neuron_kwargs=neuron_kwargs, widths=widths,
                      connect=connect, stem=stem, static_stem=static_stem, readout=readout)
