r"""NIR (Neuromorphic Intermediate Representation) both ways, for graphs (docs/nir.md).

:func:`to_nir` traces the network with ``torch.fx`` (nirtorch 2.6's tracer does not serve:
no shapes for Conv2d/Flatten nodes, no ``torch.cat``, a KeyError for unmapped modules) and
writes one node per layer: ``Affine``/``Linear``/``Conv2d`` (BatchNorm folded), ``AvgPool2d``
(also for whole-window ``AdaptiveAvgPool2d``), ``Flatten``, ``LIF``/``IF``/``CubaLIF``/``Delay``.
A residual ``+`` becomes two edges into the next node (NIR sums a node's inputs); ``torch.cat``
becomes one 0/1 selection ``Linear`` (vectors) or 1x1 ``Conv2d`` (channels) per part, summed
by the next node; a ``MaxPool2d`` on spikes becomes ``SumPool2d`` + an ``IF`` with threshold
1/2 that resets to 0 (exact: it fires iff the window holds a spike; NIR has no max-pool node).
:func:`from_nir` builds an ``nn.Sequential`` from a chain and a
:class:`~membra.export.modules.GraphNet` from any other acyclic graph.

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
  ``membra.alpha``, ``membra.detach_reset``). A custom surrogate (a callable) cannot be
  written: :func:`to_nir` refuses it with a ``ValueError`` naming the layer and the surrogate
  (swap in a built-in first; the spikes do not depend on it).

:func:`from_nir` reads these keys when present, so a membra -> NIR -> membra round trip gives
the same spikes; on graphs from other tools it uses NIR's semantics (hard reset, zero start).
"""

from __future__ import annotations

import math
import operator
from pathlib import Path

import numpy as np
import torch
import torch.fx as fx
from torch import nn
from torch.fx.passes.shape_prop import ShapeProp

from .. import nn as mnn
from ..models.sew_resnet import StaticStem
from ..nn import IF, LIF, SpikingNeuron, TimeDistributed
from .modules import INPUT, GraphNet, InputMap

__all__ = ["to_nir", "from_nir", "write_nir", "read_nir", "nir_neuron_params"]

PREFIX = "membra."
_F32 = np.float32


def _nir():
    try:
        import nir
    except ImportError as err:  # pragma: no cover - depends on the environment
        raise ImportError("NIR export needs the nir package: pip install 'membra[export]'") \
            from err
    return nir


def _np(t) -> np.ndarray:
    if isinstance(t, torch.Tensor):
        t = t.detach().cpu().double().numpy()
    return np.asarray(t, dtype=np.float64).astype(_F32)


def _peer(name: str, node_name: str = "", node_type: str = ""):
    """``membra.nn.<name>`` (a neuron model of the neuron-models issue), or a ValueError."""
    cls = getattr(mnn, name, None)
    if cls is None:
        where = f"node {node_name!r} ({node_type}) " if node_name else ""
        raise ValueError(f"from_nir: {where}needs membra.nn.{name}, which this membra version "
                         "does not have")
    return cls


def _is(m, name: str) -> bool:
    cls = getattr(mnn, name, None)
    return cls is not None and isinstance(m, cls)


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


# ---- neurons: membra <-> NIR parameters -----------------------------------------------------
def nir_neuron_params(neuron: nn.Module, shape: tuple[int, ...], dt: float = 1.0) -> dict:
    """NIR parameters equal to a membra neuron under forward Euler with step ``dt``
    (module docstring): LIF ``tau = tau_m dt, r = 1, v_leak = v_reset``; IF ``r = 1/dt``;
    CubaLIF ``tau_syn = tau_s dt, tau_mem = tau_m dt, r = 1, v_leak = v_reset, w_in = tau_s``
    (so NIR's current equals membra's); Delay ``delay = d dt``."""
    full = lambda v: np.full(shape, float(v), dtype=_F32)  # noqa: E731
    if _is(neuron, "Delay"):
        d = neuron.delays.detach().double().expand(shape)
        return {"delay": _np(d * dt)}
    p = {"v_threshold": full(neuron.v_th), "v_reset": full(neuron.v_reset)}
    if _is(neuron, "CubaLIF"):
        tau_s = float(neuron.tau_syn)
        p.update(tau_syn=full(tau_s * dt), tau_mem=full(float(neuron.tau) * dt), r=full(1.0),
                 v_leak=full(neuron.v_reset), w_in=full(tau_s))
    elif _subclass_only(neuron, LIF):
        p.update(tau=full(float(neuron.tau) * dt), r=full(1.0), v_leak=full(neuron.v_reset))
    elif isinstance(neuron, IF):
        p.update(r=full(1.0 / dt))
    else:
        raise ValueError(f"to_nir: {type(neuron).__name__} has no NIR node (NIR has LIF, IF, "
                         "CubaLIF and Delay)")
    return p


def _subclass_only(neuron, cls) -> bool:
    """A user subclass of LIF that adds no known extra dynamics (ALIF/RLIF are refused)."""
    return isinstance(neuron, cls) and not any(_is(neuron, n) for n in ("RLIF", "ALIF"))


def _neuron_meta(neuron: nn.Module, shape) -> dict:
    if _is(neuron, "Delay"):
        return {}
    v0 = neuron.init_potential.detach()
    meta = {PREFIX + "reset": neuron.reset, PREFIX + "fire": ">=",
            PREFIX + "surrogate": neuron.surrogate, PREFIX + "alpha": float(neuron.alpha),
            PREFIX + "detach_reset": bool(neuron.detach_reset),
            PREFIX + "init_potential_learnable": bool(neuron.learnable_potential)}
    if neuron.learnable_potential or bool((v0 != 0).any()):
        meta[PREFIX + "init_potential"] = _np(v0.expand(1, *shape)[0])
    i0 = getattr(neuron, "init_current", None)
    if isinstance(i0, torch.Tensor):
        learn = isinstance(i0, nn.Parameter)
        meta[PREFIX + "init_current_learnable"] = learn
        if learn or bool((i0 != 0).any()):
            meta[PREFIX + "init_current"] = _np(i0.detach().expand(1, *shape)[0])
    return meta


def _check_surrogate(neuron: nn.Module, name: str) -> None:
    """NIR carries no surrogate; membra keeps a built-in's name and alpha as metadata, and a
    custom one (a callable) cannot be written: a ``ValueError`` naming the layer and it."""
    sg = getattr(neuron, "surrogate_fn", None)
    if sg is not None and not sg.builtin:
        raise ValueError(
            f"to_nir: layer {name!r} ({type(neuron).__name__}) has the custom surrogate "
            f"{sg.name!r}, which a NIR file cannot carry (membra writes only the built-in "
            f"surrogates' names as metadata). The spikes do not depend on the surrogate: to "
            f"export, give the layer a built-in one first, e.g. layer.surrogate_fn = "
            f"membra.functional.as_surrogate('sigmoid')")


def _neuron_node(neuron: nn.Module, shape, dt, nir, name: str):
    _check_surrogate(neuron, name)
    params = nir_neuron_params(neuron, shape, dt)
    if _is(neuron, "Delay"):
        return nir.Delay(**params)
    cls = nir.CubaLIF if "tau_syn" in params else nir.LIF if "tau" in params else nir.IF
    return cls(**params, metadata=_neuron_meta(neuron, shape))


# ---- export: torch.fx graph -> NIR graph ----------------------------------------------------
class _Weight:
    """A Linear/Conv2d waiting for a BatchNorm to fold (float64 weights)."""

    def __init__(self, module, shape):
        self.conv = isinstance(module, nn.Conv2d)
        self.w = module.weight.detach().double()
        self.b = None if module.bias is None else module.bias.detach().double()
        self.module, self.shape = module, shape

    def node(self, nir):
        if not self.conv:
            return nir.Affine(weight=_np(self.w), bias=_np(self.b)) if self.b is not None \
                else nir.Linear(weight=_np(self.w))
        m = self.module
        b = self.b if self.b is not None else torch.zeros(self.w.shape[0])
        return nir.Conv2d(input_shape=np.array(self.shape[1:]), weight=_np(self.w),
                          stride=np.array(m.stride), padding=np.array(m.padding),
                          dilation=np.array(m.dilation), groups=m.groups, bias=_np(b))


class _Item:
    def __init__(self, node, inputs, spike):
        self.node, self.inputs, self.spike = node, inputs, spike


def _pair(v) -> tuple[int, int]:
    return nn.modules.utils._pair(v)


class _Export:
    """Builds a NIR graph from a traced module: one item per NIR node, residual adds and
    concatenations become several edges into one node (NIR sums a node's inputs)."""

    def __init__(self, nir, dt: float, lead: int, hooks=None):
        self.nir, self.dt, self.lead = nir, dt, lead
        self.items: dict[str, _Item] = {}
        self.hooks = list(hooks or [])    # [(predicate(module), lower(self, name, m, ...))]

    # -- items -------------------------------------------------------------------------
    def put(self, name, node, inputs, spike=None) -> list[str]:
        name = str(name).replace(".", "_") or "node"
        base, k = name, 2
        while name in self.items:
            name, k = f"{base}_{k}", k + 1
        self.items[name] = _Item(node, list(inputs), spike)
        return [name]

    def spike_of(self, srcs) -> float | None:
        vals = {self.items[s].spike for s in srcs}
        return vals.pop() if len(vals) == 1 and len(srcs) == 1 else None

    # -- modules -----------------------------------------------------------------------
    def module(self, name, m, srcs, shape, lead, single_user=True) -> list[str]:
        """Lower module ``m`` (per-sample input ``shape``; ``lead`` time/batch dims before
        it) reading items ``srcs``; returns the items its output is."""
        nir = self.nir
        for applies, hook in self.hooks:
            if applies(m):
                return hook(self, name, m, srcs, shape)
        if isinstance(m, (TimeDistributed, StaticStem)):
            return self.module(name, m.module, srcs, shape, 1, single_user)
        if isinstance(m, nn.Sequential):
            children = list(m.named_children())
            for i, (cname, c) in enumerate(children):
                srcs = self.module(name if len(children) == 1 else f"{name}_{cname}", c, srcs,
                                   shape, 1, True)
                if i + 1 < len(children):
                    with torch.no_grad():
                        shape = tuple(c.eval()(torch.zeros(1, *shape)).shape[1:])
            return srcs
        if isinstance(m, (nn.Dropout, nn.Identity)):
            return srcs
        if isinstance(m, nn.Linear):
            if len(shape) != 1:
                raise ValueError(f"to_nir: Linear {name!r} on a non-flat input {shape}")
            return self.put(name, _Weight(m, shape), srcs)
        if isinstance(m, nn.Conv2d):
            if isinstance(m.padding, str) or m.padding_mode != "zeros":
                raise ValueError(f"to_nir: Conv2d {name!r} needs numeric zero padding")
            return self.put(name, _Weight(m, shape), srcs)
        if isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d)):
            src = self.items[srcs[0]] if len(srcs) == 1 else None
            if src is None or not isinstance(src.node, _Weight) or not single_user or \
                    any(srcs[0] in it.inputs for it in self.items.values()):
                raise ValueError(f"to_nir: BatchNorm {name!r} must follow a Linear/Conv2d "
                                 "layer whose output feeds nothing else (it is folded into it)")
            src.node.w, src.node.b = _fold_bn(src.node.w, src.node.b, m)
            return srcs
        if isinstance(m, nn.AvgPool2d):
            k, s, p = _pair(m.kernel_size), _pair(m.stride or m.kernel_size), _pair(m.padding)
            if m.ceil_mode or (any(p) and not m.count_include_pad) or \
                    m.divisor_override is not None:
                raise ValueError(f"to_nir: AvgPool2d {name!r} options not expressible in NIR")
            return self.put(name, nir.AvgPool2d(kernel_size=np.array(k), stride=np.array(s),
                                                padding=np.array(p)), srcs)
        if isinstance(m, nn.AdaptiveAvgPool2d):
            out = [o if o is not None else i for o, i in zip(_pair(m.output_size), shape[1:],
                                                             strict=True)]
            if any(i % o for i, o in zip(shape[1:], out, strict=True)):
                raise ValueError(f"to_nir: AdaptiveAvgPool2d {name!r} maps {shape[1:]} to "
                                 f"{tuple(out)}, not a whole-window average (NIR AvgPool2d)")
            k = np.array([i // o for i, o in zip(shape[1:], out, strict=True)])
            return self.put(name, nir.AvgPool2d(kernel_size=k, stride=k,
                                                padding=np.array([0, 0])), srcs)
        if isinstance(m, nn.MaxPool2d):
            return self.maxpool(name, m, srcs, shape)
        if isinstance(m, nn.Flatten):
            return self.flatten(name, m.start_dim, m.end_dim, srcs, shape, lead)
        if isinstance(m, SpikingNeuron) or _is(m, "Delay"):
            node = _neuron_node(m, shape, self.dt, nir, name)
            return self.put(name, node, srcs, spike=None if _is(m, "Delay") else 1.0)
        raise ValueError(f"to_nir: layer {name!r} ({type(m).__name__}) is not supported; "
                         "supported: Linear, Conv2d, BatchNorm1d/2d (folded), AvgPool2d, "
                         "AdaptiveAvgPool2d (whole windows), MaxPool2d (on spikes), Flatten, "
                         "Dropout, Identity, LIF, IF, CubaLIF, Delay, residual +, torch.cat")

    def maxpool(self, name, m, srcs, shape) -> list[str]:
        """Max-pool of spikes ``{0, c}``: ``SumPool2d`` then an IF neuron with threshold
        ``c/2`` that resets to 0 (it fires iff a window holds a spike, exactly), then
        ``Scale(c)`` when ``c != 1``. NIR has no max-pool node."""
        nir, c = self.nir, self.spike_of(srcs)
        k, s, p = _pair(m.kernel_size), _pair(m.stride or m.kernel_size), _pair(m.padding)
        if c is None:
            raise ValueError(f"to_nir: MaxPool2d {name!r} must act directly on spikes (the "
                             "output of a spiking neuron): NIR has no max-pool node, and only "
                             "a max over spikes is exact as SumPool2d + IF")
        if m.ceil_mode or _pair(m.dilation) != (1, 1) or m.return_indices:
            raise ValueError(f"to_nir: MaxPool2d {name!r} needs ceil_mode=False, dilation=1")
        with torch.no_grad():
            out = tuple(m(torch.zeros(1, *shape)).shape[1:])
        full = lambda v: np.full(out, v, dtype=_F32)  # noqa: E731
        meta = {PREFIX + "maxpool": True}
        pool = self.put(f"{name}_sum", nir.SumPool2d(
            kernel_size=np.array(k), stride=np.array(s), padding=np.array(p),
            metadata=dict(meta)), srcs)
        fire = self.put(f"{name}_fire", nir.IF(
            r=full(1.0 / self.dt), v_threshold=full(c / 2), v_reset=full(0.0),
            metadata={**meta, PREFIX + "reset": "hard", PREFIX + "fire": ">="}), pool, spike=1.0)
        if c == 1.0:
            return fire
        return self.put(f"{name}_scale", nir.Scale(scale=full(c)), fire, spike=c)

    def flatten(self, name, start, end, srcs, shape, lead) -> list[str]:
        start = start if start >= 0 else start + lead + len(shape)
        if start < lead:
            raise ValueError(f"to_nir: Flatten {name!r} would flatten time or batch")
        end = end if end < 0 else end - lead
        return self.put(name, self.nir.Flatten(input_type={"input": np.array(shape)},
                                               start_dim=start - lead, end_dim=end), srcs)

    # -- fx graph ----------------------------------------------------------------------
    def walk(self, gm: fx.GraphModule, example: torch.Tensor):
        nir, lead = self.nir, self.lead
        ShapeProp(gm).propagate(example)
        per = {n: tuple(n.meta["tensor_meta"].shape[lead:]) for n in gm.graph.nodes
               if isinstance(n.meta.get("tensor_meta"), object) and
               hasattr(n.meta.get("tensor_meta"), "shape")}
        out: dict[fx.Node, list[str]] = {}
        for node in gm.graph.nodes:
            args = [a for a in node.args if isinstance(a, fx.Node)]
            if node.op == "placeholder":
                out[node] = self.put("input", nir.Input(
                    input_type={"input": np.array(example.shape[lead:])}), [])
            elif node.op == "output":
                self.put("output", nir.Output(output_type={"output": np.array(per[args[0]])}),
                         out[args[0]])
            elif node.op == "call_module":
                m = gm.get_submodule(node.target)
                out[node] = self.module(str(node.target), m, out[args[0]], per[args[0]], lead,
                                        len(args[0].users) == 1)
            elif node.target in (operator.add, torch.add, "add") and len(args) == 2 and \
                    len(node.args) == 2 and not node.kwargs:
                srcs = out[args[0]] + out[args[1]]
                if len(set(srcs)) != len(srcs):
                    raise ValueError(f"to_nir: {node.name!r} adds a value to itself; NIR "
                                     "sums distinct edges only")
                out[node] = srcs
            elif node.target is torch.cat:
                out[node] = self.concat(node, out, per)
            elif node.target in (torch.flatten, "flatten") and len(args) == 1:
                rest = list(node.args[1:]) + [node.kwargs.get(k) for k in ("start_dim",
                                                                           "end_dim")
                                              if k in node.kwargs]
                start, end = (rest + [0, -1][len(rest):])[:2]
                out[node] = self.flatten(node.name, start, end, out[args[0]], per[args[0]],
                                         lead)
            else:
                what = getattr(node.target, "__name__", str(node.target))
                hint = " (a spike product such as SEW connect='and'/'iand')" \
                    if what in ("mul", "rsub", "sub") else ""
                raise ValueError(f"to_nir: {node.op} {what!r} at {node.name!r}{hint} has no "
                                 "NIR node; supported: modules, residual +, torch.cat, flatten")
        return self.finish()

    def concat(self, node, out, per) -> list[str]:
        """``torch.cat`` as selection projections (``Linear`` for vectors, 1x1 ``Conv2d`` for
        channels) summed by the next node: exact, as every output is one input times 1."""
        nir = self.nir
        parts = node.args[0]
        dim = node.args[1] if len(node.args) > 1 else node.kwargs.get("dim", 0)
        shape = per[node]
        d = dim - self.lead if dim >= 0 else dim + len(shape)
        if d != 0 or len(shape) not in (1, 3):
            raise ValueError(f"to_nir: torch.cat at {node.name!r} joins per-sample dim {d} of "
                             f"{shape}; NIR can carry a concat of vectors or of channels only")
        total, offset, srcs = shape[0], 0, []
        for j, p in enumerate(parts):
            n = per[p][0]
            w = np.zeros((total, n), dtype=_F32)
            w[offset + np.arange(n), np.arange(n)] = 1.0
            meta = {PREFIX + "concat": j}
            if len(shape) == 1:
                item = nir.Linear(weight=w, metadata=meta)
            else:
                item = nir.Conv2d(input_shape=np.array(per[p][1:]), weight=w[:, :, None, None],
                                  stride=np.array([1, 1]), padding=np.array([0, 0]),
                                  dilation=np.array([1, 1]), groups=1,
                                  bias=np.zeros(total, _F32), metadata=meta)
            srcs += self.put(f"{node.name}_part{j}", item, out[p])
            offset += n
        return srcs

    def finish(self):
        nir = self.nir
        nodes, edges = {}, []
        for name, it in self.items.items():
            nodes[name] = it.node.node(nir) if isinstance(it.node, _Weight) else it.node
            edges += [(s, name) for s in it.inputs]
        return nir.NIRGraph(nodes=nodes, edges=edges, type_check=False,
                            metadata={PREFIX + "dt": float(self.dt),
                                      PREFIX + "format": "membra-nir-2"})


class _Tracer(fx.Tracer):
    def is_leaf_module(self, m: nn.Module, qualname: str) -> bool:
        if isinstance(m, (SpikingNeuron, TimeDistributed, StaticStem)) or _is(m, "Delay"):
            return True
        return super().is_leaf_module(m, qualname)


def _check_dt(dt) -> float:
    if isinstance(dt, bool) or not isinstance(dt, (int, float)) or not math.isfinite(dt) \
            or dt <= 0:
        raise ValueError(f"dt must be a positive number, got {dt!r}")
    return float(dt)


@torch.no_grad()
def to_nir(model: nn.Module, in_shape: tuple[int, ...] | None = None, *, dt: float = 1.0):
    """Export a membra spiking network (any graph torch.fx can trace) to a ``nir.NIRGraph``.

    Args:
        model: a module mapping ``[T, B, *in_shape]`` to ``[T, B, ...]`` (an
            ``nn.Sequential``, a zoo model, a custom module with residual ``+`` and
            ``torch.cat``), or a converted SNN from ``membra.convert.to_snn(...,
            mode="naive")`` (which maps ``[B, *in_shape]``; the graph runs it over time).
        in_shape: per-sample input shape; default ``model.in_shape`` if the model has it.
        dt: time step of the discretisation (``tau_NIR = tau dt``, IF ``r = 1/dt``).

    Returns:
        ``nir.NIRGraph``: nodes ``input``, one per layer (named after the module, dots as
        ``_``), ``output``; neuron nodes carry the ``membra.*`` metadata of the module doc.
    """
    nir = _nir()
    dt = _check_dt(dt)
    in_shape = in_shape if in_shape is not None else getattr(model, "in_shape", None)
    if type(model).__name__ == "ConvertedSNN":
        from .converted import converted_to_nir

        return converted_to_nir(model, in_shape, dt, _Export(nir, dt, lead=1))
    if not isinstance(model, nn.Module):
        raise TypeError(f"to_nir expects an nn.Module, got {type(model).__name__}")
    if in_shape is None:
        raise ValueError("to_nir needs in_shape=(C, H, W) or (N,): the per-sample input shape")
    in_shape = tuple(int(d) for d in in_shape)
    body = getattr(model, "body", None)
    if hasattr(model, "in_shape") and isinstance(body, nn.Module):
        model = body                      # a zoo model (membra.models): shell around `body`
    if isinstance(model, SpikingNeuron):
        model = nn.Sequential(model)
    was_training = model.training
    model.eval()
    try:
        try:
            gm = fx.GraphModule(model, _Tracer().trace(model))
        except Exception as err:  # torch.fx raises many types for data-dependent code
            raise ValueError(f"to_nir: torch.fx cannot trace {type(model).__name__} ({err}); "
                             "keep data-dependent Python out of forward") from None
        return _Export(nir, dt, lead=2).walk(gm, torch.zeros(1, 1, *in_shape))
    finally:
        model.train(was_training)


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

