"""AL-QCFS level selection: the distortion criterion against its closed form, the PASCAL
histogram statistic against scipy, and the argument errors."""

import numpy as np
import pytest
import torch
from torch import nn

from membra.convert import QCFS, al_select, distortion, pascal_hist_statistic


def identity_net(lam: float) -> nn.Sequential:
    """x -> QCFS(x) -> Linear: the QCFS layer '1' sees z = x."""
    fc = nn.Linear(1, 1)
    fc.weight.data.fill_(1.0)
    fc.bias.data.zero_()
    return nn.Sequential(fc, QCFS(8, lam_init=lam), nn.Linear(1, 2)).eval()


def uniform_grid(lam: float, n: int = 200_000) -> torch.Tensor:
    return ((torch.arange(n, dtype=torch.float64) + 0.5) * (lam / n)).unsqueeze(1)


@pytest.mark.parametrize("L", [1, 2, 4, 8])
def test_distortion_of_uniform_input_is_one_over_4_L_squared(L):
    # z ~ U(0, lam): rounding error uniform on +-theta/2, E e^2 = theta^2/12, E z^2 = lam^2/3
    lam = 1.5
    z = uniform_grid(lam).squeeze(1)
    assert distortion(z, lam, L) == pytest.approx(1 / (4 * L * L), rel=1e-3)
    assert distortion(torch.full((5,), -1.0, dtype=torch.float64), lam, L) == 0.0


@pytest.mark.parametrize("tau,want", [(0.3, 1), (0.1, 2), (0.02, 4), (0.01, 8), (1e-4, 16)])
def test_al_select_takes_the_smallest_level_within_tau(tau, want):
    net = identity_net(1.0).double()
    x = uniform_grid(1.0, 20_000)
    batches = [(x[i:i + 5000], None) for i in range(0, len(x), 5000)]
    # 1/(4L^2): 0.25, 0.0625, 0.0156, 0.0039, 0.00098 for L = 1, 2, 4, 8, 16
    assert al_select(net, batches, tau=tau) == {"1": want}
    assert net[1].L == 8  # selection does not change the model


def test_pascal_hist_statistic_matches_scipy():
    stats = pytest.importorskip("scipy.stats")
    g = torch.Generator().manual_seed(0)
    out = torch.rand(10_000, generator=g) ** 3
    h = np.histogram(out.numpy().astype(np.float64), bins=5,
                     range=(float(out.min()), float(out.max())))[0].astype(float)
    B = 5
    A = 1 - ((h >= h.mean()).sum() - 1) / (B - 1)
    want = A * (stats.skew(h) ** 2 + 1) * (stats.kurtosis(h) + 3 * B * B / ((B - 2) * (B - 3)))
    assert pascal_hist_statistic(out) == pytest.approx(want, rel=1e-9)


def test_pascal_hist_criterion_maps_M_with_user_thresholds():
    net = identity_net(1.0).double()
    x = uniform_grid(1.0, 4000)
    M = pascal_hist_statistic(net[1](net[0](x)))
    assert al_select(net, x, candidates=(2, 8), criterion="pascal_hist",
                     thresholds=[M + 1]) == {"1": 2}
    assert al_select(net, x, candidates=(2, 8), criterion="pascal_hist",
                     thresholds=[M - 1]) == {"1": 8}


def test_al_select_argument_errors():
    net = identity_net(1.0)
    x = torch.rand(8, 1)
    with pytest.raises(ValueError, match="criterion must be"):
        al_select(net, x, criterion="entropy")
    with pytest.raises(ValueError, match="needs 4 thresholds"):
        al_select(net, x, criterion="pascal_hist")
    with pytest.raises(ValueError, match="tau must be positive"):
        al_select(net, x, tau=0.0)
    with pytest.raises(ValueError, match="candidates must be positive"):
        al_select(net, x, candidates=(0, 2))
    with pytest.raises(ValueError, match="calibration data is empty"):
        al_select(net, [])
    with pytest.raises(ValueError, match="no QCFS layers"):
        al_select(nn.Sequential(nn.Linear(1, 1)), x)
