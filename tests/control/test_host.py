"""DWAM on a trained PopSAN host (spec tests 5, 7, 10) using the shipped Pendulum controller,
and the CI-sized training experiment (slow)."""

import functools

import numpy as np
import pytest
import torch

pytest.importorskip("gymnasium")

from membra.control import degrade as D  # noqa: E402
from membra.control import evaluate, load_actor, make_env, pretrained_path  # noqa: E402
from membra.control.sweep import calibrated_dwam, dwam_config_for  # noqa: E402
from membra.homeostasis import DWAM, DWAMConfig, RateRecorder  # noqa: E402

ENV = functools.partial(make_env, "Pendulum-v1")


@pytest.fixture(scope="module")
def host():
    if not (pretrained_path("pendulum") / "actor.safetensors").is_file():
        pytest.skip("shipped Pendulum controller missing")
    torch.set_num_threads(1)
    actor, cfg = load_actor("pendulum")
    dwam = DWAM(actor, dwam_config_for(cfg))
    dwam.calibrate(ENV, episodes=2, seed=0)
    return actor, cfg, dwam


def test_homeostasis_lowers_rate_deviation(host):  # spec test 5
    actor, cfg, dwam = host
    kw = dict(seed=1000, degradation=("weight_gn", 0.05), healthy_rates=dwam.healthy_rates())
    off = evaluate(actor, ENV, 10, dwam=None, **kw)
    on = evaluate(actor, ENV, 10, dwam=dwam, **kw)
    dev_off = sum(v["rate_dev"] for v in off["layers"].values())
    dev_on = sum(v["rate_dev"] for v in on["layers"].values())
    assert dev_on < dev_off, (dev_on, dev_off)
    assert all(v["drift"] > 0 for v in on["layers"].values())
    assert all(v["drift"] == 0 for v in off["layers"].values())


def run_once(actor, dwam_cfg, calib):
    model = D.weight_gn(actor, 0.05, seed=D.derive_seed(0, "weight_gn", 0.05, "t"))
    adapter = DWAM(model, dwam_cfg)
    adapter.load_state_dict(calib)
    adapter.reset()
    rec = RateRecorder(model, history=True)
    env = D.obs_gn(ENV(), 0.05, seed=4)
    obs, _ = env.reset(seed=1000)
    ret, actions = 0.0, []
    with adapter.active():
        for _ in range(100):
            a = model.act(obs)
            rec.pop()
            actions.append(a)
            obs, r, *_ = env.step(a)
            ret += r
    spikes = torch.stack(rec.history["layers.1"])
    return ret, np.array(actions), spikes, [lin.weight.clone() for _, lin, _ in
                                            model.synaptic_layers()]


def test_determinism(host):  # spec test 7
    actor, cfg, dwam = host
    before = {k: v.clone() for k, v in actor.state_dict().items()}
    a, b = (run_once(actor, DWAMConfig(eta=1e-3), dwam.calibration_dict()) for _ in range(2))
    assert a[0] == b[0]
    assert np.array_equal(a[1], b[1])
    assert torch.equal(a[2], b[2])
    assert all(torch.equal(x, y) for x, y in zip(a[3], b[3], strict=True))
    assert all(torch.equal(v, actor.state_dict()[k]) for k, v in before.items())  # pure
    r1 = evaluate(actor, ENV, 2, degradation="weight_zero:0.3", dwam=dwam)
    r2 = evaluate(actor, ENV, 2, degradation="weight_zero:0.3", dwam=dwam)
    assert r1["returns"] == r2["returns"]


def test_no_gradient_leakage_on_host(host):  # spec test 10
    actor, cfg, dwam = host
    model = D.weight_gn(actor, 0.05, seed=0)
    adapter = DWAM(model, DWAMConfig(eta=1e-3))
    adapter.load_state_dict(dwam.calibration_dict())
    adapter.reset()
    env = ENV()
    obs, _ = env.reset(seed=0)
    with adapter.active():
        for _ in range(200):
            obs, *_ = env.step(model(torch.as_tensor(obs)[None])[0].detach().numpy())
    assert all(p.grad is None for p in model.parameters())
    assert adapter.stats()["layers.0"]["drift"] > 0


@pytest.mark.slow
def test_ci_sized_pendulum_experiment(tmp_path):  # spec 9.1 (about 5-10 min on 2 cores)
    from membra.control import TD3Config, train_td3

    torch.set_num_threads(1)
    train_td3("Pendulum-v1", 15_000, seed=0, out=tmp_path / "run",
              config=TD3Config(start_steps=2000), progress=False, log=lambda *a: None)
    actor, cfg = load_actor(tmp_path / "run")
    dwam = calibrated_dwam(actor, tmp_path / "run", ENV, DWAMConfig())
    healthy = evaluate(actor, ENV, 10, healthy_rates=dwam.healthy_rates())
    healthy_on = evaluate(actor, ENV, 10, dwam=dwam)
    assert healthy["mean"] >= -300
    assert healthy_on["mean"] >= healthy["mean"] - 0.15 * abs(healthy["mean"])
    for deg in ("weight_gn:0.05", "weight_zero:0.3", "obs_gn:0.1"):
        r = evaluate(actor, ENV, 10, degradation=deg, dwam=dwam)
        assert np.isfinite(r["mean"])


# every shipped controller: task, neuron, observation size, a degradation of its task
SHIPPED = {"pendulum": ("Pendulum-v1", "lif", 3, "weight_gn:0.05"),
           "pendulum_bdett": ("Pendulum-v1", "bdett", 3, "weight_zero:0.3"),
           "lidarnav": ("membra/LidarNav2D-v0", "lif", 22, "ray_dropout:4"),
           "lidarnav_bdett": ("membra/LidarNav2D-v0", "bdett", 22, "weight_gn:0.05"),
           "halfcheetah": ("HalfCheetah-v5", "lif", 17, "joint_vel_noise:10")}


def test_every_shipped_controller_is_checked():
    from membra.control.checkpoint import PRETRAINED

    assert set(SHIPPED) == set(PRETRAINED)


@pytest.mark.parametrize("name", sorted(SHIPPED))
def test_shipped_controller_runs_with_dwam(name):
    """A shipped controller loads with its task, neuron and tuned eta, its calibration matches
    its layers, and a short degraded episode runs with DWAM adapting every layer."""
    env_id, neuron, obs_dim, deg = SHIPPED[name]
    if env_id.startswith("HalfCheetah"):
        pytest.importorskip("mujoco")
    if not (pretrained_path(name) / "actor.safetensors").is_file():
        pytest.skip(f"shipped controller {name} missing")
    torch.set_num_threads(1)
    actor, cfg = load_actor(name)
    assert cfg["env_id"] == env_id and cfg["actor"]["obs_dim"] == obs_dim
    assert cfg["actor"].get("neuron", "lif") == neuron
    assert {lay.kind for lay in actor.layers} == {neuron}
    assert cfg["dwam"]["config"]["eta"] > 0  # tuned on validation seeds, stored with it
    env_fn = functools.partial(make_env, env_id, **cfg.get("env_kwargs", {}))
    dwam = calibrated_dwam(actor, name, env_fn, dwam_config_for(cfg))
    assert set(dwam.layers) == {"layers.0", "layers.1", "layers.2"}
    assert all(bool((lay.c0 >= 0.02).all()) for lay in dwam.layers.values())
    kw = dict(seed=1000, degradation=deg, max_steps=60, healthy_rates=dwam.healthy_rates())
    off = evaluate(actor, env_fn, 1, **kw)
    on = evaluate(actor, env_fn, 1, dwam=dwam, **kw)
    assert off["lengths"] == on["lengths"]
    assert np.isfinite(off["mean"]) and np.isfinite(on["mean"])
    assert all(v["drift"] > 0 for v in on["layers"].values())
    assert off["returns"] != on["returns"]  # DWAM changed the weights, hence the actions
