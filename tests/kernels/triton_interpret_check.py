"""Run the Triton kernels in Triton's CPU interpreter against the reference; executed by
test_triton.py in a subprocess with TRITON_INTERPRET=1 (prints 'ok' or raises)."""

from __future__ import annotations

import itertools

import torch

from membra.kernels import if_sequence, lif_sequence
from membra.kernels._prep import flatten_inputs
from membra.kernels.triton_backend import _backward_kernel, _forward


def check(neuron, reset, detach, surrogate, T=5, M=700):
    g = torch.Generator().manual_seed(T + M)
    x = torch.randn(T, 1, M, generator=g) * 1.2 + 0.3
    v0 = torch.randn(M, generator=g) * 0.3
    gs = torch.randn(T, 1, M, generator=g)
    gv = torch.randn(1, M, generator=g)
    tau = torch.tensor(2.5)
    kw = dict(reset=reset, surrogate=surrogate, detach_reset=detach, v_th=0.9, v_reset=-0.1)
    xr, vr, tr = (t.clone().requires_grad_() for t in (x, v0, tau))
    if neuron == "lif":
        s, v = lif_sequence(xr, vr, tau=tr, backend="reference", **kw)
    else:
        s, v = if_sequence(xr, vr, backend="reference", **kw)
    torch.autograd.backward([s, v], [gs, gv])
    x2, v2, t2 = flatten_inputs(x, v0, tau if neuron == "lif" else None)
    s_k, v_k, h = _forward(x2, v2, t2, neuron, reset, 0.9, -0.1)
    assert torch.equal(s_k.reshape(s.shape), s.detach()), "spikes"
    torch.testing.assert_close(v_k.reshape(v.shape), v.detach(), atol=1e-5, rtol=1e-5)
    alpha = {"sigmoid": 4.0, "atan": 2.0, "rectangular": 1.0, "triangle": 1.0}[surrogate]
    gx, gv0, gtau = _backward_kernel(gs.reshape(T, M), gv.reshape(M), h, x2, v2, t2, neuron,
                                     reset, 0.9, -0.1, surrogate, alpha, detach, True)
    torch.testing.assert_close(gx.reshape(x.shape), xr.grad, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(gv0, vr.grad, atol=1e-5, rtol=1e-5)
    if neuron == "lif":
        torch.testing.assert_close(gtau, tr.grad, atol=1e-4, rtol=1e-5)


if __name__ == "__main__":
    for combo in itertools.product(["lif", "if"], ["soft", "hard"], [True, False],
                                   ["sigmoid", "atan", "rectangular", "triangle"]):
        check(*combo)
    check("lif", "soft", True, "sigmoid", T=1, M=3)
    print("ok")
