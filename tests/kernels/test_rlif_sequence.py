"""RLIF's whole sequence as one autograd node (:mod:`membra.kernels.recurrent`): the same
spikes, potentials, traces and gradients as the per-step ops it replaces (and so as the
reference, which ``test_models_kernels`` checks), over a generated family; observed calls
still see the ops; what cannot be differentiated twice says so."""

from __future__ import annotations

import itertools

import pytest
import torch
from kernel_cases import OpLog, fused_backends

from membra.kernels import direct
from membra.kernels.models import rlif_sequence

pytestmark = pytest.mark.skipif(not fused_backends("cpu"), reason="cpu kernels not built")


def _custom(u):
    return torch.atan(2.0 * u)


CASES = list(itertools.product([1, 2, 7], [(1, 5), (3, 2, 3), (2, 17)],
                               [torch.float32, torch.float64], ["sigmoid", "custom"],
                               [False, True], ["soft", "hard"]))


def _case(i, T, shape, dtype):
    g = torch.Generator().manual_seed(i)
    x = (torch.randn(T, *shape, generator=g) * 1.5 + 0.3).to(dtype)
    n = x[0, 0].numel()
    w = (torch.randn(n, n, generator=g) * 0.6).to(dtype)
    v0 = torch.rand(shape[1:], generator=g).to(dtype) if i % 2 else None
    s0 = (torch.rand(shape, generator=g) < 0.4).to(dtype) if i % 3 == 0 else None
    tau = torch.tensor(2.0 + 0.25 * (i % 4), dtype=dtype)
    return x, w, v0, s0, tau


def _run(x, w, v0, s0, tau, **kw):
    leaves = [t.detach().clone().requires_grad_() for t in (x, w, tau)]
    state_leaves = [None if t is None else t.detach().clone().requires_grad_()
                    for t in (v0, s0)]
    xl, wl, taul = leaves
    state = None if v0 is None and s0 is None else tuple(
        torch.zeros((), device=x.device) if t is None else t for t in state_leaves)
    out, (vT, sT) = rlif_sequence(xl, wl, state, tau=taul, **kw)
    outs = list(out) if kw.get("trace") else [out]
    outs += [vT, sT]
    g = torch.Generator().manual_seed(5)
    loss = sum((o * torch.rand(o.shape, generator=g).to(o)).sum() for o in outs)
    wrt = leaves + [t for t in state_leaves if t is not None]
    grads = torch.autograd.grad(loss, wrt)
    return [o.detach() for o in outs], list(grads), out


@pytest.mark.parametrize("T,shape,dtype,sg,trace,reset", CASES[::2] + CASES[1::9], ids=str)
def test_one_node_equals_the_per_step_ops(T, shape, dtype, sg, trace, reset):
    i = CASES.index((T, shape, dtype, sg, trace, reset))
    x, w, v0, s0, tau = _case(i, T, shape, dtype)
    kw = dict(backend="cpu", surrogate=_custom if sg == "custom" else sg, trace=trace,
              reset=reset, detach_reset=bool(i % 2))
    outs, grads, out = _run(x, w, v0, s0, tau, **kw)
    spikes = out.spikes if trace else out
    assert "RLIFSequenceBackward" in type(spikes.grad_fn.next_functions[0][0]).__name__
    with direct.through_the_ops():
        want_outs, want_grads, want = _run(x, w, v0, s0, tau, **kw)
    assert "RLIFSequence" not in str(want.spikes.grad_fn if trace else want.grad_fn)
    for a, b in zip(outs, want_outs, strict=True):  # the same GEMMs and kernels per step
        torch.testing.assert_close(a, b, rtol=0, atol=0)
    eps = torch.finfo(dtype).eps
    for a, b in zip(grads, want_grads, strict=True):  # sums in another order: W, tau
        torch.testing.assert_close(a, b, rtol=64 * eps, atol=64 * eps * (1 + b.abs().max()))


def test_a_dispatch_mode_sees_the_per_step_ops():
    x, w = torch.randn(4, 2, 6, requires_grad=True), torch.randn(6, 6)
    with OpLog() as log:
        s, _ = rlif_sequence(x, w, backend="cpu")
    assert log.names.count("membra.neuron_fwd.default") == 4
    assert "RLIFSequence" not in str(s.grad_fn)


def test_double_backward_raises_as_through_the_ops():
    """A second derivative raises (never a silent zero), as it does through the ops."""
    for path in (direct.through_the_ops, __import__("contextlib").nullcontext):
        x, w = torch.randn(3, 2, 5, requires_grad=True), torch.randn(5, 5, requires_grad=True)
        with path():
            s, _ = rlif_sequence(x, w, backend="cpu", surrogate="atan")
            (g,) = torch.autograd.grad(s.sum(), w, create_graph=True)
            with pytest.raises(RuntimeError, match="autograd formula|does not require grad"):
                torch.autograd.grad(g.sum(), w)


def test_a_weight_changed_in_place_before_backward_is_caught():
    x, w = torch.randn(3, 2, 5, requires_grad=True), torch.randn(5, 5, requires_grad=True)
    s, _ = rlif_sequence(x, w, backend="cpu")
    with torch.no_grad():
        w.mul_(2.0)
    with pytest.raises(RuntimeError, match="modified by an inplace operation"):
        s.sum().backward()


def test_float16_and_bfloat16_take_the_per_step_ops():
    """The fused sequence keeps the state in x's dtype: 16-bit inputs go through the ops
    (float32 state), as before."""
    for dtype in (torch.bfloat16, torch.float16):
        x = torch.randn(3, 2, 5, dtype=dtype, requires_grad=True)
        s, (v, _) = rlif_sequence(x, torch.randn(5, 5, dtype=dtype), backend="cpu")
        assert "RLIFSequence" not in str(s.grad_fn) and s.dtype == dtype
        s.sum().backward()
        assert x.grad is not None and x.grad.dtype == dtype


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("sg,trace", [("atan", False), ("custom", True)])
def test_cuda_one_node_equals_the_per_step_ops(sg, trace):
    """On CUDA the sequence runs the Triton step kernels: the per-step ops' spikes and
    potentials (the same GEMMs and kernels) and, within rounding, their gradients."""
    case = [t if t is None else t.cuda() for t in _case(7, 9, (4, 33), torch.float32)]
    kw = dict(backend="triton", surrogate=_custom if sg == "custom" else sg, trace=trace)
    outs, grads, out = _run(*case, **kw)
    spikes = out.spikes if trace else out
    assert "RLIFSequenceBackward" in type(spikes.grad_fn.next_functions[0][0]).__name__
    with direct.through_the_ops():
        want_outs, want_grads, _ = _run(*case, **kw)
    for a, b in zip(outs, want_outs, strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=0)
    for a, b in zip(grads, want_grads, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5 * (1 + b.abs().max().item()))
