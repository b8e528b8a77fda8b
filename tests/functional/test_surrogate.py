import math

import pytest
import torch

from membra.functional import SURROGATES, get_surrogate, heaviside, spike, surrogate_grad

U = torch.linspace(-2, 2, 101, dtype=torch.float64)


def closed_form(name, u, a):
    if name == "sigmoid":
        s = 1 / (1 + torch.exp(-a * u))
        return a * s * (1 - s)
    if name == "atan":
        return (a / 2) / (1 + (math.pi / 2 * a * u) ** 2)
    if name == "rectangular":
        return torch.where(u.abs() < 1 / (2 * a), torch.full_like(u, a), torch.zeros_like(u))
    if name == "triangle":
        return torch.clamp(a - a * a * u.abs(), min=0)
    raise AssertionError(name)


@pytest.mark.parametrize("name", sorted(SURROGATES))
@pytest.mark.parametrize("alpha", [None, 0.7, 3.0])
def test_backward_equals_closed_form(name, alpha):
    a = get_surrogate(name).default_alpha if alpha is None else alpha
    u = U.clone().requires_grad_(True)
    s = spike(u, name, alpha)
    s.backward(torch.ones_like(s))
    torch.testing.assert_close(u.grad, closed_form(name, U, a), rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(surrogate_grad(U, name, alpha), closed_form(name, U, a))


def test_default_alphas_match_spec():
    assert {n: s.default_alpha for n, s in SURROGATES.items()} == {
        "sigmoid": 4.0, "atan": 2.0, "rectangular": 1.0, "triangle": 1.0}


def test_forward_is_heaviside_with_ge():
    u = torch.tensor([-1e-7, 0.0, 1e-7, -3.0, 2.0])
    for name in SURROGATES:
        assert spike(u, name).tolist() == [0.0, 1.0, 1.0, 0.0, 1.0]
    assert heaviside(u).tolist() == [0.0, 1.0, 1.0, 0.0, 1.0]


def test_surrogate_grad_chain_rule():
    u = torch.randn(20, dtype=torch.float64, requires_grad=True)
    w = torch.randn(20, dtype=torch.float64)
    (spike(u, "atan") * w).sum().backward()
    torch.testing.assert_close(u.grad, w * surrogate_grad(u.detach(), "atan"))


def test_unknown_surrogate_and_bad_alpha():
    with pytest.raises(ValueError, match="surrogate='erf'.*atan"):
        spike(torch.zeros(3), "erf")
    with pytest.raises(ValueError, match="alpha"):
        spike(torch.zeros(3), "sigmoid", alpha=-1.0)
