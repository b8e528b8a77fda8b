r"""Input -> output spike-pattern counts of a single neuron (``docs/study.md`` §1).

A single neuron (IF by default, ``v_th = 1``, soft reset) is driven for ``T`` steps by every
binary train :math:`b \in \{0, 1\}^T` scaled by a scalar weight, :math:`X_t = w\, b_t`, from
an initial potential :math:`V_0`:

.. math::

    H_t = V_{t-1} + X_t \ \text{(IF)}, \qquad S_t = [H_t \ge V_{th}], \qquad
    V_t = H_t - S_t V_{th} \ \text{(soft)}.

Every (input train, output train) pair met on a grid of ``weights`` x ``potentials`` is marked
in a :math:`2^T \times 2^T` 0/1 matrix. The *count* is the number of marked pairs. A train is
encoded as an integer with step 1 as the most significant bit (``1000`` = a spike at t = 1
only). With ``V_0 = 0`` and ``w`` in ``[0, 1]`` there are 54 pairs; sweeping ``V_0`` over
``[-1, 1]`` gives 108: a learnable initial potential widens the set of reachable mappings.

The neuron is membra's own: :func:`membra.kernels.neuron_sequence` for ``fire=">="`` (membra's
rule); the strict ``fire=">"`` variant, kept as a sensitivity check, loops over
:func:`membra.functional.if_charge` / :func:`membra.functional.lif_charge` with the same reset
equations and a strict comparison.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch

from ..functional.kinds import NeuronKind
from ..functional.neuron import check_reset, if_charge, lif_charge
from ..kernels import neuron_sequence

__all__ = ["PatternCounts", "pattern_counts", "spike_trains", "train_code", "format_train",
           "GRID_A_WEIGHTS", "GRID_B_WEIGHTS", "GRID_B_POTENTIALS", "spec_grids",
           "pattern_table"]

GRID_A_WEIGHTS = tuple(torch.linspace(0, 1, 17, dtype=torch.float64).tolist())
"""Grid A of the spec: ``V_0 = 0`` and these 17 weights."""
GRID_B_WEIGHTS = tuple(torch.linspace(0, 1, 9, dtype=torch.float64).tolist())
"""Grid B of the spec: these 9 weights x :data:`GRID_B_POTENTIALS`."""
GRID_B_POTENTIALS = tuple(torch.linspace(-1, 1, 9, dtype=torch.float64).tolist())
"""Grid B of the spec: 9 initial potentials in ``[-1, 1]``."""

FIRE_RULES = (">=", ">")
#: the neuron kinds :func:`pattern_counts` runs
NEURONS = (NeuronKind.IF, NeuronKind.LIF)


@dataclass(frozen=True)
class PatternCounts:
    """Result of :func:`pattern_counts`.

    Attributes:
        matrix: ``[2^T, 2^T]`` int64 0/1, ``matrix[i, o] = 1`` when input train ``i`` produced
            output train ``o`` somewhere on the grid (codes: step 1 = most significant bit).
        T: number of time steps.
        weights, potentials: the grid that was swept.
    """

    matrix: torch.Tensor
    T: int
    weights: tuple[float, ...]
    potentials: tuple[float, ...]

    @property
    def pairs(self) -> int:
        """Number of distinct (input, output) pairs: the count of the spec."""
        return int(self.matrix.sum())

    @property
    def per_input(self) -> tuple[int, ...]:
        """Number of distinct outputs for each input code ``0 .. 2^T - 1``."""
        return tuple(int(v) for v in self.matrix.sum(1))

    @property
    def mean_outputs(self) -> float:
        """Distinct outputs per input on average (``pairs / 2^T``)."""
        return self.pairs / self.matrix.shape[0]

    def outputs(self, input_code: int) -> list[int]:
        """Sorted output codes reached from ``input_code``."""
        n = self.matrix.shape[0]
        if not isinstance(input_code, int) or not 0 <= input_code < n:
            raise ValueError(f"input_code must be an int in [0, {n - 1}], got {input_code!r}")
        return self.matrix[input_code].nonzero().flatten().tolist()


def spike_trains(T: int, dtype=torch.float64) -> torch.Tensor:
    """All ``2^T`` binary trains as ``[2^T, T]``; row ``c`` is the train with code ``c``
    (step 1 = most significant bit)."""
    codes = torch.arange(2 ** T)
    bits = 2 ** torch.arange(T - 1, -1, -1)
    return ((codes[:, None] // bits) % 2).to(dtype)


def train_code(spikes: torch.Tensor) -> torch.Tensor:
    """Integer code of binary trains ``[..., T]`` (step 1 = most significant bit)."""
    T = spikes.shape[-1]
    bits = 2 ** torch.arange(T - 1, -1, -1, device=spikes.device)
    return (spikes.round().long() * bits).sum(-1)


def format_train(code: int, T: int = 4) -> str:
    """``5 -> "0101"`` for ``T = 4``."""
    return format(int(code), f"0{T}b")


def _values(name: str, values) -> tuple[float, ...]:
    if isinstance(values, torch.Tensor):
        values = values.flatten().tolist()
    if isinstance(values, (int, float)) and not isinstance(values, bool):
        values = (values,)
    if not isinstance(values, Sequence) or len(values) == 0 or not all(
            isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)
            for v in values):
        raise ValueError(f"{name} must be a non-empty sequence of finite numbers, got "
                         f"{values!r}")
    return tuple(float(v) for v in values)


def _pattern_kind(neuron) -> NeuronKind:
    """The :class:`NeuronKind` named by ``neuron`` (a kind or its name), one of
    :data:`NEURONS`; anything else raises ``ValueError`` listing those."""
    try:
        kind = NeuronKind.parse(neuron)
    except ValueError:
        kind = None
    if kind not in NEURONS:
        shown = neuron.value if isinstance(neuron, NeuronKind) else neuron
        raise ValueError(f"neuron={shown!r}: pattern counts run one of "
                         f"{[k.value for k in NEURONS]}")
    return kind


def _strict_sequence(x, v0, *, kind: NeuronKind, tau, v_th, reset):
    """Same recurrence as the kernels but firing on ``H > V_th`` (sensitivity check only)."""
    v = v0.expand_as(x[0])
    out = []
    for t in range(x.shape[0]):
        h = lif_charge(x[t], v, tau) if kind.has_tau else if_charge(x[t], v)
        s = (h > v_th).to(x.dtype)
        v = h - v_th * s if reset == "soft" else h * (1.0 - s)
        out.append(s)
    return torch.stack(out)


@torch.no_grad()
def pattern_counts(T: int = 4, weights=GRID_A_WEIGHTS, potentials=(0.0,), neuron=NeuronKind.IF,
                   reset: str = "soft", fire: str = ">=", v_th: float = 1.0,
                   tau: float = 2.0) -> PatternCounts:
    """Mark every (input train, output train) pair of one neuron over a weight x potential grid.

    Args:
        T: number of steps (``2^T`` input trains; keep ``T <= 12``).
        weights: scalar weights ``w`` (input current ``X_t = w b_t``); default grid A.
        potentials: initial potentials ``V_0``; default ``(0.0,)``. The spec's grid B is
            ``weights=GRID_B_WEIGHTS, potentials=GRID_B_POTENTIALS``.
        neuron: a :class:`~membra.functional.NeuronKind` or its name: ``IF`` (the spec's
            choice) or ``LIF`` (decay-input form, ``tau``).
        reset: ``"soft"`` (subtract ``v_th``) or ``"hard"`` (to 0).
        fire: ``">="`` (membra's rule) or ``">"`` (strict, for comparison).
        v_th, tau: threshold and LIF time constant.

    Returns:
        :class:`PatternCounts` with the 0/1 matrix; ``.pairs`` is the count
        (54 on grid A, 108 on grid B with the defaults).
    """
    if not isinstance(T, int) or isinstance(T, bool) or not 1 <= T <= 12:
        raise ValueError(f"T must be an int in [1, 12], got {T!r}")
    kind = _pattern_kind(neuron)
    if fire not in FIRE_RULES:
        raise ValueError(f"fire={fire!r} is not known; choose one of {list(FIRE_RULES)}")
    check_reset(reset)
    ws = _values("weights", weights)
    vs = _values("potentials", potentials)

    trains = spike_trains(T)                                    # [N, T]
    w = torch.tensor(ws, dtype=torch.float64)
    v = torch.tensor(vs, dtype=torch.float64)
    grid_w = w.repeat(len(vs))                                  # [G], G = |V| * |W|
    grid_v = v.repeat_interleave(len(ws))
    x = trains.T[:, None, :] * grid_w[None, :, None]            # [T, G, N]
    v0 = grid_v[:, None]                                        # [G, 1]
    if fire == ">=":
        spikes, _ = neuron_sequence(x, v0, neuron=kind, tau=tau if kind.has_tau else None,
                                    v_th=v_th, v_reset=0.0, reset=reset)
    else:
        spikes = _strict_sequence(x, v0, kind=kind, tau=tau, v_th=v_th, reset=reset)
    out_codes = train_code(spikes.permute(1, 2, 0))             # [G, N]
    n = 2 ** T
    matrix = torch.zeros(n, n, dtype=torch.int64)
    in_codes = torch.arange(n).expand_as(out_codes)
    matrix[in_codes.flatten(), out_codes.flatten()] = 1
    return PatternCounts(matrix=matrix, T=T, weights=ws, potentials=vs)


def spec_grids(T: int = 4, **kwargs) -> dict[str, PatternCounts]:
    """Both grids of the spec: ``{"V_0 = 0": grid A, "V_0 swept": grid B}``; ``kwargs``
    (``neuron``, ``reset``, ``fire`` ...) go to :func:`pattern_counts`."""
    return {
        "V_0 = 0": pattern_counts(T, GRID_A_WEIGHTS, (0.0,), **kwargs),
        "V_0 swept": pattern_counts(T, GRID_B_WEIGHTS, GRID_B_POTENTIALS, **kwargs),
    }


def pattern_table(results: dict[str, PatternCounts]) -> list[tuple[str, ...]]:
    """Rows ``(quantity, value per grid ...)`` of the spec's §8 table (header first)."""
    res = list(results.values())
    T = res[0].T
    full = 2 ** T - 1
    rows = [("quantity", *results.keys()),
            ("distinct (input, output) pairs", *(str(r.pairs) for r in res)),
            ("outputs per input (mean)", *(f"{r.mean_outputs:.3f}" for r in res)),
            (f"outputs for the constant input {format_train(full, T)}",
             *(str(len(r.outputs(full))) for r in res)),
            (f"outputs per input, inputs 0..{full}",
             *(" ".join(map(str, r.per_input)) for r in res)),
            (f"outputs of {format_train(full, T)}",
             *(" ".join(format_train(c, T) for c in r.outputs(full)) for r in res))]
    return rows
