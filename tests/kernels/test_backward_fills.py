"""A backward from the spikes alone (v_T unused, as in a plain training script) needs no zero
gradient of v_T on the cpu kernels: no [M] tensor is zero-filled, and the gradients stay the
reference's."""

from __future__ import annotations

import itertools

import pytest
import torch
from kernel_cases import fused_backends

from membra.kernels import lif_sequence

pytestmark = pytest.mark.skipif(not fused_backends("cpu"), reason="cpu kernels not built")


def _counting(fn, fills):
    """``fn`` that records the shape of every tensor of more than one element it makes."""
    def wrapper(*a, **k):
        out = fn(*a, **k)
        if out.numel() > 1:
            fills.append(tuple(out.shape))
        return out
    return wrapper


@pytest.mark.parametrize("surrogate,reset,shape", list(itertools.product(
    ["sigmoid", lambda u: torch.atan(2.0 * u)], ["soft", "hard"], [(5, 3, 17), (1, 2, 4099)])))
def test_spikes_only_backward_fills_nothing_and_equals_the_reference(monkeypatch, surrogate,
                                                                     reset, shape):
    g = torch.Generator().manual_seed(shape[-1])
    x = torch.randn(*shape, generator=g) + 0.5
    gs = torch.randn(*shape, generator=g)
    grads, fills = {}, []
    for backend in ("reference", "cpu"):
        xl = x.clone().requires_grad_()
        s, _ = lif_sequence(xl, backend=backend, reset=reset, surrogate=surrogate,
                            detach_reset=False)
        if backend == "cpu":
            for name in ("zeros_like", "zeros"):
                monkeypatch.setattr(torch, name, _counting(getattr(torch, name), fills))
        s.backward(gs)
        grads[backend] = xl.grad
    assert fills == [], f"the backward zero-filled {fills}"
    torch.testing.assert_close(grads["cpu"], grads["reference"], atol=1e-5, rtol=1e-5)
