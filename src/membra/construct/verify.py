"""Check a circuit against its rule: every window after random prefixes, and long random trains.

Both compare the circuit's output with the rule's numpy reference evaluator at *every* step of
every run (not only at the last step), so a wrong state left behind by an earlier window shows.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["CheckResult", "check_windows", "check_random", "check_shapes", "all_windows",
           "MAX_CELLS"]

#: largest ``T * B * neurons`` simulated at once; longer batches are split (memory bound)
MAX_CELLS = 1 << 22


@dataclass
class CheckResult:
    """``steps`` grid steps compared, ``mismatches`` among them, ``runs`` trains simulated and
    the smallest float ``margin`` min |V - 1| seen."""

    steps: int = 0
    mismatches: int = 0
    runs: int = 0
    margin: float = float("inf")

    def __iadd__(self, other: CheckResult) -> CheckResult:
        self.steps += other.steps
        self.mismatches += other.mismatches
        self.runs += other.runs
        self.margin = min(self.margin, other.margin)
        return self


def _check_consistent(circ, rule) -> None:
    if circ.n_inputs != rule.n_inputs:
        raise ValueError(f"the circuit has {circ.n_inputs} data input(s), the rule "
                         f"{rule.n_inputs}")


def _compare(circ, rule, X: np.ndarray, max_cells: int = MAX_CELLS) -> CheckResult:
    """Circuit vs reference on ``X`` ``(T, B, n)`` at every step, in batch chunks of at most
    ``max_cells`` neuron-steps (the result does not depend on the chunking)."""
    T, B, _ = X.shape
    chunk = max(1, max_cells // max(1, T * circ.n_neurons))
    res = CheckResult()
    for start in range(0, B, chunk):
        part = X[:, start:start + chunk]
        sim = circ.simulate(part, return_all=True)
        ref = rule(part)
        res += CheckResult(steps=int(ref.size), mismatches=int((sim.out != ref).sum()),
                           runs=part.shape[1], margin=sim.margin)
    return res


def check_shapes(rule, *, max_prefix: int | None = None, T: int = 4000,
                 rates=(0.1, 0.5, 0.9), trains: int = 3) -> list[tuple[int, int]]:
    """``(T, B)`` of every batch that :func:`check_windows` and then :func:`check_random`
    simulate with these arguments (for estimates: the steps compared are ``sum(T * B)``)."""
    m, n = rule.m, rule.n_inputs
    max_prefix = 2 * m if max_prefix is None else max_prefix
    return [(L + m, 1 << (n * m)) for L in range(max_prefix + 1)] + [(T, len(rates) * trains)]


def all_windows(m: int, n: int) -> np.ndarray:
    """Every window as a train ``(m, 2**(n*m), n)``, oldest step first; sample ``idx`` ends in
    window ``idx``."""
    idx = np.arange(1 << (n * m))
    X = np.zeros((m, idx.size, n), dtype=np.int8)
    for c in range(n):
        for k in range(m):
            X[m - 1 - k, :, c] = (idx >> (c * m + k)) & 1
    return X


def check_windows(circ, rule, *, max_prefix: int | None = None, seed: int = 0,
                  max_cells: int = MAX_CELLS) -> CheckResult:
    """For every prefix length ``L = 0..max_prefix`` (default ``2m``): all ``2**(nm)`` windows,
    each after its own random prefix of length ``L``, compared at every step."""
    _check_consistent(circ, rule)
    m, n = rule.m, rule.n_inputs
    max_prefix = 2 * m if max_prefix is None else max_prefix
    rng = np.random.default_rng(seed)
    W = all_windows(m, n)
    res = CheckResult()
    for L in range(max_prefix + 1):
        prefix = (rng.random((L, W.shape[1], n)) < rng.uniform(0.2, 0.8)).astype(np.int8)
        res += _compare(circ, rule, np.concatenate([prefix, W], axis=0), max_cells)
    return res


def check_random(circ, rule, *, T: int = 4000, rates=(0.1, 0.5, 0.9), trains: int = 3,
                 seed: int = 0, max_cells: int = MAX_CELLS) -> CheckResult:
    """``trains`` Bernoulli trains of length ``T`` per rate, compared at every step."""
    _check_consistent(circ, rule)
    if isinstance(T, bool) or not isinstance(T, (int, np.integer)) or T < 1:
        raise ValueError(f"steps (T) must be an int >= 1, got {T!r}")
    rng = np.random.default_rng(seed)
    p = np.repeat(np.asarray(rates, dtype=float), trains)
    X = (rng.random((T, p.size, rule.n_inputs)) < p[None, :, None]).astype(np.int8)
    return _compare(circ, rule, X, max_cells)


def disjoint_union(circuits) -> tuple:
    """One circuit holding copies of ``circuits`` side by side on shared input lines (the same
    ``lam``, inputs and clock); returns ``(union, output_names)``. Simulating the union costs
    about as much as simulating one of them, which makes long checks of many rules cheap."""
    from .circuit import SpikingCircuit

    first = circuits[0]
    if any(c.inputs != first.inputs or c.lam != first.lam for c in circuits):
        raise ValueError("disjoint_union needs circuits with the same inputs and lam")
    neurons, synapses, outs = [], [], []
    for i, c in enumerate(circuits):
        local = {n: f"c{i}.{n}" for n in c.neurons}
        neurons += [local[n] for n in c.neurons]
        synapses += [(local.get(s.src, s.src), local[s.dst], s.weight) for s in c.synapses]
        outs.append(local[c.output])
    union = SpikingCircuit(first.inputs, neurons, synapses, outs[0], lam=first.lam,
                           requires_clock=first.requires_clock)
    return union, outs


def check_random_many(circuits, rules, *, T: int = 4000, rates=(0.1, 0.5, 0.9),
                      trains: int = 3, seed: int = 0,
                      max_neurons: int = 256) -> list[CheckResult]:
    """:func:`check_random` for many circuits on the same trains, simulated as one union."""
    for c, r in zip(circuits, rules, strict=True):
        _check_consistent(c, r)
    rng = np.random.default_rng(seed)
    p = np.repeat(np.asarray(rates, dtype=float), trains)
    X = (rng.random((T, p.size, rules[0].n_inputs)) < p[None, :, None]).astype(np.int8)
    results, circuits, rules = [], list(circuits), list(rules)
    start = 0
    while start < len(circuits):  # chunks of about max_neurons, to bound the memory
        stop, size = start, 0
        while stop < len(circuits) and (stop == start or size + circuits[stop].n_neurons
                                        <= max_neurons):
            size += circuits[stop].n_neurons
            stop += 1
        union, outs = disjoint_union(circuits[start:stop])
        sim = union.simulate(X, return_all=True)
        for name, rule in zip(outs, rules[start:stop], strict=True):
            ref = rule(X)
            out = sim.spikes[:, :, union.neurons.index(name)]
            results.append(CheckResult(steps=int(ref.size), mismatches=int((out != ref).sum()),
                                       runs=X.shape[1], margin=sim.margin))
        start = stop
    return results
