"""A custom surrogate on the cpu kernels: the forward saves the charged potential ``h`` it
computes anyway (in place of ``x`` when tau needs no gradient), and the backward walks the layer
in column blocks of that ``h`` with one direct kernel call per block: it never re-runs the
forward for ``h`` and makes no op dispatch per block. Gradients stay the reference loop's for
generated layers: odd sizes, T = 1, block widths that do not divide the layer, float64 /
float32 / bfloat16, ``v0`` and ``tau`` with or without a gradient, NaN and inf inputs."""

from __future__ import annotations

import itertools

import pytest
import torch
from kernel_cases import fused_backends, run_op

from membra.kernels import fused, neuron_sequence

pytestmark = pytest.mark.skipif(not fused_backends("cpu"), reason="cpu kernels not built")

STATE = {torch.float64: torch.float64, torch.float32: torch.float32,
         torch.bfloat16: torch.float32}
TOL = {torch.float64: 1e-10, torch.float32: 5e-5, torch.bfloat16: 2e-2}  # float32: up to 9 steps


def smooth(u):
    return torch.atan(2.0 * u) + 0.05 * u ** 3


def charged_potential(x, v0, *, lif, soft, tau, v_th, v_reset):
    """``h_t`` of every step by a plain loop over ``x [T, M]`` (the equations of
    docs/kernels.md, in the state dtype)."""
    v, hs = v0.clone(), []
    for xt in x:
        h = v + (xt - (v - v_reset)) / tau if lif else v + xt
        s = (h - v_th >= 0).to(h.dtype)
        v = h - v_th * s if soft else h * (1 - s) + v_reset * s
        hs.append(h)
    return torch.stack(hs)


def _blocks(monkeypatch, neurons, T, itemsize):
    """Blocks of ``neurons`` neurons in the blockwise backward (``BLOCK_BYTES`` is per
    thread)."""
    monkeypatch.setattr(torch, "get_num_threads", lambda: 1)
    monkeypatch.setattr(fused, "BLOCK_BYTES", neurons * T * itemsize)


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32, torch.bfloat16], ids=str)
@pytest.mark.parametrize("neuron,reset,tau_grad", list(itertools.product(
    ["lif", "if"], ["soft", "hard"], [False, True])))
def test_the_forward_saves_h_in_place_of_x(dtype, neuron, reset, tau_grad):
    g = torch.Generator().manual_seed(len(neuron) + 3 * tau_grad)
    T, M = 7, 29
    x = (torch.randn(T, M, generator=g) * 1.4 + 0.4).to(dtype).requires_grad_(True)
    x.data[0, :4] = 1.8 if neuron == "lif" else 0.8  # h at (or next to) v_th at step 0
    tau = torch.tensor(2.0 if neuron == "lif" else 1.0, dtype=dtype, requires_grad=tau_grad)
    saved = []

    def pack(t):
        saved.append(t)
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        s, _ = neuron_sequence(x, neuron=neuron, tau=tau, v_th=0.8, v_reset=-0.2, reset=reset,
                               surrogate=smooth, backend="cpu")
    big = [t for t in saved if t.shape == (T, M)]
    want_h = charged_potential(x.detach().to(STATE[dtype]), torch.zeros(M, dtype=STATE[dtype]),
                               lif=neuron == "lif", soft=reset == "soft", tau=2.0 if
                               neuron == "lif" else 1.0, v_th=0.8, v_reset=-0.2)
    hs = [t for t in big if t.dtype == STATE[dtype] and torch.equal(t, want_h)]
    assert len(hs) == 1, f"h is not saved: saved {[(t.dtype, tuple(t.shape)) for t in big]}"
    # x only where the tau gradient needs it (the LIF charge terms)
    assert len(big) == 1 + (tau_grad and neuron == "lif"), [t.dtype for t in big]
    s.backward(torch.ones_like(s))
    assert torch.isfinite(x.grad.float()).all()


@pytest.mark.parametrize("T,M,block", [(1, 9, 4), (3, 41, 7), (8, 33, 1), (5, 64, 64),
                                       (4, 17, 10_000)])
@pytest.mark.parametrize("tau_grad", [False, True])
def test_the_backward_neither_reruns_the_forward_nor_dispatches_per_block(monkeypatch, T, M,
                                                                          block, tau_grad):
    _blocks(monkeypatch, block, T, 8)
    calls = []
    for name in ("neuron_h", "neuron_bwd_cols"):
        op = getattr(fused, name)
        monkeypatch.setattr(fused, name, lambda *a, _op=op, _n=name, **k: calls.append(_n)
                            or _op(*a, **k))
    g = torch.Generator().manual_seed(T * M)
    x = torch.randn(T, M, generator=g, dtype=torch.float64)
    gs = torch.randn(T, M, generator=g, dtype=torch.float64)
    gv = torch.zeros(M, dtype=torch.float64)
    tau = torch.tensor(1.5, dtype=torch.float64) if tau_grad else 1.5
    got = run_op("cpu", "lif", x, None, tau, gs, gv, surrogate=smooth)
    assert calls == [], f"op calls in the blockwise backward: {calls}"
    want = run_op("reference", "lif", x, None, tau, gs, gv, surrogate=smooth)
    for name, a, b in zip(("spikes", "v_T", "grad_x", "grad_v0", "grad_tau"), got, want,
                          strict=True):
        if b is not None:
            torch.testing.assert_close(a, b, atol=1e-10, rtol=1e-10,
                                       msg=lambda m, n=name: f"{n}: {m}")


def _generated_cases(n=24, seed=2026):
    """Seeded layers: T in 1..9, odd and non-power-of-two widths, block widths that do not
    divide them, every dtype, kind, reset and detach setting, v0 / tau with or without a
    gradient, some with NaN or inf inputs."""
    g = torch.Generator().manual_seed(seed)
    dtypes = [torch.float64, torch.float32, torch.bfloat16]

    def pick(seq):
        return seq[int(torch.randint(len(seq), (1,), generator=g))]

    for i in range(n):
        yield pytest.param(dict(
            T=pick([1, 2, 3, 5, 9]), M=pick([1, 7, 31, 45, 100]), block=pick([1, 3, 13, 64]),
            dtype=pick(dtypes), neuron=pick(["lif", "if"]), reset=pick(["soft", "hard"]),
            detach=pick([True, False]), v0_grad=pick([True, False]),
            tau_grad=pick([True, False]), bad=pick([None, None, "nan", "inf"]), seed=i),
            id=f"case{i}")


@pytest.mark.parametrize("case", list(_generated_cases()))
def test_generated_layers_give_the_reference_gradients(monkeypatch, case):
    c = case
    dtype, T, M = c["dtype"], c["T"], c["M"]
    _blocks(monkeypatch, c["block"], T, 8 if dtype == torch.float64 else 4)
    g = torch.Generator().manual_seed(c["seed"])
    x = (torch.randn(T, 2, M, generator=g) * 1.3 + 0.3).to(dtype)
    if c["bad"]:
        x[T // 2, 1, M // 2] = float(c["bad"])
    v0 = (torch.randn(M, generator=g) * 0.3).to(dtype) if c["v0_grad"] else None
    tau = torch.tensor(2.5, dtype=dtype) if c["tau_grad"] else 2.5
    gs = torch.randn(T, 2, M, generator=g).to(dtype)
    gv = torch.randn(2, M, generator=g).to(dtype)
    kw = dict(reset=c["reset"], surrogate=smooth, detach_reset=c["detach"], v_th=0.9,
              v_reset=-0.1)
    got = run_op("cpu", c["neuron"], x, v0, tau, gs, gv, **kw)

    def ref(t):  # bfloat16 is computed in float32 by the kernel
        if not isinstance(t, torch.Tensor):
            return t
        return t.float() if dtype == torch.bfloat16 else t

    want = run_op("reference", c["neuron"], ref(x), ref(v0), ref(tau), ref(gs), ref(gv), **kw)
    for name, a, b in zip(("spikes", "v_T", "grad_x", "grad_v0", "grad_tau"), got, want,
                          strict=True):
        if b is None:
            assert a is None or name == "grad_tau", name
            continue
        torch.testing.assert_close(a, b.to(a.dtype), atol=TOL[dtype], rtol=TOL[dtype],
                                   equal_nan=True, msg=lambda m, n=name: f"{n}: {m}")


def test_a_replaced_cpu_kernel_is_served_through_the_op_with_x_kept(monkeypatch):
    # (what Triton's interpreter does on CPU tensors): the backward then calls the op per
    # block, which needs x, so the forward keeps it
    _blocks(monkeypatch, 5, 4, 8)
    op = fused.neuron_bwd_cols
    original = op._backend_fns["cpu"]
    calls = []
    monkeypatch.setitem(op._backend_fns, "cpu",
                        lambda *a, **k: calls.append(a[15] - a[14]) or original(*a, **k))
    g = torch.Generator().manual_seed(11)
    x = torch.randn(4, 23, generator=g, dtype=torch.float64)
    gs = torch.randn(4, 23, generator=g, dtype=torch.float64)
    gv = torch.zeros(23, dtype=torch.float64)
    got = run_op("cpu", "lif", x, None, 2.0, gs, gv, surrogate=smooth)
    assert calls == [5, 5, 5, 5, 3], calls
    want = run_op("reference", "lif", x, None, 2.0, gs, gv, surrogate=smooth)
    torch.testing.assert_close(got[2], want[2], atol=1e-10, rtol=1e-10)
