"""evaluate_snn simulates each batch once: the per-layer report (spikes, SOPs) comes from the
same run as the accuracy, and still equals membra.energy.sops on that batch."""

import pytest
import torch
from convert_cases import random_cnn, random_mlp, stem_net

from membra.convert import NaiveIF, PascalNeuron, to_snn
from membra.convert.report import evaluate_snn

CASES = [(random_mlp, 0), (random_mlp, 3), (random_cnn, 2), (stem_net, 4), (stem_net, 7)]


def _batches(build, seed, sizes):
    model, x = build(seed)
    g = torch.Generator().manual_seed(seed)
    xs = [x[torch.randint(len(x), (n,), generator=g)] for n in sizes]
    return model, [(b, torch.randint(model(b[:1]).shape[-1], (len(b),), generator=g))
                   for b in xs]


@pytest.mark.parametrize("sizes", [(5,), (3, 1, 4)], ids=["one", "three"])
@pytest.mark.parametrize("mode", ["pascal", "naive"])
@pytest.mark.parametrize("build,seed", CASES, ids=[f"{b.__name__}-{s}" for b, s in CASES])
def test_one_simulation_per_batch(build, seed, mode, sizes, monkeypatch):
    model, batches = _batches(build, seed, sizes)
    calls: dict[int, int] = {}
    for cls in (PascalNeuron, NaiveIF):
        def counted(self, currents, _f=cls.forward):
            calls[id(self)] = calls.get(id(self), 0) + 1
            return _f(self, currents)
        monkeypatch.setattr(cls, "forward", counted)
    T = 6 if mode == "naive" else None
    res = evaluate_snn(model, batches, mode, T=T, allow_spike_maxpool=True) if mode == "naive" \
        else evaluate_snn(model, batches, mode)
    assert calls and set(calls.values()) == {len(batches)}   # each neuron: once per batch
    # the report's SOPs: membra.energy.sops on each batch, weighted by its size
    n, sops, spikes = sum(len(y) for _, y in batches), 0.0, 0.0
    kw = {"T": T, "allow_spike_maxpool": True} if mode == "naive" else {}
    for x, y in batches:
        snn = to_snn(model, mode, **kw)
        sops += snn.sops(x).total_sops * len(y)
        snn(x)
        spikes += sum(float(c.sum()) for c in snn.counts.values())
    assert res["report"]["sops"] == pytest.approx(sops / n, rel=1e-9)
    assert res["report"]["spikes"] == pytest.approx(spikes / n, rel=1e-9)
