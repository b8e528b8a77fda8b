"""Spike raster of a circuit on a short random train (needs ``membra[plot]``)."""

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
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError as e:  # pragma: no cover - depends on the environment
        raise ImportError("plotting needs matplotlib: pip install 'membra[plot]'") from e
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
    palette = plt.get_cmap("tab10")
    colours = {g: palette(k % 10) for k, g in enumerate(dict.fromkeys(r[2] for r in rows))}
    T = X.shape[0]
    fig, ax = plt.subplots(figsize=(min(3 + 0.22 * T, 16), 1 + 0.22 * len(rows)))
    for y, (_, train, group) in enumerate(rows):
        t = np.flatnonzero(train)
        ax.scatter(t, np.full(t.size, y), marker="|", s=90, color=colours[group])
    prev = None
    for y, (_, _, group) in enumerate(rows):
        if group != prev and y:
            ax.axhline(y - 0.5, color="0.85", lw=0.8)
        prev = group
    ax.set_yticks(range(len(rows)), [f"{name} [{g}]" for name, _, g in rows], fontsize=7)
    ax.set_ylim(len(rows) - 0.5, -0.5)
    ax.set_xlim(-0.5, T - 0.5)
    ax.set_xlabel("time step")
    kind = circ.meta.get("method", "circuit")
    ax.set_title(f"{kind}: {circ.n_neurons} neurons, {circ.n_weights} weights, "
                 f"clock={'yes' if circ.requires_clock else 'no'}", fontsize=9)
    fig.tight_layout()
    out = Path(out)
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out
