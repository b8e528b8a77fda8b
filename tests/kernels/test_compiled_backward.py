"""A custom surrogate's backward compiled whole (membra.kernels.compiled_backward): the same
gradients as the blockwise backward but for exp's last bits (NaN, inf and exact threshold hits
included) and the reference's within float tolerance, for every flag set; the blockwise
backward where the compiled one does not apply (more steps, a tau gradient, fresh memory, a
surrogate dynamo cannot compile), and the compiled code follows changes of the surrogate."""

from __future__ import annotations

import itertools
import warnings

import pytest
import torch
from kernel_cases import fused_backends, run_op

from membra.functional import surrogate_compiled as sc
from membra.kernels import compiled_backward as cb
from membra.kernels import memory

pytestmark = pytest.mark.skipif(not fused_backends("cpu"), reason="cpu kernels not built")


@pytest.fixture
def walks(monkeypatch):
    """Every layer counts as large and freed memory as reused; returns the list of what each
    backward's compiled walk back returned (``None``: it fell back to the blockwise one)."""
    monkeypatch.setattr(sc, "MIN_ELEMENTS", 0)
    monkeypatch.setattr(cb, "_reuse_active", lambda: True)
    calls = []
    original = cb.walk_back
    monkeypatch.setattr(cb, "walk_back", lambda *a, **k: calls.append(original(*a, **k))
                        or calls[-1])
    return calls


def _case(T, N, dtype, seed, special=True):
    """Input with exact threshold hits (x = 1 from v0 = 0 with v_th = 1 for IF; for LIF the
    hits come from h = 0.5 x = v_th with x = 2 v_th), and NaN / +-inf in a few neurons."""
    g = torch.Generator().manual_seed(seed)
    x = (torch.randn(T, 2, N, generator=g) * 1.5 + 0.4).to(dtype)
    if special:
        x[0, 0, :3] = 2.0  # LIF, tau 2, v0 0: h = 1.0 = v_th exactly
        x[0, 1, :3] = 1.0  # IF: h = 1.0 = v_th exactly
        x[-1, 0, 3] = float("nan")
        x[0, 1, 4] = float("inf")
        x[-1, 1, 5] = -float("inf")
    gs = torch.randn(T, 2, N, generator=g).to(dtype)
    gv = torch.randn(2, N, generator=g).to(dtype)
    return x, gs, gv


def _grads(neuron, x, gs, gv, **kw):
    """(grad_x, grad_v0) of a learnable v0 (spikes and v_T are the forward's: not compared)."""
    v0 = torch.zeros(x.shape[1:], dtype=x.dtype)
    return run_op("cpu", neuron, x, v0, 2.0, gs, gv, **kw)[2:4]


def _bitwise(a, b, what):
    torch.testing.assert_close(a, b, rtol=0, atol=0, equal_nan=True, msg=lambda m: f"{what}: {m}")


def _same_but_exp_rounding(a, b, what):
    """Equal but for the last bits of ``f'`` (likely: inductor evaluates ``exp`` with SIMD code
    in a vectorised loop and with libm in its scalar tail, and the derivative alone and the
    whole walk back, two compiled loops of different extents, need not put a neuron in the same
    one; seen: 1-3 of 58-290 gradients about one ulp apart, after other shapes were traced).
    NaN and infinities sit in the same places; a real error is orders of magnitude larger."""
    torch.testing.assert_close(a, b, rtol=4 * torch.finfo(a.dtype).eps, atol=0, equal_nan=True,
                               msg=lambda m: f"{what}: {m}")


def _surrogate(u):
    return torch.sigmoid(4.0 * u)


def test_the_walk_back_equals_the_blockwise_backward(walks, monkeypatch):
    x, gs, gv = _case(5, 37, torch.float32, 0)
    kw = dict(surrogate=_surrogate, reset="hard", detach_reset=False)
    got = _grads("lif", x, gs, gv, **kw)
    assert len(walks) == 1 and walks[0] is not None, "the compiled walk back did not run"
    monkeypatch.setattr(cb, "MAX_STEPS", 0)
    want = _grads("lif", x, gs, gv, **kw)
    assert len(walks) == 1  # the blockwise backward: no walk back
    for name, a, b in zip(("grad_x", "grad_v0"), got, want, strict=True):
        _same_but_exp_rounding(a, b, name)
    assert torch.isnan(got[0]).any() and torch.isfinite(got[0]).any()  # the NaN reaches gx


def test_one_trace_serves_other_thresholds_and_widths(walks):
    # v_th, v_reset and 1/tau are tensors of the trace and the width is dynamic: one trace
    from torch._dynamo.utils import counters

    graphs = []
    for v_th, n in ((1.0, 21), (0.7, 13), (0.35, 40)):
        xn, gsn, gvn = _case(4, n, torch.float64, n, special=False)
        kw = dict(surrogate=_surrogate, v_th=v_th, v_reset=-0.2, reset="hard")
        got = _grads("lif", xn, gsn, gvn, **kw)
        want = run_op("reference", "lif", xn, torch.zeros(xn.shape[1:], dtype=xn.dtype), 2.0,
                      gsn, gvn, **kw)[2:4]
        for a, b in zip(got, want, strict=True):
            torch.testing.assert_close(a, b, atol=1e-12, rtol=1e-12)
        graphs.append(counters["stats"]["unique_graphs"])
    assert len(walks) == 3 and all(w is not None for w in walks)
    assert graphs[0] == graphs[1] == graphs[2], f"traced again: {graphs}"


@pytest.mark.parametrize("why", ["steps", "tau-grad", "fresh-memory", "bfloat16"])
def test_outside_its_range_the_blockwise_backward_runs(walks, monkeypatch, why):
    T = cb.MAX_STEPS + 1 if why == "steps" else 3
    dtype = torch.bfloat16 if why == "bfloat16" else torch.float64
    x, gs, gv = _case(T, 9, dtype, 2, special=False)
    if why == "fresh-memory":
        monkeypatch.setattr(cb, "_reuse_active", lambda: False)
    tau = torch.tensor(2.0, dtype=torch.float64) if why == "tau-grad" else 2.0
    v0 = torch.zeros(2, 9, dtype=torch.float64 if dtype == torch.float64 else torch.float32)
    got = run_op("cpu", "lif", x, v0, tau, gs, gv.to(v0.dtype), surrogate=_surrogate)
    want = run_op("reference", "lif", x, v0, tau, gs, gv.to(v0.dtype), surrogate=_surrogate)
    assert walks == []
    tol = 1e-12 if dtype == torch.float64 else 2e-2
    for a, b in zip(got[2:], want[2:], strict=True):
        if b is not None:
            torch.testing.assert_close(a.float(), b.float(), atol=tol, rtol=tol)


def test_reused_memory_is_what_membra_or_glibc_applied(monkeypatch):
    monkeypatch.delenv("MALLOC_MMAP_THRESHOLD_", raising=False)
    monkeypatch.setattr(memory, "_APPLIED", {})
    assert not cb._reuse_active()
    monkeypatch.setenv("MALLOC_MMAP_THRESHOLD_", str(1 << 30))
    assert cb._reuse_active()
    monkeypatch.delenv("MALLOC_MMAP_THRESHOLD_")
    assert memory.reuse_freed_memory()
    assert cb._reuse_active()


def test_a_surrogate_dynamo_cannot_trace_falls_back_once_with_a_warning(walks):
    def opaque(u):  # a data-dependent Python branch: no full graph
        return torch.sigmoid(4.0 * u) if float(u.sum()) > -1e30 else u

    x, gs, gv = _case(3, 11, torch.float64, 3, special=False)
    with pytest.warns(RuntimeWarning, match="backward of surrogate"):
        got = _grads("if", x, gs, gv, surrogate=opaque)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no second warning, no second attempt
        again = _grads("if", x, gs, gv, surrogate=opaque)
    assert walks == [None]
    assert sc._entries(opaque)[cb.KEY] is None
    want = run_op("reference", "if", x, torch.zeros(2, 11, dtype=torch.float64), 2.0, gs, gv,
                  surrogate=opaque)[2:4]
    for a, b, c in zip(got, again, want, strict=True):
        torch.testing.assert_close(a, c, atol=1e-12, rtol=1e-12)
        _bitwise(a, b, "second call")


def test_the_walk_back_follows_a_changed_closure(walks):
    k = [4.0]

    def closure(u):
        return torch.sigmoid(k[0] * u)

    x, gs, gv = _case(3, 10, torch.float64, 4, special=False)
    v0 = torch.zeros(2, 10, dtype=torch.float64)
    for value in (4.0, 1.5):
        k[0] = value
        got = _grads("lif", x, gs, gv, surrogate=closure)
        want = run_op("reference", "lif", x, v0, 2.0, gs, gv, surrogate=closure)[2:4]
        for a, b in zip(got, want, strict=True):
            torch.testing.assert_close(a, b, atol=1e-12, rtol=1e-12)
    assert len(walks) == 2 and all(w is not None for w in walks)


def test_a_surrogate_that_is_not_elementwise_is_named_without_a_compile_warning(walks):
    from membra.kernels import lif_sequence

    x = torch.randn(3, 2, 8, requires_grad=True)
    s, _ = lif_sequence(x, surrogate=lambda u: u.sum(dim=-1, keepdim=True), backend="cpu")
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)
        with pytest.raises(ValueError, match="elementwise"):
            s.sum().backward()


@pytest.mark.slow  # one trace per step count: seconds each
def test_every_step_count_up_to_the_limit_stays_compiled(walks):
    # dynamo's default recompile limit (8) would drop to eager after 8 step counts
    for T in range(1, 11):
        x, gs, gv = _case(T, 6, torch.float64, T, special=False)
        got = _grads("lif", x, gs, gv, surrogate=_surrogate)
        want = run_op("reference", "lif", x, torch.zeros(2, 6, dtype=torch.float64), 2.0, gs,
                      gv, surrogate=_surrogate)[2:4]
        for a, b in zip(got, want, strict=True):
            torch.testing.assert_close(a, b, atol=1e-12, rtol=1e-12)
    assert len(walks) == 10 and all(w is not None for w in walks)


_FLAGS = list(itertools.product(["lif", "if"], ["soft", "hard"], [True, False],
                                ["given", "none"], [torch.float32, torch.float64]))


@pytest.mark.slow  # one trace per flag set and step count: seconds each
@pytest.mark.parametrize("i", range(len(_FLAGS)),
                         ids=["-".join(map(str, f)).replace("torch.", "") for f in _FLAGS])
def test_every_flag_set_equals_blockwise_and_the_reference(walks, monkeypatch, i):
    neuron, reset, detach, gv_kind, dtype = _FLAGS[i]
    T = (1, 5, 16)[i % 3]
    x, gs, gv = _case(T, 29, dtype, i)
    if gv_kind == "none":
        gv = torch.zeros_like(gv)
    kw = dict(surrogate=_surrogate, reset=reset, detach_reset=detach)
    v0 = torch.zeros(x.shape[1:], dtype=dtype)

    def grads():
        x_ = x.detach().clone().requires_grad_()
        v0_ = v0.clone().requires_grad_()
        seq = sc_lif if neuron == "lif" else sc_if
        s, v = seq(x_, v0_, **kw)
        outs, gouts = [s], [gs]
        if gv_kind == "given":
            outs.append(v)
            gouts.append(gv)
        return torch.autograd.grad(outs, [x_, v0_], gouts)

    got = grads()
    assert walks[-1] is not None
    monkeypatch.setattr(cb, "MAX_STEPS", 0)
    blockwise = grads()
    for name, a, b in zip(("grad_x", "grad_v0"), got, blockwise, strict=True):
        _same_but_exp_rounding(a, b, name)
    # against the reference loop where the input is finite (NaN and inf columns aside)
    finite = torch.isfinite(x).all(0)
    want = run_op("reference", neuron, x, v0, 2.0, gs, gv, **kw)[2:4]
    tol = 1e-10 if dtype == torch.float64 else 1e-5
    torch.testing.assert_close(got[0][:, finite], want[0][:, finite], atol=tol, rtol=tol)
    torch.testing.assert_close(got[1][finite], want[1][finite], atol=tol, rtol=tol)


def sc_lif(x, v0, **kw):
    from membra.kernels import lif_sequence

    return lif_sequence(x, v0, tau=2.0, backend="cpu", **kw)


def sc_if(x, v0, **kw):
    from membra.kernels import if_sequence

    return if_sequence(x, v0, backend="cpu", **kw)
