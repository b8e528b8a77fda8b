"""Delay on its fused copy kernel and RLIF's fused loop: bit-for-bit the reference's values
and gradients over a generated family, and the work they do (the Delay kernel is used; RLIF's
backward has no per-step full-size zero-fill and one weight GEMM)."""

from __future__ import annotations

import math
import random

import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode

import membra.kernels.models as km
from membra.functional.models import check_delays, delay_sequence
from membra.nn import RLIF, Delay

pytestmark = pytest.mark.skipif(not km.models_cpu_available(),
                                reason="fused models cpu kernels not built")


@pytest.fixture
def no_gather_delay(monkeypatch):
    """Make the gather reference unreachable from the kernels module (it must not run)."""
    def refuse(*args, **kwargs):
        raise AssertionError("the gather reference ran instead of the delay kernel")
    monkeypatch.setattr(km, "delay_sequence", refuse)


def _delay_case(seed: int):
    gen = random.Random(seed)
    shape = gen.choice([(1,), (7,), (3, 5), (4, 3, 3), (129,)])
    D = gen.choice([0, 1, 3, 5])
    T = gen.choice([1, 2, D + 1, 9])
    B = gen.choice([1, 2, 5])
    g = torch.Generator().manual_seed(seed)
    if gen.random() < 0.3:  # per channel: (C, 1, ...)
        dshape = (shape[0],) + (1,) * (len(shape) - 1)
    else:
        dshape = shape
    delays = torch.randint(0, D + 1, dshape, generator=g)
    dtype = gen.choice([torch.float32, torch.float64, torch.bfloat16, torch.float16])
    x = torch.randn(T, B, *shape, generator=g).to(dtype)
    hist = torch.randn(D, B, *shape, generator=g).to(dtype)
    if gen.random() < 0.5 and x.numel():
        x.view(-1)[gen.randrange(x.numel())] = gen.choice([math.nan, math.inf, -math.inf])
    return x, hist, check_delays(delays, shape, D)


@pytest.mark.parametrize("seed", range(24))
def test_delay_kernel_equals_the_gather_reference(seed, no_gather_delay):
    """Values (NaN/inf included, exactly), the new history, and the gradients in x and the
    history of a loss on both outputs equal the gather reference."""
    x, hist, delays = _delay_case(seed)
    outs = []
    for fn in (km.delay_sequence_fused, delay_sequence):
        xi, hi = x.clone().requires_grad_(), hist.clone().requires_grad_()
        y, new_hist = fn(xi, hi, delays)
        wy = torch.linspace(-1, 2, y.numel()).view_as(y).to(y.dtype)
        wh = torch.linspace(3, -1, new_hist.numel()).view_as(new_hist).to(y.dtype)
        loss = (torch.nan_to_num(y) * wy).sum() + (torch.nan_to_num(new_hist) * wh).sum()
        outs.append((y, new_hist, *torch.autograd.grad(loss, (xi, hi))))
    for a, b in zip(*outs, strict=True):  # exactly equal (0.0 == -0.0), NaN where NaN
        assert a.dtype == b.dtype and a.shape == b.shape
        torch.testing.assert_close(a, b, rtol=0, atol=0, equal_nan=True)


@pytest.mark.parametrize("seed", range(6))
def test_delay_layer_runs_the_kernel_and_streams(seed, no_gather_delay):
    """Delay.run uses the kernel; stepping it with the carried history gives run's output."""
    x, _, delays = _delay_case(seed + 100)
    D = int(delays.max()) if delays.numel() else 0
    layer = Delay(tuple(x.shape[2:]), D, delays)
    y, hist = layer.run(x)
    st, ys = None, []
    for x_t in x:
        y_t, st = layer.step(x_t, st)
        ys.append(y_t)
    assert torch.equal(torch.stack(ys).isnan(), y.isnan())
    torch.testing.assert_close(torch.stack(ys), y, equal_nan=True, rtol=0, atol=0)
    torch.testing.assert_close(st, hist, equal_nan=True, rtol=0, atol=0)


class _Count(TorchDispatchMode):
    """Counts aten ops by name, and the fills of tensors with at least ``big`` elements."""

    def __init__(self, big: int):
        super().__init__()
        self.big, self.ops, self.big_fills = big, {}, 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        name = func.overloadpacket.__name__
        self.ops[name] = self.ops.get(name, 0) + 1
        out = func(*args, **(kwargs or {}))
        if name in ("fill_", "zero_", "zeros", "zeros_like", "new_zeros") and \
                isinstance(out, torch.Tensor) and out.numel() >= self.big:
            self.big_fills += 1
        return out


@pytest.mark.parametrize("T", [3, 8])
def test_rlif_backward_work_is_linear_in_T(T):
    """RLIF's fused backward: no zero-filled full-size [T, B, N] gradient per step (that is
    T^2 memory traffic) and the weight's gradient as one GEMM over all steps: at most T + 1
    matrix products in the backward (T - 1 into the previous spikes, 1 for W)."""
    torch.manual_seed(T)
    B, N = 3, 20
    layer = RLIF((N,), backend="cpu")
    x = torch.randn(T, B, N, requires_grad=True)
    loss = layer(x).sum()
    with _Count(big=T * B * N) as c:
        loss.backward()
    assert c.big_fills == 0, c.ops
    assert c.ops.get("mm", 0) + c.ops.get("addmm", 0) <= T + 1, c.ops


@pytest.mark.parametrize("seed", range(4))
def test_rlif_fused_grads_equal_the_reference(seed):
    """RLIF cpu vs reference: spikes equal; x, W, learnable v0 and tau gradients allclose,
    for a non-power-of-two shape, traced and untraced, with a custom surrogate."""
    gen = random.Random(seed)
    shape = gen.choice([(7,), (3, 5), (33,)])
    T, B = gen.choice([1, 5, 9]), gen.choice([1, 4])
    trace = gen.random() < 0.5
    sg = gen.choice(["atan", lambda u: torch.atan(2.0 * u)])
    layers = [RLIF(shape, backend=b, init_potential="learnable", surrogate=sg,
                   learnable_tau=True) for b in ("cpu", "reference")]
    layers[1].load_state_dict(layers[0].state_dict())
    with torch.no_grad():
        layers[0].weight.mul_(2.0)
        layers[1].weight.copy_(layers[0].weight)
    x = torch.randn(T, B, *shape, generator=torch.Generator().manual_seed(seed)) * 1.5
    res = []
    for layer in layers:
        xi = x.clone().requires_grad_()
        if trace:
            tr = layer.trace(xi)
            s, loss = tr.spikes, (tr.v ** 2).sum() + tr.h.sum() + tr.spikes.sum()
        else:
            s, (v, sT) = layer.run(xi)
            loss = (s * torch.linspace(-1, 1, s.numel()).view_as(s)).sum() + (v ** 2).sum()
        res.append((s, *torch.autograd.grad(loss, [xi, *layer.parameters()])))
    assert torch.equal(res[0][0], res[1][0])
    for a, b in zip(res[0][1:], res[1][1:], strict=True):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float32, torch.float64])
def test_delay_large_outputs_every_dtype(dtype, no_gather_delay):
    """Outputs above the cpu backend's pool threshold (1 MiB) in every dtype, per-channel
    delays: the same values and gradient as the gather reference."""
    g = torch.Generator().manual_seed(9)
    x = torch.randn(3, 2, 3, 70001, generator=g).to(dtype).requires_grad_()
    hist = torch.zeros(2, 2, 3, 70001, dtype=dtype)
    delays = check_delays(torch.tensor([[0], [2], [1]]), (3, 70001), 2)
    y, new_hist = km.delay_sequence_fused(x, hist, delays)
    y_ref, hist_ref = delay_sequence(x.detach(), hist, delays)
    assert torch.equal(y, y_ref) and torch.equal(new_hist, hist_ref)
    (g_x,) = torch.autograd.grad(y.float().pow(2).sum(), x)
    xr = x.detach().clone().requires_grad_()
    (g_ref,) = torch.autograd.grad(delay_sequence(xr, hist, delays)[0].float().pow(2).sum(), xr)
    assert torch.equal(g_x, g_ref)
