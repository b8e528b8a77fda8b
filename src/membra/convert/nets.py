"""Convertible ANNs (ReLU modules, replaced by QCFS with :func:`~membra.convert.replace_relu`):
the offline digits net of the conversion spec and torchvision-style VGG-16 / ResNet-18/34.

Each builder takes ``in_shape`` ``(C, H, W)`` and ``num_classes``; :data:`NETS` maps names to
builders for run configs (``[convert] net = "..."``).
"""

from __future__ import annotations

from torch import nn

from .qcfs import Residual

__all__ = ["NETS", "build_net", "digits_net", "vgg16", "vgg_small", "VGGSmall", "resnet18",
           "resnet34", "BasicBlock"]


def _conv_bn(cin, cout, stride=1):
    return [nn.Conv2d(cin, cout, 3, stride, 1, bias=False), nn.BatchNorm2d(cout)]


def digits_net(in_shape=(1, 8, 8), num_classes=10) -> nn.Sequential:
    """Conv(1-16)-BN-ReLU, Conv(16-32)-BN-ReLU-AvgPool2, Residual[Conv-BN-ReLU-Conv-BN]-ReLU,
    AvgPool2-Flatten-Linear(128-64)-BN-ReLU-Linear(64-K) (for 8x8 inputs)."""
    C, H, W = in_shape
    return nn.Sequential(
        *_conv_bn(C, 16), nn.ReLU(),
        *_conv_bn(16, 32), nn.ReLU(), nn.AvgPool2d(2),
        Residual(nn.Sequential(*_conv_bn(32, 32), nn.ReLU(), *_conv_bn(32, 32))), nn.ReLU(),
        nn.AvgPool2d(2), nn.Flatten(),
        nn.Linear(32 * (H // 4) * (W // 4), 64), nn.BatchNorm1d(64), nn.ReLU(),
        nn.Linear(64, num_classes))


_VGG16 = [64, 64, "P", 128, 128, "P", 256, 256, 256, "P", 512, 512, 512, "P", 512, 512, 512, "P"]


def vgg16(in_shape=(3, 32, 32), num_classes=10, pool: str = "avg", width: int = 512,
          dropout: float = 0.5) -> nn.Sequential:
    """VGG-16 with BN (13 conv + 2 hidden FC), average pooling by default (QCFS recipe)."""
    if pool not in ("avg", "max"):
        raise ValueError(f"pool must be 'avg' or 'max', got {pool!r}")
    C, H, W = in_shape
    layers, c, size = [], C, (H, W)
    for v in _VGG16:
        if v == "P":
            layers.append(nn.AvgPool2d(2) if pool == "avg" else nn.MaxPool2d(2))
            size = (size[0] // 2, size[1] // 2)
        else:
            layers += [*_conv_bn(c, v), nn.ReLU()]
            c = v
    layers += [nn.Flatten(), nn.Linear(c * size[0] * size[1], width), nn.ReLU(),
               nn.Dropout(dropout), nn.Linear(width, width), nn.ReLU(), nn.Dropout(dropout),
               nn.Linear(width, num_classes)]
    return nn.Sequential(*layers)


class VGGSmall(nn.Module):
    """A narrow VGG-style net with ``depth`` QCFS (ReLU) layers: ``depth - 1`` 3-wide
    Conv-BN-ReLU layers in stages (2 per stage for ``depth`` <= 9, else 3), an average pool
    (kernel 2) after each stage while the map is >= 2 wide, then Flatten-Linear(64)-BN-ReLU
    -Linear(K). ``in_shape`` ``(C, H, W)`` uses Conv2d; a flat ``(N,)`` input (a 1-D signal)
    is viewed as ``(1, N)`` and uses Conv1d. Stage widths are ``width * (1, 2, 4, 4, ...)``."""

    def __init__(self, in_shape=(1, 28, 28), num_classes=10, depth: int = 7, width: int = 8):
        super().__init__()
        if isinstance(depth, bool) or not isinstance(depth, int) or depth < 2:
            raise ValueError(f"vgg_small: depth (QCFS layers) must be an int >= 2, got {depth!r}")
        if isinstance(width, bool) or not isinstance(width, int) or width < 1:
            raise ValueError(f"vgg_small: width must be a positive int, got {width!r}")
        self.flat = len(in_shape) == 1
        conv, bn, pool = ((nn.Conv1d, nn.BatchNorm1d, nn.AvgPool1d) if self.flat else
                          (nn.Conv2d, nn.BatchNorm2d, nn.AvgPool2d))
        c, size = (1, [in_shape[0]]) if self.flat else (in_shape[0], list(in_shape[1:]))
        per_stage = 2 if depth <= 9 else 3
        layers, n_conv = [], depth - 1
        for i in range(n_conv):
            w = width * min(2 ** (i // per_stage), 4)
            layers += [conv(c, w, 3, 1, 1, bias=False), bn(w), nn.ReLU()]
            c = w
            if (i + 1) % per_stage == 0 and min(size) >= 2:
                layers.append(pool(2))
                size = [s // 2 for s in size]
        self.features = nn.Sequential(*layers)
        n = c
        for s in size:
            n *= s
        self.classifier = nn.Sequential(nn.Flatten(), nn.Linear(n, 64), nn.BatchNorm1d(64),
                                        nn.ReLU(), nn.Linear(64, num_classes))

    def forward(self, x):
        if self.flat:
            x = x.view(x.size(0), 1, -1)
        return self.classifier(self.features(x))


def vgg_small(in_shape=(1, 28, 28), num_classes=10, depth: int = 7, width: int = 8) -> VGGSmall:
    """:class:`VGGSmall`: a narrow VGG-style net with ``depth`` QCFS layers."""
    return VGGSmall(in_shape, num_classes, depth, width)


class BasicBlock(nn.Module):
    """torchvision's ResNet basic block with its own ReLU modules (one QCFS each)."""

    def __init__(self, cin, cout, stride=1):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.relu1 = nn.ReLU()
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.downsample = None
        if stride != 1 or cin != cout:
            self.downsample = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False),
                                            nn.BatchNorm2d(cout))
        self.relu2 = nn.ReLU()

    def forward(self, x):
        out = self.bn2(self.conv2(self.relu1(self.bn1(self.conv1(x)))))
        identity = x if self.downsample is None else self.downsample(x)
        return self.relu2(out + identity)


class ResNet(nn.Module):
    """torchvision-style ResNet (basic blocks). ``stem="cifar"``: 3x3 conv; ``"imagenet"``:
    7x7/2 conv + 3x3/2 max-pool (converted by PASCAL, which allows MaxPool after a QCFS)."""

    def __init__(self, blocks, in_shape=(3, 32, 32), num_classes=10, stem="cifar", width=64):
        super().__init__()
        C = in_shape[0]
        if stem == "cifar":
            self.conv1 = nn.Conv2d(C, width, 3, 1, 1, bias=False)
            self.maxpool = nn.Identity()
        elif stem == "imagenet":
            self.conv1 = nn.Conv2d(C, width, 7, 2, 3, bias=False)
            self.maxpool = nn.MaxPool2d(3, 2, 1)
        else:
            raise ValueError(f"stem must be 'cifar' or 'imagenet', got {stem!r}")
        self.bn1 = nn.BatchNorm2d(width)
        self.relu = nn.ReLU()
        layers, c = [], width
        for i, n in enumerate(blocks):
            w = width * 2 ** i
            stage = [BasicBlock(c, w, 1 if i == 0 else 2)]
            stage += [BasicBlock(w, w) for _ in range(n - 1)]
            layers.append(nn.Sequential(*stage))
            c = w
        self.layer1, self.layer2, self.layer3, self.layer4 = layers
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(c, num_classes)

    def forward(self, x):
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return self.fc(self.avgpool(x).flatten(1))


def resnet18(in_shape=(3, 32, 32), num_classes=10, stem="cifar", width=64) -> ResNet:
    """ResNet-18 (2-2-2-2 basic blocks)."""
    return ResNet((2, 2, 2, 2), in_shape, num_classes, stem, width)


def resnet34(in_shape=(3, 224, 224), num_classes=1000, stem="imagenet", width=64) -> ResNet:
    """ResNet-34 (3-4-6-3 basic blocks)."""
    return ResNet((3, 4, 6, 3), in_shape, num_classes, stem, width)


NETS = {"digits_net": digits_net, "vgg16": vgg16, "vgg_small": vgg_small, "resnet18": resnet18,
        "resnet34": resnet34}


def build_net(name: str, *, in_shape, num_classes: int, **options) -> nn.Module:
    """The ANN ``name`` of :data:`NETS` (with ReLUs; call ``replace_relu`` next)."""
    if name not in NETS:
        raise ValueError(f"unknown convertible net {name!r}; choose one of {sorted(NETS)}")
    try:
        return NETS[name](in_shape=tuple(in_shape), num_classes=num_classes, **options)
    except TypeError as err:
        raise ValueError(f"net {name!r}: bad options {options} ({err})") from None
