"""A learnable tau stays a valid time constant by construction: ``LIF(learnable_tau=True)``
learns ``raw_tau`` and uses ``tau = 1 + softplus(raw_tau)``, which is finite and >= 1 for every
finite raw value, so no optimizer step, however large, can leave the valid range (a tau
below 1, 0, negative: see tests/kernels/test_tau.py). Fixed taus are validated at
construction, when loaded from a state_dict and at every call. State dicts of the old form (a
learnable ``tau`` stored as itself) load, converted; the shipped checkpoints load unchanged."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch
from torch import nn

import membra
from membra.kernels import available_backends
from membra.nn import LIF

BACKENDS = [b for b in ("reference", "cpu") if b in available_backends("cpu")]
TAUS = [1.0001, 1.1, 1.5, 1.8, 2.0, 2.5, 3.0, 4.0, 5.0, 7.3, 20.0, 21.5, 1e3, 1e6]
BELOW_ONE = float(torch.nextafter(torch.tensor(1.0), torch.tensor(0.0)))  # in float32 too
BAD_TAUS = [0.0, -1.0, -412.0, math.nan, math.inf, 0.5, BELOW_ONE]


def f32(v: float) -> float:
    return float(torch.tensor(v, dtype=torch.float32))


def valid(tau: torch.Tensor) -> bool:
    return bool(torch.isfinite(tau)) and float(tau.detach()) >= 1.0


@pytest.mark.parametrize("tau", TAUS)
def test_learnable_tau_is_a_parametrisation(tau):
    lif = LIF(shape=(3,), tau=tau, learnable_tau=True)
    params = dict(lif.named_parameters())
    assert set(params) == {"raw_tau"} and params["raw_tau"].shape == ()
    assert not isinstance(lif.tau, nn.Parameter) and lif.tau.requires_grad
    torch.testing.assert_close(lif.tau, 1 + nn.functional.softplus(lif.raw_tau))
    # it starts where it was asked to, to float32 rounding, and exactly for common values
    assert float(lif.tau.detach()) == pytest.approx(f32(tau), rel=2e-7)
    if tau in (1.5, 2.0, 2.5, 3.0, 4.0, 5.0):
        assert float(lif.tau.detach()) == tau
    assert set(lif.state_dict()) == {"init_potential", "raw_tau", "v_th", "v_reset"}
    x = torch.rand(6, 4, 3) * 3
    fixed = LIF(shape=(3,), tau=tau)
    if float(lif.tau.detach()) == float(fixed.tau):
        assert torch.equal(lif(x), fixed(x))


@pytest.mark.parametrize("make_opt", [
    lambda p: torch.optim.SGD(p, lr=1e6),
    lambda p: torch.optim.SGD(p, lr=1e3, momentum=0.9),
    lambda p: torch.optim.Adam(p, lr=1e4),
    lambda p: torch.optim.RMSprop(p, lr=1e2),
], ids=["sgd", "sgd_momentum", "adam", "rmsprop"])
@pytest.mark.parametrize("scale", [1e15, -1e15, 1.0, -1.0])  # 1e15**2 fits float32 (Adam)
@pytest.mark.parametrize("backend", BACKENDS)
def test_adversarial_optimizer_steps_keep_tau_valid(backend, make_opt, scale):
    torch.manual_seed(0)
    lif = LIF(shape=(5,), tau=2.0, learnable_tau=True, backend=backend)
    opt = make_opt(lif.parameters())
    x = torch.rand(8, 4, 5) * 3
    seen = []
    for step in range(12):
        sign = 1.0 if step % 5 else -1.0  # mostly one way, sometimes back
        s, v = lif.run(x)
        loss = sign * scale * (s.sum() + v.sum())
        opt.zero_grad()
        loss.backward()
        opt.step()
        seen.append(float(lif.tau.detach()))
        assert valid(lif.tau), f"step {step}: tau = {float(lif.tau.detach())}"
        s, v = lif.run(x)  # and it still runs
        assert torch.isfinite(s).all() and torch.isfinite(v).all()
    assert any(t != 2.0 for t in seen), "the steps should move tau"


@pytest.mark.parametrize("raw", [-3e38, -1e30, -1e4, -100.0, -20.0, 0.0, 20.0, 1e4, 1e30,
                                 3e38])
def test_every_finite_raw_value_is_a_valid_tau(raw):
    lif = LIF(shape=(7,), tau=2.0, learnable_tau=True)
    with torch.no_grad():
        lif.raw_tau.fill_(raw)
    assert valid(lif.tau)
    x = torch.randn(5, 3, 7) * 2
    outs = [LIF(shape=(7,), learnable_tau=True, backend=b) for b in BACKENDS]
    res = []
    for m in outs:
        m.load_state_dict(lif.state_dict())
        res.append(m.run(x))
    for s, v in res:
        assert torch.isfinite(s).all() and torch.isfinite(v).all()
    for s, v in res[1:]:
        assert torch.equal(s, res[0][0])
        torch.testing.assert_close(v, res[0][1])


@pytest.mark.parametrize("reset", ["soft", "hard"])
@pytest.mark.parametrize("tau", [1.2, 2.0, 6.0])
@pytest.mark.parametrize("backend", BACKENDS)
def test_raw_tau_gradient_matches_finite_differences(backend, tau, reset):
    # with a detached reset v_T is smooth in tau between threshold crossings (float64)
    g = torch.Generator().manual_seed(4)
    x = torch.rand(6, 3, 4, generator=g, dtype=torch.float64) * 1.4
    w = torch.randn(3, 4, generator=g, dtype=torch.float64)
    lif = LIF(shape=(4,), tau=tau, learnable_tau=True, reset=reset, backend=backend).double()

    def f():
        return (lif.run(x)[1] * w).sum()

    f().backward()
    got = float(lif.raw_tau.grad)
    eps = 1e-6
    with torch.no_grad():
        r = float(lif.raw_tau)
        lif.raw_tau.fill_(r + eps)
        up = float(f())
        lif.raw_tau.fill_(r - eps)
        down = float(f())
        lif.raw_tau.fill_(r)
    assert got == pytest.approx((up - down) / (2 * eps), rel=1e-6, abs=1e-9)
    assert abs(got) > 1e-6


@pytest.mark.parametrize("tau", BAD_TAUS, ids=repr)
def test_bad_tau_refused_at_construction_load_and_call(tau):
    with pytest.raises(ValueError, match="tau must be finite and >= 1"):
        LIF(tau=tau)
    with pytest.raises(ValueError, match="tau must be finite and >= 1"):
        LIF(tau=tau, learnable_tau=True)
    with pytest.raises(ValueError, match=r"'tau'.*tau must be finite and >= 1"):
        LIF().load_state_dict({"tau": torch.tensor(tau), "init_potential": torch.tensor(0.0)})
    lif = LIF()
    with torch.no_grad():
        lif.tau.fill_(tau)  # tampered in place
    with pytest.raises(ValueError, match="tau must be finite and >= 1"):
        lif(torch.rand(3, 2, 4))


def test_learnable_tau_needs_tau_above_one():
    LIF(tau=1.0)  # a fixed tau of 1 is valid: no memory
    with pytest.raises(ValueError, match=r"learnable tau must be finite and > 1"):
        LIF(tau=1.0, learnable_tau=True)


@pytest.mark.parametrize("tau", TAUS)
def test_old_learnable_state_dict_is_converted(tau):
    # before the parametrisation a learnable tau was stored as itself under "tau"
    old = {"init_potential": torch.tensor(0.0), "tau": torch.tensor(tau)}
    lif = LIF(shape=(3,), learnable_tau=True)
    lif.load_state_dict(old)
    assert "raw_tau" in lif.state_dict() and "tau" not in lif.state_dict()
    assert float(lif.tau.detach()) == pytest.approx(f32(tau), rel=2e-7)
    # and back: a learnable state_dict loads into a fixed-tau LIF
    fixed = LIF(shape=(3,))
    fixed.load_state_dict(lif.state_dict())
    assert float(fixed.tau) == float(lif.tau.detach())
    x = torch.rand(5, 2, 3) * 3
    assert torch.equal(fixed(x), lif(x))


@pytest.mark.parametrize("tau", [-412.0, 1.0, 0.3, math.nan, math.inf])
def test_old_learnable_state_dict_with_invalid_tau_names_the_key(tau):
    lif = LIF(learnable_tau=True)
    with pytest.raises(ValueError, match=r"'tau'"):
        lif.load_state_dict({"init_potential": torch.tensor(0.0), "tau": torch.tensor(tau)})


# actors whose hidden neurons are LIF layers (a dynamic-threshold host has no tau to load)
_ACTORS = Path(membra.__file__).parent.glob("control/pretrained/*/actor.safetensors")
SHIPPED = sorted(p for p in _ACTORS
                 if json.loads((p.parent / "config.json").read_text())
                 .get("actor", {}).get("neuron", "lif") == "lif")


@pytest.mark.parametrize("path", SHIPPED, ids=lambda p: p.parent.name)
def test_shipped_actor_taus_load_into_fixed_and_learnable_lif(path):
    from safetensors.torch import load_file

    state = load_file(str(path))
    keys = [k for k in state if k.endswith("neuron.tau")]
    assert keys
    x = torch.rand(5, 2, 3) * 2
    for k in keys:
        sd = {"tau": state[k], "init_potential": torch.tensor(0.0)}
        fixed, learn = LIF(shape=(3,)), LIF(shape=(3,), learnable_tau=True)
        fixed.load_state_dict(sd)
        learn.load_state_dict(sd)
        assert float(fixed.tau) == float(state[k]) == float(learn.tau.detach())
        assert torch.equal(fixed(x), learn(x))
