"""The inference path (no gradient to compute: nothing saved, spikes as bool/uint8 on request),
the cpu kernels' output pool, and the LIF charge for a power-of-two tau: each equal to the
float/reference path, bit for bit where the spec says so."""

from __future__ import annotations

import itertools

import pytest
import torch
from kernel_cases import fused_backends

from membra.kernels import if_sequence, lif_sequence, neuron_sequence

BACKENDS = ["reference"] + fused_backends("cpu")
SURROGATES = ["sigmoid", "atan", "rectangular", "triangle", lambda u: torch.tanh(3.0 * u)]
DTYPES = [torch.float32, torch.float64, torch.bfloat16, torch.float16]
needs_cpu = pytest.mark.skipif(not fused_backends("cpu"), reason="cpu kernels not built")


def hard_case(T, shape, dtype, seed):
    """Input with exact threshold hits, NaN and +-inf in some neurons (they spike NaN)."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(T, *shape, generator=g) * 1.3 + 0.4
    flat = x.view(T, -1)
    m = flat.shape[1]
    flat[0, : m // 7] = 2.0  # h = 1.0 = v_th exactly for LIF tau 2 from 0, and for IF from 0
    flat[T // 2, m // 5] = float("nan")
    flat[T - 1, m // 3] = float("inf")
    flat[T // 3, m // 2] = -float("inf")
    return x.to(dtype)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("neuron,reset", list(itertools.product(["lif", "if"],
                                                                 ["soft", "hard"])))
@pytest.mark.parametrize("surrogate", SURROGATES, ids=lambda s: s if isinstance(s, str)
                         else "custom")
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("spike_dtype", [torch.bool, torch.uint8], ids=str)
def test_integer_spikes_equal_the_float_path(backend, neuron, reset, surrogate, dtype,
                                             spike_dtype):
    T = 1 + (DTYPES.index(dtype) * 5 + len(reset)) % 9  # T from 1 to 9 across the family
    x = hard_case(T, (3, 37), dtype, seed=T)
    v0 = torch.linspace(-0.3, 0.3, 37, dtype=dtype)
    kw = dict(neuron=neuron, reset=reset, surrogate=surrogate, v_th=1.0, v_reset=0.0,
              backend=backend)
    s, v = neuron_sequence(x, v0, **kw)
    with torch.no_grad():
        s8, v8 = neuron_sequence(x, v0, spike_dtype=spike_dtype, **kw)
    assert s8.dtype == spike_dtype and s8.shape == s.shape
    assert torch.equal(s8, s.ne(0).to(spike_dtype))  # NaN spikes give 1, as .bool() does
    assert bool(s.isnan().any()), "the case should make some spikes NaN"
    assert torch.equal(v8, v) or torch.allclose(v8, v, equal_nan=True, atol=0, rtol=0)
    assert v8.dtype == v.dtype


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("spike_dtype", [None, torch.bool, torch.uint8], ids=str)
@pytest.mark.parametrize("mode", ["no_grad", "no_input_requires_grad", "inference_mode"])
def test_inference_saves_nothing(backend, spike_dtype, mode):
    x = hard_case(5, (2, 50), torch.float32, seed=1)
    tau = torch.tensor(2.0)
    packed = []

    def pack(t):
        packed.append(tuple(t.shape))
        return t

    ctx = {"no_grad": torch.no_grad, "inference_mode": torch.inference_mode,
           "no_input_requires_grad": torch.enable_grad}[mode]
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t), ctx():
        s, v = lif_sequence(x, torch.zeros(50), tau=tau, backend=backend,
                            spike_dtype=spike_dtype)
    assert packed == [] and s.grad_fn is None and v.grad_fn is None
    assert not s.requires_grad and not v.requires_grad
    want = lif_sequence(x, backend="reference")[0]
    assert torch.equal(s, want.ne(0).to(s.dtype) if spike_dtype else want) or torch.allclose(
        s, want, equal_nan=True, atol=0, rtol=0)


@pytest.mark.parametrize("backend", BACKENDS)
def test_spike_dtype_is_refused_where_a_gradient_is_wanted(backend):
    x = torch.randn(4, 3, 5, requires_grad=True)
    with pytest.raises(ValueError, match="spike_dtype=torch.bool gives spikes without"):
        lif_sequence(x, backend=backend, spike_dtype=torch.bool)
    tau = torch.tensor(2.0, requires_grad=True)
    with pytest.raises(ValueError, match="without a gradient"):
        lif_sequence(x.detach(), tau=tau, backend=backend, spike_dtype=torch.uint8)
    for bad in (torch.float32, torch.int32, "bool", 1):
        with pytest.raises(ValueError, match="spike_dtype must be None"):
            if_sequence(x.detach(), backend=backend, spike_dtype=bad)


@needs_cpu
@pytest.mark.parametrize("tau", [1.0, 2.0, 4.0, 8.0, 1024.0, 2.0 ** 40, 3.0, 1.5, 2.5])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.bfloat16], ids=str)
def test_lif_charge_is_bitwise_the_reference_for_every_tau(tau, dtype):
    # a power-of-two tau is multiplied by its (exact) reciprocal: still bit for bit
    g = torch.Generator().manual_seed(int(tau) % 97)
    T = 11
    x = (torch.randn(T, 4, 129, generator=g) * 2.0 * tau).to(dtype)
    x[0, :, :7] = tau  # h = v0 + (tau - v0) / tau: exact hits of v_th = 1 from v0 = 0
    # bfloat16 keeps its potential in float32 in the kernel: the float32 computation, rounded
    xr = x.float() if dtype == torch.bfloat16 else x
    for reset in ("soft", "hard"):
        want_s, want_v = (t.to(dtype) for t in lif_sequence(xr, tau=tau, reset=reset,
                                                            backend="reference"))
        for grad in (False, True):
            with torch.set_grad_enabled(grad):
                xin = x.clone().requires_grad_(grad)
                s, v = lif_sequence(xin, tau=tau, reset=reset, backend="cpu")
            assert torch.equal(s, want_s), (tau, reset, grad)
            assert torch.equal(v, want_v), (tau, reset, grad)
        assert want_s[0, :, :7].all()


@needs_cpu
def test_pool_reuses_freed_outputs_and_never_shares_a_live_one():
    from membra.kernels import cpu

    cpu.pool_limit(1 << 30)
    g = torch.Generator().manual_seed(5)
    sizes = [(3, 64, 4096), (5, 64, 4096), (3, 64, 4096), (2, 2, 300)]  # 3 MiB, 5 MiB, small
    live: list[tuple[torch.Tensor, torch.Tensor]] = []
    reused = 0
    freed_ptrs: set[int] = set()
    for step in range(40):
        if live and torch.randint(0, 3, (1,), generator=g).item() == 0:
            s, _ = live.pop(int(torch.randint(0, len(live), (1,), generator=g)))
            freed_ptrs.add(s.data_ptr())
            del s
            continue
        shape = sizes[step % len(sizes)]
        x = torch.randn(shape, generator=g) + 0.5
        with torch.no_grad():
            s, _ = lif_sequence(x, backend="cpu")
        reused += s.data_ptr() in freed_ptrs
        live.append((s, x))
        for s_old, x_old in live:  # no output was overwritten by a later one
            assert torch.equal(s_old, lif_sequence(x_old, backend="reference")[0])
    assert reused > 0
    live.clear()
    assert cpu.pool_limit(0) == 0  # everything idle is given back


@needs_cpu
def test_pool_outputs_behave_like_tensors():
    x = torch.randn(8, 64, 2048, requires_grad=True)
    s, v = lif_sequence(x, backend="cpu")
    assert s.is_contiguous() and s.device.type == "cpu" and s.dtype == torch.float32
    s2 = s * 2  # ops, in-place ops and gradients on pool memory
    s.detach().add_(0)
    (s2.sum() + v.sum()).backward()
    assert x.grad.shape == x.shape and torch.isfinite(x.grad).all()
    x.grad.add_(1.0)  # a gradient accumulated in place on pool memory
    s3, _ = lif_sequence(x, backend="cpu")
    s3.sum().backward()
    assert torch.isfinite(x.grad).all()
    with pytest.raises(RuntimeError, match="not resizable"):  # as docs/kernels.md says
        s3.detach().resize_(9, 64, 2048)


@needs_cpu
def test_new_ops_pass_opcheck():
    x, v0, tau = torch.randn(5, 12), torch.randn(12), torch.tensor(2.0)
    utils = ("test_schema", "test_faketensor")
    for dt in (torch.float32, torch.bool, torch.uint8):
        torch.library.opcheck(torch.ops.membra.neuron_infer.default,
                              (x, v0, tau, 0, True, 1.0, 0.0, dt), test_utils=utils)
    torch.library.opcheck(torch.ops.membra.neuron_h.default,
                          (x, v0, tau, 0, False, 1.0, 0.0, 3, 10, torch.empty(5, 7)),
                          test_utils=utils)
    h = torch.empty(5, 12)
    torch.ops.membra.neuron_h(x, v0, tau, 0, False, 1.0, 0.0, 0, 12, h)
    gx, gv0 = torch.zeros_like(x), torch.zeros_like(v0)
    gs, gv = torch.randn(5, 12), torch.randn(12)
    args = (gs, gv, x, v0, tau, h[:, 2:9].clone(), gx, gv0, None, 0, False, 1.0, 0.0, True, 2, 9)
    torch.library.opcheck(torch.ops.membra.neuron_bwd_cols.default, args, test_utils=utils)
    torch.ops.membra.neuron_bwd_cols(*args)  # writes neurons [2, 9) only
    assert not gx[:, :2].any() and not gx[:, 9:].any() and gx[:, 2:9].any()
    # h given (read, not recomputed) and grad_v_final None (zero) give the same
    gx2, gv02 = torch.zeros_like(x), torch.zeros_like(v0)
    torch.ops.membra.neuron_bwd_cols(gs, gv, x, v0, tau, h[:, 2:9].clone(), gx2, gv02, None, 0,
                                     False, 1.0, 0.0, True, 2, 9, h[:, 2:9].clone())
    assert torch.equal(gx2, gx) and torch.equal(gv02, gv0)
    gx3, gv03 = torch.zeros_like(x), torch.zeros_like(v0)
    torch.ops.membra.neuron_bwd_cols(gs, torch.zeros(12), x, v0, tau, h[:, 2:9].clone(), gx3,
                                     gv03, None, 0, False, 1.0, 0.0, True, 2, 9)
    gx4, gv04 = torch.zeros_like(x), torch.zeros_like(v0)
    torch.ops.membra.neuron_bwd_cols(gs, None, x, v0, tau, h[:, 2:9].clone(), gx4, gv04, None,
                                     0, False, 1.0, 0.0, True, 2, 9)
    assert torch.equal(gx4, gx3) and torch.equal(gv04, gv03)
    with pytest.raises(ValueError, match=r"neurons \[3, 20\) are not in \[0, 12\]"):
        torch.ops.membra.neuron_h(x, v0, tau, 0, False, 1.0, 0.0, 3, 20, torch.empty(5, 17))
    with pytest.raises(ValueError, match=r"out must be contiguous torch.float32 \[5, 7\]"):
        torch.ops.membra.neuron_h(x, v0, tau, 0, False, 1.0, 0.0, 3, 10, torch.empty(5, 8))
