"""Random convertible nets for the conversion tests (BN statistics, lambda and L random)."""

from __future__ import annotations

import torch
from torch import nn

from membra.convert import QCFS, Residual, qcfs_count

LEVELS = (1, 2, 4, 8, 16)


def _q(g):
    L = LEVELS[int(torch.randint(len(LEVELS), (1,), generator=g))]
    return QCFS(L, lam_init=float(0.5 + 2.5 * torch.rand((), generator=g)))


def randomize_bn(model: nn.Module, g: torch.Generator) -> nn.Module:
    for m in model.modules():
        if isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d)):
            n = m.num_features
            m.running_mean.copy_(0.3 * torch.randn(n, generator=g))
            m.running_var.copy_(0.5 + torch.rand(n, generator=g))
            m.weight.data.copy_(0.5 + torch.rand(n, generator=g))
            m.bias.data.copy_(0.3 * torch.randn(n, generator=g))
    return model


def random_mlp(seed: int) -> tuple[nn.Module, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    h1, h2 = (int(v) for v in torch.randint(8, 40, (2,), generator=g))
    net = nn.Sequential(nn.Linear(12, h1), nn.BatchNorm1d(h1), _q(g), nn.Dropout(0.2),
                        nn.Linear(h1, h2), nn.BatchNorm1d(h2), _q(g),
                        nn.Linear(h2, h2, bias=False), _q(g), nn.Linear(h2, 5))
    x = 2 * torch.rand(16, 12, generator=g)
    return randomize_bn(net, g).eval(), x


def random_cnn(seed: int) -> tuple[nn.Module, torch.Tensor]:
    """Conv-BN-QCFS-MaxPool, a residual block with an identity shortcut, one with a
    Conv+BN shortcut, AvgPool, Flatten, Dropout, Linear."""
    g = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    c = 4 + int(torch.randint(5, (1,), generator=g))

    def cbn(i, o, k=3):
        return [nn.Conv2d(i, o, k, 1, k // 2), nn.BatchNorm2d(o)]

    net = nn.Sequential(
        *cbn(2, c), _q(g), nn.MaxPool2d(2),
        Residual(nn.Sequential(*cbn(c, c), _q(g), *cbn(c, c))), _q(g),
        Residual(nn.Sequential(*cbn(c, 2 * c), _q(g), *cbn(2 * c, 2 * c)),
                 nn.Sequential(*cbn(c, 2 * c, 1))), _q(g),
        nn.AvgPool2d(2), nn.Flatten(), nn.Dropout(0.1),
        nn.Linear(2 * c * 2 * 2, 16), nn.BatchNorm1d(16), _q(g), nn.Linear(16, 7))
    x = 2 * torch.rand(4, 2, 8, 8, generator=g)
    return randomize_bn(net, g).eval(), x


def qcfs_counts(net: nn.Module, x: torch.Tensor) -> tuple[torch.Tensor, dict]:
    """``(logits, {QCFS path: count of its input})`` of one forward pass of ``net``."""
    counts = {}
    hooks = [m.register_forward_hook(
        lambda m, a, o, p=p: counts.__setitem__(p, qcfs_count(a[0], m.lam, m.L)))
        for p, m in net.named_modules() if isinstance(m, QCFS)]
    try:
        with torch.no_grad():
            out = net(x)
    finally:
        for h in hooks:
            h.remove()
    return out, counts
