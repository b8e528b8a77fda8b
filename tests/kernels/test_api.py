"""The public entry around the fused op: bad input, torch.compile without graph breaks, the
no-compiler fallback, and the choice of backend."""

from __future__ import annotations

import warnings

import pytest
import torch
from kernel_cases import fused_backends

import membra.kernels as K
from membra.kernels import cpu as cpu_backend
from membra.kernels import if_sequence, lif_sequence, select_backend

BACKENDS = ["reference"] + fused_backends("cpu")


@pytest.mark.parametrize("backend", BACKENDS)
def test_bad_input(backend):
    x = torch.randn(4, 2, 3)
    with pytest.raises(ValueError, match="time-first"):
        lif_sequence(torch.randn(5), backend=backend)
    with pytest.raises(ValueError, match="does not broadcast"):
        lif_sequence(x, torch.zeros(2, 4), backend=backend)
    with pytest.raises(TypeError, match="floating-point"):
        lif_sequence(x.to(torch.int32), backend=backend)
    with pytest.raises(TypeError, match="floating point"):
        if_sequence(x, torch.zeros(3, dtype=torch.int64), backend=backend)
    with pytest.raises(ValueError, match="tau must be a scalar"):
        lif_sequence(x, tau=torch.ones(3), backend=backend)
    with pytest.raises(ValueError, match="surrogate='nope'"):
        lif_sequence(x, surrogate="nope", backend=backend)
    bad = x.clone()
    bad[1, 0, 2] = float("nan")
    with pytest.raises(ValueError, match="NaN"):
        lif_sequence(bad, check_finite=True, backend=backend)
    with pytest.raises(ValueError, match="not a membra kernel backend"):
        lif_sequence(x, backend="nope")


@pytest.mark.skipif(not fused_backends("cpu"), reason="the cpu kernels could not be built")
def test_cpu_is_the_default_on_cpu(monkeypatch):
    monkeypatch.delenv("MEMBRA_BACKEND", raising=False)
    assert select_backend(None, torch.device("cpu")).name == "cpu"
    assert "cpu" in K.available_backends("cpu")
    monkeypatch.setenv("MEMBRA_BACKEND", "reference")
    assert select_backend(None, torch.device("cpu")).name == "reference"


def test_build_failure_warns_once_and_falls_back(monkeypatch):
    import membra.kernels.build as build

    def broken(*args, **kwargs):
        raise RuntimeError("no C++ compiler found")

    monkeypatch.setattr(cpu_backend, "_LIB", {})
    monkeypatch.setattr(build, "build_extension", broken)
    monkeypatch.delenv("MEMBRA_BACKEND", raising=False)
    with pytest.warns(RuntimeWarning, match="could not be built.*no C\\+\\+ compiler"):
        assert not cpu_backend.cpu_available()
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no second warning
        assert select_backend(None, torch.device("cpu")).name == "reference"
        s, v = lif_sequence(torch.ones(3, 1, 2))
    assert s.shape == (3, 1, 2)


@pytest.mark.parametrize("named", [True, False], ids=["backend=", "device-default"])
def test_compiled_call_does_not_trace_the_availability_check(monkeypatch, named):
    """A backend's ``available()`` may do what torch.compile cannot trace (the cpu backend's
    first check builds its kernels under ``torch.compiler.disable``): after one eager call, a
    compiled call reads the answer instead of breaking the graph, whether the backend is named
    or is the device's default."""
    from membra.kernels.dispatch import PREFERENCE, register_backend, unregister_backend

    reference = select_backend("reference", torch.device("cpu")).run
    calls = []

    def available():
        calls.append(1)
        return torch.compiler.disable(lambda: True)()

    register_backend("probe-test", reference, available=available, devices=("cpu",))
    monkeypatch.setitem(PREFERENCE, "cpu", ("probe-test", "reference"))
    try:
        def f(x):
            s, v = lif_sequence(x, backend="probe-test" if named else None)
            return s.sum() + v.sum()

        x = torch.randn(4, 2, 5)
        eager = f(x)
        assert calls  # the eager call asked
        torch._dynamo.reset()
        explanation = torch._dynamo.explain(f)(x)
        assert explanation.graph_break_count == 0, explanation.break_reasons
        torch._dynamo.reset()
        assert torch.compile(f, backend="eager", fullgraph=True)(x) == eager
        n = len(calls)
        f(x)  # eager calls still ask (availability can change: a compiler installed, ...)
        assert len(calls) == n + 1
    finally:
        unregister_backend("probe-test")
        torch._dynamo.reset()


@pytest.mark.parametrize("backend", BACKENDS)
def test_torch_compile_sees_one_op(backend):
    tau = torch.tensor(2.0, requires_grad=True)

    def f(x, v0):
        s, v = lif_sequence(x, v0, tau=tau, backend=backend)
        return s.mean() + v.square().mean()

    x = torch.randn(4, 3, 8)
    v0 = torch.zeros(1, 8, requires_grad=True)
    explanation = torch._dynamo.explain(f)(x, v0)
    assert explanation.graph_break_count == 0
    torch._dynamo.reset()
    compiled = torch.compile(f, backend="aot_eager", fullgraph=True)
    xs = x.clone().requires_grad_()
    out = compiled(xs, v0)
    out.backward()
    want_x = x.clone().requires_grad_()
    v0_ref = v0.detach().clone().requires_grad_()
    ref = f(want_x, v0_ref)
    ref.backward()
    torch.testing.assert_close(out, ref)
    torch.testing.assert_close(xs.grad, want_x.grad)
    torch._dynamo.reset()


@pytest.mark.skipif(not fused_backends("cpu"), reason="the cpu kernels could not be built")
def test_custom_op_passes_opcheck():
    x = torch.randn(5, 12)
    v0 = torch.randn(12)
    tau = torch.tensor(2.0)
    for save_h, trace_v in ((False, False), (True, False), (True, True)):
        args = (x, v0, tau, 0, True, 1.0, 0.0, 0, 4.0, True, save_h, trace_v)
        torch.library.opcheck(torch.ops.membra.neuron_fwd.default, args,
                              test_utils=("test_schema", "test_faketensor",
                                          "test_autograd_registration"))


@pytest.mark.skipif(not fused_backends("cpu"), reason="the cpu kernels could not be built")
def test_torch_export_sees_one_op():
    class Layer(torch.nn.Module):
        def forward(self, x):
            return lif_sequence(x, backend="cpu")[0]

    x = torch.randn(3, 2, 5)
    ep = torch.export.export(Layer(), (x,))
    targets = [str(n.target) for n in ep.graph.nodes if n.op == "call_function"]
    # nothing requires grad here: the inference op (one op, saving nothing)
    assert sum("membra." in t for t in targets) == 1
    assert sum("neuron_infer" in t for t in targets) == 1
    torch.testing.assert_close(ep.module()(x), lif_sequence(x, backend="reference")[0])
