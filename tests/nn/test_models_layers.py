"""CubaLIF, ALIF, RLIF and Delay layers: run/step/forward agree, the initial states (IMP
included) are parameters or buffers with gradients, bad arguments name themselves."""

from __future__ import annotations

import pytest
import torch

from membra.kernels.models import models_cpu_available
from membra.nn import ALIF, RLIF, CubaLIF, Delay

BACKENDS = ["reference"] + (["cpu"] if models_cpu_available() else [])
SECOND = {CubaLIF: "current", ALIF: "adaptation"}


def _make(cls, shape=(5,), **kw):
    return cls(shape=shape, **kw)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("cls", [CubaLIF, ALIF, RLIF])
@pytest.mark.parametrize("T,B,shape", [(1, 3, (5,)), (6, 2, (2, 3)), (4, 0, (4,))])
def test_step_loop_equals_run_and_forward(backend, cls, T, B, shape):
    torch.manual_seed(T + B)
    layer = _make(cls, shape, init_potential="learnable", backend=backend)
    x = torch.randn(T, B, *shape) * 2
    s, state = layer.run(x)
    assert torch.equal(layer(x), s) and torch.equal(layer(x), s)  # no hidden state
    st, outs = None, []
    for t in range(T):
        y, st = layer.step(x[t], st)
        outs.append(y)
    assert torch.equal(torch.stack(outs), s)
    for a, b in zip(st, state, strict=True):
        torch.testing.assert_close(a, b)
    # the sequence split in two halves with the state carried gives the same spikes
    if T > 1:
        s1, mid = layer.run(x[:T // 2])
        s2, _ = layer.run(x[T // 2:], mid)
        assert torch.equal(torch.cat([s1, s2]), s)


@pytest.mark.parametrize("cls", [CubaLIF, ALIF])
def test_learnable_initial_states_get_gradients(cls):
    name = f"init_{SECOND[cls]}"
    layer = _make(cls, (4,), init_potential="learnable", **{name: "learnable"})
    params = dict(layer.named_parameters())
    assert set(params) == {"init_potential", name}
    assert params[name].shape == (1, 4)
    assert 0.0 <= float(params[name].detach().min()) and float(params[name].detach().max()) <= 0.1
    x = torch.randn(5, 3, 4) * 2
    s, (v, c) = layer.run(x)
    (s.sum() + v.sum() + c.sum()).backward()
    assert params["init_potential"].grad.abs().sum() > 0
    assert params[name].grad.abs().sum() > 0
    fixed = _make(cls, (4,), **{name: 0.25})
    assert name in dict(fixed.named_buffers()) and not list(fixed.parameters())
    assert {"tau", name, "init_potential"} <= set(fixed.state_dict())
    # a tensor initial state, learnable through the per-state flag
    t = _make(cls, (4,), **{name: torch.full((1, 4), 0.3), f"learnable_{SECOND[cls]}": True})
    assert name in dict(t.named_parameters())


@pytest.mark.parametrize("cls", [CubaLIF, ALIF])
def test_second_initial_state_is_used(cls):
    # CubaLIF: an initial current of 5 fires without input; ALIF: an initial adaptation of 5
    # lifts the threshold to 2, above what a constant input of 1.5 can charge
    x = torch.full((4, 2, 4), 0.0 if cls is CubaLIF else 1.5)
    name = f"init_{SECOND[cls]}"
    s0 = _make(cls, (4,))(x)
    s1 = _make(cls, (4,), **{name: 5.0})(x)
    assert (s0.sum() == 0) == (cls is CubaLIF) and (s1.sum() == 0) == (cls is ALIF)
    _, (_, c) = _make(cls, (4,), **{name: 5.0}).run(x)
    assert torch.all(c != 0)


def test_rlif_weight_is_a_parameter_and_acts():
    torch.manual_seed(0)
    layer = RLIF(shape=(6,), init_potential="learnable")
    assert dict(layer.named_parameters())["weight"].shape == (6, 6)
    x = torch.randn(5, 2, 6) * 2
    with torch.no_grad():
        layer.weight.zero_()
    from membra.nn import LIF
    lif = LIF(shape=(6,), init_potential=layer.init_potential.detach().clone())
    assert torch.equal(layer(x), lif(x))  # W = 0 is plain LIF
    with torch.no_grad():
        layer.weight.fill_(0.7)
    s = layer(x)
    assert not torch.equal(s, lif(x))
    s.sum().backward()
    assert layer.weight.grad.abs().sum() > 0 and layer.init_potential.grad is not None


@pytest.mark.parametrize("kw,match", [
    (dict(cls=CubaLIF, tau_syn=0.5), "tau_syn"),
    (dict(cls=CubaLIF, tau=0.0), "tau"),
    (dict(cls=ALIF, tau_adapt=0.99), "tau_adapt"),
    (dict(cls=ALIF, beta=float("nan")), "beta"),
    (dict(cls=ALIF, init_adaptation="learnt"), "init_adaptation"),
    (dict(cls=CubaLIF, init_current_range=(0.5, 0.1), init_current="learnable"),
     "init_current_range"),
    (dict(cls=CubaLIF, init_current=torch.zeros(3)), "init_current"),
])
def test_invalid_neuron_params_name_themselves(kw, match):
    cls = kw.pop("cls")
    with pytest.raises((ValueError, TypeError), match=match):
        cls(shape=(4,), **kw)


def test_bad_state_is_named():
    layer = ALIF(shape=(3,))
    with pytest.raises(ValueError, match="pair"):
        layer.run(torch.zeros(2, 1, 3), torch.zeros(1, 3))
    with pytest.raises(ValueError, match="state must be a tensor of shape"):
        layer.run(torch.zeros(2, 1, 3), (torch.zeros(2, 3), None))
    with pytest.raises(ValueError, match="RLIF needs shape"):
        RLIF(None)


# ---- Delay -------------------------------------------------------------------------------

@pytest.mark.parametrize("seed", range(4))
def test_delay_matches_plain_loop_and_steps(seed):
    g = torch.Generator().manual_seed(seed)
    shape, D = (3, 2, 5), 1 + seed
    per_channel = seed % 2 == 0
    dshape = (3, 1, 1) if per_channel else shape
    delays = torch.randint(0, D + 1, dshape, generator=g)
    layer = Delay(shape, D, delays)
    T, B = 7, 2
    x = torch.randn(T, B, *shape, generator=g)
    y = layer(x)
    full = delays.expand(shape)
    for t in range(T):
        for idx in torch.cartesian_prod(*[torch.arange(n) for n in shape]).tolist():
            d = int(full[tuple(idx)])
            want = x[t - d][(slice(None), *idx)] if t - d >= 0 else torch.zeros(B)
            assert torch.equal(y[t][(slice(None), *idx)], want)
    hist, outs = None, []
    for t in range(T):
        yt, hist = layer.step(x[t], hist)
        outs.append(yt)
    assert torch.equal(torch.stack(outs), y)
    assert torch.equal(hist, x[T - D:]) if T >= D else True


def test_delay_gradients_and_defaults():
    layer = Delay((4,), 2)  # delays=None: every neuron max_delay
    x = torch.randn(5, 3, 4, dtype=torch.float64, requires_grad=True)
    h = torch.randn(2, 3, 4, dtype=torch.float64, requires_grad=True)
    assert torch.equal(layer(x.detach())[2:], x.detach()[:3])
    assert torch.autograd.gradcheck(lambda x, h: layer.run(x, h)[0], (x, h))
    assert Delay((4,), 0)(x.detach()).equal(x.detach())
    assert "delays" in Delay((4,), 2).state_dict()


@pytest.mark.parametrize("args,match", [
    (((4,), 2, -1), "delays must be >= 0"),
    (((4,), 2, 3), "max_delay=2"),
    (((4,), 2, torch.tensor([1, 2])), "do not broadcast"),
    (((4,), 2, torch.tensor([0.5, 1, 1, 1])), "whole numbers"),
    (((4,), -1, None), "max_delay"),
    (((4,), 2.0, None), "max_delay"),
])
def test_delay_invalid_arguments(args, match):
    with pytest.raises(ValueError, match=match):
        Delay(*args)


def test_delay_bad_input_and_state():
    layer = Delay((4,), 2)
    with pytest.raises(ValueError, match="expects"):
        layer(torch.zeros(3, 2, 5))
    with pytest.raises(ValueError, match="history"):
        layer.run(torch.zeros(3, 2, 4), torch.zeros(1, 2, 4))
