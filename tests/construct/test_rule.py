"""SpikeRule: window indexing, constructors, probing errors, counts."""

import numpy as np
import pytest

from membra.construct import MemoryTooLongError, NotBinaryError, NotCausalError, SpikeRule


def plain_eval(fn, X, m):
    """y[t] = fn(window) with window[c, k] = X[t-k, c] (0 before the start), by a plain loop."""
    T, n = X.shape
    y = np.zeros(T, dtype=np.int8)
    for t in range(T):
        w = np.zeros((n, m), dtype=np.int8)
        for k in range(m):
            if t - k >= 0:
                w[:, k] = X[t - k]
        y[t] = fn(w)
    return y


def test_asymmetric_rule_lag_convention():
    # x[t] = 1 and x[t-2] = 0: reversed indexing would give x[t-2] = 1 and x[t] = 0
    rule = SpikeRule.from_predicate(lambda w: w[0, 0] == 1 and w[0, 2] == 0, m=3)
    assert rule.table[0b001] and rule.table[0b011] and not rule.table[0b100]
    assert not rule.table[0b101]
    x = np.array([1, 0, 1, 1, 0, 0, 1, 1, 1])
    assert rule(x).tolist() == [1, 0, 0, 1, 0, 0, 1, 1, 0]
    rng = np.random.default_rng(0)
    X = (rng.random((200, 1)) < 0.5).astype(np.int8)
    np.testing.assert_array_equal(rule(X), plain_eval(lambda w: w[0, 0] and not w[0, 2], X, 3))


def test_two_input_index_and_batch():
    rule = SpikeRule.from_predicate(lambda w: w[0, 1] == 1 and w[1, 0] == 1, m=2, n_inputs=2)
    assert rule.table[(1 << 1) | (1 << 2)] and rule.n_accepted == 4
    rng = np.random.default_rng(1)
    X = (rng.random((50, 3, 2)) < 0.5).astype(np.int8)
    y = rule(X)
    assert y.shape == (50, 3)
    for b in range(3):
        ref = plain_eval(lambda w: w[0, 1] and w[1, 0], X[:, b], 2)
        np.testing.assert_array_equal(y[:, b], ref)


def test_pattern_oldest_to_newest():
    rule = SpikeRule.from_pattern([1, 0, 1, 1])
    assert rule(np.array([1, 0, 1, 1, 0, 1, 1, 1])).tolist() == [0, 0, 0, 1, 0, 0, 1, 0]
    assert rule.n_accepted == 1 and rule.is_input_dominated


def test_counts_against_brute_force():
    rng = np.random.default_rng(2)
    for _ in range(20):
        t = rng.random(32) < 0.4
        rule = SpikeRule.from_table(t, 5)
        runs = sum(1 for i in range(32) if t[i] and (i == 0 or not t[i - 1]))
        assert rule.n_accepted == t.sum() and rule.n_runs == runs
        dom = not any(t[i] for i in range(32) if i % 2 == 0)
        assert rule.is_input_dominated == dom


def test_from_function_recovers_table():
    def fn(X):  # y[t] = x[t] and x[t-3]
        x = X[:, 0]
        y = np.zeros_like(x)
        y[3:] = x[3:] & x[:-3]
        return y
    rule = SpikeRule.from_function(fn, m=4, probes=200)
    assert rule == SpikeRule.from_predicate(lambda w: w[0, 0] and w[0, 3], 4)


def test_wrong_table_length_names_expected():
    with pytest.raises(ValueError, match=r"2\*\*\(n_inputs\*m\) = 8"):
        SpikeRule.from_table([0, 1, 0], 3)
    with pytest.raises(ValueError, match="m must be an int"):
        SpikeRule.from_table([0, 1], 0)


def test_not_causal():
    def fn(X):
        y = np.zeros(len(X), dtype=np.int8)
        y[:-1] = X[1:, 0]
        return y
    with pytest.raises(NotCausalError, match="not causal"):
        SpikeRule.from_function(fn, m=3)


def test_memory_too_long():
    with pytest.raises(MemoryTooLongError, match="last m = 3"):
        SpikeRule.from_function(lambda X: np.cumsum(X[:, 0]) % 2, m=3)


def test_not_binary():
    with pytest.raises(NotBinaryError, match="0 or 1"):
        SpikeRule.from_function(lambda X: 2 * X[:, 0], m=2)
    with pytest.raises(NotBinaryError):
        SpikeRule.from_predicate(lambda w: 3, m=2)


def test_bad_function_shape_and_inputs():
    with pytest.raises(ValueError, match=r"\(T,\) train"):
        SpikeRule.from_function(lambda X: X[:3, 0], m=2)
    rule = SpikeRule.from_pattern([1, 1])
    with pytest.raises(ValueError, match="only 0 and 1"):
        rule(np.array([0, 2, 1]))
    with pytest.raises(ValueError, match="1 input channel"):
        rule(np.zeros((5, 2)))


def test_dict_roundtrip():
    rule = SpikeRule.from_table(np.arange(16) % 3 == 0, 2, n_inputs=2)
    assert SpikeRule.from_dict(rule.to_dict()) == rule
    assert SpikeRule.from_dict({"pattern": [1, 0]}) == SpikeRule.from_pattern([1, 0])
    with pytest.raises(ValueError, match="window index"):
        SpikeRule.from_dict({"m": 2, "accept": [7]})
