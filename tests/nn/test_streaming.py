"""Streaming: one step per call reproduces model(x) for the zoo nets and every neuron model;
readouts, batch statistics and time-mixing layers behave as documented."""

from __future__ import annotations

import zlib

import pytest
import torch
from torch import nn

from membra.functional import ZOO_KINDS
from membra.models import create_model
from membra.nn import (
    ALIF,
    IF,
    LIF,
    RLIF,
    CubaLIF,
    Delay,
    Readout,
    Streaming,
    TimeDistributed,
)

ZOO = [("mlp", (64,), {}), ("cnn", (1, 8, 8), {}), ("vgg11", (3, 8, 8), {}),
       ("sew_resnet18", (3, 8, 8), {"widths": (8, 8, 16, 16)})]


def _spike_outputs(model):
    """Collect every neuron layer's output spikes per call (a forward hook)."""
    seen: dict[str, list] = {}
    hooks = []
    for name, m in model.named_modules():
        if isinstance(m, (LIF, IF, CubaLIF, ALIF)):
            hooks.append(m.register_forward_hook(
                lambda mod, inp, out, name=name: seen.setdefault(name, []).append(out)))
    return seen, hooks


@pytest.mark.parametrize("neuron,name,shape,kw", [
    (k.value, *net) for k in ZOO_KINDS for net in ZOO
    if not k.recurrent or len(net[1]) == 1])        # rlif: 1-D neuron layers (mlp) only
def test_zoo_stream_equals_model(name, shape, kw, neuron):
    torch.manual_seed(zlib.crc32(f"{name}-{neuron}".encode()))
    net = create_model(name, in_shape=shape, num_classes=7, neuron=neuron,
                       neuron_kwargs={"init_potential": "learnable"}, **kw)
    net.eval()
    T, B = 4, 3
    x = torch.rand(T, B, *shape) * 3
    seen, hooks = _spike_outputs(net)
    with torch.no_grad():
        ref = net(x)
        full = {k: v[0] for k, v in seen.items()}
        seen.clear()
        stream = Streaming(net)
        out = torch.stack([stream(x[t]) for t in range(T)])
    for h in hooks:
        h.remove()
    torch.testing.assert_close(out, ref, rtol=1e-5, atol=1e-5)
    assert full and all(torch.equal(torch.cat(seen[k]), full[k]) for k in full)  # spikes
    assert sum(float(v.sum()) for v in full.values()) > 0
    # reset starts from the initial potentials again
    stream.reset()
    with torch.no_grad():
        again = torch.stack([stream(x[t]) for t in range(T)])
    assert torch.equal(again, out)


@pytest.mark.parametrize("make", [
    lambda: CubaLIF(shape=(6,), init_potential="learnable", init_current="learnable"),
    lambda: ALIF(shape=(6,), init_potential="learnable", init_adaptation=0.3),
    lambda: RLIF(shape=(6,), init_potential="learnable"),
    lambda: Delay((6,), 3, torch.tensor([0, 1, 2, 3, 3, 1])),
    lambda: IF(shape=(6,)),
])
def test_every_layer_streams_inside_a_net(make):
    torch.manual_seed(1)
    net = nn.Sequential(nn.Linear(5, 6), make(), TimeDistributed(nn.Linear(6, 6)), make())
    x = torch.randn(7, 2, 5) * 2
    ref = net(x)
    stream = Streaming(net)
    out = torch.stack([stream(x[t]) for t in range(7)])
    torch.testing.assert_close(out, ref)
    # gradients flow through the carried state, to the learnable initial states too
    out.sum().backward()
    assert all(p.grad is not None for p in net.parameters())


@pytest.mark.parametrize("mode", ["mean", "last", "per_step"])
def test_readout_inside_the_model(mode):
    torch.manual_seed(2)
    net = nn.Sequential(nn.Linear(4, 5), LIF(shape=(5,)), nn.Linear(5, 3), Readout(mode))
    x = torch.randn(6, 2, 4) * 2
    per_step = net[:3](x)
    stream = Streaming(net)
    outs = [stream(x[t]) for t in range(6)]
    for t, y in enumerate(outs):
        want = {"mean": per_step[:t + 1].mean(0), "last": per_step[t],
                "per_step": per_step[t]}[mode]
        torch.testing.assert_close(y, want)
    if mode != "per_step":
        torch.testing.assert_close(outs[-1], net(x))


def test_batchnorm_in_training_mode_is_named():
    net = create_model("mlp", in_shape=(8,), num_classes=3)
    stream = Streaming(net)  # construction is fine; the step checks the mode
    with pytest.raises(ValueError, match=r"body\.\d+.*BatchNorm1d.*model\.eval\(\)"):
        stream(torch.zeros(2, 8))
    net.eval()
    assert stream(torch.zeros(2, 8)).shape == (2, 3)


class _TimeMean(nn.Module):
    streamable = False

    def forward(self, x):
        return x.mean(0, keepdim=True).expand_as(x)


@pytest.mark.parametrize("layer,cls", [(nn.GRU(4, 4), "GRU"), (_TimeMean(), "_TimeMean")])
def test_time_mixing_layers_are_refused_by_name(layer, cls):
    with pytest.raises(ValueError, match=rf"'1' \({cls}\).*mixes time steps"):
        Streaming(nn.Sequential(nn.Linear(4, 4), layer))


def test_bad_step_input():
    stream = Streaming(nn.Sequential(LIF(shape=(3,))))
    with pytest.raises(ValueError, match="one time step"):
        stream(torch.tensor(1.0))
    with pytest.raises(TypeError):
        Streaming(lambda x: x)
