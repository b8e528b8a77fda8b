"""PASCAL is exact at ties for every level L: fixed-point nets whose pre-activations land exactly
on QCFS level boundaries, L in 1..64 (mostly not powers of two), averaging pools whose divisors
round, both neurons, both bias modes, float32 and float64."""

from fractions import Fraction

import pytest
import torch
from convert_cases import exact_ties, on_grid, qcfs_counts, tie_cnn, tie_mlp
from torch import nn

from membra.convert import QCFS, fold_bn, qcfs_count, to_snn

DTYPES = [torch.float32, torch.float64]
VARIANTS = [(n, b) for n in ("two_phase", "signed") for b in ("split", "first")]


def mismatches(snn, counts) -> int:
    assert set(snn.counts) == set(counts)
    return sum(int((snn.counts[p] != counts[p]).sum()) for p in counts)


def test_bias_shares_sum_exactly_to_the_bias_for_every_window():
    """``b`` is cut into ``T`` shares on its own coarsest binary grid: they add up to ``b``
    exactly in any order, unlike ``b / T`` added ``T`` times."""
    from membra.convert import bias_shares

    g = torch.Generator().manual_seed(0)
    for dtype in DTYPES:
        b = torch.cat([torch.randn(200, generator=g, dtype=torch.float64),
                       on_grid(g, (50,), -4, 4, 2 ** -3),
                       torch.tensor([0.0, -0.0, 1e-30, -3e30, 0.1, 1 / 3])]).to(dtype)
        for T in range(1, 65):
            s = bias_shares(b, T)
            assert s.shape == (T, *b.shape) and s.dtype == dtype
            acc = s[0].clone()
            for t in range(1, T):
                acc = acc + s[t]
            assert torch.equal(acc, b), (dtype, T)
            # every share is an integer multiple of b's lowest set bit, and they differ by at
            # most one such unit (as even as b's binary grid allows)
            for j in [*range(0, len(b) - 6, 7), *range(len(b) - 6, len(b))]:
                exact = Fraction(b[j].item())
                if exact == 0:
                    assert not s[:, j].any()
                    continue
                num = abs(exact.numerator)
                unit = Fraction(num & -num, exact.denominator)  # lowest set bit of b
                ks = [Fraction(v) / unit for v in s[:, j].tolist()]
                assert all(k.denominator == 1 for k in ks)
                assert max(ks) - min(ks) <= 1


@pytest.mark.parametrize("dtype", DTYPES, ids=["f32", "f64"])
def test_one_hidden_layer_sweep_over_every_input_window(dtype):
    """For every L_in in 1..64 the second layer's bias is spread over an L_in-step window; its
    pre-activations sit on level boundaries, and the SNN's counts must equal the ANN's."""
    g = torch.Generator().manual_seed(1)
    flipped = []
    for L_in in range(1, 65):
        net = nn.Sequential(nn.Linear(3, 6), QCFS(L_in, 0.25 * L_in), nn.Linear(6, 8),
                            QCFS(5, 5 * 0.25), nn.Linear(8, 2))
        for m in (net[0], net[2], net[4]):
            m.weight.data = on_grid(g, m.weight.shape, -1, 1, 2 ** -3).float()
            m.bias.data = on_grid(g, m.bias.shape, -1, 1, 2 ** -3).float()
        net = net.eval().to(dtype)
        x = on_grid(g, (48, 3), 0, 3, 2 ** -4).to(dtype)
        assert exact_ties(net, x) > 0
        net = net.to(dtype)
        ref, counts = qcfs_counts(fold_bn(net), x)
        for neuron, bias in [("two_phase", "split"), ("signed", "split")]:
            snn = to_snn(net, "pascal", neuron=neuron, bias=bias, dtype=dtype)
            out = snn(x)
            if mismatches(snn, counts) or not torch.equal(out, ref):
                flipped.append((L_in, neuron))
    assert flipped == []


def check_family(build, seed, exact_bn):
    model, x = build(seed, exact_bn)
    ties = exact_ties(model, x)
    if exact_bn:
        assert ties > 0  # the family really produces ties
    for dtype in DTYPES:
        net = model.to(dtype)
        xd = x.to(dtype)
        ref, counts = qcfs_counts(fold_bn(net), xd)
        assert sum(int(c.sum()) for c in counts.values()) > 0
        for neuron, bias in VARIANTS:
            snn = to_snn(net, "pascal", neuron=neuron, bias=bias, dtype=dtype)
            out = snn(xd)
            assert mismatches(snn, counts) == 0, (dtype, neuron, bias)
            assert torch.equal(out.argmax(-1), ref.argmax(-1))
            tol = 1e-12 if dtype == torch.float64 else 1e-4
            torch.testing.assert_close(out, ref, rtol=0, atol=tol)
        if exact_bn:  # folding is exact here, so the user's unfolded net agrees as well
            _, raw = qcfs_counts(net, xd)
            assert all(torch.equal(raw[p], counts[p]) for p in counts)
    model.float()


@pytest.mark.parametrize("seed", range(12))
@pytest.mark.parametrize("build", [tie_mlp, tie_cnn], ids=["mlp", "cnn"])
def test_tie_heavy_nets_have_zero_count_mismatches(build, seed):
    check_family(build, seed, exact_bn=True)


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("build", [tie_mlp, tie_cnn], ids=["mlp", "cnn"])
def test_rounding_batchnorm_matches_the_folded_ann(build, seed):
    """BN with the default eps: folding rounds; the SNN still matches the *folded* ANN."""
    check_family(build, seed, exact_bn=False)


def test_qcfs_honours_exact_ties_when_theta_is_a_power_of_two():
    """At ``z / theta + 1/2`` an integer the count is that integer (floor), for every L in
    1..64 and theta in {1, 1/2, 1/4, 1/8}: the scale ``L / lam`` must be exact there (PyTorch's
    ``L / tensor`` is ``L * (1 / tensor)``, which is not)."""
    wrong = []
    for dtype in DTYPES:
        for L in range(1, 65):
            for k in range(4):
                theta = 2.0 ** -k
                lam = torch.tensor(theta * L, dtype=dtype)
                n = torch.arange(0, L + 1, dtype=dtype)
                z = (n - 0.5) * theta  # exact ties
                got = qcfs_count(z, lam, L)
                if not torch.equal(got, n):
                    wrong.append((str(dtype), L, theta))
    assert wrong == []


def test_fold_can_differ_from_the_unfolded_net_at_a_tie():
    """The documented exception: a BN whose scale ``1/sqrt(var + eps)`` is not exact. An input
    equal to the running mean gives BN output ``beta`` in real arithmetic, here exactly on a
    level boundary; the unfolded and the folded ANN round it differently and can disagree.
    The SNN always follows the folded ANN."""
    differ = []
    for dtype in DTYPES:
        for L in (3, 5, 6, 7):
            for mu in (0.375, 1.375, 5.125, 11.5):
                net = nn.Sequential(nn.Linear(1, 1, bias=False), nn.BatchNorm1d(1),
                                    QCFS(L, 0.25 * L), nn.Linear(1, 1)).eval()
                net[0].weight.data.fill_(1.0)
                bn = net[1]
                bn.eps, bn.bias.data[:] = 0.0, 0.125  # beta = theta / 2: a tie
                bn.running_var.fill_(3.0)
                bn.running_mean.fill_(mu)
                net = net.to(dtype)
                x = torch.full((2, 1), mu, dtype=dtype)
                _, raw = qcfs_counts(net, x)
                _, folded = qcfs_counts(fold_bn(net), x)
                differ.append(not torch.equal(raw["2"], folded["2"]))
                for neuron, bias in VARIANTS:
                    snn = to_snn(net, "pascal", neuron=neuron, bias=bias, dtype=dtype)
                    snn(x)
                    assert torch.equal(snn.counts["2"], folded["2"])
    assert 0 < sum(differ) < len(differ)
