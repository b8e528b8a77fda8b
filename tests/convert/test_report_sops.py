"""The conversion report is per call site and agrees with membra.energy.sops on the same SNN;
its SOPs equal an independent count from the ANN's spike counts (all-ones weights on the
count map, average pools as sum pools)."""

import pytest
import torch
import torch.nn.functional as F
from convert_cases import qcfs_counts, tie_cnn
from fx_cases import random_dag, resnet18, unet
from test_fx import Shared

import membra.energy
from membra.convert import StaticInput, fold_bn, to_snn
from membra.energy import ones_op

CASES = [(random_dag, s) for s in range(10)] + [(unet, 0), (resnet18, 0), (tie_cnn, 0),
                                                 (tie_cnn, 1)]
IDS = [f"{b.__name__}-{s}" for b, s in CASES]


@pytest.mark.parametrize("build,seed", CASES, ids=IDS)
@pytest.mark.parametrize("mode", ["pascal", "naive"])
def test_report_agrees_with_energy_sops(build, seed, mode):
    model, x = build(seed)
    kw = {"T": 6, "allow_spike_maxpool": True} if mode == "naive" else {}
    snn = to_snn(model, mode, dtype=torch.float64, **kw)
    snn(x.double())
    rep = snn.report()
    ref = membra.energy.sops(StaticInput(snn), snn.static_input(x.double()),
                             first_layer_macs=True)
    rows = {r["layer"]: r for r in rep.rows if r["kind"] != "neuron"}
    layers = {r.name.removeprefix("snn.net."): r for r in ref.layers}
    assert set(rows) == set(layers)
    for name, r in layers.items():
        assert rows[name].get("sops", 0.0) == pytest.approx(r.sops, rel=1e-12), name
        assert rows[name].get("macs", 0.0) == pytest.approx(r.macs, rel=1e-12), name
    assert rep.sops == pytest.approx(ref.total_sops) and rep.macs == pytest.approx(ref.total_macs)
    assert rep.energy_j == pytest.approx(ref.energy_j)
    assert rep.sops > 0
    # neuron rows: one per call site, the spikes of that site
    neurons = {r["layer"]: r for r in rep.rows if r["kind"] == "neuron"}
    assert set(neurons) == set(snn.counts)
    for site, c in snn.counts.items():
        assert neurons[site]["spikes"] == pytest.approx(float(c.sum()) / len(x))


def _event_reference(snn, counts):
    """SOPs per weight call site from the folded ANN's counts: each weight op applied with
    all-ones weights to its input's event map (spike counts of a QCFS, copied by reshapes,
    concatenation and nearest upsampling, summed by average pools, selected by max pools);
    analog input (the image) costs no SOPs."""
    ev, sop = {}, {}
    for i, op in enumerate(snn.ops):
        src = [ev.get(j) for j in op.inputs]
        if op.kind == "qcfs":
            ev[i] = counts[op.path]
        elif op.kind == "weight":
            if src[0] is not None:
                sop[op.path] = float(ones_op(op.module, src[0]).sum()) / src[0].shape[0]
        elif op.kind == "cat" and all(s is not None for s in src):
            ev[i] = torch.cat(src, op.fn)
        elif op.kind in ("linear", "maxpool") and src[0] is not None:
            m = op.module
            if isinstance(m, torch.nn.AvgPool2d):
                ev[i] = F.avg_pool2d(src[0], m.kernel_size, m.stride, m.padding, m.ceil_mode,
                                     True, 1)
            elif isinstance(m, torch.nn.AdaptiveAvgPool2d):
                ev[i] = _bin_sums(src[0], m)
            else:
                ev[i] = m(src[0])
    return sop


def _bin_sums(x, m):
    """Adaptive average pooling as sums over PyTorch's bins ``[floor(i n/k), ceil((i+1) n/k))``,
    by a plain loop."""
    k = m.output_size if isinstance(m.output_size, tuple) else (m.output_size,) * 2
    H, W = x.shape[-2:]
    out = x.new_zeros(*x.shape[:-2], *k)
    for i in range(k[0]):
        for j in range(k[1]):
            rows = slice(i * H // k[0], -(-(i + 1) * H // k[0]))
            cols = slice(j * W // k[1], -(-(j + 1) * W // k[1]))
            out[..., i, j] = x[..., rows, cols].sum((-2, -1))
    return out


@pytest.mark.parametrize("build,seed", [(random_dag, s) for s in range(10)] + [(tie_cnn, 2),
                                                                               (Shared, 0)],
                         ids=[f"dag-{s}" for s in range(10)] + ["tie_cnn-2", "shared"])
def test_pascal_sops_equal_the_ann_count_reference(build, seed):
    if build is Shared:
        torch.manual_seed(seed)
        model, x = Shared().eval(), 2 * torch.rand(8, 6)
    else:
        model, x = build(seed)
    _, counts = qcfs_counts(fold_bn(model).double(), x.double())
    snn = to_snn(model, "pascal", dtype=torch.float64)
    snn(x.double())
    rows = {r["layer"]: r for r in snn.report().rows}
    ref = _event_reference(snn, counts)
    assert ref
    for name, s in ref.items():
        assert rows[name]["sops"] == pytest.approx(s, rel=1e-12), name
