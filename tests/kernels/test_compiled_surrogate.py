"""A custom surrogate on a large CPU layer: its derivative is compiled once into one fused loop
(membra.functional.surrogate_compiled) instead of running f and its autograd backward op by
op in every block of the backward; gradients stay the reference's, and the compiled form
follows every change of f (closure, module parameter)."""

from __future__ import annotations

import itertools

import pytest
import torch
from kernel_cases import fused_backends, run_op

from membra.functional import Surrogate
from membra.kernels import fused, lif_sequence

pytestmark = pytest.mark.skipif(not fused_backends("cpu"), reason="cpu kernels not built")


@pytest.fixture
def compiled(monkeypatch):
    """Every layer counts as large; the blockwise backward (not the compiled walk back of
    test_compiled_backward.py), in blocks set by each test."""
    from membra.functional import surrogate_compiled as sc
    from membra.kernels import compiled_backward

    monkeypatch.setattr(sc, "MIN_ELEMENTS", 0)
    monkeypatch.setattr(compiled_backward, "MAX_STEPS", 0)
    return sc


def _blocks(monkeypatch, T, neurons, itemsize):
    """Blocks of ``neurons`` neurons (``BLOCK_BYTES`` is per thread)."""
    monkeypatch.setattr(fused, "BLOCK_BYTES", neurons * T * itemsize // torch.get_num_threads())


def test_the_derivative_is_not_rerun_op_by_op_in_every_block(compiled, monkeypatch):
    # the eager derivative runs f and its autograd backward op by op, once per block and call
    # (here 3 blocks x 3 calls); the compiled one is one fused loop per block
    _blocks(monkeypatch, 4, 7, 4)
    eager = []
    original = Surrogate.derivative
    monkeypatch.setattr(Surrogate, "derivative",
                        lambda self, u: eager.append(u.shape) or original(self, u))
    x = torch.randn(4, 2, 10, requires_grad=True)
    for _ in range(3):
        s, _ = lif_sequence(x, surrogate=lambda u: torch.atan(3.0 * u) / 3.0, backend="cpu")
        s.backward(torch.ones_like(s))
    assert eager == [], f"the derivative was evaluated eagerly on blocks {eager}"
    want = run_op("reference", "lif", x, None, 2.0, torch.ones_like(x), torch.zeros(2, 10),
                  surrogate=lambda u: torch.atan(3.0 * u) / 3.0)[2]
    torch.testing.assert_close(x.grad / 3, want, atol=1e-5, rtol=1e-5)


class _ScaledTanh(torch.nn.Module):
    """A module surrogate with a (learnable) parameter read by its forward."""

    def __init__(self):
        super().__init__()
        self.k = torch.nn.Parameter(torch.tensor(2.0))

    def forward(self, u):
        return torch.tanh(self.k * u)


def _family():
    k = 1.7  # a Python constant in a closure

    def closure(u):
        return torch.sigmoid(k * u)

    return [
        pytest.param(lambda u: torch.sigmoid(4.0 * u), id="sigmoid"),
        pytest.param(lambda u: torch.atan(3.0 * u), id="atan"),
        pytest.param(lambda u: torch.where(u.abs() < 0.5, u, 0.5 * torch.sign(u)),
                     id="piecewise"),
        pytest.param(closure, id="closure-constant"),
        pytest.param(Surrogate.custom(lambda u: u / (1 + 5 * u.abs()), name="fast"),
                     id="surrogate-instance"),
        pytest.param(_ScaledTanh(), id="module-parameter"),
    ]


@pytest.mark.slow  # one compilation per surrogate and dtype: seconds each
@pytest.mark.parametrize("surrogate", _family())
@pytest.mark.parametrize("neuron,reset,detach", list(itertools.product(
    ["lif", "if"], ["soft", "hard"], [True, False]))[::3])
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32], ids=str)
def test_compiled_derivative_gives_the_reference(compiled, monkeypatch, surrogate, neuron,
                                                 reset, detach, dtype):
    T, N = 6, 37  # 37 neurons in blocks of 7: the last block is narrower
    _blocks(monkeypatch, T, 7, 8 if dtype == torch.float64 else 4)
    g = torch.Generator().manual_seed(N)
    x = (torch.randn(T, 2, N, generator=g) * 1.2 + 0.3).to(dtype)
    x[0, 0, :4] = 1.0  # exact threshold hits (v_th 0.9 after v0 -0.1 + ...)
    v0 = (torch.randn(N, generator=g) * 0.3).to(dtype)
    gs, gv = torch.randn(T, 2, N, generator=g).to(dtype), torch.randn(2, N, generator=g)
    tau = torch.tensor(2.5, dtype=dtype)
    kw = dict(reset=reset, surrogate=surrogate, detach_reset=detach, v_th=0.9, v_reset=-0.1)
    got = run_op("cpu", neuron, x, v0, tau, gs, gv.to(dtype), **kw)
    want = run_op("reference", neuron, x, v0, tau, gs, gv.to(dtype), **kw)
    tol = 1e-10 if dtype == torch.float64 else 1e-5
    for name, a, b in zip(("spikes", "v_T", "grad_x", "grad_v0", "grad_tau"), got, want,
                          strict=True):
        if b is not None:
            torch.testing.assert_close(a, b, atol=tol, rtol=tol,
                                       msg=lambda m, n=name: f"{n}: {m}")


@pytest.mark.slow
@pytest.mark.parametrize("tau_grad", [False, True], ids=["h-read", "tau-grad"])
def test_float64_gradients_of_x_v0_tau_equal_the_reference(compiled, monkeypatch, tau_grad):
    # without a tau gradient the backward reads the block's h, with one it re-runs the forward
    _blocks(monkeypatch, 4, 2, 8)
    g = torch.Generator().manual_seed(5)
    x = (torch.rand(4, 2, 5, generator=g, dtype=torch.float64) * 1.2)
    v0 = (torch.rand(1, 5, generator=g, dtype=torch.float64) * 0.3)
    tau = torch.tensor(2.5, dtype=torch.float64) if tau_grad else 2.5
    grads = []
    for backend in ("cpu", "reference"):
        leaves = [t.clone().requires_grad_() for t in (x, v0)]
        if tau_grad:
            leaves.append(tau.clone().requires_grad_())
        s, v = lif_sequence(leaves[0], leaves[1], tau=leaves[2] if tau_grad else tau,
                            backend=backend, detach_reset=False,
                            surrogate=lambda u: torch.atan(2.0 * u))
        grads.append(torch.autograd.grad((s * torch.arange(5.0)).sum() + v.sum(), leaves))
    for a, b in zip(*grads, strict=True):
        torch.testing.assert_close(a, b, atol=1e-12, rtol=1e-12)


@pytest.mark.slow
def test_the_compiled_derivative_follows_changes_of_the_function(compiled, monkeypatch):
    _blocks(monkeypatch, 3, 4, 8)
    x = torch.randn(3, 2, 9, dtype=torch.float64)
    gs = torch.randn(3, 2, 9, dtype=torch.float64)
    module = _ScaledTanh().double()
    scale = [2.0]

    def closure(u):
        return torch.sigmoid(scale[0] * u)

    for sg, change in ((module, lambda: module.k.data.fill_(0.5)),
                       (closure, lambda: scale.__setitem__(0, 0.7))):
        for _ in range(2):  # before and after the change
            got = run_op("cpu", "lif", x, 0.0, 2.0, gs, torch.zeros(2, 9, dtype=torch.float64),
                         surrogate=sg)[2]
            want = run_op("reference", "lif", x, 0.0, 2.0, gs,
                          torch.zeros(2, 9, dtype=torch.float64), surrogate=sg)[2]
            torch.testing.assert_close(got, want, atol=1e-12, rtol=1e-12)
            change()


def test_a_surrogate_that_is_not_elementwise_is_named_on_the_compiled_path(compiled,
                                                                           monkeypatch):
    _blocks(monkeypatch, 4, 16, 4)
    x = torch.randn(4, 2, 40, requires_grad=True)
    s, _ = lif_sequence(x, surrogate=lambda u: u.sum(dim=-1, keepdim=True), backend="cpu")
    with pytest.raises(ValueError, match="elementwise"):
        s.sum().backward()
