"""Spec tests 1, 2 and 5 for method="baseline": exhaustive windows, long trains, counts."""

import numpy as np
import pytest
from construct_cases import random_rules

from membra.construct import SpikeRule, compile_rule
from membra.construct.verify import all_windows, check_random, check_random_many, check_windows

SETTINGS = [(1, m, 20) for m in range(1, 7)] + [(2, m, 10) for m in range(1, 4)]


@pytest.mark.parametrize("n,m,count", SETTINGS)
def test_exhaustive_windows(n, m, count):
    for i, rule in enumerate(random_rules(n, m, count, seed=1)):
        res = check_windows(compile_rule(rule), rule, seed=i)
        assert res.steps == sum((L + m) << (n * m) for L in range(2 * m + 1))
        assert res.mismatches == 0, (n, m, i)
        assert res.margin >= 1 / 16


@pytest.mark.parametrize("n,m,count", SETTINGS)
def test_long_random_trains(n, m, count):
    rules = random_rules(n, m, count, seed=2)
    results = check_random_many([compile_rule(r) for r in rules], rules, T=4000, seed=m)
    assert [r.mismatches for r in results] == [0] * count
    assert all(r.steps == 9 * 4000 for r in results)


def test_union_check_equals_single_check():
    rules = random_rules(1, 3, 3, seed=4)
    circs = [compile_rule(r) for r in rules]
    many = check_random_many(circs, rules, T=300, seed=5)
    bad = compile_rule(SpikeRule.from_table(~rules[1].table, 3))
    broken = check_random_many([circs[0], bad, circs[2]], rules, T=300, seed=5)
    assert [r.mismatches for r in many] == [0, 0, 0]
    assert broken[0].mismatches == 0 and broken[1].mismatches == 2700
    assert check_random(circs[1], rules[1], T=300).mismatches == 0


def test_all_windows_layout():
    W = all_windows(3, 2)
    idx = 0b101 | (0b011 << 3)
    assert W[:, idx, 0].tolist() == [1, 0, 1] and W[:, idx, 1].tolist() == [0, 1, 1]


def _weight_count(rule):
    n, m = rule.n_inputs, rule.m
    total = 3 + (6 * n * m if m >= 2 else 0)
    for idx in rule.accepted:
        p = bin(int(idx)).count("1")
        total += n * (2 * m - 1) + (p != 1) + 1
    return total


@pytest.mark.parametrize("n,m", [(1, 1), (1, 2), (1, 4), (1, 6), (2, 2), (2, 3), (3, 2)])
def test_counts(n, m):
    for rule in random_rules(n, m, 5, seed=3):
        circ = compile_rule(rule)
        A = rule.n_accepted
        if m >= 2:
            assert circ.n_neurons == 2 * n * m + 3 + A
            assert circ.depth == m + 4 or A == 0
        else:
            assert circ.n_neurons == 2 + A + 1
        assert circ.n_weights == _weight_count(rule)
        assert circ.n_weights <= 3 + 6 * n * m + A * (n * (2 * m - 1) + 2)
        assert circ.requires_clock and circ.inputs[0] == "clock"


@pytest.mark.parametrize("m,n,neurons,weights,A", [
    (2, 1, 8, 20, 1), (3, 1, 13, 47, 4), (4, 1, 16, 70, 5), (5, 1, 27, 187, 14),
    (6, 1, 49, 478, 34), (2, 2, 20, 95, 9), (3, 2, 43, 373, 28)])
def test_spec_prototype_table(m, n, neurons, weights, A):
    # The spec's prototype rows (section 8). A term with P one-bits has n(2m-1) + 1 weights plus
    # a clock weight unless P = 1, so a row's weights fix how many of its A windows have
    # P != 1. Build a table with exactly that mix and compare the compiled counts to the row.
    q = weights - 3 - 6 * n * m - A * (n * (2 * m - 1) + 1)
    ones = [i for i in range(1 << (n * m)) if bin(i).count("1") == 1]
    other = [i for i in range(1 << (n * m)) if bin(i).count("1") != 1]
    assert 0 <= q <= A and A - q <= len(ones)
    rng = np.random.default_rng(m + 10 * n)
    table = np.zeros(1 << (n * m), dtype=bool)
    table[rng.choice(ones, A - q, replace=False)] = True
    table[rng.choice(other, q, replace=False)] = True
    rule = SpikeRule.from_table(table, m, n)
    circ = compile_rule(rule)
    assert (rule.n_accepted, circ.n_neurons, circ.n_weights) == (A, neurons, weights)
    assert circ.n_weights <= 3 + 6 * n * m + A * (n * (2 * m - 1) + 2)
    assert check_windows(circ, rule, max_prefix=2).mismatches == 0


def test_strict_threshold_state_one_never_spikes():
    # V = 1 exactly must not spike: weight 1 from the input and isolated input spikes
    # (a ">=" threshold would spike at every input spike). The spec's "clock weight 1" variant
    # does spike: with the clock, V = 1, 3/2 > 1 at the second step.
    import torch

    from membra.construct import SpikingCircuit
    circ = SpikingCircuit(["x0", "x1"], ["N"], [("x0", "N", "1"), ("x1", "N", -1)], "N")
    x = np.zeros((60, 2), dtype=np.int8)
    x[::3, 0] = 1
    x[1::3, 1] = 1  # clears the stored 1/2 (clamp at 0)
    sim = circ.simulate(x, exact=True, return_all=True)
    assert sim.out.sum() == 0 and sim.at_threshold == 20 and max(sim.potentials[:, 0]) == 1
    assert circ.simulate(x, return_all=True).at_threshold == 20
    assert circ.simulate(x).sum() == 0
    assert circ.to_torch()(torch.tensor(x[:, None, :])).sum() == 0
    clocked = SpikingCircuit(["clock"], ["N"], [("clock", "N", 1)], "N", requires_clock=True)
    assert clocked.simulate(np.zeros((4, 0), dtype=np.int8), exact=True).tolist() == [0, 1, 0, 1]


def test_hold_reaches_state_15_16_not_one():
    # a load on top of the stored b gives exactly 15/16 (with a = 1 it would be exactly 1)
    rule = SpikeRule.from_pattern([1, 1, 1])
    circ = compile_rule(rule)
    x = np.zeros((12, 1), dtype=np.int8)
    x[2] = 1  # H0_0_1 holds b = 7/8 from the read at t = 1, then loads at t = 2
    sim = circ.simulate(x, exact=True, return_all=True)
    col = circ.neurons.index("H0_0_1")
    from fractions import Fraction
    assert Fraction(15, 16) in set(sim.potentials[:, col].tolist())
    assert sim.margin == 1 / 16


def test_strictness_mutation_guard_with_load_weight_one():
    # with a = 1 a hold neuron sits at exactly V = 1 after loading on top of b; the strict
    # threshold keeps it silent, a ">=" simulator would make this exhaustive check fail
    from fractions import Fraction

    from membra.construct.compile import _baseline
    for i, rule in enumerate(random_rules(1, 4, 5, seed=9)):
        circ = _baseline(rule, a=Fraction(1))
        res = check_windows(circ, rule, seed=i)
        sim = circ.simulate(np.array([0, 0, 1, 0, 0, 0])[:, None], return_all=True)
        assert res.mismatches == 0 and sim.at_threshold >= 1


def test_every_single_weight_perturbation_of_one_percent_keeps_the_circuit_exact():
    # the classification demo's robustness claim, for every weight and both signs: the 1/16
    # margin absorbs a 1% change of any one weight
    from membra.construct.classify import perturb_circuit

    rule = SpikeRule.from_pattern([1, 0, 1, 1])
    circ = compile_rule(rule)
    for k in range(circ.n_weights):
        for factor in ("101/100", "99/100"):
            bent = perturb_circuit(circ, k, factor)
            res = check_windows(bent, rule, max_prefix=4, seed=k)
            res += check_random(bent, rule, T=500, seed=k)
            assert res.mismatches == 0 and res.margin > 1 / 32, (circ.synapses[k], factor)
    # a change beyond the margin does break it: the OUT synapse from the term at 2/5
    out = next(i for i, s in enumerate(circ.synapses) if s.dst == "OUT")
    assert check_random(perturb_circuit(circ, out, "1/5"), rule, T=500).mismatches > 0
