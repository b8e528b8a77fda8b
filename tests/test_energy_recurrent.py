"""``sops`` counts an RLIF layer's recurrent synapses: every spike of step t reaches the
layer's n neurons at step t + 1 through ``W`` (n accumulates), the last step's spikes reach
nothing inside the sequence."""

from __future__ import annotations

import random

import pytest
import torch

from membra.energy import sops
from membra.models import create_model
from membra.nn import RLIF, record


def _cases(n: int = 6, seed: int = 17):
    rng = random.Random(seed)
    return [(tuple(rng.choice([3, 7, 12, 33]) for _ in range(rng.randint(1, 3))),
             rng.choice([1, 2, 5, 16]), rng.choice([1, 3, 8])) for _ in range(n)]


@pytest.mark.parametrize("widths,T,B", _cases())
def test_recurrent_sops_are_counted_per_spike(widths, T, B):
    torch.manual_seed(T * B + len(widths))
    net = create_model("mlp", in_shape=(6,), num_classes=4, neuron="rlif",
                       neuron_kwargs={"init_potential": "learnable"}, hidden=widths).eval()
    x = 8 * torch.rand(T, B, 6)
    rep = sops(net, x)
    with torch.no_grad():
        traces = record(net, x)
    rows = {r.name: r for r in rep.layers}
    feed = sops(create_model("mlp", in_shape=(6,), num_classes=4, hidden=widths).eval(), x)
    assert len(rows) == len(feed.layers) + len(widths)
    for name, m in net.named_modules():
        if not isinstance(m, RLIF):
            continue
        s = traces[name].spikes
        n = m.weight.shape[0]
        # plain loop: the nonzero products of W s_{t-1}, for t = 2..T, per sample
        expect = sum(int((s[t - 1] != 0).sum()) * n for t in range(1, T)) / B
        row = rows[f"{name}.weight"]
        assert row.kind == "RLIF (recurrent)" and row.input == "spikes"
        assert row.sops == pytest.approx(expect)
        assert row.spikes == pytest.approx(float(s[:-1].sum()) / B)
        assert row.macs == 0 and row.ann_macs == n * n
    assert rep.total_sops == pytest.approx(sum(r.sops for r in rep.layers))
    recurrent = sum(r.sops for r in rep.layers if r.kind == "RLIF (recurrent)")
    assert (recurrent > 0) == (T > 1)
