"""DWAM's stability guard (rollback to the last good weights) and the persistent regime."""

import pytest
import torch

from membra.homeostasis import DWAM, DWAMConfig

from .test_dwam import inputs, tiny_host


def _drive(dwam, net, xs):
    """One forward + step per input; returns per-step (weights, deviation, rollbacks)."""
    log = []
    for x in xs:
        net(x)
        dwam.step()
        log.append(({n: layer.linear.weight.detach().clone()
                     for n, layer in dwam.layers.items()},
                    dwam.rate_deviation(), dwam.rollbacks))
    return log


def _ramp(n, seed, start=1.0, stop=4.0):
    """Inputs whose scale grows every step: rates drift away from the healthy ones."""
    return [x * (start + (stop - start) * i / n) for i, x in enumerate(inputs(n, seed))]


@pytest.mark.parametrize("k,seed", [(1, 0), (2, 1), (3, 2), (5, 3)])
def test_guard_rolls_back_exactly_to_the_last_good_weights(k, seed):
    net = tiny_host(seed)
    dwam = DWAM(net, DWAMConfig(eta=0.05, rho=10.0, guard_k=k))
    dwam.calibrate(inputs=inputs(30, seed + 10))
    xs = _ramp(60, seed + 20)
    good_w, dev_prev, streak, expected_rollbacks = None, float("inf"), 0, 0
    for x in xs:
        net(x)
        w_before = {n: layer.linear.weight.detach().clone() for n, layer in dwam.layers.items()}
        rb_before = dwam.rollbacks
        dwam.step()
        # replay the rule from the outside: deviation of the updated statistics
        if dwam.rollbacks > rb_before:
            expected_rollbacks += 1
            assert streak + 1 >= k
            for n, layer in dwam.layers.items():
                assert torch.equal(layer.linear.weight, good_w[n])  # bit-exact restore
            streak, dev_prev = 0, dwam.rate_deviation()
            continue
        dev = dwam.rate_deviation()
        if dev > dev_prev:
            streak += 1
        else:
            streak = 0
            good_w = {n: layer.linear.weight.detach().clone()
                      for n, layer in dwam.layers.items()}
        dev_prev = dev
        del w_before
    assert expected_rollbacks >= 1, "the ramp must make the guard trigger"
    assert dwam.rollbacks == expected_rollbacks


def test_guard_off_never_rolls_back_and_matches_unguarded_weights():
    nets = [tiny_host(4), tiny_host(4)]
    adapters = [DWAM(nets[0], DWAMConfig(eta=0.05, rho=10.0)),
                DWAM(nets[1], DWAMConfig(eta=0.05, rho=10.0, guard_k=10_000))]
    for a in adapters:
        a.calibrate(inputs=inputs(30, 14))
    xs = _ramp(40, 24)
    logs = [_drive(a, n, xs) for a, n in zip(adapters, nets, strict=True)]
    assert adapters[0].rollbacks == 0 and adapters[1].rollbacks == 0
    for (w0, _, _), (w1, _, _) in zip(*logs, strict=True):
        assert all(torch.equal(w0[n], w1[n]) for n in w0)


def test_reset_clears_the_guard():
    net = tiny_host(5)
    dwam = DWAM(net, DWAMConfig(eta=0.05, rho=10.0, guard_k=1))
    dwam.calibrate(inputs=inputs(30, 15))
    _drive(dwam, net, _ramp(30, 25))
    assert dwam.rollbacks > 0
    dwam.reset()
    assert dwam.rollbacks == 0 and dwam._good is None


@pytest.mark.parametrize("bad", [-1, 1.5, True, "3"])
def test_guard_k_is_validated(bad):
    with pytest.raises(ValueError, match="guard_k"):
        DWAMConfig(guard_k=bad)
