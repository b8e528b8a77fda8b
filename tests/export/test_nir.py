"""NIR export: round trip gives the same spikes; the neuron parameter mapping is exact."""

import numpy as np
import pytest
import torch
from torch import nn

nir = pytest.importorskip("nir")

from membra.export import from_nir, nir_neuron_params, read_nir, to_nir, write_nir  # noqa: E402
from membra.nn import IF, LIF, TimeDistributed  # noqa: E402


def randomise_bn(net):
    for m in net.modules():
        if isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d)):
            m.running_mean.uniform_(-0.5, 0.5)
            m.running_var.uniform_(0.5, 2.0)
            m.weight.data.uniform_(0.5, 2.0)
            m.bias.data.uniform_(-0.5, 0.5)


def cnn():
    net = nn.Sequential(
        TimeDistributed(nn.Conv2d(2, 4, 3, padding=1)), TimeDistributed(nn.BatchNorm2d(4)),
        LIF(shape=(4, 8, 8), init_potential="learnable"),
        TimeDistributed(nn.AvgPool2d(2)), nn.Flatten(2),
        nn.Linear(64, 16), TimeDistributed(nn.BatchNorm1d(16)),
        IF(shape=(16,), reset="soft", detach_reset=True, init_potential=0.3),
        nn.Linear(16, 3))
    with torch.no_grad():
        net[0].module.weight.mul_(3.0)
        randomise_bn(net)
    return net.eval()


def mlp():
    net = nn.Sequential(nn.Linear(10, 12), LIF(shape=(12,), tau=3.0, reset="hard"),
                        nn.Linear(12, 5, bias=False), IF(shape=(5,)))
    with torch.no_grad():
        net[0].weight.mul_(4.0)
        net[2].weight.abs_().mul_(2.0)
    return net.eval()


def neuron_outputs(net, x):
    out = []
    for m in net:
        x = m(x)
        if isinstance(m, (LIF, IF)):
            out.append(x)
    return out, x


@pytest.mark.parametrize("make,in_shape", [(cnn, (2, 8, 8)), (mlp, (10,))])
def test_round_trip_same_spikes(make, in_shape, tmp_path):
    torch.manual_seed(0)
    net = make()
    graph = to_nir(net, in_shape)
    path = write_nir(graph, tmp_path / "model.nir")
    back = from_nir(read_nir(path)).eval()
    x = torch.rand(6, 5, *in_shape) * 2
    with torch.no_grad():
        s_ref, y_ref = neuron_outputs(net, x)
        s_new, y_new = neuron_outputs(back, x)
    assert len(s_ref) == len(s_new) == 2
    assert all(a.sum() > 0 for a in s_ref)             # the test exercises firing
    for a, b in zip(s_ref, s_new, strict=True):
        assert torch.equal(a, b)
    torch.testing.assert_close(y_new, y_ref, atol=1e-5, rtol=1e-5)


def test_imp_and_soft_reset_in_metadata():
    net = cnn()
    graph = to_nir(net, (2, 8, 8))
    lif, if_ = graph.nodes["2"], graph.nodes["7"]
    assert isinstance(lif, nir.LIF) and isinstance(if_, nir.IF)
    np.testing.assert_array_equal(lif.metadata["membra.init_potential"],
                                  net[2].init_potential.detach()[0].numpy())
    assert lif.metadata["membra.init_potential_learnable"] is True
    assert if_.metadata["membra.reset"] == "soft"
    np.testing.assert_allclose(if_.metadata["membra.init_potential"], np.full(16, 0.3))
    back = from_nir(graph)
    assert back[1].learnable_potential and back[1].init_potential.shape == (1, 4, 8, 8)
    assert "1" not in graph.nodes and "6" not in graph.nodes      # BatchNorms were folded


def nir_euler(node, I, dt):
    """NIR's LIF/IF ODE, forward Euler with step dt, fire on v > v_th, reset to v_reset."""
    v = np.zeros_like(node.v_threshold, dtype=np.float64)
    out = []
    for i_t in I:
        if isinstance(node, nir.LIF):
            v = v + dt / node.tau * (node.v_leak - v + node.r * i_t)
        else:
            v = v + dt * node.r * i_t
        z = v > node.v_threshold
        v = np.where(z, node.v_reset, v)
        out.append(z.astype(np.float64))
    return np.stack(out)


@pytest.mark.parametrize("dt", [1.0, 0.5])
@pytest.mark.parametrize("neuron", [LIF(shape=(7,), tau=2.5, v_th=0.8, reset="hard"),
                                    IF(shape=(7,), v_th=1.2, reset="hard")])
def test_parameter_mapping_matches_nir_ode(neuron, dt):
    node_cls = nir.LIF if isinstance(neuron, LIF) else nir.IF
    node = node_cls(**nir_neuron_params(neuron, (7,), dt))
    if isinstance(neuron, LIF):
        assert float(node.tau[0]) == pytest.approx(2.5 * dt) and node.r[0] == 1.0
    else:
        assert node.r[0] == pytest.approx(1 / dt)
    g = torch.Generator().manual_seed(1)
    x = torch.rand(40, 3, 7, generator=g, dtype=torch.float64) * 1.6
    ref = np.stack([nir_euler(node, x[:, b].numpy(), dt) for b in range(3)], axis=1)
    spikes = neuron.double()(x)
    assert spikes.sum() > 10
    np.testing.assert_array_equal(spikes.numpy(), ref)


def test_foreign_graph_uses_nir_semantics():
    # a graph without membra metadata: hard reset, zero start
    w = np.eye(3, dtype=np.float32)
    graph = nir.NIRGraph.from_list(
        nir.Affine(weight=w, bias=np.zeros(3, np.float32)),
        nir.LIF(tau=np.full(3, 4.0), r=np.ones(3), v_leak=np.zeros(3),
                v_threshold=np.ones(3)), type_check=False)
    model = from_nir(graph)
    lif = model[1]
    assert isinstance(lif, LIF) and lif.reset == "hard" and float(lif.tau) == 4.0
    assert float(lif.init_potential) == 0.0


def test_errors():
    with pytest.raises(ValueError, match="in_shape"):
        to_nir(mlp())
    with pytest.raises(TypeError, match="nn.Module"):
        to_nir("not a model", (3,))
    with pytest.raises(ValueError, match="not supported"):
        to_nir(nn.Sequential(nn.Linear(3, 3), nn.ReLU()), (3,))
    with pytest.raises(ValueError, match="must follow"):
        to_nir(nn.Sequential(TimeDistributed(nn.BatchNorm1d(3))), (3,))
    bad = nir.NIRGraph.from_list(nir.LIF(tau=np.array([2.0, 3.0]), r=np.ones(2),
                                         v_leak=np.zeros(2), v_threshold=np.ones(2)),
                                 type_check=False)
    with pytest.raises(ValueError, match="per-neuron tau"):
        from_nir(bad)
    with pytest.raises(FileNotFoundError, match="missing.nir"):
        read_nir("missing.nir")


def test_zoo_cnn_round_trip():
    from membra.models import create_model

    torch.manual_seed(3)
    model = create_model("cnn", in_shape=(1, 8, 8), num_classes=10, neuron="lif",
                         neuron_kwargs={"init_potential": "learnable"})
    randomise_bn(model)
    model.eval()
    graph = to_nir(model)                               # in_shape from the zoo model
    back = from_nir(graph).eval()
    x = torch.rand(4, 3, 1, 8, 8) * 3
    with torch.no_grad():
        s_ref, y_ref = neuron_outputs(model.body, x)
        s_new, y_new = neuron_outputs(back, x)
    assert len(s_ref) == len(s_new) == 4
    assert all(a.sum() > 0 for a in s_ref)
    for a, b in zip(s_ref, s_new, strict=True):
        assert torch.equal(a, b)
    torch.testing.assert_close(y_new, y_ref, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("layer", ["LIF", "IF", "CubaLIF"])
@pytest.mark.parametrize("sg", ["callable", "custom"])
def test_custom_surrogate_is_refused_by_name(layer, sg):
    """NIR carries no surrogate: a custom one is a ValueError naming the layer and the
    surrogate (not a TypeError from float(None)); a built-in instance exports, and swapping
    in a built-in makes the same net export with the same spikes."""
    import membra.nn
    from membra.functional import SURROGATES, Surrogate, as_surrogate

    def my_sg(u):
        return torch.sigmoid(3 * u)

    spec = my_sg if sg == "callable" else Surrogate.custom(my_sg, "my_sg")
    cls = getattr(membra.nn, layer)
    net = nn.Sequential(nn.Linear(4, 6), cls(shape=(6,), surrogate=spec)).eval()
    with pytest.raises(ValueError, match=r"'1' \(" + layer + r"\).*'my_sg'"):
        to_nir(net, (4,))
    net[1].surrogate_fn = as_surrogate("sigmoid")
    x = 3 * torch.rand(5, 2, 4)
    back = from_nir(to_nir(net, (4,)))
    assert torch.equal(back(x), net(x))
    net[1].surrogate_fn = SURROGATES["atan"].with_alpha(3.0)
    meta = next(n for n in to_nir(net, (4,)).nodes.values() if n.metadata).metadata
    assert meta["membra.surrogate"] == "atan" and meta["membra.alpha"] == 3.0
