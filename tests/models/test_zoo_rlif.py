"""``model.neuron = "rlif"`` in the zoo: the switched MLP is the hand-built net of
``membra.nn.RLIF`` layers (IMP included), and nets with multi-dimensional neuron layers refuse it
with an error naming the net and the layer's shape."""

from __future__ import annotations

import math
import random

import pytest
import torch
from torch import nn

from membra.models import create_model
from membra.nn import LIF, RLIF, Streaming, TimeDistributed, record
from membra.train.config import parse_config

K = 4


def _cases(n: int = 8, seed: int = 14):
    """Seeded MLP shapes (odd widths), step counts and initial potentials."""
    rng = random.Random(seed)
    potentials = [{}, {"init_potential": 0.37}, {"init_potential": -0.2},
                  {"init_potential": "learnable"},
                  {"init_potential": "learnable", "init_range": (0.1, 0.9)},
                  {"init_potential": "tensor"}, {"init_potential": "learnable", "tau": 3.0}]
    out = []
    for i in range(n):
        widths = tuple(rng.choice([3, 5, 7, 12, 17, 33]) for _ in range(rng.randint(1, 3)))
        in_shape = rng.choice([(1,), (5,), (2, 3, 3)])
        T = rng.choice([1, 2, 5, 16])
        out.append((widths, in_shape, T, potentials[i % len(potentials)]))
    return out


def _kwargs(spec: dict) -> dict:
    kw = dict(spec)
    if kw.get("init_potential") == "tensor":
        kw["init_potential"] = torch.tensor(0.25)
    return kw


def _hand_built(widths, in_shape, neuron_cls, kw) -> nn.Sequential:
    """``[Flatten] -> [Linear -> BN -> neuron] x n -> Linear``, the zoo's ``mlp``, by hand."""
    layers: list[nn.Module] = [nn.Flatten(2)] if len(in_shape) > 1 else []
    width = math.prod(in_shape)
    for h in widths:
        layers += [TimeDistributed(nn.Linear(width, h, bias=False)),
                   TimeDistributed(nn.BatchNorm1d(h)), neuron_cls(shape=(h,), **kw)]
        width = h
    layers.append(TimeDistributed(nn.Linear(width, K)))
    return nn.Sequential(*layers)


def _grads(module: nn.Module, x: torch.Tensor) -> tuple[torch.Tensor, dict]:
    y = module(x)
    module.zero_grad()
    (y * torch.linspace(-1, 1, K)).sum().backward()
    return y, {n: p.grad.clone() for n, p in module.named_parameters() if p.grad is not None}


@pytest.mark.parametrize("widths,in_shape,T,spec", _cases())
def test_switched_mlp_is_the_hand_built_rlif_net(widths, in_shape, T, spec):
    torch.manual_seed(sum(widths) + T)
    kw = _kwargs(spec)
    net = create_model("mlp", in_shape=in_shape, num_classes=K, neuron="rlif",
                       neuron_kwargs=kw, hidden=widths)
    neurons = [m for m in net.modules() if isinstance(m, LIF)]
    assert [type(m) for m in neurons] == [RLIF] * len(widths)
    assert [m.shape for m in neurons] == [(h,) for h in widths]
    assert [tuple(m.weight.shape) for m in neurons] == [(h, h) for h in widths]
    learnable = spec.get("init_potential") == "learnable"
    assert all(m.learnable_potential == learnable for m in neurons)

    hand = _hand_built(widths, in_shape, RLIF, kw)
    hand.load_state_dict(net.body.state_dict())          # strict: same layers, same names
    x = 3 * torch.randn(T, 6, *in_shape)
    y, g = _grads(net.body, x)
    y_hand, g_hand = _grads(hand, x)
    assert torch.equal(y, y_hand)
    assert g.keys() == g_hand.keys()
    for name in g:
        torch.testing.assert_close(g[name], g_hand[name], rtol=1e-5, atol=1e-6)
    if learnable:
        pots = [n for n in g if n.endswith("init_potential")]
        assert len(pots) == len(widths) and any(g[n].abs().sum() > 0 for n in pots)


@pytest.mark.parametrize("widths,in_shape,T,spec", _cases(4, seed=3))
def test_rlif_recurrence_is_used_and_zero_weight_gives_lif(widths, in_shape, T, spec):
    """Cross-check with the LIF switch, layer by layer (``record``): with every recurrent
    weight zero (``W s_{t-1} = 0``) each layer's spikes, ``v`` and ``h`` are the LIF net's; with
    the initialised weights the first layer's charge ``h`` differs once it has spiked."""
    torch.manual_seed(7 * T + len(widths))
    kw = _kwargs(spec)
    net = create_model("mlp", in_shape=in_shape, num_classes=K, neuron="rlif",
                       neuron_kwargs=kw, hidden=widths)
    lif = create_model("mlp", in_shape=in_shape, num_classes=K, neuron="lif",
                       neuron_kwargs=kw, hidden=widths)
    recurrent = {f"{n}.weight" for n, m in net.named_modules() if isinstance(m, RLIF)}
    lif.load_state_dict({k: v for k, v in net.state_dict().items() if k not in recurrent})
    x = 4 * torch.rand(max(T, 3), 8, *in_shape)
    first = "body." + next(n for n, m in net.body.named_modules() if isinstance(m, RLIF))
    tr_rlif, tr_lif = record(net, x), record(lif, x)
    assert tr_rlif[first].spikes[:-1].sum() > 0
    assert not torch.equal(tr_rlif[first].h, tr_lif[first].h)
    with torch.no_grad():
        for m in net.modules():
            if isinstance(m, RLIF):
                m.weight.zero_()
    tr_zero = record(net, x)
    assert tr_zero.keys() == tr_lif.keys() and len(tr_lif) == len(widths)
    for name in tr_lif:
        for a, b in zip(tr_zero[name], tr_lif[name], strict=True):
            assert torch.equal(a, b)


@pytest.mark.parametrize("widths,in_shape,T,spec", _cases(3, seed=5))
def test_streaming_the_rlif_mlp_reproduces_forward(widths, in_shape, T, spec):
    torch.manual_seed(T)
    net = create_model("mlp", in_shape=in_shape, num_classes=K, neuron="rlif",
                       neuron_kwargs=_kwargs(spec), hidden=widths).eval()
    x = 3 * torch.rand(T, 3, *in_shape)
    stream = Streaming(net)
    ys = torch.stack([stream(x_t) for x_t in x])
    torch.testing.assert_close(ys, net(x), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("name,in_shape,first", [
    ("cnn", (1, 8, 8), (32, 8, 8)),
    ("cnn", (2, 16, 16), (32, 16, 16)),
    ("cnn", (3, 7, 5), (32, 7, 5)),
    ("vgg11", (2, 48, 48), (64, 48, 48)),
    ("vgg11", (2, 128, 128), (64, 128, 128)),    # a 4 TB weight: refused before allocating
    ("sew_resnet18", (3, 32, 32), (64, 32, 32)),
    ("sew_resnet34", (3, 64, 64), (64, 32, 32)),
])
@pytest.mark.parametrize("spec", [{}, {"init_potential": "learnable"}])
def test_conv_nets_refuse_rlif_naming_the_net(name, in_shape, first, spec):
    with pytest.raises(ValueError) as err:
        create_model(name, in_shape=in_shape, num_classes=K, neuron="rlif",
                     neuron_kwargs=spec)
    msg = str(err.value)
    n = math.prod(first)
    assert f"model {name!r}" in msg and "neuron='rlif'" in msg
    assert str(first) in msg and f"{n} x {n}" in msg and "1-D" in msg


@pytest.mark.parametrize("opts", [["model.neuron_kwargs.tau=3.0"],
                                  ["model.neuron_kwargs.init_potential='learnable'",
                                   "model.neuron_kwargs.init_range=[0.2, 0.7]"],
                                  ["model.neuron_kwargs.surrogate='atan'",
                                   "model.neuron_kwargs.learnable_tau=true"]])
def test_rlif_in_configs(opts):
    cfg = parse_config("", ["model.neuron='rlif'", *opts])
    assert cfg.model.neuron == "rlif"
    net = create_model("mlp", in_shape=(8,), num_classes=3, neuron=cfg.model.neuron,
                       neuron_kwargs=dict(cfg.model.neuron_kwargs))
    assert sum(isinstance(m, RLIF) for m in net.modules()) == 2
    assert net(torch.rand(3, 2, 8)).shape == (3, 2, 3)


@pytest.mark.parametrize("bad,key", [("tau_syn=4.0", "tau_syn"), ("beta=0.5", "beta"),
                                     ("init_range=[0.6, 0.4]", "init_range"),
                                     ("tau=0.5", "tau")])
def test_rlif_bad_options_name_the_key(bad, key):
    with pytest.raises(ValueError, match=f"model.neuron_kwargs.{key}"):
        parse_config("", ["model.neuron='rlif'", "model.neuron_kwargs.init_potential="
                          "'learnable'", f"model.neuron_kwargs.{bad}"])
