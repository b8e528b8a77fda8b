"""Degradation suite (spec test 8): exact counts, levels, seeding, purity."""

import math

import numpy as np
import pytest
import torch

pytest.importorskip("gymnasium")

from membra.control import PopSANActor, make_env  # noqa: E402
from membra.control import degrade as D  # noqa: E402


def actor():
    torch.manual_seed(0)
    return PopSANActor(3, 1, hidden=(32, 16), act_low=-2.0, act_high=2.0)


def snapshot(m):
    return {k: v.clone() for k, v in m.state_dict().items()}


def same(a, b):
    return all(torch.equal(a[k], b[k]) for k in a)


@pytest.mark.parametrize("p", [0.1, 0.3, 0.5])
def test_weight_zero_exact_count(p):
    a = actor()
    before = snapshot(a)
    b = D.weight_zero(a, p, seed=1)
    assert same(before, snapshot(a))  # input untouched
    for (_, lin, _), (_, lin0, _) in zip(b.synaptic_layers(), a.synaptic_layers(), strict=True):
        n = lin.weight.numel()
        assert int((lin0.weight == 0).sum()) == 0
        assert int((lin.weight == 0).sum()) == math.floor(p * n)
        keep = lin.weight != 0
        assert torch.equal(lin.weight[keep], lin0.weight[keep])
    # encoder and decoder untouched
    assert torch.equal(b.encoder.mean, a.encoder.mean)
    assert torch.equal(b.decoder.weight, a.decoder.weight)
    # seeded: the same seed zeroes the same entries, another seed other entries
    assert same(snapshot(b), snapshot(D.weight_zero(a, p, seed=1)))
    assert not same(snapshot(b), snapshot(D.weight_zero(a, p, seed=2)))


@pytest.mark.parametrize("levels", [255, 15])
def test_quantize_levels(levels):
    a = actor()
    before = snapshot(a)
    b = D.quantize(a, levels)
    assert same(before, snapshot(a))
    params = [p for _, lin, _ in a.synaptic_layers() for p in (lin.weight, lin.bias)]
    s = levels / max(float(p.detach().abs().max()) for p in params)
    for _, lin, _ in b.synaptic_layers():
        for p in (lin.weight, lin.bias):
            q = p * s
            assert len(torch.unique(torch.round(q))) <= 2 * levels + 1
            torch.testing.assert_close(q, torch.round(q), atol=1e-3, rtol=0)
    for (_, lb, _), (_, la, _) in zip(b.synaptic_layers(), a.synaptic_layers(), strict=True):
        assert (lb.weight - la.weight).abs().max() <= 0.5 / s + 1e-6


def test_weight_gn_seeded_and_pure():
    a = actor()
    before = snapshot(a)
    b1, b2, b3 = D.weight_gn(a, 0.05, seed=3), D.weight_gn(a, 0.05, seed=3), \
        D.weight_gn(a, 0.05, seed=4)
    assert same(before, snapshot(a))
    assert same(snapshot(b1), snapshot(b2))
    assert not same(snapshot(b1), snapshot(b3))
    d = torch.cat([(lb.weight - la.weight).detach().flatten() for (_, lb, _), (_, la, _) in
                   zip(b1.synaptic_layers(), a.synaptic_layers(), strict=True)])
    assert abs(float(d.std()) - 0.05) < 0.005
    for (_, lb, _), (_, la, _) in zip(b1.synaptic_layers(), a.synaptic_layers(), strict=True):
        assert torch.equal(lb.bias, la.bias)


def test_derive_seed_stable_and_distinct():
    s = D.derive_seed(0, "weight_gn", 0.05, "m0")
    assert s == D.derive_seed(0, "weight_gn", 0.05, "m0")
    assert s != D.derive_seed(0, "weight_gn", 0.1, "m0")
    assert s != D.derive_seed(1, "weight_gn", 0.05, "m0")


def rollout(env, seed, n=20):
    obs, _ = env.reset(seed=seed)
    out = [obs.copy()]
    for _ in range(n):
        obs = env.step(np.zeros(env.action_space.shape, np.float32))[0]
        out.append(obs.copy())
    return np.array(out)


def test_obs_wrappers_seeded():
    clean = rollout(make_env("Pendulum-v1"), 7)
    a = rollout(D.obs_gn(make_env("Pendulum-v1"), 0.1, seed=2), 7)
    b = rollout(D.obs_gn(make_env("Pendulum-v1"), 0.1, seed=2), 7)
    c = rollout(D.obs_gn(make_env("Pendulum-v1"), 0.1, seed=3), 7)
    assert np.array_equal(a, b) and not np.array_equal(a, c)
    assert abs((a - clean).std() - 0.1) < 0.03
    j = rollout(D.joint_vel_noise(make_env("Pendulum-v1"), 10.0, seed=1), 7)
    assert np.array_equal(j[:, :2], clean[:, :2])  # only the velocity index changed
    assert j[:, 2].std() > 3


def test_lidar_wrappers():
    env = D.ray_dropout(make_env("membra/LidarNav2D-v0"), 4, seed=0)
    obs = rollout(env, 3, n=5)
    assert ((obs[:, 4:] == 0).sum(1) >= 4).all()
    g = rollout(D.lidar_gn(make_env("membra/LidarNav2D-v0"), 0.1, seed=0), 3, n=5)
    assert (g[:, 4:] >= 0).all() and (g[:, 4:] <= 1).all()


def test_parse_and_errors():
    assert D.parse_degradation("weight_gn:0.05") == ("weight_gn", 0.05)
    assert D.parse_degradation("quantize:255") == ("quantize", 255)
    assert D.parse_degradation("healthy") is None
    with pytest.raises(ValueError, match="not known"):
        D.parse_degradation("melt:1")
    with pytest.raises(ValueError, match="severity"):
        D.parse_degradation("weight_gn")
    with pytest.raises(ValueError, match="p must"):
        D.weight_zero(actor(), 1.5)
    with pytest.raises(ValueError, match="levels"):
        D.quantize(actor(), 0)
    # severities are range-checked when parsed, before anything runs
    for bad, msg in (("weight_gn:-1", "sigma must"), ("weight_zero:2", "p must"),
                     ("obs_gn:nan", "sigma must"), ("quantize:0.5", "must be an int"),
                     ("quantize:0", "levels must"), ("ray_dropout:40", "k must")):
        with pytest.raises(ValueError, match=msg):
            D.parse_degradation(bad)
    # and checked against the task when it is named
    assert D.parse_degradation("lidar_gn:0.1", "membra/LidarNav2D-v0") == ("lidar_gn", 0.1)
    assert D.parse_degradation("joint_vel_noise:10", "HalfCheetah-v5") == ("joint_vel_noise", 10)
    for bad, env_id in (("ray_dropout:4", "Pendulum-v1"), ("dynamic", "HalfCheetah-v5"),
                        ("joint_pos_noise:0.1", "membra/LidarNav2D-v0")):
        with pytest.raises(ValueError, match=bad.split(":")[0]):
            D.parse_degradation(bad, env_id)
    with pytest.raises(ValueError, match="needs a LidarNav2D"):
        D.ray_dropout(make_env("Pendulum-v1"), 2)
    with pytest.raises(ValueError, match="needs a LidarNav2D"):
        D.lidar_gn(make_env("Pendulum-v1"), 0.1)


def test_degraded_copy_is_detached_from_an_adapter_on_the_input():
    from membra.homeostasis import DWAM, DWAMConfig

    a = actor()
    dwam = DWAM(a, DWAMConfig(c0=0.1))
    for fn, sev in ((D.weight_gn, 0.05), (D.weight_zero, 0.3), (D.quantize, 15)):
        with torch.no_grad():
            fn(a, sev, seed=0)(torch.zeros(4, 3))
    assert dwam._rec.pop() == {}
