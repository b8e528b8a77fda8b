"""quantize_relu: every ReLU call site (module, shared module, F.relu, torch.relu, x.relu())
becomes a QCFS whose clip value is the max / percentile of that site's recorded ReLU outputs,
cross-checked against hooks on the ReLU net and torch.quantile."""

import pytest
import torch
import torch.nn.functional as F
from convert_cases import qcfs_counts
from fx_cases import TVResNet18
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from membra.convert import QCFS, fold_bn, qcfs_layers, quantize_relu, relu_sites, to_snn
from membra.convert.calibrate import percentile


class Mixed(nn.Module):
    """A shared nn.ReLU (two calls), F.relu, torch.relu and x.relu() on conv and linear
    activations. With ``taps`` a list, every ReLU output is appended to it in call order (the
    plain reference of the recorded activations)."""

    def __init__(self):
        super().__init__()
        self.c1, self.c2 = nn.Conv2d(2, 5, 3, padding=1), nn.Conv2d(5, 3, 3, padding=1)
        self.f1, self.f2, self.f3 = nn.Linear(12, 7), nn.Linear(7, 4), nn.Linear(7, 4)
        self.relu = nn.ReLU()
        self.taps = None

    def tap(self, a):
        if self.taps is not None:
            self.taps.append(a.detach())
        return a

    def forward(self, x):
        h = self.tap(self.relu(self.c1(x)))
        h = self.tap(F.relu(self.c2(h)))
        h = F.avg_pool2d(h, 2).flatten(1)
        h = self.tap(torch.relu(self.f1(h)))
        return self.f2(self.tap(self.relu(h))) + self.f3(self.tap(h.relu()))


SITES = ["relu@1", "relu_1", "relu_2", "relu@2", "relu_4"]  # fx node names of the functions


def recorded(model, data):
    """ReLU outputs of every call site of ``model`` on ``data`` in call order."""
    model.taps = []
    with torch.no_grad():
        for x in data.split(16):
            model(x)
    outs, model.taps = model.taps, None
    n = len(SITES)
    return [torch.cat(outs[i::n]) for i in range(n)]


def test_sites_are_every_relu_call():
    assert relu_sites(Mixed()) == SITES
    assert len(relu_sites(TVResNet18(nn.ReLU))) == 17


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("scale,p", [("max", None), ("percentile", 99.9),
                                     ("percentile", 50.0), ("percentile", 100.0),
                                     ("percentile", 37.3)])
@pytest.mark.parametrize("channelwise", [False, True])
def test_lambda_is_the_statistic_of_each_sites_relu_outputs(seed, scale, p, channelwise):
    torch.manual_seed(seed)
    model = Mixed().eval()
    data = torch.randn(40 + seed * 7, 2, 4, 4)
    kw = {} if p is None else {"percentile": p}
    q = quantize_relu(model, data, L=3 + seed, scale=scale, channelwise=channelwise, **kw)
    layers = qcfs_layers(q)
    assert sorted(layers) == sorted(SITES) and all(m.L == 3 + seed for m in layers.values())
    for site, a in zip(SITES, recorded(model, data), strict=True):
        v = a.transpose(0, 1).reshape(a.shape[1], -1) if channelwise else a.reshape(1, -1)
        ref = v.amax(-1) if scale == "max" else torch.quantile(v, p / 100, dim=-1)
        ref = torch.where(ref > 0, ref, torch.ones_like(ref))
        lam = layers[site].lam.detach()
        if channelwise:
            assert lam.shape == (a.shape[1],) + (1,) * (a.dim() - 2), site
        else:
            assert lam.shape == ()
        torch.testing.assert_close(lam.reshape(-1), ref, rtol=2e-5, atol=1e-6)
    # a shared nn.ReLU got two clip values; the model is untouched
    assert isinstance(model.relu, nn.ReLU)
    if scale == "max" and not channelwise:
        assert not torch.equal(layers["relu@1"].lam, layers["relu@2"].lam)


@pytest.mark.parametrize("n", [1, 2, 5, 17, 1000])
def test_percentile_matches_torch_quantile(n):
    g = torch.Generator().manual_seed(n)
    v = torch.randn(3, n, generator=g, dtype=torch.float64)
    v[:, : n // 3] = 0.0                                     # ties
    for p in (0.1, 25.0, 50.0, 99.9, 100.0):
        torch.testing.assert_close(percentile(v, p), torch.quantile(v, p / 100, dim=-1))


def test_a_dataloader_calibrates_like_the_tensor():
    torch.manual_seed(0)
    model, data = Mixed().eval(), torch.randn(50, 2, 4, 4)
    loader = DataLoader(TensorDataset(data, torch.zeros(50)), batch_size=7)
    a = qcfs_layers(quantize_relu(model, data, L=4, scale="percentile", percentile=90))
    b = qcfs_layers(quantize_relu(model, loader, L=4, scale="percentile", percentile=90))
    for site in SITES:
        torch.testing.assert_close(a[site].lam, b[site].lam)


@pytest.mark.parametrize("channelwise", [False, True])
def test_the_calibrated_net_converts_and_pascal_equals_it(channelwise):
    torch.manual_seed(1)
    model, data = Mixed().eval(), torch.randn(30, 2, 4, 4)
    q = quantize_relu(model, data, L=5, channelwise=channelwise)
    x = torch.randn(6, 2, 4, 4)
    ref, counts = qcfs_counts(fold_bn(q).double(), x.double())
    snn = to_snn(q, "pascal", dtype=torch.float64)
    torch.testing.assert_close(snn(x.double()), ref, rtol=0, atol=1e-10)
    assert set(snn.counts) == set(counts) == set(SITES)
    assert all(torch.equal(snn.counts[s], counts[s]) for s in SITES)
    naive = to_snn(q, "naive", T=8)
    assert naive(x).shape == (6, 4)
    # ReLU -> QCFS with lambda = max and large L stays close to the ReLU net
    fine = quantize_relu(model, torch.cat([data, x]), L=256, channelwise=channelwise)
    with torch.no_grad():
        torch.testing.assert_close(fine(x), model(x), rtol=0, atol=0.05)


@pytest.mark.parametrize("kw,match", [
    ({"L": 0}, "L .*must be an int >= 1, got 0"),
    ({"L": 2.5}, "L .*must be an int >= 1, got 2.5"),
    ({"scale": "mean"}, r"scale must be one of \('max', 'percentile'\), got 'mean'"),
    ({"scale": "percentile", "percentile": 0}, r"percentile must be a number in \(0, 100\]"),
    ({"percentile": 150.0}, r"percentile must be a number in \(0, 100\], got 150.0"),
    ({"channelwise": "yes"}, "channelwise must be True or False, got 'yes'"),
])
def test_bad_arguments_are_named(kw, match):
    with pytest.raises((ValueError, TypeError), match=match):
        quantize_relu(Mixed(), torch.randn(4, 2, 4, 4), **kw)


def test_bad_data_and_no_relu_are_named():
    with pytest.raises(TypeError, match="data must be a tensor .* got int"):
        quantize_relu(Mixed(), 3)
    with pytest.raises(ValueError, match="data holds no batch"):
        quantize_relu(Mixed(), [])
    with pytest.raises(TypeError, match="each batch must be a tensor"):
        quantize_relu(Mixed(), [("a", 1)])
    with pytest.raises(ValueError, match="has no ReLU"):
        quantize_relu(nn.Sequential(nn.Linear(3, 3), QCFS(2)), torch.randn(2, 3))
