"""Typed, validated-once neuron parameters: init potential, thresholds as buffers, old
checkpoints."""

from __future__ import annotations

import pytest
import torch

from membra.functional import SURROGATES, InitPotential, Surrogate
from membra.nn import IF, LIF


@pytest.mark.parametrize("cls", [LIF, IF])
@pytest.mark.parametrize("kw,match", [
    (dict(shape=(2,), init_potential="learnable", init_range=(0.6, 0.4)), "low <= high"),
    (dict(shape=(2,), init_potential="learnable", init_range=[0.6, 0.4]), "low <= high"),
    (dict(shape=(2,), init_potential=0.3, init_range=(0.1, 0.2)), "init_range.*learnable"),
    (dict(init_potential=torch.zeros(1), init_range=[0.6, 0.4]), "init_range"),
    (dict(shape=(2,), init_potential="learnable", init_range=(0.1, float("nan"))),
     "init_range"),
    (dict(shape=(2,), init_potential="learnable", init_range=(0.1,)), "init_range"),
])
def test_bad_init_range_refused(cls, kw, match):
    with pytest.raises(ValueError, match=match):
        cls(**kw)


@pytest.mark.parametrize("value,learnable,kind", [
    (0.0, False, "constant"), (0.25, False, "constant"), (torch.zeros(1, 3), False, "tensor"),
    (torch.zeros(1, 3), True, "learnable"), (0.5, True, "learnable"),
    ("learnable", False, "learnable")])
def test_init_potential_is_typed(value, learnable, kind):
    ip = InitPotential.parse(value, learnable=learnable, shape=(3,))
    assert ip.kind == kind
    layer = LIF(shape=(3,), init_potential=value, learnable_potential=learnable)
    assert layer.init_spec.kind == kind
    assert layer.learnable_potential == (kind == "learnable")


@pytest.mark.parametrize("cls", [LIF, IF])
def test_thresholds_are_buffers_in_the_state_dict(cls):
    a = cls(v_th=0.7, v_reset=-0.2)
    sd = a.state_dict()
    assert float(sd["v_th"]) == pytest.approx(0.7) and float(sd["v_reset"]) == pytest.approx(-0.2)
    b = cls()
    b.load_state_dict(sd)
    assert float(b.v_th) == pytest.approx(0.7) and float(b.v_reset) == pytest.approx(-0.2)
    x = torch.randn(5, 2, 3) + 0.5
    torch.testing.assert_close(a(x), b(x))
    a.double()
    assert a.v_th.dtype == torch.float64


@pytest.mark.parametrize("cls", [LIF, IF])
def test_old_checkpoint_without_thresholds_loads(cls):
    a = cls(shape=(3,), v_th=0.7, init_potential="learnable")
    sd = a.state_dict()
    del sd["v_th"], sd["v_reset"]
    b = cls(shape=(3,), v_th=0.7, init_potential="learnable")
    b.load_state_dict(sd)  # strict: missing thresholds keep the constructor's values
    assert float(b.v_th) == pytest.approx(0.7)


def test_surrogate_is_validated_once_and_readable():
    layer = LIF(surrogate="atan", alpha=3.0)
    assert layer.surrogate == "atan" and layer.alpha == 3.0
    assert isinstance(layer.surrogate_fn, Surrogate) and layer.surrogate_fn.alpha == 3.0
    c = LIF(surrogate=lambda u: torch.tanh(u))
    assert isinstance(c.surrogate_fn, Surrogate)
    c(torch.randn(3, 2, 4))
    assert LIF(surrogate=SURROGATES["triangle"]).surrogate == "triangle"
    with pytest.raises(ValueError, match="surrogate"):
        LIF(surrogate="sigmiod")
    with pytest.raises(ValueError, match="alpha"):
        LIF(surrogate=lambda u: u, alpha=2.0)


def test_custom_surrogate_layer_trains_on_fused_backend():
    torch.manual_seed(0)
    layer = LIF(shape=(8,), init_potential="learnable", surrogate=lambda u: torch.sigmoid(5 * u))
    x = torch.randn(6, 4, 8, requires_grad=True)
    layer(x).sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0
    assert layer.init_potential.grad.abs().sum() > 0


@pytest.mark.parametrize("name,cls", [("lif", LIF), ("if", IF), ("cuba_lif", "CubaLIF"),
                                      ("alif", "ALIF"), ("rlif", "RLIF")])
def test_neuron_class_by_kind(name, cls):
    import membra.nn

    cls = getattr(membra.nn, cls) if isinstance(cls, str) else cls
    from membra.functional import NeuronKind
    from membra.nn import neuron_class

    assert neuron_class(name) is cls and neuron_class(NeuronKind(name)) is cls
    assert cls.kind is NeuronKind(name)
    with pytest.raises(ValueError, match=r"'lif'.*'if'"):
        neuron_class("lfi")
