"""Constructive SNNs: compile finite-memory spike-train rules into exact spiking circuits.

>>> from membra.construct import SpikeRule, compile_rule
>>> rule = SpikeRule.from_pattern([1, 0, 1, 1])          # oldest to newest
>>> circ = compile_rule(rule)                              # clocked baseline
>>> circ.n_neurons, circ.requires_clock
(12, True)

See ``docs/construct.md``: the neuron model on the integer grid, the function class, the
baseline and compact constructions, composition and the classification demo.
"""

from .circuit import SpikingCircuit, Synapse
from .compile import compile_rule
from .compose import compose
from .errors import (
    CyclicCircuitError,
    MemoryTooLongError,
    NotBinaryError,
    NotCausalError,
    NotInputDominatedError,
)
from .rule import SpikeRule
from .simulate import Simulation

__all__ = ["SpikeRule", "SpikingCircuit", "Synapse", "Simulation", "compile_rule", "compose",
           "CyclicCircuitError", "MemoryTooLongError", "NotBinaryError", "NotCausalError",
           "NotInputDominatedError"]
