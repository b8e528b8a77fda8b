r"""Export membra's spiking MLP/CNN models to NIR (Neuromorphic Intermediate Representation)
and load them back.

Supported layers (an ``nn.Sequential``, nested Sequentials are flattened): ``nn.Linear``,
``Conv2d`` / ``AvgPool2d`` / ``Flatten`` / ``BatchNorm1d|2d`` / ``Dropout`` wrapped in
:class:`membra.nn.TimeDistributed` (or ``nn.Flatten(2)`` on ``[T, B, ...]``), and the neurons
:class:`membra.nn.LIF` / :class:`membra.nn.IF`. BatchNorm is folded into the weight layer
before it, with its running statistics (the export is the inference network); Dropout is
dropped.

**Neuron mapping.** NIR neurons are continuous-time; membra's are their forward-Euler
discretisation with a step ``dt`` (``dt = 1`` by default; stored as graph metadata
``membra.dt``). NIR's LIF is :math:`\tau\,\dot v = (v_{leak} - v) + R I`; one Euler step is
:math:`v \leftarrow v + \frac{dt}{\tau}(v_{leak} - v + R I)`. membra's decay-input LIF charge
is :math:`h = v + (x - (v - v_{reset}))/\tau_m`. They are equal for every input when

.. math:: \tau_{NIR} = \tau_m\, dt, \qquad R = 1, \qquad v_{leak} = v_{reset}.

NIR's IF is :math:`\dot v = R I`; :math:`h = v + x` gives :math:`R = 1/dt`. ``v_threshold``
and ``v_reset`` are copied.

**What NIR cannot express** (kept as node metadata, a documented membra extension with keys
prefixed ``membra.``; other NIR tools ignore them):

- the initial potential :math:`V_0` (IMP, learnable or constant): NIR has no initial-state
  field. ``membra.init_potential`` holds the per-neuron array (shape of the layer) and
  ``membra.init_potential_learnable`` whether it is trained. A NIR consumer that ignores it
  starts from 0, i.e. runs the network *without* its IMP;
- the soft (subtractive) reset: NIR's neurons reset to ``v_reset``. ``membra.reset`` says
  ``"soft"`` or ``"hard"``; without it the loader assumes NIR's hard reset;
- the firing comparison: NIR fires on :math:`v > v_{th}`, membra on :math:`v \ge v_{th}`
  (``membra.fire = ">="``); they differ only when the potential lands exactly on the threshold;
- training-only settings: surrogate, its alpha, ``detach_reset`` (``membra.surrogate``,
  ``membra.alpha``, ``membra.detach_reset``).

:func:`from_nir` reads these keys when present, so a membra -> NIR -> membra round trip gives
the same spikes; on graphs from other tools it uses NIR's semantics (hard reset, zero start).
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import torch
from torch import nn

from ..nn import IF, LIF, SpikingNeuron, TimeDistributed

__all__ = ["to_nir", "from_nir", "write_nir", "read_nir", "nir_neuron_params"]

PREFIX = "membra."


def _nir():
    try:
        import nir
    except ImportError as err:  # pragma: no cover - depends on the environment
        raise ImportError("NIR export needs the nir package: pip install 'membra[export]'") \
            from err
    return nir


def _np(t: torch.Tensor) -> np.ndarray:
    return t.detach().cpu().double().numpy().astype(np.float32)


def _flat_layers(model: nn.Module) -> list[tuple[str, nn.Module]]:
    if not isinstance(model, nn.Sequential):
        raise TypeError(f"to_nir expects an nn.Sequential (spiking MLP/CNN), got "
                        f"{type(model).__name__}")
    out = []
    for name, m in model.named_children():
        if isinstance(m, nn.Sequential):
            out += [(f"{name}_{n}", c) for n, c in _flat_layers(m)]
        else:
            out.append((name, m))
    return out


def _inner(m: nn.Module) -> nn.Module:
    return m.module if isinstance(m, TimeDistributed) else m


def _fold_bn(weight: torch.Tensor, bias: torch.Tensor | None, bn) -> tuple:
    """Fold eval-mode BatchNorm into the preceding layer: ``y = g (Wx + b - mu)/s + beta``."""
    w64 = weight.detach().double()
    b64 = bias.detach().double() if bias is not None else torch.zeros(w64.shape[0],
                                                                       dtype=torch.float64)
    scale = bn.weight.detach().double() if bn.affine else torch.ones_like(b64)
    shift = bn.bias.detach().double() if bn.affine else torch.zeros_like(b64)
    if bn.running_mean is None:
        raise ValueError("to_nir: BatchNorm without running statistics cannot be folded")
    s = scale / torch.sqrt(bn.running_var.double() + bn.eps)
    w = w64 * s.view(-1, *([1] * (w64.dim() - 1)))
    b = (b64 - bn.running_mean.double()) * s + shift
    return w, b


def nir_neuron_params(neuron: SpikingNeuron, shape: tuple[int, ...], dt: float = 1.0) -> dict:
    """NIR parameters equal to a membra neuron under forward Euler with step ``dt``
    (module docstring): LIF ``tau = tau_m dt, r = 1, v_leak = v_reset``; IF ``r = 1/dt``."""
    full = lambda v: np.full(shape, float(v), dtype=np.float32)  # noqa: E731
    p = {"v_threshold": full(neuron.v_th), "v_reset": full(neuron.v_reset)}
    if isinstance(neuron, LIF):
        p.update(tau=full(float(neuron.tau) * dt), r=full(1.0), v_leak=full(neuron.v_reset))
    else:
        p.update(r=full(1.0 / dt))
    return p


def _neuron_meta(neuron: SpikingNeuron, shape) -> dict:
    v0 = neuron.init_potential.detach()
    meta = {PREFIX + "reset": neuron.reset, PREFIX + "fire": ">=",
            PREFIX + "surrogate": neuron.surrogate, PREFIX + "alpha": float(neuron.alpha),
            PREFIX + "detach_reset": bool(neuron.detach_reset),
            PREFIX + "init_potential_learnable": bool(neuron.learnable_potential)}
    if neuron.learnable_potential or bool((v0 != 0).any()):
        meta[PREFIX + "init_potential"] = _np(v0.expand(1, *shape)[0])
    return meta


@torch.no_grad()
def to_nir(model: nn.Module, in_shape: tuple[int, ...] | None = None, *, dt: float = 1.0):
    """Convert a membra spiking ``nn.Sequential`` to a ``nir.NIRGraph`` (a chain).

    Args:
        model: the network mapping ``[T, B, *in_shape]`` to ``[T, B, ...]``: an
            ``nn.Sequential`` or a zoo model whose ``body`` is one (``membra.models``).
        in_shape: per-sample input shape; default ``model.in_shape`` if the model has it.
        dt: time step of the discretisation (``tau_NIR = tau dt``, IF ``r = 1/dt``).

    Returns:
        ``nir.NIRGraph`` with nodes ``input``, one per kept layer (named after the module),
        ``output``; neuron nodes carry the ``membra.*`` metadata of the module docstring.
    """
    nir = _nir()
    in_shape = in_shape if in_shape is not None else getattr(model, "in_shape", None)
    body = getattr(model, "body", None)
    if not isinstance(model, nn.Sequential) and isinstance(body, nn.Sequential):
        model = body                      # a zoo model (membra.models): shell around `body`
    if in_shape is None:
        raise ValueError("to_nir needs in_shape=(C, H, W) or (N,): the per-sample input shape")
    in_shape = tuple(int(d) for d in in_shape)
    if not (isinstance(dt, (int, float)) and math.isfinite(dt) and dt > 0):
        raise ValueError(f"dt must be a positive number, got {dt!r}")
    layers = _flat_layers(model)
    was_training = model.training
    model.eval()
    try:
        shapes, x = [], torch.zeros(1, 1, *in_shape)
        for _, m in layers:
            shapes.append(tuple(x.shape[2:]))
            x = m(x)
        out_shape = tuple(x.shape[2:])
    finally:
        model.train(was_training)

    nodes: dict = {"input": nir.Input(input_type={"input": np.array(in_shape)})}
    pending = None   # a weight layer waiting for a BatchNorm to fold
    order = ["input"]

    def flush():
        nonlocal pending
        if pending is None:
            return
        name, kind, w, b, extra = pending
        if kind == "linear":
            node = nir.Affine(weight=_np(w), bias=_np(b)) if b is not None else \
                nir.Linear(weight=_np(w))
        else:
            node = nir.Conv2d(input_shape=extra["input_shape"], weight=_np(w),
                              stride=extra["stride"], padding=extra["padding"],
                              dilation=extra["dilation"], groups=extra["groups"],
                              bias=_np(b if b is not None else torch.zeros(w.shape[0])))
        nodes[name] = node
        order.append(name)
        pending = None

    for (name, m), shape in zip(layers, shapes, strict=True):
        inner = _inner(m)
        if isinstance(inner, (nn.Dropout, nn.Identity)):
            continue
        if isinstance(inner, (nn.BatchNorm1d, nn.BatchNorm2d)):
            if pending is None:
                raise ValueError(f"to_nir: BatchNorm {name!r} must follow a Linear/Conv2d "
                                 "layer (it is folded into it)")
            pname, kind, w, b, extra = pending
            w, b = _fold_bn(w, b, inner)
            pending = (pname, kind, w, b, extra)
            continue
        flush()
        if isinstance(inner, nn.Linear):
            if isinstance(m, TimeDistributed) and len(shape) != 1:
                raise ValueError(f"to_nir: Linear {name!r} on a non-flat input {shape}")
            pending = (name, "linear", inner.weight, inner.bias, None)
        elif isinstance(inner, nn.Conv2d):
            if not isinstance(m, TimeDistributed):
                raise ValueError(f"to_nir: Conv2d {name!r} must be wrapped in TimeDistributed")
            if isinstance(inner.padding, str) or inner.padding_mode != "zeros":
                raise ValueError(f"to_nir: Conv2d {name!r} needs numeric zero padding")
            pending = (name, "conv", inner.weight, inner.bias, dict(
                input_shape=np.array(shape[1:]), stride=np.array(inner.stride),
                padding=np.array(inner.padding), dilation=np.array(inner.dilation),
                groups=inner.groups))
        elif isinstance(inner, nn.AvgPool2d):
            k = np.array(nn.modules.utils._pair(inner.kernel_size))
            s = np.array(nn.modules.utils._pair(inner.stride or inner.kernel_size))
            p = np.array(nn.modules.utils._pair(inner.padding))
            if inner.ceil_mode or (p.any() and not inner.count_include_pad) or \
                    inner.divisor_override is not None:
                raise ValueError(f"to_nir: AvgPool2d {name!r} options not expressible in NIR")
            nodes[name] = nir.AvgPool2d(kernel_size=k, stride=s, padding=p)
            order.append(name)
        elif isinstance(inner, nn.Flatten):
            start = inner.start_dim - (2 if inner is m else 1)
            end = inner.end_dim if inner.end_dim < 0 else inner.end_dim - (2 if inner is m else 1)
            if start < 0:
                raise ValueError(f"to_nir: Flatten {name!r} would flatten time or batch")
            nodes[name] = nir.Flatten(input_type={"input": np.array(shape)}, start_dim=start,
                                      end_dim=end)
            order.append(name)
        elif isinstance(m, (LIF, IF)):
            params = nir_neuron_params(m, shape, dt)
            cls = nir.LIF if isinstance(m, LIF) else nir.IF
            nodes[name] = cls(**params, metadata=_neuron_meta(m, shape))
            order.append(name)
        else:
            raise ValueError(f"to_nir: layer {name!r} ({type(inner).__name__}) is not supported;"
                             " supported: Linear, Conv2d, AvgPool2d, Flatten, BatchNorm1d/2d, "
                             "Dropout, LIF, IF")
    flush()
    nodes["output"] = nir.Output(output_type={"output": np.array(out_shape)})
    order.append("output")
    edges = list(zip(order[:-1], order[1:], strict=True))
    return nir.NIRGraph(nodes=nodes, edges=edges, type_check=False,
                        metadata={PREFIX + "dt": float(dt), PREFIX + "format": "membra-nir-1"})


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


def _neuron_from_nir(name, node, dt, nir):
    shape = tuple(int(d) for d in np.asarray(node.v_threshold).shape)
    v_th = _uniform(name, "v_threshold", node.v_threshold)
    v_reset = _uniform(name, "v_reset", node.v_reset)
    reset = _meta(node, "reset", "hard")
    kw = dict(v_th=v_th, v_reset=v_reset, reset=reset)
    for key in ("surrogate", "alpha", "detach_reset"):
        val = _meta(node, key)
        if val is not None:
            kw[key] = bool(val) if key == "detach_reset" else val
    v0 = _meta(node, "init_potential")
    if v0 is not None:
        kw["init_potential"] = torch.as_tensor(np.asarray(v0, dtype=np.float32)).unsqueeze(0)
        kw["learnable_potential"] = bool(_meta(node, "init_potential_learnable", False))
    if isinstance(node, nir.LIF):
        r = _uniform(name, "r", node.r)
        if not math.isclose(r, 1.0, rel_tol=1e-6):
            raise ValueError(f"from_nir: LIF {name!r} has r={r}; membra's LIF needs r = 1")
        if _uniform(name, "v_leak", node.v_leak) != v_reset:
            raise ValueError(f"from_nir: LIF {name!r} leaks to v_leak != v_reset; membra's LIF "
                             "leaks towards v_reset")
        return LIF(shape, tau=_uniform(name, "tau", node.tau) / dt, **kw)
    r = _uniform(name, "r", node.r)
    if not math.isclose(r * dt, 1.0, rel_tol=1e-6):
        raise ValueError(f"from_nir: IF {name!r} has r={r}; with dt={dt} membra's IF needs "
                         f"r = 1/dt = {1 / dt}")
    return IF(shape, **kw)


def from_nir(graph) -> nn.Sequential:
    """Build a membra ``nn.Sequential`` (``[T, B, ...] -> [T, B, ...]``) from a chain-shaped
    ``nir.NIRGraph``; ``membra.*`` metadata (IMP, soft reset ...) is honoured when present."""
    nir = _nir()
    if not isinstance(graph, nir.NIRGraph):
        raise TypeError(f"from_nir expects a nir.NIRGraph, got {type(graph).__name__}")
    dt = float(_meta(graph, "dt", 1.0))
    nxt = {}
    for a, b in graph.edges:
        if a in nxt:
            raise ValueError(f"from_nir: node {a!r} has several successors; only chains "
                             "(sequential models) are supported")
        nxt[a] = b
    starts = [n for n, node in graph.nodes.items() if isinstance(node, nir.Input)]
    if len(starts) != 1:
        raise ValueError(f"from_nir: expected one Input node, found {len(starts)}")
    layers: list[tuple[str, nn.Module]] = []
    name = nxt.get(starts[0])
    while name is not None and not isinstance(graph.nodes[name], nir.Output):
        node = graph.nodes[name]
        layers.append((name, _module_from_nir(name, node, dt, nir)))
        name = nxt.get(name)
    if name is None:
        raise ValueError("from_nir: the chain from the Input node never reaches an Output node")
    model = nn.Sequential()
    for n, m in layers:
        model.add_module(n.replace(".", "_"), m)
    return model


def _module_from_nir(name, node, dt, nir) -> nn.Module:
    t = lambda a: torch.as_tensor(np.asarray(a, dtype=np.float32))  # noqa: E731
    if isinstance(node, (nir.Affine, nir.Linear)):
        w = t(node.weight)
        lin = nn.Linear(w.shape[1], w.shape[0], bias=isinstance(node, nir.Affine))
        with torch.no_grad():
            lin.weight.copy_(w)
            if isinstance(node, nir.Affine):
                lin.bias.copy_(t(node.bias))
        return lin
    if isinstance(node, nir.Conv2d):
        w = t(node.weight)
        pad = node.padding
        if isinstance(pad, (str, bytes)):
            raise ValueError(f"from_nir: Conv2d {name!r} uses string padding {pad!r}")
        groups = int(np.asarray(node.groups))
        conv = nn.Conv2d(w.shape[1] * groups, w.shape[0], tuple(w.shape[2:]),
                         stride=tuple(int(v) for v in np.atleast_1d(node.stride)),
                         padding=tuple(int(v) for v in np.atleast_1d(pad)),
                         dilation=tuple(int(v) for v in np.atleast_1d(node.dilation)),
                         groups=groups)
        with torch.no_grad():
            conv.weight.copy_(w)
            conv.bias.copy_(t(node.bias))
        return TimeDistributed(conv)
    if isinstance(node, nir.AvgPool2d):
        pair = lambda a: tuple(int(v) for v in np.broadcast_to(np.asarray(a), (2,)))  # noqa: E731
        return TimeDistributed(nn.AvgPool2d(pair(node.kernel_size), pair(node.stride),
                                            pair(node.padding)))
    if isinstance(node, nir.Flatten):
        end = int(node.end_dim)
        return nn.Flatten(int(node.start_dim) + 2, end if end < 0 else end + 2)
    if isinstance(node, (nir.LIF, nir.IF)):
        return _neuron_from_nir(name, node, dt, nir)
    raise ValueError(f"from_nir: node {name!r} of type {type(node).__name__} is not supported; "
                     "supported: Affine, Linear, Conv2d, AvgPool2d, Flatten, LIF, IF")


def write_nir(graph, path: str | Path) -> Path:
    """Write a graph to a ``.nir`` (HDF5) file."""
    nir = _nir()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    nir.write(str(path), graph)
    return path


def read_nir(path: str | Path):
    """Read a ``.nir`` file written by :func:`write_nir` (or another NIR tool)."""
    nir = _nir()
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"NIR file not found: {path}")
    return nir.read(str(path), type_check=False)
