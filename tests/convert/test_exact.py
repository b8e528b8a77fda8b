"""PASCAL equals the QCFS ANN: spike counts, logits and predictions on random nets."""

import pytest
import torch
from convert_cases import qcfs_counts, random_cnn, random_mlp

import membra.convert.neurons as neurons_module
from membra.convert import QCFS, fold_bn, to_snn

SEEDS = range(20)
VARIANTS = [("two_phase", "split"), ("two_phase", "first"), ("signed", "split"),
            ("signed", "first")]


def ann_counts(model, x):
    """Count of every QCFS layer of the folded ANN (float64), keyed by path."""
    return qcfs_counts(fold_bn(model).double(), x.double())


@pytest.mark.parametrize("build", [random_mlp, random_cnn], ids=["mlp", "cnn"])
@pytest.mark.parametrize("seed", SEEDS)
def test_pascal_counts_and_logits_equal_the_ann(build, seed):
    model, x = build(seed)
    ref, counts = ann_counts(model, x)
    assert sum(int(c.sum()) for c in counts.values()) > 0  # the net does spike
    for neuron, bias in VARIANTS:
        snn = to_snn(model, "pascal", neuron=neuron, bias=bias, dtype=torch.float64)
        out = snn(x.double())
        assert set(snn.counts) == set(counts)
        mismatches = sum(int((snn.counts[p] != counts[p]).sum()) for p in counts)
        assert mismatches == 0, (neuron, bias)
        torch.testing.assert_close(out, ref, rtol=0, atol=1e-12)
    # float32: logits to 1e-5, same predictions (one bias mode per neuron)
    with torch.no_grad():
        ann32 = model(x)
    for neuron, bias in VARIANTS[::3]:
        out32 = to_snn(model, "pascal", neuron=neuron, bias=bias)(x)
        torch.testing.assert_close(out32, ann32, rtol=0, atol=1e-5)
        assert torch.equal(out32.argmax(-1), ann32.argmax(-1))


@pytest.mark.parametrize("build", [random_mlp, random_cnn], ids=["mlp", "cnn"])
@pytest.mark.parametrize("seed", SEEDS)
def test_count_mode_is_bitwise_the_folded_ann(build, seed):
    model, x = build(seed)
    snn = to_snn(model, "pascal", simulate="counts")
    with torch.no_grad():
        assert torch.equal(snn(x), fold_bn(model)(x))
    # and the counts agree with the temporal simulation
    temporal = to_snn(model, "pascal", dtype=torch.float64)
    temporal(x.double())
    for p, c in snn.counts.items():
        assert torch.equal(c.double(), temporal.counts[p])


def test_time_steps_are_one_plus_sum_of_L_on_the_longest_path():
    model, x = random_cnn(3)
    snn = to_snn(model, "pascal")
    snn(x)
    L = {p: m.L for p, m in model.named_modules() if type(m).__name__ == "QCFS"}
    # the conv shortcut of block 2 skips one QCFS: the longest path holds every layer but none
    assert snn.time_steps == 1 + sum(L.values())
    starts = sorted(snn.windows.values())
    for (_, e0), (s1, _) in zip(starts, starts[1:], strict=False):
        assert s1 >= e0  # a layer fires only after its inputs' windows closed
    signed = to_snn(model, "pascal", neuron="signed")
    signed(x)
    assert signed.time_steps > snn.time_steps  # correction steps
    # on a chain, the signed neuron adds max(L_in, L) - 1 correction steps per layer
    mlp, xm = random_mlp(4)
    levels = [m.L for m in mlp.modules() if isinstance(m, QCFS)]
    signed = to_snn(mlp, "pascal", neuron="signed")
    signed(xm)
    extra = sum(max(a, b) - 1 for a, b in zip([1] + levels, levels, strict=False))
    assert signed.time_steps == 1 + sum(levels) + extra


def test_report_counts_spikes_and_synaptic_operations():
    model, x = random_mlp(1)
    snn = to_snn(model, "pascal", dtype=torch.float64)
    snn(x.double())
    rep = snn.report()
    rows = {r["layer"]: r for r in rep.rows}
    paths = [p for p, m in model.named_modules() if type(m).__name__ == "QCFS"]
    # spikes per sample are the counts; the next Linear does fan_out SOPs per spike
    for p in paths:
        assert rows[p]["spikes"] == pytest.approx(float(snn.counts[p].sum()) / len(x))
    nxt = {"2": "4", "6": "7", "8": "9"}
    for p, w in nxt.items():
        fan_out = model[int(w)].out_features
        assert rows[w]["sops"] == pytest.approx(rows[p]["spikes"] * fan_out)
    assert rows["0"]["macs"] == 12 * model[0].out_features  # analog input: MACs
    assert rep.ann_macs == sum(m.in_features * m.out_features for m in model
                               if isinstance(m, torch.nn.Linear))
    assert rep.energy_j == pytest.approx(4.6e-12 * rep.macs + 0.9e-12 * rep.sops)
    assert "time steps" in rep.to_markdown()


@pytest.mark.parametrize("mode,kw", [("pascal", {}), ("pascal", {"neuron": "signed"}),
                                     ("naive", {"T": 4, "allow_spike_maxpool": True})])
def test_temporal_mode_runs_if_neurons_of_membra_kernels(monkeypatch, mode, kw):
    """Every QCFS layer is simulated by one membra.kernels.if_sequence call over time."""
    calls = []

    def spy(x, *args, **kwargs):
        calls.append(tuple(x.shape))
        return real(x, *args, **kwargs)

    real = neurons_module.if_sequence
    monkeypatch.setattr(neurons_module, "if_sequence", spy)
    model, x = random_cnn(2)
    snn = to_snn(model, mode, **kw)
    snn(x)
    levels = [m.L for m in model.modules() if isinstance(m, QCFS)]
    assert len(calls) == len(levels)
    if mode == "naive":
        assert all(c[:2] == (4, len(x)) for c in calls)
    elif "neuron" not in kw:  # two-phase: the emission phase runs L steps
        assert [c[0] for c in calls] == levels
