"""Spec test 4: composition of compiled rules, shared clock and phase neurons."""

import numpy as np
import pytest
from construct_cases import random_rules

from membra.construct import SpikeRule, compile_rule, compose


def test_compose_random_pairs():
    rng = np.random.default_rng(0)
    for i in range(10):
        m1, m2 = (int(v) for v in rng.integers(1, 5, size=2))
        f = random_rules(1, m1, 1, seed=100 + i)[0]
        g = random_rules(1, m2, 1, seed=200 + i)[0]
        circ = compose(g, [f])
        cf, cg = compile_rule(f), compile_rule(g)
        assert circ.n_neurons == cf.n_neurons + cg.n_neurons - 2
        assert circ.n_weights == cf.n_weights + cg.n_weights - 3
        X = (rng.random((3000, 3, 1)) < rng.uniform(0.2, 0.8)).astype(np.int8)
        ref = g(f(X)[:, :, None])
        np.testing.assert_array_equal(circ.simulate(X), ref)


def test_compose_memory_adds():
    # g = "x[t] and x[t-1]" on f = "x[t] and x[t-2]": y depends on x[t-3] (m = 2 + 3 - 1)
    f = SpikeRule.from_predicate(lambda w: w[0, 0] and w[0, 2], 3)
    g = SpikeRule.from_pattern([1, 1])
    circ = compose(g, f)
    direct = SpikeRule.from_predicate(lambda w: w[0, 0] and w[0, 2] and w[0, 1] and w[0, 3], 4)
    X = (np.random.default_rng(1).random((2000, 4, 1)) < 0.6).astype(np.int8)
    np.testing.assert_array_equal(circ.simulate(X), direct(X))


def test_two_inners_feed_two_input_outer():
    rng = np.random.default_rng(3)
    for i in range(4):
        f0 = random_rules(1, 3, 1, seed=300 + i)[0]
        f1 = random_rules(1, 2, 1, seed=400 + i)[0]
        g = random_rules(2, 2, 1, seed=500 + i)[0]
        circ = compose(g, [f0, compile_rule(f1)])
        assert circ.requires_clock and circ.inputs == ["clock", "x0"]
        assert sum(n in ("ODD", "EVEN") for n in circ.neurons) == 2
        X = (rng.random((2000, 3, 1)) < 0.5).astype(np.int8)
        ref = g(np.stack([f0(X), f1(X)], axis=-1))
        np.testing.assert_array_equal(circ.simulate(X), ref)
        np.testing.assert_array_equal(circ.simulate(X[:200, :1], exact=True), ref[:200, :1])


def test_compose_errors():
    g2 = random_rules(2, 2, 1, seed=1)[0]
    f = random_rules(1, 2, 1, seed=2)[0]
    with pytest.raises(ValueError, match="2 data input"):
        compose(g2, [f])
    with pytest.raises(TypeError, match="SpikeRule or a SpikingCircuit"):
        compose(g2, [f, "x"])
