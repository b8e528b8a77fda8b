"""The layers' scalar buffers (v_th, v_reset, a fixed tau) are read into Python once per change,
not on every call (each read is a host sync on an accelerator), and a change always takes
effect: load_state_dict, an in-place write, .to(), assignment."""

from __future__ import annotations

import contextlib
import itertools

import pytest
import torch

from membra.nn import IF, LIF


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
])
@pytest.mark.parametrize("how", ["load_state_dict", "fill_", "assign", "to_double"])
def test_a_changed_buffer_takes_effect_at_once(cls, changes, how):
    g = torch.Generator().manual_seed(len(changes))
    x = torch.randn(6, 3, 11, generator=g) + 0.4
    layer = cls(reset="hard")
    layer.run(x)  # the values are read (and cached) here
    want_layer = cls(reset="hard", **changes)
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
    for got, want in zip(layer.run(x), want_layer.run(x), strict=True):
        torch.testing.assert_close(got, want, atol=0, rtol=0)


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
