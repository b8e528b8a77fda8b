r"""Clock-free compact construction for *gap rules* (``method="compact"``).

Supported family (one input line, input-dominated): the output at step ``t`` is 1 only if
``x[t] = 1``, and then depends only on the gap :math:`\Delta` to the previous input spike
inside the window (:math:`\Delta \in \{1, \dots, m-1\}`, or "none", written :math:`\Delta = m`):

.. math::  y[t] = x[t] \cdot a(\min(\Delta_t, m)),\qquad a: \{1, \dots, m\} \to \{0, 1\}.

Examples: "the previous input spike was exactly ``k`` steps ago" (:math:`a = 1\{\Delta = k\}`,
``m = k + 1``), "an input spike after at least ``k`` silent steps" (:math:`a = 1\{\Delta > k\}`),
or any union of gap intervals. :func:`gap_profile` tells whether a rule is in the family.

Construction (no clock; every spike happens at an input spike). :math:`\lambda = 1023/1024`,
load :math:`c = 7/8`. Input spikes are *events*, numbered :math:`n = 1, 2, \dots`.

1. Event counters (exact for any silence length). ``P1`` = x[+1]: after an odd event its
   potential is exactly 1 (strict threshold: no spike) and at the next event
   :math:`\lambda^\Delta + 1 > 1`, so it spikes exactly at even events. ``O`` = x[+2], P1[-2]
   spikes at odd events. ``P2`` = P1[+1] spikes at events :math:`n \equiv 0 \pmod 4`, ``P3`` =
   O[+1] at :math:`n \equiv 3`, ``Q1`` = O[+2], P3[-2] at :math:`n \equiv 1`, ``Q2`` = P1[+2],
   P2[-2] at :math:`n \equiv 2`. With ``Q0 = P2`` and ``Q3 = P3``, exactly one ``Q_j`` spikes at
   each event, in the cyclic order 1, 2, 3, 0, 1, ...
2. Gap detectors. For each threshold ``d`` (a boundary of :math:`a`), four copies ``G{d}_j``:
   Q_j[+c] (load), Q_{j+1}[+r_d] (read), Q_{j+2}[-2] (clear), with
   :math:`r_d = 1 - c\lambda^d (1 + \lambda)/2`. Copy ``j`` is cleared to 0 (clamp) two events
   after its read and idle for one more, so at its load it holds exactly ``c``; at the next
   event (gap :math:`\Delta`) :math:`U = c\lambda^\Delta + r_d > 1 \iff \Delta \le d`, with
   margin :math:`c\lambda^d(1-\lambda)/2`. Exactly one copy per threshold reads at each event,
   and the copy read at the first event was never loaded (gap "none").
3. ``OUT`` = x[+2a(m)] + every copy of threshold ``d`` [+2(a(d) - a(d+1))], so at an event
   :math:`U = 2a(\min(\Delta, m)) \in \{0, 2\}` (telescoping over the nested detectors); at
   silent steps :math:`U = 0`.

Counts with ``K`` thresholds (:math:`K \le 2 r_a`, the boundaries of :math:`a`): neurons
:math:`6 + 4K + 1` and weights :math:`9 + 16K + a(m)` for ``K >= 1`` (``K = 0``: one neuron),
**independent of m**. An exact-gap rule has ``K <= 2``: at most 15 neurons and 41 weights for
every ``m``, against :math:`2m + 4` neurons for the baseline.

Floats: the counters rely on a potential of exactly 1 and a residue :math:`\lambda^\Delta` after
a silence of :math:`\Delta` steps; float64 resolves it while :math:`\lambda^\Delta > 2^{-52}`,
i.e. for silences shorter than about 37,000 steps. Exact (``Fraction``) simulation has no limit.
"""

from __future__ import annotations

from fractions import Fraction

from .circuit import SpikingCircuit
from .errors import NotInputDominatedError
from .rule import SpikeRule

__all__ = ["compile_compact", "gap_circuit", "gap_profile", "LAM", "LOAD"]

LAM = Fraction(1023, 1024)
LOAD = Fraction(7, 8)


def gap_profile(rule: SpikeRule) -> list[bool] | None:
    """``[a(1), ..., a(m)]`` if ``rule`` is a gap rule (one input, input-dominated, output a
    function of the gap to the previous spike in the window), else ``None``. ``a(m)`` is the
    value when the window holds no earlier spike."""
    if rule.n_inputs != 1 or not rule.is_input_dominated:
        return None
    m = rule.m
    a: list[bool | None] = [None] * m
    for idx in range(1, 1 << m, 2):  # windows with x[t] = 1
        rest = idx >> 1
        gap = (rest & -rest).bit_length() if rest else m
        val = bool(rule.table[idx])
        if a[gap - 1] is None:
            a[gap - 1] = val
        elif a[gap - 1] != val:
            return None
    return [bool(v) for v in a]


def thresholds(a: list[bool]) -> list[int]:
    """The ``d`` in ``1..m-1`` with :math:`a(d) \\ne a(d+1)`."""
    return [d for d in range(1, len(a)) if a[d - 1] != a[d]]


def compile_compact(rule: SpikeRule) -> SpikingCircuit:
    """Clock-free circuit of a gap rule (module docstring); raises ``ValueError`` for rules
    outside the family."""
    if not rule.is_input_dominated:
        raise NotInputDominatedError("method='compact' needs an input-dominated rule")
    a = gap_profile(rule)
    if a is None:
        raise ValueError(
            "method='compact' supports one-input gap rules only (the output at an input spike "
            "depends only on the distance to the previous input spike in the window); this "
            "rule is not one. Use method='baseline' (see docs/construct.md)")
    meta = {"n_accepted": rule.n_accepted, "n_runs": rule.n_runs, "rule": rule.to_dict()}
    return gap_circuit(a, meta=meta)


def gap_circuit(a, meta: dict | None = None, lam=LAM) -> SpikingCircuit:
    """Circuit of the gap rule with profile ``a = [a(1), ..., a(m)]`` directly, without a
    window table (so ``m`` can be far beyond what a table holds). ``lam`` may be any rational
    in (0, 1) (``1/2`` to compose with baseline circuits; float64 then resolves silences up
    to 52 steps only, exact simulation any)."""
    from .circuit import as_fraction
    from .compile import CircuitBuilder

    a = [bool(v) for v in a]
    if not a:
        raise ValueError("the gap profile a must have m >= 1 entries")
    lam = as_fraction(lam, "lam")
    if not 0 < lam < 1:
        raise ValueError(f"lam must be in (0, 1) for gap detectors, got {lam}")
    m, c = len(a), LOAD
    ds = thresholds(a)
    b = CircuitBuilder()
    q = []
    if ds:
        b.neuron("P1", "counter", x0=1)
        b.neuron("O", "counter", x0=2, P1=-2)
        b.neuron("P2", "counter", P1=1)
        b.neuron("P3", "counter", O=1)
        b.neuron("Q1", "phase", O=2, P3=-2)
        b.neuron("Q2", "phase", P1=2, P2=-2)
        q = ["P2", "Q1", "Q2", "P3"]  # Q0 .. Q3
    out_w = {}
    if a[m - 1]:
        out_w["x0"] = 2
    for d in ds:
        r = 1 - c * lam ** d * (1 + lam) / 2
        for j in range(4):
            name = b.neuron(f"G{d}_{j}", "gap")
            b.connect(q[j], name, c)
            b.connect(q[(j + 1) % 4], name, r)
            b.connect(q[(j + 2) % 4], name, -2)
            out_w[name] = 2 * (int(a[d - 1]) - int(a[d]))
    b.neuron("OUT", "out", **out_w)
    return b.build(["x0"], "OUT", lam=lam, requires_clock=False,
                   meta={"method": "compact", "m": m, "n_inputs": 1, "thresholds": ds,
                         "gap_profile": [int(v) for v in a], **(meta or {})})
