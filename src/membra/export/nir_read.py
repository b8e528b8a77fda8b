"""NIR import: a ``nir.NIRGraph`` to a membra network (:func:`from_nir`: an ``nn.Sequential``
for a chain, a :class:`~membra.export.modules.GraphNet` otherwise), and a ``.nir`` file to a
graph (:func:`read_nir`); :mod:`.nir` states how NIR's neurons map to membra's.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch import nn

from ..nn import IF, LIF, TimeDistributed
from .modules import INPUT, GraphNet, InputMap
from .nir_nodes import PREFIX, _check_dt, _nir, _peer


# ---- import: NIR graph -> membra --------------------------------------------------------------
def _meta(node, key, default=None):
    v = node.metadata.get(PREFIX + key, default) if node.metadata else default
    if isinstance(v, bytes):
        v = v.decode("utf8")
    if isinstance(v, np.ndarray) and v.ndim == 0:
        v = v.item()
    if isinstance(v, np.generic):
        v = v.item()
    return v


def _uniform(name: str, field: str, arr) -> float:
    a = np.asarray(arr, dtype=np.float64)
    if a.size == 0 or not np.all(a == a.flat[0]):
        raise ValueError(f"from_nir: node {name!r} has per-neuron {field}; membra neurons take "
                         "one value per layer")
    return float(a.flat[0])


def _arr(a, shape=None) -> np.ndarray:
    a = np.asarray(a, dtype=np.float64)
    return np.broadcast_to(a, shape).copy() if shape is not None else a


def _tensor(a: np.ndarray) -> torch.Tensor:
    a = np.asarray(a)
    if a.size and np.all(a == a.flat[0]):
        return torch.tensor(float(a.flat[0]), dtype=torch.float32)
    return torch.as_tensor(a, dtype=torch.float32)


def _neuron_from_nir(name, node, dt, nir) -> list[nn.Module]:
    """A membra neuron (and an :class:`InputMap` in front when needed) equal to a NIR
    LIF / IF / CubaLIF under forward Euler with step ``dt``:

    - LIF: ``tau_m = tau/dt``, input ``x = R I + (v_leak - v_reset)`` (membra leaks to
      ``v_reset``; the constant moves the rest point to ``v_leak``);
    - IF: ``x = R dt I``;
    - CubaLIF: ``tau_syn_m = tau_syn/dt``, ``x = (R w_in dt/tau_syn) S + (v_leak - v_reset)
      dt/tau_syn`` and initial current ``v_leak - v_reset`` (membra's current is ``R I +
      v_leak - v_reset``);
    - per-neuron ``v_threshold``/``v_reset`` (hard reset): the potential is measured as
      ``(v - v_reset)/(v_threshold - v_reset)``, so the neuron has threshold 1, reset 0 and
      starts at ``-v_reset/(v_threshold - v_reset)``.
    """
    kind = type(node).__name__
    shape = tuple(int(d) for d in np.asarray(node.v_threshold).shape)
    th, vr = _arr(node.v_threshold), _arr(node.v_reset, shape)
    i0 = None
    if isinstance(node, nir.IF):
        tau, scale, shift = None, _arr(node.r, shape) * dt, np.zeros(shape)
    else:
        tau_nir = node.tau if isinstance(node, nir.LIF) else node.tau_mem
        field = "tau" if isinstance(node, nir.LIF) else "tau_mem"
        tau = _uniform(name, field, tau_nir) / dt
        if not tau >= 1:
            raise ValueError(f"from_nir: {kind} {name!r} has {field}={tau * dt:g}, shorter than "
                             f"dt={dt:g}: give the time step the graph was written for, "
                             "from_nir(graph, dt=...) (snnTorch writes dt = 1e-4, Norse 1e-3)")
        k = _arr(node.v_leak, shape) - vr
        if isinstance(node, nir.LIF):
            scale, shift = _arr(node.r, shape), k
        else:
            ts = _uniform(name, "tau_syn", node.tau_syn)
            scale = _arr(node.r, shape) * _arr(node.w_in, shape) * dt / ts
            shift, i0 = k * dt / ts, k
    reset = _meta(node, "reset", "hard")
    kw = dict(reset=reset)
    for key in ("surrogate", "alpha", "detach_reset"):
        val = _meta(node, key)
        if val is not None:
            kw[key] = bool(val) if key == "detach_reset" else val
    v0 = _meta(node, "init_potential")
    v0 = None if v0 is None else _arr(v0, shape)
    c0 = _meta(node, "init_current")
    if c0 is not None:
        i0 = _arr(c0, shape) + (i0 if i0 is not None else 0.0)
    if np.all(th == th.flat[0]) and np.all(vr == vr.flat[0]):
        kw.update(v_th=float(th.flat[0]), v_reset=float(vr.flat[0]))
    else:
        gap = th - vr
        if reset != "hard" or not np.all(gap > 0):
            raise ValueError(f"from_nir: {kind} {name!r} has per-neuron v_threshold/v_reset; "
                             "membra maps them for a hard reset with v_threshold > v_reset only")
        kw.update(v_th=1.0, v_reset=0.0)
        scale, shift = scale / gap, shift / gap
        v0 = ((0.0 if v0 is None else v0) - vr) / gap        # NIR starts at v = 0
        i0 = None if i0 is None else i0 / gap
    if v0 is not None:
        kw["init_potential"] = torch.as_tensor(v0, dtype=torch.float32).unsqueeze(0)
        kw["learnable_potential"] = bool(_meta(node, "init_potential_learnable", False))
    if isinstance(node, nir.IF):
        neuron = IF(shape, **kw)
    elif isinstance(node, nir.LIF):
        neuron = LIF(shape, tau=tau, **kw)
    else:
        cls = _peer("CubaLIF", name, kind)
        if i0 is not None and np.any(i0 != 0):
            kw["init_current"] = torch.as_tensor(i0, dtype=torch.float32).unsqueeze(0)
            kw["learnable_current"] = bool(_meta(node, "init_current_learnable", False))
        neuron = cls(shape, tau=tau, tau_syn=_uniform(name, "tau_syn", node.tau_syn) / dt,
                     **kw)
    if np.allclose(scale, 1.0, rtol=1e-6, atol=0) and not np.any(shift):
        return [neuron]
    return [InputMap(_tensor(scale), _tensor(shift)), neuron]


def _delay_from_nir(name, node, dt) -> nn.Module:
    """NIR ``Delay`` ``y(t) = x(t - delay)``: ``delay/dt`` whole steps per neuron."""
    cls = _peer("Delay", name, "Delay")
    steps = np.asarray(node.delay, dtype=np.float64) / dt
    d = np.rint(steps)
    if not np.allclose(steps, d, rtol=0, atol=1e-6) or np.any(d < 0):
        raise ValueError(f"from_nir: Delay {name!r} has delays {steps.ravel()[:4]}... steps of "
                         f"dt={dt:g}; membra delays by whole non-negative steps")
    d = d.astype(np.int64)
    return cls(tuple(d.shape), max(int(d.max(initial=0)), 1), delays=torch.as_tensor(d))


def _module_from_nir(name, node, dt, nir) -> list[nn.Module]:
    t = lambda a: torch.as_tensor(np.asarray(a, dtype=np.float32))  # noqa: E731
    pair = lambda a: tuple(int(v) for v in np.broadcast_to(np.asarray(a), (2,)))  # noqa: E731
    if isinstance(node, (nir.Affine, nir.Linear)):
        w = t(node.weight)
        lin = nn.Linear(w.shape[1], w.shape[0], bias=isinstance(node, nir.Affine))
        with torch.no_grad():
            lin.weight.copy_(w)
            if isinstance(node, nir.Affine):
                lin.bias.copy_(t(node.bias))
        return [lin]
    if isinstance(node, nir.Scale):
        return [InputMap(_tensor(np.asarray(node.scale)), torch.tensor(0.0))]
    if isinstance(node, nir.Conv2d):
        w = t(node.weight)
        pad = node.padding
        if isinstance(pad, (str, bytes)):
            raise ValueError(f"from_nir: Conv2d {name!r} uses string padding {pad!r}")
        groups = int(np.asarray(node.groups))
        conv = nn.Conv2d(w.shape[1] * groups, w.shape[0], tuple(w.shape[2:]),
                         stride=pair(node.stride), padding=pair(pad),
                         dilation=pair(node.dilation), groups=groups)
        with torch.no_grad():
            conv.weight.copy_(w)
            conv.bias.copy_(t(node.bias))
        return [TimeDistributed(conv)]
    if isinstance(node, (nir.AvgPool2d, nir.SumPool2d)):
        over = 1 if isinstance(node, nir.SumPool2d) else None       # a sum: divide by 1
        return [TimeDistributed(nn.AvgPool2d(pair(node.kernel_size), pair(node.stride),
                                             pair(node.padding), divisor_override=over))]
    if isinstance(node, nir.Flatten):
        end = int(node.end_dim)
        return [nn.Flatten(int(node.start_dim) + 2, end if end < 0 else end + 2)]
    if isinstance(node, (nir.LIF, nir.IF, nir.CubaLIF)):
        return _neuron_from_nir(name, node, dt, nir)
    if isinstance(node, nir.Delay):
        return [_delay_from_nir(name, node, dt)]
    raise ValueError(f"from_nir: node {name!r} of type {type(node).__name__} is not supported; "
                     "supported: Affine, Linear, Scale, Conv2d, AvgPool2d, SumPool2d, Flatten, "
                     "LIF, IF, CubaLIF, Delay (and Input/Output)")


def _topological(names: list[str], sources: dict[str, list[str]], start: str) -> list[str]:
    done, order, pending = {start}, [], [n for n in names if n != start]
    while pending:
        ready = [n for n in pending if all(s in done for s in sources[n])]
        if not ready:
            raise ValueError(f"from_nir: the graph has a cycle (or nodes no path from the input "
                             f"reaches) through {sorted(pending)}; membra runs acyclic graphs")
        for n in ready:
            done.add(n)
            order.append(n)
        pending = [n for n in pending if n not in done]
    return order


def from_nir(graph, *, dt: float | None = None) -> nn.Module:
    """Build a membra network ``[T, B, ...] -> [T, B, ...]`` from a ``nir.NIRGraph``.

    A chain becomes an ``nn.Sequential``; any other acyclic graph a :class:`GraphNet` (a
    node's input is the sum of its incoming edges). ``dt``: the time step of the forward-Euler
    discretisation; default the graph's ``membra.dt``, else 1 (graphs from snnTorch are written
    for ``dt = 1e-4``, from Norse for ``1e-3``). ``membra.*`` metadata (IMP, soft reset ...) is
    honoured when present; without it NIR's semantics hold (hard reset, start at rest).
    """
    nir = _nir()
    if not isinstance(graph, nir.NIRGraph):
        raise TypeError(f"from_nir expects a nir.NIRGraph, got {type(graph).__name__}")
    dt = _check_dt(float(_meta(graph, "dt", 1.0)) if dt is None else dt)
    ins = [n for n, node in graph.nodes.items() if isinstance(node, nir.Input)]
    outs = [n for n, node in graph.nodes.items() if isinstance(node, nir.Output)]
    if len(ins) != 1 or len(outs) != 1:
        raise ValueError(f"from_nir: expected one Input and one Output node, found inputs "
                         f"{ins} and outputs {outs}")
    sources: dict[str, list[str]] = {n: [] for n in graph.nodes}
    for a, b in graph.edges:
        if a not in graph.nodes or b not in graph.nodes:
            raise ValueError(f"from_nir: edge ({a!r}, {b!r}) names a node the graph lacks")
        sources[b].append(INPUT if a == ins[0] else a)
    for n, node in graph.nodes.items():
        if isinstance(node, nir.NIRGraph):
            raise ValueError(f"from_nir: node {n!r} is a nested NIRGraph (a subgraph, e.g. a "
                             "recurrent layer); membra reads flat graphs")
    order = _topological([n for n in graph.nodes if n not in (ins[0], outs[0])],
                         {**sources, INPUT: []}, INPUT)
    if not sources[outs[0]]:
        raise ValueError("from_nir: no edge reaches the Output node")
    built = {n: _module_from_nir(n, graph.nodes[n], dt, nir) for n in order}
    users: dict[str, int] = {}
    for srcs in sources.values():
        for s in srcs:
            users[s] = users.get(s, 0) + 1
    path = [INPUT, *order]
    is_chain = all(sources[n] == [path[i]] for i, n in enumerate(order)) and \
        sources[outs[0]] == [path[-1]] and all(v == 1 for v in users.values())
    if is_chain:
        model = nn.Sequential()
        for n in order:
            mods = built[n]
            for j, m in enumerate(mods):
                key = n if j == len(mods) - 1 else f"{n}_in"
                model.add_module(key.replace(".", "_"), m)
        return model
    nodes = {n: m[0] if len(m) == 1 else nn.Sequential(*m) for n, m in built.items()}
    return GraphNet(nodes, {n: sources[n] for n in order}, sources[outs[0]])


def read_nir(path: str | Path):
    """Read a ``.nir`` file written by :func:`write_nir` (or another NIR tool)."""
    nir = _nir()
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"NIR file not found: {path}")
    return nir.read(str(path), type_check=False)

