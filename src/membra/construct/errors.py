"""Errors raised by :mod:`membra.construct`.

All of them subclass :class:`ValueError`, so ``except ValueError`` still catches a rule or circuit
that is outside what the constructions can represent.
"""

from __future__ import annotations

__all__ = ["NotCausalError", "MemoryTooLongError", "NotBinaryError", "NotInputDominatedError",
           "CyclicCircuitError"]


class NotCausalError(ValueError):
    """The probed function's output at ``t`` changed when only inputs after ``t`` changed."""


class MemoryTooLongError(ValueError):
    """The output at ``t`` depends on inputs older than ``t - m + 1``."""


class NotBinaryError(ValueError):
    """The function returned values other than 0 and 1."""


class NotInputDominatedError(ValueError):
    """The rule outputs 1 on a window whose current step is silent on every input line; no
    network without a clock line can do that (every spike needs an input spike at that step)."""


class CyclicCircuitError(ValueError):
    """The synapse graph has a cycle; with zero synaptic delay a cycle has no meaning."""
