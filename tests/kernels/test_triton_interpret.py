"""The Triton kernels of every neuron model, run in Triton's CPU interpreter against the
reference loop: LIF, IF, CubaLIF, ALIF x every surrogate kind (built-in names, a Surrogate
instance, a plain callable) x resets, detach, initial potentials, traces, float64, bfloat16,
non-finite input. Needs triton and TRITON_INTERPRET=1 (``make test-triton``); skipped
otherwise. This checks the kernels' arithmetic, not GPU compilation or speed."""

from __future__ import annotations

import importlib.util
import math
import os
import random
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from membra.functional import SURROGATES, Surrogate
from membra.kernels import available_backends, lif_sequence, neuron_trace
from membra.kernels.models import alif_sequence, cuba_lif_sequence

pytestmark = [
    pytest.mark.triton,
    pytest.mark.skipif(importlib.util.find_spec("triton") is None,
                       reason="triton not installed (make triton-interp)"),
    pytest.mark.skipif(os.environ.get("TRITON_INTERPRET") != "1",
                       reason="needs TRITON_INTERPRET=1 (make test-triton)"),
]

MODELS = ["lif", "if", "cuba_lif", "alif"]


def fast_sigmoid(u):
    """SuperSpike-style: d/du = 1 / (1 + 5|u|)^2."""
    return u / (1 + 5 * u.abs())


SURROGATE_KINDS = {
    **{name: name for name in SURROGATES},
    "instance": Surrogate.custom(lambda u: torch.sigmoid(3.0 * u), name="sig3"),
    "callable": fast_sigmoid,
}


@pytest.fixture(scope="module", autouse=True)
def on_cpu():
    from membra.kernels.triton_backend import interpret_on_cpu

    with interpret_on_cpu():
        yield


def run(model, backend, x, state, gs, *, trace=False, grads=None, **kw):
    """One run on fresh leaves: ``(outputs..., grads of x, each initial state and a tensor
    tau)``. ``state``
    is ``v0`` for LIF/IF, ``(v0, c0)`` otherwise; ``grads`` the upstream gradient of every
    output (spikes, final states, and v, h with ``trace``)."""
    x = x.detach().clone().requires_grad_()
    leaves = [x]
    if isinstance(state, tuple):
        state = tuple(t.detach().clone().requires_grad_() for t in state)
        leaves += list(state)
    elif isinstance(state, torch.Tensor):
        state = state.detach().clone().requires_grad_()
        leaves.append(state)
    tau = kw.pop("tau", 2.5)
    if isinstance(tau, torch.Tensor):
        tau = tau.detach().clone().requires_grad_()
        leaves.append(tau)
    if model in ("lif", "if"):
        if trace:
            tr = neuron_trace(x, state, neuron=model, tau=tau, backend=backend, **kw)
            outs = [tr.spikes, tr.v, tr.h]
        else:
            fn = lif_sequence if model == "lif" else _if_sequence
            outs = list(fn(x, state, tau=tau, backend=backend, **kw))
    else:
        fn = cuba_lif_sequence if model == "cuba_lif" else alif_sequence
        extra = dict(tau_syn=3.0) if model == "cuba_lif" else dict(tau_adapt=4.0, beta=0.3)
        out, st = fn(x, state, tau=tau, backend=backend, trace=trace, **extra, **kw)
        outs = (list(out) if trace else [out]) + list(st)
    g = grads(outs) if grads is not None else [torch.ones_like(o) for o in outs]
    got = torch.autograd.grad(outs, leaves, g, allow_unused=True)
    return [o.detach() for o in outs] + list(got)


def _if_sequence(x, v0, *, tau, **kw):
    from membra.kernels import if_sequence

    return if_sequence(x, v0, **kw)


def assert_same(got, want, tol):
    """Spikes (the first output) exactly, everything else within ``tol``, NaN where NaN."""
    assert len(got) == len(want)
    for i, (g, w) in enumerate(zip(got, want, strict=True)):
        if w is None:
            assert g is None or not g.any(), f"output {i}"
            continue
        assert g.dtype == w.dtype and g.shape == w.shape, (i, g.dtype, w.dtype, g.shape)
        t = dict(atol=0.0, rtol=0.0) if i == 0 else tol
        torch.testing.assert_close(g, w, equal_nan=True, msg=lambda m, i=i: f"output {i}: {m}",
                                   **t)


def generated_case(seed, model, dtype=torch.float32):
    """A random case: odd shape, initial potentials (None / number / per-neuron / a
    broadcast [1, *S] IMP), a second state, reset, detach, thresholds, gradients."""
    rnd = random.Random(seed)
    g = torch.Generator().manual_seed(seed)
    T = rnd.choice([1, 3, 6])
    shape = rnd.choice([(2, 5), (3, 37), (1, 2, 3, 7), (2, 513)])
    x = (torch.randn(T, *shape, generator=g) * 1.2 + 0.35).to(dtype)
    kind = rnd.choice(["none", "number", "tensor", "imp"])
    v0 = {"none": None, "number": 0.25, "tensor": torch.randn(shape, generator=g) * 0.4,
          "imp": torch.rand((1, *shape[1:]), generator=g)}[kind]
    if v0 is not None and not isinstance(v0, float):
        v0 = v0.to(dtype)
    kw = dict(reset=rnd.choice(["soft", "hard"]), detach_reset=rnd.choice([True, False]),
              v_th=rnd.choice([0.9, 1.0, 0.55]), v_reset=rnd.choice([0.0, -0.1]),
              tau=rnd.choice([1.0, 2.5, 7.0]))
    if model not in ("lif", "if"):
        v = torch.zeros(shape, dtype=dtype) if not isinstance(v0, torch.Tensor) else v0
        c0 = (torch.randn(shape[1:], generator=g) * 0.5).to(dtype)
        v0 = (v, c0)
    elif model == "lif" and rnd.random() < 0.5:
        kw["tau"] = torch.tensor(kw["tau"] + 0.5, dtype=dtype)  # a learnable tau
    return x, v0, kw


def grads_of(seed):
    def make(outs):
        g = torch.Generator().manual_seed(seed + 1)
        return [torch.randn(o.shape, generator=g).to(o.dtype) for o in outs]
    return make


def tol_for(dtype):
    return dict(atol=1e-10, rtol=1e-10) if dtype == torch.float64 else dict(atol=2e-5,
                                                                              rtol=2e-5)


def test_backend_runs_on_cpu_only_inside_the_interpreter_context():
    assert "triton" in available_backends("cpu")


@pytest.mark.parametrize("model", MODELS)
@pytest.mark.parametrize("surrogate", list(SURROGATE_KINDS))
def test_every_model_and_surrogate_kind_matches_reference(model, surrogate):
    seed = MODELS.index(model) * 100 + list(SURROGATE_KINDS).index(surrogate)
    x, state, kw = generated_case(seed, model)
    kw["surrogate"] = SURROGATE_KINDS[surrogate]
    tau = kw.pop("tau")
    want = run(model, "reference", x, state, None, grads=grads_of(seed), tau=tau, **kw)
    got = run(model, "triton", x, state, None, grads=grads_of(seed), tau=tau, **kw)
    assert_same(got, want, tol_for(x.dtype))


@pytest.mark.parametrize("model", MODELS)
@pytest.mark.parametrize("surrogate", ["triangle", "callable"])
def test_trace_and_its_gradients_match_reference(model, surrogate):
    # gradients flow back through v_t and h_t of every step (kernel code 5)
    seed = 7 + MODELS.index(model)
    x, state, kw = generated_case(seed, model)
    kw["surrogate"] = SURROGATE_KINDS[surrogate]
    tau = kw.pop("tau")
    tau = float(tau) if isinstance(tau, torch.Tensor) else tau
    want = run(model, "reference", x, state, None, trace=True, grads=grads_of(seed), tau=tau,
               **kw)
    got = run(model, "triton", x, state, None, trace=True, grads=grads_of(seed), tau=tau, **kw)
    assert_same(got, want, tol_for(x.dtype))


@pytest.mark.parametrize("model", MODELS)
def test_float64_keeps_a_non_float32_threshold(model):
    # v_th = 0.9 is not a float32 number: a float32 threshold fires where float64 does not
    x = torch.full((2, 1, 3), 0.9, dtype=torch.float64)
    x[:, :, 1] = math.nextafter(0.9, 0.0)
    x[:, :, 2] = 0.9000000059604645  # 0.9 rounded to float32, above the float64 0.9
    state = torch.zeros(1, 3, dtype=torch.float64)
    if model not in ("lif", "if"):
        state = (state, torch.zeros(1, 3, dtype=torch.float64))
    kw = dict(v_th=0.9, reset="hard", surrogate="atan", tau=1.0)
    want = run(model, "reference", x, state, None, **kw)
    got = run(model, "triton", x, state, None, **kw)
    assert want[0][0, 0].tolist() == [1.0, 0.0, 1.0]
    assert_same(got, want, tol_for(torch.float64))


@pytest.mark.parametrize("model", MODELS)
@pytest.mark.parametrize("seed", [0, 1])
def test_float64_generated_cases(model, seed):
    x, state, kw = generated_case(300 + seed, model, torch.float64)
    kw["surrogate"] = ["sigmoid", fast_sigmoid][seed]
    tau = kw.pop("tau")
    want = run(model, "reference", x, state, None, grads=grads_of(seed), tau=tau, **kw)
    got = run(model, "triton", x, state, None, grads=grads_of(seed), tau=tau, **kw)
    assert_same(got, want, tol_for(torch.float64))


@pytest.mark.parametrize("model", MODELS)
@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf])
def test_non_finite_input_matches_reference(model, bad):
    x, state, kw = generated_case(500 + MODELS.index(model), model)
    x.view(x.shape[0], -1)[0, 3] = bad
    x.view(x.shape[0], -1)[-1, -1] = bad
    kw["surrogate"] = "sigmoid"
    tau = kw.pop("tau")
    tau = float(tau) if isinstance(tau, torch.Tensor) else tau
    want = run(model, "reference", x, state, None, tau=tau, **kw)
    got = run(model, "triton", x, state, None, tau=tau, **kw)
    assert_same(got, want, tol_for(x.dtype))


@pytest.mark.parametrize("model", ["lif", "alif"])
def test_bfloat16_input_has_float32_state(model):
    x, state, kw = generated_case(41, model)
    tau = kw.pop("tau")
    kw["tau"] = float(tau) if isinstance(tau, torch.Tensor) else tau
    xb = x.to(torch.bfloat16)
    got = run(model, "triton", xb, state, None, **kw)
    assert got[0].dtype == torch.bfloat16
    # the same computation from the bf16 values in float32
    want = run(model, "triton", xb.float(), state, None, **kw)
    torch.testing.assert_close(got[0].float(), want[0], atol=0, rtol=0)


def test_interpreter_context_refuses_nesting_and_runs_lif():
    from membra.kernels import triton_backend as tb

    x = torch.randn(3, 2, 5)
    with pytest.raises(RuntimeError, match="already active"):
        with tb.interpret_on_cpu():
            pass
    assert tb.interpreting_on_cpu()
    s_in, v_in = lif_sequence(x, backend="triton")
    s_ref, v_ref = lif_sequence(x, backend="reference")
    assert torch.equal(s_in, s_ref)
    torch.testing.assert_close(v_in, v_ref)


@pytest.mark.slow
def test_kernels_compile_for_sm90():
    # the interpreter does not check Triton's types: compile every variant for an H100-class
    # GPU (a cubin, with the wheel's ptxas) in a process without TRITON_INTERPRET
    here = Path(__file__).resolve().parent
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    env["PYTHONPATH"] = os.pathsep.join([str(here.parents[1] / "src"), env.get("PYTHONPATH", "")])
    proc = subprocess.run([sys.executable, str(here / "triton_compile_check.py"), "90"],
                          env=env, capture_output=True, text=True, timeout=1800)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.strip().startswith("compiled ")


@pytest.mark.parametrize("surrogate", ["atan", "callable"])
def test_rlif_runs_a_gemm_and_a_triton_lif_step_per_step(surrogate):
    from membra.kernels.models import rlif_sequence

    g = torch.Generator().manual_seed(11)
    x = torch.randn(4, 3, 2, 5, generator=g) + 0.4
    w = torch.randn(10, 10, generator=g) * 0.3
    v0 = torch.rand(1, 2, 5, generator=g)
    out = {}
    for backend in ("reference", "triton"):
        xx, ww, vv = (t.clone().requires_grad_() for t in (x, w, v0))
        s, (v, _) = rlif_sequence(xx, ww, (vv, torch.zeros(())), backend=backend,
                                  surrogate=SURROGATE_KINDS[surrogate], reset="hard")
        (s * torch.arange(s.numel()).view_as(s).sin()).sum().add(v.sum()).backward()
        out[backend] = (s.detach(), v.detach(), xx.grad, ww.grad, vv.grad)
    assert_same(list(out["triton"]), list(out["reference"]), tol_for(torch.float32))


@pytest.mark.parametrize("kind,trace_v", [("cuba_lif", False), ("alif", True)])
def test_model_ops_pass_opcheck(kind, trace_v):
    # schema, fake tensors (torch.compile), autograd registration of membra::model_triton_*
    from membra.functional import NeuronKind
    from membra.kernels.triton_models import model_triton_fwd

    g = torch.Generator().manual_seed(3)
    x = (torch.randn(3, 7, generator=g) + 0.5).requires_grad_()
    v0, c0 = (torch.randn(7, generator=g).requires_grad_() for _ in range(2))
    args = (x, v0, c0, NeuronKind.parse(kind).code, True, 2.0, 0.5, 0.3, 1.0, 0.0, 0, 4.0,
            True, trace_v)
    torch.library.opcheck(model_triton_fwd, args)


@pytest.mark.parametrize("kind", ["lif", "if"])
def test_inference_forward_writes_no_h_and_the_same_spikes(kind):
    """``SAVE_H=False`` (the inference path): the spikes and ``v_T`` of the full forward,
    and no ``h``; a no-grad call of the layer goes that way, directly (no op dispatch)."""
    from membra.functional import NeuronKind
    from membra.kernels import direct, neuron_sequence
    from membra.kernels.triton_backend import kernel_params, launch_forward

    g = torch.Generator().manual_seed(3)
    x = torch.randn(6, 300, generator=g) + 0.4
    v0 = torch.rand(300, generator=g)
    code = NeuronKind.parse(kind).code
    prm, tau = kernel_params(v0, 1.0, 0.0), torch.tensor(2.0)
    full = launch_forward(code, x, v0, None, tau, prm, True, False)
    lean = launch_forward(code, x, v0, None, tau, prm, True, False, save_h=False)
    assert full[3].shape == x.shape and lean[3].numel() == 0
    assert torch.equal(full[0], lean[0]) and torch.equal(full[1], lean[1])
    with torch.no_grad():
        s, v = neuron_sequence(x.view(6, 3, 100), v0.view(3, 100), neuron=kind,
                               backend="triton", spike_dtype=torch.bool)
        with direct.through_the_ops():
            s_op, v_op = neuron_sequence(x.view(6, 3, 100), v0.view(3, 100), neuron=kind,
                                         backend="triton", spike_dtype=torch.bool)
    assert torch.equal(s, s_op) and torch.equal(s.view(6, 300), full[0].bool())
    assert torch.equal(v, v_op) and torch.equal(v.view(300), full[1])


@pytest.mark.parametrize("spike_dtype", [torch.bool, torch.uint8, None])
def test_inference_spikes_as_bytes_match_the_reference_nan_included(spike_dtype):
    """Bytes written by the kernel: ``s != 0``, so a NaN spike (non-finite input) is 1, as
    ``.to(torch.bool)`` of the reference's float spike."""
    from membra.kernels import neuron_sequence

    g = torch.Generator().manual_seed(4)
    x = torch.randn(5, 2, 129, generator=g) + 0.5
    x[1, 0, 3], x[2, 1, 7], x[0, 1, 0] = math.nan, math.inf, -math.inf
    with torch.no_grad():
        s, v = neuron_sequence(x, tau=2.0, backend="triton", spike_dtype=spike_dtype)
        ref_s, ref_v = neuron_sequence(x, tau=2.0, backend="reference")
    want = ref_s.ne(0).to(spike_dtype) if spike_dtype in (torch.bool, torch.uint8) else \
        ref_s.to(spike_dtype or ref_s.dtype)
    assert s.dtype == want.dtype
    torch.testing.assert_close(s, want, rtol=0, atol=0, equal_nan=True)
    torch.testing.assert_close(v, ref_v, rtol=0, atol=0, equal_nan=True)
