"""A custom surrogate on the cpu kernels: its derivative is evaluated block by block inside the
backward (one [T, M] tensor saved, h in place of x; none built), and the result equals the
reference whatever the block width, including widths that do not divide the layer and blocks of
one neuron."""

from __future__ import annotations

import itertools

import pytest
import torch
from kernel_cases import fused_backends, run_op

from membra.kernels import fused, lif_sequence

pytestmark = pytest.mark.skipif(not fused_backends("cpu"), reason="cpu kernels not built")


def smooth(u):
    return torch.atan(2.0 * u) + 0.05 * u ** 3


@pytest.mark.parametrize("block_neurons", [1, 7, 64, 10_000])
@pytest.mark.parametrize("neuron,reset,detach", list(itertools.product(
    ["lif", "if"], ["soft", "hard"], [True, False])))
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32, torch.bfloat16], ids=str)
def test_any_block_width_gives_the_reference(monkeypatch, block_neurons, neuron, reset, detach,
                                             dtype):
    T = 5
    state = 8 if dtype == torch.float64 else 4
    monkeypatch.setattr(fused, "BLOCK_BYTES", block_neurons * T * state)
    monkeypatch.setattr(torch, "get_num_threads", lambda: 1)  # BLOCK_BYTES is per thread
    g = torch.Generator().manual_seed(block_neurons)
    x = (torch.randn(T, 3, 41, generator=g) * 1.3 + 0.3).to(dtype)
    x[0, 0, :5] = 2.0  # exact threshold hits
    v0 = (torch.randn(41, generator=g) * 0.3).to(dtype)
    gs, gv = torch.randn(T, 3, 41, generator=g).to(dtype), torch.randn(3, 41, generator=g)
    tau = torch.tensor(2.5, dtype=dtype)
    kw = dict(reset=reset, surrogate=smooth, detach_reset=detach, v_th=0.9, v_reset=-0.1)
    got = run_op("cpu", neuron, x, v0, tau, gs, gv.to(dtype), **kw)
    # bfloat16 is computed in float32 by the kernel: compare with the float32 reference
    ref = (lambda t: t.float()) if dtype == torch.bfloat16 else (lambda t: t)
    want = run_op("reference", neuron, ref(x), ref(v0), ref(tau), ref(gs), ref(gv.to(dtype)),
                  **kw)
    tol = {torch.float64: 1e-10, torch.float32: 1e-5, torch.bfloat16: 2e-2}[dtype]
    for name, a, b in zip(("spikes", "v_T", "grad_x", "grad_v0", "grad_tau"), got, want,
                          strict=True):
        if b is None:
            continue
        torch.testing.assert_close(a, b.to(a.dtype), atol=tol, rtol=tol,
                                   msg=lambda m, n=name: f"{n}: {m}")


def test_one_tensor_of_size_T_M_is_saved():
    x = torch.randn(6, 4, 33, requires_grad=True)
    shapes = []

    def pack(t):
        shapes.append(tuple(t.shape))
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        s, v = lif_sequence(x, surrogate=smooth, backend="cpu")
    assert shapes.count((6, 132)) == 1, shapes  # h in place of x; no derivative
    (s.sum() + v.sum()).backward()
    assert torch.isfinite(x.grad).all()


def test_a_surrogate_that_is_not_elementwise_is_named_in_blockwise_backward(monkeypatch):
    monkeypatch.setattr(fused, "BLOCK_BYTES", 16 * 4 * 4)
    x = torch.randn(4, 2, 40, requires_grad=True)
    s, _ = lif_sequence(x, surrogate=lambda u: u.sum(dim=-1, keepdim=True).expand_as(u)[:, :1],
                        backend="cpu")
    with pytest.raises(ValueError, match="elementwise"):
        s.sum().backward()
