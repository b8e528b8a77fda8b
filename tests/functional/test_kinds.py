"""The typed vocabulary of membra.functional: neuron kinds, resets, init potentials."""

from __future__ import annotations

import math

import pytest
import torch

from membra.functional import InitPotential, NeuronKind


@pytest.mark.parametrize("bad", ["lfi", "Lif", "", 0, None, 1.5])
def test_bad_kind_lists_valid_ones(bad):
    with pytest.raises((ValueError, TypeError), match=r"'lif'.*'if'"):
        NeuronKind.parse(bad)


def test_kind_codes_are_distinct_and_stable():
    assert NeuronKind.LIF.code == 0 and NeuronKind.IF.code == 1
    assert NeuronKind.LIF.has_tau and not NeuronKind.IF.has_tau


@pytest.mark.parametrize("value,learnable,shape,match", [
    ("learnable", False, None, "shape"),
    ("learn", False, (2,), "learnable"),
    (math.nan, False, (2,), "init_potential"),
    (math.inf, False, None, "init_potential"),
    (True, False, None, "init_potential"),
    (torch.zeros(1, 3, dtype=torch.int64), False, (3,), "floating"),
    (torch.zeros(2, 3), False, (3,), "broadcast"),
    (torch.tensor([0.0, math.nan]), False, (2,), "finite"),
    (0.1, True, None, "shape"),
])
def test_bad_init_potential_is_named(value, learnable, shape, match):
    with pytest.raises((TypeError, ValueError), match=match):
        InitPotential.parse(value, learnable=learnable, shape=shape)


@pytest.mark.parametrize("rng", [(0.6, 0.4), (0.2, math.inf), ("a", 1)])
def test_bad_range(rng):
    with pytest.raises(ValueError, match="init_range"):
        InitPotential.parse("learnable", init_range=rng, shape=(2,))


def test_range_given_with_fixed_potential_is_refused():
    with pytest.raises(ValueError, match="init_range"):
        InitPotential.parse(0.2, init_range=(0.4, 0.6), shape=(2,))
    assert InitPotential.parse("learnable", shape=(2,)).range == (0.4, 0.6)
    ip = InitPotential.parse("learnable", init_range=(-1, 1), shape=(3, 2))
    t = ip.initial_tensor((3, 2), generator=torch.Generator().manual_seed(0))
    assert t.shape == (1, 3, 2) and t.min() >= -1 and t.max() <= 1
