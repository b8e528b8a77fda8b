"""torch.fx conversion of the models users bring: one module at several call sites, functional
ops, residual ``+``, ``torch.cat``, nearest upsampling, reshapes; PASCAL exact on a
torchvision-style ResNet-18, a U-Net-like net and random DAGs; naive mode on the same graphs
against a plain per-step loop; errors that name the node and its source line."""

import copy
import re
import types

import pytest
import torch
import torch.nn.functional as F
from convert_cases import exact_ties, qcfs_counts
from fx_cases import TVResNet18, random_dag, resnet18, unet
from torch import nn

from membra.convert import QCFS, UnsupportedLayerError, fold_bn, to_snn

FAMILIES = [(resnet18, s) for s in range(2)] + [(unet, s) for s in range(4)] + \
    [(random_dag, s) for s in range(16)]
IDS = [f"{b.__name__}-{s}" for b, s in FAMILIES]


class Shared(nn.Module):
    """One QCFS module called at two places (the issue's torchvision pattern)."""

    def __init__(self, L=4, lam=2.0):
        super().__init__()
        self.fc1, self.fc2, self.fc3 = nn.Linear(6, 16), nn.Linear(16, 16), nn.Linear(16, 3)
        self.act = QCFS(L, lam)

    def forward(self, x):
        return self.fc3(self.act(self.fc2(self.act(self.fc1(x)))))


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("mode", ["pascal", "naive"])
def test_a_module_called_twice_is_two_spiking_layers(seed, mode):
    torch.manual_seed(seed)
    net = Shared().eval()
    x = torch.rand(8, 6) * 2
    _, counts = qcfs_counts(net.double(), x.double())
    assert set(counts) == {"act@1", "act@2"}
    assert not torch.equal(counts["act@1"].sum(), counts["act@2"].sum()) or seed  # differ
    snn = to_snn(net, mode, dtype=torch.float64, **({"T": 4} if mode == "naive" else {}))
    snn(x.double())
    assert set(snn.counts) == {"act@1", "act@2"}
    layers = [op.neuron for op in snn.ops if op.kind == "qcfs"]
    assert len(layers) == 2 and layers[0] is not layers[1]   # own lambda, L, state
    rows = {r["layer"]: r for r in snn.report().rows}
    for site in ("act@1", "act@2"):
        assert rows[site]["spikes"] == pytest.approx(float(snn.counts[site].sum()) / len(x))
        if mode == "pascal":  # the first call reports its own spikes, not the second's
            assert torch.equal(snn.counts[site], counts[site])
            assert rows[site]["spikes"] == pytest.approx(float(counts[site].sum()) / len(x))
    if mode == "pascal":
        w1, w2 = snn.windows["act@1"], snn.windows["act@2"]
        assert w1 == (1, 5) and w2 == (5, 9) and snn.time_steps == 9


def test_each_call_site_keeps_its_own_level_after_conversion():
    net = Shared(L=4).eval()
    snn = to_snn(net, "pascal", dtype=torch.float64)
    first, second = (op.neuron for op in snn.ops if op.kind == "qcfs")
    second.L = 2                                            # one site changed alone
    snn(torch.rand(3, 6).double())
    assert first.L == 4 and snn.windows["act@2"] == (5, 7)
    assert net.act.L == 4                                  # the ANN untouched


def _ann(model, x):
    """Folded ANN in float64: logits and counts per call site."""
    return qcfs_counts(fold_bn(model).double(), x.double())


@pytest.mark.parametrize("build,seed", FAMILIES, ids=IDS)
def test_pascal_is_exact_on_user_model_families(build, seed):
    model, x = build(seed)
    ref, counts = _ann(model, x)
    _, raw = qcfs_counts(copy.deepcopy(model).double(), x.double())  # unfolded: exact BN
    assert set(raw) == set(counts) and all(torch.equal(raw[p], counts[p]) for p in raw)
    assert sum(int(c.sum()) for c in counts.values()) > 0
    variants = [("two_phase", "split"), ("signed", "first")]
    if seed % 2:
        variants = [("two_phase", "first"), ("signed", "split")]
    for neuron, bias in variants:
        snn = to_snn(model, "pascal", neuron=neuron, bias=bias, dtype=torch.float64,
                     example_input=x.double())
        out = snn(x.double())
        assert set(snn.counts) == set(counts)
        mismatches = sum(int((snn.counts[p] != counts[p]).sum()) for p in counts)
        assert mismatches == 0, (neuron, bias)
        torch.testing.assert_close(out, ref, rtol=0, atol=1e-12)
    count_mode = to_snn(model, "pascal", simulate="counts", dtype=torch.float64)
    assert torch.equal(count_mode(x.double()), ref)


def test_the_families_put_pre_activations_exactly_on_level_boundaries():
    ties = sum(exact_ties(*build(seed)) for build, seed in FAMILIES)
    assert ties > 50


def test_resnet18_has_one_spiking_layer_per_call_site():
    model, x = resnet18(0)
    snn = to_snn(model, "pascal", dtype=torch.float64)
    snn(x.double())
    sites = sorted(snn.counts)
    assert len(sites) == 17                              # stem + 2 per basic block
    assert "layer1.0.relu@1" in sites and "layer4.1.relu@2" in sites and "relu" in sites
    assert sum(isinstance(m, QCFS) for m in model.modules()) == 9   # 9 module objects


class StepIF(nn.Module):
    """Reference IF layer for a plain per-step loop: ``v += z; s = [v >= lam]; v -= lam s``
    from ``v = lam / 2``, state kept across calls."""

    def __init__(self, lam):
        super().__init__()
        self.lam, self.v, self.count = lam, None, 0

    def forward(self, z):
        if self.v is None:
            self.v = torch.full_like(z, self.lam / 2)
        self.v = self.v + z
        s = (self.v >= self.lam).to(z.dtype)
        self.v = self.v - self.lam * s
        self.count = self.count + s
        return s * self.lam


def naive_loop(model, x, T):
    """Naive conversion as a plain loop: the folded ANN run ``T`` times with every QCFS call
    site an :class:`StepIF`; returns (mean logits, counts per call site)."""
    gm = fold_bn(model).double()
    sites = {}
    for path, m in list(gm.named_modules()):
        if isinstance(m, QCFS):
            sites[path] = StepIF(float(m.lam.detach()))
            parent, _, name = path.rpartition(".")
            setattr(gm.get_submodule(parent) if parent else gm, name, sites[path])
    with torch.no_grad():
        out = sum(gm(x.double()) for _ in range(T)) / T
    return out, {p: m.count for p, m in sites.items()}


@pytest.mark.parametrize("build,seed", FAMILIES[::2], ids=IDS[::2])
def test_naive_mode_equals_a_plain_per_step_loop_on_the_same_graphs(build, seed):
    model, x = build(seed)
    T = 5 + seed % 4
    snn = to_snn(model, "naive", T=T, dtype=torch.float64, allow_spike_maxpool=True)
    out = snn(x.double())
    ref, counts = naive_loop(model, x, T)
    _, ann = _ann(model, x)
    assert set(snn.counts) == set(counts) == set(ann)
    for p in counts:
        assert torch.equal(snn.counts[p], counts[p]), p
    torch.testing.assert_close(out, ref, rtol=0, atol=1e-10)


def _refusal(forward):
    """A conv net whose forward is ``forward`` (renamed so that torch.fx, which records the
    source lines of ``forward`` frames, sees it as one)."""
    forward = types.FunctionType(forward.__code__.replace(co_name="forward"),
                                 forward.__globals__, "forward", None, forward.__closure__)

    class M(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(2, 4, 3, padding=1)
            self.act = QCFS(2, 1.0)
            self.fc = nn.Linear(4 * 16, 3)

    M.forward = forward
    return M().eval()


@pytest.mark.parametrize("forward,kind,hint", [
    (lambda s, x: s.fc(torch.sigmoid(s.act(s.conv(x))).flatten(1)), "function sigmoid",
     "supported-layer table"),
    (lambda s, x: s.fc(F.relu(s.conv(x)).flatten(1)), "function relu", "quantize_relu"),
    (lambda s, x: s.fc(s.act(s.conv(x)).relu().flatten(1)), r"method \.relu\(\)",
     "quantize_relu"),
    (lambda s, x: s.fc(F.interpolate(s.act(s.conv(x)), scale_factor=1.0, mode="bilinear")
                       .flatten(1)), r"Upsample\(mode='bilinear'\)", "nearest"),
    (lambda s, x: s.fc(torch.cat([s.act(s.conv(x))] * 2, 0).flatten(1)), "torch.cat",
     "never the batch"),
    (lambda s, x: s.fc(s.act(s.conv(x)).view(-1)), "view", "keep the batch"),
    (lambda s, x: s.fc(s.act(s.conv(x) + 1.0).flatten(1)), "function add",
     "sum of two tensors"),
    (lambda s, x: s.fc((s.act(s.conv(x)) * s.act(s.conv(x))).flatten(1)), "function mul",
     "supported-layer table"),
], ids=["sigmoid", "F.relu", "method-relu", "bilinear", "cat-batch", "view-flat", "add-const",
        "product"])
def test_unsupported_nodes_are_named_with_their_source_line(forward, kind, hint):
    with pytest.raises(UnsupportedLayerError) as err:
        to_snn(_refusal(forward))
    msg = str(err.value)
    assert f"test_fx.py:{forward.__code__.co_firstlineno}" in msg, msg   # the user's line
    assert re.search(kind, msg), msg
    assert hint in msg


@pytest.mark.parametrize("reshape", [
    lambda h: h.view(h.size(0), -1), lambda h: h.reshape(h.shape[0], -1),
    lambda h: h.view(-1, 64), lambda h: torch.flatten(h, 1), lambda h: h.flatten(1),
    lambda h: torch.reshape(h, (h.size(0), 64)),
], ids=["view-size", "reshape-shape", "view-minus-one", "torch.flatten", "flatten", "reshape"])
def test_batch_keeping_reshapes_convert_exactly(reshape):
    net = _refusal(lambda s, x: s.fc(reshape(s.act(s.conv(x)))))
    g = torch.Generator().manual_seed(0)
    x = torch.rand(5, 2, 4, 4, generator=g)
    ref, counts = _ann(net, x)
    snn = to_snn(net, "pascal", dtype=torch.float64)
    torch.testing.assert_close(snn(x.double()), ref, rtol=0, atol=1e-12)
    assert torch.equal(snn.counts["act"], counts["act"])


def test_example_input_that_does_not_fit_is_refused_at_conversion():
    model, x = unet(0)
    with pytest.raises(ValueError, match=r"example_input of shape \(3, 2, 6, 6\)"):
        to_snn(model, "pascal", example_input=x[:, :, :6, :6])


def test_untrained_torchvision_resnet_with_relu_points_to_quantize_relu():
    net = TVResNet18(nn.ReLU).eval()
    with pytest.raises(UnsupportedLayerError, match=r"'relu' \(ReLU\).*quantize_relu"):
        to_snn(net)
