"""A custom surrogate whose derivative is infinite at the threshold (``f'(0) = inf``), met at an
exact tie ``h_t = v_th``, with a *detached* reset: the reset's spike carries no gradient, so the
reference loop adds nothing for it, and the fused kernels must not either. The old kernels
added ``nd * (... * sg)`` with ``nd = 0`` and ``sg = inf``, which is ``0 * inf = NaN``, where
the reference gives ``±inf``. Generated over neuron models, resets, T, widths and dtypes; the
fused gradients (the cpu kernels; the Triton kernels in Triton's CPU interpreter) must equal
the reference's, infinities and NaN included."""

from __future__ import annotations

import importlib.util
import itertools
import math
import os

import pytest
import torch
from kernel_cases import fused_backends

import membra.kernels.models as km
from membra.nn import ALIF, IF, LIF, CubaLIF

needs_cpu = pytest.mark.skipif(not fused_backends("cpu") or not km.models_cpu_available(),
                               reason="cpu kernels not built")


def steep(u):
    """``f'(u) = 1/(1+u^2)``, except ``f'(0) = inf``: the ``where`` masks the infinite factor's
    gradient to 0 away from the tie (its forward value, NaN there, is ignored)."""
    return torch.atan(u) + torch.where(u == 0, u, torch.zeros_like(u)) * math.inf


def _layer(model, reset, backend, dtype, width):
    kw = dict(reset=reset, detach_reset=True, surrogate=steep, backend=backend, v_th=1.0)
    if model is not IF:
        kw["tau"] = 2.0
    if model is ALIF:
        kw.update(tau_adapt=4.0, beta=0.3)
    return model((width,), **kw).to(dtype)


CASES = list(itertools.product([LIF, IF, CubaLIF, ALIF], ["soft", "hard"], [1, 2, 4],
                               [torch.float64, torch.float32]))


def _check(model, reset, T, dtype, backend):
    width = 3 + 2 * T
    g = torch.Generator().manual_seed(T * 7 + len(reset))
    x = torch.rand(T, 2, width, generator=g, dtype=dtype) * 0.4
    # step 0 charges h to exactly v_th = 1 in the first neurons (v0 = 0: h = x / tau, and
    # CubaLIF's first current is x itself); the rest stay below threshold at step 0
    x[0, :, :3] = 1.0 if model is IF else 2.0
    w = torch.linspace(-1, 1, T * 2 * width, dtype=dtype).view(T, 2, width)
    grads = []
    for b in (backend, "reference"):
        layer = _layer(model, reset, b, dtype, width)
        xi = x.clone().requires_grad_()
        s, (vT, *_) = layer.run(xi)
        ((s * w).sum() + vT.sum()).backward()
        grads.append(xi.grad)
    fused, ref = grads
    assert torch.isinf(ref).any(), "the case must reach the infinite derivative"
    torch.testing.assert_close(fused, ref, equal_nan=True, rtol=1e-5, atol=1e-6)


IDS = [f"{m.__name__}-{r}-T{t}-{str(d)[6:]}" for m, r, t, d in CASES]


@needs_cpu
@pytest.mark.parametrize("model,reset,T,dtype", CASES, ids=IDS)
def test_a_detached_reset_adds_nothing_where_the_derivative_is_infinite(model, reset, T,
                                                                          dtype):
    _check(model, reset, T, dtype, "cpu")


@pytest.mark.triton
@pytest.mark.skipif(importlib.util.find_spec("triton") is None,
                    reason="triton not installed (make triton-interp)")
@pytest.mark.skipif(os.environ.get("TRITON_INTERPRET") != "1",
                    reason="needs TRITON_INTERPRET=1 (make test-triton)")
@pytest.mark.parametrize("model,reset,T,dtype", CASES, ids=IDS)
def test_the_triton_kernels_agree(model, reset, T, dtype):
    from membra.kernels.triton_backend import interpret_on_cpu

    with interpret_on_cpu():
        _check(model, reset, T, dtype, "triton")
