"""DWAM rule and adapter on tiny synthetic hosts (spec tests 1-4, 6, 10 and API checks)."""

import pytest
import torch
from torch import nn

from membra.homeostasis import DWAM, DWAMConfig, RateRecorder, find_synaptic_layers, rule
from membra.nn import LIF


def tiny_host(seed=0, silent_second=False):
    torch.manual_seed(seed)
    net = nn.Sequential(nn.Linear(8, 16), LIF(tau=2.0, v_th=0.5), nn.Linear(16, 4),
                        LIF(tau=2.0, v_th=0.5)).eval()
    with torch.no_grad():
        net[0].weight.mul_(3.0)
        if silent_second:
            net[2].bias.fill_(-100.0)
    return net


def inputs(n, seed=1, T=5):
    g = torch.Generator().manual_seed(seed)
    return [torch.rand(T, 1, 8, generator=g) for _ in range(n)]


def test_auto_detects_linear_neuron_pairs():
    net = tiny_host()
    names = [n for n, _, _ in find_synaptic_layers(net)]
    assert names == ["0", "2"]
    with pytest.raises(ValueError, match="not found"):
        find_synaptic_layers(net, layers=["5"])
    with pytest.raises(ValueError, match="no synaptic layers"):
        find_synaptic_layers(nn.Sequential(nn.Linear(2, 2)))


def test_recorder_rates_match_spike_means():
    net = tiny_host()
    rec = RateRecorder(net)
    x = inputs(1)[0]
    with torch.no_grad():
        h = net[1](net[0](x))
        y = net(x)
    rates = rec.pop()
    torch.testing.assert_close(rates["0"][0], h.mean((0, 1)))
    torch.testing.assert_close(rates["2"][0], y.mean((0, 1)))
    torch.testing.assert_close(rates["0"][1], x.mean((0, 1)))
    rec.remove()


def test_k_zero_is_identity():  # spec test 1
    net, ref = tiny_host(), tiny_host()
    w0 = [p.clone() for p in net.parameters()]
    dwam = DWAM(net, DWAMConfig(zeta=0.0, eta=1.0, c0=0.1))
    dwam.reset()
    with dwam.active():
        for x in inputs(200):
            with torch.no_grad():
                assert torch.equal(net(x), ref(x))
    assert dwam.steps == 200
    for p, q in zip(net.parameters(), w0, strict=True):
        assert torch.equal(p, q)


def test_phi_forms_agree():  # spec test 2
    g = torch.Generator().manual_seed(0)
    c, th, k = (torch.rand(10_000, generator=g, dtype=torch.float64) for _ in range(3))
    th = th * 3
    torch.testing.assert_close(rule.bcm_phi(c, th, k), rule.bcm_phi_two_threshold(c, th, k),
                               atol=1e-6, rtol=0)


def test_theta_tracks_c_squared_over_c0():  # spec test 3
    c0 = torch.tensor([0.2, 0.5])
    s = rule.init_state(c0)
    c = torch.tensor([0.4, 0.1])
    for _ in range(200):
        s = rule.update_stats(s, c, c0, 0.05, 0.1)
    torch.testing.assert_close(s.theta, c * c / c0, atol=1e-3, rtol=0)
    # stationary random rates: the time-average of theta_M (after burn-in) matches E[c^2]/c0
    g = torch.Generator().manual_seed(3)
    s, thetas, target = rule.init_state(c0), [], []
    for t in range(5000):
        c = torch.rand(2, generator=g) * 0.6
        s = rule.update_stats(s, c, c0, 0.05, 0.1)
        target.append(c * c / c0)
        if t >= 100:
            thetas.append(s.theta)
    rel = (torch.stack(thetas).mean(0) / torch.stack(target).mean(0) - 1).abs()
    assert (rel < 0.05).all(), rel


@pytest.mark.parametrize("start", [0.5, 1.5])
def test_single_neuron_converges_to_c0(start):  # spec test 4
    c0, x0 = torch.tensor([0.3]), 0.5
    w = torch.tensor([[start * 0.3 / x0]])
    w_ref, s = w.clone(), rule.init_state(c0)
    g = torch.Generator().manual_seed(0)
    cs = []
    for _ in range(6000):
        x = x0 + 0.05 * torch.randn(1, generator=g)
        c = (w @ x).clamp(0, 1)
        w, s, _, _ = rule.dwam_step(w, s, c, x, c0, zeta=1.0, eta=2.0, a_stat=0.05,
                                    a_theta=0.1, eps=1e-3, w_ref=w_ref,
                                    bound=10 * float(w_ref.abs().mean()))
        cs.append(float(c))
    late = sum(cs[-500:]) / 500
    assert abs(late - 0.3) < 0.03, late
    assert abs(sum(cs[:10]) / 10 - 0.3 * start) < 0.05  # it really started away from c0


@pytest.mark.parametrize("c0", [1e-9, "calibrated"])
def test_drift_bound_and_finite(c0):  # spec test 6
    net = tiny_host(silent_second=True)
    dwam = DWAM(net, DWAMConfig(eta=0.5, c0=c0, rho=0.5))
    if c0 == "calibrated":
        dwam.calibrate(inputs=inputs(20, seed=9))
    dwam.reset()
    refs = {n: (lay.linear.weight.clone(), 0.5 * lay.linear.weight.abs().mean())
            for n, lay in dwam.layers.items()}
    g = torch.Generator().manual_seed(5)
    with dwam.active(), torch.no_grad():
        for _ in range(1000):
            net(torch.rand(5, 1, 8, generator=g) * torch.rand(1, generator=g) * 2)
    for n, lay in dwam.layers.items():
        w_ref, b = refs[n]
        assert ((lay.linear.weight - w_ref).abs() <= b + 1e-6).all()
        assert torch.isfinite(lay.linear.weight).all()
        for v in dwam.stats()[n].values():
            assert torch.isfinite(torch.as_tensor(v)).all()
    assert dwam.stats()["0"]["drift"] > 0  # the first layer did adapt
    assert dwam.stats()["2"]["drift"] == 0  # the silent layer is never changed


def test_calibrate_reset_remove_and_state_dict_round_trip():
    net = tiny_host()
    w_orig = net[0].weight.clone()
    dwam = DWAM(net, DWAMConfig(eta=0.05))
    c0 = dwam.calibrate(inputs=inputs(30))
    rates = torch.stack([net[1](net[0](x)).mean((0, 1)) for x in inputs(30)]).mean(0)
    torch.testing.assert_close(c0["0"], rates.clamp_min(0.02))
    with dwam.active(), torch.no_grad():
        for x in inputs(50, seed=4):
            net(x * 2)
    assert not torch.equal(net[0].weight, w_orig)
    sd = dwam.state_dict()
    other = DWAM(tiny_host(), dwam.config)
    other.load_state_dict(sd)
    for k, v in other.state_dict().items():
        torch.testing.assert_close(v, sd[k], equal_nan=True)
    with pytest.raises(ValueError, match="unexpected keys"):
        other.load_state_dict({**sd, "zz.c0": torch.zeros(1)})
    dwam.reset()
    assert torch.equal(net[0].weight, w_orig)
    with dwam.active(), torch.no_grad():
        net(inputs(1)[0] * 3)
    dwam.remove()
    assert torch.equal(net[0].weight, w_orig)


def test_no_gradients_and_no_training_mode():  # spec test 10
    net = tiny_host()
    dwam = DWAM(net, DWAMConfig(eta=0.1, c0=0.05))
    dwam.reset()
    with dwam.active():
        for x in inputs(50):
            net(x)  # no torch.no_grad() here on purpose
    for p in net.parameters():
        assert p.grad is None
    assert dwam.stats()["0"]["drift"] > 0
    net.train()
    with pytest.raises(RuntimeError, match="training mode"):
        with dwam.active():
            pass


def test_config_validation():
    with pytest.raises(ValueError, match="c0"):
        DWAMConfig(c0="auto")
    with pytest.raises(ValueError, match="a_theta"):
        DWAMConfig(a_theta=0.0)
    with pytest.raises(ValueError, match="eta"):
        DWAMConfig(eta=-1.0)
    with pytest.raises(ValueError, match="gain"):
        DWAMConfig(gain="bcm")
    with pytest.raises(TypeError):
        DWAM("not a module")


def test_constant_gain_is_plain_bcm():
    s = rule.BCMState(torch.tensor([0.2, 0.2]), torch.tensor([0.0, 0.01]), torch.tensor([0.3, 0.3]))
    torch.testing.assert_close(rule.gain(s, 0.7, mode="constant"), torch.tensor([0.7, 0.7]))
    assert rule.gain(s, 0.7)[0] == 0  # CV gain: a steady neuron is left alone


def test_copies_do_not_feed_the_original_adapter():
    """A copy of an adapted model (e.g. a degraded one) carries none of the adapter's hooks."""
    from membra.homeostasis.recorder import copy_without_rate_hooks

    net = tiny_host()
    dwam = DWAM(net, DWAMConfig(eta=0.5, c0=0.05))
    dwam.reset()
    marker = []
    net[0].register_forward_hook(lambda m, i, o: marker.append(1))  # a user hook is kept
    with dwam.active():
        twin = copy_without_rate_hooks(net)
        with torch.no_grad():
            for x in inputs(20):
                twin(x * 3)
    assert dwam.steps == 0 and dwam._rec.pop() == {}
    assert len(marker) == 20
    assert torch.equal(net[0].weight, dwam.layers["0"].w_ref)
