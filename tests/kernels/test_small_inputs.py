"""Inference on small inputs (a control actor's ``[5, 1, 256]``): the cpu backend calls its
inference kernel directly, without the op's Python dispatch, when nothing could observe the
op; the result is bit for bit the op's, and anything that watches ops (a dispatch mode, fake
tensors, the profiler) still sees ``membra::neuron_infer``."""

from __future__ import annotations

import itertools

import pytest
import torch
from kernel_cases import OpLog, fused_backends, spy_direct_calls

from membra.kernels import neuron_sequence

pytestmark = pytest.mark.skipif(not fused_backends("cpu"), reason="cpu kernels not built")

DTYPES = [torch.float32, torch.float64, torch.bfloat16, torch.float16]
SHAPES = [(1, 1, 1), (5, 1, 256), (3, 2, 37), (9, 0, 5), (2, 3, 1023), (7, 2, 3, 5)]


def _case(shape, dtype, seed, v0_kind, tau_kind):
    """Input with exact threshold hits (tau 2 from 0: x = 2 gives h = v_th = 1) and a NaN."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(shape, generator=g) * 1.5 + 0.4
    flat = x.view(shape[0], -1)
    if flat.shape[1]:
        flat[0, : max(1, flat.shape[1] // 5)] = 2.0
        flat[-1, flat.shape[1] // 2] = float("nan")
    v0 = {"none": None, "number": 0.25,
          "tensor": torch.linspace(-0.5, 0.5, flat.shape[1]).reshape(shape[1:]).to(dtype),
          "broadcast": torch.full((1,) * (len(shape) - 1), 0.1, dtype=dtype)}[v0_kind]
    tau = {"pow2": 2.0, "odd": 3.0, "tensor": torch.tensor(2.5)}[tau_kind]
    return x.to(dtype), v0, tau


CASES = list(itertools.product(SHAPES, DTYPES, ["lif", "if"], ["soft", "hard"],
                               [None, torch.bool, torch.uint8]))


@pytest.mark.parametrize("shape,dtype,neuron,reset,spike_dtype", CASES[::3] + CASES[1::7],
                         ids=str)
def test_direct_call_is_bitwise_the_op(monkeypatch, shape, dtype, neuron, reset, spike_dtype):
    i = CASES.index((shape, dtype, neuron, reset, spike_dtype))
    v0_kind = ["none", "number", "tensor", "broadcast"][i % 4]
    tau_kind = ["pow2", "odd", "tensor"][i % 3]
    x, v0, tau = _case(shape, dtype, i, v0_kind, tau_kind)
    kw = dict(neuron=neuron, reset=reset, tau=tau if neuron == "lif" else None,
              v_th=1.0, v_reset=-0.125, backend="cpu", spike_dtype=spike_dtype)
    calls = spy_direct_calls(monkeypatch)
    with torch.no_grad():
        s, v = neuron_sequence(x, v0, **kw)
        assert len(calls) == 1, "no_grad inference on plain tensors calls the kernel directly"
        with OpLog() as log:  # a mode watching ops: the op is dispatched instead
            s_op, v_op = neuron_sequence(x, v0, **kw)
    assert len(calls) == 1 and "membra.neuron_infer.default" in log.names
    assert s.dtype == s_op.dtype == (spike_dtype or dtype) and v.dtype == v_op.dtype == dtype
    assert s.shape == x.shape and v.shape == x.shape[1:]
    torch.testing.assert_close(s, s_op, rtol=0, atol=0, equal_nan=True)
    torch.testing.assert_close(v, v_op, rtol=0, atol=0, equal_nan=True)
    # the kernel keeps a 16-bit input's potential in float32: the float32 reference, rounded
    wide = (lambda t: t.float() if isinstance(t, torch.Tensor) else t) if dtype in (
        torch.bfloat16, torch.float16) else (lambda t: t)
    ref_s, ref_v = (t.to(dtype) for t in neuron_sequence(
        wide(x), wide(v0), **{**kw, "backend": "reference", "spike_dtype": None}))
    want = ref_s.ne(0).to(spike_dtype) if spike_dtype else ref_s
    torch.testing.assert_close(s, want, rtol=0, atol=0, equal_nan=True)
    torch.testing.assert_close(v, ref_v, rtol=0, atol=0, equal_nan=True)


@pytest.mark.parametrize("grad_mode", ["x_requires_grad", "tau_requires_grad", "trace"])
def test_gradients_and_traces_under_a_dispatch_mode_go_through_the_op(monkeypatch, grad_mode):
    """Training and traces call their kernels directly too (``test_direct_calls``); an op
    counter sees the ops instead, and no kernel is called around them."""
    from membra.kernels import lif_sequence, neuron_trace

    calls = spy_direct_calls(monkeypatch)
    x = torch.randn(4, 2, 33)
    tau = torch.tensor(2.0, requires_grad=grad_mode == "tau_requires_grad")
    with OpLog() as log:
        if grad_mode == "trace":
            with torch.no_grad():
                neuron_trace(x, tau=tau, backend="cpu")
        else:
            lif_sequence(x.requires_grad_(grad_mode == "x_requires_grad"), tau=tau,
                         backend="cpu")
    assert calls == [] and "membra.neuron_fwd.default" in log.names


def test_profiler_still_names_the_op(monkeypatch):
    calls = spy_direct_calls(monkeypatch)
    x = torch.randn(5, 1, 256)
    with torch.no_grad(), torch.profiler.profile(activities=[
            torch.profiler.ProfilerActivity.CPU]) as prof:
        neuron_sequence(x, tau=4.0, backend="cpu")
    assert len(calls) == 1
    assert "membra::neuron_infer" in {e.key for e in prof.key_averages()}


def test_fake_tensors_and_export_dispatch_the_op():
    from torch._subclasses.fake_tensor import FakeTensorMode

    with FakeTensorMode() as mode, torch.no_grad():
        x = mode.from_tensor(torch.randn(5, 1, 256))
        s, v = neuron_sequence(x, tau=4.0, backend="cpu", spike_dtype=torch.bool)
    assert s.shape == (5, 1, 256) and s.dtype == torch.bool and v.shape == (1, 256)


def test_jit_trace_records_the_op():
    from membra.kernels import lif_sequence

    def f(x):
        return lif_sequence(x, tau=3.0, backend="cpu")[0]

    with torch.no_grad():
        traced = torch.jit.trace(f, torch.randn(4, 2, 8), check_trace=False)
        y = torch.randn(4, 2, 8) + 1.0  # other values than the traced ones
        assert "membra::neuron_infer" in str(traced.graph)
        torch.testing.assert_close(traced(y), f(y), rtol=0, atol=0)
