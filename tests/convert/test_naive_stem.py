"""Naive conversion runs the static stem (the ops before the first QCFS, fed by the input
alone) once per sample, and its spikes stay bit-identical to a per-step loop."""

import pytest
import torch
from convert_cases import random_cnn, random_mlp, stem_net

from membra.convert import to_snn

SEEDS = range(12)


def _stem_weights(snn):
    """The Conv/Linear modules of the folded net fed by the input alone (no QCFS before)."""
    static, mods = set(), []
    for i, op in enumerate(snn.ops):
        if op.kind == "input" or (op.kind not in ("qcfs", "output")
                                  and all(j in static for j in op.inputs)):
            static.add(i)
            if op.kind == "weight":
                mods.append(op.module)
    return mods


def _items(module, x):
    """Samples in one call: vectors of a Linear input, the batch of a Conv input."""
    return x.numel() // module.in_features if isinstance(module, torch.nn.Linear) else x.shape[0]


@pytest.mark.parametrize("T", [2, 5, 33])
@pytest.mark.parametrize("seed", SEEDS)
def test_static_stem_runs_once_per_sample(seed, T):
    model, x = stem_net(seed)
    snn = to_snn(model, "naive", T=T)
    mods = _stem_weights(snn)
    assert mods, "every stem net starts with a Conv/Linear on the input"
    seen = []
    hooks = [m.register_forward_hook(lambda m, a, o: seen.append(_items(m, a[0])))
             for m in mods]
    try:
        snn(x)
    finally:
        for h in hooks:
            h.remove()
    assert seen == [len(x)] * len(mods)      # one pass over B samples, not T * B


def _per_step_reference(snn, x, T):
    """A plain loop over steps: at each step the folded ANN's ops on ``x``, every QCFS an IF
    neuron (threshold lam, v(0) = lam/2, soft reset) with its own membrane; returns the spike
    counts per call site and the mean of the logits over the T steps."""
    v, counts, total = {}, {}, 0
    for _ in range(T):
        env = {}
        for i, op in enumerate(snn.ops):
            a = [env[j] for j in op.inputs]
            if op.kind == "input":
                env[i] = x
            elif op.kind == "output":
                total = total + a[0]
            elif op.kind == "add":
                env[i] = a[0] + a[1]
            elif op.kind == "cat":
                env[i] = torch.cat(a, op.fn)
            elif op.kind == "qcfs":
                lam = op.module.lam
                u = v.get(i, torch.full_like(a[0], float(lam) / 2)) + a[0]
                s = (u >= lam).to(u.dtype)
                v[i] = u - s * lam
                counts[op.path] = counts.get(op.path, 0) + s
                env[i] = s * lam
            else:
                env[i] = op.module(a[0])
    return counts, total / T


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("T", [1, 7, 32])
@pytest.mark.parametrize("build,seed", [(stem_net, s) for s in SEEDS] +
                         [(random_mlp, 0), (random_cnn, 1)])
def test_static_stem_spikes_equal_per_step_loop(build, seed, T, dtype):
    model, x = build(seed)
    x = x.to(dtype)
    snn = to_snn(model, "naive", T=T, dtype=dtype, allow_spike_maxpool=True)
    out = snn(x)
    with torch.no_grad():
        counts, mean = _per_step_reference(snn, x, T)
    assert set(counts) == set(snn.counts)
    for site, c in counts.items():
        assert torch.equal(snn.counts[site], c), site
    torch.testing.assert_close(out, mean, rtol=1e-5 if dtype == torch.float32 else 1e-12,
                               atol=1e-6 if dtype == torch.float32 else 1e-12)
