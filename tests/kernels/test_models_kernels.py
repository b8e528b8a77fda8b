"""CubaLIF / ALIF / RLIF sequence kernels: golden values from a plain scalar Python loop,
backend equivalence (outputs, final states, every gradient), gradcheck, odd shapes, NaN."""

from __future__ import annotations

import math

import pytest
import torch

from membra.kernels.models import (
    alif_sequence,
    cuba_lif_sequence,
    models_cpu_available,
    rlif_sequence,
)

BACKENDS = ["reference"] + (["cpu"] if models_cpu_available() else [])
SURROGATES = ["sigmoid", "atan", "rectangular", "triangle"]


def _golden(kind, x, v0, c0, *, tau, tau2, beta, v_th, v_reset, reset):
    """Scalar Python loop (float64) over one neuron sequence per column of x [T, M]."""
    T, M = len(x), len(x[0])
    rho = 1.0 - 1.0 / tau2
    spikes = [[0.0] * M for _ in range(T)]
    v_out, c_out = [], []
    for m in range(M):
        v, c = v0[m], c0[m]
        for t in range(T):
            if kind == "cuba_lif":
                c = c * rho + x[t][m]
                inp, th = c, v_th
            else:
                inp, th = x[t][m], v_th + beta * c
            h = v + (inp - (v - v_reset)) / tau
            s = 1.0 if h - th >= 0 else 0.0
            v = (h - th * s) if reset == "soft" else (v_reset if s else h)
            if kind == "alif":
                c = c * rho + s
            spikes[t][m] = s
        v_out.append(v)
        c_out.append(c)
    return spikes, v_out, c_out


def _run(kind, x, state, backend, reset="soft", surrogate="sigmoid", detach_reset=True,
         tau=2.0, tau2=3.0, beta=0.5, v_th=1.0, v_reset=0.0, alpha=None):
    kw = dict(tau=tau, v_th=v_th, v_reset=v_reset, reset=reset, surrogate=surrogate, alpha=alpha,
              detach_reset=detach_reset, backend=backend)
    if kind == "cuba_lif":
        return cuba_lif_sequence(x, state, tau_syn=tau2, **kw)
    return alif_sequence(x, state, tau_adapt=tau2, beta=beta, **kw)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("kind", ["cuba_lif", "alif"])
@pytest.mark.parametrize("reset", ["soft", "hard"])
@pytest.mark.parametrize("seed", [0, 1])
def test_golden_plain_loop(backend, kind, reset, seed):
    g = torch.Generator().manual_seed(seed)
    T, M = 9, 13
    x = torch.randn(T, M, generator=g, dtype=torch.float64) * 1.5
    v0 = torch.rand(M, generator=g, dtype=torch.float64)
    c0 = torch.rand(M, generator=g, dtype=torch.float64)
    tau, tau2, beta, v_reset = 2.5, 4.0, 0.7, -0.2
    s, (vT, cT) = _run(kind, x.unsqueeze(1), (v0, c0), backend, reset=reset, tau=tau,
                       tau2=tau2, beta=beta, v_reset=v_reset)
    gs, gv, gc = _golden(kind, x.tolist(), v0.tolist(), c0.tolist(), tau=tau, tau2=tau2,
                         beta=beta, v_th=1.0, v_reset=v_reset, reset=reset)
    assert s[:, 0].tolist() == gs
    assert s.sum() > 0 and s.sum() < s.numel()  # the case exercises both outcomes
    torch.testing.assert_close(vT[0], torch.tensor(gv, dtype=torch.float64))
    torch.testing.assert_close(cT[0], torch.tensor(gc, dtype=torch.float64))


def _loss_grads(out, inputs):
    s, (v, c) = out
    w = torch.linspace(-1, 1, s.shape[-1], dtype=s.dtype) if s.shape[-1] else 0
    loss = (s * w).sum() + (v ** 2).sum() + (1.3 * c).sum()
    return torch.autograd.grad(loss, inputs, allow_unused=True)


@pytest.mark.skipif(len(BACKENDS) < 2, reason="fused cpu kernels not built")
@pytest.mark.parametrize("kind", ["cuba_lif", "alif"])
@pytest.mark.parametrize("reset", ["soft", "hard"])
@pytest.mark.parametrize("detach_reset", [True, False])
@pytest.mark.parametrize("surrogate", SURROGATES)
@pytest.mark.parametrize("T,shape", [(1, (3, 5)), (7, (2, 37)), (4, (0, 6)), (3, (2, 3, 5, 7))])
def test_backends_agree(kind, reset, detach_reset, surrogate, T, shape):
    g = torch.Generator().manual_seed(T * 100 + len(shape))
    x = (torch.randn(T, *shape, generator=g) * 1.5).requires_grad_()
    v0 = torch.rand(shape[1:], generator=g).requires_grad_()  # broadcast over the batch
    c0 = torch.rand(shape, generator=g).requires_grad_()
    res = []
    for b in BACKENDS:
        out = _run(kind, x, (v0, c0), b, reset=reset, surrogate=surrogate,
                   detach_reset=detach_reset)
        grads = _loss_grads(out, (x, v0, c0)) if x.numel() else ()
        res.append((out[0], *out[1], *grads))
    for a, b in zip(*res, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)
    assert torch.equal(res[0][0], res[1][0])  # spikes bit for bit


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("kind", ["cuba_lif", "alif"])
def test_noncontiguous_and_dtypes(backend, kind):
    g = torch.Generator().manual_seed(3)
    base = torch.randn(11, 6, 4, generator=g) * 2
    x = base.transpose(1, 2)  # [11, 4, 6], not contiguous
    s1, (v1, c1) = _run(kind, x, None, backend)
    s2, (v2, c2) = _run(kind, x.contiguous(), None, "reference")
    assert torch.equal(s1, s2)
    torch.testing.assert_close(v1, v2)
    for dtype in (torch.bfloat16, torch.float16):
        s3, (v3, _) = _run(kind, x.to(dtype), None, backend)
        assert s3.dtype == dtype and v3.dtype == dtype and s3.shape == x.shape


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("kind", ["cuba_lif", "alif"])
@pytest.mark.parametrize("reset", ["soft", "hard"])
@pytest.mark.parametrize("detach_reset", [True, False])
def test_gradcheck(backend, kind, reset, detach_reset):
    """float64 gradcheck of spikes and both final states in x, v0 and the second initial
    state, with a rectangular surrogate of width 1/alpha = 1e-3 that no u of this case falls
    into: the analytic gradient then is the true derivative of the piecewise smooth map
    (decays, reset, ALIF's threshold path); the surrogate part is checked against the
    reference in test_backends_agree."""
    g = torch.Generator().manual_seed(5)
    x = (torch.randn(5, 2, 3, generator=g, dtype=torch.float64) * 1.5).requires_grad_()
    v0 = torch.rand(3, generator=g, dtype=torch.float64).requires_grad_()
    c0 = torch.rand(2, 3, generator=g, dtype=torch.float64).requires_grad_()

    def f(x, v0, c0):
        s, (v, c) = _run(kind, x, (v0, c0), backend, reset=reset, surrogate="rectangular",
                         alpha=1000.0, detach_reset=detach_reset)
        return s, v, c

    assert torch.autograd.gradcheck(f, (x, v0, c0), eps=1e-6, atol=1e-5)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("kind", ["cuba_lif", "alif"])
@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf])
@pytest.mark.parametrize("where", [0, 3])
def test_nonfinite_spikes_propagate(backend, kind, bad, where):
    """As LIF: from the broken step on, that neuron's spikes and final v are NaN; the other
    neurons and the earlier steps are untouched."""
    x = torch.randn(6, 2, 5, generator=torch.Generator().manual_seed(1))
    x[where, 1, 2] = bad
    s, (vT, _) = _run(kind, x, None, backend)
    assert torch.isnan(s[where:, 1, 2]).all() and torch.isnan(vT[1, 2])
    assert torch.isfinite(s[:where, 1, 2]).all()
    mask = torch.ones_like(s, dtype=torch.bool)
    mask[:, 1, 2] = False
    assert torch.isfinite(s[mask]).all()
    ref = _run(kind, x, None, "reference")[0]
    assert torch.equal(torch.isnan(s), torch.isnan(ref))


@pytest.mark.parametrize("backend", BACKENDS)
def test_rlif_golden_and_gradcheck(backend):
    g = torch.Generator().manual_seed(2)
    T, B, N = 6, 2, 4
    x = torch.randn(T, B, N, generator=g, dtype=torch.float64) * 1.5
    w = torch.randn(N, N, generator=g, dtype=torch.float64)
    s, (vT, sT) = rlif_sequence(x, w, backend=backend, tau=2.0)
    v = [[0.0] * N for _ in range(B)]
    prev = [[0.0] * N for _ in range(B)]
    for t in range(T):
        for b in range(B):
            rec = [sum(w[n, k].item() * prev[b][k] for k in range(N)) for n in range(N)]
            new = []
            for n in range(N):
                h = v[b][n] + (x[t, b, n].item() + rec[n] - v[b][n]) / 2.0
                sp = 1.0 if h >= 1.0 else 0.0
                v[b][n] = h - sp
                new.append(sp)
                assert s[t, b, n].item() == sp
            prev[b] = new
    torch.testing.assert_close(vT, torch.tensor(v, dtype=torch.float64))
    assert torch.equal(sT, s[-1])
    xg, wg = x[:3].clone().requires_grad_(), w.clone().requires_grad_()
    v0 = torch.rand(N, generator=g, dtype=torch.float64).requires_grad_()
    assert torch.autograd.gradcheck(  # narrow surrogate: see test_gradcheck
        lambda x, w, v0: rlif_sequence(x, w, (v0, None), surrogate="rectangular", alpha=1000.0,
                                       backend=backend)[1][0],
        (xg, wg, v0), eps=1e-6, atol=1e-5)


@pytest.mark.parametrize("call,match", [
    (lambda x: cuba_lif_sequence(x, tau_syn=0.5), "tau_syn"),
    (lambda x: cuba_lif_sequence(x, tau_syn=math.nan), "tau_syn"),
    (lambda x: cuba_lif_sequence(x, tau=0.9), "tau"),
    (lambda x: alif_sequence(x, tau_adapt=0.0), "tau_adapt"),
    (lambda x: alif_sequence(x, beta=math.inf), "beta"),
    (lambda x: alif_sequence(x, (torch.zeros(3), torch.zeros(2))), "second state"),
    (lambda x: alif_sequence(x, torch.zeros(2, 3)), "pair"),
    (lambda x: rlif_sequence(x, torch.zeros(2, 2)), "weight"),
])
def test_invalid_params_name_the_parameter(call, match):
    with pytest.raises(ValueError, match=match):
        call(torch.zeros(4, 2, 3))


# ---- every model x backend x surrogate kind (name, Surrogate instance, custom callable) ----
def _sigmoid4(u):
    """A custom callable whose autograd derivative is the built-in sigmoid's (alpha 4)."""
    return torch.sigmoid(4.0 * u)


def _surrogate(kind: str):
    """The same surrogate gradient, spelled as a name, an instance or a custom callable."""
    from membra.functional import SURROGATES, Surrogate

    return {"name": "sigmoid", "instance": SURROGATES["sigmoid"].with_alpha(4.0),
            "custom": _sigmoid4, "custom_object": Surrogate.custom(_sigmoid4, "sig4")}[kind]


SURROGATE_KINDS = ["name", "instance", "custom", "custom_object"]
MODELS = ["cuba_lif", "alif", "rlif"]


def _run_any(model, x, state, backend, surrogate, reset="soft", detach_reset=True, w=None,
             trace=False):
    kw = dict(reset=reset, surrogate=surrogate, detach_reset=detach_reset, backend=backend,
              trace=trace)
    if model == "cuba_lif":
        return cuba_lif_sequence(x, state, tau=2.0, tau_syn=3.0, **kw)
    if model == "alif":
        return alif_sequence(x, state, tau=2.0, tau_adapt=3.0, beta=0.5, **kw)
    return rlif_sequence(x, w, state, tau=2.0, **kw)


def _inputs(model, seed, T=6, shape=(3, 7), dtype=torch.float32):
    g = torch.Generator().manual_seed(seed)
    x = (torch.randn(T, *shape, generator=g, dtype=dtype) * 1.5).requires_grad_()
    v0 = torch.rand(shape[1:], generator=g, dtype=dtype).requires_grad_()
    c0 = None if model == "rlif" else torch.rand(shape, generator=g,
                                                 dtype=dtype).requires_grad_()
    w = (torch.randn(shape[1], shape[1], generator=g, dtype=dtype) * 0.5).requires_grad_() \
        if model == "rlif" else None
    return x, v0, c0, w


def _all_grads(out, leaves):
    s, (v, c) = out
    wt = torch.linspace(-1, 1, s.shape[-1], dtype=s.dtype)
    loss = (s * wt).sum() + (v ** 2).sum() + (1.3 * c).sum()
    return torch.autograd.grad(loss, leaves, allow_unused=True)


@pytest.mark.parametrize("model", MODELS)
@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("sg", SURROGATE_KINDS)
@pytest.mark.parametrize("reset,detach_reset", [("soft", True), ("hard", False)])
@pytest.mark.parametrize("seed", [0, 1])
def test_every_surrogate_kind_gives_the_reference_gradients(model, backend, sg, reset,
                                                           detach_reset, seed):
    """Spikes, final states and every gradient of each model on each backend, with the
    surrogate given as a name, a Surrogate, a callable or Surrogate.custom, equal those of
    the reference loop with the built-in name (the callable's derivative is the same
    sigmoid)."""
    x, v0, c0, w = _inputs(model, seed)
    leaves = [t for t in (x, v0, c0, w) if t is not None]
    got = _run_any(model, x, (v0, c0), backend, _surrogate(sg), reset, detach_reset, w)
    ref = _run_any(model, x, (v0, c0), "reference", "sigmoid", reset, detach_reset, w)
    assert torch.equal(got[0], ref[0])
    assert 0 < got[0].sum() < got[0].numel()
    for a, b in zip((*got[1], *_all_grads(got, leaves)), (*ref[1], *_all_grads(ref, leaves)),
                    strict=True):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("model", MODELS)
@pytest.mark.parametrize("backend", BACKENDS)
def test_custom_surrogate_gradcheck(model, backend):
    """float64 gradcheck with a custom callable surrogate (a narrow smooth bump no u of this
    case reaches, so the analytic gradient is the map's true derivative; see
    test_gradcheck)."""
    x, v0, c0, w = _inputs(model, 7, T=4, shape=(2, 3), dtype=torch.float64)

    def bump(u):
        return torch.sigmoid(1e4 * u)

    def f(*args):
        it = iter(args)
        xx, vv = next(it), next(it)
        cc = next(it) if c0 is not None else None
        ww = next(it) if w is not None else None
        s, (v, c) = _run_any(model, xx, (vv, cc), backend, bump, w=ww)
        return s, v, c

    leaves = tuple(t for t in (x, v0, c0, w) if t is not None)
    assert torch.autograd.gradcheck(f, leaves, eps=1e-6, atol=1e-5)


@pytest.mark.parametrize("model", MODELS)
@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("sg", ["name", "custom"])
def test_traces_equal_the_reference_loop(model, backend, sg):
    """trace=True: NeuronTrace(spikes, v, h) and its gradients through v and h equal the
    reference loop's, the spikes equal the untraced run's."""
    from membra.kernels import NeuronTrace

    x, v0, c0, w = _inputs(model, 3)
    leaves = [t for t in (x, v0, c0, w) if t is not None]
    tr, state = _run_any(model, x, (v0, c0), backend, _surrogate(sg), w=w, trace=True)
    ref, _ = _run_any(model, x, (v0, c0), "reference", "sigmoid", w=w, trace=True)
    assert isinstance(tr, NeuronTrace)
    plain = _run_any(model, x, (v0, c0), backend, _surrogate(sg), w=w)
    assert torch.equal(tr.spikes, plain[0]) and torch.equal(tr.spikes, ref.spikes)
    torch.testing.assert_close(tr.v[-1], state[0])
    for a, b in zip(tr[1:], ref[1:], strict=True):
        torch.testing.assert_close(a, b)
    gt = torch.autograd.grad((tr.v ** 2).sum() + tr.h.sum(), leaves, allow_unused=True)
    gr = torch.autograd.grad((ref.v ** 2).sum() + ref.h.sum(), leaves, allow_unused=True)
    for a, b in zip(gt, gr, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)


def test_kernel_model_codes_are_the_kind_codes():
    # models_cpu.cpp's model enum is NeuronKind's table, not a second spelling
    from pathlib import Path

    import membra.kernels.models as km
    from membra.functional import NeuronKind

    src = (Path(km.__file__).parent / "csrc" / "models_cpu.cpp").read_text()
    assert (f"enum Model : int {{ CUBA = {NeuronKind.CUBA_LIF.code}, "
            f"ALIF_ = {NeuronKind.ALIF.code} }};") in src


@pytest.mark.parametrize("kind", ["cuba_lif", "alif", "rlif"])
def test_neuron_sequence_refuses_the_models_by_name(kind):
    from membra.kernels import neuron_sequence

    with pytest.raises(ValueError, match=f"{kind}_sequence"):
        neuron_sequence(torch.zeros(3, 2, 4), neuron=kind)
