"""CubaLIF / ALIF on the fused ``cpu`` kernel with traces and custom surrogates: the kernel
runs (the reference loop is never entered) and gives the reference loop's spikes, traces,
final states and gradients, for a generated family of shapes, time constants, initial states
(constant, tensor, learnable) and surrogate kinds (name, instance, callable,
``Surrogate.custom``)."""

from __future__ import annotations

import itertools
import random

import pytest
import torch

import membra.kernels.models as km
from membra.functional import SURROGATES, Surrogate
from membra.kernels import NeuronTrace
from membra.nn import ALIF, CubaLIF

pytestmark = pytest.mark.skipif(not km.models_cpu_available(),
                                reason="fused models cpu kernels not built")

SECOND = {CubaLIF: "current", ALIF: "adaptation"}
MODELS = [CubaLIF, ALIF]


def _bump(u):
    """A custom surrogate that is no built-in: the derivative of a scaled arctangent."""
    return torch.atan(3.0 * u) / 3.0 + 0.5 * torch.tanh(u)


def _surrogate(kind: str):
    """A surrogate given as a name, a built-in instance, a plain callable or a custom object."""
    return {"name": "atan", "instance": SURROGATES["triangle"].with_alpha(0.7),
            "callable": _bump, "custom": Surrogate.custom(_bump, "bump")}[kind]


@pytest.fixture
def no_reference(monkeypatch):
    """Make the reference loop of kernels.models raise: a case that still falls back fails."""
    def refuse(*args, **kwargs):
        raise AssertionError("the reference loop ran instead of the fused cpu kernel")
    monkeypatch.setattr(km, "_reference", refuse)


def _init(kind: str, shape, gen):
    """An initial state spelled as a constant, a tensor or the learnable IMP."""
    if kind == "constant":
        return {"value": round(gen.uniform(-0.3, 0.6), 3)}
    if kind == "tensor":
        return {"value": torch.rand((1, *shape), generator=torch.Generator().manual_seed(
            gen.randrange(1 << 30))) * 0.8}
    return {"value": "learnable", "range": (0.1, 0.7)}


def _layer_kwargs(cls, v_kind, c_kind, shape, gen):
    name = SECOND[cls]
    v, c = _init(v_kind, shape, gen), _init(c_kind, shape, gen)
    kw = dict(init_potential=v["value"], init_range=v.get("range"))
    kw[f"init_{name}"] = c["value"]
    kw[f"init_{name}_range"] = c.get("range")
    kw["tau"] = gen.choice([1.0, 1.5, 2.0, 3.7])
    if cls is CubaLIF:
        kw["tau_syn"] = gen.choice([1.0, 2.5, 8.0])
    else:
        kw.update(tau_adapt=gen.choice([1.0, 4.0, 20.0]), beta=gen.choice([-0.3, 0.2, 1.1]))
    kw["reset"], kw["detach_reset"] = gen.choice([("soft", True), ("soft", False),
                                                  ("hard", True), ("hard", False)])
    return kw


CASES = list(itertools.product(MODELS, ["constant", "tensor", "learnable"],
                               ["constant", "learnable"],
                               ["name", "instance", "callable", "custom"]))


@pytest.mark.parametrize("case", range(len(CASES)))
def test_layer_trace_and_grads_equal_the_reference_loop(case, no_reference, monkeypatch):
    """layer.trace(x) and layer.run(x) on the fused kernel (the reference loop refused) equal
    a reference-backend twin of the layer (same parameters): spikes bit for bit, v, h and the
    final states allclose, and the gradients of a loss on spikes, v, h and the final states
    in x and every learnable initial state allclose."""
    cls, v_kind, c_kind, sg_kind = CASES[case]
    gen = random.Random(case)
    shape = gen.choice([(5,), (3, 7), (2, 3, 5), (131,)])
    T, B = gen.choice([1, 4, 9]), gen.choice([1, 3, 6])
    kw = _layer_kwargs(cls, v_kind, c_kind, shape, gen)
    fused = cls(shape, surrogate=_surrogate(sg_kind), backend="cpu", **kw)
    ref = cls(shape, surrogate=_surrogate(sg_kind), backend="reference", **kw)
    ref.load_state_dict(fused.state_dict())
    x = (torch.randn(T, B, *shape, generator=torch.Generator().manual_seed(case)) * 1.7)

    results = []
    for layer, reference in ((fused, False), (ref, True)):
        if reference:
            monkeypatch.undo()  # the twin runs the reference loop on purpose
        xi = x.clone().requires_grad_()
        tr = layer.trace(xi)
        s, (vT, cT) = layer.run(xi)
        assert isinstance(tr, NeuronTrace)
        wt = torch.linspace(-1, 1, tr.spikes.numel()).view_as(tr.spikes)
        loss = ((tr.spikes * wt).sum() + (tr.v ** 2).sum() + (0.5 * tr.h).sum()
                + (s * wt).sum() + vT.sum() + 1.3 * cT.sum())
        leaves = [xi] + [p for p in layer.parameters()]
        grads = torch.autograd.grad(loss, leaves)
        results.append((tr, s, vT, cT, grads))
    (tf, sf, vf, cf, gf), (tr_, sr, vr, cr, gr) = results
    assert torch.equal(tf.spikes, tr_.spikes) and torch.equal(sf, sr)
    assert torch.equal(tf.spikes, sf)
    for a, b in zip((tf.v, tf.h, vf, cf), (tr_.v, tr_.h, vr, cr), strict=True):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(tf.v[-1], vf)
    for a, b in zip(gf, gr, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("model", ["cuba_lif", "alif"])
@pytest.mark.parametrize("reset,detach_reset", [("soft", True), ("soft", False),
                                                ("hard", True), ("hard", False)])
@pytest.mark.parametrize("sg", ["name", "callable"])
def test_trace_gradcheck_float64(model, reset, detach_reset, sg, no_reference):
    """float64 gradcheck of the fused trace (spikes, v, h) and final states in x, v0 and the
    second initial state, with a surrogate too narrow for any u of this case: the analytic
    gradient then is the map's true derivative (a name: rectangular of width 1e-3; a
    callable: a steep sigmoid)."""
    g = torch.Generator().manual_seed(11)
    x = (torch.randn(5, 2, 3, generator=g, dtype=torch.float64) * 1.5).requires_grad_()
    v0 = torch.rand(3, generator=g, dtype=torch.float64).requires_grad_()
    c0 = torch.rand(2, 3, generator=g, dtype=torch.float64).requires_grad_()
    surrogate, alpha = ("rectangular", 1000.0) if sg == "name" else (
        lambda u: torch.sigmoid(1e4 * u), None)
    seq = km.cuba_lif_sequence if model == "cuba_lif" else km.alif_sequence

    def f(x, v0, c0):
        tr, (v, c) = seq(x, (v0, c0), surrogate=surrogate, alpha=alpha, reset=reset,
                         detach_reset=detach_reset, backend="cpu", trace=True)
        return tr.spikes, tr.v, tr.h, v, c

    assert torch.autograd.gradcheck(f, (x, v0, c0), eps=1e-6, atol=1e-5)


@pytest.mark.parametrize("model", ["cuba_lif", "alif"])
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16, torch.float64])
def test_fused_trace_dtypes(model, dtype, no_reference):
    """A trace and a custom surrogate's gradient in every input dtype: the trace comes back in
    x's dtype, within that dtype's rounding of the float32/float64 run."""
    seq = km.cuba_lif_sequence if model == "cuba_lif" else km.alif_sequence
    x32 = torch.randn(7, 3, 10, generator=torch.Generator().manual_seed(4)) * 2
    wide = torch.float64 if dtype == torch.float64 else torch.float32
    xw = x32.to(dtype).to(wide).requires_grad_()
    xn = x32.to(dtype).requires_grad_()
    trw, _ = seq(xw, backend="cpu", trace=True, surrogate=_bump)
    trn, _ = seq(xn, backend="cpu", trace=True, surrogate=_bump)
    assert trn.v.dtype == trn.h.dtype == trn.spikes.dtype == dtype
    tol = dict(rtol=2e-2, atol=2e-2) if dtype != torch.float64 else {}
    torch.testing.assert_close(trn.h.to(wide), trw.h, **tol)
    (gw,) = torch.autograd.grad(trw.h.sum() + trw.spikes.sum(), xw)
    (gn,) = torch.autograd.grad(trn.h.sum() + trn.spikes.sum(), xn)
    assert gn.dtype == dtype and torch.isfinite(gn.float()).all()
    if dtype == torch.float64:
        torch.testing.assert_close(gn, gw)


@pytest.mark.parametrize("model", ["cuba_lif", "alif"])
def test_custom_surrogate_is_evaluated_at_the_models_threshold(model, no_reference):
    """The custom derivative sees u = h - theta_t (ALIF: the moving threshold v_th + beta a_t),
    once, over every step: record its argument and compare with the trace's h - theta."""
    seen = []

    def recording(u):
        seen.append(u.detach().clone())
        return torch.sigmoid(4.0 * u)

    g = torch.Generator().manual_seed(8)
    x = (torch.randn(6, 2, 9, generator=g) * 2).requires_grad_()
    a0 = torch.rand(2, 9, generator=g)
    if model == "cuba_lif":
        tr, _ = km.cuba_lif_sequence(x, (None, a0), surrogate=recording, backend="cpu",
                                     trace=True)
        theta = torch.ones_like(tr.h)
    else:
        beta, rho = 0.4, 1.0 - 1.0 / 5.0
        tr, _ = km.alif_sequence(x, (None, a0), surrogate=recording, beta=beta, tau_adapt=5.0,
                                 backend="cpu", trace=True)
        a, th = a0, []
        for t in range(6):
            th.append(1.0 + beta * a)
            a = a * rho + tr.spikes[t].detach()
        theta = torch.stack(th)
    tr.spikes.sum().backward()
    assert len(seen) == 1 and seen[0].shape == (6, 18)
    torch.testing.assert_close(seen[0], (tr.h - theta).detach().reshape(6, 18))
