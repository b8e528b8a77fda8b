"""Non-finite input is never hidden, and every backend treats it alike (docs/kernels.md,
"Non-finite values"): from the first step at which a neuron's potential ``h_t`` is not finite
(a NaN or +-inf in ``x_t`` or in ``v0``) its spike is NaN at that step and at every later step,
and its ``v_T`` is NaN; every other neuron, and every earlier step, is what a clean run gives.

Generated cases: backend x neuron x reset x dtype x where the value sits x its kind."""

from __future__ import annotations

import itertools
import math

import pytest
import torch
from kernel_cases import backend_params, fused_backends, run_op

KINDS = {"nan": math.nan, "+inf": math.inf, "-inf": -math.inf}
POSITIONS = ("first", "middle", "last", "several", "v0")
DTYPES = {"f32": torch.float32, "f64": torch.float64, "bf16": torch.bfloat16,
          "f16": torch.float16}
SURROGATES = ("sigmoid", "atan", "rectangular", "triangle")
T, B, N = 7, 3, 37  # 111 neurons: no multiple of a vector width or block size


def make_case(position: str, kind: str, seed: int):
    """``(x, v0, gs, gv, first)`` in float32; ``first[b, n]`` is the first step at which
    neuron ``(b, n)`` meets a non-finite value (``T``: never)."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(T, B, N, generator=g) * 1.2 + 0.3
    v0 = torch.randn(B, N, generator=g) * 0.3
    gs = torch.randn(T, B, N, generator=g)
    gv = torch.randn(B, N, generator=g)
    first = torch.full((B, N), T, dtype=torch.long)
    bad = KINDS[kind]
    spots = {"first": [(0, 0, 5)], "middle": [(T // 2, 1, 11)], "last": [(T - 1, 2, N - 1)],
             "v0": []}.get(position)
    if position == "several":
        # six random spots, and one neuron hit twice (steps 2 and 5)
        cells = torch.randperm(B * N, generator=g)[:6].tolist()
        steps = torch.randint(0, T, (6,), generator=g).tolist()
        spots = [(t, c // N, c % N) for t, c in zip(steps, cells, strict=True)]
        spots += [(2, 1, 3), (5, 1, 3)]
    if position == "v0":
        for b, n in ((0, 0), (1, 7), (2, N - 1)):
            v0[b, n] = bad
            first[b, n] = 0
    for t, b, n in spots:
        x[t, b, n] = bad
        first[b, n] = min(int(first[b, n]), t)
    return x, v0, gs, gv, first


def op_kwargs(neuron: str, reset: str, surrogate=None, detach=None) -> dict:
    kw = dict(reset=reset, v_th=0.9, v_reset=-0.1)
    if surrogate is not None:
        kw.update(surrogate=surrogate, detach_reset=detach)
    return kw


def tau_for(neuron: str, dtype=torch.float32):
    return torch.tensor(2.5, dtype=dtype) if neuron == "lif" else None


def assert_agree(got, want, tol, names=("spikes", "v_T", "grad_x", "grad_v0", "grad_tau")):
    """NaN, +inf and -inf at the same places; the finite parts equal within ``tol``."""
    for name, g, w in zip(names, got, want, strict=True):
        if w is None:
            continue
        g = g.detach().cpu().to(w.dtype)
        w = w.detach()
        for what, mask in (("NaN", torch.isnan), ("+inf", torch.isposinf),
                           ("-inf", torch.isneginf)):
            assert torch.equal(mask(g), mask(w)), f"{name}: {what} at different places"
        fin = torch.isfinite(w)
        torch.testing.assert_close(g[fin], w[fin], **tol, msg=lambda m, n=name: f"{n}: {m}")


@pytest.mark.parametrize("kind", list(KINDS))
@pytest.mark.parametrize("position", POSITIONS)
@pytest.mark.parametrize("dtype", list(DTYPES))
@pytest.mark.parametrize("reset", ["soft", "hard"])
@pytest.mark.parametrize("neuron", ["lif", "if"])
@pytest.mark.parametrize("backend", ["reference"] + fused_backends("cpu"))
def test_nonfinite_is_visible(backend, neuron, reset, dtype, position, kind):
    x, v0, gs, gv, first = make_case(position, kind, seed=len(position) + 7 * len(kind))
    dt = DTYPES[dtype]
    kw = op_kwargs(neuron, reset)
    s, v = run_op(backend, neuron, x.to(dt), v0.to(dt), tau_for(neuron), gs.to(dt),
                  gv.to(dt), **kw)[:2]
    after = torch.arange(T).view(T, 1, 1) >= first  # [T, B, N]: at or after the first hit
    hit = first < T
    assert hit.any()
    assert torch.isnan(s[after]).all(), "a non-finite potential must give NaN spikes"
    assert torch.isnan(v[hit]).all(), "a neuron hit by a non-finite value must end NaN"
    # everything else is what a clean run gives: 0/1 spikes, finite v_T
    clean = run_op(backend, neuron, x.nan_to_num(0.0, 0.0, 0.0).to(dt),
                   v0.nan_to_num(0.0, 0.0, 0.0).to(dt), tau_for(neuron), gs.to(dt),
                   gv.to(dt), **kw)[:2]
    assert torch.equal(s[~after], clean[0][~after])
    assert torch.equal(v[~hit], clean[1][~hit])
    assert set(s[~after].unique().tolist()) <= {0.0, 1.0}


@pytest.mark.parametrize("kind", list(KINDS))
@pytest.mark.parametrize("position", POSITIONS)
@pytest.mark.parametrize("dtype", list(DTYPES))
@pytest.mark.parametrize("reset", ["soft", "hard"])
@pytest.mark.parametrize("neuron", ["lif", "if"])
@pytest.mark.parametrize("backend,device", backend_params())
def test_backends_agree_on_nonfinite(backend, device, neuron, reset, dtype, position, kind):
    """Spikes, v_T and the gradients for x, v0 and tau: the same non-finite places, the same
    finite values. Reduced precision is compared with the float32 reference on the upcast
    input (the fused kernels keep a float32 state), and both backends also agree in it."""
    x, v0, gs, gv, first = make_case(position, kind, seed=len(position) + 7 * len(kind))
    dt = DTYPES[dtype]
    kw = op_kwargs(neuron, reset)
    args = [t.to(dt) for t in (x, v0, gs, gv)]
    got = run_op(backend, neuron, *(a.to(device) for a in args[:2]), tau_for(neuron),
                 *(a.to(device) for a in args[2:]), **kw)
    if dt in (torch.float32, torch.float64):
        want = run_op("reference", neuron, *args[:2], tau_for(neuron, dt), *args[2:], **kw)
        assert_agree(got, want, dict(atol=1e-5, rtol=1e-5))
    else:
        up = [a.float() for a in args]
        want = run_op("reference", neuron, *up[:2], tau_for(neuron), *up[2:], **kw)
        assert_agree(got[:1], want[:1], dict(atol=0.0, rtol=0.0), names=("spikes",))
        assert_agree(got[1:], want[1:], dict(atol=2e-2, rtol=2e-2), names=(
            "v_T", "grad_x", "grad_v0", "grad_tau"))
        # the reduced-precision reference marks the same places
        low = run_op("reference", neuron, *args[:2], tau_for(neuron), *args[2:], **kw)
        for g, w in zip(got[:2], low[:2], strict=True):
            assert torch.equal(torch.isnan(g.cpu()), torch.isnan(w))


@pytest.mark.parametrize("kind", list(KINDS))
@pytest.mark.parametrize("surrogate,detach", list(itertools.product(SURROGATES,
                                                                     [True, False])))
@pytest.mark.parametrize("reset", ["soft", "hard"])
@pytest.mark.parametrize("neuron", ["lif", "if"])
@pytest.mark.parametrize("backend,device", backend_params())
def test_gradients_agree_on_nonfinite_for_every_surrogate(backend, device, neuron, reset,
                                                          surrogate, detach, kind):
    x, v0, gs, gv, _ = make_case("several", kind, seed=11)
    kw = op_kwargs(neuron, reset, surrogate, detach)
    want = run_op("reference", neuron, x, v0, tau_for(neuron), gs, gv, **kw)
    got = run_op(backend, neuron, x.to(device), v0.to(device), tau_for(neuron),
                 gs.to(device), gv.to(device), **kw)
    assert_agree(got, want, dict(atol=1e-5, rtol=1e-5))


@pytest.mark.parametrize("surrogate", SURROGATES)
@pytest.mark.parametrize("alpha", [0.5, 4.0, 25.0])
@pytest.mark.parametrize("backend,device", backend_params())
def test_finite_potentials_far_from_threshold_give_finite_gradients(backend, device, surrogate,
                                                                    alpha):
    # IF, one step from 0, v_th = 0: grad_x = surrogate'(x); no NaN from an exp that overflows
    u = torch.tensor([-3e38, -1e30, -1e4, -100.0, -30.0, -22.5, -21.9, -1.0, 0.0, 1.0, 21.9,
                      30.0, 100.0, 1e4, 1e30, 3e38])
    x = u.reshape(1, 1, -1)
    kw = dict(v_th=0.0, reset="soft", detach_reset=True, surrogate=surrogate, alpha=alpha)
    ones, zeros = torch.ones_like(x), torch.zeros_like(x[0])
    want = run_op("reference", "if", x, None, None, ones, zeros, **kw)
    got = run_op(backend, "if", x.to(device), None, None, ones.to(device), zeros.to(device),
                 **kw)
    assert torch.isfinite(got[2]).all()
    assert_agree(got[:3], want[:3], dict(atol=1e-6, rtol=1e-5),
                 names=("spikes", "v_T", "grad_x"))
