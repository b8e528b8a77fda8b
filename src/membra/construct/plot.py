"""Spike raster of a circuit on a short random train (drawn by :mod:`membra.plotting`)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

__all__ = ["plot_raster"]


def plot_raster(circ, out, *, steps: int = 32, rate: float = 0.5, seed: int = 0,
                X: np.ndarray | None = None) -> Path:
    """Write a PNG raster: data inputs on top, then the neurons by group (topological order
    within a group), the output neuron at the bottom. Without ``X`` the train is Bernoulli
    ``rate``, from the first seed at or after ``seed`` that makes the output spike (up to 100
    tries). Returns the path."""
    from ..plotting import circuit_raster_figure, require_matplotlib, save

    require_matplotlib()  # before simulating: say what is missing first
    if not 0 <= rate <= 1:
        raise ValueError(f"rate must be in [0, 1], got {rate}")
    if X is None and (not isinstance(steps, int) or steps < 1):
        raise ValueError(f"steps must be an int >= 1, got {steps!r}")
    if X is None:  # the first seed from `seed` on whose train makes the output spike
        for s in range(seed, seed + 100):
            rng = np.random.default_rng(s)
            X = (rng.random((steps, circ.n_inputs)) < rate).astype(np.int8)
            if circ.simulate(X).any():
                break
    sim = circ.simulate(X, return_all=True)
    groups: dict[str, list[int]] = {}
    for i, name in enumerate(circ.neurons):
        if name != circ.output:
            groups.setdefault(circ.group_of(name), []).append(i)
    rows = [(f"input {name}", X[:, c], "input") for c, name in enumerate(circ.data_inputs)]
    for group, idx in groups.items():
        rows += [(circ.neurons[i], sim.spikes[:, i], group) for i in idx]
    rows.append((circ.output, sim.out, "output"))
    kind = circ.meta.get("method", "circuit")
    title = (f"{kind}: {circ.n_neurons} neurons, {circ.n_weights} weights, "
             f"clock={'yes' if circ.requires_clock else 'no'}")
    return save(circuit_raster_figure(rows, title), out)
