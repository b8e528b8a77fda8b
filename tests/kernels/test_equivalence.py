"""Every fused backend equals the reference loop: spikes, final potential and the gradients
for x, v0 and tau (specs/kernels.md, "Tests every backend passes")."""

from __future__ import annotations

import itertools

import pytest
import torch
from kernel_cases import backend_params, run_op

from membra.functional import surrogate_grad

SURROGATES = ["sigmoid", "atan", "rectangular", "triangle"]
TOL = dict(atol=1e-5, rtol=1e-5)


def assert_same(got, want, **tol):
    tol = tol or TOL
    names = ("spikes", "v_T", "grad_x", "grad_v0", "grad_tau")
    for name, g, w in zip(names, got, want, strict=True):
        if w is None:
            assert g is None or not g.abs().any(), name
            continue
        assert g is not None, name
        torch.testing.assert_close(g.cpu().to(w.dtype), w, **tol, msg=lambda m, n=name: f"{n}: {m}")


def make_case(T, shape, device, seed=0, v0_shape=None, dtype=torch.float32):
    g = torch.Generator().manual_seed(seed)
    x = (torch.randn(T, *shape, generator=g) * 1.2 + 0.3).to(dtype)
    v0 = torch.randn(*(v0_shape or shape[1:]), generator=g).mul(0.3).to(dtype)
    gs = torch.randn(T, *shape, generator=g).to(dtype)
    gv = torch.randn(*shape, generator=g).to(dtype)
    return x.to(device), v0.to(device), gs.to(device), gv.to(device)


@pytest.mark.parametrize("backend,device", backend_params())
@pytest.mark.parametrize("neuron,reset,detach", list(itertools.product(
    ["lif", "if"], ["soft", "hard"], [True, False])))
@pytest.mark.parametrize("surrogate", SURROGATES)
@pytest.mark.parametrize("T", [1, 2, 7, 32])
def test_matches_reference(backend, device, neuron, reset, detach, surrogate, T):
    # 3 x 37 = 111 neurons: no multiple of any vector width or block size
    x, v0, gs, gv = make_case(T, (3, 37), device, seed=T)
    tau = torch.tensor(2.5, device=device)
    kw = dict(reset=reset, surrogate=surrogate, detach_reset=detach, v_th=0.9, v_reset=-0.1,
              alpha=None if T % 2 else 3.0)
    want = run_op("reference", neuron, x, v0, tau, gs, gv, **kw)
    got = run_op(backend, neuron, x, v0, tau, gs, gv, **kw)
    assert want[0].sum() > 0, "the case should make some neurons fire"
    assert_same(got, [w.cpu() if w is not None else None for w in want])


@pytest.mark.parametrize("backend,device", backend_params())
@pytest.mark.parametrize("neuron", ["lif", "if"])
def test_broadcast_v0_scalar_tau_and_noncontiguous_x(backend, device, neuron):
    g = torch.Generator().manual_seed(3)
    base = torch.randn(5, 9, 4, 2, generator=g).to(device) * 1.5
    x = base.permute(0, 2, 1, 3)  # [T=5, B=4, 9, 2], non-contiguous
    assert not x.is_contiguous()
    gs = torch.randn(x.shape, generator=g).to(device)
    gv = torch.randn(x.shape[1:], generator=g).to(device)
    for v0 in (torch.full((1, 9, 1), 0.25, device=device),  # broadcast over batch and last dim
               torch.randn(9, 2, generator=g).to(device).t().t(),  # no batch dim
               0.5):
        want = run_op("reference", neuron, x, v0, 1.7, gs, gv)
        got = run_op(backend, neuron, x, v0, 1.7, gs, gv)
        assert_same(got, [w.cpu() if w is not None else None for w in want])
        if isinstance(v0, torch.Tensor):
            assert got[3].shape == v0.shape


@pytest.mark.parametrize("backend,device", backend_params())
def test_empty_batch(backend, device):
    x = torch.randn(4, 0, 6, device=device)
    v0 = torch.zeros(1, 6, device=device)
    gs, gv = torch.zeros_like(x), torch.zeros(0, 6, device=device)
    got = run_op(backend, "lif", x, v0, torch.tensor(2.0, device=device), gs, gv)
    assert got[0].shape == (4, 0, 6) and got[1].shape == (0, 6)
    assert got[2].shape == x.shape and torch.equal(got[3].cpu(), torch.zeros(1, 6))
    assert float(got[4]) == 0.0


@pytest.mark.parametrize("backend,device", backend_params())
@pytest.mark.parametrize("reset", ["soft", "hard"])
def test_exact_threshold_hits_fire(backend, device, reset):
    # dyadic values: every backend computes h exactly, and h == v_th must fire (>=)
    x = torch.tensor([[0.5, 2.0, 1.0, 0.25]] * 4, device=device).unsqueeze(1)  # [4, 1, 4]
    for neuron in ("if", "lif"):
        gs, gv = torch.ones_like(x), torch.ones_like(x[0])
        want = run_op("reference", neuron, x, None, 2.0, gs, gv, reset=reset)
        got = run_op(backend, neuron, x, None, 2.0, gs, gv, reset=reset)
        assert_same(got, [w.cpu() if w is not None else None for w in want])
    # IF, x = 0.5: h_1 = 0.5, h_2 = 1.0 == v_th fires
    s, _ = run_op(backend, "if", x, None, None, gs, gv, reset=reset)[:2]
    assert s[1, 0, 0] == 1 and s[0, 0, 0] == 0
    # LIF tau=2 from 0, x = 2.0: h_1 = 1.0 == v_th fires
    s = run_op(backend, "lif", x, None, 2.0, gs, gv, reset=reset)[0]
    assert s[0, 0, 1] == 1


@pytest.mark.parametrize("backend,device", backend_params())
@pytest.mark.parametrize("surrogate", SURROGATES)
def test_surrogate_formula(backend, device, surrogate):
    # IF, one step, v0 = 0, v_th = 0: grad_x = surrogate'(x) (soft, detached, gv = 0)
    u = torch.linspace(-1.5, 1.5, 301, device=device)
    x = u.reshape(1, 1, -1)
    got = run_op(backend, "if", x, None, None, torch.ones_like(x), torch.zeros_like(x[0]),
                 v_th=0.0, reset="soft", detach_reset=True, surrogate=surrogate, alpha=2.5)[2]
    want = surrogate_grad(u.cpu(), surrogate, 2.5).reshape(1, 1, -1)
    torch.testing.assert_close(got.cpu(), want, **TOL)


@pytest.mark.parametrize("backend,device", backend_params())
def test_bf16_input_has_fp32_state(backend, device):
    x, v0, gs, gv = make_case(16, (2, 50), device, seed=5)
    x, gs, gv = x.bfloat16(), gs.bfloat16(), gv.bfloat16()
    got = run_op(backend, "lif", x, v0, torch.tensor(2.0, device=device), gs, gv)
    assert got[0].dtype == torch.bfloat16 and got[1].dtype == torch.bfloat16
    assert got[2].dtype == torch.bfloat16
    # the same as the float32 reference on the upcast input, up to bf16 rounding of results
    want = run_op("reference", "lif", x.float(), v0, torch.tensor(2.0), gs.float(), gv.float())
    assert torch.equal(got[0].float().cpu(), want[0].cpu())
    tol = dict(atol=1e-2, rtol=1e-2)
    for g, w in zip(got[1:], want[1:], strict=True):
        torch.testing.assert_close(g.float().cpu(), w.cpu(), **tol)


@pytest.mark.parametrize("backend", ["reference"] + [p.values[0] for p in backend_params()
                                                     if p.values[1] == "cpu" and p.values[0]])
@pytest.mark.parametrize("reset", ["soft", "hard"])
def test_gradcheck_float64(backend, reset):
    # with detach_reset=True the final potential is piecewise smooth in x, v0 and tau (the
    # surrogate never enters), so its analytic gradient is the true one
    g = torch.Generator().manual_seed(7)
    x = (torch.randn(6, 2, 5, generator=g, dtype=torch.float64) * 1.3).requires_grad_()
    v0 = (torch.randn(1, 5, generator=g, dtype=torch.float64) * 0.2).requires_grad_()
    tau = torch.tensor(1.8, dtype=torch.float64, requires_grad=True)

    def f(x, v0, tau):
        from membra.kernels import lif_sequence
        s, v = lif_sequence(x, v0, tau=tau, reset=reset, detach_reset=True, backend=backend)
        return v

    assert torch.autograd.gradcheck(f, (x, v0, tau), eps=1e-6, atol=1e-6)
