"""The cpu kernels' ``[M]`` outputs (the final potential ``v_T`` and the gradient of ``v0``)
of a large layer come from the output pool like the ``[T, M]`` ones: already mapped memory in
a plain script, no page faults per call. Pool blocks are 2 MiB aligned; ``torch.empty`` of
that size is not (glibc puts a header before an mmap'd block). Values are unchanged."""

from __future__ import annotations

import pytest
import torch
from kernel_cases import fused_backends

from membra.kernels import cpu, lif_sequence, neuron_sequence

pytestmark = pytest.mark.skipif(not fused_backends("cpu"), reason="cpu kernels not built")

HUGE = 1 << 21


def _pooled(t: torch.Tensor) -> bool:
    return t.data_ptr() % HUGE == 0


@pytest.fixture(autouse=True)
def _pool_on(monkeypatch):
    monkeypatch.setattr(cpu, "_POOL_MIN_BYTES", 1 << 20)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=str)
@pytest.mark.parametrize("neuron,reset", [("lif", "soft"), ("if", "hard"), ("lif", "hard")])
@pytest.mark.parametrize("path", ["grad", "no_grad", "no_grad_bool"])
def test_final_potential_and_its_gradient_are_pool_memory(dtype, neuron, reset, path):
    m = (1 << 20) // dtype.itemsize + 7  # just over the pool's 1 MiB, not a round size
    g = torch.Generator().manual_seed(m % 97)
    x = (torch.randn(2, 1, m, generator=g) + 0.6).to(dtype)
    v0 = (torch.rand(1, m, generator=g) * 0.5).to(dtype)
    kw = dict(neuron=neuron, reset=reset, backend="cpu")
    want_s, want_v = neuron_sequence(x, v0, **{**kw, "backend": "reference"})
    if path == "grad":
        xg, vg = x.clone().requires_grad_(True), v0.clone().requires_grad_(True)
        s, v = neuron_sequence(xg, vg, **kw)
        gs, gv = torch.randn(s.shape, generator=g, dtype=dtype), torch.ones_like(v)
        _, gv0 = torch.autograd.grad([s, v], [xg, vg], [gs, gv])
        # the op's own gradient of v0 (before autograd reshapes it to v0's shape)
        ops_gv0 = torch.ops.membra.neuron_bwd(
            gs.reshape(2, m), gv.reshape(m), x.reshape(2, m), x.new_empty(0), v0.reshape(m),
            torch.tensor(2.0 if neuron == "lif" else 1.0, dtype=dtype), None, None, None,
            0 if neuron == "lif" else 1, reset == "soft", 1.0, 0.0, 0, 4.0, True, False)[1]
        assert _pooled(ops_gv0)
        torch.testing.assert_close(ops_gv0.reshape(gv0.shape), gv0, rtol=0, atol=0)
    else:
        with torch.no_grad():
            s, v = neuron_sequence(x, v0, spike_dtype=torch.bool if path.endswith("bool")
                                   else None, **kw)
    assert _pooled(v) and v.shape == (1, m) and v.dtype == dtype
    torch.testing.assert_close(v, want_v, rtol=0, atol=0)
    assert torch.equal(s.to(dtype), want_s)


def test_small_states_stay_ordinary_tensors():
    x = torch.randn(3, 2, 300)
    with torch.no_grad():
        s, v = lif_sequence(x, backend="cpu")
    assert v.shape == (2, 300) and v.is_contiguous()
    v.add_(1.0)  # an ordinary, writable tensor


@pytest.mark.parametrize("v0_kind", ["none", "scalar", "scalar_learnable", "channel_learnable"])
@pytest.mark.parametrize("grad", [False, True])
@pytest.mark.parametrize("large", [True, False], ids=["large", "small"])
def test_a_broadcast_initial_potential_is_copied_into_the_pool(monkeypatch, v0_kind, grad,
                                                               large):
    from membra.kernels import fused
    from membra.kernels._prep import STATE_POOL_MIN

    per_sample = (4, STATE_POOL_MIN // 4 + 3) if large else (5, 37)  # just over / far under
    calls = []
    new = fused.NEW_OUTPUT["cpu"]

    def spy(shape, dtype):
        calls.append(tuple(shape))
        return new(shape, dtype)

    monkeypatch.setitem(fused.NEW_OUTPUT, "cpu", spy)
    g = torch.Generator().manual_seed(len(v0_kind) + grad)
    x = torch.randn(2, 2, *per_sample, generator=g) + 0.5
    learn = v0_kind.endswith("learnable")
    v0 = {"none": None, "scalar": 0.3, "scalar_learnable": torch.tensor(0.3),
          "channel_learnable": torch.linspace(-0.2, 0.4, per_sample[0]).reshape(-1, 1)}[v0_kind]
    got, want = [], []
    for backend, out in (("cpu", got), ("reference", want)):
        xb = x.clone().requires_grad_(grad)
        vb = v0.clone().requires_grad_(True) if learn else v0
        s, v = lif_sequence(xb, vb, backend=backend)
        out += [s, v]
        if grad or learn:
            leaves = [t for t in (xb, vb) if isinstance(t, torch.Tensor) and t.requires_grad]
            out += torch.autograd.grad((s * 1.5).sum() + v.sum(), leaves)
    # the copy of v0 for all B samples came from the pool allocator, for a large layer only
    assert ((2, *per_sample) in calls) == large
    for a, b in zip(got, want, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-6, atol=1e-4)


def _custom(u):
    return torch.atan(3.0 * u)


@pytest.mark.parametrize("model", ["cuba_lif", "alif", "rlif"])
@pytest.mark.parametrize("sg,trace", [("sigmoid", False), ("custom", False), ("atan", True)])
def test_model_layers_outputs_and_gradients_are_pool_memory(model, sg, trace):
    """CubaLIF / ALIF (their C++ ops) and RLIF (its one-node sequence) write their ``[T, M]``
    spikes, saved / traced potentials and ``grad_x`` into pool memory, as LIF does: a fresh
    ``torch.empty`` of a large layer faults in every page on each call. Their values are the
    reference's (spikes exactly)."""
    from membra.kernels.models import alif_sequence, cuba_lif_sequence, rlif_sequence

    n = 1 << 18 if model != "rlif" else 1 << 9   # [T, B, n]: over the 1 MiB pool threshold
    B = 1 if model != "rlif" else 1 << 10
    g = torch.Generator().manual_seed(n + len(sg))
    x = torch.randn(3, B, n, generator=g) + 0.6
    surrogate = _custom if sg == "custom" else sg
    if model == "rlif":
        w = torch.randn(n, n, generator=g) * 0.02

        def run(x, backend):
            return rlif_sequence(x, w, backend=backend, surrogate=surrogate, trace=trace)
    else:
        fn = cuba_lif_sequence if model == "cuba_lif" else alif_sequence

        def run(x, backend):
            return fn(x, backend=backend, surrogate=surrogate, trace=trace)

    xg = x.clone().requires_grad_(True)
    out, _ = run(xg, "cpu")
    spikes = out.spikes if trace else out
    tensors = [spikes] + ([out.v, out.h] if trace else [])
    (spikes.sum() + sum(t.sum() for t in tensors[1:])).backward()
    assert all(_pooled(t) for t in tensors), [t.data_ptr() % HUGE for t in tensors]
    assert _pooled(xg.grad)
    ref, _ = run(x, "reference")
    torch.testing.assert_close(spikes, ref.spikes if trace else ref, rtol=0, atol=0)
