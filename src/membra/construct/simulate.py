r"""Reference simulators of a :class:`~membra.construct.circuit.SpikingCircuit`.

Both implement the grid recursion (neurons in topological order within a step)

.. math::

    U_i[t] = \lambda V_i[t-1](1 - S_i[t-1]) + \sum_j w_{ij} S_j[t] + \sum_c a_{ic} X_c[t],\quad
    V_i[t] = \max(U_i[t], 0),\quad S_i[t] = \mathbb{1}\{V_i[t] > 1\}.

- ``exact=True``: :class:`fractions.Fraction` arithmetic, one sample and one neuron at a time.
- ``exact=False``: float64 numpy, one topological layer at a time (a layer's input at step
  :math:`t` is the spikes of earlier layers at the same :math:`t`). For dyadic weights and
  :math:`\lambda` (everything the baseline builds) every reachable potential is a dyadic
  rational with a small denominator, so float64 is exact as well. Both paths report
  ``margin = min |V - 1|`` over the potentials that are not exactly 1, and the float path warns
  when it is below ``1e-9``. Potentials exactly equal to 1 (counted in ``at_threshold``) are
  exactly representable, do not spike, and are used on purpose by the compact construction.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from fractions import Fraction

import numpy as np

from .rule import _as_trains

__all__ = ["Simulation", "simulate", "MARGIN_WARN"]

MARGIN_WARN = 1e-9


@dataclass
class Simulation:
    """Everything one run produced. Arrays are time first; the batch axis is present only if
    the input had one.

    Attributes:
        out: output spikes ``(T[, B])`` int8.
        spikes: spikes of every neuron ``(T[, B], N)`` int8, in ``neurons`` order.
        potentials: :math:`V` after each step ``(T[, B], N)`` (float64, or Fraction objects for
            the exact path).
        neurons: neuron names (topological order).
        margin: ``min |V - 1|`` over all neurons and steps with ``V != 1`` (``inf`` if none).
        at_threshold: number of neuron-steps with ``V == 1`` exactly (no spike: strict ``>``).
    """

    out: np.ndarray
    spikes: np.ndarray
    potentials: np.ndarray
    neurons: list
    margin: float
    at_threshold: int = 0


def _with_clock(circ, X) -> tuple[np.ndarray, bool]:
    arr, batched = _as_trains(X, circ.n_inputs, "X")
    if circ.requires_clock:
        clock = np.ones(arr.shape[:2] + (1,), dtype=np.int8)
        arr = np.concatenate([clock, arr], axis=2)
    return arr, batched


def simulate(circ, X, exact: bool = False, return_all: bool = False):
    """Run ``circ`` on ``X`` ``(T, n)`` or ``(T, B, n)``; see the module docstring."""
    arr, batched = _with_clock(circ, X)
    run = _run_exact if exact else _run_float
    spikes, pots, margin, at_one = run(circ, arr)
    if not exact and margin < MARGIN_WARN:
        warnings.warn(f"float simulation came within {margin:.3g} of the threshold; the float "
                      "path may differ from exact arithmetic, use simulate(exact=True)",
                      RuntimeWarning, stacklevel=3)
    out = spikes[:, :, circ.neurons.index(circ.output)]
    if not batched:
        out, spikes, pots = out[:, 0], spikes[:, 0], pots[:, 0]
    if not return_all:
        return out
    return Simulation(out=out, spikes=spikes, potentials=pots, neurons=list(circ.neurons),
                      margin=margin, at_threshold=at_one)


def _layer_slices(circ) -> list[slice]:
    out, start = [], 0
    for layer in circ.layers:
        out.append(slice(start, start + len(layer)))
        start += len(layer)
    return out


def _run_float(circ, x: np.ndarray):
    T, B, _ = x.shape
    N = circ.n_neurons
    w_in, w_nn = circ.float_matrices(np.float64)
    lam = float(circ.lam)
    xf = x.astype(np.float64)
    spikes = np.zeros((T, B, N), dtype=np.float64)
    pots = np.zeros((T, B, N), dtype=np.float64)
    for sl in _layer_slices(circ):
        # inputs of this layer at every step: input lines and spikes of earlier layers
        cols = np.flatnonzero(w_nn[sl, : sl.start].any(axis=0))  # sources actually used
        current = xf @ w_in[sl].T + spikes[:, :, cols] @ w_nn[sl][:, cols].T
        v = np.zeros((B, sl.stop - sl.start))
        s = np.zeros_like(v)
        for t in range(T):
            v = np.maximum(lam * v * (1.0 - s) + current[t], 0.0)
            s = (v > 1.0).astype(np.float64)
            pots[t, :, sl] = v
            spikes[t, :, sl] = s
    dist = np.abs(pots - 1.0)
    at_one = int((dist == 0).sum())
    dist = dist[dist > 0]
    margin = float(dist.min()) if dist.size else float("inf")
    return spikes.astype(np.int8), pots, margin, at_one


def _run_exact(circ, x: np.ndarray):
    T, B, _ = x.shape
    N = circ.n_neurons
    w_in, w_nn = circ.matrices()
    lam = circ.lam
    # sparse rows: (input index, weight) and (neuron index, weight) per neuron
    rows_in = [[(j, w) for j, w in enumerate(r) if w] for r in w_in]
    rows_nn = [[(j, w) for j, w in enumerate(r) if w] for r in w_nn]
    spikes = np.zeros((T, B, N), dtype=np.int8)
    pots = np.empty((T, B, N), dtype=object)
    zero, one = Fraction(0), Fraction(1)
    margin, at_one = None, 0
    for b in range(B):
        v = [zero] * N
        s = [0] * N
        for t in range(T):
            xt = x[t, b]
            new_s = [0] * N
            for i in range(N):
                u = lam * v[i] if not s[i] else zero
                for j, w in rows_in[i]:
                    if xt[j]:
                        u += w
                for j, w in rows_nn[i]:
                    if new_s[j]:
                        u += w
                v[i] = u if u > 0 else zero
                new_s[i] = 1 if v[i] > one else 0
                d = abs(v[i] - one)
                if not d:
                    at_one += 1
                elif margin is None or d < margin:
                    margin = d
            s = new_s
            spikes[t, b] = s
            pots[t, b] = v
    return spikes, pots, float(margin) if margin is not None else float("inf"), at_one
