"""Run the Triton kernels in Triton's CPU interpreter against the reference; executed by
test_triton.py in a subprocess with TRITON_INTERPRET=1 (prints 'ok' or raises)."""

from __future__ import annotations

import itertools
import math

import torch
from test_nonfinite import assert_agree

from membra.functional import SURROGATES, NeuronKind
from membra.kernels import if_sequence, lif_sequence
from membra.kernels._prep import flatten_inputs
from membra.kernels.triton_backend import _backward_kernel, _forward


def check(neuron, reset, detach, surrogate, T=5, M=700, bad=None):
    """Kernels against the reference; ``bad`` puts that value (NaN/inf) into x and v0."""
    g = torch.Generator().manual_seed(T + M)
    x = torch.randn(T, 1, M, generator=g) * 1.2 + 0.3
    v0 = torch.randn(M, generator=g) * 0.3
    gs = torch.randn(T, 1, M, generator=g)
    gv = torch.randn(1, M, generator=g)
    if bad is not None:
        x[0, 0, 3] = x[T // 2, 0, M // 2] = x[T - 1, 0, M - 1] = bad
        v0[7] = bad
    tau = torch.tensor(2.5)
    kw = dict(reset=reset, surrogate=surrogate, detach_reset=detach, v_th=0.9, v_reset=-0.1)
    xr, vr, tr = (t.clone().requires_grad_() for t in (x, v0, tau))
    if neuron == "lif":
        s, v = lif_sequence(xr, vr, tau=tr, backend="reference", **kw)
    else:
        s, v = if_sequence(xr, vr, backend="reference", **kw)
    torch.autograd.backward([s, v], [gs, gv])
    x2, v2, t2 = flatten_inputs(x, v0, tau if neuron == "lif" else None)
    kind = NeuronKind.parse(neuron).code
    s_k, v_k, h, _ = _forward(x2, v2, t2, kind, reset == "soft", 0.9, -0.1)
    assert_agree([s_k.reshape(s.shape)], [s.detach()], dict(atol=0.0, rtol=0.0),
                 names=("spikes",))
    sur = SURROGATES[surrogate]
    # the built-in inline, and the same derivative precomputed (the custom-surrogate path)
    for dsg in (None, sur.derivative(h - 0.9)):
        gx, gv0, gtau = _backward_kernel(gs.reshape(T, M), gv.reshape(M), h, x2, v2, t2, dsg,
                                         None, None, kind, reset == "soft", 0.9, -0.1,
                                         sur.code, sur.default_alpha, detach, True)
        check_grads(neuron, v_k, gx, gv0, gtau, v, x, xr, vr, tr)


def check_grads(neuron, v_k, gx, gv0, gtau, v, x, xr, vr, tr):
    """The kernel's final state and gradients against the reference's."""
    assert_agree([v_k.reshape(v.shape), gx.reshape(x.shape), gv0], [v.detach(), xr.grad, vr.grad],
                 dict(atol=1e-5, rtol=1e-5), names=("v_T", "grad_x", "grad_v0"))
    if neuron == "lif":
        assert_agree([gtau], [tr.grad], dict(atol=1e-4, rtol=1e-5), names=("grad_tau",))


if __name__ == "__main__":
    for combo in itertools.product(["lif", "if"], ["soft", "hard"], [True, False],
                                   ["sigmoid", "atan", "rectangular", "triangle"],
                                   [None, math.nan, math.inf, -math.inf]):
        check(*combo[:4], bad=combo[4])
    check("lif", "soft", True, "sigmoid", T=1, M=3)
    print("ok")
