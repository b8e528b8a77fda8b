r"""Deep circuits by composition: :func:`compose`.

``compose(outer, [f_0, ..., f_{k-1}])`` represents :math:`y = g(f_0(X), \dots, f_{k-1}(X))`:
the output neuron of inner circuit ``c`` drives every synapse of the outer circuit's data line
``c``. There is no delay, so the composite has memory :math:`m_g + \max_c m_{f_c} - 1` while
its size is the sum of the components' sizes: all components share one clock line and one
copy of the neurons they declare ``shared`` (the ``ODD``/``EVEN`` phase pair of the baseline).
"""

from __future__ import annotations

from .circuit import CLOCK, SpikingCircuit
from .compile import compile_rule
from .rule import SpikeRule

__all__ = ["compose"]


def _as_circuit(obj, what: str) -> SpikingCircuit:
    if isinstance(obj, SpikingCircuit):
        return obj
    if isinstance(obj, SpikeRule):
        return compile_rule(obj)
    raise TypeError(f"{what} must be a SpikeRule or a SpikingCircuit, got {type(obj).__name__}")


def compose(outer, inner) -> SpikingCircuit:
    """Feed the outputs of the ``inner`` circuits (or rules, compiled with the baseline) into
    the data lines of ``outer``: outer line ``c`` <- ``inner[c]``'s output.

    Raises:
        ValueError: ``len(inner)`` differs from the outer's number of inputs, the inner
            circuits disagree on their inputs, or the components use different decays.
    """
    if isinstance(inner, (SpikeRule, SpikingCircuit)):
        inner = [inner]
    inner = [_as_circuit(f, f"inner[{i}]") for i, f in enumerate(inner)]
    outer = _as_circuit(outer, "outer")
    if not inner:
        raise ValueError("compose needs at least one inner rule or circuit")
    if len(inner) != outer.n_inputs:
        raise ValueError(f"the outer circuit has {outer.n_inputs} data input(s) but "
                         f"{len(inner)} inner circuit(s) were given")
    n = inner[0].n_inputs
    if any(f.n_inputs != n for f in inner):
        raise ValueError(f"all inner circuits must read the same inputs; got input counts "
                         f"{[f.n_inputs for f in inner]}")
    lams = {c.lam for c in [outer, *inner]}
    if len(lams) != 1:
        raise ValueError(f"components must share one decay lam, got {sorted(map(str, lams))}")
    needs_clock = any(c.requires_clock for c in [outer, *inner])
    xs = [f"x{j}" for j in range(n)]
    neurons, synapses, groups, shared_defs = [], [], {}, {}

    def add(circ: SpikingCircuit, prefix: str, line_map: dict) -> str:
        local = {}
        for name in circ.neurons:
            local[name] = name if name in circ.shared else f"{prefix}{name}"
        data = dict(zip(circ.data_inputs, line_map, strict=True))
        if circ.requires_clock:
            data[CLOCK] = CLOCK
        incoming = {}
        for s in circ.synapses:
            src = local.get(s.src, data.get(s.src))
            incoming.setdefault(local[s.dst], []).append((src, s.weight))
        for name in circ.neurons:
            new = local[name]
            syns = sorted(incoming.get(new, []), key=lambda e: e[0])
            if name in circ.shared:
                if new in shared_defs:
                    if shared_defs[new] != syns:
                        raise ValueError(f"shared neuron {new!r} is defined differently in "
                                         "two components")
                    continue
                shared_defs[new] = syns
            neurons.append(new)
            groups[new] = circ.group_of(name)
            synapses.extend((src, new, w) for src, w in syns)
        return local[circ.output]

    outs = [add(f, f"f{i}.", xs) for i, f in enumerate(inner)]
    out = add(outer, "g.", outs)
    shared = sorted(shared_defs)
    meta = {"method": "compose", "outer": outer.meta, "inner": [f.meta for f in inner]}
    return SpikingCircuit([CLOCK, *xs] if needs_clock else xs, neurons, synapses, out,
                          lam=outer.lam, requires_clock=needs_clock, groups=groups,
                          shared=shared, meta=meta)
