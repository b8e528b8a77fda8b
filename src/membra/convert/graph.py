"""Graph capture of a convertible ANN (torch.fx) and BN folding.

:func:`capture` traces a model into a flat list of :class:`Op` (topological order) whose kinds
are the supported-layer table of the conversion spec: ``input``, ``weight`` (Linear/Conv),
``qcfs``, ``linear`` (AvgPool, AdaptiveAvgPool, Flatten/view/reshape keeping the batch,
Dropout, Identity, nearest Upsample/interpolate: applied per time step), ``maxpool``, ``add``
(residual ``+``), ``cat`` (``torch.cat`` off the batch dimension) and ``output``. Functional
pools, dropout and interpolation become the equivalent modules. Anything else raises
:class:`UnsupportedLayerError` naming the node, its source line and a hint; nothing is dropped.

**Call sites.** A module object called at several places of ``forward`` (torchvision's one
``self.relu`` per block) is one layer per call: :func:`unshare` gives each call its own copy,
named ``path@1``, ``path@2``, ... in call order (:func:`call_site_names`); a module called once
keeps its path. Spike counts, levels and report rows are keyed by these names.

BN folding and the value checks live in :mod:`membra.convert.fold` (``fold_bn`` and
``check_values`` are still importable from here).
"""

from __future__ import annotations

import copy
import inspect
import operator
import re
from dataclasses import dataclass, field

import torch
import torch.fx as fx
from torch import nn
from torch.nn import functional as F

from ..nn import SpikingNeuron, TimeDistributed
from .qcfs import QCFS, Residual

__all__ = ["UnsupportedLayerError", "InvalidValueError", "Op", "capture", "unshare",
           "call_site_names", "trace", "RELU_FUNCTIONS", "WEIGHTS", "LINEAR_OPS", "AVGPOOLS"]

WEIGHTS = (nn.Linear, nn.Conv1d, nn.Conv2d)
AVGPOOLS = (nn.AvgPool1d, nn.AvgPool2d, nn.AdaptiveAvgPool1d, nn.AdaptiveAvgPool2d)
LINEAR_OPS = AVGPOOLS + (nn.Flatten, nn.Dropout, nn.Dropout1d, nn.Dropout2d, nn.Identity,
                         nn.Upsample)
MAXPOOLS = (nn.MaxPool1d, nn.MaxPool2d)
NORMS = (nn.BatchNorm1d, nn.BatchNorm2d)
_LEAVES = WEIGHTS + LINEAR_OPS + MAXPOOLS + NORMS + (QCFS, nn.ReLU)
RELU_FUNCTIONS = (F.relu, torch.relu, torch.relu_, F.relu_)
_NEAREST = ("nearest", "nearest-exact")
# functions that are a supported layer: the module class built from the same arguments
_FUNCTION_MODULES = {F.avg_pool1d: nn.AvgPool1d, F.avg_pool2d: nn.AvgPool2d,
                     F.adaptive_avg_pool1d: nn.AdaptiveAvgPool1d,
                     F.adaptive_avg_pool2d: nn.AdaptiveAvgPool2d,
                     F.max_pool1d: nn.MaxPool1d, F.max_pool2d: nn.MaxPool2d,
                     F.interpolate: nn.Upsample, F.dropout: nn.Dropout}
_POST_TRAINING = ("or calibrate it after training, without retraining: "
                  "membra.convert.quantize_relu(model, data, L=...)")

_HINTS = {
    nn.ReLU: "replace it with membra.convert.replace_relu(model, L=...) and train with QCFS, "
             + _POST_TRAINING,
    nn.MaxPool2d: "use AvgPool2d before training (naive mode), or convert with mode='pascal' "
                  "with the MaxPool directly after a QCFS",
    nn.GELU: "only QCFS activations convert to spiking neurons",
    nn.LayerNorm: "layer norm does not commute with spike accumulation; use BatchNorm",
    nn.Softmax: "keep the softmax outside the model (the logits are the SNN's output)",
}
_FUNCTIONAL_RELU = ("a ReLU has no spiking equivalent until it is a QCFS: for QCFS training "
                    "define the activation as a module (self.act = nn.ReLU() in __init__, "
                    "x = self.act(x) in forward), then membra.convert.replace_relu(model, "
                    "L=...); or calibrate the trained net as it is with "
                    "membra.convert.quantize_relu(model, data, L=...), which replaces every "
                    "ReLU call (module or F.relu) by a QCFS")


class UnsupportedLayerError(ValueError):
    """A layer that cannot be converted exactly: the message names its path, type and a
    hint."""

    def __init__(self, path: str, kind: str, hint: str, where: str = ""):
        self.path, self.kind, self.hint, self.where = path, kind, hint, where
        at = f" at {where}" if where else ""
        super().__init__(f"cannot convert {path!r} ({kind}){at}: {hint}")


class InvalidValueError(UnsupportedLayerError):
    """A layer whose values have no spiking equivalent (NaN/inf, a negative BN variance,
    ``lam <= 0``): the message names its path, type and the offending values."""


@dataclass
class Op:
    """One captured operation: ``kind``, its call-site name (``path``: the module's path,
    ``path@k`` for the k-th call of a shared module, or the fx node name of a function), the
    indices of its inputs in the op list, the module it runs, ``fn`` (the dimension of a
    ``cat``) and, once converted, the spiking ``neuron`` of a ``qcfs`` op."""

    kind: str
    path: str
    inputs: list[int] = field(default_factory=list)
    module: nn.Module | None = None
    fn: object = None
    neuron: nn.Module | None = None


class _Tracer(fx.Tracer):
    record_stack_traces = True

    def is_leaf_module(self, m: nn.Module, qualname: str) -> bool:
        if isinstance(m, (nn.Sequential, Residual)):
            return False
        return isinstance(m, _LEAVES) or not any(True for _ in m.children())


def _refuse_spiking(model: nn.Module) -> None:
    """Already-spiking models (membra.models zoo, membra.nn neurons) are not ANNs."""
    for path, m in model.named_modules():
        if isinstance(m, (SpikingNeuron, TimeDistributed)):
            raise UnsupportedLayerError(
                path or type(model).__name__, type(m).__name__,
                "this is already a spiking (time-first) network; conversion takes an ANN "
                "whose activations are QCFS: build one from membra.convert.NETS "
                f"({', '.join(_net_names())}) or nn.Sequential / torchvision-style blocks, "
                "then replace_relu")


def _net_names() -> list[str]:
    from .nets import NETS

    return sorted(NETS)


def trace(model: nn.Module) -> fx.GraphModule:
    """``model`` traced with torch.fx (layers of the supported table are leaves); a
    GraphModule is returned as is. Untraceable code raises :class:`UnsupportedLayerError`."""
    if isinstance(model, fx.GraphModule):
        return model
    _refuse_spiking(model)
    try:
        graph = _Tracer().trace(model)
    except Exception as err:  # torch.fx raises many types for data-dependent code
        raise UnsupportedLayerError(type(model).__name__, "untraceable forward",
                                    f"torch.fx could not trace it ({err}); build the model "
                                    "from nn.Sequential, membra.convert.Residual and plain "
                                    "torchvision-style blocks") from None
    return fx.GraphModule(model, graph, class_name=type(model).__name__)


def _hint(m) -> str:
    for cls, hint in _HINTS.items():
        if isinstance(m, cls):
            return hint
    return "not in the supported-layer table (Linear, Conv, BN, QCFS, pooling, Flatten, " \
           "Dropout, Identity, residual add); see docs/conversion.md"


def _where(node: fx.Node) -> str:
    """``file:line: code`` of the user's source line that made ``node`` (its fx stack trace,
    torch's own frames skipped), or ``""``."""
    frames = re.findall(r'File "([^"]+)", line (\d+), in \S+\n\s*(.*)', node.stack_trace or "")
    user = [f for f in frames if "/torch/" not in f[0].replace("\\", "/")]
    if not user:
        return ""
    file, line, code = user[0] if len(user) == 1 else user[-1]
    return f"{file}:{line}: {code.strip()}"


def _refuse(node: fx.Node, path: str, kind: str, hint: str):
    raise UnsupportedLayerError(path, kind, hint, _where(node))


def call_site_names(gm: fx.GraphModule) -> dict[fx.Node, str]:
    """``{call_module node: call-site name}``: the module's path when it is called once,
    ``path@k`` (``k = 1, 2, ...`` in call order) when it is called several times."""
    calls: dict[str, list[fx.Node]] = {}
    for node in gm.graph.nodes:
        if node.op == "call_module":
            calls.setdefault(str(node.target), []).append(node)
    return {n: (path if len(ns) == 1 else f"{path}@{k}")
            for path, ns in calls.items() for k, n in enumerate(ns, 1)}


def unshare(gm: fx.GraphModule) -> fx.GraphModule:
    """Give every call of a module called several times its own copy, registered under its
    call-site name (:func:`call_site_names`), in place; returns ``gm``."""
    names = call_site_names(gm)
    shared = {n: name for n, name in names.items() if name != n.target}
    for node, name in shared.items():
        gm.add_submodule(name, copy.deepcopy(gm.get_submodule(node.target)))
        node.target = name
    if shared:
        gm.recompile()
        gm.delete_all_unused_submodules()
    return gm


def _flat_nodes(args) -> list[fx.Node]:
    """The fx nodes among ``args`` (one level of lists/tuples, as in ``torch.cat([a, b])``)."""
    out = []
    for a in args:
        for b in (a if isinstance(a, (list, tuple)) else (a,)):
            if isinstance(b, fx.Node):
                out.append(b)
    return out


_POOL = "kernel_size stride padding"
# positional parameters of the functions of _FUNCTION_MODULES (several are builtins, which
# have no inspectable signature), after ``input``
_PARAMS = {"avg_pool1d": f"{_POOL} ceil_mode count_include_pad",
           "avg_pool2d": f"{_POOL} ceil_mode count_include_pad divisor_override",
           "adaptive_avg_pool1d": "output_size", "adaptive_avg_pool2d": "output_size",
           "max_pool1d": f"{_POOL} dilation ceil_mode return_indices",
           "max_pool2d": f"{_POOL} dilation ceil_mode return_indices",
           "interpolate": "size scale_factor mode align_corners recompute_scale_factor"}


def _function_module(node: fx.Node) -> nn.Module:
    """The module a functional pool / dropout / interpolate call is equivalent to, built from
    the call's arguments by name."""
    cls = _FUNCTION_MODULES[node.target]
    if cls is nn.Dropout:
        return nn.Identity()              # eval: dropout is the identity
    names = _PARAMS[node.target.__name__].split()
    args = dict(zip(names, node.args[1:], strict=False)) | dict(node.kwargs)
    if cls is nn.Upsample:
        args.setdefault("mode", "nearest")
    keys = inspect.signature(cls).parameters
    return cls(**{k: v for k, v in args.items() if k in keys})


def _layer(node: fx.Node, m: nn.Module, path: str) -> str:
    """Kind of a supported layer module, else an :class:`UnsupportedLayerError`."""
    if isinstance(m, nn.Upsample) and m.mode not in _NEAREST:
        _refuse(node, path, f"{type(m).__name__}(mode={m.mode!r})", "only nearest upsampling "
                "copies spikes; interpolating modes weight them (use mode='nearest')")
    if isinstance(m, nn.Flatten) and (m.start_dim != 1 or m.end_dim != -1):
        _refuse(node, path, "flatten", "flatten from dim 1 only (keep the batch)")
    for classes, kind in ((WEIGHTS, "weight"), ((QCFS,), "qcfs"), (LINEAR_OPS, "linear"),
                          (MAXPOOLS, "maxpool"), (NORMS, "bn")):
        if isinstance(m, classes):
            return kind
    _refuse(node, path, type(m).__name__, _hint(m))


def _reshape(node: fx.Node, shape_nodes: set) -> nn.Module:
    """``x.view(B, *rest)`` / ``x.reshape(...)`` / ``torch.reshape`` keeping the batch: the
    first size is ``x.size(0)``, ``x.shape[0]`` or ``-1`` and the rest are ints."""
    args = list(node.args[1:]) + list(node.kwargs.values())
    if len(args) == 1 and isinstance(args[0], (tuple, list)):
        args = list(args[0])
    first, rest = (args[0], args[1:]) if args else (None, [])
    ints = all(isinstance(r, int) and not isinstance(r, bool) for r in rest)
    batch = isinstance(first, fx.Node) and first in shape_nodes and _is_batch_size(first)
    if not (ints and rest and (batch or (first == -1 and -1 not in rest))):
        _refuse(node, node.name, f"{getattr(node.target, '__name__', node.target)}"
                f"{tuple(a if not isinstance(a, fx.Node) else a.name for a in args)}",
                "a reshape must keep the batch: x.view(x.size(0), ...), x.view(-1, n), "
                "x.flatten(1) or torch.flatten(x, 1)")
    return _Reshape(tuple(rest))


class _Reshape(nn.Module):
    """``x.reshape(x.shape[0], *shape)``: a view that keeps the batch dimension."""

    def __init__(self, shape: tuple):
        super().__init__()
        self.shape = shape

    def forward(self, x):
        return x.reshape(x.shape[0], *self.shape)


def _is_batch_size(node: fx.Node) -> bool:
    """``x.size(0)`` or ``x.shape[0]`` (the batch size, used by a reshape)."""
    if node.op == "call_method" and node.target == "size":
        return tuple(node.args[1:]) == (0,) or node.kwargs.get("dim") == 0
    if node.op == "call_function" and node.target is operator.getitem and \
            isinstance(node.args[0], fx.Node) and node.args[1] == 0:
        src = node.args[0]
        return (src.op == "call_function" and src.target is getattr and src.args[1] == "shape")\
            or (src.op == "call_method" and src.target == "size" and len(src.args) == 1)
    return False


def _is_shape(node: fx.Node) -> bool:
    """``x.shape`` / ``x.size()`` (ints, not a layer)."""
    return (node.op == "call_function" and node.target is getattr and node.args[1] == "shape") \
        or (node.op == "call_method" and node.target == "size" and len(node.args) == 1
            and not node.kwargs)


def _cat_dim(node: fx.Node) -> int:
    dim = node.args[1] if len(node.args) > 1 else node.kwargs.get("dim", 0)
    if not isinstance(dim, int) or dim == 0:
        _refuse(node, node.name, "torch.cat", f"concatenation along dim {dim!r}: only along a "
                "feature dimension (dim >= 1 or negative), never the batch")
    return dim


def capture(model: nn.Module) -> tuple[fx.GraphModule, list[Op]]:
    """Trace ``model`` and classify every operation; returns ``(graph module, ops)``. Ops of
    module calls are named by their call site (:func:`call_site_names`)."""
    gm = trace(model)
    sites = call_site_names(gm)
    ops: list[Op] = []
    index: dict[fx.Node, int] = {}
    shape_nodes: set[fx.Node] = set()
    for node in gm.graph.nodes:
        if node.op in ("call_method", "call_function") and (_is_shape(node) or
                                                            _is_batch_size(node)):
            shape_nodes.add(node)
            continue
        ins = [index[a] for a in _flat_nodes(node.args) + _flat_nodes(node.kwargs.values())
               if a not in shape_nodes]
        name = getattr(node.target, "__name__", str(node.target))
        if node.op == "placeholder":
            if any(o.kind == "input" for o in ops):
                _refuse(node, node.name, "second input", "one input tensor only")
            op = Op("input", node.name)
        elif node.op == "call_module":
            m = gm.get_submodule(node.target)
            op = Op(_layer(node, m, sites[node]), sites[node], ins, module=m)
        elif node.op == "call_function" and node.target in (operator.add, torch.add,
                                                            operator.iadd):
            if len(ins) != 2 or len(node.args) != 2 or node.kwargs:
                _refuse(node, node.name, f"function {name}", "only the sum of two tensors "
                        "(a residual x + y) is supported; adding a constant changes the "
                        "spiking neuron's threshold")
            op = Op("add", node.name, ins)
        elif node.op == "call_function" and node.target in (torch.cat, torch.concat):
            op = Op("cat", node.name, ins, fn=_cat_dim(node))
        elif node.op == "call_function" and node.target in _FUNCTION_MODULES and len(ins) == 1:
            m = _function_module(node)
            op = Op(_layer(node, m, node.name), node.name, ins, module=m)
        elif node.op == "call_function" and node.target is torch.reshape and len(ins) == 1:
            op = Op("linear", node.name, ins, module=_reshape(node, shape_nodes))
        elif node.op == "call_method" and node.target in ("view", "reshape") and len(ins) == 1:
            op = Op("linear", node.name, ins, module=_reshape(node, shape_nodes))
        elif (node.op == "call_method" and node.target == "flatten" or
              node.op == "call_function" and node.target is torch.flatten) and len(ins) == 1:
            start = node.args[1] if len(node.args) > 1 else node.kwargs.get("start_dim", 0)
            end = node.args[2] if len(node.args) > 2 else node.kwargs.get("end_dim", -1)
            m = nn.Flatten(start, end)
            op = Op(_layer(node, m, node.name), node.name, ins, module=m)
        elif node.op == "call_method" and node.target in ("contiguous", "clone") and \
                len(ins) == 1:
            op = Op("linear", node.name, ins, module=nn.Identity())
        elif node.op in ("call_function", "call_method"):
            label = f"function {name}" if node.op == "call_function" else \
                f"method .{node.target}()"
            relu = node.target in RELU_FUNCTIONS or node.target in ("relu", "relu_")
            hint = _FUNCTIONAL_RELU if relu else (
                "not in the supported-layer table: residual x + y, torch.cat, torch.flatten / "
                "x.view(x.size(0), -1), nearest interpolation, pooling and dropout are the "
                "supported functions (docs/conversion.md)")
            _refuse(node, node.name, label, hint)
        elif node.op == "output":
            if len(ins) != 1:
                _refuse(node, "output", "several outputs", "return one tensor")
            op = Op("output", "output", ins)
        else:
            _refuse(node, node.name, node.op, "attributes and constants in the forward cannot "
                    "be converted")
        index[node] = len(ops)
        ops.append(op)
    return gm, ops


def __getattr__(name):
    """``fold_bn`` / ``check_values`` moved to :mod:`membra.convert.fold` (which imports this
    module, hence the lazy lookup)."""
    if name in ("fold_bn", "check_values"):
        from . import fold

        return getattr(fold, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
