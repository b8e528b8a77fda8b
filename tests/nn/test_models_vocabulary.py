"""The further neuron models speak the typed vocabulary: one table of kinds (NeuronKind) read
by the zoo, the config and neuron_class; any surrogate; trace(); record(); Streaming."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from membra.functional import SURROGATES, ZOO_KINDS, NeuronKind, Surrogate
from membra.kernels import NeuronTrace
from membra.nn import ALIF, LIF, RLIF, CubaLIF, Streaming, neuron_class, record

MODELS = [CubaLIF, ALIF, RLIF]


def _fast_sigmoid(u):
    return u / (1 + 10 * u.abs())


SURROGATE_SPECS = {"name": "atan", "instance": SURROGATES["triangle"].with_alpha(0.7),
                   "callable": _fast_sigmoid,
                   "custom": Surrogate.custom(lambda u: torch.tanh(3 * u), "tanh3")}


def test_one_table_of_kinds():
    from membra.models.common import NEURON_CLASSES
    from membra.models.registry import NEURONS
    from membra.train.config import ModelSection

    zoo = [k.value for k in ZOO_KINDS]
    assert list(NEURON_CLASSES) == zoo and list(NEURONS) == zoo
    field = ModelSection.__dataclass_fields__["neuron"]
    assert field.metadata["choices"] == tuple(zoo)
    for kind in NeuronKind:
        assert neuron_class(kind).kind is kind
        assert neuron_class(kind.value) is neuron_class(kind)
    codes = [k.code for k in NeuronKind if k is not NeuronKind.RLIF]
    assert codes == sorted(set(codes)) == [0, 1, 2, 3]
    with pytest.raises(ValueError, match="rlif"):
        _ = NeuronKind.RLIF.code


@pytest.mark.parametrize("cls", MODELS)
@pytest.mark.parametrize("sg", list(SURROGATE_SPECS))
def test_models_take_any_surrogate(cls, sg):
    spec = SURROGATE_SPECS[sg]
    layer = cls(shape=(6,), init_potential="learnable", surrogate=spec)
    assert isinstance(layer.surrogate_fn, Surrogate)
    assert layer.surrogate == layer.surrogate_fn.name
    assert (layer.alpha is None) == (sg in ("callable", "custom"))
    x = (2 * torch.rand(5, 3, 6)).requires_grad_()
    ref = cls(shape=(6,), init_potential="learnable", surrogate=spec, backend="reference")
    ref.load_state_dict(layer.state_dict())
    s, s_ref = layer(x), ref(x)
    assert torch.equal(s, s_ref)
    g = torch.autograd.grad(s.sum(), (x, layer.init_potential))
    g_ref = torch.autograd.grad(s_ref.sum(), (x, ref.init_potential))
    for a, b in zip(g, g_ref, strict=True):
        assert a.abs().sum() > 0
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("cls", MODELS)
@pytest.mark.parametrize("reset", ["soft", "hard"])
@pytest.mark.parametrize("seed", [0, 1])
def test_trace_of_every_model(cls, reset, seed):
    """spikes = forward; v[-1] = run's v_T; h fired against the model's threshold; v the
    reset of h (ALIF: threshold v_th + beta a_t, a from the spikes)."""
    torch.manual_seed(seed)
    layer = cls(shape=(5,), reset=reset, init_potential="learnable", v_reset=-0.1)
    x = 2.5 * torch.rand(7, 3, 5)
    tr = layer.trace(x)
    assert isinstance(tr, NeuronTrace) and tr.v.shape == tr.h.shape == x.shape
    s, state = layer.run(x)
    assert torch.equal(tr.spikes, s) and torch.equal(tr.spikes, layer(x))
    torch.testing.assert_close(tr.v[-1], state[0])
    theta = torch.full_like(x, 1.0)
    if cls is ALIF:
        a, rho = torch.zeros_like(x[0]), 1 - 1 / float(layer.tau_adapt)
        for t in range(x.shape[0]):
            theta[t] = 1.0 + float(layer.beta) * a
            a = a * rho + tr.spikes[t]
    assert torch.equal(tr.spikes, (tr.h >= theta).float())
    after = tr.h - theta * tr.spikes if reset == "soft" else torch.where(
        tr.spikes > 0, torch.tensor(-0.1), tr.h)
    torch.testing.assert_close(tr.v, after)


def test_record_covers_every_model():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(4, 6), CubaLIF(shape=(6,)), nn.Linear(6, 6), ALIF(shape=(6,)),
                        nn.Linear(6, 6), RLIF(shape=(6,)), nn.Linear(6, 5), LIF(shape=(5,)))
    x = 3 * torch.rand(5, 2, 4)
    traces = record(net, x)
    assert list(traces) == ["1", "3", "5", "7"]
    h = x
    for i, m in enumerate(net):
        if i % 2:
            assert torch.equal(traces[str(i)].spikes, m(h))
        h = m(h)


@pytest.mark.parametrize("cls", MODELS)
def test_streaming_with_a_custom_surrogate(cls):
    torch.manual_seed(1)
    net = nn.Sequential(cls(shape=(4,), surrogate=_fast_sigmoid, init_potential="learnable"))
    x = 3 * torch.rand(6, 2, 4)
    stream = Streaming(net)
    ys = torch.stack([stream(x_t) for x_t in x])
    assert torch.equal(ys, net(x))


def test_create_model_takes_a_kind():
    from membra.models import create_model

    net = create_model("mlp", in_shape=(8,), num_classes=3, neuron=NeuronKind.ALIF)
    assert any(isinstance(m, ALIF) for m in net.modules())
    net = create_model("mlp", in_shape=(8,), num_classes=3, neuron=NeuronKind.RLIF)
    assert any(isinstance(m, RLIF) for m in net.modules())
