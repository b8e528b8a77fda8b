"""Check a circuit against its rule: every window after random prefixes, and long random trains.

Both compare the circuit's output with the rule's numpy reference evaluator at *every* step of
every run (not only at the last step), so a wrong state left behind by an earlier window shows.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["CheckResult", "check_windows", "check_random", "all_windows"]


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


def _compare(circ, rule, X: np.ndarray) -> CheckResult:
    sim = circ.simulate(X, return_all=True)
    ref = rule(X)
    return CheckResult(steps=int(ref.size), mismatches=int((sim.out != ref).sum()),
                       runs=X.shape[1], margin=sim.margin)


def all_windows(m: int, n: int) -> np.ndarray:
    """Every window as a train ``(m, 2**(n*m), n)``, oldest step first; sample ``idx`` ends in
    window ``idx``."""
    idx = np.arange(1 << (n * m))
    X = np.zeros((m, idx.size, n), dtype=np.int8)
    for c in range(n):
        for k in range(m):
            X[m - 1 - k, :, c] = (idx >> (c * m + k)) & 1
    return X


def check_windows(circ, rule, *, max_prefix: int | None = None, seed: int = 0) -> CheckResult:
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
        res += _compare(circ, rule, np.concatenate([prefix, W], axis=0))
    return res


def check_random(circ, rule, *, T: int = 4000, rates=(0.1, 0.5, 0.9), trains: int = 3,
                 seed: int = 0) -> CheckResult:
    """``trains`` Bernoulli trains of length ``T`` per rate, compared at every step."""
    _check_consistent(circ, rule)
    rng = np.random.default_rng(seed)
    p = np.repeat(np.asarray(rates, dtype=float), trains)
    X = (rng.random((T, p.size, rule.n_inputs)) < p[None, :, None]).astype(np.int8)
    return _compare(circ, rule, X)
