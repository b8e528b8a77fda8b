"""Shared helpers of the construct tests: random rules."""

import numpy as np

from membra.construct import SpikeRule


def random_rules(n, m, count, seed, input_dominated=False, density=None):
    """``count`` random tables (density drawn in [0.05, 0.6] unless given)."""
    rng = np.random.default_rng(seed * 1000 + 10 * m + n)
    rules = []
    for _ in range(count):
        p = rng.uniform(0.05, 0.6) if density is None else density
        table = rng.random(1 << (n * m)) < p
        rule = SpikeRule.from_table(table, m, n)
        if input_dominated:
            table[rule.silent_mask] = False
            rule = SpikeRule.from_table(table, m, n)
        rules.append(rule)
    return rules
