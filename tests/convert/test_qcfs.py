"""QCFS activation, its gradient, the scalar theorem of the PASCAL neurons, front-loading."""

import math

import pytest
import torch

from membra.convert import (
    QCFS,
    get_L,
    qcfs,
    qcfs_count,
    replace_relu,
    set_L,
    signed_counts,
    two_phase_counts,
)


def py_count(z, lam, L):
    return min(max(math.floor(z * (L / lam) + 0.5), 0), L)


def test_count_matches_a_python_loop_including_ties():
    lam, L = 1.5, 4
    theta = lam / L
    ties = [(k - 0.5) * theta for k in range(-2, 8)]  # z / theta + 1/2 integer
    zs = torch.tensor(ties + [-1e9, -3.0, 0.0, 1e-12, 0.2, 0.9, 1.4999, 2.0, 1e9],
                      dtype=torch.float64)
    got = qcfs_count(zs, lam, L)
    assert got.tolist() == [py_count(z, lam, L) for z in zs.tolist()]
    out = QCFS(L, lam)(zs.float()).double()
    assert torch.allclose(out, got * theta, atol=1e-6)


def test_gradient_is_straight_through_on_floor_only():
    lam0, L = 2.0, 4
    m = QCFS(L, lam0)
    z = torch.tensor([-1.0, 0.3, 0.9, 1.7, 5.0], requires_grad=True)
    out = m(z)
    out.sum().backward()
    # d out / d z: 1 inside the clip, 0 where clamped at 0 or saturated at lam
    assert z.grad.tolist() == [0.0, 1.0, 1.0, 1.0, 0.0]
    # d out / d lam: (out - z) / lam inside, 1 saturated, 0 clamped
    inside = [(o - zz) / lam0 for o, zz in zip(out.tolist()[1:4], z.tolist()[1:4], strict=True)]
    assert m.lam.grad.item() == pytest.approx(sum(inside) + 1.0, abs=1e-6)


@pytest.mark.parametrize("L", [1, 2, 3, 8, 16])
def test_two_phase_neuron_emits_the_qcfs_count_front_loaded(L):
    lam = 1.25
    theta = lam / L
    zs = torch.cat([torch.tensor([(k - 0.5) * theta for k in range(-3, L + 4)]),
                    torch.linspace(-2, 3, 401), torch.tensor([-1e6, 1e6])]).double()
    spikes = two_phase_counts(zs, lam, L)
    assert spikes.shape == (L, len(zs))
    n = spikes.sum(0)
    assert torch.equal(n, qcfs_count(zs, lam, L))
    k = torch.arange(1, L + 1, dtype=n.dtype).unsqueeze(1)
    assert torch.equal(spikes, (k <= n).to(spikes.dtype))  # thermometer code


@pytest.mark.parametrize("lam,L", [(1.0, 1), (2.0, 4), (0.5, 2), (1.0, 16)])
def test_both_neurons_at_exact_ties(lam, L):
    """z / theta + 1/2 = k exactly (dyadic theta): both neurons emit clip(k, 0, L), the
    rounding of floor(k) = k, checked against integers, not the same float expression."""
    theta = lam / L
    ks = list(range(-3, L + 4))
    z = torch.tensor([(k - 0.5) * theta for k in ks], dtype=torch.float64)
    v0 = z * (L / lam) + 0.5
    assert torch.equal(v0, torch.tensor(ks, dtype=torch.float64))  # the ties are exact
    want = torch.tensor([min(max(k, 0), L) for k in ks], dtype=torch.float64)
    assert torch.equal(two_phase_counts(z, lam, L).sum(0), want)
    # signed neuron: the same totals arriving as 3 uneven currents (dyadic, so sums are exact)
    g = torch.Generator().manual_seed(L)
    a = torch.randint(-16, 17, (2, len(ks)), generator=g).double() * (theta / 8)
    currents = torch.stack([a[0], a[1], z - a[0] - a[1]])
    assert torch.equal(currents.sum(0), z)
    spikes, _ = signed_counts(currents, lam, L)
    assert torch.equal(spikes.sum(0), want)
    for dtype in (torch.float32, torch.float64):
        assert torch.equal(qcfs_count(z.to(dtype), lam, L).double(), want)


@pytest.mark.parametrize("T_in,L", [(1, 4), (3, 2), (4, 4), (8, 2), (2, 16)])
def test_signed_neuron_counts_equal_qcfs_for_any_current_order(T_in, L):
    g = torch.Generator().manual_seed(T_in * 31 + L)
    lam = 1.0
    currents = (torch.randn(T_in, 4000, generator=g, dtype=torch.float64) * 0.8)
    spikes, reverse = signed_counts(currents, lam, L)
    z = currents[0].clone()
    for t in range(1, T_in):
        z = z + currents[t]
    assert torch.equal(spikes.sum(0), qcfs_count(z, lam, L))
    assert (reverse >= 0).all() and reverse.sum() > 0  # corrections did happen


def test_replace_relu_and_levels():
    net = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.ReLU(),
                              torch.nn.Sequential(torch.nn.Linear(4, 4), torch.nn.ReLU()))
    replace_relu(net, L={"1": 2, "2.1": 8}, lam_init=3.0)
    assert get_L(net) == {"1": 2, "2.1": 8}
    assert net[1].lam.item() == 3.0 and isinstance(net[1].lam, torch.nn.Parameter)
    set_L(net, 4)
    assert get_L(net) == {"1": 4, "2.1": 4}
    with pytest.raises(ValueError, match="not QCFS layers"):
        set_L(net, {"9": 2})
    with pytest.raises(ValueError, match="L .quantization level. must be an int >= 1"):
        QCFS(0)
    with pytest.raises(ValueError, match="lam_init"):
        QCFS(4, lam_init=-1.0)
    with pytest.raises(ValueError, match="not ReLU modules"):
        replace_relu(torch.nn.Sequential(torch.nn.ReLU()), L={"0": 2, "x": 4})


def test_qcfs_functional_equals_module():
    z = torch.linspace(-1, 4, 50)
    m = QCFS(4, 2.5)
    assert torch.equal(m(z), qcfs(z, m.lam, 4))
