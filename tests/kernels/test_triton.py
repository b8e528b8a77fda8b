"""The Triton backend on CUDA (skipped without a GPU). Its kernels run in Triton's CPU
interpreter in test_triton_interpret.py (`make test-triton`); the equivalence suite in
test_equivalence.py also runs it against the reference when a GPU is present."""

from __future__ import annotations

import importlib.util
import os
import re
from pathlib import Path

import pytest
import torch

import membra.kernels as K
from membra.functional import NeuronKind
from membra.kernels import available_backends, lif_sequence, select_backend


def needs_cuda(fn):
    fn = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")(fn)
    return pytest.mark.gpu(fn)


def test_triton_kind_constants_are_the_kind_codes():
    # the Triton kernels branch on IF / CUBA / ALIF (LIF is 0): the codes of NeuronKind
    src = (Path(K.__file__).parent / "_triton_kernels.py").read_text()
    consts = {m[0]: int(m[1]) for m in re.findall(r"^(\w+): tl.constexpr = tl.constexpr\((\d+)\)",
                                                  src, re.M)}
    assert consts == {"IF": NeuronKind.IF.code, "CUBA": NeuronKind.CUBA_LIF.code,
                      "ALIF": NeuronKind.ALIF.code}


@pytest.fixture
def triton_present():
    if "triton" not in available_backends("cuda"):
        pytest.skip("triton is not importable")


@needs_cuda
def test_triton_is_the_default_on_cuda(triton_present, monkeypatch):
    monkeypatch.delenv("MEMBRA_BACKEND", raising=False)
    assert select_backend(None, torch.device("cuda")).name == "triton"


@needs_cuda
def test_large_layer_matches_reference(triton_present):
    # many programs, M not a multiple of the block, a learnable tau
    g = torch.Generator().manual_seed(0)
    x = (torch.randn(9, 3, 70001, generator=g) + 0.4).cuda()
    gs = torch.randn(x.shape, generator=g).cuda()
    out = {}
    for backend in ("reference", "triton"):
        xx = x.clone().requires_grad_()
        tau = torch.tensor(1.7, device="cuda", requires_grad=True)
        s, v = lif_sequence(xx, tau=tau, backend=backend)
        (s * gs).sum().backward()
        out[backend] = (s, v, xx.grad, tau.grad)
    for got, want in zip(out["triton"], out["reference"], strict=True):
        torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-4)


@needs_cuda
@pytest.mark.parametrize("model", ["cuba_lif", "alif"])
@pytest.mark.parametrize("surrogate", ["sigmoid", lambda u: torch.atan(3.0 * u)])
def test_large_model_layer_matches_reference(triton_present, model, surrogate):
    # many programs, M not a multiple of the block, learnable initial states, a trace
    from membra.kernels.models import alif_sequence, cuba_lif_sequence

    fn = cuba_lif_sequence if model == "cuba_lif" else alif_sequence
    g = torch.Generator().manual_seed(1)
    x = (torch.randn(9, 3, 70001, generator=g) + 0.4).cuda()
    v0, c0 = (torch.rand(1, 70001, generator=g).cuda() for _ in range(2))
    out = {}
    for backend in ("reference", "triton"):
        leaves = [t.clone().requires_grad_() for t in (x, v0, c0)]
        tr, (v, c) = fn(leaves[0], (leaves[1], leaves[2]), backend=backend, trace=True,
                        surrogate=surrogate)
        (tr.spikes.sum() + tr.v.square().sum() + tr.h.sum() + v.sum() + c.sum()).backward()
        out[backend] = (tr.spikes, tr.v, tr.h, v, c, *(t.grad for t in leaves))
    assert torch.equal(out["triton"][0], out["reference"][0])
    for got, want in zip(out["triton"][1:], out["reference"][1:], strict=True):
        torch.testing.assert_close(got, want, atol=1e-4, rtol=1e-4)


_FIRST_CALL_COMPILED = """
import torch, torch._dynamo
from membra.kernels import lif_sequence
def f(x):
    s, v = lif_sequence(x)
    return s.sum() + v.sum()
e = torch._dynamo.explain(f)(torch.randn(4, 2, 33, device="cuda"))
print(e.graph_break_count, [r.reason.splitlines()[0] for r in e.break_reasons])
"""


@needs_cuda
def test_compiled_call_has_no_graph_break(triton_present):
    # in a fresh process, so that the compiled call is the first (the backend's availability
    # has not been asked eagerly yet: torch.compile traces that check too)
    import subprocess
    import sys

    out = subprocess.run([sys.executable, "-c", _FIRST_CALL_COMPILED], capture_output=True,
                         text=True, check=True).stdout.strip().splitlines()[-1]
    assert out.startswith("0 "), out


@needs_cuda
def test_custom_surrogate_on_a_large_layer_is_compiled_and_exact(triton_present):
    # from MIN_ELEMENTS values on, a custom surrogate's derivative is one compiled (Triton)
    # kernel; sigmoid(4u) as a callable gives the built-in sigmoid's gradients
    from membra.functional import surrogate_compiled as sc

    def f(u):
        return torch.sigmoid(4.0 * u)

    g = torch.Generator().manual_seed(2)
    x = (torch.randn(16, 4, sc.MIN_ELEMENTS // 64 + 3, generator=g) + 0.5).cuda()
    gs = torch.randn(x.shape, generator=g).cuda()
    grads = []
    for surrogate in (f, "sigmoid"):
        xx = x.clone().requires_grad_()
        s, _ = lif_sequence(xx, backend="triton", surrogate=surrogate)
        s.backward(gs)
        grads.append(xx.grad)
    assert sc._entries(f).get("derivative") is not None  # compiled, and it ran
    torch.testing.assert_close(grads[0], grads[1], atol=1e-6, rtol=1e-5)


def test_interpret_on_cpu_refuses_without_the_interpreter(monkeypatch):
    # CPU tensors may reach the Triton kernels only in Triton's interpreter
    from membra.kernels.triton_backend import interpret_on_cpu

    monkeypatch.delenv("TRITON_INTERPRET", raising=False)
    with pytest.raises(RuntimeError, match="triton|TRITON_INTERPRET"):
        with interpret_on_cpu():
            pass
    assert "triton" not in available_backends("cpu")


@pytest.mark.triton
@pytest.mark.skipif(importlib.util.find_spec("triton") is None
                    or os.environ.get("TRITON_INTERPRET") != "1",
                    reason="needs triton and TRITON_INTERPRET=1 (make test-triton)")
def test_interpret_on_cpu_gives_the_cpu_kernels_back():
    from membra.kernels import fused
    from membra.kernels.triton_backend import interpret_on_cpu

    ops = (fused.neuron_fwd, fused.neuron_bwd, fused.neuron_infer, fused.neuron_h,
           fused.neuron_bwd_cols)
    before = [op._backend_fns["cpu"] for op in ops]
    x = torch.randn(4, 3, 9) + 0.5
    with interpret_on_cpu():
        assert "triton" in available_backends("cpu")
        assert all(op._backend_fns["cpu"] is not fn for op, fn in zip(ops, before, strict=True))
        s_t, v_t = lif_sequence(x, backend="triton")
    assert "triton" not in available_backends("cpu")
    assert all(op._backend_fns["cpu"] is fn for op, fn in zip(ops, before, strict=True))
    s_r, v_r = lif_sequence(x, backend="reference")
    assert torch.equal(s_t, s_r)
    torch.testing.assert_close(v_t, v_r)
