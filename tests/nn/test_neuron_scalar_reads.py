"""The layers' scalar buffers (v_th, v_reset, a fixed tau) are read into Python once per change,
not on every call (each read is a host sync on an accelerator), and a change always takes
effect: load_state_dict, an in-place write, .to(), assignment."""

from __future__ import annotations

import contextlib
import itertools

import pytest
import torch

from membra.nn import ALIF, IF, LIF, RLIF, CubaLIF


@contextlib.contextmanager
def count_buffer_reads(layer):
    """Count ``float()`` / ``.item()`` / ``.tolist()`` of any tensor on a buffer's storage."""
    ptrs = {b.untyped_storage().data_ptr() for b in layer.buffers()}
    reads = []
    patched = {}
    for name in ("__float__", "item", "tolist", "__bool__", "__int__"):
        original = getattr(torch.Tensor, name)
        patched[name] = original

        def wrapper(self, *a, _o=original, _n=name, **k):
            if self.untyped_storage().data_ptr() in ptrs:
                reads.append(_n)
            return _o(self, *a, **k)

        setattr(torch.Tensor, name, wrapper)
    try:
        yield reads
    finally:
        for name, original in patched.items():
            setattr(torch.Tensor, name, original)


def layers():
    return [
        pytest.param(lambda: LIF(tau=2.5, v_th=0.8, v_reset=-0.1), id="lif"),
        pytest.param(lambda: LIF(tau=3.0, reset="hard", surrogate="atan"), id="lif-hard"),
        pytest.param(lambda: LIF(shape=(5,), tau=2.0, init_potential="learnable"), id="lif-imp"),
        pytest.param(lambda: LIF(tau=2.0, learnable_tau=True), id="lif-learnable-tau"),
        pytest.param(lambda: IF(v_th=1.2), id="if"),
        pytest.param(lambda: LIF(tau=2.0, backend="reference"), id="lif-reference"),
        pytest.param(lambda: CubaLIF(tau=2.5, tau_syn=3.0, v_th=0.7, v_reset=-0.1),
                     id="cuba_lif"),
        pytest.param(lambda: CubaLIF(shape=(5,), reset="hard", init_current="learnable",
                                     backend="reference"), id="cuba_lif-reference"),
        pytest.param(lambda: ALIF(tau=3.0, tau_adapt=7.0, beta=0.3), id="alif"),
        pytest.param(lambda: ALIF(shape=(5,), init_adaptation="learnable", reset="hard",
                                  backend="reference"), id="alif-reference"),
        pytest.param(lambda: RLIF((5,), tau=2.5, v_th=0.9), id="rlif"),
        pytest.param(lambda: RLIF((5,), learnable_tau=True, backend="reference"),
                     id="rlif-learnable-tau-reference"),
    ]


@pytest.mark.parametrize("make", layers())
@pytest.mark.parametrize("call", ["forward", "run", "trace", "step"])
def test_no_buffer_is_read_per_call(make, call):
    layer = make()
    x = torch.randn(3, 2, 5, requires_grad=True)
    fn = {"forward": lambda: layer(x), "run": lambda: layer.run(x),
          "trace": lambda: layer.trace(x), "step": lambda: layer.step(x[0])}[call]
    fn()  # the first call may read each buffer once
    with count_buffer_reads(layer) as reads:
        for _ in range(3):
            out = fn()
    assert reads == [], f"{call} read the layer's buffers: {reads}"
    torch.autograd.grad(out[0].sum() if isinstance(out, tuple) else out.sum(), x,
                        allow_unused=True)


def _spikes(layer, x):
    return layer.run(x)


@pytest.mark.parametrize("cls,changes", [
    (LIF, dict(v_th=0.6, v_reset=-0.3, tau=4.0)),
    (LIF, dict(v_th=1.7)),
    (IF, dict(v_th=0.4, v_reset=0.2)),
    (CubaLIF, dict(tau_syn=5.0, v_th=0.5)),
    (CubaLIF, dict(tau=3.0, v_reset=-0.4)),
    (ALIF, dict(tau_adapt=3.0, beta=1.5)),
    (ALIF, dict(tau=4.0, v_th=0.6)),
    (RLIF, dict(tau=3.0, v_th=0.5, v_reset=0.25)),
])
@pytest.mark.parametrize("how", ["load_state_dict", "fill_", "assign", "to_double"])
def test_a_changed_buffer_takes_effect_at_once(cls, changes, how):
    g = torch.Generator().manual_seed(len(changes))
    x = torch.randn(6, 3, 11, generator=g) + 0.4
    make = (lambda **kw: RLIF((11,), **kw)) if cls is RLIF else cls
    layer = make(reset="hard")
    before = layer.run(x)[0]  # the values are read (and cached) here
    want_layer = make(reset="hard", **changes)
    if cls is RLIF:
        want_layer.weight = layer.weight
    if how == "load_state_dict":
        layer.load_state_dict(want_layer.state_dict())
    elif how == "fill_":
        with torch.no_grad():
            for k, v in changes.items():
                getattr(layer, k).fill_(v)
    elif how == "assign":
        for k, v in changes.items():
            setattr(layer, k, torch.tensor(v, dtype=getattr(layer, k).dtype))
    else:
        with torch.no_grad():
            for k, v in changes.items():
                getattr(layer, k).fill_(v)
        layer.double()
        want_layer.double()
        x = x.double()
    got, want = layer.run(x), want_layer.run(x)
    torch.testing.assert_close(got, want, atol=0, rtol=0)
    assert how == "to_double" or not torch.equal(got[0], before), "the change alters spikes"


@pytest.mark.parametrize("bad", [0.5, float("nan"), float("inf")])
def test_an_invalid_tau_written_in_place_is_refused_at_the_next_call(bad):
    layer = LIF(tau=2.0)
    x = torch.randn(2, 1, 3)
    layer(x)
    with torch.no_grad():
        layer.tau.fill_(bad)
    with pytest.raises(ValueError, match="tau must be finite and >= 1"):
        layer(x)


def test_values_per_layer_are_independent():
    a, b = LIF(v_th=0.5), LIF(v_th=1.5)
    x = torch.full((2, 1, 4), 0.8) * torch.tensor([1.0, 2.0, 3.0, 4.0])
    for la, lb in itertools.permutations((a, b)):
        assert not torch.equal(la(x), lb(x))
