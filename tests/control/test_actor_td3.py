"""PopSAN actor against plain-loop references, observation normaliser, TD3 and checkpoints."""

import math

import numpy as np
import pytest
import torch

pytest.importorskip("gymnasium")

from membra.control import (  # noqa: E402
    ObsNormalizer,
    PopSANActor,
    TD3Config,
    load_actor,
    save_actor,
    train_td3,
)


def test_spiking_layer_matches_popsan_equations():
    torch.manual_seed(0)
    actor = PopSANActor(3, 2, hidden=(16,), T=5).double()
    layer = actor.layers[0]
    x = (torch.rand(5, 4, 30, dtype=torch.float64) < 0.4).double()
    got = layer(x)
    W, b = layer.linear.weight, layer.linear.bias
    i = torch.zeros(4, 16, dtype=torch.float64)
    v = torch.zeros_like(i)
    s = torch.zeros_like(i)
    ref = []
    for t in range(5):
        i = 0.5 * i + x[t] @ W.T + b
        v = 0.75 * v * (1 - s) + i
        s = (v >= 0.5).double()
        ref.append(s)
    ref = torch.stack(ref)
    assert ref.sum() > 0
    mismatch = (got != ref).double().mean().item()
    assert mismatch < 1e-3  # float rounding at the threshold only


def test_encoder_deterministic_reference_and_gradient():
    torch.manual_seed(0)
    actor = PopSANActor(2, 1, T=5)
    obs = torch.tensor([[0.3, -1.2]])
    spikes = actor.encoder(obs)
    m, s = actor.encoder.mean.detach(), actor.encoder.std.detach()
    a = torch.exp(-(obs[0][:, None] - m) ** 2 / (2 * s ** 2)).flatten()
    v, ref = torch.zeros_like(a), []
    for _ in range(5):
        v = v + a
        st = (v > 0.999).float()
        v = v - 0.999 * st
        ref.append(st)
    assert torch.equal(spikes[:, 0].detach(), torch.stack(ref))
    spikes.sum().backward()
    assert actor.encoder.mean.grad is not None and actor.encoder.mean.grad.abs().sum() > 0


def test_actor_bounds_and_validation():
    actor = PopSANActor(3, 2, hidden=(8,), act_low=[-2.0, 0.0], act_high=[2.0, 1.0])
    a = actor(torch.randn(64, 3) * 10)
    assert a.shape == (64, 2)
    assert (a[:, 0].abs() <= 2).all() and (a[:, 1] >= 0).all() and (a[:, 1] <= 1).all()
    with pytest.raises(ValueError, match="observations"):
        actor(torch.randn(4, 5))
    with pytest.raises(ValueError, match="encoding"):
        PopSANActor(3, 2, encoding="poisson")
    with pytest.raises(ValueError, match="obs_dim"):
        PopSANActor(0, 2)


def test_normalizer_matches_numpy():
    rng = np.random.default_rng(0)
    data = rng.normal(3.0, 2.0, (500, 4)).astype(np.float32)
    norm = ObsNormalizer(4, clip=3.0)
    for chunk in np.array_split(data, 7):
        norm.update(torch.as_tensor(chunk))
    np.testing.assert_allclose(norm.mean.numpy(), data.mean(0), rtol=1e-4)
    np.testing.assert_allclose(norm.var.numpy(), data.var(0), rtol=1e-3)
    z = norm(torch.as_tensor(data)).numpy()
    ref = np.clip((data - data.mean(0)) / np.sqrt(data.var(0) + 1e-8), -3, 3)
    np.testing.assert_allclose(z, ref, atol=1e-3)


def test_checkpoint_round_trip(tmp_path):
    torch.manual_seed(1)
    actor = PopSANActor(3, 1, hidden=(16, 8), act_low=-2.0, act_high=2.0)
    actor.obs_norm.update(torch.randn(50, 3) * 4 + 1)
    save_actor(tmp_path / "run", actor, {"env_id": "Pendulum-v1"})
    assert sorted(p.name for p in (tmp_path / "run").iterdir()) == ["actor.safetensors",
                                                                    "config.json"]
    loaded, cfg = load_actor(tmp_path / "run")
    assert cfg["env_id"] == "Pendulum-v1" and cfg["actor"]["hidden"] == [16, 8]
    x = torch.randn(5, 3)
    with torch.no_grad():
        assert torch.equal(loaded(x), actor.eval()(x))
    torch.testing.assert_close(loaded.obs_norm.mean, actor.obs_norm.mean)
    with pytest.raises(FileNotFoundError, match="not a controller checkpoint"):
        load_actor(tmp_path / "missing")


def test_td3_tiny_run_learns_something_and_saves(tmp_path):
    torch.manual_seed(0)
    cfg = TD3Config(start_steps=150, eval_every=200, eval_episodes=1, update_every=25,
                    batch=32)
    actor, info = train_td3("Pendulum-v1", 200, seed=0, out=tmp_path / "p", config=cfg,
                            actor_kwargs={"hidden": (16, 16)}, progress=False,
                            log=lambda *a: None)
    assert len(info["history"]) == 1 and math.isfinite(info["best_eval_return"])
    loaded, meta = load_actor(tmp_path / "p")
    assert meta["steps"] == 200 and meta["total_steps"] == 200
    assert loaded.obs_norm.count.item() == 200
    x = torch.randn(3, 3)
    with torch.no_grad():
        assert torch.equal(loaded(x), actor(x))
    for p in actor.parameters():
        assert torch.isfinite(p).all()
