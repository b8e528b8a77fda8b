"""Random convertible nets for the conversion tests (BN statistics, lambda and L random)."""

from __future__ import annotations

import torch
from torch import nn

from membra.convert import QCFS, Residual, qcfs_counts  # noqa: F401 (tests import qcfs_counts from here)

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


# ---- tie-heavy nets: fixed-point arithmetic, pre-activations exactly on level boundaries ----

def on_grid(g: torch.Generator, shape, lo: float, hi: float, step: float) -> torch.Tensor:
    """Uniform random multiples of ``step`` in ``[lo, hi]`` (exact binary fractions)."""
    k = torch.randint(round(lo / step), round(hi / step) + 1, tuple(shape), generator=g)
    return k.to(torch.float64) * step


def tie_qcfs(g: torch.Generator, max_L: int = 64) -> QCFS:
    """QCFS with ``L`` uniform in ``1..max_L`` (mostly not powers of two) and a power-of-two
    quantum ``theta = lam / L`` in ``{1, 1/2, 1/4, 1/8}``."""
    L = int(torch.randint(1, max_L + 1, (1,), generator=g))
    theta = 2.0 ** -int(torch.randint(0, 4, (1,), generator=g))
    return QCFS(L, lam_init=theta * L)


def fixed_point(model: nn.Module, g: torch.Generator, exact_bn: bool = True) -> nn.Module:
    """Weights and biases on a 2^-3 grid in [-1, 1]; BatchNorm with ``gamma``, ``beta``,
    ``mean`` on binary grids and ``var + eps`` in {1/4, 1, 4} (``exact_bn``: folding is exact,
    ``eps = 0``) or a random ``var`` with the default ``eps`` (folding rounds)."""
    for m in model.modules():
        if isinstance(m, (nn.Linear, nn.Conv2d)):
            m.weight.data = on_grid(g, m.weight.shape, -1, 1, 2 ** -3).float()
            if m.bias is not None:
                m.bias.data = on_grid(g, m.bias.shape, -1, 1, 2 ** -3).float()
        elif isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d)):
            n = m.num_features
            m.running_mean.copy_(on_grid(g, (n,), -0.5, 0.5, 2 ** -3))
            m.weight.data = on_grid(g, (n,), 0.5, 2, 2 ** -2).float()
            m.bias.data = on_grid(g, (n,), -0.5, 0.5, 2 ** -3).float()
            if exact_bn:
                m.eps = 0.0
                m.running_var.copy_(4.0 ** torch.randint(-1, 2, (n,), generator=g))
            else:
                m.running_var.copy_(on_grid(g, (n,), 0.25, 2, 2 ** -4))
    return model


def tie_mlp(seed: int, exact_bn: bool = True) -> tuple[nn.Module, torch.Tensor]:
    """Linear-BN-QCFS-Dropout-Linear-QCFS-Linear(no bias)-QCFS-Linear, fixed point."""
    g = torch.Generator().manual_seed(seed)
    h1, h2 = (int(v) for v in torch.randint(5, 24, (2,), generator=g))
    net = nn.Sequential(nn.Linear(7, h1), nn.BatchNorm1d(h1), tie_qcfs(g), nn.Dropout(0.3),
                        nn.Linear(h1, h2), tie_qcfs(g), nn.Linear(h2, h2, bias=False),
                        tie_qcfs(g), nn.Linear(h2, 5))
    x = on_grid(g, (32, 7), -0.5, 2, 2 ** -4)
    return fixed_point(net, g, exact_bn).eval(), x


def tie_cnn(seed: int, exact_bn: bool = True) -> tuple[nn.Module, torch.Tensor]:
    """Fixed-point CNN with every op whose arithmetic rounds per step: AvgPool 3x3 (divisors
    9, 6, 4 with ``count_include_pad=False``), AdaptiveAvgPool 5x5 -> 3x3 (divisors 4, 6, 9);
    plus MaxPool after a QCFS, identity and Conv+BN residual shortcuts, Flatten, Dropout."""
    g = torch.Generator().manual_seed(seed)
    c = 3 + int(torch.randint(3, (1,), generator=g))

    def cbn(i, o, k=3):
        return [nn.Conv2d(i, o, k, 1, k // 2), nn.BatchNorm2d(o)]

    net = nn.Sequential(
        *cbn(2, c), tie_qcfs(g), nn.AvgPool2d(3, 1, 1, count_include_pad=False),
        nn.Conv2d(c, c, 3, 1, 1), tie_qcfs(g), nn.MaxPool2d(2),
        Residual(nn.Sequential(*cbn(c, c), tie_qcfs(g), *cbn(c, c))), tie_qcfs(g),
        Residual(nn.Sequential(*cbn(c, c + 1), tie_qcfs(g), nn.Conv2d(c + 1, c + 1, 3, 1, 1)),
                 nn.Sequential(*cbn(c, c + 1, 1))), tie_qcfs(g),
        nn.AdaptiveAvgPool2d(3), nn.Flatten(), nn.Dropout(0.2),
        nn.Linear(9 * (c + 1), 12), tie_qcfs(g), nn.Linear(12, 4))
    x = on_grid(g, (3, 2, 10, 10), -0.5, 2, 2 ** -4)
    return fixed_point(net, g, exact_bn).eval(), x


def exact_ties(net: nn.Module, x: torch.Tensor) -> int:
    """How many QCFS inputs of ``net`` lie exactly on a level boundary inside the clip range
    (``z L / lam + 1/2`` an integer in ``1..L``), computed in float64."""
    ties = []
    hooks = [m.register_forward_hook(lambda m, a, o: ties.append(
        _ties(a[0].double(), m.lam.double(), m.L))) for m in net.modules()
        if isinstance(m, QCFS)]
    try:
        with torch.no_grad():
            net.double()(x.double())
    finally:
        for h in hooks:
            h.remove()
        net.float()
    return sum(ties)


def _ties(z, lam, L):
    u = z * L / lam + 0.5
    return int(((u == u.floor()) & (u >= 1) & (u <= L)).sum())


# ---- nets whose first layers act on the static input only (the naive stem) ----------------

class StemNet(nn.Module):
    """A seeded net whose layers before the first QCFS see only the (static) input: a Conv or
    Linear first layer with random BN (folding rounds), optionally an average pool or a flatten
    before it, a residual ``f(x) + g(x)`` of two input branches, or ``cat([f(x), g(x)])``;
    then QCFS layers, one of them fed by the residual sum."""

    def __init__(self, seed: int):
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        pick = lambda n: int(torch.randint(n, (1,), generator=g))  # noqa: E731
        self.conv = bool(pick(2))
        self.merge = ("none", "add", "cat")[pick(3)]
        self.pre = ("none", "pool")[pick(2)] if self.conv else "none"
        c_in, c = 1 + pick(3), 3 + pick(4)                 # odd widths, non-powers of two
        self.size = 5 + pick(4) if self.conv else 7 + pick(13)
        s = self.size // 2 if self.pre == "pool" else self.size

        def first(o):
            if self.conv:
                return nn.Sequential(nn.Conv2d(c_in, o, 3, 1, 1), nn.BatchNorm2d(o))
            return nn.Sequential(nn.Linear(c_in * self.size, o), nn.BatchNorm1d(o))

        self.f = first(c)
        self.g = first(c) if self.merge != "none" else None
        c1 = 2 * c if self.merge == "cat" else c
        self.q1 = _q(g)
        n1 = c1 * s * s if self.conv else c1
        self.body = nn.Sequential(nn.Flatten(), nn.Linear(n1, 11), _q(g), nn.Linear(11, 4))
        self.in_shape = (c_in, self.size, self.size) if self.conv else (c_in * self.size,)
        randomize_bn(self, g)

    def forward(self, x):
        if self.pre == "pool":
            x = nn.functional.avg_pool2d(x, 2)
        y = self.f(x)
        if self.merge == "add":
            y = y + self.g(x)
        elif self.merge == "cat":
            y = torch.cat([y, self.g(x)], 1)
        return self.body(self.q1(y))


def stem_net(seed: int, batch: int = 5) -> tuple[nn.Module, torch.Tensor]:
    """:class:`StemNet` (eval) and a random float32 input ``[batch, ...]``."""
    torch.manual_seed(seed)
    net = StemNet(seed).eval()
    g = torch.Generator().manual_seed(10_000 + seed)
    return net, 2 * torch.rand(batch, *net.in_shape, generator=g) - 0.3
