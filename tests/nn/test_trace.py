"""Look inside: ``layer.trace`` and ``membra.nn.record`` against a plain loop."""

from __future__ import annotations

import itertools

import pytest
import torch
from torch import nn

from membra.functional import fire_and_reset, if_charge, lif_charge
from membra.kernels import available_backends
from membra.nn import IF, LIF, NeuronTrace, TimeDistributed, record, recording

BACKENDS = available_backends("cpu")


def plain_loop(layer, x, v0):
    """(spikes, v, h) by hand from the functional step, every step kept."""
    v = v0.expand_as(x[0]) if isinstance(v0, torch.Tensor) else torch.full_like(x[0], v0)
    ss, vs, hs = [], [], []
    for t in range(x.shape[0]):
        if isinstance(layer, LIF):
            h = lif_charge(x[t], v, layer.tau, float(layer.v_reset))
        else:
            h = if_charge(x[t], v)
        s, v = fire_and_reset(h, v_th=float(layer.v_th), v_reset=float(layer.v_reset),
                              reset=layer.reset, surrogate=layer.surrogate_fn,
                              detach_reset=layer.detach_reset)
        ss.append(s)
        vs.append(v)
        hs.append(h)
    return torch.stack(ss), torch.stack(vs), torch.stack(hs)


def make_layer(cls, reset, surrogate, backend, dtype):
    kw = dict(reset=reset, surrogate=surrogate, backend=backend, v_th=0.8, v_reset=-0.1,
              shape=(3, 5), init_potential="learnable")
    if cls is LIF:
        kw["learnable_tau"] = True
        kw["tau"] = 2.5
    return cls(**kw).to(dtype)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("cls,reset", list(itertools.product([LIF, IF], ["soft", "hard"])))
@pytest.mark.parametrize("surrogate", ["sigmoid", lambda u: torch.atan(3 * u)])
@pytest.mark.parametrize("dtype,T,B", [(torch.float64, 1, 2), (torch.float64, 6, 3),
                                       (torch.float32, 5, 0)])
def test_trace_matches_plain_loop_with_gradients(backend, cls, reset, surrogate, dtype, T, B):
    torch.manual_seed(T + B)
    layer = make_layer(cls, reset, surrogate, backend, dtype)
    x = (torch.randn(T, B, 3, 5, dtype=dtype) + 0.6).requires_grad_()
    tr = layer.trace(x)
    assert isinstance(tr, NeuronTrace) and tr._fields == ("spikes", "v", "h")
    for t in tr:
        assert t.shape == x.shape and t.dtype == dtype
    want = plain_loop(layer, x, layer.init_potential)
    tol = dict(atol=1e-10, rtol=1e-10) if dtype == torch.float64 else dict(atol=1e-5, rtol=1e-5)
    for got, w in zip(tr, want, strict=True):
        torch.testing.assert_close(got, w, **tol)
    # spikes and v_T equal run(); h, v carry gradients to x, V_0 and tau
    s, vT = layer.run(x)
    torch.testing.assert_close(tr.spikes, s)
    if T:
        torch.testing.assert_close(tr.v[-1], vT)
    g = torch.Generator().manual_seed(1)
    ws = [torch.randn(x.shape, generator=g, dtype=dtype) for _ in range(3)]
    leaves = [x, *layer.parameters()]
    got = torch.autograd.grad(sum((t * w).sum() for t, w in zip(tr, ws, strict=True)), leaves)
    wantg = torch.autograd.grad(sum((t * w).sum() for t, w in zip(want, ws, strict=True)), leaves)
    for a, b in zip(got, wantg, strict=True):
        torch.testing.assert_close(a, b, **tol)


@pytest.mark.parametrize("backend", BACKENDS)
def test_trace_gradcheck_float64(backend):
    layer = LIF(shape=(4,), reset="hard", backend=backend, learnable_tau=True,
                tau=2.0).double()
    x = (torch.rand(5, 2, 4, dtype=torch.float64) * 1.5).requires_grad_()
    v0 = (torch.rand(2, 4, dtype=torch.float64) * 0.2).requires_grad_()

    def f(x, v0):
        tr = layer.trace(x, state=v0)
        return tr.v, tr.h

    assert torch.autograd.gradcheck(f, (x, v0), eps=1e-7, atol=1e-6)


def test_trace_from_a_state_and_noncontiguous_input():
    layer = IF(shape=(6,))
    x = torch.randn(6, 6, 3).permute(0, 2, 1) + 0.5  # [T=6, B=3, 6], non-contiguous
    state = torch.randn(3, 6) * 0.2
    tr = layer.trace(x, state=state)
    want = plain_loop(layer, x, state)
    for got, w in zip(tr, want, strict=True):
        torch.testing.assert_close(got, w)


class Block(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = TimeDistributed(nn.Linear(4, 6))
        self.lif = LIF(shape=(6,))

    def forward(self, x):
        return self.lif(self.fc(x))


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.block = Block()
        self.fc = TimeDistributed(nn.Linear(6, 6))
        self.shared = IF(shape=(6,))

    def forward(self, x):
        y = self.shared(self.fc(self.block(x)))
        return self.shared(y * 2.0)  # the same neuron module, called twice


def test_record_returns_every_layer_by_name_without_changing_the_model():
    torch.manual_seed(0)
    net = Net()
    x = torch.randn(5, 3, 4) * 2
    before = {k: v.clone() for k, v in net.state_dict().items()}
    hooks = (dict(net._forward_hooks), dict(net._forward_pre_hooks))
    out = net(x)
    traces = record(net, x)
    assert list(traces) == ["block.lif", "shared", "shared#1"]
    with recording(net) as again:
        y = net(x)
    torch.testing.assert_close(y, out)
    assert list(again) == list(traces)
    # each trace is that call's own: replay the layers by hand
    a = net.block.fc(x)
    torch.testing.assert_close(traces["block.lif"].spikes, net.block.lif(a))
    torch.testing.assert_close(traces["block.lif"], net.block.lif.trace(a))
    b = net.fc(traces["block.lif"].spikes)
    torch.testing.assert_close(traces["shared"], net.shared.trace(b))
    torch.testing.assert_close(traces["shared#1"], net.shared.trace(traces["shared"].spikes * 2))
    assert {k: v for k, v in net.state_dict().items()}.keys() == before.keys()
    for k, v in net.state_dict().items():
        assert torch.equal(v, before[k])
    assert (dict(net._forward_hooks), dict(net._forward_pre_hooks)) == hooks
    assert all(not m._forward_hooks for m in net.modules())
    assert all("forward" not in vars(m) for m in net.modules())


def test_record_as_context_manager_and_on_a_bare_layer():
    layer = LIF(shape=(3,))
    x = torch.randn(4, 2, 3) + 1
    with recording(layer) as traces:
        layer(x)
    assert list(traces) == [""]
    torch.testing.assert_close(next(iter(traces.values())), layer.trace(x))
    # after the block the layer records nothing
    layer(x)
    assert len(traces) == 1


def test_record_restores_the_model_when_forward_raises():
    net = Net()
    with pytest.raises(RuntimeError):
        record(net, torch.randn(5, 3, 7))  # wrong feature size
    assert all(not m._forward_hooks and "forward" not in vars(m) for m in net.modules())


def test_record_model_without_neurons_is_named():
    with pytest.raises(ValueError, match="no spiking neuron"):
        record(nn.Linear(3, 3), torch.randn(2, 3))
