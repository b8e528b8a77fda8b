"""The LIF time constant is validated the same way whatever form it comes in.

``h = v + (x - (v - v_reset)) / tau = (1 - 1/tau) v + (x + v_reset) / tau``: the potential keeps
the fraction ``1 - 1/tau`` of itself each step, a leak in ``[0, 1)`` exactly when ``tau`` is a
finite number ``>= 1``. Below 1 the kept fraction is negative (the potential flips sign every
step), below 1/2 it grows without bound, at 0 it divides by zero; NaN and inf have no meaning.
Every such ``tau`` is refused with an error naming ``tau``, as a float, a 0-d or one-element
tensor, in float32 or float64, with or without ``requires_grad``; values just inside the
range run and agree between backends."""

from __future__ import annotations

import math

import pytest
import torch
from kernel_cases import fused_backends, run_op

from membra.kernels import lif_sequence

BACKENDS = ["reference"] + fused_backends("cpu")
BELOW_ONE = float(torch.nextafter(torch.tensor(1.0), torch.tensor(0.0)))  # in float32 too
BAD_TAUS = [0.0, -0.0, -1.0, -412.0, math.nan, math.inf, -math.inf, 1e-30, 0.5, 0.999,
            BELOW_ONE]
GOOD_TAUS = [1.0, math.nextafter(1.0, 2.0), float(torch.nextafter(torch.tensor(1.0),
                                                                   torch.tensor(2.0))),
             1.5, 2.0, 1e6, 1e30]
FORMS = {
    "float": lambda t: t,
    "tensor0d": lambda t: torch.tensor(t),
    "tensor1": lambda t: torch.tensor([t]),
    "tensor_f64": lambda t: torch.tensor(t, dtype=torch.float64),
    "param": lambda t: torch.nn.Parameter(torch.tensor(t, dtype=torch.float64)),
}


def case(seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(6, 3, 29, generator=g) * 1.5 + 0.4
    return x, torch.randn(3, 29, generator=g) * 0.3


@pytest.mark.parametrize("form", list(FORMS))
@pytest.mark.parametrize("tau", BAD_TAUS, ids=repr)
@pytest.mark.parametrize("backend", BACKENDS)
def test_invalid_tau_is_refused(backend, tau, form):
    x, v0 = case()
    with pytest.raises(ValueError, match=r"tau must be finite and >= 1"):
        lif_sequence(x, v0, tau=FORMS[form](tau), backend=backend)


@pytest.mark.parametrize("form", list(FORMS))
@pytest.mark.parametrize("tau", GOOD_TAUS, ids=repr)
def test_valid_tau_edges_run_and_backends_agree(tau, form):
    x, v0 = case(1)
    gs, gv = torch.randn_like(x), torch.randn_like(v0)
    want = run_op("reference", "lif", x, v0, FORMS[form](tau), gs, gv)
    assert all(torch.isfinite(w).all() for w in want if w is not None)
    for backend in BACKENDS[1:]:
        got = run_op(backend, "lif", x, v0, FORMS[form](tau), gs, gv)
        assert torch.equal(got[0], want[0])
        for g, w in zip(got[1:], want[1:], strict=True):
            if w is not None:
                torch.testing.assert_close(g, w, atol=1e-5, rtol=1e-5)

