"""NIR both ways on graphs: hand-built peer-style graphs (snnTorch Leaky, Norse LIFBoxCell,
CubaLIF, Delay, pools, branches) against a plain loop of the NIR equations, and membra -> NIR
-> membra round trips of every zoo model, residual/concat/max-pool nets and converted SNNs."""

import numpy as np
import pytest
import torch
from torch import nn

nir = pytest.importorskip("nir")

import membra.nn as mnn  # noqa: E402
from membra.export import from_nir, read_nir, to_nir, write_nir  # noqa: E402
from membra.models import create_model, list_models  # noqa: E402
from membra.nn import IF, LIF, SpikingNeuron, TimeDistributed  # noqa: E402

from . import nir_reference as ref  # noqa: E402

HAS_CUBA = hasattr(mnn, "CubaLIF")
HAS_DELAY = hasattr(mnn, "Delay")
f32 = np.float32


# ---- peer-style graphs, built by hand from the NIR spec ------------------------------------
def leaky(rng, n, dt, per_neuron_th=False):
    """snnTorch ``Leaky(beta)`` as its ``export_to_nir`` writes it: ``tau = dt / (1 - beta)``,
    ``r = tau / dt``, ``v_leak = 0`` (dt = 1e-4)."""
    beta = rng.uniform(0.5, 0.95)
    tau = np.full(n, dt / (1 - beta))
    th = rng.uniform(0.5, 1.5, n) if per_neuron_th else np.full(n, rng.uniform(0.5, 1.5))
    return nir.LIF(tau=tau, r=tau / dt, v_leak=np.zeros(n), v_threshold=th,
                   v_reset=np.zeros(n))


def lif_box(rng, n, dt):
    """Norse ``LIFBoxCell``: ``tau = 1 / tau_mem_inv``, ``r = 1``, its ``v_leak``, per-neuron
    thresholds and resets (dt = 1e-3)."""
    tau = np.full(n, 1.0 / rng.uniform(100, 400))
    return nir.LIF(tau=tau, r=np.ones(n), v_leak=rng.uniform(-0.3, 0.6, n),
                   v_threshold=rng.uniform(0.6, 1.2, n), v_reset=rng.uniform(-0.2, 0.2, n))


def affine(rng, n_out, n_in, scale=1.0):
    return nir.Affine(weight=(rng.standard_normal((n_out, n_in)) * scale).astype(f32),
                      bias=(rng.standard_normal(n_out) * 0.2 * scale).astype(f32))


def chain(*nodes, shape):
    names = [f"n{i}" for i in range(len(nodes))]
    all_nodes = {"input": nir.Input(input_type={"input": np.array(shape)}),
                 **dict(zip(names, nodes, strict=True)),
                 "output": nir.Output(output_type={"output": nodes[-1].output_type["output"]})}
    order = ["input", *names, "output"]
    return nir.NIRGraph(nodes=all_nodes, edges=list(zip(order[:-1], order[1:], strict=True)),
                        type_check=False)


def check_against_reference(graph, in_shape, dt, seed, T=40, B=3, amp=2.0):
    """membra's simulation of ``graph`` (float64) gives the reference loop's spikes."""
    x = np.random.default_rng(seed).uniform(0, amp, (T, B, *in_shape))
    want, values = ref.graph(graph, x, dt)
    model = from_nir(graph, dt=dt).double()
    with torch.no_grad():
        got = model(torch.from_numpy(x)).numpy()
    spikes = [v for k, v in values.items()
              if isinstance(graph.nodes[k], (nir.LIF, nir.IF, nir.CubaLIF))]
    assert all(0 < s.mean() < 1 for s in spikes), [s.mean() for s in spikes]  # not trivial
    np.testing.assert_array_equal(got, want)
    return model


@pytest.mark.parametrize("per_neuron_th", [False, True])
@pytest.mark.parametrize("seed", range(3))
def test_snntorch_leaky_chain(seed, per_neuron_th):
    rng, dt = np.random.default_rng(seed), 1e-4
    n_in, h, k = 7, 11, 5
    g = chain(affine(rng, h, n_in, 1.5), leaky(rng, h, dt, per_neuron_th),
              affine(rng, k, h, 2.0), leaky(rng, k, dt, per_neuron_th), shape=(n_in,))
    check_against_reference(g, (n_in,), dt, seed)


@pytest.mark.parametrize("seed", range(3))
def test_norse_lif_box_chain_with_leak_and_per_neuron_reset(seed):
    rng, dt = np.random.default_rng(seed), 1e-3
    g = chain(affine(rng, 9, 6, 1.0), lif_box(rng, 9, dt),
              nir.Linear(weight=rng.uniform(-0.5, 1.5, (4, 9)).astype(f32)),
              lif_box(rng, 4, dt), shape=(6,))
    check_against_reference(g, (6,), dt, seed, T=60)


@pytest.mark.parametrize("dt", [1.0, 0.5, 0.25])
@pytest.mark.parametrize("seed", range(2))
def test_if_and_lif_with_dt(seed, dt):
    rng = np.random.default_rng(seed)
    n = 8
    if_node = nir.IF(r=rng.uniform(0.5, 2.0, n) / dt, v_threshold=np.full(n, 1.0),
                     v_reset=np.zeros(n))
    lif = nir.LIF(tau=np.full(n, 3.0 * dt), r=rng.uniform(0.5, 2.0, n),
                  v_leak=rng.uniform(-0.2, 0.4, n), v_threshold=np.full(n, 0.7),
                  v_reset=np.full(n, 0.1))
    g = chain(affine(rng, n, 5), if_node, affine(rng, n, n, 1.5), lif, shape=(5,))
    check_against_reference(g, (5,), dt, seed)


def branch_graph(rng, dt, n_in=6, n=10, k=4):
    """Two inputs edges summed into one neuron, a diamond, a skip edge into the head."""
    nodes = {
        "input": nir.Input(input_type={"input": np.array([n_in])}),
        "a": affine(rng, n, n_in, 1.5),
        "b": nir.Linear(weight=(rng.standard_normal((n, n_in)) * 1.5).astype(f32)),
        "lif": leaky(rng, n, dt),
        "c": affine(rng, n, n, 1.5), "d": affine(rng, n, n, 1.5),
        "if": nir.IF(r=np.full(n, 1.0 / dt), v_threshold=np.full(n, 1.0)),
        "head": affine(rng, k, n, 2.0),
        "out_lif": leaky(rng, k, dt),
        "output": nir.Output(output_type={"output": np.array([k])}),
    }
    edges = [("input", "a"), ("input", "b"), ("a", "lif"), ("b", "lif"), ("lif", "c"),
             ("lif", "d"), ("c", "if"), ("d", "if"), ("if", "head"), ("lif", "head"),
             ("head", "out_lif"), ("out_lif", "output")]
    return nir.NIRGraph(nodes=nodes, edges=edges, type_check=False)


@pytest.mark.parametrize("seed", range(3))
def test_graph_edges_are_summed(seed, tmp_path):
    dt = 1e-4
    g = branch_graph(np.random.default_rng(seed), dt)
    check_against_reference(g, (6,), dt, seed)
    g2 = read_nir(write_nir(g, tmp_path / "g.nir"))              # through the file too
    check_against_reference(g2, (6,), dt, seed)


@pytest.mark.parametrize("pool", ["sum", "avg"])
@pytest.mark.parametrize("seed", range(2))
def test_conv_pool_flatten_graph(seed, pool):
    rng, dt = np.random.default_rng(seed), 1.0
    C, H, W = 2, 6, 6
    conv = nir.Conv2d(input_shape=np.array([H, W]),
                      weight=(rng.standard_normal((3, C, 3, 3)) * 0.8).astype(f32),
                      stride=np.array([1, 1]), padding=np.array([1, 1]),
                      dilation=np.array([1, 1]), groups=1,
                      bias=(rng.standard_normal(3) * 0.1).astype(f32))
    n = 3 * H * W
    if_node = nir.IF(r=np.ones((3, H, W)), v_threshold=rng.uniform(0.8, 1.5, (3, H, W)),
                     v_reset=np.zeros((3, H, W)))
    cls = nir.SumPool2d if pool == "sum" else nir.AvgPool2d
    p = cls(kernel_size=np.array([2, 2]), stride=np.array([2, 2]), padding=np.array([0, 0]))
    flat = nir.Flatten(input_type={"input": np.array([3, H // 2, W // 2])}, start_dim=0)
    g = chain(conv, if_node, p, flat, affine(rng, 5, n // 4, 1.5 if pool == "sum" else 4.0),
              nir.LIF(tau=np.full(5, 2.0), r=np.ones(5), v_leak=np.zeros(5),
                      v_threshold=np.full(5, 1.0)), shape=(C, H, W))
    check_against_reference(g, (C, H, W), dt, seed)


@pytest.mark.skipif(not HAS_CUBA, reason="needs membra.nn.CubaLIF (neuron-models issue)")
@pytest.mark.parametrize("dt", [1e-3, 1.0])
@pytest.mark.parametrize("seed", range(3))
def test_cuba_lif(seed, dt):
    rng = np.random.default_rng(seed)
    n = 9
    tau_syn, tau_mem = rng.uniform(2, 6) * dt, rng.uniform(2, 6) * dt
    cuba = nir.CubaLIF(tau_syn=np.full(n, tau_syn), tau_mem=np.full(n, tau_mem),
                       r=rng.uniform(0.5, 2.0, n), v_leak=rng.uniform(-0.2, 0.3, n),
                       v_threshold=np.full(n, 1.0), v_reset=np.zeros(n),
                       w_in=rng.uniform(0.5, 2.0, n) * tau_syn / dt)
    g = chain(affine(rng, n, 5, 1.5), cuba, shape=(5,))
    check_against_reference(g, (5,), dt, seed)


@pytest.mark.skipif(not HAS_DELAY, reason="needs membra.nn.Delay (neuron-models issue)")
@pytest.mark.parametrize("dt", [1e-3, 1.0])
@pytest.mark.parametrize("seed", range(3))
def test_delay(seed, dt):
    rng = np.random.default_rng(seed)
    n = 7
    delay = nir.Delay(delay=rng.integers(0, 5, n).astype(np.float64) * dt)
    g = chain(affine(rng, n, 4, 1.5), delay,
              nir.LIF(tau=np.full(n, 2 * dt), r=np.ones(n), v_leak=np.zeros(n),
                      v_threshold=np.full(n, 1.0)), shape=(4,))
    check_against_reference(g, (4,), dt, seed)


def test_needs_missing_neuron_model_named(monkeypatch):
    for attr, node in (("CubaLIF", nir.CubaLIF(tau_syn=np.ones(2), tau_mem=np.ones(2),
                                               r=np.ones(2), v_leak=np.zeros(2),
                                               v_threshold=np.ones(2))),
                       ("Delay", nir.Delay(delay=np.ones(2)))):
        monkeypatch.delattr(mnn, attr, raising=False)
        with pytest.raises(ValueError, match=f"membra.nn.{attr}"):
            from_nir(chain(node, shape=(2,)))


@pytest.mark.parametrize("node", [
    nir.LI(tau=np.ones(3), r=np.ones(3), v_leak=np.zeros(3)),
    nir.Threshold(threshold=np.ones(3)),
    nir.I(r=np.ones(3))])
def test_unknown_node_is_named(node):
    g = chain(affine(np.random.default_rng(0), 3, 3), node, shape=(3,))
    with pytest.raises(ValueError, match=rf"'n1'.*{type(node).__name__}"):
        from_nir(g)


def test_import_refusals_name_the_node():
    rng = np.random.default_rng(0)
    lif = nir.LIF(tau=np.array([2.0, 3.0]), r=np.ones(2), v_leak=np.zeros(2),
                  v_threshold=np.ones(2))
    with pytest.raises(ValueError, match="'n0'.*per-neuron tau"):
        from_nir(chain(lif, shape=(2,)))
    snn_torch = chain(leaky(rng, 3, 1e-4), shape=(3,))
    with pytest.raises(ValueError, match="'n0'.*dt"):             # dt of snnTorch not given
        from_nir(snn_torch)
    cyc = branch_graph(rng, 1e-4)
    cyc.edges.append(("out_lif", "a"))
    with pytest.raises(ValueError, match="cycle"):
        from_nir(cyc, dt=1e-4)


# ---- membra -> NIR -> membra ---------------------------------------------------------------
def randomise_bn(net):
    g = torch.Generator().manual_seed(7)
    for m in net.modules():
        if isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d)):
            n = m.num_features
            m.running_mean.copy_(torch.rand(n, generator=g) - 0.5)
            m.running_var.copy_(torch.rand(n, generator=g) + 0.5)
            m.weight.data.copy_(torch.rand(n, generator=g) + 1.0)
            m.bias.data.copy_(torch.rand(n, generator=g) * 0.4)


def neuron_spikes(model, x):
    """Output and the spikes of every spiking layer by name (dots as ``_``, without the zoo's
    ``body`` and GraphNet's ``layers`` prefixes, as to_nir names its nodes)."""
    out, hooks = {}, []
    for name, m in model.named_modules():
        if isinstance(m, SpikingNeuron):
            key = name.replace(".", "_").removeprefix("body_").removeprefix("layers_")
            hooks.append(m.register_forward_hook(
                lambda _m, _i, o, key=key: out.__setitem__(key, o)))
    try:
        with torch.no_grad():
            y = model(x)
    finally:
        for h in hooks:
            h.remove()
    return y, out


def assert_same_spikes(model, back, x):
    """Every neuron of ``model`` fires as its namesake in ``back``; ``back``'s other neurons
    are the max-pool's firing nodes only."""
    y, s = neuron_spikes(model, x)
    y2, s2 = neuron_spikes(back, x)
    assert s and set(s) <= set(s2), (sorted(s), sorted(s2))
    assert all(k.endswith("_fire") for k in set(s2) - set(s))
    assert sum(float(a.mean()) for a in s.values()) > 0
    for k, a in s.items():
        assert torch.equal(a, s2[k]), k
    torch.testing.assert_close(y2, y, atol=1e-5, rtol=1e-5)


ZOO_OPTIONS = {"mlp": dict(hidden=(12, 9)), "cnn": dict(channels=(4, 6), hidden=10),
               "vgg11": dict(widths=(4, 4, 6, 6)),
               "sew_resnet18": dict(widths=(4, 4, 6, 6)),
               "sew_resnet34": dict(widths=(4, 4, 6, 6))}


@pytest.mark.parametrize("neuron", ["lif", "if"])
@pytest.mark.parametrize("name", list_models())
def test_zoo_round_trip(name, neuron, tmp_path):
    torch.manual_seed(0)
    in_shape = (2, 8, 8)
    kw = {"init_potential": "learnable"} if neuron == "lif" else {"init_potential": 0.25}
    model = create_model(name, in_shape=in_shape, num_classes=3, neuron=neuron,
                         neuron_kwargs=kw, **ZOO_OPTIONS.get(name, {}))
    randomise_bn(model)
    model.eval()
    graph = to_nir(model)                                  # in_shape from the zoo model
    back = from_nir(read_nir(write_nir(graph, tmp_path / "m.nir")))
    x = torch.rand(5, 2, *in_shape, generator=torch.Generator().manual_seed(1)) * 3
    assert_same_spikes(model, back.eval(), x)


@pytest.mark.parametrize("stem,static", [("imagenet", False), ("imagenet", True)])
def test_sew_resnet_stems(stem, static):
    torch.manual_seed(1)
    model = create_model("sew_resnet18", in_shape=(1, 64, 64), num_classes=2, neuron="if",
                         widths=(2, 2, 2, 2), stem=stem, static_stem=static)
    randomise_bn(model)
    model.eval()
    graph = to_nir(model)
    assert any(isinstance(n, nir.AvgPool2d) for n in graph.nodes.values())
    edges_into = {}
    for a, b in graph.edges:
        edges_into.setdefault(b, []).append(a)
    assert any(len(v) == 2 for v in edges_into.values())     # residual adds are edge sums
    x = (torch.rand(1, 2, 1, 64, 64) * 3).expand(3, 2, 1, 64, 64)   # static input
    assert_same_spikes(model, from_nir(graph).eval(), x)


def test_sew_and_connect_refused():
    model = create_model("sew_resnet18", in_shape=(1, 8, 8), num_classes=2, widths=(2,) * 4,
                         connect="and")
    with pytest.raises(ValueError, match="mul.*NIR"):
        to_nir(model)


class Branchy(nn.Module):
    """Residual add, channel concat, a max-pool on spikes, a 1-D concat and a skip."""

    def __init__(self, neuron=IF):
        super().__init__()
        self.c1 = TimeDistributed(nn.Conv2d(2, 3, 3, padding=1))
        self.n1 = neuron(shape=(3, 6, 6))
        self.c2 = TimeDistributed(nn.Sequential(nn.Conv2d(3, 3, 3, padding=1),
                                                nn.BatchNorm2d(3)))
        self.n2 = neuron(shape=(3, 6, 6))
        self.c3 = TimeDistributed(nn.Conv2d(6, 4, 1))
        self.n3 = neuron(shape=(4, 6, 6))
        self.pool = TimeDistributed(nn.MaxPool2d(2))
        self.fc1 = nn.Linear(36, 7)
        self.fc2 = nn.Linear(36, 5)
        self.n4 = neuron(shape=(12,))
        self.head = nn.Linear(12, 3)

    def forward(self, x):
        a = self.n1(self.c1(x))
        b = self.n2(self.c2(a)) + a                              # residual
        c = self.n3(self.c3(torch.cat([a, b], dim=2)))            # channel concat
        f = self.pool(c).flatten(2)
        h = self.n4(torch.cat([self.fc1(f), self.fc2(f)], -1))    # 1-D concat
        return self.head(h)


@pytest.mark.parametrize("neuron", [IF, LIF])
@pytest.mark.parametrize("seed", range(3))
def test_branchy_round_trip(seed, neuron, tmp_path):
    torch.manual_seed(seed)
    model = Branchy(neuron)
    randomise_bn(model)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, (nn.Linear, nn.Conv2d)):
                m.weight.mul_(2.5)
    model.eval()
    graph = to_nir(model, in_shape=(2, 6, 6))
    assert not any(k.startswith("c2") and "1" in k for k in graph.nodes)  # BN folded
    pools = [n for n in graph.nodes.values() if isinstance(n, nir.SumPool2d)]
    assert len(pools) == 1 and pools[0].metadata["membra.maxpool"]
    back = from_nir(read_nir(write_nir(graph, tmp_path / "b.nir")))
    x = torch.rand(6, 3, 2, 6, 6, generator=torch.Generator().manual_seed(seed)) * 2
    assert_same_spikes(model, back.eval(), x)
    # the exported graph is plain NIR: the reference loop gives the same output
    y_ref, _ = ref.graph(graph, x.double().numpy(), 1.0)
    torch.testing.assert_close(torch.from_numpy(y_ref).float(), model(x), atol=1e-4,
                               rtol=1e-4)


def test_maxpool_needs_spikes():
    model = nn.Sequential(TimeDistributed(nn.Conv2d(1, 2, 3)), TimeDistributed(nn.MaxPool2d(2)))
    with pytest.raises(ValueError, match="MaxPool.*spikes"):
        to_nir(model, in_shape=(1, 6, 6))


@pytest.mark.parametrize("T", [3, 8])
@pytest.mark.parametrize("net", ["digits_net", "vgg_max", "resnet18"])
def test_converted_snn_exports(net, T):
    from membra.convert import build_net, replace_relu, to_snn

    torch.manual_seed(0)
    if net == "vgg_max":
        from membra.convert.nets import vgg16
        ann = vgg16(in_shape=(3, 32, 32), num_classes=4, pool="max", width=8)
        in_shape = (3, 32, 32)
    else:
        in_shape = (1, 8, 8) if net == "digits_net" else (3, 8, 8)
        kw = {"width": 4} if net == "resnet18" else {}
        ann = build_net(net, in_shape=in_shape, num_classes=4, **kw)
    ann = replace_relu(ann, L=4, lam_init=1.5)
    randomise_bn(ann)
    ann.eval()
    snn = to_snn(ann, mode="naive", T=T, dtype=torch.float64,
                 allow_spike_maxpool=net == "vgg_max")
    graph = to_nir(snn, in_shape=in_shape)
    back = from_nir(graph).double().eval()
    x = torch.rand(2, *in_shape, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    want = snn(x, return_all_steps=True)
    with torch.no_grad():
        y = back(x.unsqueeze(0).expand(T, *x.shape))           # direct encoding
    steps = torch.arange(1, T + 1, dtype=y.dtype).view(-1, 1, 1)
    torch.testing.assert_close(y.cumsum(0) / steps, want, atol=1e-9, rtol=1e-9)
    assert sum(float(c.sum()) for c in snn.counts.values()) > 0


def test_converted_pascal_refused_with_hint():
    from membra.convert import build_net, replace_relu, to_snn

    snn = to_snn(replace_relu(build_net("digits_net", in_shape=(1, 8, 8), num_classes=3)).eval())
    with pytest.raises(ValueError, match="mode='naive'"):
        to_nir(snn, in_shape=(1, 8, 8))


@pytest.mark.skipif(not (HAS_CUBA and HAS_DELAY), reason="needs membra.nn.CubaLIF and Delay")
@pytest.mark.parametrize("dt", [1.0, 0.5])
@pytest.mark.parametrize("seed", range(2))
def test_cuba_lif_and_delay_round_trip(seed, dt, tmp_path):
    torch.manual_seed(seed)
    model = nn.Sequential(
        nn.Linear(5, 8), mnn.CubaLIF(shape=(8,), tau=3.0, tau_syn=2.0, reset="hard",
                                     init_potential="learnable", init_current=0.2),
        mnn.Delay((8,), 3, delays=torch.randint(0, 4, (8,))),
        nn.Linear(8, 4), LIF(shape=(4,), tau=2.0, init_potential=0.3)).eval()
    with torch.no_grad():
        model[0].weight.mul_(3.0)
        model[3].weight.abs_().mul_(2.0)
    graph = to_nir(model, in_shape=(5,), dt=dt)
    assert {type(n).__name__ for n in graph.nodes.values()} >= {"CubaLIF", "Delay", "LIF"}
    back = from_nir(read_nir(write_nir(graph, tmp_path / "c.nir")))
    x = torch.rand(12, 3, 5, generator=torch.Generator().manual_seed(seed)) * 2
    assert_same_spikes(model, back.eval(), x)


@pytest.mark.parametrize("name", ["ALIF", "RLIF"])
def test_neurons_without_nir_node_refused(name):
    if not hasattr(mnn, name):
        pytest.skip(f"needs membra.nn.{name}")
    model = nn.Sequential(nn.Linear(3, 4), getattr(mnn, name)(shape=(4,)))
    with pytest.raises(ValueError, match=f"{name}.*no NIR node"):
        to_nir(model, in_shape=(3,))
