"""Naive IF conversion: exact only for constant input at T = L, inexact deeper (unevenness)."""

import torch
from convert_cases import random_mlp
from torch import nn

from membra.convert import QCFS, fold_bn, qcfs_count, to_snn


def test_one_layer_with_constant_input_is_exact_at_T_equal_L():
    torch.manual_seed(0)
    L = 8
    net = nn.Sequential(nn.Linear(6, 20), QCFS(L, lam_init=1.5), nn.Linear(20, 3)).eval()
    x = torch.rand(64, 6, dtype=torch.float64) * 2 - 0.5
    net = net.double()
    snn = to_snn(net, "naive", T=L, dtype=torch.float64)
    out = snn(x)
    with torch.no_grad():
        ref = net(x)
        z = net[0](x)
    assert torch.equal(snn.counts["1"], qcfs_count(z, net[1].lam, L))
    torch.testing.assert_close(out, ref, rtol=0, atol=1e-12)


def test_unevenness_makes_deeper_nets_differ_at_T_equal_L():
    differ = 0
    for seed in range(5):
        model, x = random_mlp(seed)
        for m in model.modules():
            if isinstance(m, QCFS):
                m.L = 4
        with torch.no_grad():
            ref = fold_bn(model)(x)
        out = to_snn(model, "naive", T=4)(x)
        differ += int((out - ref).abs().gt(1e-5).sum())
    assert differ > 0


def test_uneven_input_example_of_the_spec():
    # currents +1 then -1 (total 0): QCFS gives 0, the IF neuron (lambda 1, T = L = 2) spikes once
    from membra.kernels import if_sequence

    s, _ = if_sequence(torch.tensor([[1.0], [-1.0]]), torch.tensor([0.5]), v_th=1.0,
                       v_reset=0.0, reset="soft")
    assert s.sum().item() == 1 and qcfs_count(torch.tensor(0.0), 1.0, 2).item() == 0


def test_running_mean_readout_over_steps():
    model, x = random_mlp(2)
    snn = to_snn(model, "naive", T=6)
    steps = snn(x, return_all_steps=True)
    assert steps.shape == (6, len(x), 5)
    assert torch.allclose(steps[-1], snn(x))
    assert snn.time_steps == 6
