r"""Compile a :class:`SpikeRule` into an exact :class:`SpikingCircuit`.

``method="baseline"`` is the clocked tapped delay line + DNF construction (:math:`\lambda = 1/2`,
:math:`a = 15/16`, :math:`b = 7/8`, :math:`I = \lambda b = 7/16`); the extra input line
``clock`` spikes at every step:

1. ``ODD`` = clock[+3/4] spikes exactly at odd steps (3/4 -> 3/8 + 3/4 = 9/8 > 1 -> reset).
2. ``EVEN`` = clock[+2], ODD[-2] spikes exactly at even steps, and returns to 0.
3. Gates per channel ``c``: ``L0_c`` = x_c[+2], EVEN[+2], clock[-2] (x AND even) and ``L1_c``
   with ODD (x AND odd).
4. Hold pairs per channel and lag ``k = 1..m-1``: ``H0`` = load[+a], EVEN[-I], ODD[+b] and
   ``H1`` = load[+a], ODD[-I], EVEN[+b]; loads ``H0_{c,1} <- L0_c``, ``H1_{c,1} <- L1_c`` and
   ``H0_{c,k} <- H1_{c,k-1}``, ``H1_{c,k} <- H0_{c,k-1}``. A load step gives
   :math:`V = \lambda s + a\ell - I \in \{0, 1/2, 15/16\}` (:math:`s \in \{0, b\}`), the next
   (read) step :math:`U = \lambda V + b`, which is 7/8 (no spike) or > 1 (spike). So "H0 or H1
   of ``(c, k)`` spikes at ``t``" equals :math:`x_c[t-k]`.
5. One term neuron per accepted window with ``P`` ones: +2 from each source of each 1-literal
   (lag 0: the input line, lag ``k``: both hold neurons), :math:`-(2P+2)` from each source of
   each 0-literal, clock[2 - 2P]. :math:`U = 2` on a match and :math:`\le 0` otherwise.
6. ``OUT`` = +2 from every term.

Neurons: :math:`2nm + 3 + A` for :math:`m \ge 2` (:math:`A` accepted windows), weights
:math:`\le 3 + 6nm + A(n(2m-1) + 2)`, depth :math:`m + 4`.
"""

from __future__ import annotations

from fractions import Fraction

from .circuit import CLOCK, SpikingCircuit
from .errors import NotInputDominatedError
from .rule import SpikeRule

__all__ = ["compile_rule", "CircuitBuilder", "METHODS", "phase_pair"]

METHODS = ("baseline", "compact")
F = Fraction


class CircuitBuilder:
    """Collects neurons, synapses and group labels, then builds a :class:`SpikingCircuit`."""

    def __init__(self):
        self.neurons: list[str] = []
        self.synapses: list[tuple[str, str, Fraction]] = []
        self.groups: dict[str, str] = {}

    def neuron(self, name: str, group: str, **weights) -> str:
        """Add neuron ``name`` with synapses ``{source: weight}`` given as keyword arguments
        or via :meth:`connect`."""
        self.neurons.append(name)
        self.groups[name] = group
        for src, w in weights.items():
            self.connect(src, name, w)
        return name

    def connect(self, src: str, dst: str, weight) -> None:
        if weight:
            self.synapses.append((src, dst, F(weight)))

    def build(self, inputs, output: str, **kw) -> SpikingCircuit:
        return SpikingCircuit(inputs, self.neurons, self.synapses, output,
                              groups=self.groups, **kw)


def phase_pair(b: CircuitBuilder) -> tuple[str, str]:
    """Add the clock phase neurons ``ODD`` (odd steps) and ``EVEN`` (even steps)."""
    b.neuron("ODD", "phase", clock=F(3, 4))
    b.neuron("EVEN", "phase", clock=2, ODD=-2)
    return "ODD", "EVEN"


def _as_rule(rule_or_table, m) -> SpikeRule:
    if isinstance(rule_or_table, SpikeRule):
        if m is not None and m != rule_or_table.m:
            raise ValueError(f"m={m} disagrees with the rule's m={rule_or_table.m}")
        return rule_or_table
    if m is None:
        raise ValueError("compile_rule(table) needs m= (the memory of the window table)")
    return SpikeRule.from_table(rule_or_table, m)


def compile_rule(rule_or_table, m: int | None = None, *, method: str = "baseline",
                 clock="auto") -> SpikingCircuit:
    """Compile a rule (or a window table with ``m``) into an exact circuit.

    Args:
        rule_or_table: a :class:`SpikeRule`, or a table of ``2**m`` 0/1 values (one input).
        m: memory, needed with a plain table.
        method: ``"baseline"`` (clocked delay line + DNF, any rule) or ``"compact"``
            (clock-free one-input gap rules; see :mod:`membra.construct.compact`).
        clock: ``"auto"`` (the method decides), ``True`` or ``False``.

    Raises:
        NotInputDominatedError: ``clock=False`` (or ``method="compact"``) for a rule that fires
            on a silent step.
        ValueError: ``clock=False`` with the baseline, an unknown method.
    """
    if not isinstance(method, str) or method not in METHODS:
        raise ValueError(f"method={method!r} is not known; choose one of {list(METHODS)}")
    if clock not in ("auto", True, False):
        raise ValueError(f"clock must be 'auto', True or False, got {clock!r}")
    rule = _as_rule(rule_or_table, m)
    if (clock is False or method == "compact") and not rule.is_input_dominated:
        raise NotInputDominatedError(
            "this rule outputs 1 on a window whose current step is silent on every input, so "
            "no clock-free network can represent it; compile it with a clock line "
            "(method='baseline')")
    if method == "compact":
        if clock is True:
            raise ValueError("method='compact' builds clock-free circuits; use clock='auto'")
        from .compact import compile_compact

        return compile_compact(rule)
    if clock is False:
        raise ValueError("baseline construction needs a clock line")
    rule.warn_if_large()
    return _baseline(rule)


def _baseline(rule: SpikeRule, a: Fraction = Fraction(15, 16)) -> SpikingCircuit:
    """The baseline circuit; ``a`` is the hold load weight (tests use ``a = 1``, where a hold
    state is exactly 1 and only the strict threshold keeps the circuit correct)."""
    n, m = rule.n_inputs, rule.m
    bb, inh = F(7, 8), F(7, 16)
    xs = [f"x{c}" for c in range(n)]
    b = CircuitBuilder()
    odd, even = phase_pair(b)
    # sources[c][k]: the neurons (or input line) whose spike at t means x_c[t-k] = 1
    sources = [[[xs[c]]] for c in range(n)]
    if m >= 2:
        for c in range(n):
            prev0 = b.neuron(f"L0_{c}", "gate", **{xs[c]: 2, even: 2, CLOCK: -2})
            prev1 = b.neuron(f"L1_{c}", "gate", **{xs[c]: 2, odd: 2, CLOCK: -2})
            for k in range(1, m):
                h0 = b.neuron(f"H0_{c}_{k}", "hold", **{prev0: a, even: -inh, odd: bb})
                h1 = b.neuron(f"H1_{c}_{k}", "hold", **{prev1: a, odd: -inh, even: bb})
                sources[c].append([h0, h1])
                prev0, prev1 = h1, h0  # H1 spikes on even steps, when H0 of the next lag loads
    terms = []
    for idx in rule.accepted:
        window = SpikeRule.window_of(int(idx), m, n)
        p = int(window.sum())
        name = b.neuron(f"T{int(idx)}", "term")
        for c in range(n):
            for k in range(m):
                w = 2 if window[c, k] else -(2 * p + 2)
                for src in sources[c][k]:
                    b.connect(src, name, w)
        b.connect(CLOCK, name, 2 - 2 * p)
        terms.append(name)
    b.neuron("OUT", "out", **{t: 2 for t in terms})
    return b.build([CLOCK, *xs], "OUT", lam=F(1, 2), requires_clock=True,
                   shared=(odd, even),
                   meta={"method": "baseline", "m": m, "n_inputs": n,
                         "n_accepted": rule.n_accepted, "n_runs": rule.n_runs,
                         "rule": rule.to_dict()})
