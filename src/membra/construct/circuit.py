r"""Spiking circuits on the integer time grid: :class:`SpikingCircuit`.

A circuit is a DAG of neurons with one shared decay :math:`\lambda` (an exact rational), no
biases and no synaptic delays. At every step the neurons are updated in topological order:

.. math::

    U_i[t] &= \lambda\, V_i[t-1]\, (1 - S_i[t-1]) + \sum_j w_{ij} S_j[t] + \sum_c a_{ic} X_c[t] \\
    V_i[t] &= \max(U_i[t], 0), \qquad S_i[t] = \mathbb{1}\{V_i[t] > 1\}

(:math:`V_i[-1] = S_i[-1] = 0`): reset to 0 at the step after a spike, clamp at 0, strict
threshold, and a spike of :math:`j` at :math:`t` acts on its targets at the same :math:`t`.
With the decay :math:`\lambda = e^{-1/h}` this is the event-driven model of a network whose
potentials decay as :math:`e^{-\Delta t/h}` between spikes.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import numpy as np

from .errors import CyclicCircuitError

__all__ = ["Synapse", "SpikingCircuit", "as_fraction"]

CLOCK = "clock"
FORMAT = "membra.construct.circuit/1"
_CIRCUIT_KEYS = ("format", "lam", "requires_clock", "inputs", "neurons", "synapses", "output",
                 "shared", "meta")


def as_fraction(value, name: str = "weight") -> Fraction:
    """Exact rational from an int, a Fraction, a ``"p/q"`` string or a float (taken exactly)."""
    if isinstance(value, bool):
        raise TypeError(f"{name} must be a number or a 'p/q' string, got {value!r}")
    if isinstance(value, Fraction):
        return value
    if isinstance(value, (int, np.integer)):
        return Fraction(int(value))
    if isinstance(value, (float, np.floating)):
        if not math.isfinite(value):
            raise ValueError(f"{name} must be finite, got {value!r}")
        return Fraction(float(value))
    if isinstance(value, str):
        try:
            return Fraction(value)
        except (ValueError, ZeroDivisionError):
            raise ValueError(f"{name} must be a rational like '7/16', got {value!r}") from None
    raise TypeError(f"{name} must be a number or a 'p/q' string, got {type(value).__name__}")


@dataclass(frozen=True)
class Synapse:
    """A weight ``w`` from ``src`` (an input line or a neuron) to the neuron ``dst``."""

    src: str
    dst: str
    weight: Fraction


def _names(value, field: str) -> list[str]:
    """A list of names; a string is refused (it is not split into characters)."""
    if not isinstance(value, (list, tuple)):
        raise TypeError(f"{field} must be a list of names, got {type(value).__name__} "
                        f"{value!r:.40}")
    for i, v in enumerate(value):
        if not isinstance(v, str):
            raise TypeError(f"{field}[{i}] must be a name (a string), got {v!r:.40}")
    return list(value)


def _synapse(s, i: int) -> Synapse:
    """A :class:`Synapse` from a Synapse or ``[src, dst, weight]``; names are strings."""
    if isinstance(s, Synapse):
        src, dst, w = s.src, s.dst, s.weight
    elif isinstance(s, (list, tuple)) and len(s) == 3:
        src, dst, w = s
    else:
        raise ValueError(f"synapses[{i}] must be [src, dst, 'p/q'], got {s!r:.60}")
    for what, name in (("source", src), ("target", dst)):
        if not isinstance(name, str):
            raise TypeError(f"synapses[{i}]: the {what} must be a name (a string), got "
                            f"{name!r:.40}")
    return Synapse(src, dst, as_fraction(w, f"synapses[{i}] weight {src}->{dst}"))


class SpikingCircuit:
    """A DAG of grid neurons (see the module docstring) with named input lines and one output.

    Args:
        inputs: input line names; when ``requires_clock`` the first one is ``"clock"``, which
            spikes at every step and is added by :meth:`simulate` (the caller passes only the
            data lines).
        neurons: neuron names (any order; they are sorted topologically).
        synapses: ``(src, dst, weight)`` triples or :class:`Synapse`; weights are exact
            rationals (ints, Fractions, ``"p/q"`` strings or floats taken exactly).
        output: the output neuron.
        lam: decay per step :math:`\\lambda \\in (0, 1]`, exact.
        groups: optional ``{neuron: group}`` labels (for plots and reports).
        shared: neurons that other circuits define identically (the clock phase pair); compose
            keeps one copy of each.
        meta: free JSON-able information (method, rule size, ...).

    Raises:
        CyclicCircuitError: the synapse graph has a cycle.
        ValueError: unknown names, duplicate names or synapses, a bad ``lam``.
        TypeError: a field of the wrong type (a string where a list of names is expected, a
            non-string name, a boolean weight or ``requires_clock`` that is not a bool); the
            message names the field.
    """

    def __init__(self, inputs, neurons, synapses, output: str, *, lam=Fraction(1, 2),
                 requires_clock: bool = False, groups: dict | None = None,
                 shared=(), meta: dict | None = None):
        self.inputs = _names(inputs, "inputs")
        if not isinstance(requires_clock, (bool, np.bool_)):
            raise TypeError(f"requires_clock must be true or false, got {requires_clock!r}")
        self.requires_clock = bool(requires_clock)
        if self.requires_clock and (not self.inputs or self.inputs[0] != CLOCK):
            raise ValueError("requires_clock=True needs 'clock' as the first input line")
        if not self.requires_clock and CLOCK in self.inputs:
            raise ValueError("an input line named 'clock' needs requires_clock=True")
        self.lam = as_fraction(lam, "lam")
        if not 0 < self.lam <= 1:
            raise ValueError(f"lam must be in (0, 1], got {self.lam}")
        neurons = _names(neurons, "neurons")
        names = self.inputs + neurons
        if len(set(names)) != len(names):
            dup = sorted({n for n in names if names.count(n) > 1})
            raise ValueError(f"input and neuron names must be unique; repeated: {dup}")
        neuron_set = set(neurons)
        if not isinstance(synapses, (list, tuple)):
            raise TypeError(f"synapses must be a list of [src, dst, weight], got "
                            f"{type(synapses).__name__} {synapses!r:.40}")
        syns, seen = [], set()
        for i, s in enumerate(synapses):
            syn = _synapse(s, i)
            if syn.dst not in neuron_set:
                raise ValueError(f"synapse target {syn.dst!r} is not a neuron of the circuit")
            if syn.src not in neuron_set and syn.src not in self.inputs:
                raise ValueError(f"synapse source {syn.src!r} is neither an input line nor a "
                                 "neuron")
            if (syn.src, syn.dst) in seen:
                raise ValueError(f"duplicate synapse {syn.src!r} -> {syn.dst!r}")
            seen.add((syn.src, syn.dst))
            syns.append(syn)
        if not isinstance(output, str) or output not in neuron_set:
            raise ValueError(f"output {output!r:.40} is not a neuron of the circuit")
        self.output = output
        self.synapses = syns
        groups = {} if groups is None else groups
        if not isinstance(groups, dict) or not all(
                isinstance(k, str) and isinstance(v, str) for k, v in groups.items()):
            raise TypeError(f"groups must map neuron names to group names, got {groups!r:.60}")
        self.groups = dict(groups)
        self.shared = tuple(_names(shared, "shared"))
        stray = [n for n in self.shared if n not in neuron_set]
        if stray:
            raise ValueError(f"shared names {stray} are not neurons of the circuit")
        if meta is not None and not isinstance(meta, dict):
            raise TypeError(f"meta must be a JSON object (dict), got {type(meta).__name__}")
        self.meta = dict(meta or {})
        self.neurons, self.layers = self._topological(neurons)

    # ---- structure ------------------------------------------------------------------------
    def _topological(self, neurons: list[str]) -> tuple[list[str], list[list[str]]]:
        """Kahn's algorithm; layer = 1 + the deepest neuron source (input lines are layer 0)."""
        preds = {n: set() for n in neurons}
        succs = {n: [] for n in neurons}
        for s in self.synapses:
            if s.src in preds:
                if s.src == s.dst:
                    raise CyclicCircuitError(f"neuron {s.src!r} has a synapse onto itself")
                preds[s.dst].add(s.src)
                succs[s.src].append(s.dst)
        missing = {n: len(p) for n, p in preds.items()}
        depth = {}
        ready = [n for n in neurons if missing[n] == 0]
        order = []
        while ready:
            n = ready.pop(0)
            order.append(n)
            depth[n] = 1 + max((depth[p] for p in preds[n]), default=0)
            for d in succs[n]:
                missing[d] -= 1
                if missing[d] == 0:
                    ready.append(d)
        if len(order) != len(neurons):
            stuck = sorted(n for n in neurons if n not in depth)
            raise CyclicCircuitError(f"the synapse graph has a cycle through {stuck[:6]}"
                                     f"{' ...' if len(stuck) > 6 else ''}; zero-delay cycles "
                                     "are not allowed")
        n_layers = max(depth.values(), default=0)
        layers = [[n for n in order if depth[n] == ell] for ell in range(1, n_layers + 1)]
        return [n for layer in layers for n in layer], layers

    @property
    def data_inputs(self) -> list[str]:
        """The input lines the caller supplies (all but the clock)."""
        return self.inputs[1:] if self.requires_clock else list(self.inputs)

    @property
    def n_inputs(self) -> int:
        return len(self.data_inputs)

    @property
    def n_neurons(self) -> int:
        return len(self.neurons)

    @property
    def n_weights(self) -> int:
        return len(self.synapses)

    @property
    def depth(self) -> int:
        """Number of topological layers."""
        return len(self.layers)

    @property
    def h(self) -> float:
        """Decay constant :math:`h = -1/\\ln\\lambda` (information only; ``inf`` for 1)."""
        return math.inf if self.lam == 1 else -1.0 / math.log(self.lam)

    def group_of(self, neuron: str) -> str:
        return self.groups.get(neuron, "hidden")

    def matrices(self) -> tuple[list[Fraction | int], list[list]]:
        """Exact weight matrices in topological order: ``(W_in [N][n_in], W_nn [N][N])``."""
        pos = {n: i for i, n in enumerate(self.neurons)}
        ipos = {n: i for i, n in enumerate(self.inputs)}
        N, n_in = len(self.neurons), len(self.inputs)
        w_in = [[Fraction(0)] * n_in for _ in range(N)]
        w_nn = [[Fraction(0)] * N for _ in range(N)]
        for s in self.synapses:
            if s.src in ipos:
                w_in[pos[s.dst]][ipos[s.src]] = s.weight
            else:
                w_nn[pos[s.dst]][pos[s.src]] = s.weight
        return w_in, w_nn

    def float_matrices(self, dtype=np.float64) -> tuple[np.ndarray, np.ndarray]:
        w_in, w_nn = self.matrices()
        return (np.array([[float(v) for v in r] for r in w_in], dtype=dtype).reshape(
                    self.n_neurons, len(self.inputs)),
                np.array([[float(v) for v in r] for r in w_nn], dtype=dtype).reshape(
                    self.n_neurons, self.n_neurons))

    def is_dyadic(self) -> bool:
        """All weights and ``lam`` have power-of-two denominators (float arithmetic is then
        exact for the small circuits membra builds)."""
        dens = [self.lam.denominator] + [s.weight.denominator for s in self.synapses]
        return all(d & (d - 1) == 0 for d in dens)

    # ---- running --------------------------------------------------------------------------
    def simulate(self, X, exact: bool = False, return_all: bool = False):
        """Run the circuit on ``X`` of shape ``(T, n)`` or ``(T, B, n)`` (0/1; the clock line,
        if any, is added). Returns the output train ``(T,)``/``(T, B)`` as int8, or with
        ``return_all=True`` a :class:`~membra.construct.simulate.Simulation` holding every
        neuron's spikes and potentials and the float ``margin``. ``exact=True`` uses
        :class:`fractions.Fraction` arithmetic; the float64 path warns when the margin
        ``min |V - 1|`` falls below 1e-9. See :func:`membra.construct.simulate.simulate`."""
        from .simulate import simulate

        return simulate(self, X, exact=exact, return_all=return_all)

    def to_torch(self, dtype=None):
        """A non-trainable ``nn.Module`` mapping ``[T, B, n]`` to the output spikes ``[T, B]``
        (see :class:`membra.construct.torch_module.CircuitModule`)."""
        import torch

        from .torch_module import CircuitModule

        return CircuitModule(self, dtype=torch.float64 if dtype is None else dtype)

    # ---- serialisation --------------------------------------------------------------------
    def to_dict(self) -> dict:
        """JSON-able dict; weights and ``lam`` as exact ``"p/q"`` strings."""
        return {
            "format": FORMAT,
            "lam": str(self.lam),
            "requires_clock": self.requires_clock,
            "inputs": list(self.inputs),
            "neurons": [{"name": n, "group": self.group_of(n)} for n in self.neurons],
            "synapses": [[s.src, s.dst, str(s.weight)] for s in self.synapses],
            "output": self.output,
            "shared": list(self.shared),
            "meta": self.meta,
        }

    @classmethod
    def from_dict(cls, d: dict) -> SpikingCircuit:
        """Circuit from its JSON form (:meth:`to_dict`). Every field is checked: an unknown key,
        a wrong type (a string where a list of names is expected, a boolean weight, ...) or an
        unknown name is an error that names the field."""
        if not isinstance(d, dict):
            raise TypeError(f"a circuit must be a dict (JSON object), got {type(d).__name__}")
        unknown = sorted(set(d) - set(_CIRCUIT_KEYS))
        if unknown:
            raise ValueError(f"unknown circuit key(s) {unknown}; known: {list(_CIRCUIT_KEYS)}")
        missing = [k for k in ("inputs", "neurons", "synapses", "output") if k not in d]
        if missing:
            raise ValueError(f"circuit JSON lacks the key(s) {missing}")
        if "format" in d and d["format"] != FORMAT:
            raise ValueError(f"format must be {FORMAT!r}, got {d['format']!r:.40}")
        if not isinstance(d["neurons"], list):
            raise TypeError(f"neurons must be a list of names or {{'name', 'group'}} objects, "
                            f"got {type(d['neurons']).__name__} {d['neurons']!r:.40}")
        neurons, groups = [], {}
        for i, n in enumerate(d["neurons"]):
            if isinstance(n, dict):
                if set(n) - {"name", "group"} or not isinstance(n.get("name"), str) or \
                        not isinstance(n.get("group", ""), str):
                    raise ValueError(f"neurons[{i}] must be {{'name': str, 'group': str}}, "
                                     f"got {n!r:.60}")
                if "group" in n:
                    groups[n["name"]] = n["group"]
                n = n["name"]
            neurons.append(n)
        return cls(d["inputs"], neurons, d["synapses"], d["output"], lam=d.get("lam", "1/2"),
                   requires_clock=d.get("requires_clock", False), groups=groups,
                   shared=d.get("shared", ()), meta=d.get("meta"))

    def save(self, path) -> Path:
        path = Path(path)
        path.write_text(json.dumps(self.to_dict(), indent=1) + "\n")
        return path

    @classmethod
    def load(cls, path) -> SpikingCircuit:
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"circuit file {str(path)!r} does not exist")
        try:
            d = json.loads(path.read_text())
        except json.JSONDecodeError as e:
            raise ValueError(f"{str(path)!r} is not valid JSON: {e}") from None
        return cls.from_dict(d)

    def to_nir(self):
        """The circuit as a NIR graph (needs ``pip install membra[export]``).

        Each neuron becomes a ``nir.LIF`` node with ``tau = h``, ``r = 1``, ``v_leak = 0``,
        ``v_threshold = 1`` and ``v_reset = 0``; weights go into one ``nir.Affine`` per
        topological layer (no bias). NIR has no flag for a strict threshold, the clamp at 0 or
        the zero-delay same-step cascade, so the graph's ``metadata`` records them; a NIR
        simulator that ignores it will not reproduce the circuit exactly."""
        from .nir_export import to_nir

        return to_nir(self)

    def __repr__(self) -> str:
        return (f"SpikingCircuit(inputs={self.inputs}, neurons={self.n_neurons}, "
                f"weights={self.n_weights}, depth={self.depth}, lam={self.lam}, "
                f"requires_clock={self.requires_clock})")
