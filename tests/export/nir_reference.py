"""A plain float64 loop of the NIR equations, the oracle of the NIR tests.

Neurons are NIR's ODEs under forward Euler with step ``dt``, the discretisation snnTorch
(``dt = 1e-4``) and Norse (``dt = 1e-3``) write and read: per step, first the synaptic current
(CubaLIF), then the membrane with the *new* current, fire on ``v > v_threshold``, reset to
``v_reset``. The input of a node is the sum of its incoming edges. Nothing here uses membra.
"""

from __future__ import annotations

import nir
import numpy as np
import torch


def neuron(node, x: np.ndarray, dt: float) -> np.ndarray:
    """Spikes ``[T, B, *S]`` of a NIR LIF / IF / CubaLIF on input ``x [T, B, *S]`` from rest."""
    v = np.zeros(x.shape[1:])
    cur = np.zeros(x.shape[1:])
    out = []
    for x_t in x:
        if isinstance(node, nir.LIF):
            v = v + dt / node.tau * (node.v_leak - v + node.r * x_t)
        elif isinstance(node, nir.IF):
            v = v + dt * node.r * x_t
        else:  # CubaLIF
            cur = cur + dt / node.tau_syn * (-cur + node.w_in * x_t)
            v = v + dt / node.tau_mem * (node.v_leak - v + node.r * cur)
        z = v > node.v_threshold
        v = np.where(z, node.v_reset, v)
        out.append(z.astype(np.float64))
    return np.stack(out)


def _pool_sum(x: np.ndarray, k, s, p) -> np.ndarray:
    """Sum over windows ``k`` with stride ``s`` and zero padding ``p`` of ``x [N, C, H, W]``."""
    x = np.pad(x, ((0, 0), (0, 0), (p[0], p[0]), (p[1], p[1])))
    H = (x.shape[2] - k[0]) // s[0] + 1
    W = (x.shape[3] - k[1]) // s[1] + 1
    out = np.zeros(x.shape[:2] + (H, W))
    for i in range(H):
        for j in range(W):
            out[:, :, i, j] = x[:, :, i * s[0]:i * s[0] + k[0],
                                j * s[1]:j * s[1] + k[1]].sum(axis=(2, 3))
    return out


def _per_step(fn, x: np.ndarray) -> np.ndarray:
    T, B = x.shape[:2]
    y = fn(x.reshape(T * B, *x.shape[2:]))
    return y.reshape(T, B, *y.shape[1:])


def op(node, x: np.ndarray, dt: float) -> np.ndarray:
    """One NIR node on a whole sequence ``x [T, B, ...]`` (float64)."""
    pair = lambda a: tuple(int(v) for v in np.broadcast_to(np.asarray(a), (2,)))  # noqa: E731
    if isinstance(node, (nir.LIF, nir.IF, nir.CubaLIF)):
        return neuron(node, x, dt)
    if isinstance(node, nir.Affine):
        return x @ np.asarray(node.weight, np.float64).T + node.bias
    if isinstance(node, nir.Linear):
        return x @ np.asarray(node.weight, np.float64).T
    if isinstance(node, nir.Scale):
        return x * node.scale
    if isinstance(node, nir.Conv2d):
        def conv(a):
            return torch.nn.functional.conv2d(
                torch.from_numpy(a), torch.from_numpy(np.asarray(node.weight, np.float64)),
                torch.from_numpy(np.asarray(node.bias, np.float64)), pair(node.stride),
                pair(node.padding), pair(node.dilation), int(node.groups)).numpy()
        return _per_step(conv, x)
    if isinstance(node, (nir.SumPool2d, nir.AvgPool2d)):
        k = pair(node.kernel_size)
        div = 1 if isinstance(node, nir.SumPool2d) else k[0] * k[1]
        return _per_step(lambda a: _pool_sum(a, k, pair(node.stride), pair(node.padding)) / div,
                         x)
    if isinstance(node, nir.Flatten):
        lead = x.shape[:2]
        shape = x.shape[2:]
        end = node.end_dim % len(shape)
        new = shape[:node.start_dim] + (int(np.prod(shape[node.start_dim:end + 1])),) \
            + shape[end + 1:]
        return x.reshape(*lead, *new)
    if isinstance(node, nir.Delay):               # y_t = x_{t-d}, zeros before the start
        T, B = x.shape[:2]
        d = np.broadcast_to(np.rint(np.asarray(node.delay) / dt).astype(int), x.shape[2:])
        flat, out = x.reshape(T, B, -1), np.zeros((T, B, d.size))
        for n, dn in enumerate(d.reshape(-1)):
            out[dn:, :, n] = flat[:T - dn, :, n]
        return out.reshape(x.shape)
    raise NotImplementedError(type(node).__name__)


def graph(g, x: np.ndarray, dt: float) -> tuple[np.ndarray, dict]:
    """Output of a NIR graph (a DAG) on ``x [T, B, ...]`` and every node's value."""
    sources: dict[str, list[str]] = {n: [] for n in g.nodes}
    for a, b in g.edges:
        sources[b].append(a)
    values: dict[str, np.ndarray] = {}
    pending = list(g.nodes)
    while pending:
        for name in pending:
            if all(s in values for s in sources[name]):
                break
        else:
            raise ValueError("graph has a cycle")
        pending.remove(name)
        node = g.nodes[name]
        if isinstance(node, nir.Input):
            values[name] = x
            continue
        inp = values[sources[name][0]]
        for s in sources[name][1:]:
            inp = inp + values[s]
        values[name] = inp if isinstance(node, nir.Output) else op(node, inp, dt)
    out = [n for n, node in g.nodes.items() if isinstance(node, nir.Output)]
    return values[out[0]], values
