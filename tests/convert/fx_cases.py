"""Model families a user brings, for the fx conversion tests: a torchvision-style ResNet-18
(one ``self.relu`` called twice per block, ``out += identity``), a U-Net-like net (concat +
nearest upsampling) and seeded random DAGs (branch/merge, concat, pooling, shared QCFS modules).
All built with QCFS activations on fixed-point grids (convert_cases.fixed_point, tie_qcfs), so
the PASCAL simulation is exact in float64 and level-boundary ties occur."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from convert_cases import fixed_point, on_grid, tie_qcfs
from torch import nn

from membra.convert.nets import BasicBlock


class TVBasicBlock(BasicBlock):
    """torchvision's BasicBlock as written there: the layers of membra's
    :class:`~membra.convert.nets.BasicBlock`, but one module ``self.relu`` called twice and
    ``out += identity`` in place."""

    def __init__(self, cin, cout, stride, act):
        super().__init__(cin, cout, stride)
        del self.relu1, self.relu2
        self.relu = act

    def forward(self, x):
        identity = x
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        if self.downsample is not None:
            identity = self.downsample(x)
        out += identity
        return self.relu(out)


class TVResNet18(nn.Module):
    """torchvision's ResNet-18 layout (2-2-2-2 blocks, 4 stages) at a small width; ``act()``
    makes each block's (shared) activation module."""

    def __init__(self, act, width=4, num_classes=5, in_ch=3, maxpool=True):
        super().__init__()
        self.conv1 = nn.Conv2d(in_ch, width, 3, 1, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.relu = act()
        self.maxpool = nn.MaxPool2d(2) if maxpool else nn.Identity()
        stages, c = [], width
        for i in range(4):
            w = width * 2 ** i
            stages.append(nn.Sequential(TVBasicBlock(c, w, 1 if i == 0 else 2, act()),
                                        TVBasicBlock(w, w, 1, act())))
            c = w
        self.layer1, self.layer2, self.layer3, self.layer4 = stages
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.fc = nn.Linear(c, num_classes)

    def forward(self, x):
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        x = torch.flatten(self.avgpool(x), 1)
        return self.fc(x)


class UNetLike(nn.Module):
    """Encoder-decoder: two downsamplings, nearest upsampling (module and F.interpolate),
    skip connections concatenated (torch.cat), a 1x1 head, global pooling and a classifier
    reached through ``x.view(x.size(0), -1)``."""

    def __init__(self, act, c=3, in_ch=2, num_classes=4):
        super().__init__()

        def block(i, o):
            return nn.Sequential(nn.Conv2d(i, o, 3, 1, 1), nn.BatchNorm2d(o), act())

        self.enc1, self.enc2, self.mid = block(in_ch, c), block(c, 2 * c), block(2 * c, 2 * c)
        self.down1, self.down2 = nn.AvgPool2d(2), nn.MaxPool2d(2)
        self.up = nn.Upsample(scale_factor=2, mode="nearest")
        self.dec2, self.dec1 = block(4 * c, c), block(2 * c, c)
        self.head = nn.Conv2d(c, 3, 1)
        self.act = act()
        self.pool = nn.AdaptiveAvgPool2d(2)
        self.fc = nn.Linear(12, num_classes)

    def forward(self, x):
        e1 = self.enc1(x)
        e2 = self.enc2(self.down1(e1))
        m = self.mid(self.down2(e2))
        d2 = self.dec2(torch.cat([self.up(m), e2], dim=1))
        d1 = self.dec1(torch.cat([F.interpolate(d2, scale_factor=2, mode="nearest"), e1], 1))
        h = self.pool(self.act(self.head(d1)))
        return self.fc(h.view(h.size(0), -1))


class RandomDAG(nn.Module):
    """A seeded random DAG of spiking layers at one resolution ``s`` or ``s/2``: each step
    appends a tensor made by a Conv(+BN)->QCFS on one earlier tensor, a residual
    ``conv(a) + conv(b)``, ``torch.cat`` of two, average/max pooling then a conv, or nearest
    upsampling then a conv; QCFS modules are reused at new call sites at random."""

    def __init__(self, seed: int, steps: int = 7, in_ch: int = 2, classes: int = 3):
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        pick = lambda n: int(torch.randint(n, (1,), generator=g))  # noqa: E731
        self.convs, self.acts, self.program = nn.ModuleList(), nn.ModuleList(), []
        tensors = [(in_ch, 0)]                    # (channels, level: 0 full, 1 half)

        def conv(cin, level_ok=True):
            cout = 2 + pick(3)
            k = (1, 3)[pick(2)]
            layers = [nn.Conv2d(cin, cout, k, 1, k // 2)]
            if pick(2):
                layers.append(nn.BatchNorm2d(cout))
            self.convs.append(nn.Sequential(*layers))
            return len(self.convs) - 1, cout

        def act():
            if len(self.acts) and pick(3) == 0:   # a shared module: one more call site
                return pick(len(self.acts))
            self.acts.append(tie_qcfs(g, max_L=12))
            return len(self.acts) - 1

        i, c = conv(in_ch)
        self.program.append(("conv", 0, i, act()))
        tensors.append((c, 0))
        for _ in range(steps):
            kind = ("conv", "res", "cat", "down", "up")[pick(5)]
            a = 1 + pick(len(tensors) - 1)       # a spiking tensor (not the input)
            ca, la = tensors[a]
            same = [j for j in range(1, len(tensors)) if tensors[j][1] == la]
            if kind == "res":
                b = same[pick(len(same))]
                ia, co = conv(ca)
                ib = len(self.convs)
                self.convs.append(nn.Conv2d(tensors[b][0], co, 3, 1, 1))
                self.program.append(("res", (a, b), (ia, ib), act()))
                tensors.append((co, la))
            elif kind == "cat":
                b = same[pick(len(same))]
                ic, co = conv(ca + tensors[b][0])
                self.program.append(("cat", (a, b), ic, act()))
                tensors.append((co, la))
            elif kind == "down" and la == 0:
                ic, co = conv(ca)
                self.program.append((("avg", "max")[pick(2)], a, ic, act()))
                tensors.append((co, 1))
            elif kind == "up" and la == 1:
                ic, co = conv(ca)
                self.program.append(("up", a, ic, act()))
                tensors.append((co, 0))
            else:
                ic, co = conv(ca)
                self.program.append(("conv", a, ic, act()))
                tensors.append((co, la))
        c, lvl = tensors[-1]
        self.pool = nn.AdaptiveAvgPool2d(2)
        self.fc = nn.Linear(4 * c, classes)

    def forward(self, x):
        vals = [x]
        for kind, src, conv, act in self.program:
            a = self.acts[act]
            if kind == "res":
                y = self.convs[conv[0]](vals[src[0]]) + self.convs[conv[1]](vals[src[1]])
            elif kind == "cat":
                y = self.convs[conv](torch.cat([vals[src[0]], vals[src[1]]], 1))
            elif kind == "avg":
                y = self.convs[conv](F.avg_pool2d(vals[src], 2))
            elif kind == "max":
                y = self.convs[conv](F.max_pool2d(vals[src], 2))
            elif kind == "up":
                y = self.convs[conv](F.interpolate(vals[src], scale_factor=2, mode="nearest"))
            else:
                y = self.convs[conv](vals[src])
            vals.append(a(y))
        return self.fc(self.pool(vals[-1]).flatten(1))


def exact_net(net: nn.Module, seed: int, shape, batch: int = 3):
    """``net`` on fixed-point grids (exact BN folding), eval mode, and an input on a 2^-4
    grid."""
    g = torch.Generator().manual_seed(seed)
    net = fixed_point(net, g).eval()
    return net, on_grid(g, (batch, *shape), -0.5, 2, 2 ** -4)


def resnet18(seed: int, L_max: int = 6):
    g = torch.Generator().manual_seed(1000 + seed)
    return exact_net(TVResNet18(lambda: tie_qcfs(g, L_max)), seed, (3, 16, 16), batch=2)


def unet(seed: int):
    g = torch.Generator().manual_seed(2000 + seed)
    return exact_net(UNetLike(lambda: tie_qcfs(g, 12)), seed, (2, 8, 8))


def random_dag(seed: int):
    return exact_net(RandomDAG(seed), seed, (2, 8, 8))
