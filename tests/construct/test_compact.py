"""method="compact" (clock-free gap rules): the spec's test suite on the rules it supports."""

import itertools

import numpy as np
import pytest
import torch

from membra.construct import NotInputDominatedError, SpikeRule, compile_rule, compose
from membra.construct.compact import gap_circuit, gap_profile
from membra.construct.verify import check_random_many, check_windows


def gap_rule(a):
    """Gap rule with profile a = [a(1), ..., a(m)] by a plain predicate on the window."""
    m = len(a)

    def pred(w):
        if not w[0, 0]:
            return False
        ones = [k for k in range(1, m) if w[0, k]]
        return bool(a[(ones[0] if ones else m) - 1])
    return SpikeRule.from_predicate(pred, m)


def exact_gap(k):
    return gap_rule([d == k for d in range(1, k + 2)])


def random_gap_rules(m, count, seed):
    rng = np.random.default_rng(seed + 100 * m)
    return [gap_rule(list(rng.random(m) < 0.5)) for _ in range(count)]


@pytest.mark.parametrize("m", range(1, 7))
def test_exhaustive_every_gap_rule(m):
    # all 2**m gap profiles, every window after random prefixes of length 0..2m
    for i, a in enumerate(itertools.product([False, True], repeat=m)):
        rule = gap_rule(list(a))
        assert gap_profile(rule) == list(a)
        circ = compile_rule(rule, method="compact")
        assert not circ.requires_clock and circ.inputs == ["x0"]
        res = check_windows(circ, rule, seed=i)
        assert res.mismatches == 0, (m, a)


@pytest.mark.parametrize("m", [8, 10, pytest.param(12, marks=pytest.mark.slow)])
def test_exhaustive_windows_larger_m(m):
    for i, rule in enumerate(random_gap_rules(m, 3, seed=1) + [exact_gap(m - 1)]):
        res = check_windows(compile_rule(rule, method="compact"), rule, seed=i)
        assert res.mismatches == 0 and res.steps > 0


@pytest.mark.parametrize("m", [2, 3, 4, 6, 9, 12, 16])
def test_long_random_trains(m):
    rules = random_gap_rules(m, 6, seed=2) + [exact_gap(m - 1)]
    circs = [compile_rule(r, method="compact") for r in rules]
    res = check_random_many(circs, rules, T=4000, seed=m)
    assert [r.mismatches for r in res] == [0] * len(rules)


def test_exact_float_torch_agree():
    rng = np.random.default_rng(3)
    for m in (2, 3, 4):
        for rule in random_gap_rules(m, 2, seed=4) + [exact_gap(m - 1)]:
            circ = compile_rule(rule, method="compact")
            X = (rng.random((300, 2, 1)) < rng.uniform(0.1, 0.9)).astype(np.int8)
            ex = circ.simulate(X, exact=True, return_all=True)
            fl = circ.simulate(X, return_all=True)
            np.testing.assert_array_equal(ex.spikes, fl.spikes)
            np.testing.assert_array_equal(ex.out, rule(X))
            pots = np.array([float(v) for v in ex.potentials.ravel()]).reshape(fl.potentials.shape)
            assert np.abs(pots - fl.potentials).max() < 1e-12
            X8 = (rng.random((300, 8, 1)) < 0.4).astype(np.int8)
            sim = circ.simulate(X8, return_all=True)
            for dtype in (torch.float64, torch.float32):
                res = circ.to_torch(dtype)(torch.tensor(X8), return_all=True)
                np.testing.assert_array_equal(res["spikes"].numpy(), sim.spikes)


def test_long_silences_exact():
    # exact arithmetic: the event counters survive any silence; floats up to ~3.7e4 steps
    rule = exact_gap(3)
    circ = compile_rule(rule, method="compact")
    x = np.zeros((2600, 1), dtype=np.int8)
    for t in (0, 3, 500, 503, 504, 2000, 2003, 2006, 2599):
        x[t] = 1
    assert circ.simulate(x, exact=True).tolist() == rule(x).tolist()
    assert circ.simulate(x).tolist() == rule(x).tolist()
    assert rule(x).sum() == 4


def test_only_spikes_at_input_spikes():
    circ = compile_rule(exact_gap(4), method="compact")
    X = (np.random.default_rng(5).random((1000, 3, 1)) < 0.3).astype(np.int8)
    sim = circ.simulate(X, return_all=True)
    assert (sim.spikes[X[:, :, 0] == 0] == 0).all()
    assert sim.at_threshold > 0  # the event counters sit at exactly V = 1


@pytest.mark.parametrize("m", [2, 5, 9, 12])
def test_counts_independent_of_m(m):
    rule = exact_gap(m - 1)
    circ = compile_rule(rule, method="compact")
    K = len(circ.meta["thresholds"])
    assert K == (1 if m == 2 else 2)
    assert circ.n_neurons == 6 + 4 * K + 1 <= 15
    assert circ.n_weights == 9 + 16 * K <= 41
    base = compile_rule(rule)
    assert base.n_neurons == 2 * m + 3 + 1


@pytest.mark.parametrize("m", [33, 65, 257])
def test_gap_circuit_beyond_tables(m):
    # no window table exists at this m; the reference is the gap rule evaluated directly
    k = m - 1
    circ = gap_circuit([d == k for d in range(1, m + 1)])
    assert circ.n_neurons == 15 and circ.n_weights == 41
    rng = np.random.default_rng(m)
    X = (rng.random((3000, 4, 1)) < 0.05).astype(np.int8)
    X[:, 0, 0] = 0
    X[::k, 0, 0] = 1  # sample 0 hits the exact gap at every spike but the first
    ref = np.zeros(X.shape[:2], dtype=np.int8)
    for b in range(X.shape[1]):
        last = None
        for t in range(X.shape[0]):
            if X[t, b, 0]:
                ref[t, b] = int(last is not None and t - last == k)
                last = t
    assert ref[:, 0].sum() == (3000 - 1) // k
    np.testing.assert_array_equal(circ.simulate(X), ref)


def test_counts_formula_random():
    for m in (3, 6, 10):
        for rule in random_gap_rules(m, 5, seed=6):
            circ = compile_rule(rule, method="compact")
            a = gap_profile(rule)
            K = sum(a[d - 1] != a[d] for d in range(1, m))
            assert circ.n_neurons == (6 + 4 * K + 1 if K else 1)
            assert circ.n_weights == (9 + 16 * K if K else 0) + int(a[-1])


def test_compose_compact_stays_clock_free():
    rng = np.random.default_rng(7)
    for i in range(6):
        f = random_gap_rules(int(rng.integers(2, 6)), 1, seed=10 + i)[0]
        g = random_gap_rules(int(rng.integers(2, 6)), 1, seed=20 + i)[0]
        circ = compose(compile_rule(g, method="compact"), [compile_rule(f, method="compact")])
        assert not circ.requires_clock
        X = (rng.random((3000, 3, 1)) < 0.4).astype(np.int8)
        np.testing.assert_array_equal(circ.simulate(X), g(f(X)[:, :, None]))
    # a compact inner feeding a baseline outer: the composite gets the clock
    # (components share one decay: build the compact part with lam = 1/2)
    inner = gap_circuit(gap_profile(exact_gap(2)), lam="1/2")
    with pytest.raises(ValueError, match="share one decay"):
        compose(SpikeRule.from_pattern([1, 0, 1]), compile_rule(exact_gap(2), method="compact"))
    mixed = compose(SpikeRule.from_pattern([1, 0, 1]), inner)
    X = (rng.random((2000, 2, 1)) < 0.5).astype(np.int8)
    assert mixed.requires_clock
    np.testing.assert_array_equal(mixed.simulate(X),
                                  SpikeRule.from_pattern([1, 0, 1])(exact_gap(2)(X)[:, :, None]))


def test_rejections():
    with pytest.raises(ValueError, match="gap rules"):
        compile_rule(SpikeRule.from_pattern([1, 0, 1, 1]), method="compact")
    with pytest.raises(ValueError, match="clock-free"):
        compile_rule(exact_gap(2), method="compact", clock=True)
    with pytest.raises(NotInputDominatedError):
        compile_rule(SpikeRule.from_table([1, 0, 0, 0], 2), method="compact")
    assert gap_profile(SpikeRule.from_predicate(lambda w: w[0, 0] and w[0, 2], 3)) is None
    assert gap_profile(SpikeRule.from_table([0, 1, 0, 1], 2, 1)) == [True, True]
