"""NIR export: a membra network traced with ``torch.fx`` to a ``nir.NIRGraph`` (:func:`to_nir`),
and the graph to a ``.nir`` file (:func:`write_nir`); :mod:`.nir` states what is written.
"""

from __future__ import annotations

import operator
from pathlib import Path

import numpy as np
import torch
import torch.fx as fx
from torch import nn
from torch.fx.passes.shape_prop import ShapeProp

from ..models.sew_resnet import StaticStem
from ..nn import SpikingNeuron, TimeDistributed
from .nir_nodes import _F32, PREFIX, _check_dt, _is, _neuron_node, _nir, _np


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


def write_nir(graph, path: str | Path) -> Path:
    """Write a graph to a ``.nir`` (HDF5) file."""
    nir = _nir()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    nir.write(str(path), graph)
    return path


