"""Eager calls skip the ops' Python dispatch (:mod:`membra.kernels.direct`): training, traces
and inference give bit for bit what the ops give, for every neuron model, surrogate kind,
dtype and shape family below; anything that could see the op (a dispatch mode, the profiler,
a double backward, a disabled kernel) still gets the op's behaviour."""

from __future__ import annotations

import itertools
import subprocess
import sys

import pytest
import torch
from kernel_cases import OpLog, fused_backends, spy_direct_calls

from membra.kernels import direct, neuron_sequence, neuron_trace
from membra.kernels.models import alif_sequence, cuba_lif_sequence

#: (backend, device): the C++ kernels here, the Triton kernels on a GPU
DEVICES = [pytest.param(("cpu", "cpu"), id="cpu", marks=pytest.mark.skipif(
    not fused_backends("cpu"), reason="cpu kernels not built"))]
if torch.cuda.is_available():
    DEVICES.append(pytest.param(("triton", "cuda"), id="cuda", marks=pytest.mark.gpu))


def _custom(u):  # a user's surrogate: d/du = 1 / (1 + 10|u|)^2
    return u / (1 + 10 * u.abs())


SURROGATES = {"sigmoid": "sigmoid", "atan": "atan", "custom": _custom}
SHAPES = [(1, 1, 1), (5, 1, 256), (3, 2, 37), (2, 0, 5), (6, 2, 3, 5)]
DTYPES = [torch.float32, torch.float64, torch.bfloat16]


def _inputs(shape, dtype, seed, device="cpu"):
    """Input with exact threshold hits (tau 2 from 0.25: x = 1.75 gives h = v_th = 1)."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(shape, generator=g) * 1.5 + 0.4
    flat = x.view(shape[0], -1)
    if flat.shape[1]:
        flat[0, : max(1, flat.shape[1] // 4)] = 1.75
    v0 = torch.full(shape[1:], 0.25) + 0.1 * torch.randn(shape[1:], generator=g)
    return x.to(device, dtype), v0.to(device, dtype)


def _outputs_and_grads(run, leaves):
    """``run(*leaves)``'s tensors and the gradients of a fixed weighted sum into ``leaves``."""
    leaves = [t.detach().clone().requires_grad_(t.is_floating_point()) for t in leaves]
    outs = [t for t in run(*leaves) if isinstance(t, torch.Tensor)]
    g = torch.Generator().manual_seed(1)
    loss = sum((o.float() * torch.rand(o.shape, generator=g).to(o.device)).sum()
               for o in outs)
    grads = torch.autograd.grad(loss, [t for t in leaves if t.requires_grad],
                                allow_unused=True)
    return [o.detach() for o in outs] + [g for g in grads if g is not None]


def _same_both_ways(monkeypatch, run, leaves, ops):
    calls = spy_direct_calls(monkeypatch)
    got = _outputs_and_grads(run, leaves)
    assert set(calls) == set(ops), calls
    calls.clear()
    with direct.through_the_ops():
        want = _outputs_and_grads(run, leaves)
    assert calls == []
    assert len(got) == len(want)
    for a, b in zip(got, want, strict=True):
        assert a.dtype == b.dtype and a.shape == b.shape
        torch.testing.assert_close(a, b, rtol=0, atol=0, equal_nan=True)


LIF_CASES = list(itertools.product(SHAPES, DTYPES, ["lif", "if"], ["soft", "hard"],
                                   list(SURROGATES), [False, True], [False, True]))


@pytest.mark.parametrize("where", DEVICES)
@pytest.mark.parametrize("shape,dtype,neuron,reset,sg,trace,learn_tau",
                         LIF_CASES[::5] + LIF_CASES[2::11], ids=str)
def test_lif_training_is_bitwise_the_op(monkeypatch, where, shape, dtype, neuron, reset, sg,
                                        trace, learn_tau):
    backend, device = where
    i = LIF_CASES.index((shape, dtype, neuron, reset, sg, trace, learn_tau))
    x, v0 = _inputs(shape, dtype, i, device)
    tau = torch.tensor(2.0 + (i % 3) * 0.5, dtype=torch.float32, device=device)
    kw = dict(neuron=neuron, reset=reset, v_th=1.0, v_reset=-0.125, backend=backend,
              surrogate=SURROGATES[sg], detach_reset=bool(i % 2))
    fn = neuron_trace if trace else neuron_sequence

    def run(x, v0, *learnt):
        t = learnt[0] if learnt else float(tau)
        return fn(x, v0, tau=t if neuron == "lif" else None, **kw)

    leaves = [x, v0] + ([tau] if learn_tau else [])
    # (on CPU a custom surrogate's backward without trace gradients walks back per block)
    blockwise = device == "cpu" and sg == "custom" and not trace
    _same_both_ways(monkeypatch, run, leaves,
                    {"neuron_fwd"} if blockwise else {"neuron_fwd", "neuron_bwd"})


MODEL_CASES = list(itertools.product(["cuba_lif", "alif"], SHAPES[:4],
                                     [torch.float32, torch.float64], list(SURROGATES),
                                     [False, True]))


@pytest.mark.parametrize("where", DEVICES)
@pytest.mark.parametrize("model,shape,dtype,sg,trace", MODEL_CASES[::2], ids=str)
def test_model_training_is_bitwise_the_op(monkeypatch, where, model, shape, dtype, sg, trace):
    from membra.kernels.models import models_cpu_available

    backend, device = where
    if device == "cpu" and not models_cpu_available():
        pytest.skip("models kernels not built")
    i = MODEL_CASES.index((model, shape, dtype, sg, trace))
    x, v0 = _inputs(shape, dtype, i, device)
    c0 = 0.05 * torch.ones_like(v0)
    fn = cuba_lif_sequence if model == "cuba_lif" else alif_sequence

    def run(x, v0, c0):
        out, state = fn(x, (v0, c0), backend=backend, surrogate=SURROGATES[sg], trace=trace)
        return (*(out if trace else (out,)), *state)

    prefix = "model_cpu" if device == "cpu" else "model_triton"
    _same_both_ways(monkeypatch, run, [x, v0, c0], {f"{prefix}_fwd", f"{prefix}_bwd"})


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_inference_calls_the_triton_kernel_directly(monkeypatch):
    calls = spy_direct_calls(monkeypatch)
    x = torch.randn(5, 2, 300, device="cuda")
    with torch.no_grad():
        s, v = neuron_sequence(x, tau=4.0, backend="triton", spike_dtype=torch.bool)
    assert calls == ["neuron_infer"]
    with torch.no_grad(), direct.through_the_ops():
        s_op, v_op = neuron_sequence(x, tau=4.0, backend="triton", spike_dtype=torch.bool)
    torch.testing.assert_close(s, s_op, rtol=0, atol=0)
    torch.testing.assert_close(v, v_op, rtol=0, atol=0)


def test_inference_calls_the_kernel_directly(monkeypatch):
    calls = spy_direct_calls(monkeypatch)
    with torch.no_grad():
        neuron_sequence(torch.randn(5, 1, 256), tau=4.0, backend="cpu")
    assert calls == ["neuron_infer"]


def test_a_dispatch_mode_sees_the_training_ops(monkeypatch):
    calls = spy_direct_calls(monkeypatch)
    x = torch.randn(4, 2, 9, requires_grad=True)
    with OpLog() as log:
        neuron_sequence(x, tau=2.0, backend="cpu")[0].sum().backward()
    assert calls == []
    assert {"membra.neuron_fwd.default", "membra.neuron_bwd.default"} <= set(log.names)


def test_profiler_names_the_training_ops(monkeypatch):
    calls = spy_direct_calls(monkeypatch)
    x = torch.randn(4, 2, 9, requires_grad=True)
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as prof:
        neuron_sequence(x, tau=2.0, backend="cpu")[0].sum().backward()
    assert calls == ["neuron_fwd", "neuron_bwd"]
    keys = {e.key for e in prof.key_averages()}
    assert {"membra::neuron_fwd", "membra::neuron_bwd"} <= keys


def _double_backward():
    x = torch.randn(4, 2, 9, requires_grad=True)
    s, _ = neuron_sequence(x, tau=2.0, backend="cpu")
    (g,) = torch.autograd.grad(s.sum(), x, create_graph=True)
    try:
        return ("ok", torch.autograd.grad(g.sum(), x, allow_unused=True)[0])
    except RuntimeError as e:
        return ("error", type(e).__name__)


def test_double_backward_behaves_as_through_the_op():
    torch.manual_seed(0)
    got = _double_backward()
    torch.manual_seed(0)
    with direct.through_the_ops():
        want = _double_backward()
    assert got[0] == want[0]
    if got[0] == "ok":
        assert (got[1] is None) == (want[1] is None)
        if got[1] is not None:
            torch.testing.assert_close(got[1], want[1], rtol=0, atol=0)
    else:
        assert got == want


def test_a_disabled_kernel_stays_disabled():
    from membra.kernels.fused import neuron_fwd

    x = torch.randn(3, 1, 4, requires_grad=True)
    with neuron_fwd.set_kernel_enabled("cpu", False):
        with pytest.raises(NotImplementedError, match="no kernel"):
            neuron_sequence(x, tau=2.0, backend="cpu")
        with direct.through_the_ops(), pytest.raises(NotImplementedError, match="no kernel"):
            neuron_sequence(x, tau=2.0, backend="cpu")


def test_training_and_inference_never_import_dynamo():
    """The ops' kernels are wrapped in ``torch.compiler.disable``, whose first call imports
    ``torch._dynamo`` (seconds): the direct calls skip that frame."""
    code = ("import sys, torch\nfrom membra.nn import LIF\n"
            "l = LIF(shape=(8,), backend='cpu')\nx = torch.randn(3, 2, 8, requires_grad=True)\n"
            "l(x).sum().backward()\nl.trace(x).v.sum().backward()\n"
            "with torch.no_grad(): l(x)\nprint('torch._dynamo' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True)
    assert out.stdout.strip() == "False", out.stderr


def test_through_the_ops_is_per_thread(monkeypatch):
    """A benchmark comparing both ways on one thread does not change another's calls."""
    import threading

    calls = spy_direct_calls(monkeypatch)
    inside, go = threading.Event(), threading.Event()

    def compare():
        with direct.through_the_ops():
            inside.set()
            go.wait(10)

    t = threading.Thread(target=compare)
    t.start()
    inside.wait(10)
    with torch.no_grad():
        neuron_sequence(torch.randn(3, 1, 8), tau=2.0, backend="cpu")
    go.set()
    t.join()
    assert calls == ["neuron_infer"] and direct.enabled()
