"""Spec test 3: exact Fraction vs float simulator, and the torch module vs simulate."""

from fractions import Fraction

import numpy as np
import pytest
import torch
from construct_cases import random_rules

from membra.construct import SpikingCircuit, compile_rule


@pytest.mark.parametrize("n,m", [(1, 2), (1, 3), (1, 4), (2, 2)])
def test_exact_equals_float_every_neuron(n, m):
    rng = np.random.default_rng(m)
    for rule in random_rules(n, m, 2, seed=5):
        circ = compile_rule(rule)
        X = (rng.random((300, 2, n)) < 0.5).astype(np.int8)
        ex = circ.simulate(X, exact=True, return_all=True)
        fl = circ.simulate(X, return_all=True)
        np.testing.assert_array_equal(ex.spikes, fl.spikes)
        # potentials agree exactly too (dyadic states are exact in float64)
        assert all(float(a) == b for a, b in zip(ex.potentials.ravel(), fl.potentials.ravel(),
                                                 strict=True))
        assert ex.margin == fl.margin >= 1 / 16


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("n,m", [(1, 1), (1, 4), (1, 6), (2, 3)])
def test_torch_module_equals_simulate(dtype, n, m):
    rng = np.random.default_rng(7)
    for rule in random_rules(n, m, 2, seed=6):
        circ = compile_rule(rule)
        X = (rng.random((200, 8, n)) < rng.uniform(0.1, 0.9)).astype(np.int8)
        sim = circ.simulate(X, return_all=True)
        mod = circ.to_torch(dtype)
        res = mod(torch.tensor(X), return_all=True)
        assert res["out"].shape == (200, 8) and res["out"].dtype == dtype
        np.testing.assert_array_equal(res["spikes"].numpy(), sim.spikes)
        np.testing.assert_array_equal(mod(torch.tensor(X)).numpy(), rule(X))
        assert not list(mod.parameters())


@pytest.mark.gpu
def test_torch_module_cuda_if_available():
    if not torch.cuda.is_available():
        pytest.skip("no CUDA device")
    rule = random_rules(1, 4, 1, seed=8)[0]
    circ = compile_rule(rule)
    X = (np.random.default_rng(0).random((100, 8, 1)) < 0.5).astype(np.int8)
    for dtype in (torch.float64, torch.float32):
        out = circ.to_torch(dtype).cuda()(torch.tensor(X).cuda()).cpu().numpy()
        np.testing.assert_array_equal(out, circ.simulate(X))


def test_non_dyadic_circuit_margin_and_exact_path():
    # lam = 2/3 and weight 1/3: not dyadic; exact arithmetic decides, float reports the margin
    circ = SpikingCircuit(["x0"], ["A", "B"], [("x0", "A", "1/3"), ("x0", "B", "2/3"),
                                               ("A", "B", "1/2")], "B", lam="2/3")
    assert not circ.is_dyadic() and compile_rule(random_rules(1, 2, 1, 0)[0]).is_dyadic()
    X = (np.random.default_rng(1).random((100, 1)) < 0.7).astype(np.int8)
    ex = circ.simulate(X, exact=True, return_all=True)
    fl = circ.simulate(X, return_all=True)
    np.testing.assert_array_equal(ex.spikes, fl.spikes)
    assert isinstance(ex.potentials[5, 0], Fraction)
    assert abs(ex.margin - fl.margin) < 1e-12 and fl.margin > 1e-9


def test_torch_module_rejects_bad_shape():
    circ = compile_rule(random_rules(1, 2, 1, 0)[0])
    with pytest.raises(ValueError, match=r"\[T, B, 1\]"):
        circ.to_torch()(torch.zeros(5, 1))


def test_float_path_warns_near_threshold():
    eps = Fraction(1, 2 ** 40)
    circ = SpikingCircuit(["x0"], ["A"], [("x0", "A", 1 + eps)], "A")
    X = np.ones((3, 1), dtype=np.int8)
    with pytest.warns(RuntimeWarning, match="use simulate\\(exact=True\\)"):
        sim = circ.simulate(X, return_all=True)
    assert sim.out.tolist() == [1, 1, 1] and sim.margin == float(eps)
    assert circ.simulate(X, exact=True, return_all=True).margin == float(eps)


def test_large_window_warns():
    from membra.construct import SpikeRule
    with pytest.warns(UserWarning, match="2\\*\\*\\(n\\*m\\)"):
        circ = compile_rule(SpikeRule.from_pattern([1] * 17))
    assert circ.n_neurons == 2 * 17 + 3 + 1
