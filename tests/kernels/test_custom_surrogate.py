"""Any surrogate, fused: a Surrogate instance or any callable f(u) whose autograd derivative is
the surrogate gradient runs on every backend and gives the reference's gradients."""

from __future__ import annotations

import itertools
import math

import pytest
import torch
from kernel_cases import backend_params, run_op

from membra.functional import SURROGATES, Surrogate, as_surrogate


def fast_sigmoid(u):
    """SuperSpike-style surrogate: d/du = 1 / (1 + 5|u|)^2."""
    return u / (1 + 5 * u.abs())


def custom_kinds():
    """(id, surrogate) for every kind a user can pass: a name, an instance, a callable."""
    return [
        pytest.param("atan", id="name"),
        pytest.param(SURROGATES["triangle"], id="builtin-instance"),
        pytest.param(Surrogate.custom(lambda u: torch.sigmoid(3.0 * u), name="sig3"),
                     id="custom-instance"),
        pytest.param(fast_sigmoid, id="callable"),
        pytest.param(lambda u: torch.tanh(2 * u) + u ** 3 * 0.1, id="lambda"),
    ]


def case(T, shape, dtype, seed):
    g = torch.Generator().manual_seed(seed)
    x = (torch.randn(T, *shape, generator=g) * 1.2 + 0.3).to(dtype)
    v0 = (torch.randn(*shape[1:], generator=g) * 0.3).to(dtype)
    gs = torch.randn(T, *shape, generator=g).to(dtype)
    gv = torch.randn(*shape, generator=g).to(dtype)
    return x, v0, gs, gv


@pytest.mark.parametrize("backend,device", backend_params())
@pytest.mark.parametrize("surrogate", custom_kinds())
@pytest.mark.parametrize("neuron,reset,detach", list(itertools.product(
    ["lif", "if"], ["soft", "hard"], [True, False])))
@pytest.mark.parametrize("dtype,T,shape", [(torch.float64, 1, (2, 5)),
                                           (torch.float64, 6, (3, 37)),
                                           (torch.float32, 9, (2, 3, 7)),
                                           (torch.float32, 4, (0, 5))])
def test_fused_equals_reference(backend, device, surrogate, neuron, reset, detach, dtype, T,
                                shape):
    x, v0, gs, gv = (t.to(device) for t in case(T, shape, dtype, seed=T + len(shape)))
    tau = torch.tensor(2.5, dtype=dtype, device=device)
    kw = dict(reset=reset, surrogate=surrogate, detach_reset=detach, v_th=0.9, v_reset=-0.1)
    want = run_op("reference", neuron, x, v0, tau, gs, gv, **kw)
    got = run_op(backend, neuron, x, v0, tau, gs, gv, **kw)
    tol = dict(atol=1e-10, rtol=1e-10) if dtype == torch.float64 else dict(atol=1e-5, rtol=1e-5)
    for name, g, w in zip(("spikes", "v_T", "grad_x", "grad_v0", "grad_tau"), got, want,
                          strict=True):
        if w is None:
            assert g is None or not g.abs().any(), name
            continue
        torch.testing.assert_close(g, w, **tol, msg=lambda m, n=name: f"{n}: {m}")


@pytest.mark.parametrize("backend,device", backend_params())
def test_noncontiguous_input_and_broadcast_v0(backend, device):
    g = torch.Generator().manual_seed(5)
    x = (torch.randn(5, 9, 4, 2, generator=g, dtype=torch.float64) * 1.5).permute(0, 2, 1, 3)
    x = x.to(device)
    assert not x.is_contiguous()
    gs = torch.randn(x.shape, generator=g, dtype=torch.float64).to(device)
    gv = torch.randn(x.shape[1:], generator=g, dtype=torch.float64).to(device)
    v0 = torch.full((1, 9, 1), 0.25, dtype=torch.float64, device=device)
    want = run_op("reference", "lif", x, v0, 1.7, gs, gv, surrogate=fast_sigmoid)
    got = run_op(backend, "lif", x, v0, 1.7, gs, gv, surrogate=fast_sigmoid)
    for g_, w in zip(got, want, strict=True):
        if w is not None:
            torch.testing.assert_close(g_, w, atol=1e-12, rtol=1e-12)
    assert got[3].shape == v0.shape


@pytest.mark.parametrize("backend,device", backend_params())
@pytest.mark.parametrize("name", sorted(SURROGATES))
def test_callable_equal_to_a_builtin_gives_its_gradient(backend, device, name):
    # the closed-form derivative of each built-in is the autograd derivative of its function
    builtin = SURROGATES[name]
    x, v0, gs, gv = (t.to(device) for t in case(7, (4, 33), torch.float64, seed=1))
    a = run_op(backend, "lif", x, v0, 2.0, gs, gv, surrogate=builtin)
    b = run_op(backend, "lif", x, v0, 2.0, gs, gv, surrogate=Surrogate.custom(builtin.fn))
    for g_, w in zip(a, b, strict=True):
        if w is not None:
            torch.testing.assert_close(g_, w, atol=1e-12, rtol=1e-12)


@pytest.mark.parametrize("name", sorted(SURROGATES))
def test_builtin_closed_form_is_the_derivative_of_its_function(name):
    s = SURROGATES[name]
    u = torch.linspace(-2, 2, 401, dtype=torch.float64)
    u = u[(u.abs() - 1 / (2 * s.default_alpha)).abs() > 1e-9]  # the rectangle's corners
    auto = Surrogate.custom(s.fn).derivative(u)
    torch.testing.assert_close(s.derivative(u), auto, atol=1e-12, rtol=1e-12)


def test_alpha_binds_to_a_builtin_and_is_refused_for_a_callable():
    s = as_surrogate("sigmoid", alpha=2.0)
    assert s.alpha == 2.0 and s.name == "sigmoid"
    u = torch.tensor([0.3], dtype=torch.float64)
    assert s.derivative(u).item() == pytest.approx(
        2 * torch.sigmoid(2 * u).item() * (1 - torch.sigmoid(2 * u).item()))
    with pytest.raises(ValueError, match="alpha"):
        as_surrogate(fast_sigmoid, alpha=2.0)
    for bad in (3, "sigmoidd", None):
        with pytest.raises((TypeError, ValueError), match="surrogate"):
            as_surrogate(bad)


def test_custom_surrogate_must_be_elementwise():
    from membra.kernels import lif_sequence

    x = torch.randn(3, 2, 4, requires_grad=True)
    s, _ = lif_sequence(x, surrogate=lambda u: u.sum())
    with pytest.raises(ValueError, match="surrogate"):
        s.sum().backward()


def test_gradcheck_float64_through_the_custom_op_with_a_smooth_surrogate():
    # spikes are piecewise constant, so gradcheck a loss whose surrogate path is exercised:
    # with detach_reset=False, v_T depends on s_t through the reset, and the fused backward
    # must give exactly the reference's analytic gradient
    from membra.kernels import lif_sequence

    g = torch.Generator().manual_seed(3)
    x = (torch.rand(4, 2, 3, generator=g, dtype=torch.float64) * 1.2).requires_grad_()
    v0 = (torch.rand(1, 3, generator=g, dtype=torch.float64) * 0.3).requires_grad_()
    tau = torch.tensor(2.5, dtype=torch.float64, requires_grad=True)

    def f(backend):
        return lambda x, v0, tau: lif_sequence(x, v0, tau=tau, backend=backend,
                                               surrogate=fast_sigmoid)[1]

    assert torch.autograd.gradcheck(f("cpu"), (x, v0, tau), eps=1e-7, atol=1e-6)
    ga = torch.autograd.grad(f("cpu")(x, v0, tau).sum(), (x, v0, tau))
    gb = torch.autograd.grad(f("reference")(x, v0, tau).sum(), (x, v0, tau))
    for a, b in zip(ga, gb, strict=True):
        torch.testing.assert_close(a, b, atol=1e-12, rtol=1e-12)


def test_builtin_derivative_values():
    u = torch.tensor([-0.2, 0.0, 0.1], dtype=torch.float64)
    a = 2.0
    want = (a / 2) / (1 + (math.pi / 2 * a * u) ** 2)
    torch.testing.assert_close(SURROGATES["atan"].derivative(u), want)
