"""The kernel entry points against an independent hand loop, gradcheck, dispatch, errors."""

import math

import pytest
import torch

from membra.kernels import if_sequence, lif_sequence, list_backends, select_backend


def sg_sigmoid(u, a=4.0):
    s = torch.sigmoid(a * u)
    return a * s * (1 - s)


class HandSpike(torch.autograd.Function):
    @staticmethod
    def forward(ctx, u):
        ctx.save_for_backward(u)
        return (u >= 0).to(u.dtype)

    @staticmethod
    def backward(ctx, g):
        (u,) = ctx.saved_tensors
        return g * sg_sigmoid(u)


def hand_loop(x, v0, *, neuron, tau, v_th, v_reset, reset, detach):
    """Written from the spec's equations, sharing no code with membra."""
    v = v0.expand_as(x[0])
    out = []
    for t in range(x.shape[0]):
        h = v + (x[t] - (v - v_reset)) / tau if neuron == "lif" else v + x[t]
        s = HandSpike.apply(h - v_th)
        sr = s.detach() if detach else s
        v = h - v_th * sr if reset == "soft" else h * (1 - sr) + v_reset * sr
        out.append(s)
    return torch.stack(out), v


@pytest.mark.parametrize("neuron", ["lif", "if"])
@pytest.mark.parametrize("reset", ["soft", "hard"])
@pytest.mark.parametrize("detach", [True, False])
def test_reference_equals_hand_loop(neuron, reset, detach):
    g = torch.Generator().manual_seed(1)
    x = torch.randn(5, 3, 2, 4, 4, generator=g, dtype=torch.float64) * 1.5
    v0 = torch.rand(1, 2, 4, 4, generator=g, dtype=torch.float64) - 0.2
    kw = dict(v_th=1.0, v_reset=-0.1, reset=reset, surrogate="sigmoid", alpha=4.0,
              detach_reset=detach, backend="reference")
    xa, va = x.clone().requires_grad_(), v0.clone().requires_grad_()
    if neuron == "lif":
        s, v = lif_sequence(xa, va, tau=2.0, **kw)
    else:
        s, v = if_sequence(xa, va, **kw)
    xb, vb = x.clone().requires_grad_(), v0.clone().requires_grad_()
    s2, v2 = hand_loop(xb, vb, neuron=neuron, tau=2.0, v_th=1.0, v_reset=-0.1, reset=reset,
                       detach=detach)
    assert torch.equal(s, s2)
    torch.testing.assert_close(v, v2, rtol=0, atol=1e-12)
    w = torch.randn_like(s)
    ((s * w).sum() + (v ** 2).sum()).backward()
    ((s2 * w).sum() + (v2 ** 2).sum()).backward()
    torch.testing.assert_close(xa.grad, xb.grad, rtol=0, atol=1e-6)
    torch.testing.assert_close(va.grad, vb.grad, rtol=0, atol=1e-6)
    assert va.grad.shape == v0.shape


def test_spikes_and_state_fp32_exact():
    x = torch.randn(7, 4, 10)
    s, v = lif_sequence(x, None, backend="reference")
    s2, v2 = hand_loop(x, torch.zeros(()), neuron="lif", tau=2.0, v_th=1.0, v_reset=0.0,
                       reset="soft", detach=True)
    assert torch.equal(s, s2) and torch.equal(v, v2)


def test_threshold_hit_fires():
    s, v = if_sequence(torch.tensor([[[0.5]], [[0.5]]]), None, reset="soft")
    assert s.flatten().tolist() == [0.0, 1.0] and v.item() == 0.0


def test_gradcheck_float64_through_final_state_and_tau():
    # With detach_reset the map (x, v0, tau) -> v_T is smooth away from threshold crossings.
    g = torch.Generator().manual_seed(3)
    x = (torch.rand(4, 2, 3, generator=g, dtype=torch.float64) * 1.2).requires_grad_()
    v0 = (torch.rand(1, 3, generator=g, dtype=torch.float64) * 0.3).requires_grad_()
    tau = torch.tensor(2.5, dtype=torch.float64, requires_grad=True)

    def f(x, v0, tau):
        return lif_sequence(x, v0, tau=tau, backend="reference")[1]

    assert torch.autograd.gradcheck(f, (x, v0, tau), eps=1e-7, atol=1e-6)


def test_tau_gradient_matches_closed_form_one_step():
    # One step, no spike: v1 = v0 + (x - v0) / tau  =>  dv1/dtau = -(x - v0) / tau^2
    tau = torch.tensor(3.0, dtype=torch.float64, requires_grad=True)
    x = torch.tensor([[[0.6]]], dtype=torch.float64)
    _, v = lif_sequence(x, torch.tensor([[0.2]], dtype=torch.float64), tau=tau)
    v.sum().backward()
    assert tau.grad.item() == pytest.approx(-(0.6 - 0.2) / 9.0, rel=1e-12)


def test_empty_batch_and_t1():
    s, v = lif_sequence(torch.zeros(3, 0, 5), None)
    assert s.shape == (3, 0, 5) and v.shape == (0, 5)
    s, v = lif_sequence(torch.full((1, 2, 3), 2.0), None)
    assert s.shape == (1, 2, 3) and s.sum().item() == 6.0


@pytest.mark.parametrize("bad, err, match", [
    (dict(x=torch.zeros(4)), ValueError, r"\[T, B, \.\.\.\]"),
    (dict(x=torch.zeros(3, 2, dtype=torch.long)), TypeError, "floating-point"),
    (dict(v0=torch.zeros(3)), ValueError, "does not broadcast"),
    (dict(v0=torch.zeros(2, dtype=torch.int32)), TypeError, "v0 must be floating"),
    (dict(tau=0.0), ValueError, "tau"),
    (dict(tau=torch.ones(2)), ValueError, "tau must be a scalar"),
    (dict(reset="zero"), ValueError, "reset='zero'"),
    (dict(surrogate="relu"), ValueError, "surrogate='relu'"),
    (dict(backend="cuda-magic"), ValueError, "backend='cuda-magic'"),
    (dict(v_th=float("nan")), ValueError, "v_th"),
])
def test_bad_input_named(bad, err, match):
    kw = dict(x=torch.zeros(3, 2), v0=None)
    kw.update(bad)
    x, v0 = kw.pop("x"), kw.pop("v0")
    with pytest.raises(err, match=match):
        lif_sequence(x, v0, **kw)


def test_nan_check_is_opt_in():
    x = torch.tensor([[float("nan"), 0.0]])
    lif_sequence(x, None)  # no sync by default
    with pytest.raises(ValueError, match="NaN"):
        lif_sequence(x, None, check_finite=True)


def test_dispatch_env_and_argument(monkeypatch):
    assert "reference" in list_backends()
    monkeypatch.setenv("MEMBRA_BACKEND", "reference")
    assert select_backend(None, torch.device("cpu")).name == "reference"
    monkeypatch.setenv("MEMBRA_BACKEND", "nope")
    with pytest.raises(ValueError, match="MEMBRA_BACKEND='nope'"):
        select_backend(None, torch.device("cpu"))
    assert select_backend("reference", torch.device("cpu")).name == "reference"


def test_unavailable_backend_falls_back_with_warning():
    from membra.kernels import register_backend
    from membra.kernels.dispatch import _BACKENDS

    register_backend("broken-test", lambda *a, **k: None, available=lambda: False)
    try:
        with pytest.warns(RuntimeWarning, match="broken-test"):
            s, _ = lif_sequence(torch.full((2, 1, 1), 3.0), None, backend="broken-test")
        assert s.sum().item() == 2.0
    finally:
        _BACKENDS.pop("broken-test")


def test_atan_surrogate_gradient_through_sequence():
    x = torch.tensor([[[0.3]]], dtype=torch.float64, requires_grad=True)
    s, _ = if_sequence(x, None, surrogate="atan", alpha=2.0)
    s.sum().backward()
    u = 0.3 - 1.0
    assert x.grad.item() == pytest.approx(1.0 / (1 + (math.pi * u) ** 2), rel=1e-12)
